"""The grading round trip, with nbgrader's real CLI and gradebook, on the tokenization assignment.

The submissions are made into ``tmp_path`` from the current release by
``tests/submissions/make_submissions.py``: right ones (the solution, one written differently,
one that warns), one wrong answer per task (``tokenization_answers.py``), and every adversarial
case of the grading issue, including the generic broken notebooks (not JSON, a PDF, empty,
``os._exit``, a segfault, endless loops), which are graded here once for the whole course; the
other assignments are graded in tests/test_assignment_grading.py. Each outcome is asserted
below. The whole folder is graded twice into the same output folder, and the two ``grades.csv``
must be identical; then one notebook of every kind (``SERIAL``) is graded serially into another,
and its rows must be those of the parallel grading.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys

import nbformat
import pytest

import make_submissions
from course_lib.grading import grader, sandbox

LIMITS = {"cell_seconds": 5.0, "call_seconds": 3.0, "notebook_seconds": 120.0,
          "memory_bytes": 2 << 30}
FULL = 13.0  # autograded points; the written question (2) is graded by hand
ISOLATED = sandbox.isolation()["namespaces"]

# The serial grading (``jobs=1``: one notebook at a time, the release made by nbgrader rather than
# the shipped one, one feedback process) grades one file of every kind of the folder: everything
# whose outcome could depend on the other notebooks running beside it or on the release it is
# restored from (crashes, loops, limits, the sandbox, restored test cells, the untouched
# release), and one of each kind whose outcome cannot (a right answer, a wrong result, ...).
SERIAL = (
    # right: the solution, the instructor's own notebook, a student's two LMS uploads
    "solution_like.ipynb", "instructor.ipynb", "smithjane_1001_2001_tokenization.ipynb",
    "smithjane_1001_2002_tokenization-1.ipynb",
    # wrong: a wrong result, the reference called, a result that fools ==, an unseeded generator
    "wrong_merge.ipynb", "calls_reference.ipynb", "always_equal.ipynb", "unseeded_random.ipynb",
    # tampering with one task's check (that task lost), with what every task uses (all lost)
    "rebinds_check.ipynb", "patches_builtins.ipynb",
    # test cells edited, deleted, moved, stripped of their metadata: restored from the release
    "edits_tests.ipynb", "deletes_tests.ipynb", "moves_tests.ipynb", "strips_metadata.ipynb",
    # every crash, loop, limit and sandbox case
    "sys_exit_cell.ipynb", "os_exit_cell.ipynb", "segfault.ipynb", "infinite_loop_cell.ipynb",
    "infinite_loop_function.ipynb", "memory_blowup.ipynb", "background_process.ipynb",
    "huge_output.ipynb", "network.ipynb", "reads_instructor_files.ipynb",
    # no answer, and the files that are not notebooks
    "untouched.ipynb", "invalid_json.ipynb", "a_pdf.ipynb", "empty.ipynb", "notes.txt",
)
# graded in parallel only: each stands for the file of its kind above
PARALLEL_ONLY = {
    "alternative.ipynb": "solution_like.ipynb", "warns.ipynb": "solution_like.ipynb",
    **{f"wrong_{w}.ipynb": "wrong_merge.ipynb" for w in
       ("get_stats", "train_bpe", "encode", "decode", "decode_per_token")},
    "calls_reference_train.ipynb": "calls_reference.ipynb",
    "patches_reference.ipynb": "rebinds_check.ipynb",
    **{f"{t}.ipynb": "patches_builtins.ipynb" for t in
       ("patches_sys_modules", "patches_sys_exit", "input_transformer")},
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def subs(tmp_path_factory):
    """Every tokenization submission, made from the current release."""
    d = tmp_path_factory.mktemp("made") / "tokenization"
    make_submissions.write_folder(d, make_submissions.cases())
    return d


@pytest.fixture(scope="module")
def folder(subs, root, tmp_path_factory):
    """The adversarial folder plus the instructor's own solution and an LMS-named file."""
    d = tmp_path_factory.mktemp("submissions")
    for p in subs.iterdir():
        shutil.copy(p, d / p.name)
    shutil.copy(root / "solutions" / "tokenization" / "tokenization.ipynb", d / "instructor.ipynb")
    # Canvas: lastfirst_userid_submissionid_originalname, a re-upload gets "-1"
    shutil.copy(subs / "wrong_merge.ipynb", d / "smithjane_1001_2001_tokenization.ipynb")
    shutil.copy(subs / "solution_like.ipynb", d / "smithjane_1001_2002_tokenization-1.ipynb")
    roster = d.parent / "roster.csv"
    with open(roster, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "name"])
        w.writerow(["jsmith", "Jane Smith"])
        w.writerow(["absent", "Zoë Absent, Jr."])
    return d, roster


