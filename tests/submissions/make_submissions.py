"""Make the submissions the grading tests grade: right, wrong, broken and adversarial.

Each case starts from the current released notebook (``assignments/<name>``), as a student would,
and fills in or changes cells; the tests make them into ``tmp_path`` when they run, so they
never go stale when an assignment is released again. ``cases()`` is the tokenization folder,
with every adversarial case of the grading issue (graded once for the course in
``tests/test_grading.py``); ``chapter_cases(name)`` is any other assignment's, made from
``<name>_answers.py`` and ``make_<name>_submissions.py`` (graded in
``tests/test_assignment_grading.py``). To look at a folder::

    python tests/submissions/make_submissions.py [ASSIGNMENT] [OUT]
"""

from __future__ import annotations

import copy
import importlib
import sys
from pathlib import Path

import nbformat

from tokenization_answers import (  # noqa: F401 (the names the tokenization tests use)
    ALTERNATIVE, CORRECT, DECODE_PER_TOKEN, MERGE, WRITTEN, WRONG)

ROOT = Path(__file__).resolve().parents[2]


def release_nb(assignment="tokenization"):
    """The released (student) notebook of an assignment, as a student downloads it."""
    return nbformat.read(ROOT / "assignments" / assignment / f"{assignment}.ipynb", 4)


def gid(cell):
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def fill(answers=None, written=WRITTEN, nb=None):
    """The release with the given answer cells filled in (others left as released)."""
    nb = copy.deepcopy(nb or release_nb())
    for cell in nb.cells:
        g = gid(cell)
        if answers and g in answers:
            cell.source = answers[g]
        if g == "written_question" and written:
            cell.source = written
    return nb


def insert_after(nb, grade_id, source):
    """A new cell of the student's after the cell ``grade_id``."""
    k = next(i for i, c in enumerate(nb.cells) if gid(c) == grade_id)
    nb.cells.insert(k + 1, nbformat.v4.new_code_cell(source, id=f"student-after-{grade_id}"))
    return nb


def edit_cell(nb, grade_id, source):
    """A copy of ``nb`` whose cell ``grade_id`` (a locked one, say) holds ``source``."""
    nb = copy.deepcopy(nb)
    next(c for c in nb.cells if gid(c) == grade_id).source = source
    return nb


def answer_cases(release, fill, answers) -> dict:
    """What every assignment's folder starts with: the untouched release, the solution's
    answers, the alternative ones, and one notebook per wrong answer of ``answers.WRONG``
    (``{task: source}`` or ``{name: (task, source)}``) among right ones."""
    c = {"untouched": release, "solution_like": fill(answers.CORRECT),
         "alternative": fill(answers.ALTERNATIVE)}
    for name, wrong in answers.WRONG.items():
        task, src = wrong if isinstance(wrong, tuple) else (name, wrong)
        c[f"wrong_{name}"] = fill({**answers.CORRECT, task: src})
    return c


def chapter_cases(assignment: str) -> dict:
    """Every notebook of an assignment's folder, from its current release: those of
    ``answer_cases`` from ``<assignment>_answers.py``, and the broken ones of
    ``make_<assignment>_submissions.py`` (``BROKEN``: {name: answer sources that replace the
    solution's}; ``EDITED_LOCKED``: a locked cell edited around wrong answers)."""
    answers = importlib.import_module(f"{assignment}_answers")
    broken = importlib.import_module(f"make_{assignment}_submissions")
    release = release_nb(assignment)

    def fill_in(sources=None):
        return fill(sources, written=broken.WRITTEN, nb=release)

    c = answer_cases(release, fill_in, answers)
    for name, sources in broken.BROKEN.items():
        c[name] = fill_in({**answers.CORRECT, **sources})
    if hasattr(broken, "EDITED_LOCKED"):
        cell, source, sources = broken.EDITED_LOCKED
        c["edited_locked_cell"] = edit_cell(fill_in({**answers.CORRECT, **sources}), cell, source)
    return c


