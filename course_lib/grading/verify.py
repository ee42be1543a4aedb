"""The verifier: decides scores in a process of its own, from data only.

``python -I -m course_lib.grading.verify`` reads on stdin the instructor's source notebook path,
the hashes of the ``course_lib`` files recorded at release, and the events the sandbox reported.
It checks that the ``course_lib`` on disk is the released one, imports it fresh, recomputes every
test input and the reference's answer, and compares the student's values with ``judge``. Nothing
of the student's code runs here: their values arrive as JSON.

Test cells are read, not run: each is a sequence of ``checks.check_NAME(function, key=literal)``
calls, after an import of the assignment's check module. Hidden tests are more such calls.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from course_lib.grading import notebook as nbtools
from course_lib.grading.checks import task_cases


@dataclass
class CheckCall:
    module: str     # e.g. "course_lib.grading.tokenization"
    check: str      # e.g. "check_merge"
    function: str   # the student's function name in the notebook
    kwargs: dict


@dataclass
class GradedCell:
    grade_id: str
    points: float
    calls: list = field(default_factory=list)


def parse_test_cell(source: str, where: str = "test cell") -> list[CheckCall]:
    """The check calls in a test cell. Anything the grader cannot reproduce outside the kernel
    (a non-literal argument, a call of something else) is an error for the instructor."""
    tree = ast.parse(source)
    aliases = {}
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    aliases[a.asname] = a.name
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            continue
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and isinstance(call.func.value, ast.Name) and call.func.value.id in aliases
                and len(call.args) == 1 and isinstance(call.args[0], ast.Name)):
            raise ValueError(f"{where}: line {stmt.lineno} is not of the form "
                             "checks.check_NAME(function, key=literal, ...); the grader reads "
                             "test cells instead of running them")
        try:
            kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        except ValueError:
            raise ValueError(f"{where}: line {stmt.lineno} has a non-literal argument") from None
        calls.append(CheckCall(aliases[call.func.value.id], call.func.attr, call.args[0].id,
                               kwargs))
    return calls


def graded_cells(source_nb) -> list[GradedCell]:
    """The autograded test cells of the instructor's source notebook, with their check calls."""
    out = []
    for cell in source_nb.cells:
        if nbtools.is_test(cell):
            gid = nbtools.grade_id(cell)
            out.append(GradedCell(gid, float(nbtools.nbmeta(cell).get("points", 0)),
                                  parse_test_cell(nbtools.source(cell), f"test cell {gid}")))
    return out


def assignment_of(module_name: str):
    """The ``Assignment`` a grading module declares (its ``ASSIGNMENT``)."""
    from course_lib.grading.checks import Assignment

    module = importlib.import_module(module_name)
    found = getattr(module, "ASSIGNMENT", None)
    if not isinstance(found, Assignment):
        raise ValueError(f"{module_name} declares no ASSIGNMENT = checks.Assignment(...); a test "
                         "cell's checks must come from an assignment's grading module")
    return found


def resolve(call: CheckCall):
    """The ``Assignment`` a check call belongs to, the ``Task`` it grades and the argument tuples
    it uses."""
    assignment = assignment_of(call.module)
    task = assignment.task(call.check)
    kw = dict(call.kwargs)
    unknown = set(kw) - {"seed", "n_random", "cases"}
    if unknown:
        raise ValueError(f"{call.check}: unknown argument(s) {sorted(unknown)}")
    cases = task_cases(task, **kw)
    return assignment, task, cases


