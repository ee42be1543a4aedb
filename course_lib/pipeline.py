"""The course's one pipeline, end to end: world -> crawl -> corpus -> tokenizer -> base model.

Introduced in chapter 4 (Pretraining). Each stage's output ships small in ``course_lib/assets``
so that every chapter starts in seconds, and this module remakes them:

- ``course_tokenizer()``: the course's BPE tokenizer (``course_lib.tokenizer.RegexTokenizer``
  trained on the cleaned corpus of chapter 1), 4,080 ordinary tokens plus ``<|endoftext|>``;
  ids 4,081-4,095 are kept free for chapter 6's chat tokens, so the model's vocabulary (4,096)
  does not change when they arrive;
- ``prepare_course_data``: the corpus tokenized into ``train.bin``/``val.bin`` token shards
  (every 50th document is held out for the validation loss);
- ``base_model()``: the course's base model, a GPT trained on those shards by
  ``course_lib.train`` (config ``course_lib/configs/course.toml``);
- ``fact_accuracy`` and ``digit_addition_accuracy``: what the base model learned, measured:
  completing fact sentences about entities by how often the corpus mentions them, and adding
  digits as the corpus's worked solutions do.

``python -m course_lib.pipeline`` runs the chain and writes a report card (markdown) of each
stage's numbers; ``--ship`` copies the tokenizer, model and log into ``course_lib/assets``; later
chapters add their stages to ``STAGES``.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ASSETS = Path(__file__).parent / "assets"
TOKENIZER_PATH = ASSETS / "course_tokenizer.model"
BASE_MODEL_PATH = ASSETS / "base_model.pt"
BASE_LOG_PATH = ASSETS / "base_model.json"
VOCAB_SIZE = 4096                     # the model's embedding rows
ORDINARY_VOCAB = 4080                 # bytes + merges
ENDOFTEXT = "<|endoftext|>"
SPECIAL_TOKENS = {ENDOFTEXT: ORDINARY_VOCAB}  # 4081..4095: free for chapter 6's chat tokens
VAL_EVERY = 50                        # every 50th document is validation


# ---------------------------------------------------------------------------------------------
# The tokenizer and the token shards
# ---------------------------------------------------------------------------------------------

def corpus_texts(corpus=None) -> list[str]:
    """The documents of the cleaned corpus (the shipped one by default)."""
    from course_lib.data import load_corpus

    return list((corpus if corpus is not None else load_corpus())["text"])


def train_course_tokenizer(texts: list[str], vocab_size: int = ORDINARY_VOCAB):
    """Learn the course's BPE on the corpus (GPT-4's split pattern), then add ``<|endoftext|>``."""
    from course_lib.tokenizer import RegexTokenizer

    tok = RegexTokenizer()
    tok.train("\n\n".join(texts), vocab_size)
    tok.register_special_tokens({ENDOFTEXT: vocab_size})
    return tok


def course_tokenizer(path: str | Path | None = None):
    """The shipped course tokenizer; remake it with ``python -m course_lib.pipeline --ship``."""
    from course_lib.tokenizer import Tokenizer

    path = Path(path or TOKENIZER_PATH)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; make it with "
                                "`python -m course_lib.pipeline --ship`")
    return Tokenizer.load(path)


def prepare_course_data(tokenizer, out_dir: str | Path, texts: list[str] | None = None,
                        val_every: int = VAL_EVERY) -> dict:
    """Tokenize the corpus into ``train.bin`` and ``val.bin`` (each document followed by
    ``<|endoftext|>``, as GPT-2's data was) and write ``meta.json``."""
    from course_lib.train import write_shard

    texts = corpus_texts() if texts is None else texts
    enc = tokenizer.to_tiktoken()  # the same ids, a fast encoder
    eot = tokenizer.special_tokens[ENDOFTEXT]
    ids = enc.encode_ordinary_batch(texts)
    split = {"train": [], "val": []}
    for i, doc in enumerate(ids):
        split["val" if i % val_every == 0 else "train"].extend(doc + [eot])
    out_dir = Path(out_dir)
    meta = {"documents": len(texts), "vocab_size": VOCAB_SIZE,
            "bytes": sum(len(t.encode("utf-8")) for t in texts)}
    for name, seq in split.items():
        write_shard(np.array(seq, dtype=np.int64), out_dir / f"{name}.bin", VOCAB_SIZE)
        meta[f"{name}_tokens"] = len(seq)
    meta["bytes_per_token"] = meta["bytes"] / (meta["train_tokens"] + meta["val_tokens"])
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def base_model(path: str | Path | None = None, device: str = "cpu"):
    """The shipped base model (a ``course_lib.model.GPT`` in eval mode)."""
    from course_lib.train import load_model

    path = Path(path or BASE_MODEL_PATH)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; make it with "
                                "`python -m course_lib.pipeline --ship`")
    return load_model(path, device)


