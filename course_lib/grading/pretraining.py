"""Checks for the Pretraining assignment (chapter 4).

The student writes the pieces of a training loop that ``course_lib.train`` holds:

- ``cross_entropy(logits, targets, ignore_index=-100) -> Tensor``: the mean of
  ``-log softmax(logits)[target]`` over the positions whose target is not ``ignore_index``, with
  a log-softmax made stable by subtracting each row's maximum;
- ``lr_at(step, max_lr, min_lr, warmup_steps, total_steps) -> float``: linear warmup, then a
  cosine down to ``min_lr``;
- ``accumulate_gradients(model, batches) -> float``: micro-batches whose gradients add up to
  those of one big batch;
- ``flops_per_token(n_params, n_layer, d_model, seq_len)`` and
  ``mfu(tokens_per_s, flops_per_token, peak_flops)``.

Losses and gradients are compared with the reference within a tolerance (``rtol=1e-4``) on
random shapes and seeds, including logits of size 1e4 (where a softmax without the maximum
subtracted overflows), ignored positions, a custom ``ignore_index``, 1-D and 3-D logits.
Learning rates, FLOPs and MFU are compared to 1e-9 relative.

A model cannot travel to the grader as data, its description can: the graded calls of
``accumulate_gradients`` go through ``accumulate_gradients_on_gpt(config, seed, batches)``, a
locked cell of the notebook that hands a fresh ``GPT(GPTConfig(**config))`` (weights drawn
with ``torch.manual_seed(seed)``, no gradients yet) to the student's function with
``on_fresh_gpt`` and returns the loss it reported and every parameter's ``.grad``.
"""

from __future__ import annotations

import math
import random

import torch

from course_lib import model as _model
from course_lib import train as _train
from course_lib.grading.checks import (Assignment, Task, as_args, close_number, close_tensor,
                                       one_thread, seeded_gpt)

REFERENCES = ("course_lib.train", "course_lib.model", "course_lib.grading.pretraining")
# while accumulate_gradients runs, GPT.forward (course_lib.model) must work: course_lib.train and
# the reference_* functions here are off limits (on_fresh_gpt, the locked cell's helper, is not)
ACCUMULATE_REFERENCES = ("course_lib.train", "course_lib.grading.pretraining")
DEPENDS = ("course_lib.model",)  # accumulate_gradients' inputs are GPTs built with it


def reference_cross_entropy(logits, targets, ignore_index=-100):
    return _train.cross_entropy(logits, targets, ignore_index)


def reference_lr_at(step, max_lr, min_lr, warmup_steps, total_steps):
    return _train.lr_at(step, max_lr, min_lr, warmup_steps, total_steps)


def on_fresh_gpt(accumulate_gradients, config, seed, batches):
    """Call ``accumulate_gradients(model, batches)`` on a fresh ``GPT(GPTConfig(**config))``
    whose weights are drawn with ``torch.manual_seed(seed)`` and whose gradients are unset;
    return ``{"loss": what it returned, "grads": {parameter name: .grad or None}}``."""
    with one_thread():
        model = seeded_gpt(config, seed)
        model.zero_grad(set_to_none=True)
        loss = accumulate_gradients(model, [tuple(b) for b in batches])
    return {"loss": loss, "grads": {name: None if p.grad is None else p.grad.detach().clone()
                                    for name, p in model.named_parameters()}}


def reference_accumulate_gradients_on_gpt(config, seed, batches):
    return on_fresh_gpt(_train.accumulate_gradients, config, seed, batches)


def reference_flops_per_token(n_params, n_layer, d_model, seq_len):
    return _model.flops_per_token(n_params, n_layer, d_model, seq_len)


def reference_mfu(tokens_per_s, flops_per_token, peak_flops):
    return _train.mfu(tokens_per_s, flops_per_token, peak_flops)


# -- cross_entropy ------------------------------------------------------------------------------


def _logits_targets(g, shape, V, scale=1.0, ignore_index=-100, ignore_share=0.0):
    logits = torch.randn(*shape, V, generator=g) * scale
    targets = torch.randint(0, V, tuple(shape), generator=g)
    if ignore_share and targets.numel() > 1:
        drop = torch.rand(tuple(shape), generator=g) < ignore_share
        keep = torch.randint(0, targets.numel(), (1,), generator=g)
        drop.view(-1)[keep] = False  # at least one position counts
        targets = targets.masked_fill(drop, ignore_index)
    return logits, targets


