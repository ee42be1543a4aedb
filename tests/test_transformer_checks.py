"""Chapter 3's checks: right answers written two ways pass, every wrong answer the issue names
fails with the input, the difference and a hint, and calling course_lib.model is caught."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from course_lib import model as M
from course_lib.grading import checks
from course_lib.grading import transformer as T

import transformer_answers as answers


def load(overrides: dict) -> dict:
    ns: dict = {}
    for name in ("attention", "block_forward", "count_parameters"):
        exec(overrides.get(name, answers.CORRECT[name]), ns)
    return ns


@pytest.mark.parametrize("task", list(T.TASKS))
@pytest.mark.parametrize("which", ["correct", "alternative"])
def test_right_answers_pass(task, which):
    ns = load(answers.CORRECT if which == "correct" else answers.ALTERNATIVE)
    getattr(T, f"check_{task}")(ns[task])
    getattr(T, f"check_{task}")(ns[task], seed=7, n_random=10)


@pytest.mark.parametrize("name", list(answers.WRONG))
def test_wrong_answers_fail(name):
    task, src = answers.WRONG[name]
    ns = load({task: src})
    with pytest.raises(AssertionError) as e:
        getattr(T, f"check_{task}")(ns[task])
    msg = str(e.value)
    assert task in msg and "hint:" in msg and "difference:" in msg


@pytest.mark.parametrize("make", [
    lambda: M.attention,
    lambda: (lambda q, k, v, causal=True: M.attention(q, k, v, causal)),
    lambda: functools.partial(M.attention),
])
def test_calling_the_reference_is_caught(make):
    with pytest.raises(AssertionError, match="reference"):
        T.check_attention(make())


def test_sdpa_is_right_but_count_calls_are_caught():
    """SDPA itself is not course code: the check cannot forbid it, only the task text does."""
    import torch.nn.functional as F
    T.check_attention(lambda q, k, v, causal=True: F.scaled_dot_product_attention(
        q, k, v, is_causal=causal))
    with pytest.raises(AssertionError, match="reference"):
        T.check_count_parameters(lambda *a, **k: M.count_parameters(*a, **k))


def test_tensors_cross_as_tensors():
    import torch
    x = torch.randn(2, 3)
    back = checks.from_data(checks.to_data(x))
    assert isinstance(back, torch.Tensor) and torch.equal(back, x)
    assert checks.from_data(checks.to_data(x.bfloat16())).dtype == torch.float32


def test_hidden_tests_use_other_inputs():
    import json
    nb = json.loads((Path(__file__).parents[1] / "solutions" / "transformer" /
                     "transformer.ipynb").read_text())
    sources = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert all("### BEGIN HIDDEN TESTS" in s for s in sources if "checks.check_" in s)
    visible = checks.task_cases(T.TASKS["count_parameters"])
    hidden = checks.task_cases(T.TASKS["count_parameters"], seed=42, n_random=30)
    assert {repr(c) for c in hidden} - {repr(c) for c in visible}


@pytest.mark.parametrize("name", [n for n, (task, _) in answers.WRONG.items() if task == "attention"])
def test_a_wrong_attention_costs_only_attentions_points(name):
    """block_forward is checked with a trusted attention bound to the student's name."""
    ns = load({"attention": answers.WRONG[name][1]})
    wrong = ns["attention"]
    T.check_block_forward(ns["block_forward"])
    assert ns["attention"] is wrong  # put back afterwards
    with pytest.raises(AssertionError):
        T.check_attention(wrong)


def test_a_wrong_block_still_fails_with_a_right_attention():
    ns = load({"block_forward": answers.WRONG["post_ln"][1]})
    with pytest.raises(AssertionError, match="block_forward"):
        T.check_block_forward(ns["block_forward"])