# ---------------------------------------------------------------------------------------------
# What the base model knows
# ---------------------------------------------------------------------------------------------

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


def entity_mentions(world, texts: list[str]) -> dict[str, int]:
    """How many documents of ``texts`` name each entity of the world (its full name)."""
    counts = {}
    for e in world.entities:
        counts[e.name] = sum(e.name in t for t in texts)
    return counts


def training_mentions(world=None, texts: list[str] | None = None) -> tuple:
    """``world`` (the course world by default) and how many of ``texts`` name each entity;
    ``texts`` default to the shipped corpus's training documents (validation split left out)."""
    from course_lib.world import make_world

    world = world or make_world()
    if texts is None:
        texts = [t for i, t in enumerate(corpus_texts()) if i % VAL_EVERY]
    return world, entity_mentions(world, texts)


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


# ---------------------------------------------------------------------------------------------
# The chain and its report card
# ---------------------------------------------------------------------------------------------

@dataclass
class Chain:
    """What the stages hand to each other, and the report card they fill in."""

    out: Path
    quick: bool = False
    seed: int = 0
    threads: int = 0
    config: str = "course"
    overrides: dict = field(default_factory=dict)
    progress: bool = True
    world: object = None
    records: list = None
    corpus: object = None
    texts: list = None
    tokenizer: object = None
    model: object = None
    sft_model: object = None
    card: list = field(default_factory=list)   # (stage, [(measure, value)])
    numbers: dict = field(default_factory=dict)

    def report(self, stage: str, rows: list, seconds: float):
        self.card.append((stage, rows + [("time", f"{seconds:.0f} s")]))
        self.numbers[stage] = {k: v for k, v in rows} | {"seconds": round(seconds, 1)}


def stage_world(ch: Chain):
    from course_lib import crawl, world

    ch.world = world.make_world(ch.seed)
    ch.records = crawl.render_crawl(ch.world, seed=ch.seed, progress=False)
    n_bytes = sum(len(r.get("html") or b"") for r in ch.records)
    ch.report_rows = [("entities", len(ch.world.entities)), ("facts", len(ch.world.facts())),
                      ("crawl pages", len(ch.records)), ("crawl HTML", f"{n_bytes / 1e6:.1f} MB")]


def stage_corpus(ch: Chain):
    from course_lib import data

    result = data.run_pipeline(ch.records, data.PRODUCTION, num_proc=2, progress=False)
    ch.corpus = data.count_tokens(result.corpus)
    ch.texts = list(ch.corpus["text"])
    data.write_corpus(ch.corpus, ch.out / "corpus.parquet")
    ch.report_rows = [("documents kept", f"{len(ch.texts):,} of {len(ch.records):,} pages"),
                      ("GPT-4 tokens", f"{sum(ch.corpus['token_count']):,}"),
                      ("text", f"{sum(len(t.encode()) for t in ch.texts) / 1e6:.2f} MB")]


def stage_tokenizer(ch: Chain):
    if ch.texts is None:  # starting from the shipped corpus
        from course_lib.world import make_world

        ch.world = ch.world or make_world(ch.seed)
        ch.texts = corpus_texts()
    vocab = 512 if ch.quick else ORDINARY_VOCAB
    texts = ch.texts[:400] if ch.quick else ch.texts
    ch.tokenizer = train_course_tokenizer(texts, vocab)
    ch.tokenizer.save(ch.out / "course_tokenizer")
    meta = prepare_course_data(ch.tokenizer, ch.out / "data", ch.texts)
    ch.report_rows = [("vocabulary", f"{vocab:,} ordinary tokens + end-of-text"),
                      ("train tokens", f"{meta['train_tokens']:,}"),
                      ("validation tokens", f"{meta['val_tokens']:,}"),
                      ("bytes per token", f"{meta['bytes_per_token']:.2f}")]


