"""Reference checks: compare a student's function with the course's reference implementation.

A check runs the student's function and the reference on the same inputs (fixed edge cases plus
seeded random ones) and raises ``AssertionError`` with the input, the expected value, the actual
value and a hint at the first difference.

Results are compared *as data*: whatever the student's function returns is first turned into
plain JSON-able values by ``to_data`` (lists, dicts, ints, strings, tensors as bytes). An object
whose ``__eq__`` always returns True, or a subclass pretending to be a dict, never reaches the
comparison. The grader (``course_lib.grading.grader``) uses the same ``to_data`` inside the
sandbox and the same ``compare`` inside the verifier, so what a student sees in the notebook is
what the instructor's grade is based on.

A student's function that merely calls the reference is caught: while the student's function
runs, the code of every reference function is swapped for code that raises ``ReferenceCalled``
(``poison_references``); aliases such as ``get_stats = course_lib.tokenizer.get_stats`` are
caught too, because they share the function object whose code was swapped.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import importlib
import math
import random
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Callable

MAX_REPR = 300


class ReferenceCalled(Exception):
    """Raised when a reference implementation is called during a check of student code."""


class UnsupportedResult(TypeError):
    """The student's function returned something that cannot be compared as data."""


# --------------------------------------------------------------------------------------------
# Values as data
# --------------------------------------------------------------------------------------------


def to_data(x: Any, _depth: int = 0):
    """Turn a Python value into plain JSON-able data, trusting nothing about its class.

    Tuples, dicts, sets, bytes, non-finite floats, NumPy arrays and torch tensors are tagged
    (``{"$tuple": [...]}``, ...); lists, ints, floats, strings, bools and None stay as they are.
    Subclasses of the builtin types are read through the builtin type's own methods, so
    overridden ``__eq__``, ``__iter__`` or ``items`` cannot change what is compared.
    """
    if _depth > 50:
        raise UnsupportedResult("the value is nested more than 50 levels deep")
    t = type(x)
    if x is None or t is bool:
        return x
    if issubclass(t, bool):
        return bool.__bool__(x)
    if issubclass(t, int):
        return int.__int__(x)
    if issubclass(t, float):
        v = float.__float__(x)
        return v if math.isfinite(v) else {"$float": repr(v)}
    if issubclass(t, str):
        return str.__str__(x)
    if issubclass(t, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(x)).decode("ascii")}
    if issubclass(t, list):
        return [to_data(v, _depth + 1) for v in list.__iter__(x)]
    if issubclass(t, tuple):
        return {"$tuple": [to_data(v, _depth + 1) for v in tuple.__iter__(x)]}
    if issubclass(t, dict):
        return {"$dict": [[to_data(k, _depth + 1), to_data(v, _depth + 1)]
                          for k, v in dict.items(x)]}
    if issubclass(t, (set, frozenset)):
        items = [to_data(v, _depth + 1) for v in (set.__iter__(x) if issubclass(t, set)
                                                  else frozenset.__iter__(x))]
        return {"$set": sorted(items, key=repr)}
    np = sys.modules.get("numpy")
    if np is not None:
        if issubclass(t, np.generic) and t.__module__ == "numpy":
            return to_data(x.item(), _depth + 1)
        if t is np.ndarray:
            return _array_data(np.ascontiguousarray(x))
    torch = sys.modules.get("torch")
    if torch is not None and t in (torch.Tensor, torch.nn.Parameter):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:  # NumPy has no bfloat16
            x = x.float()
        return {"$tensor": _array_data(x.contiguous().numpy())["$array"]}
    raise UnsupportedResult(f"returned an object of type {t.__module__}.{t.__qualname__}; "
                            "return plain values (list, dict, tuple, int, str, float, tensor)")


def _array_data(a):
    if a.dtype == object:
        raise UnsupportedResult("returned an array of Python objects; return numbers")
    return {"$array": {"dtype": str(a.dtype), "shape": list(a.shape),
                       "data": base64.b64encode(a.tobytes()).decode("ascii")}}


