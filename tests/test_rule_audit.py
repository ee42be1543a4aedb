"""The rule audit (tests/rule_audit.py) holds: every rule a task's text states has a hand-written
case that a wrong answer breaking only that rule fails, in the checks the grader runs.

For every row of ``rule_audit.RULES``: the named wrong answer (from
``tests/submissions/<assignment>_answers.py``) fails the task under *every* check call of the
task's graded test cells, visible and hidden, read from the solutions notebook as the verifier
reads them; the right answers (the solution's, the alternative ones, ``MORE_RIGHT``) pass all of
them; a quoted rule still appears in the notebook. Every task of every assignment has a row.

Everything runs in this process (no nbgrader, no sandbox): the calls go through
``checks.call_outcome`` / ``judge`` / ``judge_all`` as in the verifier. The few lines that know
how the grading core resolves a test cell's call live in ``graded_calls`` and ``failure``.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import sys
from pathlib import Path

import pytest

from course_lib.grading import checks, verify
from course_lib.grading import notebook as nbtools

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "submissions"))
sys.path.insert(0, str(HERE))
import rule_audit  # noqa: E402

ASSIGNMENTS = rule_audit.ASSIGNMENTS


# -- the grading core, as the verifier uses it (one place to adapt) ------------------------------


def solution_path(assignment):
    return ROOT / "solutions" / assignment / f"{assignment}.ipynb"


@functools.lru_cache(maxsize=None)
def graded_calls(assignment) -> tuple:
    """``(task name, Task, function name in the notebook, argument tuples)`` for every check call
    of the solution notebook's graded test cells (visible and hidden), in notebook order."""
    out = []
    for cell in verify.graded_cells(nbtools.read_json(solution_path(assignment))):
        for call in cell.calls:
            _, task, cases = verify.resolve(call)
            out.append((call.check.removeprefix("check_"), task, call.function, cases))
    return tuple(out)


def failure(task, fn, cases) -> str | None:
    """What the verifier would say about ``fn`` on ``cases`` (None: every case passes)."""
    values = []
    for args in cases:
        outcome = checks.call_outcome(task, fn, args)
        message = checks.judge(task, args, checks.expected_data(task, args), outcome)
        if message:
            return message
        values.append(outcome["value"])
    return checks.judge_all(task, cases, values)


# -- notebooks as namespaces ---------------------------------------------------------------------


def answers_module(assignment):
    return importlib.import_module(f"{assignment}_answers")


def code_cells(assignment):
    """``(grade_id, kind, source)`` of the notebook's answer and locked code cells, in order
    (test cells and the ungraded "Try it" cells are left out)."""
    nb = json.loads(solution_path(assignment).read_text())
    out = []
    for c in nb["cells"]:
        meta = c.get("metadata", {}).get("nbgrader", {})
        if c["cell_type"] != "code" or not meta.get("grade_id") or meta.get("grade"):
            continue
        out.append((meta["grade_id"], "solution" if meta.get("solution") else "locked",
                    "".join(c["source"])))
    return out


@functools.lru_cache(maxsize=None)
def base_namespace(assignment) -> dict:
    """The notebook with the solution's answers (the answers module's ``CORRECT``) run in order."""
    answers = answers_module(assignment)
    ns: dict = {}
    for gid, kind, src in code_cells(assignment):
        exec(answers.CORRECT.get(gid, src) if kind == "solution" else src, ns)  # noqa: S102
    return ns


def namespace(assignment, overrides: dict) -> dict:
    """The solution's namespace with some answers replaced. A later cell that names a replaced
    function (an answer calling it, a locked cell) runs again, so that it calls the replacement
    (the cells that name none, such as the language profiles, are not run twice)."""
    answers = answers_module(assignment)
    ns = dict(base_namespace(assignment))
    changed = set(overrides)
    for gid, kind, src in code_cells(assignment):
        if kind == "solution" and gid in overrides:
            exec(overrides[gid], ns)  # noqa: S102
        elif changed and any(re.search(rf"\b{re.escape(n)}\b", src if kind == "locked" else
                                       answers.CORRECT.get(gid, src)) for n in changed):
            exec(src if kind == "locked" else answers.CORRECT.get(gid, src), ns)  # noqa: S102
            changed.add(gid)
    return ns


def wrong_answer(assignment, name) -> tuple[str, str]:
    """``(task, source)`` of a wrong answer named in the table: a key of ``RULE_WRONG`` or
    ``WRONG`` (``{name: (task, src)}`` or ``{task: src}``), or ``task[k]`` for ``MORE_WRONG``."""
    a = answers_module(assignment)
    for table in (getattr(a, "RULE_WRONG", {}), a.WRONG):
        if name in table:
            w = table[name]
            return w if isinstance(w, tuple) else (name, w)
    m = re.fullmatch(r"(\w+)\[(\d+)\]", name)
    if m and hasattr(a, "MORE_WRONG"):
        return m.group(1), a.MORE_WRONG[m.group(1)][int(m.group(2))]
    raise KeyError(f"{assignment}_answers has no wrong answer {name!r}")