def stage_base_model(ch: Chain):
    from course_lib.model import flops_per_token
    from course_lib.train import export_model, load_config, train

    overrides = {"data_dir": str(ch.out / "data"), "out_dir": str(ch.out / "base")}
    if ch.quick:
        overrides |= {"max_steps": 300, "warmup_steps": 20, "eval_every": 100, "sample_every": 100,
                      "checkpoint_every": 0, "n_layer": 2, "n_embd": 64, "n_head": 2,
                      "block_size": 64, "batch_size": 8}
    if ch.threads:
        overrides["threads"] = ch.threads
    cfg = load_config(ch.config, **(overrides | ch.overrides))
    res = train(cfg, ch.tokenizer, progress=ch.progress, log=lambda *a: None)
    ch.model = res.model
    n = ch.model.num_parameters()
    fpt = flops_per_token(n, cfg.n_layer, cfg.n_embd, cfg.block_size)
    tokens = cfg.max_steps * cfg.tokens_per_step()
    facts = fact_accuracy(ch.model, ch.tokenizer, ch.world,
                          [t for i, t in enumerate(ch.texts) if i % VAL_EVERY])
    digits = digit_addition_accuracy(ch.model, ch.tokenizer)
    sums = sum_accuracy(ch.model, ch.tokenizer)
    shots = few_shot_accuracy(ch.model, ch.tokenizer, ch.world,
                              [t for i, t in enumerate(ch.texts) if i % VAL_EVERY])
    top, bottom = facts.deciles[0][3], facts.deciles[-1][3]
    last = res.history[-1]
    meta = {"config": {k: v for k, v in vars(cfg).items()}, "parameters": n,
            "flops_per_token": fpt, "train_flops": fpt * tokens, "tokens": tokens,
            "seconds": res.seconds, "tokens_per_s": res.tokens_per_s,
            "final_loss": last["loss"], "val_loss": last.get("val_loss"),
            "fact_deciles": facts.deciles, "fact_accuracy": facts.accuracy,
            "fact_chance": facts.chance, "digit_addition": digits, "sums": sums, "few_shot": shots,
            "samples": res.samples, "history": res.history}
    export_model(ch.model, ch.out / "base_model.pt", meta={"parameters": n, "tokens": tokens})
    (ch.out / "base_model.json").write_text(json.dumps(meta, indent=1))
    (ch.out / "fact_deciles.md").write_text(facts.table() + "\n")
    ch.report_rows = [
        ("parameters", f"{n:,}"), ("steps x tokens per step", f"{cfg.max_steps:,} x "
                                   f"{cfg.tokens_per_step():,} = {tokens:,} tokens"),
        ("epochs", f"{tokens / max(1, _train_tokens(ch)):.1f}"),
        ("training compute", f"{fpt * tokens:.2e} FLOPs ({fpt / 1e6:.1f} MFLOPs per token)"),
        ("speed", f"{res.tokens_per_s:,.0f} tokens/s, "
                  f"{fpt * res.tokens_per_s / 1e9:.1f} GFLOP/s achieved"),
        ("final loss (train / validation)", f"{last['loss']:.3f} / {last.get('val_loss', float('nan')):.3f}"),
        ("fact completion, most-mentioned decile", f"{top:.0%}"),
        ("fact completion, least-mentioned decile", f"{bottom:.0%}"),
        ("fact completion, all / guessing the commonest value", f"{facts.accuracy:.0%} / {facts.chance:.0%}"),
        ("digit addition (ones place), accuracy / chance", f"{digits['accuracy']:.0%} / {digits['chance']:.0%}"),
        ("two-number sums with no steps, accuracy / chance", f"{sums['accuracy']:.0%} / {sums['chance']:.1%}"),
        ("few-shot table entries, k = " + " / ".join(map(str, shots["ks"])),
         " / ".join(f"{shots['accuracy'][k]:.0%}" for k in shots["ks"])
         + f" (the same facts from their sentence: {shots['sentence']:.0%})"),
    ]


