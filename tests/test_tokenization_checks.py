"""The tokenization assignment's checks and the grading core on their own (fast): right in
both directions, and hard to fool.

Every check must pass a correct implementation written differently from the reference and fail
each wrong one with a message that names the input, the expected and the actual value. The
implementations are the ones the end-to-end grading test submits (tests/submissions).
"""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from course_lib import tokenizer as tok
from course_lib.grading import checks, lms, verify
from course_lib.grading import notebook as nbtools
from course_lib.grading import tokenization as T

import make_submissions as subs

ROOT = Path(__file__).resolve().parents[1]


def load(answers: dict) -> dict:
    ns: dict = {}
    for name in ("get_stats", "merge", "train_bpe", "encode", "decode"):
        exec(answers.get(name, subs.CORRECT[name]), ns)
    return ns


@pytest.mark.parametrize("task", list(T.TASKS))
@pytest.mark.parametrize("impl", ["correct", "alternative"])
def test_correct_implementations_pass(task, impl):
    ns = load(subs.CORRECT if impl == "correct" else subs.ALTERNATIVE)
    getattr(T, f"check_{task}")(ns[task])
    getattr(T, f"check_{task}")(ns[task], seed=99, n_random=20)


@pytest.mark.parametrize("task", list(subs.WRONG))
def test_wrong_implementations_fail_with_input_expected_actual_and_hint(task):
    ns = load({task: subs.WRONG[task]})
    with pytest.raises(AssertionError) as e:
        getattr(T, f"check_{task}")(ns[task])
    msg = str(e.value)
    assert task in msg and "hint:" in msg
    assert "expected:" in msg or "raised" in msg


def test_decode_token_by_token_fails():
    ns = load({"decode": subs.DECODE_PER_TOKEN})
    with pytest.raises(AssertionError, match="expected"):
        T.check_decode(ns["decode"])


@pytest.mark.parametrize("make", [
    lambda: tok.get_stats,
    lambda: (lambda ids: tok.get_stats(ids)),
    lambda: functools.partial(tok.get_stats),
    lambda: (lambda ids: T.TASKS["get_stats"].reference(ids)),
])
def test_calling_the_reference_is_caught(make):
    with pytest.raises(AssertionError, match="reference"):
        T.check_get_stats(make())


def test_a_class_calling_the_reference_is_caught():
    def train_bpe(text, vocab_size):
        t = tok.BasicTokenizer()
        t.train(text, vocab_size)
        return t.merges
    with pytest.raises(AssertionError, match="reference"):
        T.check_train_bpe(train_bpe)


def test_poisoning_is_undone_even_when_the_student_raises():
    code = tok.get_stats.__code__
    with pytest.raises(ZeroDivisionError):
        with checks.poison_references(["course_lib.tokenizer"]):
            1 / 0
    assert tok.get_stats.__code__ is code and tok.get_stats([1, 2]) == {(1, 2): 1}


class AlwaysEqual(dict):
    def __eq__(self, other):
        return True

    def items(self):
        return [((1, 2), 2)]


class Spoof:
    __class__ = dict  # isinstance(Spoof(), dict) is True

    def __eq__(self, other):
        return True


def test_to_data_reads_values_not_objects():
    assert checks.to_data(AlwaysEqual()) == {"$dict": []}
    with pytest.raises(checks.UnsupportedResult):
        checks.to_data(Spoof())
    assert checks.to_data(np.int64(3)) == 3
    assert checks.to_data({(1, 2): [3, (4,)]}) == {"$dict": [[{"$tuple": [1, 2]}, [3, {"$tuple": [4]}]]]}
    for value in [{(1, 2): 3}, [1, 2.5, "x", None, True], b"\xff", float("nan")]:
        back = checks.from_data(checks.to_data(value))
        assert repr(back) == repr(value)
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert np.array_equal(checks.from_data(checks.to_data(t)), t.numpy())


def test_compare_points_at_the_first_difference():
    assert checks.compare_exact([1, 2, 3], [1, 2, 4]) == "4 instead of 3 at [2]"
    assert "missing key" in checks.compare_exact({(1, 2): 1}, {})
    assert checks.compare_exact([1, 2], (1, 2)) is None  # a tuple is a fine sequence
    assert "length" in checks.compare_exact([1], [1, 2])