def right_answers(assignment) -> list[tuple[str, str, str]]:
    """``(label, task, source)`` of every right answer of the answers module."""
    a = answers_module(assignment)
    out = [(f"correct:{t}", t, s) for t, s in a.CORRECT.items()]
    out += [(f"alternative:{t}", t, s) for t, s in getattr(a, "ALTERNATIVE", {}).items()]
    out += [(n, t, s) for n, (t, s) in getattr(a, "MORE_RIGHT", {}).items()]
    return out


def verdicts_in(assignment, task_name, overrides: dict) -> tuple:
    """The verifier's message (or None) for every check call of ``task_name`` in the notebook
    with the answers ``overrides`` ({task: source}) instead of the solution's."""
    ns = namespace(assignment, overrides)
    return tuple(failure(task, ns[fn], cases)
                 for name, task, fn, cases in graded_calls(assignment) if name == task_name)


@functools.lru_cache(maxsize=None)
def verdicts(assignment, task_name, source) -> tuple:
    """``verdicts_in`` with ``source`` as the answer of ``task_name`` itself."""
    return verdicts_in(assignment, task_name, {task_name: source})


def all_wrong(assignment) -> list[tuple[str, str, str]]:
    """``(name, task, source)`` of every wrong answer of the answers module."""
    a = answers_module(assignment)
    out = [(n, *wrong_answer(assignment, n)) for n in (*getattr(a, "RULE_WRONG", {}), *a.WRONG)]
    out += [(f"{t}[{k}]", t, s) for t, srcs in getattr(a, "MORE_WRONG", {}).items()
            for k, s in enumerate(srcs)]
    return out


def helper_tasks(assignment) -> list[tuple[str, str]]:
    """``(caller, helper)``: a task whose right answer (the solution's or an alternative one)
    calls another task's function, found in the answers' source, not in the checks' settings."""
    tasks = {name for name, *_ in graded_calls(assignment)}
    found = []
    for _, caller, src in right_answers(assignment):
        for helper in sorted(tasks - {caller}):
            if re.search(rf"(?<![.\w]){helper}\(", src) and (caller, helper) not in found:
                found.append((caller, helper))
    return found


# -- the tests -----------------------------------------------------------------------------------

ROWS = rule_audit.RULES


def row_id(row):
    return f"{row.assignment}-{row.task}-{row.wrong}"


@pytest.mark.parametrize("row", ROWS, ids=row_id)
def test_the_wrong_answer_breaking_a_rule_loses_its_task(row):
    task, src = wrong_answer(row.assignment, row.wrong)
    assert task == row.task, f"{row.wrong} is an answer to {task}, not {row.task}"
    results = verdicts(row.assignment, task, src)
    assert results, f"no graded check call for {row.task}"
    assert any(results), (f"{row.assignment}.{row.task}: the wrong answer {row.wrong!r} "
                          f"(breaks {row.rule!r}) passes every graded check; add the case "
                          f"named in the table ({row.covered_by})")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_right_answers_pass_every_graded_call(assignment):
    failing = []
    for label, task, src in right_answers(assignment):
        for message in verdicts(assignment, task, src):
            if message:
                failing.append(f"{label}: {message}")
    assert not failing, "\n".join(failing)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_task_has_audited_rules(assignment):
    tasks = {name for name, *_ in graded_calls(assignment)}
    audited = {r.task for r in ROWS if r.assignment == assignment}
    assert tasks - audited == set(), f"tasks without a row in tests/rule_audit.py: {tasks - audited}"
    assert audited - tasks == set(), f"rows for tasks the notebook does not grade: {audited - tasks}"


def _flat(text):
    return " ".join(text.split())


@functools.lru_cache(maxsize=None)
def notebook_text(assignment) -> str:
    nb = json.loads(solution_path(assignment).read_text())
    return _flat("\n".join("".join(c["source"]) for c in nb["cells"]))


@pytest.mark.parametrize("row", [r for r in ROWS if r.quoted] +
                         [r for r in rule_audit.NOT_CHECKED if r.quoted], ids=row_id)
def test_quoted_rules_are_still_in_the_notebook(row):
    assert _flat(row.rule) in notebook_text(row.assignment), (
        f"the rule {row.rule!r} is no longer in solutions/{row.assignment}; update "
        "tests/rule_audit.py")


def test_rows_name_known_assignments_and_distinct_wrong_answers():
    assert {r.assignment for r in ROWS} == set(ASSIGNMENTS)
    keys = [(r.assignment, r.wrong) for r in ROWS]
    assert len(keys) == len(set(keys)), "one wrong answer per row"


SUBSTITUTED = [(a, caller, helper) for a in ASSIGNMENTS for caller, helper in helper_tasks(a)]


@pytest.mark.parametrize("assignment,caller,helper", SUBSTITUTED)
def test_a_wrong_helper_costs_only_its_own_task(assignment, caller, helper):
    """The policy: a right caller keeps its marks next to every wrong answer of its helper."""
    wrongs = [(n, s) for n, t, s in all_wrong(assignment) if t == helper]
    assert wrongs, f"no wrong {helper} to try"
    for name, src in wrongs:
        messages = [m for m in verdicts_in(assignment, caller, {helper: src}) if m]
        assert not messages, f"a wrong {helper} ({name}) costs {caller} too: {messages[0]}"


@pytest.mark.parametrize("assignment", sorted({a for a, _, _ in SUBSTITUTED}))
def test_the_notebook_states_the_policy(assignment):
    assert _flat(rule_audit.POLICY) in notebook_text(assignment)