def cases() -> dict:
    c = {}
    c["untouched"] = release_nb()
    c["solution_like"] = fill(CORRECT)
    c["alternative"] = fill(ALTERNATIVE)
    for task, src in WRONG.items():
        c[f"wrong_{task}"] = fill({**CORRECT, task: src})
    c["wrong_decode_per_token"] = fill({**CORRECT, "decode": DECODE_PER_TOKEN})
    c["calls_reference"] = fill({**CORRECT, "get_stats": "from course_lib.tokenizer import get_stats",
                                 "merge": '''import course_lib.tokenizer as tk

def merge(ids, pair, idx):
    return tk.merge(ids, pair, idx)'''})
    c["calls_reference_train"] = fill({**CORRECT, "train_bpe": '''from course_lib.tokenizer import RegexTokenizer

def train_bpe(text, vocab_size):
    t = RegexTokenizer(pattern=r"(?s).+")
    t.train(text, vocab_size)
    return t.merges'''})
    c["warns"] = fill({**CORRECT, "get_stats": '''import sys, warnings

def get_stats(ids):
    warnings.warn("counting pairs", UserWarning)
    print("debug: counting", len(ids), file=sys.stderr)
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts'''})
    c["unseeded_random"] = fill({**CORRECT, "merge": "import random\n\n" + MERGE.replace(
        "def merge(ids, pair, idx):\n",
        "def merge(ids, pair, idx):  # wrong about half the time, decided by an unseeded generator\n"
        "    if random.random() < 0.5:\n"
        "        return list(ids)\n")})
    # -- tampering ---------------------------------------------------------------------------
    c["rebinds_check"] = insert_after(fill({**CORRECT, "get_stats": WRONG["get_stats"]}), "get_stats",
                                      "from course_lib.grading import tokenization as checks\n"
                                      "checks.check_get_stats = lambda *a, **k: None")
    c["patches_reference"] = insert_after(fill({**CORRECT, "merge": WRONG["merge"]}), "merge",
                                          "import course_lib.tokenizer as tk\ntk.merge = merge")
    c["patches_builtins"] = insert_after(fill(CORRECT), "get_stats",
                                         "import builtins\n_real = builtins.isinstance\n"
                                         "builtins.isinstance = lambda o, t: _real(o, t)")
    c["patches_sys_modules"] = insert_after(fill(CORRECT), "get_stats",
                                            "import sys, types\nfake = types.ModuleType('fake')\n"
                                            "sys.modules['course_lib.grading.checks'] = fake")
    c["patches_sys_exit"] = insert_after(fill(CORRECT), "get_stats",
                                         "import sys\nsys.exit = lambda *a: None")
    c["always_equal"] = fill({**CORRECT, "get_stats": '''class Anything(dict):
    def __eq__(self, other):
        return True
    def __bool__(self):
        return True

def get_stats(ids):
    return Anything()''', "merge": '''class Anything:
    def __eq__(self, other):
        return True
    def __bool__(self):
        return True

def merge(ids, pair, idx):
    return Anything()'''})
    c["input_transformer"] = insert_after(fill({**CORRECT, "get_stats": WRONG["get_stats"]}), "get_stats",
                                          "get_ipython().input_transformers_post.append("
                                          "lambda lines: ['pass\\n'])")
    # -- test cells edited, deleted, moved, metadata stripped (restored: full marks) ---------
    nb = fill(CORRECT)
    for cell in nb.cells:
        if (gid(cell) or "").startswith("test_"):
            cell.source = "print('tests? what tests?')"
    c["edits_tests"] = nb
    nb = fill(CORRECT)
    nb.cells = [cell for cell in nb.cells if not (gid(cell) or "").startswith("test_")]
    c["deletes_tests"] = nb
    nb = fill(CORRECT)
    tests = [cell for cell in nb.cells if (gid(cell) or "").startswith("test_")]
    nb.cells = tests + [cell for cell in nb.cells if cell not in tests]
    c["moves_tests"] = nb
    nb = fill(CORRECT)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    c["strips_metadata"] = nb
    # -- crashes, loops, limits ----------------------------------------------------------------
    c["sys_exit_cell"] = insert_after(fill(CORRECT), "get_stats", "import sys\nsys.exit(1)")
    c["os_exit_cell"] = insert_after(fill(CORRECT), "merge", "import os\nos._exit(0)")
    c["segfault"] = insert_after(fill(CORRECT), "merge", "import ctypes\nctypes.string_at(0)")
    c["infinite_loop_cell"] = insert_after(fill(CORRECT), "decode", "while True:\n    pass")
    c["infinite_loop_function"] = fill({**CORRECT, "merge": '''def merge(ids, pair, idx):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(idx)
        else:
            out.append(ids[i])
            i += 1
    return out'''})
    c["memory_blowup"] = insert_after(fill(CORRECT), "get_stats", """def hog():
    held = []
    while True:
        # 1 GiB at a time; bytes(n) is calloc'd, so the address-space limit is
        # hit within milliseconds rather than after seconds of zeroing pages,
        # which on a loaded machine could outlast the cell's time limit and make
        # the outcome (MemoryError or timeout) depend on the load
        held.append(bytes(2**30))

hog()""")
    c["background_process"] = insert_after(fill(CORRECT), "get_stats",
                                           "import subprocess\n"
                                           "subprocess.Popen(['sleep', '987654'], start_new_session=True)")
    c["huge_output"] = insert_after(fill(CORRECT), "get_stats",
                                    "for _ in range(200):\n    print('x' * 50_000)")
    c["network"] = insert_after(fill(CORRECT), "get_stats", '''import socket
try:
    socket.create_connection(("10.255.255.1", 80), timeout=3)
    print("NETWORK: connected")
except OSError as e:
    print("NETWORK:", e)''')
    c["reads_instructor_files"] = insert_after(fill(CORRECT), "get_stats", '''import pathlib, course_lib
root = pathlib.Path(course_lib.__file__).resolve().parents[1]
for p in [root / "solutions" / "tokenization" / "tokenization.ipynb", root / "gradebook.db",
          root / "tests" / "submissions" / "make_submissions.py"]:
    try:
        data = p.read_bytes()
        print("READ", p.name, len(data), b"HIDDEN TESTS" in data)
    except OSError as e:
        print("BLOCKED", p.name, type(e).__name__)''')
    return c