def test_hidden_tests_use_other_inputs_than_the_visible_ones():
    src = nbformat.read(ROOT / "solutions" / "tokenization" / "tokenization.ipynb", 4)
    rel = nbformat.read(ROOT / "assignments" / "tokenization" / "tokenization.ipynb", 4)
    visible = {c.grade_id: c.calls for c in verify.graded_cells(rel)}
    for cell in verify.graded_cells(src):
        hidden = [c for c in cell.calls if c not in visible[cell.grade_id]]
        assert hidden, f"{cell.grade_id} has no hidden test"
        seen = {repr(a) for call in visible[cell.grade_id] for a in verify.resolve(call)[2]}
        new = {repr(a) for call in hidden for a in verify.resolve(call)[2]}
        assert new - seen, f"{cell.grade_id}: hidden tests repeat the visible inputs"


def test_test_cells_must_be_readable_without_running_them():
    with pytest.raises(ValueError, match="not of the form"):
        verify.parse_test_cell("from course_lib.grading import tokenization as checks\n"
                               "assert merge([1], (1, 2), 3) == [1]")
    with pytest.raises(ValueError, match="non-literal"):
        verify.parse_test_cell("from course_lib.grading import tokenization as checks\n"
                               "checks.check_merge(merge, seed=len('x'))")


# -- restoring test cells ------------------------------------------------------------------------


def release():
    return nbformat.read(ROOT / "assignments" / "tokenization" / "tokenization.ipynb", 4)


def test_restore_puts_back_edited_deleted_and_moved_tests():
    rel = release()
    for case in ("edits_tests", "deletes_tests", "moves_tests", "strips_metadata"):
        nb, notes = nbtools.restore(subs.cases()[case], rel)
        tests = [c for c in nb.cells if nbtools.is_test(c)]
        assert [c.source for c in tests] == [c.source for c in rel.cells if nbtools.is_test(c)]
        order = [nbtools.grade_id(c) for c in nb.cells if nbtools.grade_id(c)]
        assert order.index("get_stats") < order.index("test_get_stats") < order.index("merge")
        assert notes, case


def test_restore_keeps_the_students_own_cells():
    nb = subs.insert_after(subs.fill(subs.CORRECT), "get_stats", "helper = 42")
    restored, notes = nbtools.restore(nb, release())
    assert any(c.source == "helper = 42" for c in restored.cells) and not notes


# -- LMS exports ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name,key,n", [
    ("smithjane_1001_2001_tokenization.ipynb", "smithjane", 0),
    ("smithjane_LATE_1001_2001_tokenization-2.ipynb", "smithjane", 2),
    ("José García_77_assignsubmission_file_tokenization.ipynb", "José García", 0),
    ("García, José.ipynb", "García, José", 0),
    ("García, José (1).ipynb", "García, José", 1),
])
def test_lms_file_names(name, key, n):
    assert lms.parse_name(Path(name)) == (key, n)


def test_collect_matches_a_roster_and_reports_what_is_odd(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for name in ["garciajose_1_2_tok.ipynb", "garciajose_1_3_tok-1.ipynb", "Ana Lima.ipynb",
                 "Stranger.ipynb", ".DS_Store"]:
        (d / name).write_text("{}")
    roster = [{"id": "jg", "name": "José García"}, {"id": "al", "name": "Ana Lima"},
              {"id": "zz", "name": "Zoë Z"}]
    got, notes = lms.collect(d, roster, tmp_path / "unpacked")
    by = {s.student_id: s for s in got}
    assert by["jg"].path.name == "garciajose_1_3_tok-1.ipynb" and "2 files" in by["jg"].notes[0]
    assert by["al"].path.name == "Ana Lima.ipynb"
    assert by["zz"].path is None
    assert "not on the roster" in by["stranger"].notes[0]
    assert len(got) == 4


def test_zip_import_cannot_escape_its_folder(tmp_path):
    z = tmp_path / "x.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("../../../../escape.ipynb", "{}")
        f.writestr("/abs/Ana.ipynb", "{}")
        f.writestr("__MACOSX/._Ana.ipynb", "junk")
    files = lms.unpack(z, tmp_path / "u")
    assert all((tmp_path / "u") in p.parents for p in files)
    assert sorted(p.name for p in files) == ["Ana.ipynb", "escape.ipynb"]


def test_not_notebooks_get_a_reason(tmp_path):
    for name, data in subs.not_notebooks().items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(nbtools.SubmissionError):
            nbtools.read_submission(p)