def _cross_entropy_cases(seed=0, n_random=8, extra=None):
    g = torch.Generator().manual_seed(seed + 4000)
    lone_logits = torch.randn(7, 6, generator=g)
    lone_targets = torch.full((7,), -100)
    lone_targets[4] = 3
    pad_logits, pad_targets = _logits_targets(g, (3, 4), 5)
    pad_targets[0, :2] = torch.tensor([0, 1])  # some targets are the padding id 0, some not
    fixed = [_logits_targets(g, (4,), 5),                                    # (N, V)
             _logits_targets(g, (2, 3), 7),                                  # (B, T, V)
             (*_logits_targets(g, (6,), 10, scale=1e4), -100),               # huge logits
             (*_logits_targets(g, (2, 5), 8, ignore_share=0.4), -100),       # ignored positions
             (lone_logits, lone_targets),                                    # all but one ignored
             (pad_logits, pad_targets, 0),                                   # ignore_index 0
             _logits_targets(g, (), 9),                                      # 1-D logits (V,)
             (*_logits_targets(g, (2, 4), 6, scale=1e4, ignore_index=-1, ignore_share=0.3), -1)]
    rng = random.Random(seed)
    out = []
    for _ in range(n_random):
        shape = rng.choice([(rng.randrange(1, 9),), (rng.randrange(1, 4), rng.randrange(1, 6)),
                            ()])
        V = rng.choice([2, 3, 5, 10, 17, 50])
        scale = rng.choice([0.5, 1.0, 4.0, 1e4])
        ignore_index = rng.choice([-100, -100, -1, 0])
        if ignore_index == 0:  # a padding id that is also a class: targets 0 do not count
            logits, targets = _logits_targets(g, shape, V, scale)
            targets.view(-1)[0] = rng.randrange(1, V)
        else:
            logits, targets = _logits_targets(g, shape, V, scale, ignore_index,
                                              rng.choice([0.0, 0.0, 0.3, 0.7]))
        out.append((logits, targets) if ignore_index == -100 and rng.random() < 0.5
                   else (logits, targets, ignore_index))
    return fixed + out + as_args(extra)


_close_tensor = close_tensor


def _compare_cross_entropy(args, expected, actual):
    if isinstance(actual, torch.Tensor) and actual.dim() == 0 and not torch.isfinite(actual):
        return (f"the loss is {actual.item()} (an exp of large logits overflows: subtract each "
                "row's maximum before exp; or a mean over zero positions)")
    return _close_tensor(expected, actual, what="the loss")


# -- lr_at --------------------------------------------------------------------------------------


def _lr_cases(seed=0, n_random=12, extra=None):
    fixed = []
    for max_lr, min_lr, warmup, total in [(6e-4, 6e-5, 10, 100), (1.0, 0.1, 4, 20),
                                          (3e-3, 0.0, 1, 12), (1e-3, 1e-4, 0, 50)]:
        # step 0, the end of warmup, the first cosine step, the middle, the end and after it
        for step in sorted({0, max(warmup - 1, 0), warmup, warmup + 1, (warmup + total) // 2,
                            total - 1, total, total + 7}):
            fixed.append((step, max_lr, min_lr, warmup, total))
    rng = random.Random(seed)
    out = []
    for _ in range(n_random):
        total = rng.randrange(2, 5000)
        warmup = rng.choice([0, 1, rng.randrange(0, total)])
        max_lr = rng.choice([6e-4, 1e-3, 3e-4, 2.5e-2, 1.0])
        min_lr = max_lr * rng.choice([0.0, 0.1, 0.01])
        step = rng.choice([rng.randrange(0, total + 100), rng.randrange(0, warmup + 1)])
        out.append((step, max_lr, min_lr, warmup, total))
    return fixed + out + as_args(extra)


_close_number = close_number


