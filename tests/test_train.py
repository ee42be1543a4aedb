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


# ---------------------------------------------------------------------------------------------
# The training run
# ---------------------------------------------------------------------------------------------

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _shards(tmp_path, n=20_000, vocab=64, seed=0):
    """Token shards with learnable structure: runs of counting up, restarted at random."""
    rng = np.random.default_rng(seed)
    ids, x = [], 0
    for _ in range(n):
        x = int(rng.integers(vocab)) if rng.random() < 0.1 else (x + 1) % vocab
        ids.append(x)
    for split in ("train", "val"):
        T.write_shard(ids, tmp_path / "data" / f"{split}.bin", vocab)
    return tmp_path / "data"


def _cfg(tmp_path, **kw):
    base = dict(data_dir=str(_shards(tmp_path)), out_dir=str(tmp_path / "out"), vocab_size=64,
                n_layer=2, n_head=2, n_embd=32, block_size=16, batch_size=8, max_steps=12,
                warmup_steps=3, eval_every=6, eval_batches=2, sample_every=0,
                checkpoint_every=0, threads=1)
    return T.load_config("tiny", **(base | kw))


def test_configs_load_and_bad_settings_are_named():
    for name in ("course", "tiny", "gpt2_124m", "sft"):
        cfg = T.load_config(name)
        cfg.model_config()  # a valid model shape
    assert T.load_config("gpt2_124m").tokens_per_step(world_size=8) == 524_288
    with pytest.raises(ValueError, match="unknown setting.*max_step"):
        T.load_config("tiny", max_step=5)
    with pytest.raises(FileNotFoundError, match="course"):
        T.load_config("nope")
    assert T.parse_overrides(["max_steps=7", "compile=true", "max_lr=1e-3", "device=cpu"]) == {
        "max_steps": 7, "compile": True, "max_lr": 1e-3, "device": "cpu"}
    with pytest.raises(ValueError, match="key=value"):
        T.parse_overrides(["max_steps"])


def test_missing_shards_say_how_to_make_them(tmp_path):
    cfg = T.load_config("tiny", data_dir=str(tmp_path / "none"), out_dir=str(tmp_path / "o"))
    with pytest.raises(FileNotFoundError, match="prepare"):
        T.train(cfg, progress=False)


