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
caught too, because they share the function object whose code was swapped. This is the one way
to forbid the reference: a task names the modules that are off limits (``Task.references``);
in a library module every function is, in a grading module its ``reference_*`` functions; the
functions a student may use are listed in ``Task.allowed`` (``"module:function"``), and
functions behind a decorator (``@torch.no_grad()``) are poisoned through ``__wrapped__``.

An assignment's grading module declares its tasks and nothing else (cases, comparators, hints):
``ASSIGNMENT = Assignment(TASKS, ...)`` makes the ``check_NAME`` functions its test cells call
(``checks.check_NAME(function, seed=..., n_random=..., cases=[...])``) and is what the verifier
reads. Shared comparators (``close_tensor``, ``close_number``) and the seeded-model helpers
(``one_thread``, ``seeded_gpt``) live here once.
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


def _is_grading_module(name: str) -> bool:
    return name.startswith("course_lib.grading.")


def reference_functions(module_names, allowed=()) -> list[types.FunctionType]:
    """The functions a student's code may not call while it is checked: every plain function
    and method defined in the named library modules, the ``reference_*`` functions of a named
    grading module (its other functions are the harness a locked cell calls), the functions a
    decorator wraps (``__wrapped__``), but none named in ``allowed`` (``"module:function"``)."""
    allowed = set(allowed)
    found = []
    for name in module_names:
        module = importlib.import_module(name)
        module.__dict__.setdefault("__course_reference_called__", ReferenceCalled)
        grading = _is_grading_module(name)
        for key, obj in list(vars(module).items()):
            if f"{name}:{key}" in allowed or (grading and not key.startswith("reference_")):
                continue
            candidates = []
            if isinstance(obj, types.FunctionType) and obj.__module__ == name:
                candidates.append(obj)
                wrapped = getattr(obj, "__wrapped__", None)
                while isinstance(wrapped, types.FunctionType):  # behind a decorator
                    candidates.append(wrapped)
                    wrapped = getattr(wrapped, "__wrapped__", None)
            elif isinstance(obj, type) and obj.__module__ == name and not grading:
                for attr in vars(obj).values():
                    if isinstance(attr, (staticmethod, classmethod)):
                        attr = attr.__func__
                    if isinstance(attr, types.FunctionType):
                        candidates.append(attr)
            for fn in candidates:
                # swapping code needs the same free variables; methods using super() keep theirs
                if (not fn.__code__.co_freevars and fn not in found
                        and fn.__module__ == name):
                    fn.__globals__.setdefault("__course_reference_called__", ReferenceCalled)
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
def poison_references(module_names, allowed=()):
    """While active, calling any reference function (``reference_functions``) raises
    ``ReferenceCalled``."""
    fns = reference_functions(module_names, allowed)
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
    # "module:function"s of ``references`` that a student may call (``chat_tokenizer``)
    allowed: tuple = ()


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
        with substituted(fn, task.substitute), poison_references(task.references, task.allowed):
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


# --------------------------------------------------------------------------------------------
# An assignment, declared
# --------------------------------------------------------------------------------------------


@dataclass
class Assignment:
    """An assignment's grading as a declaration: its tasks (``{check name: Task}``; the test
    cell calls ``check_<name>``), the modules whose functions a student may not call, the
    functions of those a student may call anyway, and the modules its test inputs are built
    with (the sandbox imports them before the student's code runs). ``references`` and
    ``allowed`` fill in the tasks that do not name their own. The verifier reads this object,
    and ``checks()`` makes the test cells' ``check_NAME`` functions from it."""

    tasks: dict
    references: tuple = ()
    allowed: tuple = ()
    depends: tuple = ()

    def __post_init__(self):
        for key, task in self.tasks.items():
            if not isinstance(task, Task):
                raise TypeError(f"task {key!r} is a {type(task).__name__}, not a Task")
            if not task.references:
                task.references = tuple(self.references)
            task.allowed = tuple(task.allowed) + tuple(a for a in self.allowed
                                                       if a not in task.allowed)
            for a in task.allowed:
                if ":" not in a:
                    raise ValueError(f"allowed entry {a!r} of task {key!r}: write it as "
                                     "'module:function'")

    def task(self, check_name: str) -> Task:
        """The task a test cell's ``check_NAME`` grades."""
        key = check_name[len("check_"):] if check_name.startswith("check_") else None
        if key not in self.tasks:
            raise ValueError(f"no check {check_name}; this assignment has "
                             f"{', '.join(f'check_{k}' for k in self.tasks)}")
        return self.tasks[key]

    def checks(self) -> dict:
        """``{"check_NAME": function}``: what a grading module exports for its test cells."""
        return {f"check_{key}": _make_check(key, task) for key, task in self.tasks.items()}


def _make_check(key: str, task: Task):
    def check(function, seed=0, n_random=None, cases=None):
        __tracebackhide__ = True
        run_check(task, function, seed, n_random, cases)

    check.__name__ = check.__qualname__ = f"check_{key}"
    check.__doc__ = (f"Test cell check for ``{task.name}``: compares it with the course's "
                     f"reference on fixed and seeded random inputs (``seed``, ``n_random``) and "
                     f"the literal ``cases``; raises AssertionError at the first difference.")
    return check