def _compare_lr(args, expected, actual):
    if isinstance(actual, torch.Tensor):
        return "a torch.Tensor instead of a float (compute the rate with math, return a number)"
    diff = _close_number(expected, actual, abs_=1e-12 * args[1], what="the learning rate")
    step, max_lr, min_lr, warmup_steps, total_steps = args
    if diff and step < warmup_steps:
        diff += (f" (step {step} is in the warmup: {step + 1} of its {warmup_steps} steps, "
                 "so step 0 already gets max_lr / warmup_steps)")
    elif diff and step >= total_steps:
        diff += f" (step {step} is at or after total_steps = {total_steps}: min_lr)"
    elif diff:
        progress = (step - warmup_steps) / (total_steps - warmup_steps)
        diff += (f" (step {step} is {progress:.3g} of the way through the cosine, which runs "
                 f"from max_lr at step {warmup_steps} to min_lr at step {total_steps})")
    return diff


# -- accumulate_gradients -----------------------------------------------------------------------


def _gpt_config(rng):
    n_head = rng.choice([1, 2])
    return {"n_layer": rng.choice([1, 2]), "n_head": n_head, "n_embd": n_head * rng.choice([4, 8]),
            "block_size": 8, "vocab_size": rng.choice([11, 16, 23]), "dropout": 0.0}


def _micro_batches(g, config, n_micro, batch_size, T):
    V = config["vocab_size"]
    return [(torch.randint(0, V, (batch_size, T), generator=g),
             torch.randint(0, V, (batch_size, T), generator=g)) for _ in range(n_micro)]


def _accumulate_cases(seed=0, n_random=2, extra=None):
    g = torch.Generator().manual_seed(seed + 5000)
    rng = random.Random(seed)
    fixed = []
    for n_micro, batch_size, T in [(2, 2, 5), (1, 3, 4), (4, 1, 8), (4, 2, 3)]:
        config = _gpt_config(rng)
        fixed.append((config, rng.randrange(1000), _micro_batches(g, config, n_micro, batch_size,
                                                                  T)))
    out = []
    for _ in range(n_random):
        config = _gpt_config(rng)
        out.append((config, rng.randrange(1000),
                    _micro_batches(g, config, rng.choice([1, 2, 3, 4]), rng.randrange(1, 4),
                                   rng.randrange(1, 9))))
    return fixed + out + as_args(extra)


def _compare_accumulate(args, expected, actual):
    n = len(args[2])
    if (not isinstance(actual, dict) or set(actual) != {"loss", "grads"}
            or not isinstance(actual["grads"], dict)):
        return ("not the loss and gradients of the notebook's locked cell "
                "accumulate_gradients_on_gpt (was it redefined?)")
    diff = _close_number(expected["loss"], actual["loss"], rel=1e-5, what="the returned loss")
    if diff:
        loss = actual["loss"]
        loss = loss.item() if isinstance(loss, torch.Tensor) and loss.numel() == 1 else loss
        if isinstance(loss, (int, float)) and n > 1 and math.isclose(loss, n * expected["loss"],
                                                                     rel_tol=1e-4):
            diff += f" ({n} times too large: return the mean of the micro-batches' losses)"
        return diff
    grads = actual["grads"]
    for name, exp in expected["grads"].items():
        act = grads.get(name)
        if act is None:
            return (f"{name} has no gradient after accumulate_gradients (.grad is None): call "
                    "backward() on each micro-batch's loss")
        diff = _close_tensor(exp, act, rtol=1e-4, atol=1e-6, what=f"the gradient of {name}")
        if diff and isinstance(act, torch.Tensor) and act.shape == exp.shape:
            scale = (act.to(exp.dtype) * exp).sum() / (exp * exp).sum().clamp_min(1e-30)
            if n > 1 and abs(scale.item() - n) < 1e-2 * n:
                diff += (f"; it is {n} times the expected one, as if each micro-batch's loss "
                         f"were not divided by the number of micro-batches ({n})")
            return diff
    return None


# -- flops_per_token and mfu ----------------------------------------------------------------------


def _flops_cases(seed=0, n_random=8, extra=None):
    fixed = [(124_439_808, 12, 768, 1024),       # GPT-2 124M
             (1_557_611_200, 48, 1600, 1024),    # GPT-2 1.6B, the lecture's llm.c run
             (175_000_000_000, 96, 12288, 2048),  # GPT-3
             (1000, 1, 8, 1)]
    rng = random.Random(seed)
    out = []
    for _ in range(n_random):
        n_layer, d = rng.randrange(1, 49), 64 * rng.randrange(1, 33)
        out.append((rng.randrange(10 ** 5, 10 ** 10), n_layer, d, rng.choice([64, 256, 1024, 4096])))
    return fixed + out + as_args(extra)