def test_training_lowers_the_loss_and_writes_its_plot(tmp_path):
    res = T.train(_cfg(tmp_path, max_steps=60, max_lr=1e-2), progress=False)
    losses = [r["loss"] for r in res.history]
    assert len(losses) == 60 and losses[-1] < losses[0] - 1.0
    assert "val_loss" in res.history[-1] and res.history[-1]["val_loss"] < 3.0
    assert (tmp_path / "out" / "loss.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "ckpt.pt").exists()


def test_resuming_gives_the_same_loss_curve_as_not_stopping(tmp_path):
    straight = T.train(_cfg(tmp_path / "a"), progress=False).history
    cfg = _cfg(tmp_path / "b")
    first = T.train(cfg, progress=False, stop_after=5).history
    assert len(first) == 5
    resumed = T.train(cfg, progress=False, resume=True).history
    assert [r["step"] for r in resumed] == list(range(1, 13))
    for a, b in zip(straight, resumed):
        assert a["loss"] == b["loss"] and a["lr"] == b["lr"], a["step"]
        assert a.get("val_loss") == b.get("val_loss")


def test_exported_weights_load_into_the_same_model(tmp_path):
    res = T.train(_cfg(tmp_path, max_steps=3), progress=False)
    path = T.export_model(res.model, tmp_path / "m.pt", meta={"note": 1})
    again = T.load_model(path)
    from_ckpt = T.load_model(tmp_path / "out" / "ckpt.pt")
    x = torch.randint(0, 64, (2, 16))
    res.model.eval()
    with torch.no_grad():
        want = res.model(x)[0]
        assert torch.equal(again(x)[0], want) and torch.equal(from_ckpt(x)[0], want)
    assert again.lm_head.weight is again.transformer.wte.weight  # still tied


def test_weight_decay_skips_biases_and_layernorm():
    cfg = T.load_config("tiny")
    model = M.GPT(cfg.model_config())
    opt = T.configure_optimizer(model, cfg)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == cfg.weight_decay and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == model.num_parameters()  # the tied matrix once


@pytest.mark.slow
def test_two_processes_with_ddp_match_one_process_with_the_same_global_batch(tmp_path):
    """Real torch.distributed: torchrun starts 2 processes (gloo, CPU), each with half the batch;
    DDP averages their gradients, so every step equals one process with the whole batch."""
    import json
    import os
    import subprocess
    import sys

    data = _shards(tmp_path)
    common = [f"data_dir={data}", "vocab_size=64", "n_layer=2", "n_head=2", "n_embd=32",
              "block_size=16", "max_steps=8", "warmup_steps=2", "eval_every=4", "eval_batches=2",
              "sample_every=0", "checkpoint_every=0", "threads=1", "device=cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "course_lib.train", "--config", "tiny", "--set",
                             *common, "batch_size=8", f"out_dir={tmp_path / 'one'}"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29517", "-m", "course_lib.train", "--config", "tiny",
                          "--set", *common, "batch_size=4", f"out_dir={tmp_path / 'two'}"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    one = json.loads((tmp_path / "one" / "history.json").read_text())
    two = json.loads((tmp_path / "two" / "history.json").read_text())
    assert len(one) == len(two) == 8
    for a, b in zip(one, two):
        assert b["tokens"] == a["tokens"]  # the same global batch
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6), a["step"]
        assert b.get("val_loss", 0) == pytest.approx(a.get("val_loss", 0), rel=1e-5)
    assert one[-1]["loss"] < one[0]["loss"]


def test_fineweb_shards_from_a_local_parquet_of_its_schema(tmp_path):
    """The FineWeb path of `prepare`, offline: the shipped corpus has FineWeb's columns, so the
    real loader reads it as it would read FineWeb's parquet; GPT-4's encoding is offline."""
    from course_lib.data import CORPUS_PATH
    from course_lib.tokenizer import cl100k_base

    meta = T.prepare_fineweb(str(CORPUS_PATH), tmp_path, max_docs=50, val_every=10,
                             encoding="cl100k_base")
    assert meta["documents"] == 50 and meta["vocab_size"] == 100_277
    train = np.fromfile(tmp_path / "train.bin", dtype=np.uint32)  # vocab > 65,536
    assert len(train) == meta["train_tokens"] and (train == 100_257).sum() == 45
    enc = cl100k_base()
    text = enc.decode(train[:200].tolist())
    assert text and "<|endoftext|>" not in text.split("<|endoftext|>")[0]
    with pytest.raises(ValueError, match="encoding"):
        T.fineweb_encoding("gpt3")


def test_bf16_autocast_path_runs_and_stays_close_to_float32(tmp_path):
    """The GPU path's mixed precision, exercised on the CPU (which also has bf16 autocast)."""
    fp32 = T.train(_cfg(tmp_path / "a", max_steps=6), progress=False).history
    bf16 = T.train(_cfg(tmp_path / "b", max_steps=6, dtype="bfloat16"), progress=False).history
    a, b = [r["loss"] for r in fp32], [r["loss"] for r in bf16]
    assert a != b  # autocast really ran in bf16
    assert max(abs(x - y) for x, y in zip(a, b)) < 0.05


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one(tmp_path):
    """torch.compile (the GPU path's second speed-up) on the CPU: same losses, to float noise."""
    eager = T.train(_cfg(tmp_path / "a", max_steps=4), progress=False).history
    compiled = T.train(_cfg(tmp_path / "b", max_steps=4, compile=True), progress=False)
    for x, y in zip(eager, compiled.history):
        assert y["loss"] == pytest.approx(x["loss"], abs=1e-4)
    T.export_model(compiled.model, tmp_path / "m.pt")  # the compiled wrapper is unwrapped
    assert "transformer.wte.weight" in torch.load(tmp_path / "m.pt", weights_only=True)["model"]
