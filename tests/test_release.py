"""``assignments/`` is exactly what ``course release`` makes from ``solutions/``, and its
release record matches the ``course_lib`` on disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from course_lib.grading import grader, verify

ROOT = Path(__file__).resolve().parents[1]
FIX = "run `course release` (or `make release`) and commit assignments/ and solutions/*/release.json"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("course")
    shutil.copytree(ROOT / "solutions", tmp / "solutions")
    shutil.copy(ROOT / "nbgrader_config.py", tmp / "nbgrader_config.py")
    course = grader.Course(tmp)
    names = grader.release(course)
    return course, names


def strip(nb):
    for c in nb.cells:
        c.pop("id", None)
    return nb


@pytest.mark.slow
def test_assignments_are_what_release_makes(fresh):
    course, names = fresh
    shipped = sorted(p.name for p in (ROOT / "assignments").iterdir() if p.is_dir())
    assert shipped == sorted(names), FIX
    for name in names:
        made = sorted(p.relative_to(course.release_dir / name)
                      for p in (course.release_dir / name).rglob("*") if p.is_file())
        have = sorted(p.relative_to(ROOT / "assignments" / name)
                      for p in (ROOT / "assignments" / name).rglob("*") if p.is_file())
        assert made == have, FIX
        for rel in made:
            a, b = course.release_dir / name / rel, ROOT / "assignments" / name / rel
            if rel.suffix == ".ipynb":
                assert strip(nbformat.read(a, 4)) == strip(nbformat.read(b, 4)), f"{b}: {FIX}"
            else:
                assert a.read_bytes() == b.read_bytes(), f"{b}: {FIX}"


@pytest.mark.slow
def test_release_record_matches_course_lib(fresh):
    course, names = fresh
    for name in names:
        recorded = json.loads((ROOT / "solutions" / name / "release.json").read_text())
        made = json.loads(course.manifest_path(name).read_text())
        assert recorded == made, f"course_lib changed since {name} was released: {FIX}"


def test_no_solution_or_hidden_test_in_assignments():
    for p in (ROOT / "assignments").rglob("*"):
        if p.is_file():
            text = p.read_text(encoding="utf-8", errors="replace")
            for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "HIDDEN TESTS"):
                assert marker not in text, f"{p} contains {marker!r}"


# ------------------------------------------------------------------------------------------
# The release record holds what grading really depends on, and only that
# ------------------------------------------------------------------------------------------


def _copy_recorded(record: dict, tmp: Path) -> Path:
    for rel in record:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp / rel)
    return tmp


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_record_names_the_files_grading_opens():
    """Finetuning's checks encode with the shipped tokenizer: it is in the record, as are the
    functions of course_lib.chat that the references run; chat's chat loop is not."""
    record = json.loads((ROOT / "solutions/finetuning/release.json").read_text())["course_lib"]
    assert "course_lib/assets/course_tokenizer.model" in record
    chat = record["course_lib/chat.py"]["functions"]
    assert {"render_conversation", "masked_cross_entropy"} <= set(chat)
    assert "chat_loop" not in chat and "reply" not in chat
    assert "course_lib/grading/finetuning.py" in record  # its own grading module, whole


def test_reshipping_an_asset_grading_uses_makes_the_record_stale(tmp_path):
    record = json.loads((ROOT / "solutions/finetuning/release.json").read_text())["course_lib"]
    root = _copy_recorded(record, tmp_path)
    verify.check_manifest(record, root)  # the copy is the release
    with (root / "course_lib/assets/course_tokenizer.model").open("a") as f:
        f.write("\n")
    with pytest.raises(RuntimeError, match="course_tokenizer.model"):
        verify.check_manifest(record, root)


def test_a_change_grading_does_not_run_keeps_the_record_valid(tmp_path):
    """A new helper in checks.py and a changed chat loop in chat.py (chapter 7 extending chat)
    leave finetuning's record valid; a changed render_conversation does not."""
    record = json.loads((ROOT / "solutions/finetuning/release.json").read_text())["course_lib"]
    root = _copy_recorded(record, tmp_path)
    with (root / "course_lib/grading/checks.py").open("a") as f:
        f.write("\n\ndef a_new_shared_helper(x):\n    return x\n")
    _edit(root / "course_lib/chat.py", "def chat_loop(", "def chat_loop_v2(*a):\n    pass\n\n\ndef chat_loop(")
    verify.check_manifest(record, root)
    _edit(root / "course_lib/chat.py", "def render_conversation(conversation, tokenizer)",
          "def render_conversation(conversation, tokenizer, _=None)")
    with pytest.raises(RuntimeError, match=r"chat\.py \(.*render_conversation"):
        verify.check_manifest(record, root)


@pytest.mark.parametrize("name", ["transformer", "tokenization", "inference"])
def test_a_module_an_assignment_never_imports_is_not_in_its_record(name):
    record = json.loads((ROOT / "solutions" / name / "release.json").read_text())["course_lib"]
    assert "course_lib/chat.py" not in record and "course_lib/pipeline.py" not in record
    assert not [k for k in record if "/assets/" in k], "these checks open no shipped file"