def _compare_flops(args, expected, actual):
    diff = _close_number(expected, actual, what="the FLOPs per token")
    if diff and isinstance(actual, (int, float)):
        n_params, n_layer, d_model, seq_len = args
        if math.isclose(actual, 6 * n_params, rel_tol=1e-9):
            diff += " (6 * n_params only: attention's FLOPs are missing)"
        elif math.isclose(actual - 6 * n_params, 6 * n_layer * seq_len * d_model, rel_tol=1e-9):
            diff += " (attention's term is half what it should be: 12, not 6)"
    return diff


def _mfu_cases(seed=0, n_random=8, extra=None):
    fixed = [(100_000.0, 1.0e9, 989e12),     # GPT-2 124M-ish on an H100 at 100k tokens/s
             (46_000.0, 1.03e10, 989e12),    # a GPT-2 1.6B run on an H100 at about half its peak
             (1_000, 6_000, 312e12),
             (2.5e5, 7.9e8, 312e12)]
    rng = random.Random(seed)
    out = []
    for _ in range(n_random):
        out.append((rng.uniform(1e2, 1e6), rng.uniform(1e6, 1e11),
                    rng.choice([989e12, 312e12, 125e12, 82.6e12])))
    return fixed + out + as_args(extra)


def _compare_mfu(args, expected, actual):
    diff = _close_number(expected, actual, what="the MFU")
    if diff and isinstance(actual, (int, float)) and actual:
        if math.isclose(actual * expected, 1.0, rel_tol=1e-6):
            diff += " (upside down: achieved FLOPs over the peak, not the peak over them)"
        elif math.isclose(actual, 100 * expected, rel_tol=1e-9):
            diff += " (a percentage: return the fraction, between 0 and 1)"
    return diff


TASKS = {
    "cross_entropy": Task(
        "cross_entropy", reference_cross_entropy, _cross_entropy_cases, references=REFERENCES,
        compare_case=_compare_cross_entropy,
        hint="flatten logits to (N, V) and targets to (N,); keep the positions whose target is "
             "not ignore_index; log-softmax = (x - max) - log(sum(exp(x - max))) over the last "
             "axis; the loss is minus the mean, over the kept positions only, of the "
             "log-probability of each target; return a 0-d tensor"),
    "lr_at": Task(
        "lr_at", reference_lr_at, _lr_cases, references=REFERENCES, compare_case=_compare_lr,
        hint="while step < warmup_steps: max_lr * (step + 1) / warmup_steps (so step 0 is not "
             "0 and step warmup_steps - 1 is max_lr); from warmup_steps to total_steps a cosine "
             "min_lr + 0.5 * (max_lr - min_lr) * (1 + cos(pi * progress)), progress going from "
             "0 to 1 over those steps; min_lr from total_steps on; warmup_steps may be 0"),
    "accumulate_gradients": Task(
        "accumulate_gradients_on_gpt", reference_accumulate_gradients_on_gpt, _accumulate_cases,
        references=ACCUMULATE_REFERENCES, compare_case=_compare_accumulate, timeout=20.0,
        hint="for each (x, y): _, loss = model(x, y); (loss / len(batches)).backward() adds "
             "this micro-batch's share to every .grad (never zero them in between); return the "
             "mean of the losses as a number"),
    "flops_per_token": Task(
        "flops_per_token", reference_flops_per_token, _flops_cases, references=REFERENCES,
        compare_case=_compare_flops,
        hint="6 FLOPs per parameter (2 forward, 4 backward) plus attention's "
             "12 * n_layer * seq_len * d_model"),
    "mfu": Task(
        "mfu", reference_mfu, _mfu_cases, references=REFERENCES, compare_case=_compare_mfu,
        hint="the FLOPs per second the run achieves (tokens per second times FLOPs per token) "
             "as a fraction of the device's peak FLOPs per second: a number between 0 and 1 "
             "for a real run"),
}

ASSIGNMENT = Assignment(TASKS, references=REFERENCES, depends=DEPENDS)
globals().update(ASSIGNMENT.checks())  # check_cross_entropy, check_lr_at, check_accumulate_gradients, check_flops_per_token, check_mfu

