"""Chapter 4's checks: right answers written several ways pass, every wrong answer fails with
the input, the difference and a hint, calling course_lib.train is caught, and
accumulate_gradients is judged by every parameter's gradient."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

from course_lib import model as M
from course_lib import train as TR
from course_lib.grading import checks
from course_lib.grading import pretraining as P

import pretraining_answers as answers

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "pretraining" / "pretraining.ipynb"


def helper_source() -> str:
    """The notebook's locked cell through which the checks call accumulate_gradients."""
    nb = json.loads(SOLUTION.read_text())
    return next("".join(c["source"]) for c in nb["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == "accumulate_gradients_on_gpt")


def load(overrides: dict) -> dict:
    """A notebook namespace: the answers (the right ones unless overridden) and the locked cell."""
    ns: dict = {}
    for name in answers.CORRECT:
        exec(overrides.get(name, answers.CORRECT[name]), ns)
    exec(helper_source(), ns)
    return ns


def graded(ns: dict, task: str):
    """What a test cell passes to the check of ``task``."""
    return ns["accumulate_gradients_on_gpt" if task == "accumulate_gradients" else task]


@pytest.mark.parametrize("task", list(P.TASKS))
@pytest.mark.parametrize("which", ["correct", "alternative"])
def test_right_answers_pass(task, which):
    ns = load(answers.CORRECT if which == "correct" else answers.ALTERNATIVE)
    getattr(P, f"check_{task}")(graded(ns, task))
    getattr(P, f"check_{task}")(graded(ns, task), seed=7, n_random=10)


@pytest.mark.parametrize("name", list(answers.MORE_RIGHT))
def test_more_right_answers_pass(name):
    task, src = answers.MORE_RIGHT[name]
    ns = load({task: src})
    getattr(P, f"check_{task}")(graded(ns, task))
    getattr(P, f"check_{task}")(graded(ns, task), seed=11, n_random=10)


@pytest.mark.parametrize("name", list(answers.WRONG))
def test_wrong_answers_fail(name):
    task, src = answers.WRONG[name]
    ns = load({task: src})
    with pytest.raises(AssertionError) as e:
        getattr(P, f"check_{task}")(graded(ns, task))
    msg = str(e.value)
    assert P.TASKS[task].name in msg and "hint:" in msg, msg
    assert "difference:" in msg or "raised" in msg, msg


@pytest.mark.parametrize("name,says", [
    ("unstable_softmax", "the loss is nan (an exp of large logits overflows"),
    ("ignore_index_not_honoured", "the loss differs by up to"),
    ("off_by_one_warmup", "the learning rate is 0.0 instead of"),
    ("rises_after_total_steps", "at or after total_steps = 100: min_lr"),
    ("no_warmup_guard", "ZeroDivisionError"),
    ("loss_not_divided", "it is 2 times the expected one, as if each micro-batch's loss were not "
                         "divided by the number of micro-batches (2)"),
    ("zero_grad_between", "the gradient of transformer.wte.weight differs by up to"),
    ("returns_sum_of_losses", "2 times too large: return the mean"),
    ("no_backward", "has no gradient after accumulate_gradients (.grad is None)"),
    ("flops_6n_only", "6 * n_params only"),
    ("flops_attention_6", "12, not 6"),
    ("mfu_upside_down", "upside down"),
    ("mfu_percent", "a percentage"),
])
def test_wrong_answers_are_told_what_went_wrong(name, says):
    task, src = answers.WRONG[name]
    with pytest.raises(AssertionError, match="hint:") as e:
        getattr(P, f"check_{task}")(graded(load({task: src}), task))
    assert says in str(e.value), str(e.value)


@pytest.mark.parametrize("task,make", [
    ("cross_entropy", lambda: TR.cross_entropy),
    ("cross_entropy", lambda: (lambda logits, targets, ignore_index=-100:
                               TR.cross_entropy(logits, targets, ignore_index))),
    ("lr_at", lambda: functools.partial(TR.lr_at)),
    ("mfu", lambda: (lambda *a: TR.mfu(*a))),
    ("flops_per_token", lambda: (lambda *a: M.flops_per_token(*a))),
    ("accumulate_gradients", lambda: (lambda config, seed, batches: P.on_fresh_gpt(
        TR.accumulate_gradients, config, seed, batches))),
    ("accumulate_gradients", lambda: (lambda config, seed, batches: P.on_fresh_gpt(
        lambda model, b: TR.accumulate_gradients(model, b), config, seed, batches))),
    ("accumulate_gradients", lambda: P.reference_accumulate_gradients_on_gpt),
])
def test_calling_the_reference_is_caught(task, make):
    with pytest.raises(AssertionError, match="reference"):
        getattr(P, f"check_{task}")(make())


def test_the_edge_cases_are_there():
    """Huge logits, ignored positions (all but one too), a custom ignore_index, 1-D and 3-D
    logits; the schedule at step 0, warmup - 1, warmup, total_steps, after it, no warmup; one,
    two and four micro-batches."""
    ce = checks.task_cases(P.TASKS["cross_entropy"])
    assert any(a[0].abs().max() > 1e3 for a in ce)
    assert any(a[0].dim() == 1 for a in ce) and any(a[0].dim() == 3 for a in ce)
    assert any(len(a) == 3 and a[2] == 0 for a in ce)
    assert any((a[1] == (a[2] if len(a) == 3 else -100)).sum() == a[1].numel() - 1 for a in ce)
    lr = checks.task_cases(P.TASKS["lr_at"])
    for w, t in [(10, 100), (4, 20), (1, 12), (0, 50)]:
        steps = {a[0] for a in lr if (a[3], a[4]) == (w, t)}
        assert {0, max(w - 1, 0), w, t, t + 7} <= steps
    acc = checks.task_cases(P.TASKS["accumulate_gradients"])
    assert {1, 2, 4} <= {len(a[2]) for a in acc}


def test_the_huge_logits_overflow_an_unstable_softmax():
    logits, targets, _ = checks.task_cases(P.TASKS["cross_entropy"])[2]
    probs = logits.exp() / logits.exp().sum(-1, keepdim=True)
    assert not torch.isfinite(probs).all()
    assert torch.isfinite(TR.cross_entropy(logits, targets))


def test_gradients_are_compared_for_every_parameter():
    """A gradient wrong in one parameter only (the last layer norm's bias) is caught."""
    ns = load({})
    right = ns["accumulate_gradients"]

    def one_off(model, batches):
        loss = right(model, batches)
        model.transformer.ln_f.bias.grad *= 1.01
        return loss

    helper = {"accumulate_gradients": one_off}
    exec(helper_source(), helper)
    with pytest.raises(AssertionError, match="the gradient of transformer.ln_f.bias"):
        P.check_accumulate_gradients(helper["accumulate_gradients_on_gpt"])


def test_the_fresh_gpt_is_seeded_and_has_no_gradients():
    config = {"n_layer": 1, "n_head": 1, "n_embd": 4, "block_size": 4, "vocab_size": 5}
    seen = []

    def look(model, batches):
        seen.append((model.transformer.wte.weight.detach().clone(),
                     all(p.grad is None for p in model.parameters())))
        return 0.0

    torch.set_num_threads(2)
    for _ in range(2):
        P.on_fresh_gpt(look, config, 3, [])
    assert torch.equal(seen[0][0], seen[1][0]) and seen[0][1]
    assert torch.get_num_threads() == 2  # put back


def test_accumulate_results_cross_as_data():
    case = checks.task_cases(P.TASKS["accumulate_gradients"])[0]
    value = P.reference_accumulate_gradients_on_gpt(*case)
    back = checks.from_data(checks.to_data(value))
    assert set(back["grads"]) == {n for n, _ in M.GPT(M.GPTConfig(**case[0])).named_parameters()}
    assert all(isinstance(g, torch.Tensor) for g in back["grads"].values())


def test_hidden_tests_use_other_inputs():
    nb = json.loads(SOLUTION.read_text())
    sources = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert all("### BEGIN HIDDEN TESTS" in s for s in sources if "checks.check_" in s)
    for task in P.TASKS:
        visible = checks.task_cases(P.TASKS[task])
        hidden = checks.task_cases(P.TASKS[task], seed=5, n_random=6)
        assert {repr(c) for c in hidden} - {repr(c) for c in visible}, task
