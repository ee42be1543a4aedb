"""Pilot of recipe v2: the pipeline's data (crawl -> clean -> + curated documents, the digit
tokenizer), the base model trained from scratch with reading and problem solving measured every
``--eval_every`` steps: does the accuracy with the passage pull away from the one without?
``--copy_steps`` trains first on rows of a repeated segment (the copy curriculum; ``--copy_source
random``: segments of random ids instead of text windows). Results: docs/capability.md.

    python bench/capability_pilot.py --out runs/pilot --steps 1800 --copy_steps 600
    python bench/capability_pilot.py --out runs/pilot2 --data runs/pilot --steps 1800

One thread; ~1 s a step and ~20 s an evaluation on the course machine.
"""
import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from course_lib import evals as E
from course_lib import pipeline as P
from course_lib import train as T
from course_lib import world as W
from course_lib.model import GPT


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default="", help="reuse the data of an earlier pilot's --out")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--eval_every", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--curated", type=int, default=6000)
    ap.add_argument("--copy_steps", type=int, default=0)
    ap.add_argument("--copy_source", choices=["text", "random"], default="text")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.data and not (out / "data").exists():
        shutil.copytree(Path(a.data) / "data", out / "data")
        shutil.copy(Path(a.data) / "course_tokenizer.model", out)
    if not (out / "data" / "train.bin").exists():
        recipe = P.Recipe(**{**vars(P.RECIPES["v2"]), "curated_docs": a.curated})
        ch = P.Chain(out, recipe=recipe, progress=False)
        t0 = time.time()
        P.stage_world(ch)
        P.stage_corpus(ch)
        P.stage_tokenizer(ch)
        print("data", ch.report_rows, f"{time.time() - t0:.0f}s", flush=True)
    tok = P.course_tokenizer(out / "course_tokenizer.model")
    world = W.make_world(0)
    cfg = T.load_config("course_v2", data_dir=str(out / "data"), out_dir=str(out / "run"),
                        max_steps=a.steps, copy_steps=0, **T.parse_overrides(a.set))
    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model_config())
    opt = T.configure_optimizer(model, cfg)
    shards = T.TokenShards(out / "data" / "train.bin", cfg.block_size, cfg.batch_size,
                           cfg.vocab_size)
    g = torch.Generator().manual_seed(cfg.seed)
    items = E.reading_items(world, 150, seed=1)
    problems = {f"{k}{d}": E.problem_set(k, d, 40, seed=1, world=world)
                for k, d in E.PROBLEM_SUITE}

    def copy_rows():
        if a.copy_source == "text":
            return shards.copy_batch(g)
        rows = []
        for _ in range(32):
            L = int(torch.randint(6, 21, (1,), generator=g))
            seg = torch.randint(0, 64, (L,), generator=g) + 300
            rows.append(seg.repeat(65 // L + 2)[:65])
        s = torch.stack(rows)
        return s[:, :-1].contiguous(), s[:, 1:].contiguous()

    def evaluate(step):
        t = time.time()
        model.eval()
        r = {"step": step}
        r |= {f"read_{k}": v for k, v in E.reading_accuracy(model, tok, items).items()
              if k != "n"}
        for k, ps in problems.items():
            res = E.problem_accuracy(model, tok, ps, chat=False, max_new_tokens=100)
            r[k] = res["accuracy"]
        r["example"] = res["example"][:150]
        r["eval_s"] = round(time.time() - t)
        print(json.dumps(r), flush=True)
        model.train()
        return r

    history = []
    model.train()
    t1 = time.time()
    for step in range(1, a.steps + 1):
        lr = T.lr_at(step - 1, cfg.max_lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = copy_rows() if step <= a.copy_steps else shards.batch(g)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.3f} {time.time() - t1:.0f}s", flush=True)
        if step % a.eval_every == 0 or step == a.steps:
            history.append(evaluate(step))
    torch.save(model.state_dict(), out / "model.pt")
    (out / "history.json").write_text(json.dumps(history))


if __name__ == "__main__":
    main()