@pytest.fixture(scope="module")
def runs(folder, tmp_path_factory):
    d, roster = folder
    out = tmp_path_factory.mktemp("graded")
    serial = tmp_path_factory.mktemp("graded-serial")
    results = grader.grade("tokenization", d, out, roster=roster, limits=LIMITS, progress=False)
    first = (out / "grades.csv").read_text(encoding="utf-8")
    grader.grade("tokenization", d, out, roster=roster, limits=LIMITS, progress=False)
    second = (out / "grades.csv").read_text(encoding="utf-8")
    few = tmp_path_factory.mktemp("serial") / "tokenization"
    few.mkdir()
    for name in SERIAL:
        shutil.copy(d / name, few / name)
    grader.grade("tokenization", few, serial, roster=roster, limits=LIMITS, progress=False, jobs=1)
    third = (serial / "grades.csv").read_text(encoding="utf-8")
    return out, results, (first, second, third)


@pytest.fixture(scope="module")
def rows(runs, read_grades):
    return read_grades(runs[0] / "grades.csv")


def autograded(out, student):
    return nbformat.read(out / "course" / "autograded" / student / "tokenization" /
                         "tokenization.ipynb", as_version=4)


def outputs_text(nb):
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            parts.append(o.get("text", "") if "text" in o else
                         f"{o.get('ename', '')}: {o.get('evalue', '')}")
    return "\n".join(parts)


def test_serial_grading_has_a_file_of_every_kind(folder):
    """Every file of the folder is in ``SERIAL`` or stands for one there (a new kind of file
    goes into ``SERIAL``)."""
    d, _ = folder
    assert not set(SERIAL) & set(PARALLEL_ONLY)
    assert set(PARALLEL_ONLY.values()) <= set(SERIAL)
    assert {p.name for p in d.iterdir()} == set(SERIAL) | set(PARALLEL_ONLY)


def test_regrades_are_identical_and_parallel_equals_serial(runs):
    first, second, third = runs[2]
    assert first == second, "grading the same folder twice changed grades.csv"
    parallel, serial = (list(csv.reader(io.StringIO(t))) for t in (first, third))
    students = {"jsmith", "absent"} | {  # absent: on the roster, no file
        name.split(".")[0].replace("_", "-") for name in SERIAL if not name.startswith("smith")}
    assert serial[0] == parallel[0]
    assert {row[0] for row in serial[1:]} == students
    assert serial[1:] == [row for row in parallel[1:] if row[0] in students], \
        "parallel and serial grading disagree"


@pytest.mark.parametrize("student", ["solution-like", "alternative", "warns", "instructor",
                                     "jsmith", "edits-tests", "deletes-tests", "moves-tests",
                                     "strips-metadata", "sys-exit-cell", "infinite-loop-cell",
                                     "memory-blowup", "background-process", "huge-output",
                                     "network", "reads-instructor-files"])
def test_full_marks(rows, student):
    r = rows[student]
    assert float(r["score"]) == FULL, (student, r["reasons"])
    assert r["status"] in ("needs manual grading", "graded"), r["status"]


@pytest.mark.parametrize("student,lost", [
    ("wrong-get-stats", "test_get_stats"), ("wrong-merge", "test_merge"),
    ("wrong-train-bpe", "test_train_bpe"), ("wrong-encode", "test_encode"),
    ("wrong-decode", "test_decode"), ("wrong-decode-per-token", "test_decode"),
    ("infinite-loop-function", "test_merge"), ("always-equal", "test_get_stats"),
    ("always-equal", "test_merge"), ("calls-reference", "test_get_stats"),
    ("calls-reference", "test_merge"), ("calls-reference-train", "test_train_bpe"),
])
def test_wrong_answers_lose_their_task(rows, student, lost):
    r = rows[student]
    assert float(r[lost]) == 0, r
    assert float(r["score"]) < FULL
    assert lost in r["reasons"], "a lost mark comes with its reason"


def test_each_wrong_answer_loses_only_what_it_breaks(rows):
    # train_bpe and encode call get_stats and merge, but are checked with the course's (a mistake
    # costs the marks of its own task only); train_bpe, encode and decode are independent
    assert float(rows["wrong-get-stats"]["score"]) == FULL - 2
    assert float(rows["wrong-merge"]["score"]) == FULL - 2
    assert float(rows["wrong-train-bpe"]["score"]) == FULL - 4
    assert float(rows["wrong-encode"]["score"]) == FULL - 3
    assert float(rows["wrong-decode"]["score"]) == FULL - 2