def stage_assistant(ch: Chain):
    """Chapter 6: finetune the base model on conversations (loss on the assistant's tokens) and
    measure questions about popular facts the finetuning data never asked, base model through a
    forum prompt vs the assistant, plus identity and rare entities."""
    from course_lib import chat
    from course_lib.train import export_model, load_config, train
    from course_lib.world import ASSISTANT_NAME, make_world

    base_path = ch.out / "base_model.pt"
    if ch.model is None:  # starting here: the shipped base model and tokenizer
        ch.world = ch.world or make_world(ch.seed)
        ch.texts = ch.texts or corpus_texts()
        ch.tokenizer = course_tokenizer()
        ch.model = base_model()
        base_path = BASE_MODEL_PATH
    tok = chat.chat_tokenizer(ch.tokenizer)
    convs = chat.sft_conversations(ch.world, 600 if ch.quick else 6000, ch.seed)
    meta = chat.prepare_sft_data(tok, ch.out / "sft_data", convs)
    mc = ch.model.config
    shape = {"n_layer": mc.n_layer, "n_head": mc.n_head, "n_embd": mc.n_embd,
             "block_size": mc.block_size, "vocab_size": mc.vocab_size, "bias": mc.bias}
    overrides = shape | {"init_from": str(base_path), "data_dir": str(ch.out / "sft_data"),
                         "out_dir": str(ch.out / "sft")}
    if ch.quick:
        overrides |= {"max_steps": 60, "eval_every": 30, "sample_every": 30,
                      "checkpoint_every": 0, "sample_tokens": 8}
    if ch.threads:
        overrides["threads"] = ch.threads
    cfg = load_config("sft", **overrides)
    res = train(cfg, tok, progress=ch.progress, log=lambda *a: None)
    sft = res.model
    train_texts = [t for i, t in enumerate(ch.texts) if i % VAL_EVERY]
    popular = chat.popular_questions(ch.world, train_texts, top=100)
    rare = chat.rare_questions(ch.world, train_texts)
    before = chat.question_accuracy(ch.model, tok, popular, base=True)
    after = chat.question_accuracy(sft, tok, popular)
    rare_after = chat.question_accuracy(sft, tok, rare)
    who = {"base": chat.base_replies(ch.model, tok, ["Who are you?"])[0],
           "assistant": chat.reply(sft, tok, [{"role": "user", "content": "Who are you?"}])}
    last = res.history[-1]
    log = {"config": vars(cfg), "data": meta, "seconds": res.seconds,
           "tokens_per_s": res.tokens_per_s, "final_loss": last["loss"],
           "val_loss": last.get("val_loss"), "history": res.history, "samples": res.samples,
           "popular_base": before, "popular_sft": after, "rare_sft": rare_after, "who": who}
    export_model(sft, ch.out / "sft_model.pt", meta={"init_from": str(base_path)})
    (ch.out / "sft_model.json").write_text(json.dumps(log, indent=1, default=str))
    ch.sft_model = sft
    ch.report_rows = [
        ("conversations (train / validation)",
         f"{meta['train_conversations']:,} / {meta['val_conversations']:,}"),
        ("tokens, of which the assistant's (trained)",
         f"{meta['train_tokens']:,}, {meta['train_trained_tokens']:,}"),
        ("steps x tokens per step", f"{cfg.max_steps:,} x {cfg.tokens_per_step():,}"),
        ("final loss on assistant tokens (train / validation)",
         f"{last['loss']:.3f} / {last.get('val_loss', float('nan')):.3f}"),
        ("popular facts never in the SFT data, base model with a forum prompt",
         f"{before['accuracy']:.0%} of {before['n']}"),
        ("the same questions, the assistant", f"{after['accuracy']:.0%} of {after['n']}"),
        ("facts of entities no document names, the assistant",
         f"{rare_after['accuracy']:.0%} of {rare_after['n']} (answered, mostly wrong)"),
        ("'Who are you?'", f"{who['assistant'][:80]!r} (names {ASSISTANT_NAME}: "
                           f"{ASSISTANT_NAME in who['assistant']})"),
    ]


