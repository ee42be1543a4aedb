"""The release record: what grading an assignment really depends on, found by watching it.

``course release`` writes ``solutions/<name>/release.json``; ``course grade`` and the verifier
refuse to grade when what it records has changed, because the same submission could then get
another score. Judging by whole files, as a first version did, was wrong both ways: it missed the
files grading opens (the tokenizer a check encodes with) and it made every assignment stale when
one shared helper was added to ``checks.py``. So the record is made by running, in a fresh
interpreter (``python -I -m course_lib.grading.record SOURCE.ipynb``), what the verifier runs for
every test-cell call of the source notebook (each case's reference answer, judged), plus one
poisoned call per task, while

- an audit hook notes every file under ``course_lib/`` that is opened (``open``, and the
  ``course_lib.asset`` event of ``course_lib.assets``): tokenizer, models, texts;
- a profile hook notes every function of ``course_lib`` that runs.

Recorded per file: the assignment's own grading module and the sandbox's ``harness.py`` whole;
every other ``course_lib`` module imported as its top level (everything but its functions) plus
the functions that ran, by name (``verify.part_digest``); every opened data file whole. Changing a
function no check runs, or adding a new one, leaves the record valid; re-shipping the tokenizer
does not.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from course_lib.grading import notebook as nbtools
from course_lib.grading import verify

PACKAGE = Path(verify.__file__).resolve().parents[1]   # .../course_lib
ROOT = PACKAGE.parent
WHOLE = ("grading/harness.py",)  # the sandbox's own program: it runs elsewhere, kept whole


def _trace(source_path: str) -> dict:
    """Run the verifier's work for ``source_path`` and return what it touched."""
    opened: set[str] = set()
    ran: set[tuple[str, int]] = set()
    pkg = str(PACKAGE)

    def audit(event, args):
        if event in ("open", "course_lib.asset") and args and isinstance(args[0], (str, Path)):
            p = str(args[0])
            if (p.startswith(pkg) and "__pycache__" not in p and not p.endswith(".py")
                    and Path(p).is_file()):
                opened.add(p)

    def profile(frame, event, arg):
        if event == "call":
            code = frame.f_code
            if code.co_filename.startswith(pkg):
                ran.add((code.co_filename, code.co_firstlineno))

    sys.addaudithook(audit)
    from course_lib.grading import checks

    source_nb = nbtools.read_json(source_path)
    sys.setprofile(profile)
    try:
        calls, modules = verify.sandbox_calls(source_nb)
        for m in modules:
            __import__(m)
        # the sandbox's calls are numbered across the notebook, as its check calls are
        tasks = [verify.resolve(c)[1] for cell in verify.graded_cells(source_nb)
                 for c in cell.calls]
        events = []
        for call in calls:
            task = tasks[int(call["task"].rsplit(":", 1)[1])]
            for k, args in enumerate(call["cases"]):
                exp = checks.expected_data(task, tuple(checks.from_data(a) for a in args))
                events.append({"event": "call", "task": call["task"], "case": k, "ok": True,
                               "value": exp})
        verify.verify(source_nb, events)  # the verifier's own path: cases, references, judges
        for cell in verify.graded_cells(source_nb):  # the poisoning a student's call runs under
            for c in cell.calls:
                _, task, cases = verify.resolve(c)
                checks.call_outcome(task, lambda *a: None, cases[0])
    finally:
        sys.setprofile(None)
    test_modules = {c.module for cell in verify.graded_cells(source_nb) for c in cell.calls}
    return {"ran": sorted(ran), "opened": sorted(opened),
            "modules": sorted(m.__file__ for name, m in list(sys.modules.items())
                              if name.startswith("course_lib") and getattr(m, "__file__", None)),
            "whole": sorted(sys.modules[m].__file__ for m in test_modules)}


def _rel(p: str) -> str:
    return str(Path(p).resolve().relative_to(ROOT))


def record_of(trace: dict) -> dict:
    """The release record's ``course_lib`` entries from a trace."""
    out = {}
    whole = {_rel(p) for p in trace["whole"]} | {f"course_lib/{w}" for w in WHOLE}
    ran_by_file: dict[str, list[int]] = {}
    for f, line in trace["ran"]:
        ran_by_file.setdefault(_rel(f), []).append(line)
    for f in trace["modules"]:
        rel = _rel(f)
        if rel in whole:
            continue
        names = verify.functions_at(ROOT / rel, ran_by_file.get(rel, []))
        out[rel] = {"functions": names, "sha256": verify.part_digest(ROOT / rel, names)}
    for rel in sorted(whole | {_rel(p) for p in trace["opened"]}):
        out[rel] = hashlib.sha256((ROOT / rel).read_bytes()).hexdigest()
    return dict(sorted(out.items()))


def release_record(source_path: str | Path) -> dict:
    """``{"course_lib": {...}}`` for ``solutions/<name>/<name>.ipynb``, made in a fresh
    interpreter so that nothing this process imported counts."""
    proc = subprocess.run([sys.executable, "-I", "-m", "course_lib.grading.record",
                           str(source_path)], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"tracing what grading {source_path} depends on failed:\n"
                           f"{proc.stderr[-3000:]}")
    return {"course_lib": record_of(json.loads(proc.stdout))}


if __name__ == "__main__":
    sys.stdout.write(json.dumps(_trace(sys.argv[1])))