def test_messages_say_what_went_wrong(rows):
    assert "expected: [4, 3, 4]" in rows["wrong-merge"]["reasons"]
    assert "calls the course's reference" in rows["calls-reference"]["reasons"]
    assert "did not finish" in rows["infinite-loop-function"]["reasons"]
    assert "cannot be graded" in rows["always-equal"]["reasons"]


@pytest.mark.parametrize("student,what", [
    ("rebinds-check", "check_get_stats"), ("patches-reference", "course_lib.tokenizer.merge"),
    ("patches-builtins", "builtins.isinstance"), ("patches-sys-modules", "sys.modules"),
    ("patches-sys-exit", "sys.exit"), ("input-transformer", "transformer"),
])
def test_tampering_is_flagged_and_scores_zero_for_what_it_touched(rows, student, what):
    r = rows[student]
    assert r["status"].startswith("failed: tampering"), r["status"]
    assert what in r["status"]
    if student == "rebinds-check":
        assert float(r["test_get_stats"]) == 0
    elif student == "patches-reference":
        assert float(r["test_merge"]) == 0
    else:
        assert float(r["score"]) == 0


@pytest.mark.parametrize("student,reason", [
    ("invalid-json", "invalid JSON"), ("a-pdf", "is a PDF"), ("empty", "empty"),
    ("notes", "not a valid notebook"), ("untouched", "no answer"),
    ("os-exit-cell", "ended early"), ("segfault", "segmentation fault"),
])
def test_broken_submissions_fail_with_a_reason(rows, student, reason):
    r = rows[student]
    assert r["status"].startswith("failed: ") and reason in r["status"], r["status"]
    assert float(r["score"]) < FULL


def test_untouched_release_scores_zero_and_only_its_tests_fail(runs, rows):
    r = rows["untouched"]
    assert float(r["score"]) == 0
    assert r["written_question"] == "unanswered"
    for cell in autograded(runs[0], "untouched").cells:
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        test_cell = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "").startswith("test_")
        assert not errors or (test_cell and errors[0]["ename"] == "AssertionError"), cell.source


def test_roster_students_without_a_file_are_listed(rows):
    assert rows["absent"]["status"] == "not submitted"
    assert rows["absent"]["name"] == "Zoë Absent, Jr."


def test_duplicate_uploads_grade_the_latest(rows):
    r = rows["jsmith"]
    assert r["name"] == "Jane Smith"
    assert "2 files from this student" in r["notes"] and "tokenization-1.ipynb" in r["file"]


def test_csv_is_real_csv_with_one_row_per_student(runs, folder):
    out = runs[0]
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    header = table[0]
    assert header[:5] == ["student_id", "name", "status", "score", "max_score"]
    assert all(len(row) == len(header) for row in table)
    assert len({row[0] for row in table[1:]}) == len(table) - 1


def test_restored_cells_are_noted(rows):
    assert "edited; graded as released" in rows["edits-tests"]["notes"]
    assert "deleted or lost its metadata; restored" in rows["deletes-tests"]["notes"]
    assert "moved" in rows["moves-tests"]["notes"]
    assert "lost its metadata; found by its code" in rows["strips-metadata"]["notes"]


def test_limits_cut_output_loops_and_memory(runs, rows):
    out = runs[0]
    text = outputs_text(autograded(out, "huge-output"))
    assert len(text) < 100_000 and "not kept" in text
    assert "time limit" in rows["infinite-loop-cell"]["notes"]
    text = outputs_text(autograded(out, "memory-blowup"))
    # the hog allocates without touching pages, so the memory limit (not the
    # clock) must be what stops it, on any load
    assert "MemoryError" in text and "time limit" not in rows["memory-blowup"]["notes"]


def test_nothing_started_by_a_notebook_survives(runs):
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 987654" not in ps


@pytest.mark.skipif(not ISOLATED, reason="needs root and util-linux namespaces")
def test_sandbox_has_no_network_and_no_instructor_files(runs):
    out = runs[0]
    assert "Network is unreachable" in outputs_text(autograded(out, "network"))
    text = outputs_text(autograded(out, "reads-instructor-files"))
    assert "READ" not in text and text.count("BLOCKED") == 3