def _train_tokens(ch: Chain) -> int:
    return json.loads((ch.out / "data" / "meta.json").read_text())["train_tokens"]


STAGES = [("world and crawl", stage_world), ("cleaned corpus", stage_corpus),
          ("tokenizer", stage_tokenizer), ("base model", stage_base_model),
          ("assistant", stage_assistant)]


def run_chain(out: str | Path = "runs/chain", start: str = "world and crawl", quick: bool = False,
              seed: int = 0, threads: int = 0, config: str = "course",
              overrides: dict | None = None, progress: bool = True) -> Chain:
    """Run the stages from ``start`` on, writing everything under ``out`` and the report card to
    ``out/report_card.md``."""
    names = [n for n, _ in STAGES]
    if start not in names:
        raise ValueError(f"unknown stage {start!r}; the stages are {names}")
    ch = Chain(Path(out), quick, seed, threads, config, dict(overrides or {}), progress)
    ch.out.mkdir(parents=True, exist_ok=True)
    shipped = ASSETS / "report_card.json"
    if start != names[0] and not quick and shipped.exists():
        # the stages not rerun keep the shipped card's numbers
        numbers = json.loads(shipped.read_text())
        for name in names[:names.index(start)]:
            if name in numbers:
                rows = [(k, v) for k, v in numbers[name].items() if k != "seconds"]
                ch.card.append((name, rows + [("time", f"{numbers[name]['seconds']:.0f} s")]))
                ch.numbers[name] = numbers[name]
    for name, fn in STAGES[names.index(start):]:
        if progress:
            print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        ch.report_rows = []
        fn(ch)
        ch.report(name, ch.report_rows, time.perf_counter() - t0)
        write_report_card(ch)
    return ch


def write_report_card(ch: Chain) -> Path:
    lines = ["# Report card of the course pipeline", "",
             f"Made by `python -m course_lib.pipeline` ({'quick run' if ch.quick else 'full run'}, "
             f"world seed {ch.seed}).", ""]
    for stage, rows in ch.card:
        lines += [f"## {stage}", "", "| measure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in rows] + [""]
    path = ch.out / "report_card.md"
    path.write_text("\n".join(lines))
    (ch.out / "report_card.json").write_text(json.dumps(ch.numbers, indent=1, default=str))
    return path


def ship(ch: Chain) -> None:
    """Copy what the run made (cleaned corpus, tokenizer, base model, assistant, their logs, the
    report card) into ``course_lib/assets``."""
    for name in ("corpus.parquet", "course_tokenizer.model", "base_model.pt", "base_model.json", "sft_model.pt",
                 "sft_model.json", "report_card.md", "report_card.json"):
        if (ch.out / name).exists():
            shutil.copy(ch.out / name, ASSETS / name)


def _main(argv=None):
    import argparse

    names = [n for n, _ in STAGES]
    p = argparse.ArgumentParser(
        prog="python -m course_lib.pipeline",
        description="Run the course pipeline (world -> crawl -> corpus -> tokenizer -> base "
                    "model) and write a report card.")
    p.add_argument("--out", default="runs/chain", help="folder for everything the run makes")
    p.add_argument("--from", dest="start", default=names[0],
                   help=f"first stage (the earlier ones' shipped outputs are used): {names}")
    p.add_argument("--quick", action="store_true", help="a tiny run (a test's, ~1 min)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--config", default="course", help="training config name or .toml path")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override training settings, e.g. --set max_steps=100")
    p.add_argument("--ship", action="store_true",
                   help="copy the tokenizer, model, log and report card into course_lib/assets")
    args = p.parse_args(argv)
    from course_lib.train import parse_overrides

    ch = run_chain(args.out, args.start, args.quick, threads=args.threads, config=args.config,
                   overrides=parse_overrides(args.set))
    print((ch.out / "report_card.md").read_text())
    if args.ship:
        if args.quick:
            raise SystemExit("--ship with --quick would replace the course's model by a toy")
        ship(ch)
        print(f"shipped to {ASSETS}")


if __name__ == "__main__":
    _main()
