"""Checks for the Transformer assignment (chapter 3).

The student writes three pieces of a GPT:

- ``attention(q, k, v, causal=True) -> Tensor``: ``softmax(q k^T / sqrt(d) + mask) v`` for
  ``(B, H, T, D)`` tensors, with matmul and softmax (not ``scaled_dot_product_attention``);
- ``block_forward(x, params) -> Tensor``: one pre-LayerNorm Transformer block, its weights in
  ``params`` under ``Block.state_dict()``'s names plus ``params["n_head"]``;
- ``count_parameters(n_layer, n_head, d_model, vocab_size, block_size, tied=True) -> int``.

While ``block_forward`` is checked, the student's ``attention`` is replaced by a correct one, so a
mistake in attention costs attention's points only. Tensors are compared with the reference
within a tolerance (``rtol=1e-4``, ``atol=1e-5``) on
random shapes and seeds, including ``T = 1``, odd head sizes and large-magnitude inputs (where a
softmax without the max subtracted overflows). Parameter counts are compared exactly.
"""

from __future__ import annotations

import random

import torch

from course_lib import model as _model
from course_lib.grading.checks import Assignment, Task, as_args, close_tensor

REFERENCES = ("course_lib.model", "course_lib.grading.transformer")


def reference_attention(q, k, v, causal=True):
    return _model.attention(q, k, v, causal=causal)


def reference_block_forward(x, params):
    weights = {k: v for k, v in params.items() if k != "n_head"}
    return _model.block_forward(x, weights, params["n_head"])


def reference_count_parameters(n_layer, n_head, d_model, vocab_size, block_size, tied=True):
    return _model.count_parameters(n_layer, n_head, d_model, vocab_size, block_size, tied)


def _qkv(g, B, H, T, D, scale=1.0):
    return tuple(torch.randn(B, H, T, D, generator=g) * scale for _ in range(3))


def _attention_cases(seed=0, n_random=8, extra=None):
    g = torch.Generator().manual_seed(seed)
    fixed = [(*_qkv(g, 1, 1, 1, 4), True),          # T = 1: the one position attends to itself
             (*_qkv(g, 2, 3, 5, 7), True),          # odd head size
             (*_qkv(g, 1, 2, 6, 8), False),         # no mask
             (*_qkv(g, 1, 2, 4, 16, scale=30.0), True)]  # large scores: a stable softmax only
    rng = random.Random(seed)
    out = []
    for _ in range(n_random):
        B, H, T, D = rng.randrange(1, 3), rng.randrange(1, 5), rng.randrange(1, 12), rng.choice(
            [1, 3, 4, 5, 8, 16])
        out.append((*_qkv(g, B, H, T, D, scale=rng.choice([0.5, 1.0, 3.0])), rng.random() < 0.8))
    return fixed + out + [tuple(c) for c in (extra or [])]


def _random_block_params(g, C, n_head, scale=0.2):
    block = _model.Block(_model.GPTConfig(n_embd=C, n_head=n_head, n_layer=1, block_size=8,
                                          vocab_size=8))
    params = {}
    for name, p in block.state_dict().items():
        if name.endswith("weight") and name.startswith("ln"):
            params[name] = 1.0 + scale * torch.randn(p.shape, generator=g)
        else:
            params[name] = scale * torch.randn(p.shape, generator=g)
    params["n_head"] = n_head
    return params


def _block_cases(seed=0, n_random=4, extra=None):
    g = torch.Generator().manual_seed(seed + 1000)
    fixed = [(torch.randn(1, 1, 8, generator=g), _random_block_params(g, 8, 2)),   # T = 1
             (torch.randn(2, 5, 12, generator=g), _random_block_params(g, 12, 4)),  # head size 3
             (3.0 * torch.randn(1, 6, 16, generator=g) + 2.0, _random_block_params(g, 16, 1))]
    rng = random.Random(seed)
    out = []
    for _ in range(n_random):
        n_head = rng.choice([1, 2, 4])
        C = n_head * rng.choice([2, 3, 5, 8])
        x = torch.randn(rng.randrange(1, 3), rng.randrange(1, 9), C, generator=g)
        out.append((x, _random_block_params(g, C, n_head, scale=rng.choice([0.1, 0.3]))))
    return fixed + out + [tuple(c) for c in (extra or [])]


def _count_cases(seed=0, n_random=8, extra=None):
    fixed = [(12, 12, 768, 50257, 1024, True),   # GPT-2 124M
             (48, 25, 1600, 50257, 1024, True),  # GPT-2 1.5B, the lecture's model
             (1, 1, 4, 10, 3, False),
             (2, 4, 64, 100, 32, False)]
    rng = random.Random(seed)
    out = []
    for _ in range(n_random):
        n_head = rng.choice([1, 2, 4, 8])
        out.append((rng.randrange(1, 13), n_head, n_head * rng.randrange(1, 65),
                    rng.randrange(10, 60000), rng.choice([16, 64, 256, 1024, 2048]),
                    rng.random() < 0.6))
    return fixed + out + as_args(extra)


def _close(args, expected, actual):
    return close_tensor(expected, actual, rtol=1e-4, atol=1e-5, nonfinite=(
        "the result has inf or nan values (a softmax row whose scores are all -inf, e.g. a mask "
        "that hides the diagonal? an exp of large scores?)"))


TASKS = {
    "attention": Task(
        "attention", reference_attention, _attention_cases, compare_case=_close,
        hint="scores = q @ k.transpose(-2, -1) / sqrt(D); with causal, set the scores above the "
             "diagonal (future positions) to -inf before a softmax over the last axis; then "
             "multiply by v"),
    "block_forward": Task(
        "block_forward", reference_block_forward, _block_cases, compare_case=_close,
        substitute={"attention": "course_lib.model:attention"},
        hint="pre-LayerNorm: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)); heads split the "
             "channels (C // n_head each); the MLP uses GELU with approximate='tanh'"),
    "count_parameters": Task(
        "count_parameters", reference_count_parameters, _count_cases,
        hint="token and position embeddings; per block two LayerNorms (weight and bias), "
             "c_attn (C x 3C + 3C), c_proj (C x C + C), c_fc (C x 4C + 4C), mlp c_proj "
             "(4C x C + C); a final LayerNorm; the output matrix only when not tied"),
}

ASSIGNMENT = Assignment(TASKS, references=REFERENCES)
globals().update(ASSIGNMENT.checks())  # check_attention, check_block_forward, check_count_parameters