def test_feedback_has_scores_and_no_hidden_tests(runs, rows):
    fb = runs[0] / "feedback"
    for student, r in rows.items():
        if r["status"] == "not submitted":
            assert not (fb / f"{student}.html").exists()
            continue
        page = (fb / f"{student}.html").read_text(encoding="utf-8")
        secrets = ["BEGIN HIDDEN TESTS", "seed=1729", "31337", "n_random=30"]
        if student != "instructor":  # the instructor's notebook has its own answers in it
            secrets.append("BEGIN SOLUTION")
        for secret in secrets:
            assert secret not in page, (student, secret)
    page = (fb / "wrong-merge.html").read_text(encoding="utf-8")
    assert "[grader] 0 / 2 points" in page
    assert "could not be graded" in (fb / "invalid-json.html").read_text(encoding="utf-8")


def test_gradebook_holds_the_scores_and_nbgrader_export_works(runs, rows):
    from nbgrader.api import Gradebook

    ws = runs[0] / "course"
    with Gradebook(f"sqlite:///{ws / 'gradebook.db'}") as gb:
        sub = gb.find_submission("tokenization", "solution-like")
        assert sub.code_score == FULL
        assert sub.needs_manual_grade  # the written answer waits for the instructor
        assert gb.find_submission("tokenization", "wrong-merge").code_score < FULL
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "export", "--to",
                           str(ws / "export.csv")], cwd=ws, capture_output=True, text=True,
                          env=grader.tool_env())
    assert proc.returncode == 0, proc.stderr
    exported = {r["student_id"]: r for r in csv.DictReader(open(ws / "export.csv"))}
    assert float(exported["solution-like"]["raw_score"]) == FULL


def test_manual_scores_survive_a_regrade(subs, tmp_path, read_grades):
    from nbgrader.api import Gradebook

    small = tmp_path / "small"
    small.mkdir()
    shutil.copy(subs / "solution_like.ipynb", small / "Ana Lima.ipynb")
    out = tmp_path / "out"
    grader.grade("tokenization", small, out, limits=LIMITS, progress=False)
    assert read_grades(out / "grades.csv")["ana-lima"]["status"] == "needs manual grading"
    with Gradebook(f"sqlite:///{out / 'course' / 'gradebook.db'}") as gb:
        g = gb.find_grade("written_question", "tokenization", "tokenization", "ana-lima")
        g.manual_score = 2
        gb.db.commit()
    grader.grade("tokenization", small, out, limits=LIMITS, progress=False)
    row = read_grades(out / "grades.csv")["ana-lima"]
    assert row["status"] == "graded"
    with Gradebook(f"sqlite:///{out / 'course' / 'gradebook.db'}") as gb:
        assert gb.find_submission("tokenization", "ana-lima").score == FULL + 2


def test_course_grade_cli_on_a_zip(subs, tmp_path, read_grades):
    import zipfile

    z = tmp_path / "export.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.write(subs / "solution_like.ipynb",
                "Ana Lima_5_assignsubmission_file_/tokenization.ipynb")
        f.write(subs / "wrong_decode.ipynb", "../../Bo Chen.ipynb")
    proc = subprocess.run([sys.executable, "-m", "course_lib.grading.cli", "grade",
                           "tokenization", str(z), "--out", str(tmp_path / "out"),
                           "--cell-timeout", "5"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = read_grades(tmp_path / "out" / "grades.csv")
    assert float(rows["ana-lima"]["score"]) == FULL
    assert float(rows["bo-chen"]["score"]) == FULL - 2
    assert not (tmp_path.parent / "Bo Chen.ipynb").exists()


def test_cli_help_explains_the_csv():
    proc = subprocess.run([sys.executable, "-m", "course_lib.grading.cli", "grade", "--help"],
                          capture_output=True, text=True)
    assert proc.returncode == 0
    for word in ("grades.csv", "status", "not submitted", "needs manual grading", "formgrader"):
        assert word in proc.stdout


def test_student_check_matches_the_visible_tests(subs):
    proc = subprocess.run([sys.executable, "-m", "course_lib.grading.cli", "check",
                           str(subs / "wrong_merge.ipynb"), "--assignment", "tokenization"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "test_merge: 0 / 2" in proc.stdout and "expected: [4, 3, 4]" in proc.stdout
    assert "visible tests: 11 / 13" in proc.stdout  # a wrong merge costs merge only


def test_without_root_the_sandbox_still_grades(subs, monkeypatch):
    """On a student's laptop there are no namespaces: limits and a process group only."""
    monkeypatch.setattr(sandbox, "isolation", lambda: {
        "namespaces": False, "user": None, "missing": ["network", "filesystem", "user"]})
    r = grader.check(subs / "solution_like.ipynb", "tokenization", limits=LIMITS)
    assert r.score == FULL, r.cells
    r = grader.check(subs / "infinite_loop_function.ipynb", "tokenization", limits=LIMITS)
    assert r.cells["test_merge"]["score"] == 0