def sandbox_calls(source_nb) -> tuple[list, list]:
    """What the sandbox must call, as data: ``[{"task", "function", "cases", "timeout",
    "references"}]``, one entry per check call, plus the modules to preload."""
    from course_lib.grading.checks import to_data

    calls, modules = [], []
    for cell in graded_cells(source_nb):
        for call in cell.calls:
            assignment, task, cases = resolve(call)
            calls.append({"task": f"{cell.grade_id}:{len(calls)}", "function": call.function,
                          "cases": [[to_data(a) for a in args] for args in cases],
                          "timeout": task.timeout, "references": list(task.references),
                          "allowed": list(task.allowed), "substitute": dict(task.substitute)})
            trusted = [t.split(":")[0] for t in task.substitute.values()]
            for m in (call.module, *task.references, *assignment.depends, *trusted):
                if m not in modules:
                    modules.append(m)
    return calls, modules


def hash_files(paths: list[Path], root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def manifest_files(modules: list[str]) -> list[Path]:
    """The ``course_lib`` files a score depends on: what the verifier imports (the checks, the
    test-cell reader) and the reference modules (found without importing them)."""
    import importlib.util

    pkg = Path(importlib.util.find_spec("course_lib").origin).parent
    files = {pkg / "__init__.py", *(pkg / "grading" / f for f in (
        "__init__.py", "checks.py", "notebook.py", "verify.py"))}
    for m in modules:
        spec = importlib.util.find_spec(m)
        if spec and spec.origin:
            files.add(Path(spec.origin))
    return sorted(files)


def _top_level(path: Path) -> tuple[list, dict]:
    """The top-level statements of ``path`` that are not functions, and its top-level functions
    ``{name: (node, first line, last line)}`` (decorators included)."""
    import gc

    source = path.read_text(encoding="utf-8")
    enabled = gc.isenabled()
    gc.disable()   # no finalizer may run inside the parse (see the SystemError below)
    try:
        try:
            tree = ast.parse(source)
        except SystemError as error:
            # CPython 3.11's AST constructor can miscount its own recursion depth and raise
            # "AST constructor recursion depth mismatch" on valid source (python/cpython#106905;
            # seen once in CI, in a pytest worker that had run many other tests): parse again
            if "recursion depth mismatch" not in str(error):
                raise
            tree = ast.parse(source)
    finally:
        if enabled:
            gc.enable()
    rest, functions = [], {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            functions[node.name] = (node, first, node.end_lineno)
        else:
            rest.append(node)
    return rest, functions


def functions_at(path: Path, lines) -> list[str]:
    """The top-level functions of ``path`` that contain any of ``lines`` (where code that ran
    starts)."""
    _, functions = _top_level(path)
    return sorted(name for name, (_, a, b) in functions.items() if any(a <= n <= b for n in lines))


def part_digest(path: Path, functions) -> str | None:
    """A hash of the module ``path`` as grading uses it: everything but its top-level functions
    (imports, constants, classes), plus the named functions; as syntax trees, so comments and
    blank lines do not count. None if a named function is gone."""
    rest, found = _top_level(path)
    h = hashlib.sha256("\n".join(ast.dump(n) for n in rest).encode())
    for name in sorted(functions):
        if name not in found:
            return None
        h.update(f"\0{name}\0{ast.dump(found[name][0])}".encode())
    return h.hexdigest()


def check_manifest(manifest: dict, root: Path | None = None) -> None:
    """Raise if what grading depends on differs from what was recorded at release: a whole file
    (``"path": sha256``) or the parts of a module grading ran (``{"functions", "sha256"}``).
    ``root`` holds ``course_lib`` (the imported one's by default)."""
    import importlib.util

    root = Path(root) if root else Path(importlib.util.find_spec("course_lib").origin).parent.parent
    changed = []
    for rel, digest in manifest.items():
        p = root / rel
        if not p.exists():
            changed.append(f"{rel} (missing)")
        elif isinstance(digest, dict):
            if part_digest(p, digest["functions"]) != digest["sha256"]:
                changed.append(f"{rel} ({', '.join(digest['functions']) or 'its top level'})")
        elif hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            changed.append(rel)
    if changed:
        raise RuntimeError(f"course_lib differs from the release: {', '.join(changed)} changed. "
                           "Run `course release` again (and tell students), or restore the files.")


def _attribute(name: str, tasks_by_function: dict) -> list:
    for fn, cells in tasks_by_function.items():
        if name in (fn, f"check_{fn}", f"reference_{fn}"):
            return cells
    return ["all"]


def verify(source_nb, events: list, died: str | None = None, release_nb=None) -> dict:
    """Scores from sandbox events: ``{"cells": {grade_id: {"score", "max", "message",
    "feedback"}}, "tampering": [...]}``. ``message`` is for the instructor (with the failing
    input); ``feedback`` is for the student and names no input of a hidden test (a check call
    that is not in the released test cell)."""
    from course_lib.grading.checks import expected_data, judge, judge_all

    cells = graded_cells(source_nb)
    visible = set()
    if release_nb is not None:
        for cell in graded_cells(release_nb):
            visible.update((cell.grade_id, repr(c)) for c in cell.calls)
    results = {}
    by_call = {}
    for e in events:
        if e.get("event") == "call" and isinstance(e.get("task"), str):
            by_call.setdefault(e["task"], {})[e.get("case")] = e
    tasks_by_function = {}
    for cell in cells:
        for call in cell.calls:
            tasks_by_function.setdefault(call.function, []).append(cell.grade_id)
    tampering = [t for e in events if e.get("event") == "tampering"
                 for t in e.get("found", []) if isinstance(t, list) and len(t) == 2]
    tampered_cells = {}
    for name, what in tampering:
        for gid in _attribute(name, tasks_by_function):
            tampered_cells.setdefault(gid, []).append(what)
    first = 0
    for cell in cells:
        message = feedback = None
        first, n0 = first + len(cell.calls), first  # calls are numbered across the notebook
        for n, call in enumerate(cell.calls, start=n0):
            _, task, cases = resolve(call)
            got = by_call.get(f"{cell.grade_id}:{n}", {})
            for k, args in enumerate(cases):
                outcome = got.get(k)
                if outcome is None:
                    message = (f"{call.function} was never called on test {k + 1}: "
                               f"{died or 'the notebook did not finish'}")
                    break
                if outcome.get("kind") == "missing":
                    message = (f"{call.function} is not defined: keep the function name "
                               "from the task")
                    break
                message = judge(task, args, expected_data(task, args), outcome)
                if message:
                    message = f"test {k + 1} of {len(cases)}: {message}"
                    if release_nb is not None and (cell.grade_id, repr(call)) not in visible:
                        feedback = (f"{call.function} fails a hidden test (inputs other than "
                                    f"the visible ones). Hint: {task.hint}")
                        if outcome.get("kind") == "reference":
                            feedback = message
                    break
            if not message:
                message = judge_all(task, cases, [got[k].get("value") for k in range(len(cases))])
                if message and release_nb is not None and (cell.grade_id, repr(call)) not in visible:
                    feedback = (f"{call.function} fails a hidden test (inputs other than the "
                                f"visible ones). Hint: {task.hint}")
            if message:
                break
        tamper = tampered_cells.get(cell.grade_id, []) + tampered_cells.get("all", [])
        if tamper:
            message = "tampering: " + "; ".join(sorted(set(tamper)))
        results[cell.grade_id] = {"score": 0.0 if message else cell.points, "max": cell.points,
                                  "message": message, "feedback": feedback or message}
    return {"cells": results, "tampering": sorted({w for _, w in tampering})}


def main():
    req = json.loads(sys.stdin.read())
    try:
        check_manifest(req["manifest"])
    except RuntimeError as e:
        print(e, file=sys.stderr)
        sys.exit(3)
    # plain JSON: importing nbformat costs seconds (jsonschema's format checkers), per student
    source_nb = nbtools.read_json(req["source"])
    release_nb = nbtools.read_json(req["release"]) if req.get("release") else None
    out = verify(source_nb, req["events"], req.get("died"), release_nb)
    sys.stdout.write(json.dumps(out))


if __name__ == "__main__":
    main()
