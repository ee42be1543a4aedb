"""Benchmark of chapter 8's rollouts: sampled tokens per CPU-second, and model FLOP/s of sampling
against a policy-gradient training step, in the same run.

    python bench/bench_rollout.py                      # the shipped assistant, 1 thread
    python bench/bench_rollout.py --threads 2 --batches 1 64

What is timed (CPU seconds of this process, so that another job on the machine matters less):

- **one at a time**: chapter 5's ``generate`` (KV cache, ``torch.multinomial``), one solution
  after another until ``<|im_end|>``: the loop a first RL script writes;
- **rollout at batch B**: ``rl.rollout`` on B prompts at once (preallocated cache, inverse-CDF
  draws, finished rows dropped), the same problems and temperature;
- **training step**: ``rl.token_logprobs`` + ``rl.policy_loss`` + backward on the 64 solutions of
  the batch-64 rollout (micro-batches of 32, as ``train_grpo``).

Model FLOPs: a training token costs ``model.flops_per_token`` (6 per parameter plus attention over
its context), a sampled token a third of it (the forward pass only) at the mean context length it
was sampled at. Prompts are held-out problems of chapter 8's distribution (``evals.rl_problems``),
sampled at T = 1 with up to ``--new`` tokens.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from course_lib import assets, evals, rl
from course_lib.assets import CHAT_TOKENS, IM_END
from course_lib.generate import generate, unknown_ids
from course_lib.model import flops_per_token


def cpu(fn):
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", type=int, nargs="*", default=[1, 16, 64, 256])
    p.add_argument("--one-at-a-time", type=int, default=12, help="solutions in the baseline loop")
    p.add_argument("--new", type=int, default=200)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = assets.load_model("sft")
    tok = assets.course_tokenizer(chat=True)
    cfg = model.config
    n_params = model.num_parameters()
    problems = evals.rl_problems(max(args.batches + [64, args.one_at_a_time]), seed=5)
    prompts = rl.problem_prompts(problems, tok)
    forbid = unknown_ids(tok, cfg.vocab_size)
    stop = CHAT_TOKENS[IM_END]

    def sample_flops(ps, ro):   # forward FLOPs of every sampled token, at its context length
        return sum(flops_per_token(n_params, cfg.n_layer, cfg.n_embd, len(p) + i) / 3
                   for p, t in zip(ps, ro.tokens) for i in range(len(t)))

    rows = []
    g = torch.Generator().manual_seed(0)
    rl.rollout(model, prompts[:8], 16, 1.0, g, forbid=forbid)          # warm up

    def one_at_a_time():
        out = []
        for pr in prompts[:args.one_at_a_time]:
            ids = torch.tensor([pr])
            new = generate(model, ids, args.new, 1.0, generator=g, stop_token=stop,
                           forbid=forbid)[0, ids.size(1):].tolist()
            out.append(new[:new.index(stop) + 1] if stop in new else new)
        return rl.Rollout(out, [stop not in t for t in out])

    s, ro = cpu(one_at_a_time)
    base = sum(ro.lengths) / s
    rows.append({"how": "one at a time (chapter 5's generate)", "batch": 1,
                 "tokens": sum(ro.lengths), "cpu_s": s, "tokens_per_s": base,
                 "gflops": sample_flops(prompts, ro) / s / 1e9})
    kept = None
    for B in args.batches:
        ps = (prompts * (B // len(prompts) + 1))[:B]
        s, ro = cpu(lambda: rl.rollout(model, ps, args.new, 1.0, g, forbid=forbid))
        rows.append({"how": "rl.rollout", "batch": B, "tokens": sum(ro.lengths), "cpu_s": s,
                     "tokens_per_s": sum(ro.lengths) / s,
                     "gflops": sample_flops(ps, ro) / s / 1e9,
                     "truncated": sum(ro.truncated) / B})
        if B == 64:
            kept = (ps, ro)
    if kept is None:
        ps = prompts[:64]
        kept = (ps, rl.rollout(model, ps, args.new, 1.0, g, forbid=forbid))
    ps, ro = kept
    model.train()
    adv = torch.randn(len(ps))

    def train_step():
        n_tok = sum(ro.lengths)
        for i in range(0, len(ps), 32):
            logp, mask = rl.token_logprobs(model, ps[i:i + 32], ro.tokens[i:i + 32])
            loss = rl.policy_loss(logp, logp.detach(), adv[i:i + 32], mask) * mask.sum() / n_tok
            loss.backward()
        model.zero_grad(set_to_none=True)

    train_step()   # warm up
    s, _ = cpu(train_step)
    seq_tokens = sum(len(p) + len(t) for p, t in zip(ps, ro.tokens))
    train_flops = sum(flops_per_token(n_params, cfg.n_layer, cfg.n_embd, len(p) + len(t))
                      * (len(p) + len(t)) for p, t in zip(ps, ro.tokens))
    train = {"sequences": len(ps), "tokens": seq_tokens, "cpu_s": s,
             "tokens_per_s": seq_tokens / s, "gflops": train_flops / s / 1e9}

    print(f"chapter 8 rollouts, shipped assistant ({n_params:,} parameters), "
          f"{args.threads} thread(s), T = 1, up to {args.new} new tokens; "
          f"{platform.processor() or platform.machine()}")
    print(f"{'how':<40}{'batch':>6}{'tokens':>8}{'CPU s':>8}{'tok/CPU-s':>11}"
          f"{'x loop':>8}{'GFLOP/s':>9}")
    for r in rows:
        print(f"{r['how']:<40}{r['batch']:>6}{r['tokens']:>8}{r['cpu_s']:>8.2f}"
              f"{r['tokens_per_s']:>11.0f}{r['tokens_per_s'] / base:>8.1f}{r['gflops']:>9.2f}")
    print(f"{'training step (logprobs + loss + backward)':<46}{train['sequences']:>8}"
          f"{train['cpu_s']:>8.2f}{train['tokens_per_s']:>11.0f}{'':>8}{train['gflops']:>9.2f}")
    at64 = next((r for r in rows if r["batch"] == 64 and r["how"] == "rl.rollout"), None)
    verdict = {}
    if at64:
        verdict = {"speedup_at_64": at64["tokens_per_s"] / base,
                   "sampling_over_training_flops": at64["gflops"] / train["gflops"]}
        print(f"batch 64: {verdict['speedup_at_64']:.1f}x the one-at-a-time loop (target >= 20x); "
              f"sampling reaches {verdict['sampling_over_training_flops']:.2f} of the training "
              "step's model FLOP/s (target >= 0.5)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "train": train, **verdict, "threads": args.threads}, f,
                      indent=1)


if __name__ == "__main__":
    main()
