"""``course_lib``'s imports flow one way, imports inside functions included:

    world, tokenizer, model -> assets -> crawl, data, train, generate -> chat (and later
    chapters' modules) -> evals -> pipeline;  grading above them all.

A module may import its own layer or any below it, never one above, and no import cycle exists.
A new module must be placed in ``LAYERS`` (the test says so when it is not).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "course_lib"

LAYERS = [
    {"course_lib.world", "course_lib.tokenizer", "course_lib.model", "course_lib.data_scale"},
    {"course_lib.assets"},
    {"course_lib.crawl", "course_lib.data", "course_lib.train", "course_lib.generate"},
    {"course_lib.chat", "course_lib.tools", "course_lib.hallucination", "course_lib.rl",
     "course_lib.rlhf"},  # chapter 6, and the later chapters' modules
    {"course_lib.evals", "course_lib.report", "course_lib.talk"},  # report: the card; talk: the terminal
    {"course_lib.pipeline"},
    {"course_lib.grading"},  # every module of the grading package
]


def modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        if "assets" in p.relative_to(PACKAGE).parts[:-1]:
            continue  # scripts that make shipped files, run by hand
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def imports(path: Path, known) -> set[str]:
    """Every course_lib module ``path`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("course_lib")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.startswith("course_lib"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in known else node.module)
    return {m for m in found if m in known and m != "course_lib"}


def layer(name: str) -> int:
    for i, members in enumerate(LAYERS):
        if name in members or any(name.startswith(m + ".") for m in members):
            return i
    raise AssertionError(f"{name} has no layer: add it to LAYERS in tests/test_layers.py "
                         "(and to the picture in course_lib/assets.py's docstring)")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def test_every_import_goes_down_or_sideways():
    wrong = [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
             for a, deps in graph().items() if a != "course_lib" for b in deps
             if layer(b) > layer(a)]
    assert not wrong, "imports must flow one way:\n" + "\n".join(wrong)


def test_no_import_cycle():
    g = graph()
    state, stack, cycles = {}, [], []

    def visit(u):
        state[u] = "open"
        stack.append(u)
        for v in sorted(g[u]):
            if state.get(v) == "open":
                cycles.append(" -> ".join(stack[stack.index(v):] + [v]))
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = "done"

    for u in sorted(g):
        if u not in state:
            visit(u)
    assert not cycles, "import cycles (imports inside functions count):\n" + "\n".join(cycles)


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The two tests above can fail: a module importing the pipeline from inside a function."""
    pkg = tmp_path / "course_lib"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "assets.py").write_text("def f():\n    from course_lib.pipeline import run_chain\n")
    (pkg / "pipeline.py").write_text("from course_lib import assets\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    g = graph()
    assert g["course_lib.assets"] == {"course_lib.pipeline"}
    assert layer("course_lib.pipeline") > layer("course_lib.assets")
