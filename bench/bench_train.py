"""Benchmark of chapter 4's training: tokens/s of course_lib.model + course_lib.train against a
plain PyTorch GPT of the same shape, written here as the baseline, in the same run.

    python bench/bench_train.py                      # the course model's shape, 2 threads
    python bench/bench_train.py --threads 1 --steps 20
    python bench/bench_train.py --device cuda --config gpt2_124m --batch-size 16  # a GPU: MFU

The baseline is what one writes first: separate q, k, v projections, attention as
``softmax(q k^T / sqrt(d) + mask) v`` written out, ``nn.GELU``, ``F.cross_entropy``, one AdamW
over all parameters, float32, ``zero_grad() / forward / backward / step``. The candidate is the
course's run, ``course_lib.train.train`` itself (fused q/k/v, ``scaled_dot_product_attention``,
weight-decay groups, gradient clipping, the learning-rate schedule, loss logging; on a GPU bf16
autocast, TF32, fused AdamW and optionally ``torch.compile``). Both read the same token shards
(random ids) through ``TokenShards``, with the same batch and window. Each side runs
``--steps`` steps after ``--warmup`` untimed ones; the two alternate ``--repeats`` times and
the best of each is kept (the machine is shared). The ratio candidate/baseline is printed, and on
a known GPU the MFU of each.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib import train as T
from course_lib.model import flops_per_token


class PlainBlock(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.n_head = n_head
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.proj = (nn.Linear(d, d) for _ in range(4))
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        B, Tn, C = x.shape
        h = self.ln1(x)
        q, k, v = (lin(h).view(B, Tn, self.n_head, -1).transpose(1, 2)
                   for lin in (self.q, self.k, self.v))
        att = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        mask = torch.ones(Tn, Tn, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(B, Tn, C))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class PlainGPT(nn.Module):
    def __init__(self, vocab, block, d, n_layer, n_head):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(block, d)
        self.blocks = nn.ModuleList(PlainBlock(d, n_head) for _ in range(n_layer))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))
        for b in self.blocks:
            x = b(x)
        logits = self.head(self.ln(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def run_baseline(cfg, data, device, steps, warmup):
    torch.manual_seed(0)
    model = PlainGPT(cfg.vocab_size, cfg.block_size, cfg.n_embd, cfg.n_layer, cfg.n_head).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.max_lr)
    g = torch.Generator().manual_seed(0)
    for i in range(warmup + steps):
        if i == warmup:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        x, y = data.batch(g)
        loss = model(x.to(device), y.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
    return steps * cfg.batch_size * cfg.block_size / (time.perf_counter() - t0)


def run_course(cfg, steps, warmup):
    """``train`` itself; its history has each step's wall time, so the warmup steps (and a
    compile) are left out of the rate."""
    res = T.train(cfg, progress=False)
    times = [r["seconds"] for r in res.history]
    return steps * cfg.tokens_per_step() / (times[-1] - times[warmup - 1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="course")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="torch.compile the course model")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    cfg = T.load_config(args.config)
    overrides = {"data_dir": str(tmp / "data"), "out_dir": str(tmp / "out"), "device": args.device,
                 "max_steps": args.warmup + args.steps, "warmup_steps": 1,
                 "eval_every": 10 ** 9, "sample_every": 0, "checkpoint_every": 0,
                 "threads": args.threads, "compile": args.compile, "seed": 0}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    cfg = T.load_config(args.config, **overrides)
    ids = np.random.default_rng(0).integers(0, min(cfg.vocab_size, 50257), 2_000_000)
    for split in ("train", "val"):
        T.write_shard(ids, tmp / "data" / f"{split}.bin", cfg.vocab_size)
    data = T.TokenShards(tmp / "data" / "train.bin", cfg.block_size, cfg.batch_size, cfg.vocab_size)
    device = "cuda" if args.device == "cuda" else "cpu"
    base, ours = [], []
    for r in range(args.repeats):
        base.append(run_baseline(cfg, data, device, args.steps, args.warmup))
        ours.append(run_course(cfg, args.steps, args.warmup))
        print(f"repeat {r + 1}: baseline {base[-1]:,.0f} tokens/s, course {ours[-1]:,.0f} tokens/s",
              flush=True)
    from course_lib.model import GPT

    n = GPT(cfg.model_config()).num_parameters()
    fpt = flops_per_token(n, cfg.n_layer, cfg.n_embd, cfg.block_size)
    result = {"config": args.config, "device": torch.cuda.get_device_name() if device == "cuda"
              else platform.processor() or platform.machine(), "threads": args.threads,
              "parameters": n, "batch": [cfg.batch_size, cfg.block_size],
              "baseline_tokens_per_s": max(base), "course_tokens_per_s": max(ours),
              "ratio": max(ours) / max(base), "gflops_course": fpt * max(ours) / 1e9,
              "torch": torch.__version__, "python": sys.version.split()[0]}
    peak = T.device_peak_flops("cuda:0") if device == "cuda" else None
    if peak:
        result["mfu_course"] = T.mfu(max(ours), fpt, peak)
        result["mfu_baseline"] = T.mfu(max(base), fpt, peak)
    print(f"\n{args.config}: {n:,} parameters, batch {cfg.batch_size} x {cfg.block_size}, "
          f"{args.threads} thread(s), {result['device']}")
    print(f"baseline (plain PyTorch GPT): {max(base):10,.0f} tokens/s")
    print(f"course_lib.model + train:     {max(ours):10,.0f} tokens/s "
          f"({result['gflops_course']:.1f} GFLOP/s of model FLOPs)")
    print(f"ratio course/baseline: {result['ratio']:.2f}x")
    if peak:
        print(f"MFU: course {result['mfu_course']:.1%}, baseline {result['mfu_baseline']:.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