# --------------------------------------------------------------------------------------------
# Shared comparators and model helpers
# --------------------------------------------------------------------------------------------


def loss_tensor_problem(loss) -> str | None:
    """What is wrong with a returned loss as a training loss (not a tensor, not one number, not a
    float), or None: for the comparators of tasks that return a loss."""
    import torch

    if not isinstance(loss, torch.Tensor):
        return (f"returned a {type(loss).__name__}: return a torch tensor (one number) that "
                "loss.backward() can train with")
    if loss.numel() != 1:
        return f"returned a tensor of shape {tuple(loss.shape)}: the loss is one number, shape ()"
    if not loss.is_floating_point():
        return f"returned a tensor of dtype {loss.dtype}: the loss is a float"
    return None


def backward_sum(value):
    """For a locked cell that reports a loss (or log-probabilities) and the gradients it sends
    back: run ``backward`` on the sum of ``value`` when it is a float tensor of the graph, and
    return it detached (anything else as it is, for the comparator to judge)."""
    import torch

    if isinstance(value, torch.Tensor):
        if value.requires_grad and value.is_floating_point() and value.numel():
            value.sum().backward()
        return value.detach()
    return value


def locked_result_problem(actual, keys, cell) -> str | None:
    """None when ``actual`` is what the notebook's locked cell ``cell`` returns (a dict with
    ``keys``), else the message: a student who redefined the cell returns something else."""
    if isinstance(actual, dict) and set(keys) <= set(actual):
        return None
    return f"not the result of the notebook's locked cell {cell} (was it redefined?)"


def as_ints(x):
    """A returned list, tuple or 1-d tensor of ints (bools and whole floats count) as a list of
    ints, or None when it is not one: for comparing ids and masks whatever container a student
    returned them in."""
    if hasattr(x, "tolist") and not isinstance(x, (list, tuple)):
        if getattr(x, "ndim", 1) != 1:
            return None
        x = x.tolist()
    if not isinstance(x, (list, tuple)):
        return None
    out = []
    for v in x:
        if isinstance(v, (bool, int)) or (isinstance(v, float) and v.is_integer()):
            out.append(int(v))
        else:
            return None
    return out


def close_tensor(expected, actual, rtol=1e-4, atol=1e-5, what=None, nonfinite=None):
    """None when ``actual`` is a tensor equal to ``expected`` within the tolerance, else what
    differs (the worst element for its own tolerance). ``what`` names the value in messages
    ("the loss"); ``nonfinite`` replaces the message for inf or nan values."""
    import torch

    it = f"{what} is " if what else ""
    if not isinstance(actual, torch.Tensor):
        return f"{it}a {type(actual).__name__} instead of a torch.Tensor"
    expected = torch.as_tensor(expected)
    if tuple(actual.shape) != tuple(expected.shape):
        return (f"{what + ' has ' if what else ''}shape {tuple(actual.shape)} instead of "
                f"{tuple(expected.shape)}")
    actual = actual.to(expected.dtype)
    if not torch.isfinite(actual).all():
        return nonfinite or f"{what or 'the result'} has inf or nan values"
    if not torch.allclose(actual, expected, rtol=rtol, atol=atol):
        diff = (actual - expected).abs()
        excess = diff - (atol + rtol * expected.abs())  # how far past its own tolerance
        where = tuple(int(i) for i in torch.nonzero(excess == excess.max())[0])
        at = f" at {where}" if where else ""
        return (f"{what + ' differs' if what else 'values differ'} by up to "
                f"{diff.max().item():.3g} (worst, for its tolerance{at}: "
                f"{actual[where].item():.6g} instead of {expected[where].item():.6g})")
    return None


def close_number(expected, actual, rel=1e-9, abs_=0.0, what="the result"):
    """None when ``actual`` is a finite number (or a one-element tensor) close to ``expected``."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(actual, torch.Tensor) and actual.numel() == 1:
        actual = actual.item()
    if isinstance(actual, bool) or not isinstance(actual, (int, float)):
        return f"{what} is a {type(actual).__name__} instead of a number"
    if not math.isfinite(actual):
        return f"{what} is {actual}"
    if not math.isclose(actual, expected, rel_tol=rel, abs_tol=abs_):
        return f"{what} is {actual!r} instead of {expected!r}"
    return None


@contextlib.contextmanager
def one_thread():
    """torch on one thread meanwhile: for the tiny models of the checks, one thread is many
    times faster than several on a busy machine (and the result does not depend on the count)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def seeded_gpt(config: dict, seed: int):
    """``GPT(GPTConfig(**config))`` with weights drawn after ``torch.manual_seed(seed)``, without
    disturbing the global generator: the same model in the sandbox and in the verifier."""
    import torch

    from course_lib.model import GPT, GPTConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT(GPTConfig(**config))
