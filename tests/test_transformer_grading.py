"""Grading the Transformer assignment (chapter 3) end to end, with nbgrader's real CLI and
gradebook, as tests/test_pretraining_data_grading.py does for chapter 1.

The submissions are made from the release by
``tests/submissions/make_transformer_submissions.py``: the solution's answers, answers written
differently, the untouched release, one wrong answer per entry of
``transformer_answers.WRONG`` and a few broken notebooks. The folder is graded once; then a
few of its submissions (a right one, a wrong one, the endless loop, the crash, broken JSON) are
graded again into the same output folder, and their rows of ``grades.csv`` must be identical to
the first run's. (Every notebook that runs costs two torch imports, sandbox and verifier, so
grading all 18 again would add about three minutes on two cores.) ``course check`` (the
student's own run of the visible tests) is run on the solution; its report of a lost task is
tested for chapter 1.

``block_forward`` calls the student's own ``attention``; while it is checked, that name is
bound to a correct attention (``Task.substitute``), so a wrong attention costs attention's 4
points only and ``block_forward`` is judged on its own code.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course_lib.grading import grader

sys.path.insert(0, str(Path(__file__).parent / "submissions"))
import transformer_answers as answers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "transformer"
SUBS = ROOT / "tests" / "submissions" / ASSIGNMENT
# the cells take under a second (torch is preloaded before the first cell); the limits only
# bite for the endless loop, whose test cell and one graded call run to their limit
LIMITS = {"cell_seconds": 10.0, "call_seconds": 3.0, "notebook_seconds": 120.0,
          "memory_bytes": 3 << 30}
POINTS = {"test_attention": 4, "test_block_forward": 5, "test_count_parameters": 3}
FULL = 12.0  # autograded points; the written question (2) is graded by hand
# graded a second time: full marks, a wrong answer (its message shows nan tensors), timeouts, a
# crash, a file that is not a notebook
REGRADE = ["solution_like", "wrong_unstable_softmax", "infinite_loop_function", "os_exit_cell",
           "invalid_json"]
# wrong attentions whose error also shows in block_forward's inputs (see the module docstring)

pytestmark = pytest.mark.slow


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return {r["student_id"]: r for r in csv.DictReader(f)}


def csv_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def student(stem: str) -> str:
    return stem.replace("_", "-")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("submissions")
    for p in SUBS.iterdir():
        shutil.copy(p, d / p.name)
    out = tmp_path_factory.mktemp("graded")
    results = grader.grade(ASSIGNMENT, d, out, limits=LIMITS, progress=False)
    first = tmp_path_factory.mktemp("first")  # what the regrade below overwrites
    shutil.copy(out / "grades.csv", first / "grades.csv")
    shutil.copytree(out / "feedback", first / "feedback")
    again = tmp_path_factory.mktemp("again")
    for name in REGRADE:
        shutil.copy(next(d.glob(f"{name}.*")), again)
    grader.grade(ASSIGNMENT, again, out, limits=LIMITS, progress=False)
    return first, out, results


@pytest.fixture(scope="module")
def rows(runs):
    return read_csv(runs[0] / "grades.csv")


def test_every_submission_has_a_row(rows):
    expected = {student(p.stem) for p in SUBS.iterdir()}
    assert set(rows) == expected
    assert len(expected) == 3 + len(answers.WRONG) + 6


def test_regrades_are_identical(runs):
    first, out, _ = runs
    rows1, rows2 = csv_rows(first / "grades.csv"), csv_rows(out / "grades.csv")
    regraded = {student(s) for s in REGRADE}
    assert rows2[0] == rows1[0]
    assert [r[0] for r in rows2[1:]] == sorted(regraded)
    assert rows2[1:] == [r for r in rows1[1:] if r[0] in regraded], \
        "grading the same notebooks again changed their rows of grades.csv"


def test_a_regrade_of_a_few_leaves_the_others_alone(runs):
    """Regrading a few students into a folder that holds a whole class makes feedback for those
    few only: nbgrader must not be asked (twice, by two processes at once) for the others'."""
    _, out, _ = runs
    made = {p.name for p in (out / "course" / "feedback").iterdir()}
    assert made <= {student(s) for s in REGRADE}, made
    assert {p.stem for p in (out / "feedback").iterdir()} == {student(s) for s in REGRADE}


@pytest.mark.parametrize("who", ["solution-like", "alternative"])
def test_right_answers_get_every_autograded_point(rows, who):
    r = rows[who]
    assert float(r["score"]) == FULL, (who, r["reasons"])
    assert r["max_score"] == "14"
    assert r["status"] == "needs manual grading", r["status"]  # the written answer
    assert r["written_question"] == "answered"
    assert r["reasons"] == "" and r["notes"] == "", (r["reasons"], r["notes"])
    for gid, points in POINTS.items():
        assert float(r[gid]) == points, (gid, r["reasons"])


def test_untouched_release_scores_zero(rows):
    r = rows["untouched"]
    assert float(r["score"]) == 0, r["reasons"]
    assert r["status"].startswith("failed: no answer"), r["status"]
    assert r["written_question"] == "unanswered"
    for gid in POINTS:
        assert float(r[gid]) == 0 and f"{gid}: test 1 of " in r["reasons"], gid


