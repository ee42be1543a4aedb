"""Chapter 4's training pieces (course_lib.train): shards, loss, schedule, accumulation, MFU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib import model as M
from course_lib import train as T


def test_shards_round_trip_and_windows_are_shifted_by_one(tmp_path):
    ids = np.arange(1000) % 300
    p = T.write_shard(ids, tmp_path / "a.bin", vocab_size=300)
    assert p.stat().st_size == 2000  # uint16
    shards = T.TokenShards([p], block_size=16, batch_size=4, vocab_size=300)
    x, y = shards.batch(torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal((x + 1) % 300, y)  # consecutive ids, as written
    again = shards.batch(torch.Generator().manual_seed(0))
    assert torch.equal(again[0], x)  # seeded: the same windows


def test_big_vocabularies_use_uint32_and_bad_ids_are_refused(tmp_path):
    p = T.write_shard([70000, 5], tmp_path / "b.bin", vocab_size=100_000)
    assert p.stat().st_size == 8
    with pytest.raises(ValueError, match="token ids must lie"):
        T.write_shard([5, 300], tmp_path / "c.bin", vocab_size=300)
    with pytest.raises(ValueError, match="block_size"):
        T.TokenShards([T.write_shard([1, 2, 3], tmp_path / "d.bin", 10)], 8, 2, 10)


def test_data_parallel_ranks_get_different_windows(tmp_path):
    p = T.write_shard(np.arange(5000) % 1000, tmp_path / "a.bin", vocab_size=1000)
    shards = T.TokenShards(p, block_size=8, batch_size=3, vocab_size=1000)
    x0, _ = shards.batch(torch.Generator().manual_seed(1), rank=0, world_size=2)
    x1, _ = shards.batch(torch.Generator().manual_seed(1), rank=1, world_size=2)
    big = T.TokenShards(p, block_size=8, batch_size=6, vocab_size=1000)
    both, _ = big.batch(torch.Generator().manual_seed(1))
    assert torch.equal(torch.cat([x0, x1]), both)  # two ranks = one global batch


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_cross_entropy_equals_torch_and_is_stable(scale):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g) * scale
    targets = torch.randint(0, 11, (3, 5), generator=g)
    targets[0, 0] = -100
    ours = T.cross_entropy(logits, targets)
    ref = F.cross_entropy(logits.view(-1, 11), targets.view(-1), ignore_index=-100)
    assert torch.isfinite(ours) and torch.allclose(ours, ref, rtol=1e-5)
    with pytest.raises(ValueError, match="ignore_index"):
        T.cross_entropy(logits, torch.full((3, 5), -100))


def test_lr_schedule():
    kw = dict(max_lr=1e-3, min_lr=1e-4, warmup_steps=10, total_steps=100)
    assert T.lr_at(0, **kw) == pytest.approx(1e-4)
    assert T.lr_at(9, **kw) == pytest.approx(1e-3)  # warmup ends exactly at max_lr
    assert T.lr_at(10, **kw) == pytest.approx(1e-3)
    assert T.lr_at(55, **kw) == pytest.approx(0.5 * (1e-3 + 1e-4))
    assert T.lr_at(100, **kw) == pytest.approx(1e-4) == T.lr_at(500, **kw)
    lrs = [T.lr_at(s, **kw) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_accumulated_micro_batches_equal_one_big_batch():
    torch.manual_seed(0)
    cfg = M.GPTConfig(block_size=8, vocab_size=20, n_layer=1, n_head=2, n_embd=16)
    a, b = M.GPT(cfg), M.GPT(cfg)
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 20, (8, 8))
    y = torch.randint(0, 20, (8, 8))
    _, loss = a(x, y)
    loss.backward()
    T.accumulate_gradients(b, [(x[i:i + 2], y[i:i + 2]) for i in range(0, 8, 2)])
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-6), n


def test_mfu():
    n = 124_439_808
    fpt = M.flops_per_token(n, 12, 768, 1024)
    assert fpt == 6 * n + 12 * 12 * 1024 * 768
    assert T.mfu(100_000, fpt, T.PEAK_FLOPS["H100 SXM"]) == pytest.approx(100_000 * fpt / 989e12)
    assert math.isclose(T.mfu(1.0, 2.0, 4.0), 0.5)
    with pytest.raises(ValueError):
        T.mfu(1.0, 1.0, 0.0)
