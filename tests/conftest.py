"""Shared test support.

- ``tests/submissions`` is importable (``pythonpath`` in pyproject.toml): the answers modules
  ``<assignment>_answers.py`` and the notebook makers ``make_submissions.py``.
- Fixtures for what several test files need: the repository root, reading ``grades.csv``,
  running the ``course`` console script.
- Each test file is one ``xdist_group`` (``make test`` runs ``--dist loadgroup``), so a file's
  module fixtures are made once, on one worker, as with ``--dist loadfile``; a test with an
  ``assignment`` parameter is grouped by that assignment instead, so the five assignments of
  tests/test_assignment_grading.py are graded side by side on both workers.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        group = f"assignment-{params['assignment']}" if "assignment" in params \
            else item.path.name
        item.add_marker(pytest.mark.xdist_group(group))


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