def from_data(d: Any):
    """The inverse of ``to_data``: rebuild plain Python values (arrays come back as NumPy)."""
    if isinstance(d, list):
        return [from_data(v) for v in d]
    if isinstance(d, dict):
        (tag, v), = d.items()
        if tag == "$tuple":
            return tuple(from_data(x) for x in v)
        if tag == "$dict":
            return {_hashable(from_data(k)): from_data(val) for k, val in v}
        if tag == "$set":
            return {_hashable(from_data(x)) for x in v}
        if tag == "$bytes":
            return base64.b64decode(v)
        if tag == "$float":
            return float(v)
        if tag in ("$array", "$tensor"):
            import numpy as np
            a = np.frombuffer(base64.b64decode(v["data"]), dtype=v["dtype"]).reshape(v["shape"])
            if tag == "$tensor":
                import torch
                return torch.from_numpy(a.copy())
            return a
        raise ValueError(f"unknown data tag {tag!r}")
    return d


def _hashable(k):
    return tuple(_hashable(x) for x in k) if isinstance(k, list) else k


# --------------------------------------------------------------------------------------------
# Comparing
# --------------------------------------------------------------------------------------------


def short(x: Any, limit: int = MAX_REPR) -> str:
    """``repr`` cut to ``limit`` characters, for error messages."""
    r = repr(x)
    return r if len(r) <= limit else r[: limit - 20] + f" ... ({len(r):,} chars)"


def compare_exact(expected: Any, actual: Any) -> str | None:
    """None when equal as data (lists and tuples count as the same sequence), else a sentence
    saying where they first differ."""
    return _diff(expected, actual, "")


def _diff(e, a, where):
    at = f" at {where}" if where else ""
    if isinstance(e, (list, tuple)) and isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(e, a)):
            d = _diff(x, y, f"{where}[{i}]")
            if d:
                return d
        if len(e) != len(a):
            return f"length {len(a)} instead of {len(e)}{at}"
        return None
    if isinstance(e, dict) and isinstance(a, dict):
        missing = [k for k in e if k not in a]
        extra = [k for k in a if k not in e]
        if missing:
            return f"missing key(s) {short(missing[:5], 120)}{at}"
        if extra:
            return f"unexpected key(s) {short(extra[:5], 120)}{at}"
        for k in e:
            d = _diff(e[k], a[k], f"{where}[{k!r}]")
            if d:
                return d
        return None
    if hasattr(e, "shape") or hasattr(a, "shape"):
        import numpy as np
        e, a = np.asarray(e), np.asarray(a)
        if e.shape != a.shape:
            return f"shape {a.shape} instead of {e.shape}{at}"
        if not np.array_equal(e, a):
            return f"values differ{at} (max abs difference {np.abs(e - a).max():g})"
        return None
    if type(e) is not type(a) and not (isinstance(e, (int, float)) and isinstance(a, (int, float))
                                       and not isinstance(a, bool)):
        return f"a {type(a).__name__} instead of a {type(e).__name__}{at}"
    if e != a:
        return f"{short(a, 80)} instead of {short(e, 80)}{at}"
    return None


# --------------------------------------------------------------------------------------------
# Reference poisoning
# --------------------------------------------------------------------------------------------


@dataclass
class _Poison:
    functions: list = field(default_factory=list)  # (function, original code, poisoned code)


def _poisoned_code(fn: types.FunctionType):
    name = f"{fn.__module__}.{fn.__qualname__}"
    src = (f"def _f(*args, **kwargs):\n"
           f"    raise __course_reference_called__({name!r})\n")
    ns: dict = {}
    exec(compile(src, f"<reference {name}>", "exec"), ns)
    return ns["_f"].__code__


