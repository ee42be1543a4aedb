"""Reading submitted notebooks and putting their test cells back as released.

A student may edit, delete, reorder or strip the metadata of test cells, add cells of their own,
or submit something that is not a notebook at all. ``read_submission`` says clearly what is
wrong with a file; ``restore`` keeps every cell the student wrote and puts each released test
(and other locked) cell back, with the released source, right after the cell that precedes it
in the release, so that the tests run in place whatever the student did to them.
"""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path


class SubmissionError(Exception):
    """A submission that cannot be graded; the message is the reason shown to the instructor."""


def nbmeta(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def is_test(cell) -> bool:
    m = nbmeta(cell)
    return bool(m.get("grade")) and not m.get("solution") and cell.get("cell_type") == "code"


def is_locked(cell) -> bool:
    m = nbmeta(cell)
    return bool(m.get("locked")) and not m.get("solution")


def is_answer(cell) -> bool:
    return bool(nbmeta(cell).get("solution"))


def grade_id(cell):
    return nbmeta(cell).get("grade_id")


def source(cell) -> str:
    """A cell's source as one string (on disk it may be a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


class _Notebook:
    def __init__(self, data):
        self.cells = data["cells"]
        self.metadata = data.get("metadata", {})


def read_json(path) -> _Notebook:
    """A trusted notebook (the instructor's) read as plain JSON, without importing nbformat."""
    return _Notebook(json.loads(Path(path).read_text(encoding="utf-8")))


def read_submission(path: Path, max_bytes: int = 20 << 20):
    """The notebook in ``path``, or ``SubmissionError`` saying why it cannot be graded."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise SubmissionError(f"cannot read the file ({e.strerror})") from None
    if size > max_bytes:
        raise SubmissionError(f"the file is {size / 1e6:.1f} MB; notebooks over "
                              f"{max_bytes / 1e6:.0f} MB are not graded (clear outputs and resubmit)")
    raw = path.read_bytes()
    if not raw.strip():
        raise SubmissionError("the file is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        kind = "a PDF" if raw.startswith(b"%PDF") else "a zip archive" if raw.startswith(b"PK") \
            else "a binary file"
        raise SubmissionError(f"not a notebook: {path.name} is {kind}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SubmissionError(f"not a valid notebook: invalid JSON at line {e.lineno}, column "
                              f"{e.colno} ({e.msg}); was the file edited outside Jupyter?") from None
    if not isinstance(data, dict) or "cells" not in data or not isinstance(data["cells"], list):
        raise SubmissionError(f"not a notebook: {path.name} is JSON without a list of cells")
    import nbformat

    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as e:  # nbformat raises several kinds
        raise SubmissionError(f"not a valid notebook: {e}") from None
    for cell in nb.cells:
        if cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise SubmissionError("not a valid notebook: a cell has no known cell_type")
        if not isinstance(cell.get("source", ""), str):
            raise SubmissionError("not a valid notebook: a cell's source is not text")
    return nb


def _defined_names(source: str) -> set:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _stripped_answer(rel, release, cells):
    """The student's cell that answers the released answer cell ``rel`` although it lost its
    metadata, and how it was found; ``(None, None)`` when there is none."""
    if rel.cell_type == "code":
        wanted = _defined_names(rel.source)
        for c in cells:
            if c.cell_type == "code" and not grade_id(c) and wanted and \
                    wanted <= _defined_names(c.source):
                return c, "by its code"
        return None, None
    k = release.cells.index(rel)
    question = release.cells[k - 1].source if k else None
    for c, nxt in zip(cells, cells[1:]):
        if question and c.source == question and nxt.cell_type == rel.cell_type \
                and not grade_id(nxt):
            return nxt, "after its question"
    return None, None


def restore(submitted, release):
    """A notebook to run: the student's cells, with released test/locked cells put back.

    Returns ``(notebook, notes)``; ``notes`` lists what was restored (edited, deleted, moved or
    metadata-stripped cells), for the instructor and the feedback.
    """
    release_ids = {grade_id(c): c for c in release.cells if grade_id(c)}
    locked_ids = [grade_id(c) for c in release.cells if grade_id(c) and is_locked(c)]
    notes = []
    cells = []
    seen = set()
    # keep the student's cells; drop their copies of locked cells (put back below)
    for cell in submitted.cells:
        gid = grade_id(cell)
        if gid in release_ids and gid not in seen:
            seen.add(gid)
            rel = release_ids[gid]
            if is_locked(rel):
                if cell.get("source", "") != rel.get("source", ""):
                    notes.append(f"test cell {gid} was edited; graded as released"
                                 if is_test(rel) else f"locked cell {gid} was edited; restored")
                continue
            if is_answer(rel):
                c = copy.deepcopy(cell)
                c.cell_type = rel.cell_type
                c.metadata["nbgrader"] = copy.deepcopy(rel.metadata["nbgrader"])
                cells.append(c)
                continue
        c = copy.deepcopy(cell)
        c.get("metadata", {}).pop("nbgrader", None)  # not a graded cell any more
        cells.append(c)
    # answer cells whose metadata was stripped: a code answer is found by the functions it
    # defines, a written answer by the released cell just before it (the question)
    for gid, rel in release_ids.items():
        if gid in seen or not is_answer(rel):
            continue
        found, how = _stripped_answer(rel, release, cells)
        if found is None:
            notes.append(f"answer cell {gid} is missing")
            continue
        found.metadata["nbgrader"] = copy.deepcopy(rel.metadata["nbgrader"])
        notes.append(f"answer cell {gid} had lost its metadata; found {how}")
        seen.add(gid)
    # put every locked cell back, right after the cell that precedes it in the release
    order = [grade_id(c) for c in release.cells]
    for gid in locked_ids:
        rel = release_ids[gid]
        if gid not in seen and is_test(rel):
            notes.append(f"test cell {gid} was deleted or lost its metadata; restored")
        i = order.index(gid)
        pos = None
        for prev in reversed(order[:i]):
            idx = next((k for k, c in enumerate(cells) if prev and grade_id(c) == prev), None)
            if idx is not None:
                pos = idx + 1
                break
        cells.insert(len(cells) if pos is None and i > 0 else (pos or 0), copy.deepcopy(rel))
    submitted_order = [grade_id(c) for c in submitted.cells if grade_id(c) in release_ids]
    if submitted_order != [g for g in order if g in submitted_order]:
        notes.append("graded cells were moved; tests run where the release has them")
    nb = copy.deepcopy(release)
    nb.cells = cells
    ids = set()
    for k, c in enumerate(nb.cells):  # restored cells may share an id with the student's copy
        if c.get("id") in ids:
            c["id"] = f"restored-{k}"
        ids.add(c.get("id"))
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    return nb, notes
