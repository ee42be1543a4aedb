"""Pretraining: the pieces of the training loop (the start of chapter 4).

Introduced in chapter 4 (Pretraining). A base model is trained by showing it windows of the
corpus and nudging every parameter so that the true next token becomes a little more likely:

- the corpus, tokenized once, lives on disk as a flat array of token ids (``write_shard``);
  ``TokenShards`` reads random windows of it through ``numpy.memmap`` (nothing is loaded whole),
  each window's targets being the same ids shifted by one;
- the loss is the cross-entropy of the true next token (``cross_entropy``: a log-softmax made
  stable by subtracting each row's maximum);
- the learning rate rises linearly for ``warmup_steps`` and then follows a cosine down to
  ``min_lr`` at ``total_steps`` (``lr_at``);
- a batch too big for memory is split into micro-batches whose gradients add up to the big
  batch's (``accumulate_gradients``: each micro-batch's loss divided by their number);
- the GPU's efficiency is the model FLOPs utilisation (``mfu``): the FLOPs the model needs per
  second at the measured speed over the device's peak.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


def write_shard(ids, path: str | Path, vocab_size: int) -> Path:
    """Save token ids as a flat binary file: uint16 when the vocabulary fits, else uint32."""
    dtype = np.uint16 if vocab_size <= 2 ** 16 else np.uint32
    arr = np.asarray(ids)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size}); got {arr.min()}..{arr.max()}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr.astype(dtype).tofile(path)
    return path


class TokenShards:
    """Random training windows from token shards on disk, read through ``numpy.memmap``.

    ``batch(generator)`` returns ``x, y`` of shape ``(batch_size, block_size)``, ``y`` being
    ``x`` shifted by one token. With ``rank``/``world_size`` each process of a data-parallel run
    draws its own windows from the same generator stream (no two processes get the same)."""

    def __init__(self, paths, block_size: int, batch_size: int, vocab_size: int):
        paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        if not paths:
            raise ValueError("no shard files given")
        dtype = np.uint16 if vocab_size <= 2 ** 16 else np.uint32
        self.shards = [np.memmap(p, dtype=dtype, mode="r") for p in paths]
        self.block_size, self.batch_size = block_size, batch_size
        too_short = [str(p) for p, s in zip(paths, self.shards) if len(s) <= block_size]
        if too_short:
            raise ValueError(f"shard(s) {too_short} hold no more than block_size = {block_size} "
                             "tokens; use a shorter block_size or more text")
        self.sizes = np.array([len(s) - block_size for s in self.shards], dtype=np.float64)

    def batch(self, generator: torch.Generator, rank: int = 0, world_size: int = 1):
        n = self.batch_size * world_size
        shard_ix = torch.multinomial(torch.as_tensor(self.sizes / self.sizes.sum()), n,
                                     replacement=True, generator=generator)
        starts = (torch.rand(n, generator=generator, dtype=torch.float64)
                  * torch.as_tensor(self.sizes)[shard_ix]).long()
        rows = range(rank * self.batch_size, (rank + 1) * self.batch_size)
        xs, ys = [], []
        for r in rows:
            s = self.shards[int(shard_ix[r])]
            i = int(starts[r])
            window = torch.from_numpy(s[i:i + self.block_size + 1].astype(np.int64))
            xs.append(window[:-1])
            ys.append(window[1:])
        return torch.stack(xs), torch.stack(ys)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100
                  ) -> torch.Tensor:
    """Mean of ``-log softmax(logits)[target]`` over positions whose target is not
    ``ignore_index``; logits ``(..., V)``, targets ``(...)``. The log-softmax subtracts each
    row's maximum first, so huge logits do not overflow."""
    logits = logits.reshape(-1, logits.size(-1)).float()
    targets = targets.reshape(-1)
    keep = targets != ignore_index
    if not keep.any():
        raise ValueError("every target is ignore_index: there is nothing to average")
    logits, targets = logits[keep], targets[keep]
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    log_probs = shifted - shifted.exp().sum(dim=-1, keepdim=True).log()
    return -log_probs.gather(1, targets[:, None]).mean()


def lr_at(step: int, max_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warmup from ``max_lr / warmup_steps`` (step 0) to ``max_lr`` (step
    ``warmup_steps - 1``), then a cosine from ``max_lr`` down to ``min_lr`` at ``total_steps``;
    ``min_lr`` after that."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def accumulate_gradients(model: torch.nn.Module, batches) -> float:
    """Backpropagate micro-batches ``[(x, y), ...]`` so that the gradients equal those of one
    batch made of all of them (equal sizes): each loss is divided by the number of micro-batches.
    Returns the mean loss. Call ``optimizer.zero_grad()`` before and ``step()`` after."""
    batches = list(batches)
    total = 0.0
    for x, y in batches:
        _, loss = model(x, y)
        (loss / len(batches)).backward()
        total += loss.item()
    return total / len(batches)


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: the share of the device's peak the training actually uses."""
    if peak_flops <= 0:
        raise ValueError(f"peak_flops must be positive, got {peak_flops}")
    return tokens_per_s * flops_per_token / peak_flops


# Dense bf16 peaks (no sparsity), from the vendors' data sheets
PEAK_FLOPS = {"H100 SXM": 989e12, "H200": 989e12, "A100": 312e12}