def reference_functions(module_names) -> list[types.FunctionType]:
    """Every plain function and method defined in the named modules (the references)."""
    found = []
    for name in module_names:
        module = importlib.import_module(name)
        module.__dict__.setdefault("__course_reference_called__", ReferenceCalled)
        for obj in list(vars(module).values()):
            candidates = []
            if isinstance(obj, types.FunctionType) and obj.__module__ == name:
                candidates.append(obj)
            elif isinstance(obj, type) and obj.__module__ == name:
                for attr in vars(obj).values():
                    if isinstance(attr, (staticmethod, classmethod)):
                        attr = attr.__func__
                    if isinstance(attr, types.FunctionType):
                        candidates.append(attr)
            for fn in candidates:
                # swapping code needs the same free variables; methods using super() keep theirs
                if not fn.__code__.co_freevars and fn not in found:
                    found.append(fn)
    return found


@contextlib.contextmanager
def substituted(fn: Callable, substitute: dict):
    """While active, the globals of ``fn`` named in ``substitute`` (``{name: "module:attr"}``)
    are copies of the trusted functions; a name the student did not define is left alone.
    Enter it *before* ``poison_references``: the copies keep the unpoisoned code, so a trusted
    function may be a reference (which the student's own code still may not call)."""
    g = getattr(fn, "__globals__", None)
    saved = {}
    try:
        if isinstance(g, dict):
            for name, target in (substitute or {}).items():
                if name in g:
                    module, attr = target.split(":")
                    f = getattr(importlib.import_module(module), attr)
                    saved[name] = g[name]
                    g[name] = types.FunctionType(f.__code__, f.__globals__, f.__name__,
                                                 f.__defaults__, f.__closure__)
        yield
    finally:
        for name, value in saved.items():
            g[name] = value


@contextlib.contextmanager
def poison_references(module_names):
    """While active, calling any reference function raises ``ReferenceCalled``."""
    fns = reference_functions(module_names)
    saved = [(fn, fn.__code__) for fn in fns]
    try:
        for fn, _ in saved:
            fn.__code__ = _poisoned_code(fn)
        yield
    finally:
        for fn, code in saved:
            fn.__code__ = code


# --------------------------------------------------------------------------------------------
# Tasks and checks
# --------------------------------------------------------------------------------------------


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, NumPy's and torch's generators (those already imported)."""
    random.seed(seed)
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


@dataclass
class Task:
    """One graded function of an assignment.

    ``cases(seed, n_random, extra)`` returns the argument tuples to call with; ``reference`` is
    the course's implementation; ``compare(expected, actual)`` returns None or what differs.
    ``references`` names the modules whose functions a student may not call.

    Some tasks have more than one right answer (a MinHash with any hash family, a language
    score from any model). They judge properties instead of equality: ``compare_case(args,
    expected, actual)`` replaces ``compare`` and sees the input too, and ``compare_all(cases,
    actuals)`` judges all results of one check together (the same input twice gives the same
    result; another seed gives another signature; estimates are close to the truth).
    """

    name: str
    reference: Callable
    cases: Callable[..., list]
    hint: str
    references: tuple = ()
    compare: Callable[[Any, Any], str | None] = compare_exact
    timeout: float = 10.0
    compare_case: Callable[[tuple, Any, Any], str | None] | None = None
    compare_all: Callable[[list, list], str | None] | None = None
    # global name -> "module:function": while this task's function runs, the student's own
    # helper of that name is replaced by a trusted one, so that one mistake (a wrong
    # ``attention``) does not also cost the marks of a task built on it (``block_forward``)
    substitute: dict = field(default_factory=dict)


def expected_data(task: Task, args: tuple):
    """The reference's result for ``args``, as data, or ``("error", message)``."""
    seed_everything(0)
    try:
        return to_data(task.reference(*copy.deepcopy(args)))
    except Exception as e:  # a reference that raises means the input is invalid
        raise RuntimeError(f"reference {task.name} raised on {short(args)}: {e!r}") from e


