"""Grading the Finetuning assignment (chapter 6) end to end, with nbgrader's real CLI and
gradebook, as tests/test_inference_grading.py does for chapter 5.

The submissions are made from the release by ``tests/submissions/make_finetuning_submissions.py``:
the solution's answers, answers written differently, the untouched release, one wrong answer per
entry of ``finetuning_answers.WRONG`` and a few broken notebooks. To keep this test within a few
minutes on two cores, it grades the right, untouched and broken notebooks and the wrong answers
of ``GRADED_WRONG`` (at least one per task, and the mistakes the chapter names: the user's words
in the mask, the mask shifted by one, the end of turn left out, the mask ignored, a softmax that
overflows), and one of each kind of result that crosses to the grader (a conversation that
should have raised, a loss without a gradient, a nan loss); every entry of ``WRONG`` is shown
to fail its own check, and only it, in tests/test_finetuning_checks.py. Then a few submissions are graded again into the same output
folder, and their rows of ``grades.csv`` must be identical to the first run's. ``course check``
is run on the solution.

A tokenizer cannot cross to the grader as data and a gradient must be computed where the
student's function runs, so ``render_conversation`` and ``masked_cross_entropy`` are graded
through the notebook's locked cells ``render_with_chat_tokenizer`` and
``masked_cross_entropy_with_grad``; the grader restores them, so editing them changes nothing.
"""

from __future__ import annotations

import csv
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course_lib.grading import grader

sys.path.insert(0, str(Path(__file__).parent / "submissions"))
answers = importlib.import_module("finetuning_answers")

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "finetuning"
SUBS = ROOT / "tests" / "submissions" / ASSIGNMENT
LIMITS = {"cell_seconds": 10.0, "call_seconds": 3.0, "notebook_seconds": 120.0,
          "memory_bytes": 3 << 30}
POINTS = {"test_render_conversation": 5, "test_masked_cross_entropy": 4}
FULL = 9.0  # autograded points; the written question (2) is graded by hand
GRADED_WRONG = ["mask_covers_user", "mask_shifted", "end_token_not_in_mask", "no_validation",
                "loss_ignores_mask", "loss_unstable_softmax", "loss_detached",
                "loss_empty_mask_nan"]
OTHERS = ["untouched", "solution_like", "alternative", "infinite_loop_function",
          "syntax_error_cell", "calls_reference", "edited_locked_cell", "os_exit_cell",
          "invalid_json", "empty"]
REGRADE = ["solution_like", "wrong_mask_shifted", "edited_locked_cell", "invalid_json"]

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
    """What make_finetuning_submissions.py writes: one notebook per wrong answer and the rest."""
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
    assert r["max_score"] == "11"
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
    assert "message 0 (user)'s content" in rows["wrong-mask-covers-user"]["reasons"]
    assert "shifted by one position" in rows["wrong-mask-shifted"]["reasons"]
    assert "(assistant)'s <|im_end|>" in rows["wrong-end-token-not-in-mask"]["reasons"]
    assert "the mean over every position" in rows["wrong-loss-ignores-mask"]["reasons"]
    assert "exp overflows" in rows["wrong-loss-unstable-softmax"]["reasons"]
    assert "returned instead of raising ValueError" in rows["wrong-no-validation"]["reasons"]
    assert "no gradient reached the logits" in rows["wrong-loss-detached"]["reasons"]
    assert "raise ValueError (got tensor(nan)" in rows["wrong-loss-empty-mask-nan"]["reasons"]


@pytest.mark.parametrize("who,lost,reason", [
    ("infinite-loop-function", "test_render_conversation", "did not finish"),
    ("syntax-error-cell", "test_masked_cross_entropy",
     "name 'masked_cross_entropy' is not defined"),
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
    """``from course_lib.chat import render_conversation`` and a masked_cross_entropy that calls
    ``course_lib.chat.masked_cross_entropy``: both get no points, although the notebook may use
    ``course_lib.chat``'s ``chat_tokenizer`` and ``check_conversation``."""
    r = rows["calls-reference"]
    assert ("course's reference implementation (course_lib.chat.render_conversation)"
            in r["reasons"]), r["reasons"]
    assert ("course's reference implementation (course_lib.chat.masked_cross_entropy)"
            in r["reasons"]), r["reasons"]
    assert float(r["test_render_conversation"]) == 0
    assert float(r["test_masked_cross_entropy"]) == 0
    assert float(r["score"]) == FULL - 5 - 4


def test_an_edited_locked_cell_is_restored(rows):
    """The locked cell was edited to report the reference's loss and gradient instead of those
    of a loss that ignores the mask; graded with the released cell, the loss loses its task."""
    r = rows["edited-locked-cell"]
    assert "locked cell masked_cross_entropy_with_grad was edited; restored" in r["notes"]
    assert float(r["test_masked_cross_entropy"]) == 0
    assert "the mean over every position" in r["reasons"], r["reasons"]
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
        for secret in ("BEGIN HIDDEN TESTS", "seed=4242", "seed=8128", "Sé breve", "Anyone?",
                       "BEGIN SOLUTION"):
            assert secret not in page, (who, secret)
    page = (fb / "wrong-mask-shifted.html").read_text(encoding="utf-8")
    assert "[grader] 0 / 5 points" in page and "[grader] 4 / 4 points" in page


def test_gradebook_holds_the_scores(runs):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{runs[1] / 'course' / 'gradebook.db'}") as gb:
        sub = gb.find_submission(ASSIGNMENT, "solution-like")  # graded twice
        assert sub.code_score == FULL and sub.needs_manual_grade
        assert gb.find_submission(ASSIGNMENT, "wrong-mask-shifted").code_score == FULL - 5
        assert gb.find_submission(ASSIGNMENT, "wrong-loss-ignores-mask").code_score == FULL - 4


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
    assert "visible tests: 9 / 9 points" in proc.stdout, proc.stdout
