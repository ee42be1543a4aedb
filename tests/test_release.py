"""``assignments/`` is exactly what ``course release`` makes from ``solutions/``, and its
release record matches the ``course_lib`` on disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from course_lib.grading import grader

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