def judge(task: Task, args: tuple, expected, outcome: dict) -> str | None:
    """Decide one call. ``outcome`` is ``{"ok": True, "value": data}`` or ``{"ok": False,
    "kind": ..., "error": ...}`` as the sandbox reports it. Returns None when correct, else
    the failure message shown to the student."""
    call = f"{task.name}{_args_repr(args)}"
    if not outcome.get("ok"):
        kind = outcome.get("kind", "error")
        if kind == "reference":
            return (f"{task.name} calls the course's reference implementation "
                    f"({outcome.get('error')}); write your own code.")
        if kind == "timeout":
            return f"{call} did not finish within its time limit (an infinite loop?)"
        return f"{call} raised {outcome.get('error')}\n  hint: {task.hint}"
    try:
        actual = from_data(outcome["value"])
    except Exception as e:
        return f"{call} returned a value the grader could not read ({e})"
    exp = from_data(expected)
    diff = (task.compare_case(args, exp, actual) if task.compare_case
            else task.compare(exp, actual))
    if diff is None:
        return None
    return (f"{call}\n  expected: {short(exp)}\n  got:      {short(actual)}\n"
            f"  difference: {diff}\n  hint: {task.hint}")


def _args_repr(args):
    return "(" + ", ".join(short(a, 120) for a in args) + ")"


def call_outcome(task: Task, fn: Callable, args: tuple) -> dict:
    """Call the student's ``fn`` on a fresh copy of ``args`` with the references poisoned and
    seeds set; the result as a ``judge`` outcome."""
    seed_everything(0)
    try:
        with substituted(fn, task.substitute), poison_references(task.references):
            value = fn(*copy.deepcopy(args))
        return {"ok": True, "value": to_data(value)}
    except ReferenceCalled as e:
        return {"ok": False, "kind": "reference", "error": str(e)}
    except UnsupportedResult as e:
        return {"ok": False, "kind": "error", "error": f"a value that cannot be graded: {e}"}
    except Exception as e:
        return {"ok": False, "kind": "error", "error": f"{type(e).__name__}: {short(str(e), 200)}"}


def task_cases(task: Task, seed: int = 0, n_random: int | None = None,
               cases: list | None = None) -> list[tuple]:
    """The argument tuples a check uses: the task's fixed cases, ``n_random`` random ones drawn
    with ``seed`` (the task's default number when None) and the literal ``cases``."""
    extra = {} if n_random is None else {"n_random": n_random}
    return task.cases(seed=seed, extra=cases, **extra)


def run_check(task: Task, fn: Callable, seed: int = 0, n_random: int | None = None,
              cases: list | None = None) -> None:
    """Check ``fn`` against the reference on the task's cases; raise ``AssertionError`` with
    the first failing input, expected and actual values and a hint. Used in the notebook's
    test cells (instant feedback); the grader decides scores with the same cases and ``judge``,
    outside the student's process."""
    __tracebackhide__ = True
    if not callable(fn):
        raise AssertionError(f"{task.name} must be a function, got {type(fn).__name__}")
    if fn is task.reference or getattr(fn, "__code__", None) is getattr(task.reference,
                                                                          "__code__", 0):
        raise AssertionError(f"{task.name} is the course's reference implementation; "
                             "write your own code.")
    all_cases = task_cases(task, seed, n_random, cases)
    actuals = []
    for args in all_cases:
        expected = expected_data(task, args)
        outcome = call_outcome(task, fn, args)
        message = judge(task, args, expected, outcome)
        if message:
            raise AssertionError(message)
        actuals.append(outcome["value"])
    message = judge_all(task, all_cases, actuals)
    if message:
        raise AssertionError(message)
    print(f"{task.name}: all {len(all_cases)} checks passed")


def judge_all(task: Task, cases: list, values: list) -> str | None:
    """The task's judgement of all results together (``compare_all``), or None. ``values`` are
    the results as data, in the order of ``cases``."""
    if task.compare_all is None:
        return None
    try:
        actuals = [from_data(v) for v in values]
    except Exception as e:
        return f"{task.name} returned a value the grader could not read ({e})"
    diff = task.compare_all(cases, actuals)
    return None if diff is None else f"{task.name}: {diff}\n  hint: {task.hint}"


def as_args(extra) -> list[tuple]:
    """Literal cases from a test cell (lists of arguments) as argument tuples."""
    return [tuple(c) for c in (extra or [])]
