"""What a model knows, measured: the course's evaluations (chapters 4-6).

- ``fact_accuracy``: every fact sentence of the world completed greedily (checked teacher-forced
  in one batch), grouped in deciles of entities by how many training documents name them;
- ``few_shot_accuracy``: facts asked as ``name: value;`` examples and a query (chapter 5);
- ``digit_addition_accuracy`` and ``sum_accuracy``: adding as the corpus's worked solutions do,
  and whole sums with no steps.

They sit above the chapter modules and below the pipeline, which puts their numbers on the
report card.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import torch

from course_lib.data import training_mentions

@torch.no_grad()
def _greedy_matches(model, prompts: list[list[int]], answers: list[list[int]],
                    batch_size: int = 64) -> tuple[list[bool], list[float]]:
    """For each (prompt, answer) pair: would greedy decoding after the prompt produce exactly the
    answer's tokens (checked in one forward pass, teacher-forced), and the answer's log-prob."""
    model.eval()
    device = next(model.parameters()).device
    ok, logp = [], []
    block = model.config.block_size
    for i in range(0, len(prompts), batch_size):
        seqs = [(p + a)[-block - 1:] for p, a in zip(prompts[i:i + batch_size],
                                                      answers[i:i + batch_size])]
        n_ans = [len(a) for a in answers[i:i + batch_size]]
        T = max(len(s) for s in seqs) - 1
        x = torch.zeros(len(seqs), T, dtype=torch.long)
        for r, s in enumerate(seqs):
            x[r, :len(s) - 1] = torch.tensor(s[:-1])
        logits, _ = model(x.to(device))
        logprobs = logits.float().log_softmax(-1).cpu()
        for r, s in enumerate(seqs):
            L = len(s) - 1
            pos = torch.arange(L - n_ans[r], L)
            target = torch.tensor(s[-n_ans[r]:])
            lp = logprobs[r, pos]
            ok.append(bool((lp.argmax(-1) == target).all()))
            logp.append(float(lp.gather(1, target[:, None]).sum()))
    return ok, logp


@dataclass
class FactResult:
    rows: list                   # one dict per fact: entity, rank, mentions, relation, value, ...
    deciles: list                # (decile, mentions range, n facts, accuracy); decile 1 = most
    chance: float                # accuracy of always guessing the commonest value of a relation
    accuracy: float = field(default=0.0)

    def table(self) -> str:
        lines = ["| decile | mentions | facts | accuracy |", "|---|---|---|---|"]
        for d, (lo, hi), n, acc in self.deciles:
            lines.append(f"| {d} | {lo}-{hi} | {n} | {acc:.0%} |")
        return "\n".join(lines)


def fact_accuracy(model, tokenizer, world=None, texts: list[str] | None = None,
                  batch_size: int = 64) -> FactResult:
    """Complete every fact sentence of the world (``fact.prompt`` -> ``" " + fact.value``)
    greedily and score it, grouped into deciles of entities by how many training documents of
    the corpus name them (decile 1: the most mentioned tenth)."""
    world, mentions = training_mentions(world, texts)
    facts = [(e, f) for e in world.entities for f in e.all_facts()]
    prompts = [tokenizer.encode(f.prompt) for _, f in facts]
    answers = [tokenizer.encode(" " + f.value) for _, f in facts]
    ok, logp = _greedy_matches(model, prompts, answers, batch_size)
    order = sorted(world.entities, key=lambda e: (-mentions[e.name], e.rank))
    decile_of = {e.name: 1 + (10 * i) // len(order) for i, e in enumerate(order)}
    rows = [{"entity": e.name, "kind": e.kind, "rank": e.rank, "mentions": mentions[e.name],
             "decile": decile_of[e.name], "relation": f.relation, "value": f.value,
             "prompt": f.prompt, "correct": c, "logprob": lp}
            for (e, f), c, lp in zip(facts, ok, logp)]
    deciles = []
    for d in range(1, 11):
        rs = [r for r in rows if r["decile"] == d]
        m = [r["mentions"] for r in rs]
        deciles.append((d, (min(m), max(m)), len(rs), sum(r["correct"] for r in rs) / len(rs)))
    by_rel = Counter((r["kind"], r["relation"]) for r in rows)
    common = Counter((r["kind"], r["relation"], r["value"]) for r in rows)
    best = {}
    for (k, rel, _), n in common.items():
        best[(k, rel)] = max(best.get((k, rel), 0), n)
    chance = sum(best[(r["kind"], r["relation"])] / by_rel[(r["kind"], r["relation"])]
                 for r in rows) / len(rows)
    return FactResult(rows, deciles, chance, sum(ok) / len(ok))


def few_shot_accuracy(model, tokenizer, world=None, texts: list[str] | None = None,
                      ks: tuple = (0, 1, 2, 4, 8), top: int = 40, seed: int = 0,
                      batch_size: int = 64) -> dict:
    """In-context learning, measured. A task is one relation of the world ("favourite colour");
    its prompt holds ``k`` examples in the corpus's table format, ``name: value; `` for other
    entities, and then ``query name:``, with nothing saying which relation is asked: only the
    examples do. For
    each relation, the ``top`` most-mentioned entities of its kind are asked (examples drawn from
    the same ones). Right means greedy decoding gives exactly `` value``.

    Returns ``{"ks", "accuracy": {k: share right over all prompts}, "by_relation":
    {"kind/relation": {k: share}}, "sentence": share of the same facts completed from their
    canonical sentence (what the model knows: the ceiling), "examples": {k: one prompt}}``."""
    world, mentions = training_mentions(world, texts)
    rng = random.Random(f"few-shot-{seed}")
    tasks = []  # (k, kind/relation, prompt, answer)
    sentence = []
    for kind in sorted({e.kind for e in world.entities}):
        pool = sorted(world.of_kind(kind), key=lambda e: (-mentions[e.name], e.rank))[:top]
        for relation in sorted(pool[0].facts):
            for q in pool:
                sentence.append((tokenizer.encode(q.fact(relation).prompt),
                                 tokenizer.encode(" " + q.facts[relation])))
                others = [e for e in pool if e is not q]
                for k in ks:
                    shots = rng.sample(others, k)
                    prompt = "".join(f"{e.name}: {e.facts[relation]}; " for e in shots)
                    tasks.append((k, f"{kind}/{relation}", prompt + f"{q.name}:",
                                  " " + q.facts[relation]))
    ok, _ = _greedy_matches(model, [tokenizer.encode(t[2]) for t in tasks],
                            [tokenizer.encode(t[3]) for t in tasks], batch_size)
    known, _ = _greedy_matches(model, [p for p, _ in sentence], [a for _, a in sentence],
                               batch_size)
    by_rel, acc = {}, {}
    for k in ks:
        acc[k] = sum(c for t, c in zip(tasks, ok) if t[0] == k) / sum(t[0] == k for t in tasks)
    for (k, rel, _, _), c in zip(tasks, ok):
        by_rel.setdefault(rel, {}).setdefault(k, []).append(c)
    by_rel = {rel: {k: sum(v) / len(v) for k, v in d.items()} for rel, d in by_rel.items()}
    examples = {}
    for t in tasks:
        examples.setdefault(t[0], t[2])
    return {"ks": list(ks), "accuracy": acc, "by_relation": by_rel,
            "sentence": sum(known) / len(known), "examples": examples}


def digit_addition_accuracy(model, tokenizer) -> dict:
    """Adding two digits as the corpus's worked solutions do ("In the ones place we add 7 and 5
    and get" -> " 12"), over all 100 pairs; chance is guessing uniformly among the 19 sums."""
    pairs = [(x, y) for x in range(10) for y in range(10)]
    prompts = [tokenizer.encode(f"In the ones place we add {x} and {y} and get") for x, y in pairs]
    answers = [tokenizer.encode(f" {x + y}") for x, y in pairs]
    ok, _ = _greedy_matches(model, prompts, answers)
    return {"accuracy": sum(ok) / len(ok), "chance": 1 / 19, "n": len(ok),
            "wrong": [f"{x}+{y}" for (x, y), c in zip(pairs, ok) if not c]}


def sum_accuracy(model, tokenizer, n: int = 200, seed: int = 0, max_value: int = 100) -> dict:
    """Whole sums with no worked steps ("So the sum of 23 and 45 is" -> " 68"), a and b drawn
    below ``max_value``: harder than digits, since the corpus only states such sums after working
    them out. Chance: the probability that a sum of the same kind equals it."""
    rng = random.Random(seed)
    pairs = [(rng.randrange(2, max_value), rng.randrange(2, max_value)) for _ in range(n)]
    prompts = [tokenizer.encode(f"So the sum of {a} and {b} is") for a, b in pairs]
    answers = [tokenizer.encode(f" {a + b}") for a, b in pairs]
    ok, _ = _greedy_matches(model, prompts, answers)
    sums = Counter(a + b for a in range(2, max_value) for b in range(2, max_value))
    total = sum(sums.values())
    chance = sum((c / total) ** 2 for c in sums.values())
    return {"accuracy": sum(ok) / n, "chance": chance, "n": n}
