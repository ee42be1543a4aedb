"""Benchmark of chapter 5's KV cache: generation tokens/s with and without the cache.

    python bench/bench_generate.py                       # the course base model, 1 thread
    python bench/bench_generate.py --threads 2 --new 64
    python bench/bench_generate.py --random-config gpt2_124m --contexts 64 512 960 --new 32

For each context length L (the prompt's length), in the same run: greedy generation of ``--new``
tokens after an L-token prompt with ``generate(..., use_cache=False)`` (the whole window
recomputed for every token, as ``generate_naive`` does) and with the cache (the prompt once, then
one token per step), best of ``--repeats``; the ratio cached/naive; that both gave the same tokens;
and the memory the cache holds at the end (keys and values of every layer: 2 x n_layer x L x
d_model floats per sequence). The prompt is L tokens of a real corpus document (the course model)
or random ids (``--random-config``, a randomly initialised model of that shape).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from course_lib.generate import generate
from course_lib.model import GPT, KVCache


def best(fn, repeats):
    t, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        t = min(t, time.perf_counter() - start)
    return t, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--new", type=int, default=32, help="tokens generated per run")
    p.add_argument("--contexts", type=int, nargs="*", default=[16, 64, 128, 200])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--random-config", default=None,
                   help="a training config name: a random model of its shape instead of the "
                        "course base model")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.random_config:
        from course_lib.train import load_config

        torch.manual_seed(0)
        model = GPT(load_config(args.random_config).model_config()).eval()
        vocab = model.config.vocab_size

        def prompt(L):
            return torch.randint(0, vocab, (1, L), generator=torch.Generator().manual_seed(L))
        name = f"random {args.random_config}"
    else:
        from course_lib.pipeline import base_model, corpus_texts, course_tokenizer

        model, tok = base_model(), course_tokenizer()
        text = max(corpus_texts(), key=len)
        ids = tok.encode(text)

        def prompt(L):
            return torch.tensor([ids[:L]])
        name = "course base model"
    cfg = model.config
    rows = []
    for L in args.contexts:
        if L + args.new > cfg.block_size:
            print(f"skip L={L}: L + new > block_size {cfg.block_size}")
            continue
        x = prompt(L)
        t_naive, a = best(lambda x=x: generate(model, x, args.new, temperature=0, use_cache=False),
                          args.repeats)
        t_cache, b = best(lambda x=x: generate(model, x, args.new, temperature=0), args.repeats)
        cache = KVCache(cfg.n_layer)
        with torch.no_grad():
            model(torch.cat([x, b[:, L:-1]], dim=1), cache=cache)
        row = {"context": L, "naive_tokens_per_s": args.new / t_naive,
               "cached_tokens_per_s": args.new / t_cache, "ratio": t_naive / t_cache,
               "same_tokens": bool(torch.equal(a, b)), "cache_bytes": cache.memory_bytes()}
        rows.append(row)
        print(f"L={L:5d}: naive {row['naive_tokens_per_s']:8.1f} tok/s, cached "
              f"{row['cached_tokens_per_s']:8.1f} tok/s, ratio {row['ratio']:5.2f}x, same tokens "
              f"{row['same_tokens']}, cache {row['cache_bytes'] / 1024:,.0f} KiB", flush=True)
    n = model.num_parameters()
    print(f"\n{name}: {n:,} parameters, {cfg.n_layer} layers x {cfg.n_embd} wide, "
          f"block {cfg.block_size}; {args.new} new tokens, greedy, {args.threads} thread(s), "
          f"{platform.machine()}, torch {torch.__version__}")
    print("| context | naive tokens/s | cached tokens/s | cached/naive | same tokens | cache |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['context']} | {r['naive_tokens_per_s']:,.1f} | {r['cached_tokens_per_s']:,.1f}"
              f" | **{r['ratio']:.2f}x** | {'yes' if r['same_tokens'] else 'NO'} | "
              f"{r['cache_bytes'] / 1024:,.0f} KiB |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
