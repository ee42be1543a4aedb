"""Grading the Inference assignment (chapter 5) end to end, with nbgrader's real CLI and
gradebook, as tests/test_pretraining_grading.py does for chapter 4.

The submissions are made from the release by ``tests/submissions/make_inference_submissions.py``:
the solution's answers, answers written differently, the untouched release, one wrong answer per
entry of ``inference_answers.WRONG`` and a few broken notebooks. To keep this test within a few
minutes on two cores, it grades the right, untouched and broken notebooks and the wrong answers
of ``GRADED_WRONG`` (at least one per task, and every mistake the chapter names: temperature
after the softmax, top-k off by one, a top-p that drops the crossing token, cache positions off
by one); every entry of ``WRONG`` is shown to fail its own check, and only it, in
tests/test_inference_checks.py. Then a few submissions are graded again into the same output
folder, and their rows of ``grades.csv`` must be identical to the first run's. ``course check``
is run on the solution.

A generator and a model cannot cross to the grader as data, so ``sample`` and
``generate_with_cache`` are graded through the notebook's locked cells ``sample_with_seed`` and
``generate_with_cache_on_gpt``; the grader restores them, so editing them changes nothing.
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
import inference_answers as answers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "inference"
SUBS = ROOT / "tests" / "submissions" / ASSIGNMENT
LIMITS = {"cell_seconds": 10.0, "call_seconds": 3.0, "notebook_seconds": 120.0,
          "memory_bytes": 3 << 30}
POINTS = {"test_apply_temperature": 1, "test_top_k_filter": 2, "test_top_p_filter": 3,
          "test_sample": 3, "test_generate_with_cache": 4}
FULL = 13.0  # autograded points; the written question (2) is graded by hand
GRADED_WRONG = ["temperature_multiplies", "top_k_off_by_one", "top_p_drops_crossing",
                "temperature_after_softmax", "ignores_generator", "filters_in_wrong_order",
                "cache_positions_off_by_one", "no_cache_recomputes"]
OTHERS = ["untouched", "solution_like", "alternative", "infinite_loop_function",
          "syntax_error_cell", "calls_reference", "edited_locked_cell", "os_exit_cell",
          "invalid_json", "empty"]
REGRADE = ["solution_like", "wrong_top_p_drops_crossing", "edited_locked_cell", "invalid_json"]

pytestmark = pytest.mark.slow


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return {r["student_id"]: r for r in csv.DictReader(f)}


def csv_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def student(stem: str) -> str:
    return stem.replace("_", "-")


def graded_stems():
    return OTHERS + [f"wrong_{w}" for w in GRADED_WRONG]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("submissions")
    for stem in graded_stems():
        shutil.copy(next(SUBS.glob(f"{stem}.*")), d)
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


def test_the_folder_holds_every_submission():
    """What make_inference_submissions.py writes: one notebook per wrong answer and the rest."""
    stems = {p.stem for p in SUBS.iterdir()}
    assert stems == set(OTHERS) | {f"wrong_{w}" for w in answers.WRONG}
    assert set(GRADED_WRONG) <= set(answers.WRONG)
    assert {answers.WRONG[w][0] for w in GRADED_WRONG} == {g[len("test_"):] for g in POINTS}


def test_every_submission_has_a_row(rows):
    assert set(rows) == {student(s) for s in graded_stems()}


def test_regrades_are_identical(runs):
    first, out, _ = runs
    rows1, rows2 = csv_rows(first / "grades.csv"), csv_rows(out / "grades.csv")
    regraded = {student(s) for s in REGRADE}
    assert rows2[0] == rows1[0]
    assert [r[0] for r in rows2[1:]] == sorted(regraded)
    assert rows2[1:] == [r for r in rows1[1:] if r[0] in regraded], \
        "grading the same notebooks again changed their rows of grades.csv"


@pytest.mark.parametrize("who", ["solution-like", "alternative"])
def test_right_answers_get_every_autograded_point(rows, who):
    r = rows[who]
    assert float(r["score"]) == FULL, (who, r["reasons"])
    assert r["max_score"] == "15"
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


@pytest.mark.parametrize("name", GRADED_WRONG)
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


def test_wrong_answers_are_told_what_went_wrong(rows):
    assert "does the temperature divide the logits before the softmax?" in \
        rows["wrong-temperature-after-softmax"]["reasons"]
    assert "keeps 3 tokens instead of 2" in rows["wrong-top-k-off-by-one"]["reasons"]
    assert "(it should stay)" in rows["wrong-top-p-drops-crossing"]["reasons"]
    assert "drew different tokens" in rows["wrong-ignores-generator"]["reasons"]
    assert "but the filters remove it" in rows["wrong-filters-in-wrong-order"]["reasons"]
    assert "are the later steps at the right position" in \
        rows["wrong-cache-positions-off-by-one"]["reasons"]
    assert "the tokens are right, but the model read" in \
        rows["wrong-no-cache-recomputes"]["reasons"]


@pytest.mark.parametrize("who,lost,reason", [
    ("infinite-loop-function", "test_top_k_filter", "did not finish"),
    ("syntax-error-cell", "test_generate_with_cache", "name 'generate_with_cache' is not defined"),
])
def test_a_broken_function_loses_only_its_task(rows, who, lost, reason):
    r = rows[who]
    assert float(r[lost]) == 0 and reason in r["reasons"], r["reasons"]
    assert r["reasons"].count(" | ") == 0, r["reasons"]  # no other cell lost points
    assert float(r["score"]) == FULL - POINTS[lost], r["reasons"]
    assert r["status"] == "needs manual grading", r["status"]


def test_an_endless_loop_is_stopped(rows):
    assert "ran past the time limit" in rows["infinite-loop-function"]["notes"]


def test_the_references_are_caught(rows):
    """``from course_lib.generate import top_p_filter, generate_with_cache``: both get no
    points, although generate_with_cache is decorated and called through the locked cell."""
    r = rows["calls-reference"]
    assert "course's reference implementation (course_lib.generate.top_p_filter)" in r["reasons"]
    assert ("course's reference implementation (course_lib.generate.generate_with_cache)"
            in r["reasons"]), r["reasons"]
    assert float(r["test_top_p_filter"]) == 0 and float(r["test_generate_with_cache"]) == 0
    assert float(r["score"]) == FULL - 3 - 4


def test_an_edited_locked_cell_is_restored(rows):
    """The locked cell was edited to report a cached loop's count around a loop without a
    cache; graded with the released cell, the loop loses its task."""
    r = rows["edited-locked-cell"]
    assert "locked cell generate_with_cache_on_gpt was edited; restored" in r["notes"]
    assert float(r["test_generate_with_cache"]) == 0
    assert "the model read" in r["reasons"], r["reasons"]
    assert float(r["score"]) == FULL - 4


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
        for secret in ("BEGIN HIDDEN TESTS", "seed=2718", "seed=1729", "seed=1618", "seed=31",
                       "seed=577", "BEGIN SOLUTION"):
            assert secret not in page, (who, secret)
    page = (fb / "wrong-top-p-drops-crossing.html").read_text(encoding="utf-8")
    assert "[grader] 0 / 3 points" in page and "[grader] 4 / 4 points" in page


def test_gradebook_holds_the_scores(runs):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{runs[1] / 'course' / 'gradebook.db'}") as gb:
        sub = gb.find_submission(ASSIGNMENT, "solution-like")  # graded twice
        assert sub.code_score == FULL and sub.needs_manual_grade
        assert gb.find_submission(ASSIGNMENT, "wrong-top-p-drops-crossing").code_score == FULL - 3
        assert gb.find_submission(ASSIGNMENT, "wrong-no-cache-recomputes").code_score == FULL - 4


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
    assert "visible tests: 13 / 13 points" in proc.stdout, proc.stdout