def not_notebooks() -> dict:
    return {"invalid_json.ipynb": b'{"cells": [', "a_pdf.ipynb": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
            "empty.ipynb": b"", "notes.txt": "my answers are in my head\n".encode()}


def write_folder(out: Path, notebooks: dict, extra_files=("invalid_json.ipynb", "a_pdf.ipynb",
                                                           "empty.ipynb", "notes.txt")) -> None:
    """Replace ``out``'s files with ``notebooks`` ({name: notebook}) and the named files of
    ``not_notebooks()``."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    for name, nb in notebooks.items():
        nbformat.write(nb, out / f"{name}.ipynb")
    not_nbs = not_notebooks()
    for name in extra_files:
        (out / name).write_bytes(not_nbs[name])
    print(f"wrote {len(list(out.iterdir()))} files to {out}")


def main(argv=None):
    """``make_submissions.py [ASSIGNMENT] [OUT]``: write an assignment's folder (tokenization's
    by default, with its files that are not notebooks) to look at."""
    args = sys.argv[1:] if argv is None else argv
    assignment = args[0] if args else "tokenization"
    out = Path(args[1]) if len(args) > 1 else Path("submissions") / assignment
    if assignment == "tokenization":
        write_folder(out, cases())
    else:
        write_folder(out, chapter_cases(assignment), extra_files=())


if __name__ == "__main__":
    main()
