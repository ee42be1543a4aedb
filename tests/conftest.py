"""Shared test support.

- ``tests/submissions`` is importable (``pythonpath`` in pyproject.toml): the answers modules
  ``<assignment>_answers.py`` and the notebook makers ``make_submissions.py``.
- Fixtures for what several test files need: the repository root, reading ``grades.csv``,
  running the ``course`` console script.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root (``solutions/``, ``assignments/``, ``book/``)."""
    return ROOT


def _read_grades(path) -> dict:
    with open(path, newline="", encoding="utf-8") as f:
        return {r["student_id"]: r for r in csv.DictReader(f)}


def _csv_rows(path) -> list:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="session")
def read_grades():
    """``read_grades(path)``: a ``grades.csv`` as ``{student_id: row}``."""
    return _read_grades


@pytest.fixture(scope="session")
def csv_rows():
    """``csv_rows(path)``: a CSV file as a list of rows, header first."""
    return _csv_rows


def _course(*args, timeout=300):
    script = Path(sys.executable).with_name("course")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "course_lib.grading.cli"]
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="session")
def course():
    """``course(*args)``: the ``course`` console script that instructors and students run (the
    module when the script is not installed), as a finished process."""
    return _course


# -- spreading the round trip over the workers ------------------------------------------------------
# `make test` runs `pytest -n 2 --dist loadfile`: each file goes to one worker, so that a file's
# session fixtures are made once. The assignment round trip (test_assignment_grading.py) is one
# parametrised file holding every assignment's grading (nine rows, 1-3 worker-minutes each); sent
# whole to one worker it would leave the other idle. Its unit is the assignment instead (the
# first parameter of every test there; its fixtures are cached per assignment), so the rows are
# shared between the workers, each row whole on one (test_assignment_grading.py checks that the
# installed pytest-xdist honours this). `--dist loadgroup` with `xdist_group` marks would do
# this too, but it sends every unmarked test on its own, which makes the other files' module
# fixtures once per test.
SPLIT_BY_ASSIGNMENT = ("tests/test_assignment_grading.py",)


def scope_of(nodeid: str) -> str:
    """The unit of work that ``nodeid`` belongs to: its file, or for a file in
    ``SPLIT_BY_ASSIGNMENT`` its file and first parameter (``file::assignment``)."""
    file = nodeid.split("::", 1)[0]
    if file in SPLIT_BY_ASSIGNMENT and nodeid.endswith("]") and "[" in nodeid:
        first = nodeid[nodeid.rindex("[") + 1:-1].split("-", 1)[0]
        return f"{file}::{first}"
    return file


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ByFileOrAssignment(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return ByFileOrAssignment(config, log)
