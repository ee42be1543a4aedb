"""Make the submissions the grading tests grade: right, wrong, broken and adversarial.

Each case starts from the released notebook (``assignments/tokenization``), as a student would,
and fills in or changes cells. Outcomes are asserted in ``tests/test_grading.py``. Run after
``course release`` changes the release::

    python tests/submissions/make_submissions.py
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
OUT = HERE / "tokenization"

# -- answers ------------------------------------------------------------------------------------

GET_STATS = '''def get_stats(ids):
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts'''
MERGE = '''def merge(ids, pair, idx):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(idx)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out'''
TRAIN = '''def train_bpe(text, vocab_size):
    ids = list(text.encode("utf-8"))
    merges = {}
    for idx in range(256, vocab_size):
        stats = get_stats(ids)
        if not stats:
            break
        pair = min(stats, key=lambda p: (-stats[p], p))
        ids = merge(ids, pair, idx)
        merges[pair] = idx
    return merges'''
ENCODE = '''def encode(text, merges):
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        stats = get_stats(ids)
        pair = min(stats, key=lambda p: merges.get(p, float("inf")))
        if pair not in merges:
            break
        ids = merge(ids, pair, merges[pair])
    return ids'''
DECODE = '''def decode(ids, merges):
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), idx in merges.items():
        vocab[idx] = vocab[a] + vocab[b]
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")'''
CORRECT = {"get_stats": GET_STATS, "merge": MERGE, "train_bpe": TRAIN, "encode": ENCODE,
           "decode": DECODE}

# Correct, written differently from the solution (Counter, regex-free slicing, a different
# encode: apply merges in learned order, which gives the same ids for byte-level BPE).
ALTERNATIVE = {
    "get_stats": '''import collections

def get_stats(ids):
    return dict(collections.Counter(zip(ids, ids[1:])))''',
    "merge": '''def merge(ids, pair, idx):
    out = list(ids)
    k = 0
    while k < len(out) - 1:
        if out[k] == pair[0] and out[k + 1] == pair[1]:
            out[k:k + 2] = [idx]
        k += 1
    return out''',
    "train_bpe": '''def train_bpe(text, vocab_size):
    seq = list(text.encode())
    learned = {}
    while len(learned) < vocab_size - 256:
        counts = get_stats(seq)
        if not counts:
            return learned
        top = max(counts.values())
        best = sorted(p for p, c in counts.items() if c == top)[0]
        new = 256 + len(learned)
        learned[best] = new
        seq = merge(seq, best, new)
    return learned''',
    "encode": '''def encode(text, merges):
    ids = list(text.encode())
    for pair, idx in sorted(merges.items(), key=lambda kv: kv[1]):
        ids = merge(ids, pair, idx)
    return ids''',
    "decode": '''def decode(ids, merges):
    parts = {}
    def token_bytes(i):
        if i < 256:
            return bytes([i])
        if i not in parts:
            a, b = next(p for p, j in merges.items() if j == i)
            parts[i] = token_bytes(a) + token_bytes(b)
        return parts[i]
    return bytes().join(token_bytes(i) for i in ids).decode("utf-8", "replace")''',
}

# One wrong implementation per task (each must lose exactly that task's points).
WRONG = {
    "get_stats": '''def get_stats(ids):  # misses the last pair
    counts = {}
    for i in range(len(ids) - 2):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
    return counts''',
    "merge": '''def merge(ids, pair, idx):  # does not skip the second id of a merged pair
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(idx)
        else:
            out.append(ids[i])
        i += 1
    return out''',
    "train_bpe": '''def train_bpe(text, vocab_size):  # ties go to the first pair seen, not the smallest
    ids = list(text.encode("utf-8"))
    merges = {}
    for idx in range(256, vocab_size):
        stats = get_stats(ids)
        if not stats:
            break
        pair = max(stats, key=stats.get)
        ids = merge(ids, pair, idx)
        merges[pair] = idx
    return merges''',
    "encode": '''def encode(text, merges):  # applies the most frequent pair, not the earliest merge
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        stats = get_stats(ids)
        known = [p for p in stats if p in merges]
        if not known:
            break
        pair = max(known, key=lambda p: (stats[p], -merges[p]))
        ids = merge(ids, pair, merges[pair])
    return ids''',
    "decode": '''def decode(ids, merges):  # strict UTF-8: raises on a cut character
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), idx in merges.items():
        vocab[idx] = vocab[a] + vocab[b]
    return b"".join(vocab[i] for i in ids).decode("utf-8")''',
}

DECODE_PER_TOKEN = '''def decode(ids, merges):  # decodes token by token: breaks characters split across tokens
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), idx in merges.items():
        vocab[idx] = vocab[a] + vocab[b]
    return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)'''

WRITTEN = ("The model sees three token ids, not ten letters, so the count of r's is not in its "
           "input; spelling the word with spaces makes each letter a token.")


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


def main():
    write_folder(OUT, cases())


if __name__ == "__main__":
    main()
