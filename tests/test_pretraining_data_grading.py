"""Grading the Pretraining data assignment (chapter 1) end to end, with nbgrader's real CLI and
gradebook, as tests/test_grading.py does for tokenization.

The submissions are made from the release by
``tests/submissions/make_pretraining_data_submissions.py``: the solution's answers, answers
written differently, the untouched release, one wrong answer per task and a few broken
notebooks. The folder is graded twice into the same output folder; both ``grades.csv`` must be
identical. ``course check`` (the student's own run of the visible tests) is run on a right and
a wrong notebook.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course_lib.grading import grader

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "pretraining_data"
SUBS = ROOT / "tests" / "submissions" / ASSIGNMENT
# the language cell counts trigram tables of the training text (seconds; more while another
# notebook runs beside it); a near-duplicate test case hashes a corpus of 20+ pages
LIMITS = {"cell_seconds": 30.0, "call_seconds": 10.0, "notebook_seconds": 240.0,
          "memory_bytes": 3 << 30}
POINTS = {"test_extract_text": 3, "test_language_score": 3, "test_minhash_signature": 3,
          "test_estimated_jaccard": 1, "test_near_duplicate_pairs": 3, "test_redact_pii": 2}
FULL = 15.0  # autograded points; the written question (2) is graded by hand

pytestmark = pytest.mark.slow


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return {r["student_id"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("submissions")
    for p in SUBS.iterdir():
        shutil.copy(p, d / p.name)
    out = tmp_path_factory.mktemp("graded")
    results = grader.grade(ASSIGNMENT, d, out, limits=LIMITS, progress=False)
    first = (out / "grades.csv").read_text(encoding="utf-8")
    grader.grade(ASSIGNMENT, d, out, limits=LIMITS, progress=False)
    second = (out / "grades.csv").read_text(encoding="utf-8")
    return out, results, (first, second)


@pytest.fixture(scope="module")
def rows(runs):
    return read_csv(runs[0] / "grades.csv")


def test_every_submission_has_a_row(rows):
    expected = {p.stem.replace("_", "-") for p in SUBS.iterdir()}
    assert set(rows) == expected


def test_regrades_are_identical(runs):
    first, second = runs[2]
    assert first == second, "grading the same folder twice changed grades.csv"


@pytest.mark.parametrize("student", ["solution-like", "alternative"])
def test_right_answers_get_every_autograded_point(rows, student):
    r = rows[student]
    assert float(r["score"]) == FULL, (student, r["reasons"])
    assert r["max_score"] == "17"
    assert r["status"] == "needs manual grading", r["status"]  # the written answer
    assert r["written_question"] == "answered"
    assert r["reasons"] == "", r["reasons"]
    for gid, points in POINTS.items():
        assert float(r[gid]) == points, (gid, r["reasons"])


def test_untouched_release_scores_zero(rows):
    r = rows["untouched"]
    assert float(r["score"]) == 0, r["reasons"]
    assert r["status"].startswith("failed: no answer"), r["status"]
    assert r["written_question"] == "unanswered"
    for gid in POINTS:
        assert float(r[gid]) == 0 and gid in r["reasons"], gid


@pytest.mark.parametrize("task", [gid.removeprefix("test_") for gid in POINTS])
def test_each_wrong_answer_loses_exactly_its_task(rows, task):
    r = rows[f"wrong-{task.replace('_', '-')}"]
    lost = f"test_{task}"
    assert float(r[lost]) == 0, r
    assert f"{lost}: " in r["reasons"] and "hint:" in r["reasons"], r["reasons"]
    for gid, points in POINTS.items():
        if gid != lost:
            assert float(r[gid]) == points, (gid, r["reasons"])
    assert float(r["score"]) == FULL - POINTS[lost]
    assert r["status"] == "needs manual grading", r["status"]


def test_wrong_answers_are_told_what_went_wrong(rows):
    assert "inside <script>" in rows["wrong-extract-text"]["reasons"]
    assert "the seed must choose" in rows["wrong-minhash-signature"]["reasons"]
    assert "expected: 0.5" in rows["wrong-estimated-jaccard"]["reasons"]
    assert "(555) 987-6543" in rows["wrong-redact-pii"]["reasons"]


@pytest.mark.parametrize("student,lost,reason", [
    ("infinite-loop-function", "test_redact_pii", "did not finish"),
    ("syntax-error-cell", "test_language_score", "language_score is not defined"),
    ("calls-reference", "test_extract_text", "calls the course's reference"),
])
def test_a_broken_function_loses_only_its_task(rows, student, lost, reason):
    r = rows[student]
    assert float(r[lost]) == 0 and reason in r["reasons"], r["reasons"]
    assert float(r["score"]) == FULL - POINTS[lost], r["reasons"]


@pytest.mark.parametrize("student,reason", [
    ("invalid-json", "invalid JSON"), ("empty", "empty"), ("os-exit-cell", "ended early"),
])
def test_broken_notebooks_fail_with_a_reason(rows, student, reason):
    r = rows[student]
    assert r["status"].startswith("failed: ") and reason in r["status"], r["status"]
    assert float(r["score"]) == 0


def test_feedback_has_no_hidden_tests(runs, rows):
    fb = runs[0] / "feedback"
    for student in rows:
        page = (fb / f"{student}.html").read_text(encoding="utf-8")
        for secret in ("BEGIN HIDDEN TESTS", "seed=4242", "seed=2718", "BEGIN SOLUTION"):
            assert secret not in page, (student, secret)
    assert "[grader] 0 / 2 points" in (fb / "wrong-redact-pii.html").read_text(encoding="utf-8")


def test_gradebook_holds_the_scores(runs):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{runs[0] / 'course' / 'gradebook.db'}") as gb:
        sub = gb.find_submission(ASSIGNMENT, "solution-like")
        assert sub.code_score == FULL and sub.needs_manual_grade
        assert gb.find_submission(ASSIGNMENT, "wrong-language-score").code_score == FULL - 3


# -- the student's own check -------------------------------------------------------------------------


def course_check(notebook: Path, *args):
    return subprocess.run([sys.executable, "-m", "course_lib.grading.cli", "check", str(notebook),
                           *args], capture_output=True, text=True, timeout=300)


def test_course_check_on_the_solution():
    proc = course_check(SUBS / "solution_like.ipynb")  # the assignment is read from the folder
    assert proc.returncode == 0, proc.stderr
    for gid, points in POINTS.items():
        assert f"{gid}: {points} / {points}" in proc.stdout, proc.stdout
    assert "visible tests: 15 / 15 points" in proc.stdout


def test_course_check_on_a_wrong_answer():
    proc = course_check(SUBS / "wrong_near_duplicate_pairs.ipynb", "--assignment", ASSIGNMENT)
    assert proc.returncode == 0, proc.stderr  # a lost point is not an error of the command
    assert "test_near_duplicate_pairs: 0 / 3" in proc.stdout, proc.stdout
    assert "missed 2 near-duplicate pair(s)" in proc.stdout and "hint:" in proc.stdout
    assert "test_redact_pii: 2 / 2" in proc.stdout
    assert "visible tests: 12 / 15 points" in proc.stdout