@pytest.mark.parametrize("name", list(answers.WRONG))
def test_each_wrong_answer_loses_exactly_its_task(rows, name):
    task = answers.WRONG[name][0]
    r = rows[f"wrong-{student(name)}"]
    lost = f"test_{task}"
    assert float(r[lost]) == 0, r
    assert f"{lost}: " in r["reasons"] and "hint:" in r["reasons"], r["reasons"]
    for gid, points in POINTS.items():
        if gid != lost:
            assert float(r[gid]) == points, (gid, r["reasons"])
    assert float(r["score"]) == FULL - POINTS[lost]
    assert r["status"] == "needs manual grading", r["status"]


def test_an_attention_wrong_only_for_large_scores_keeps_block_forward(rows):
    r = rows["wrong-unstable-softmax"]
    assert float(r["test_block_forward"]) == 5 and float(r["score"]) == FULL - 4, r["reasons"]


def test_wrong_answers_are_told_what_went_wrong(rows):
    assert "exp of large scores" in rows["wrong-unstable-softmax"]["reasons"]
    assert "inf or nan" in rows["wrong-mask-hides-diagonal"]["reasons"]
    assert "values differ by up to" in rows["wrong-no-scaling"]["reasons"]
    assert "values differ by up to" in rows["wrong-post-ln"]["reasons"]
    assert "values differ by up to" in rows["wrong-exact-gelu"]["reasons"]
    assert "163037184 instead of 124439808" in rows["wrong-tied-counted-twice"]["reasons"]
    assert "123653376 instead of 124439808" in rows["wrong-no-position-embeddings"]["reasons"]


@pytest.mark.parametrize("who,lost,reason", [
    ("infinite-loop-function", "test_count_parameters", "did not finish"),
    ("syntax-error-cell", "test_block_forward", "block_forward is not defined"),
])
def test_a_broken_function_loses_only_its_task(rows, who, lost, reason):
    r = rows[who]
    assert float(r[lost]) == 0 and reason in r["reasons"], r["reasons"]
    assert r["reasons"].count(" | ") == 0, r["reasons"]  # no other cell lost points
    assert float(r["score"]) == FULL - POINTS[lost], r["reasons"]
    assert r["status"] == "needs manual grading", r["status"]


def test_an_endless_loop_is_stopped(rows):
    assert "ran past the time limit" in rows["infinite-loop-function"]["notes"]


def test_the_reference_as_attention_is_caught(rows):
    """``from course_lib.model import attention``: attention calls the reference and gets no
    points; the student's own (right) block_forward is checked with a trusted attention in
    place of that name, so it keeps its points."""
    r = rows["calls-reference"]
    assert float(r["test_attention"]) == 0, r["reasons"]
    assert ("attention calls the course's reference implementation (course_lib.model.attention)"
            in r["reasons"]), r["reasons"]
    assert float(r["test_block_forward"]) == 5 and float(r["test_count_parameters"]) == 3
    assert float(r["score"]) == 8


@pytest.mark.parametrize("who,reason", [
    ("invalid-json", "invalid JSON"), ("empty", "empty"), ("os-exit-cell", "ended early"),
])
def test_broken_notebooks_fail_with_a_reason(rows, who, reason):
    r = rows[who]
    assert r["status"].startswith("failed: ") and reason in r["status"], r["status"]
    assert float(r["score"]) == 0


def test_feedback_has_no_hidden_tests(runs, rows):
    fb = runs[0] / "feedback"
    for who in rows:
        page = (fb / f"{who}.html").read_text(encoding="utf-8")
        for secret in ("BEGIN HIDDEN TESTS", "seed=271", "seed=1618", "seed=42",
                       "BEGIN SOLUTION"):
            assert secret not in page, (who, secret)
    page = (fb / "wrong-tied-counted-twice.html").read_text(encoding="utf-8")
    assert "[grader] 0 / 3 points" in page and "[grader] 5 / 5 points" in page


def test_gradebook_holds_the_scores(runs):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{runs[1] / 'course' / 'gradebook.db'}") as gb:
        sub = gb.find_submission(ASSIGNMENT, "solution-like")  # graded twice
        assert sub.code_score == FULL and sub.needs_manual_grade
        assert gb.find_submission(ASSIGNMENT, "wrong-post-ln").code_score == FULL - 5
        assert gb.find_submission(ASSIGNMENT, "wrong-unstable-softmax").code_score == FULL - 4


# -- the student's own check -------------------------------------------------------------------------


def course_check(notebook: Path, *args):
    """``course check``, the console script students run."""
    script = Path(sys.executable).with_name("course")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "course_lib.grading.cli"]
    return subprocess.run([*cmd, "check", str(notebook), *args], capture_output=True, text=True,
                          timeout=300, check=False)


def test_course_check_on_the_solution():
    proc = course_check(SUBS / "solution_like.ipynb")  # the assignment is read from the folder
    assert proc.returncode == 0, proc.stderr
    for gid, points in POINTS.items():
        assert f"{gid}: {points} / {points}" in proc.stdout, proc.stdout
    assert "visible tests: 12 / 12 points" in proc.stdout, proc.stdout

