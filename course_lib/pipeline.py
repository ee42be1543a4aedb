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
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from course_lib import assets, report
from course_lib.assets import ENDOFTEXT, ORDINARY_VOCAB, VAL_EVERY, VOCAB_SIZE
from course_lib.data import corpus_texts, entity_mentions, load_corpus, training_mentions  # noqa: F401
from course_lib.evals import (FactResult, base_beliefs, capability_card,  # noqa: F401
                              digit_addition_accuracy, fact_accuracy, few_shot_accuracy,
                              known_facts, probe_summary, refusal_eval, sum_accuracy, tool_eval)
from course_lib.train import (export_model, load_config, load_model,  # noqa: F401
                              parse_overrides, prepare_course_data, train)

# shipped files and token ids live in course_lib.assets; these names stay for the pages
ASSETS = assets.ASSETS_DIR
TOKENIZER_PATH = assets.path("course_tokenizer.model", must_exist=False)
BASE_MODEL_PATH = assets.path("base_model.pt", must_exist=False)
BASE_LOG_PATH = assets.path("base_model.json", must_exist=False)


# ---------------------------------------------------------------------------------------------
# The tokenizer and the token shards
# ---------------------------------------------------------------------------------------------

def train_course_tokenizer(texts: list[str], vocab_size: int = ORDINARY_VOCAB,
                           pattern: str | None = None):
    """Learn the course's BPE on the corpus (the shipped recipe's split pattern, GPT-4's, unless
    ``pattern`` is given), then add ``<|endoftext|>``."""
    from course_lib.tokenizer import RegexTokenizer

    tok = RegexTokenizer(pattern or RECIPES[SHIPPED_RECIPE].split_pattern)
    tok.train("\n\n".join(texts), vocab_size)
    tok.register_special_tokens({ENDOFTEXT: vocab_size})
    return tok


@dataclass(frozen=True)
class Recipe:
    """How the chain makes the course's models: the data's worked solutions, the tokenizer's
    split pattern, how many curated documents join the cleaned crawl, the base model's config
    and whether the assistant's conversations teach reading and answer-only problems."""

    name: str
    problem_style: str          # world.make_problem's style, in the crawl and the SFT data
    split_pattern: str          # the course tokenizer's chunking
    curated_docs: int           # world.curated_documents added to the base model's data
    base_config: str            # course_lib/configs/<name>.toml
    sft_skills: bool            # world.chat_conversations(skills=...)
    description: str = ""
    curated_share: float = 0.0  # share of the base model's training windows from them
    curated_kinds: dict | None = None   # world.curated_documents' kind weights (None: default)
    sft_conversations: int = 6000
    sft_steps: int | None = None        # None: configs/sft.toml's max_steps
    # which facts the SFT data asks, and its answers: "all" (every pair not held out, the true
    # value), "known" (only the pairs the base model completes right: evals.known_facts) or
    # "beliefs" (every pair the base model completes with some value of its relation, answered
    # with that completion, right or wrong: evals.base_beliefs)
    sft_facts: str = "all"


def _recipes() -> dict:
    from course_lib.tokenizer import COURSE_SPLIT_PATTERN, GPT4_SPLIT_PATTERN

    return {
        "v1": Recipe("v1", "legacy", GPT4_SPLIT_PATTERN, 0, "course", False,
                     "the first models of chapters 1-6 (until issue 14): the crawl alone, "
                     "GPT-4's digit groups, learned positions"),
        "v2": Recipe("v2", "compact", COURSE_SPLIT_PATTERN, 40000, "course_v2", True,
                     "the shipped models (issue 14): digits one by one, compact worked steps, "
                     "curated reading/copying/problem documents (55 % of the base model's "
                     "windows, never repeated), rotary positions, a copy curriculum, a longer "
                     "base run, SFT on 4x the conversations with reading, answer-only and "
                     "4-digit problems, every fact not held out asked about equally often "
                     "(asking only those the base model knows, or answering with its own "
                     "completions, cost knowledge: docs/capability.md)",
                     curated_share=0.55,
                     curated_kinds={"reading": 0.35, "copying": 0.1, "arithmetic": 0.45,
                                    "counting": 0.1},
                     sft_conversations=24000, sft_steps=1200, sft_facts="all"),
    }


RECIPES = _recipes()
SHIPPED_RECIPE = "v2"     # what course_lib/assets holds; `--ship` refuses another recipe
CURATED_DOCS_QUICK = 300


def curated_texts(world, n: int, seed: int = 0, kinds: dict | None = None) -> list[str]:
    """The curated part of the base model's data (reading exercises, lists written twice,
    worked problems: ``world.curated_documents``), as texts: title, blank line, body."""
    from course_lib.world import curated_documents

    return [f"{d.title}\n\n{d.text}" for d in curated_documents(world, n, seed, kinds)]


def sft_facts(recipe: Recipe, world, model=None, tokenizer=None, train_texts=None):
    """The ``known=`` of ``chat.sft_conversations`` for ``recipe``: which facts its SFT data asks
    (never the held-out half, ``chat.held_out``) and with which answers. ``"all"`` with skills:
    every askable pair with its true value, each asked as often (without skills, None: v1's
    draw); ``"known"``: the pairs the base ``model`` completes right (``evals.known_facts``);
    ``"beliefs"``: its own completions (``evals.base_beliefs``). The probes need the base model,
    its tokenizer and the training texts."""
    from course_lib import chat

    asked = {(e.name, r) for e in world.entities for r in e.facts} - chat.held_out(world)
    if recipe.sft_facts == "all":
        return ({(e.name, r): v for e in world.entities for r, v in e.facts.items()
                 if (e.name, r) in asked} if recipe.sft_skills else None)
    if model is None or tokenizer is None:
        raise ValueError(f"recipe {recipe.name}'s sft_facts={recipe.sft_facts!r} probes the base "
                         "model: pass model= and tokenizer=")
    if recipe.sft_facts == "known":
        return known_facts(model, tokenizer, world, train_texts, only=asked)
    if recipe.sft_facts == "beliefs":
        return base_beliefs(model, tokenizer, world, only=asked)
    raise ValueError(f"unknown sft_facts {recipe.sft_facts!r}; use 'all', 'known' or 'beliefs'")


def course_tokenizer(path: str | Path | None = None):
    """The shipped course tokenizer (``assets.course_tokenizer``), or the one in ``path``."""
    return assets.course_tokenizer(path_=path)


def base_model(path: str | Path | None = None, device: str = "cpu"):
    """The shipped base model (``assets.load_model("base")``), or the model in ``path``."""
    return assets.load_model(path or "base", device)


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
    config: str | None = None   # None: the recipe's base config
    overrides: dict = field(default_factory=dict)
    progress: bool = True
    recipe: Recipe = None
    world: object = None
    records: list = None
    corpus: object = None
    texts: list = None
    tokenizer: object = None
    model: object = None
    sft_model: object = None
    sft_path: Path = None
    idk_model: object = None
    tool_model: object = None
    rl_model: object = None
    rlhf_model: object = None
    dpo_model: object = None
    reward_model: object = None
    card: list = field(default_factory=list)   # (stage, [(measure, value)])
    targets: list = None   # issue 14's targets: (measure, value, target, met)
    numbers: dict = field(default_factory=dict)

    def report(self, stage: str, rows: list, seconds: float):
        self.card.append((stage, rows + [("time", f"{seconds:.0f} s")]))
        self.numbers[stage] = {k: v for k, v in rows} | {"seconds": round(seconds, 1)}


def stage_world(ch: Chain):
    from course_lib import crawl, world

    ch.world = world.make_world(ch.seed)
    docs = world.make_documents(ch.world, crawl.CrawlConfig().n_documents,
                                problem_style=ch.recipe.problem_style)
    ch.records = crawl.render_crawl(ch.world, docs, seed=ch.seed, progress=False)
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
    ch.tokenizer = train_course_tokenizer(texts, vocab, ch.recipe.split_pattern)
    ch.tokenizer.save(ch.out / "course_tokenizer")
    n_curated = min(CURATED_DOCS_QUICK, ch.recipe.curated_docs) if ch.quick else ch.recipe.curated_docs
    curated = (curated_texts(ch.world, n_curated, ch.seed, ch.recipe.curated_kinds)
               if n_curated else [])
    if ch.recipe.curated_share:   # their own shard, drawn from at the recipe's share
        meta = prepare_course_data(ch.tokenizer, ch.out / "data", ch.texts, curated=curated)
    else:                         # mixed into the corpus's shard, drawn from by their size
        meta = prepare_course_data(ch.tokenizer, ch.out / "data", ch.texts + curated)
    ch.report_rows = [("vocabulary", f"{vocab:,} ordinary tokens + end-of-text"),
                      ("documents: cleaned corpus + curated",
                       f"{len(ch.texts):,} + {len(curated):,}"),
                      ("train tokens", f"{meta['train_tokens']:,}" + (
                          f" + {meta['curated_tokens']:,} curated, drawn for "
                          f"{ch.recipe.curated_share:.0%} of the windows"
                          if "curated_tokens" in meta else "")),
                      ("validation tokens", f"{meta['val_tokens']:,}"),
                      ("bytes per token", f"{meta['bytes_per_token']:.2f}")]


def stage_base_model(ch: Chain):
    from course_lib.model import flops_per_token

    overrides = {"data_dir": str(ch.out / "data"), "out_dir": str(ch.out / "base"),
                 "curated_share": ch.recipe.curated_share}
    if ch.quick:
        overrides |= {"max_steps": 300, "warmup_steps": 20, "eval_every": 100, "sample_every": 100,
                      "checkpoint_every": 0, "n_layer": 2, "n_embd": 64, "n_head": 2,
                      "block_size": 64, "batch_size": 8}
    if ch.threads:
        overrides["threads"] = ch.threads
    cfg = load_config(ch.config or ch.recipe.base_config, **(overrides | ch.overrides))
    res = train(cfg, ch.tokenizer, progress=ch.progress, log=lambda *a: None)
    ch.model = res.model
    n = ch.model.num_parameters()
    fpt = flops_per_token(n, cfg.n_layer, cfg.n_embd, cfg.block_size)
    tokens = cfg.max_steps * cfg.tokens_per_step()
    facts = fact_accuracy(ch.model, ch.tokenizer, ch.world,
                          [t for i, t in enumerate(ch.texts) if i % VAL_EVERY])
    digits = digit_addition_accuracy(ch.model, ch.tokenizer, style=ch.recipe.problem_style)
    sums = sum_accuracy(ch.model, ch.tokenizer, style=ch.recipe.problem_style)
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
        ("epochs", _epochs(ch, tokens)),
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


def _shape(model) -> dict:
    """The training-config overrides that give a finetune ``model``'s shape."""
    mc = model.config
    return {"n_layer": mc.n_layer, "n_head": mc.n_head, "n_embd": mc.n_embd,
            "block_size": mc.block_size, "vocab_size": mc.vocab_size, "bias": mc.bias,
            "rope": mc.rope}


def stage_assistant(ch: Chain):
    """Chapter 6: finetune the base model on conversations (loss on the assistant's tokens) and
    measure questions about popular facts the finetuning data never asked, base model through a
    forum prompt vs the assistant, plus identity and rare entities."""
    from course_lib import chat
    from course_lib.world import ASSISTANT_NAME, make_world

    base_path = ch.out / "base_model.pt"
    if ch.model is None:  # starting here: the shipped base model and tokenizer
        ch.world = ch.world or make_world(ch.seed)
        ch.texts = ch.texts or corpus_texts()
        ch.tokenizer = course_tokenizer()
        ch.model = base_model()
        base_path = BASE_MODEL_PATH
    tok = chat.chat_tokenizer(ch.tokenizer)
    train_texts = [t for i, t in enumerate(ch.texts) if i % VAL_EVERY]
    asked = {(e.name, r) for e in ch.world.entities for r in e.facts} - chat.held_out(ch.world)
    known = sft_facts(ch.recipe, ch.world, ch.model, ch.tokenizer, train_texts)
    if ch.recipe.sft_facts == "beliefs":
        n_right = sum(ch.world.by_name(name).facts[r] == v for (name, r), v in known.items())
    convs = chat.sft_conversations(ch.world, 600 if ch.quick else ch.recipe.sft_conversations,
                                   ch.seed, skills=ch.recipe.sft_skills, known=known)
    meta = chat.prepare_sft_data(tok, ch.out / "sft_data", convs)
    overrides = _shape(ch.model) | {"init_from": str(base_path), "data_dir": str(ch.out / "sft_data"),
                         "out_dir": str(ch.out / "sft")}
    if ch.recipe.sft_steps:
        overrides["max_steps"] = ch.recipe.sft_steps
    if ch.quick:
        overrides |= {"max_steps": 60, "eval_every": 30, "sample_every": 30,
                      "checkpoint_every": 0, "sample_tokens": 8}
    if ch.threads:
        overrides["threads"] = ch.threads
    cfg = load_config("sft", **overrides)
    res = train(cfg, tok, progress=ch.progress, log=lambda *a: None)
    sft = res.model
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
           "popular_base": before, "popular_sft": after, "rare_sft": rare_after, "who": who,
           "known_facts": None if known is None else len(known),
           "sft_facts": ch.recipe.sft_facts}
    if ch.recipe.sft_facts == "beliefs":
        log["beliefs_right"] = n_right
    targets, capability = capability_card(sft, ch.tokenizer, ch.world, train_texts,
                                          n=10 if ch.quick else 100, seed=ch.seed)
    ch.targets = targets
    log["capabilities"] = capability
    export_model(sft, ch.out / "sft_model.pt", meta={"init_from": str(base_path)})
    (ch.out / "sft_model.json").write_text(json.dumps(log, indent=1, default=str))
    ch.sft_model, ch.sft_path = sft, ch.out / "sft_model.pt"
    ch.report_rows = [
        ("conversations (train / validation)",
         f"{meta['train_conversations']:,} / {meta['val_conversations']:,}"),
        ("tokens, of which the assistant's (trained)",
         f"{meta['train_tokens']:,}, {meta['train_trained_tokens']:,}"),
        *([("facts the SFT data asks about, each about as often, with the true answer",
            f"{len(known):,} of {len(asked):,}")]
          if ch.recipe.sft_facts == "all" and known is not None else []),
        *([("facts the SFT data asks about: the base model's right answers (a probe)",
            f"{len(known):,} of {len(asked):,}")] if ch.recipe.sft_facts == "known" else []),
        *([("facts the SFT data asks about, answered as the base model completes them: "
            "right / wrong", f"{n_right:,} / {len(known) - n_right:,} of {len(asked):,}")]
          if ch.recipe.sft_facts == "beliefs" else []),
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


# chapter 7's recipe: the probe, the refusal finetune, the tool finetune (docs/capability.md)
CH7 = {"samples": 4, "threshold": 0.5, "refusals_per_answer": 1.0, "invented_share": 0.5,
       "idk_steps": 300, "idk_lr": 3e-4, "tool_steps": 800, "tool_lr": 2e-4,
       "idk_replay": 1.0, "idk_trainable": r"h\.3\.|ln_f", "tool_threshold": 0.25, "tool_replay": 0.7,
       "tool_trainable": ""}


def _finetune(ch: Chain, convs: list, name: str, steps: int, lr: float, render=None,
              trainable: str = ""):
    """Finetune the assistant (``ch.sft_model``'s weights, ``ch.sft_path``) on ``convs``; the
    model, its training result and the data's meta."""
    from course_lib import chat, tools

    tok = tools.tool_tokenizer(ch.tokenizer)
    meta = chat.prepare_sft_data(tok, ch.out / f"{name}_data", convs, render=render,
                                 val_every=4 if ch.quick else VAL_EVERY)
    overrides = _shape(ch.sft_model) | {"init_from": str(ch.sft_path),
                 "data_dir": str(ch.out / f"{name}_data"), "out_dir": str(ch.out / name),
                 "max_steps": 20 if ch.quick else steps, "max_lr": lr, "min_lr": lr / 10,
                 "warmup_steps": 10, "eval_every": 10 if ch.quick else 100,
                 "sample_every": 10**6, "checkpoint_every": 0, "trainable": trainable}
    if ch.threads:
        overrides["threads"] = ch.threads
    cfg = load_config("sft", **overrides)
    res = train(cfg, tok, progress=ch.progress, log=lambda *a: None)
    return res.model, res, meta, cfg


def stage_tools(ch: Chain):
    """Chapter 7: probe what the assistant knows (every fact asked ``CH7["samples"]`` times and
    once greedily), then two finetunes of it on facts of entities not ``kept_out``: "I don't
    know" (refusals for what it never gets right, balanced with what it knows) and tools
    (search where its memory fails, the calculator for sums, a name read from the system
    message); both measured on the kept-out entities."""
    from course_lib import hallucination as H
    from course_lib import tools
    from course_lib.world import make_world

    if ch.sft_model is None:   # starting here: the shipped assistant
        ch.world = ch.world or make_world(ch.seed)
        ch.texts = ch.texts or corpus_texts()
        ch.tokenizer = ch.tokenizer or course_tokenizer()
        ch.sft_model = assets.load_model("sft")
        ch.sft_path = assets.path("sft_model.pt")
    tok = tools.tool_tokenizer(ch.tokenizer)
    train_texts = [t for i, t in enumerate(ch.texts) if i % VAL_EVERY]
    thr = CH7["threshold"]
    pairs = None
    if ch.quick:
        pairs = {(e.name, r) for e in ch.world.entities[::10] for r in e.facts}
    t0 = time.perf_counter()
    results = H.probe(ch.sft_model, tok, ch.world, pairs, samples=2 if ch.quick else CH7["samples"],
                      seed=ch.seed)
    probe_s = time.perf_counter() - t0
    summary = probe_summary(results, ch.world, train_texts)
    out = H.kept_out(ch.world)
    mine = [r for r in results if r.subject not in out]
    kept = [r for r in results if r.subject in out]
    (ch.out / "probe.json").write_text(json.dumps(
        {"threshold": thr, "samples": CH7["samples"], "seconds": probe_s, "summary": summary,
         "results": H.to_rows(results)}, default=str))
    # "I don't know"
    convs = H.refusal_conversations(mine, thr, ch.world, CH7["refusals_per_answer"],
                                    CH7["invented_share"], CH7["idk_replay"], seed=ch.seed)
    n_refused = sum(c[-1]["content"] == H.REFUSAL for c in convs)
    idk_data = f"{len(convs):,}, of which {n_refused:,} end with a refusal"
    idk, res, meta, cfg = _finetune(ch, convs, "idk", CH7["idk_steps"], CH7["idk_lr"],
                                    trainable=CH7["idk_trainable"])
    n_inv = 10 if ch.quick else 100
    ev = refusal_eval(idk, tok, kept, thr, ch.world, n_inv, ch.seed)
    export_model(idk, ch.out / "idk_model.pt", meta={
        "init_from": "sft_model.pt", "logit_bias": {H.refusal_token(tok): ev["bias"]}})
    (ch.out / "idk_model.json").write_text(json.dumps(
        {"config": vars(cfg), "data": meta, "seconds": res.seconds, "history": res.history,
         "recipe": CH7, "eval": ev}, indent=1, default=str))
    # tools
    tthr = CH7["tool_threshold"]
    convs = tools.tool_conversations(mine, tthr, ch.world, 150 if ch.quick else 1500,
                                     40 if ch.quick else 400, CH7["tool_replay"], ch.seed)
    tm, res, tmeta, tcfg = _finetune(ch, convs, "tool", CH7["tool_steps"], CH7["tool_lr"],
                                     render=tools.render_tool_conversation,
                                     trainable=CH7["tool_trainable"])
    tev = tool_eval(tm, tok, kept, tthr, ch.world, train_texts, n=30 if ch.quick else 300,
                    n_problems=4 if ch.quick else 40, seed=ch.seed, without=ch.sft_model)
    export_model(tm, ch.out / "tool_model.pt", meta={"init_from": "sft_model.pt"})
    (ch.out / "tool_model.json").write_text(json.dumps(
        {"config": vars(tcfg), "data": tmeta, "seconds": res.seconds, "history": res.history,
         "recipe": CH7, "eval": tev}, indent=1, default=str))
    ch.idk_model, ch.tool_model = idk, tm
    a = summary["all"]
    calc = " / ".join(f"{tev['calculator'][d]:.0%}" for d in (3, 4, 5))
    steps = " / ".join(f"{tev['worked_steps'].get(d, float('nan')):.0%}" for d in (3, 4, 5))
    ch.report_rows = [
        ("probe: facts asked x samples (T=1), seconds", f"{len(results):,} x "
         f"{2 if ch.quick else CH7['samples']} + greedy, {probe_s:.0f} s"),
        ("probe: greedy right / never right / always right",
         f"{a['greedy']:.0%} / {a['never']:.0%} / {a['always']:.0%}"),
        ("probe: greedy right, most-named decile / least-named",
         f"{summary['deciles'][min(summary['deciles'])]['greedy']:.0%} / "
         f"{summary['deciles'][max(summary['deciles'])]['greedy']:.0%}"),
        ("'I don't know' data: conversations (known facts answered, never-right facts and "
         "invented entities refused, chapter 6's replayed)", idk_data),
        ("tool data: conversations (searches, calculator, named system messages, replay)",
         f"{len(convs):,}"),
        ("kept-out facts the assistant knew / never got right (the half not used for tuning)",
         f"{ev['known']} / {ev['unknown']}"),
        ("refusal threshold: bias on the refusal's first token, picked on the tuning half",
         f"{ev['bias']:+.2f}"),
        ("hallucination on never-right facts, before / after",
         f"{ev['hallucination_before']:.0%} / {ev['hallucination_after']:.0%}"),
        ("accuracy on known facts, before / after; false refusals",
         f"{ev['known_accuracy_before']:.0%} / {ev['known_accuracy_after']:.0%}; "
         f"{ev['false_refusal']:.0%}"),
        ("questions about invented entities refused", f"{ev['invented_refused']:.0%}"),
        ("tool model: known facts answered without a search / others searched",
         f"{tev['known_direct']:.0%} / {tev['unknown_searched']:.0%}"),
        ("kept-out facts right: assistant from memory / tool model with search",
         f"{tev['accuracy_before']:.0%} / {tev['accuracy_tools']:.0%}"),
        ("entities no document names: from memory / with search",
         f"{tev['unseen_before']:.0%} / {tev['unseen_tools']:.0%}"),
        ("3 / 4 / 5-digit sums: worked steps (assistant) vs calculator (tool model)",
         f"{steps} vs {calc}"),
        ("a name given in the system message said: assistant / tool model",
         f"{tev.get('names_read_before', float('nan')):.0%} / {tev['names_read']:.0%}"),
    ]
    ch.targets = (ch.targets or []) + ch7_targets(ev, tev)


CH7_TARGETS = "'I don't know'"   # how chapter 7's target rows start


def ch7_targets(ev: dict, tev: dict) -> list:
    """Issue 15's targets as report-card rows ``(measure, value, target, met)``."""
    yes = lambda ok: "yes" if ok else "**no**"
    cut = ev["hallucination_before"] / max(ev["hallucination_after"], 1e-9)
    drop = ev["known_accuracy_before"] - ev["known_accuracy_after"]
    return [
        ("'I don't know': hallucination on never-right kept-out facts, before / after",
         f"{ev['hallucination_before']:.0%} / {ev['hallucination_after']:.0%} ({cut:.1f}x)",
         ">= 3x lower", yes(cut >= 3)),
        ("'I don't know': accuracy on known kept-out facts, before / after",
         f"{ev['known_accuracy_before']:.0%} / {ev['known_accuracy_after']:.0%}",
         "down <= 10 points", yes(drop <= 0.10)),
        ("'I don't know': false refusals on known facts", f"{ev['false_refusal']:.0%}", "<= 20%",
         yes(ev["false_refusal"] <= 0.2)),
        ("'I don't know': invented entities refused", f"{ev['invented_refused']:.0%}", ">= 80%",
         yes(ev["invented_refused"] >= 0.8)),
    ]


# chapter 8's recipe: GRPO from the assistant (docs/capability.md finding 16); steps, not
# seconds, so that a run is the same run on any machine (160 steps: about 15 minutes on the
# course's quiet 2-core machine)
CH8 = {"steps": 160, "lr": 6e-5, "problems_per_step": 8, "group_size": 16,
       "normalize_std": True, "kl_coef": 0.0, "seeds": 3, "eval_every": 40, "n_eval": 200,
       "n_harder": 100, "samples": 16, "n_train": 3000}
CH8_TARGETS = "RL:"   # how chapter 8's target rows start


def stage_rl(ch: Chain):
    """Chapter 8: GRPO on chapter 8's problems (``evals.rl_problems``) from the assistant,
    ``CH8["seeds"]`` runs (the first ships); pass@1 and pass@k on held-out problems before and
    after each, and on one column more (``rl_harder_problems``)."""
    import copy

    from course_lib import rl
    from course_lib.evals import rl_harder_problems, rl_problems
    from course_lib.world import make_world

    if ch.sft_model is None:   # starting here: the shipped assistant
        ch.world = ch.world or make_world(ch.seed)
        ch.tokenizer = ch.tokenizer or course_tokenizer()
        ch.sft_model = assets.load_model("sft")
    q = ch.quick
    tok = rl.chat_tokenizer(ch.tokenizer)
    held = rl_problems(8 if q else CH8["n_eval"], ch.seed, ch.world)
    seen = {p.question for p in held}
    train_set = [p for p in rl_problems(64 if q else CH8["n_train"], ch.seed + 1, ch.world)
                 if p.question not in seen]
    harder = rl_harder_problems(4 if q else CH8["n_harder"], ch.seed, ch.world)
    block = ch.sft_model.config.block_size
    if q:   # a toy model's window (64) is too short for the stories: the sums alone
        held, train_set, harder = ([_bare(p) for p in ps] for ps in (held, train_set, harder))
    room = lambda ps: min(200, block - max(map(len, rl.problem_prompts(ps, tok))))
    samples = 4 if q else CH8["samples"]
    ks = (1, 4) if q else (1, 4, samples)

    def measure(model, seed):
        return {"held_out": rl.evaluate(model, tok, held, samples, ks, max_new_tokens=room(held),
                                        seed=seed),
                "harder": rl.evaluate(model, tok, harder, samples // 2, (1, samples // 2),
                                      max_new_tokens=room(harder), seed=seed)}

    if ch.progress:
        print("measuring the assistant before RL", flush=True)
    before = measure(ch.sft_model, 0)
    runs, shipped = [], None
    for s in range(1 if q else CH8["seeds"]):
        cfg = rl.RLConfig(steps=4 if q else CH8["steps"], lr=CH8["lr"],
                          problems_per_step=2 if q else CH8["problems_per_step"],
                          group_size=4 if q else CH8["group_size"],
                          normalize_std=CH8["normalize_std"], kl_coef=CH8["kl_coef"],
                          max_new_tokens=room(train_set), eval_every=2 if q else CH8["eval_every"],
                          seed=1000 * ch.seed + s)
        model = copy.deepcopy(ch.sft_model)

        def show(row, s=s, cfg=cfg):
            if ch.progress and (row["step"] % 10 == 0 or row["step"] == cfg.steps):
                print(f"seed {s} step {row['step']}/{cfg.steps}: reward {row['reward']:.2f}, "
                      f"groups without signal {row['zero_variance']:.0%}, length "
                      f"{row['length']:.0f}, {row['seconds']:.0f} s", flush=True)

        t0 = time.perf_counter()
        res = rl.train_grpo(model, tok, train_set, cfg,
                            eval_problems=held[:8 if q else 100] if s == 0 else None,
                            eval_samples=samples, progress=show,
                            log=print if ch.progress else (lambda *a: None))
        after = measure(model, 1 + s)
        runs.append({"seed": cfg.seed, "seconds": time.perf_counter() - t0,
                     "cpu_s": sum(r["cpu_s"] for r in res.history), "after": after,
                     "history": res.history, "evals": res.evals, "stopped": res.stopped})
        if s == 0:
            shipped, shipped_cfg = model, cfg
    export_model(shipped, ch.out / "rl_model.pt", meta={"init_from": "sft_model.pt"})
    (ch.out / "rl_model.json").write_text(json.dumps(
        {"config": vars(shipped_cfg), "recipe": CH8, "before": before, "runs": runs},
        indent=1, default=str))
    ch.rl_model = shipped
    gains = [r["after"]["held_out"]["pass@1"] - before["held_out"]["pass@1"] for r in runs]
    b, a0 = before["held_out"], runs[0]["after"]["held_out"]
    k = ks[-1]
    train_s = [sum(r["train_s"] + r["sample_s"] for r in run["history"]) for run in runs]
    sample_share = sum(sum(r["sample_s"] for r in run["history"]) for run in runs) / sum(train_s)
    last = runs[0]["history"][-1]
    ch.report_rows = [
        ("problems: train / held out / harder (one column more)",
         f"{len(train_set):,} / {len(held)} / {len(harder)}"),
        ("GRPO: steps x problems x samples, lr", f"{shipped_cfg.steps} x "
         f"{shipped_cfg.problems_per_step} x {shipped_cfg.group_size}, {shipped_cfg.lr:g}"),
        ("training time per seed (wall), sampling's share",
         f"{', '.join(f'{t / 60:.1f}' for t in train_s)} min; {sample_share:.0%}"),
        (f"held-out pass@1 / pass@{k} (T=1), before / after (shipped seed)",
         f"{b['pass@1']:.0%} / {b[f'pass@{k}']:.0%} -> {a0['pass@1']:.0%} / {a0[f'pass@{k}']:.0%}"),
        ("held-out pass@1 gain, each seed", ", ".join(f"{g * 100:+.1f}" for g in gains)),
        ("harder problems pass@1, before / after (each seed)",
         f"{before['harder']['pass@1']:.0%} / "
         + ", ".join(f"{r['after']['harder']['pass@1']:.0%}" for r in runs)),
        ("mean length (tokens), before / after; re-checking solutions after",
         f"{b['length']:.0f} / {a0['length']:.0f}; {a0['rechecks']:.0%}"),
        ("last step: groups with no reward variance / cut at the length limit",
         f"{last['zero_variance']:.0%} / {last['truncated']:.0%}"),
    ]
    ch.targets = (ch.targets or []) + ch8_targets(gains, train_s)


def _bare(problem):
    """``problem`` asked as the bare sum ("What is 5426 + 18?"), for the quick chain's toy
    window."""
    import dataclasses
    import re

    a, b = re.findall(r"\d+", problem.question)[:2]
    if problem.kind == "subtraction":
        a, b = max(a, b, key=int), min(a, b, key=int)
    op = "-" if problem.kind == "subtraction" else "+"
    return dataclasses.replace(problem, question=f"What is {a} {op} {b}?")


def ch8_targets(gains: list, seconds: list) -> list:
    """Issue 16's target as a report-card row: +15 points of held-out pass@1 within 15 minutes,
    in every seed (the band is the seeds' range)."""
    ok = min(gains) >= 0.15 and max(seconds) <= 15 * 60
    return [(f"{CH8_TARGETS} held-out pass@1 gain in <= 15 min, lowest seed / mean / highest "
             f"({len(gains)} seeds)",
             f"{min(gains) * 100:+.1f} / {sum(gains) / len(gains) * 100:+.1f} / "
             f"{max(gains) * 100:+.1f} points, {max(seconds) / 60:.1f} min",
             ">= +15 in every seed", "yes" if ok else "**no**")]


# Chapter 9's recipe (docs/capability.md finding 17)
CH9 = {"n_world_pairs": 3000, "policy_samples": 4, "rm_steps": 300, "rm_lr": 1e-4,
       "bon_samples": 64, "rl_steps": 200, "rl_lr": 3e-5, "kl_coef": 0.2, "eval_every": 20,
       "eval_samples": 4, "dpo_beta": 0.1, "dpo_lr": 1e-5, "dpo_batch": 32}


def fit_gao(kl: list, gain: list) -> dict:
    """Gao et al. (2022)'s best-of-n form ``gain = d (a - b d)`` with ``d = sqrt(KL)``, fitted
    by least squares; with the KL at its peak, ``(a / 2b)^2`` (None when it never turns)."""
    d = [math.sqrt(k) for k in kl]
    s11 = sum(x ** 2 for x in d)
    s12 = sum(x ** 3 for x in d)
    s22 = sum(x ** 4 for x in d)
    y1 = sum(x * y for x, y in zip(d, gain))
    y2 = sum(x * x * y for x, y in zip(d, gain))
    det = s11 * s22 - s12 ** 2
    a = (y1 * s22 - y2 * s12) / det
    b = -(s11 * y2 - s12 * y1) / det
    return {"a": a, "b": b, "peak_kl": (a / (2 * b)) ** 2 if b > 0 and a > 0 else None}


def stage_rlhf(ch: Chain):
    """Chapter 9: reward models from the hidden labeller's choices (off-policy: the world's
    templated pairs; on-policy: also the assistant's own answers, labelled), best-of-n against
    each, RL against the on-policy one (without and with a KL penalty; the shipped policy is the
    snapshot with the best held-out true score: early stopping), and DPO on the same pairs."""
    import copy

    import torch

    from course_lib import rlhf
    from course_lib.evals import rlhf_questions
    from course_lib.world import make_world, preference_pairs

    if ch.sft_model is None:   # starting here: the shipped assistant
        ch.world = ch.world or make_world(ch.seed)
        ch.tokenizer = ch.tokenizer or course_tokenizer()
        ch.sft_model = assets.load_model("sft")
    q, c = ch.quick, CH9
    say = print if ch.progress else (lambda *a, **k: None)
    tok = rlhf.chat_tokenizer(ch.tokenizer)
    split = rlhf_questions(ch.world, ch.seed)
    train_q = split["train"][:64] if q else split["train"]
    val_q, test_q = (split["val"][:4], split["test"][:8]) if q else (split["val"], split["test"])
    held_q = split["val"] + split["test"]
    held = {x.question for x in val_q + test_q}
    world_pairs = [p for p in preference_pairs(ch.world, 64 if q else c["n_world_pairs"], ch.seed)
                   if p.prompt not in held]
    world_test = [p for p in preference_pairs(ch.world, 16 if q else 400, ch.seed + 1)
                  if p.prompt not in {x.prompt for x in world_pairs}]
    # a toy model's window (the quick chain's 64) is shorter than the rambling answers
    block = ch.sft_model.config.block_size
    fits = lambda p: max(len(rlhf.render_pair(tok, p.prompt, x)[0])
                         for x in (p.chosen, p.rejected)) <= block
    world_pairs, world_test = [p for p in world_pairs if fits(p)], [p for p in world_test
                                                                     if fits(p)]
    # answers are a sentence; a toy model's window (the quick chain's 64) leaves less room
    room = min(48, ch.sft_model.config.block_size
               - max(map(len, rlhf.problem_prompts(split["train"] + held_q, tok))))
    say("sampling the assistant's answers for the labeller", flush=True)
    pol_pairs = rlhf.policy_pairs(ch.sft_model, tok, train_q, ch.seed, c["policy_samples"], room)
    pol_test = rlhf.policy_pairs(ch.sft_model, tok, test_q, ch.seed + 1, c["policy_samples"],
                                 room)
    rm_cfg = rlhf.RMConfig(steps=4 if q else c["rm_steps"], lr=c["rm_lr"], seed=ch.seed)
    rms, rm_log = {}, {}
    for name, data in (("off-policy", world_pairs), ("on-policy", world_pairs + pol_pairs)):
        say(f"training the {name} reward model on {len(data):,} pairs", flush=True)
        rm = rlhf.RewardModel(copy.deepcopy(ch.sft_model))
        t0 = time.perf_counter()
        hist = rlhf.train_reward_model(rm, tok, data, rm_cfg)
        for p in rm.parameters():
            p.requires_grad_(False)
        rms[name] = rm
        rm_log[name] = {"pairs": len(data), "seconds": time.perf_counter() - t0,
                        "history": hist[::10],
                        "agreement_world": rlhf.agreement(rm, tok, world_test),
                        "agreement_policy": rlhf.agreement(rm, tok, pol_test)}
        say(f"  agreement with held-out choices: templated {rm_log[name]['agreement_world']:.0%}"
            f", the assistant's own {rm_log[name]['agreement_policy']:.0%}", flush=True)
    rm = rms["on-policy"]

    n_bon = 8 if q else c["bon_samples"]
    say(f"best-of-n: {n_bon} answers to each of {len(test_q)} held-out questions", flush=True)
    texts, _ = rlhf.sample_answers(ch.sft_model, tok, test_q, n_bon, seed=ch.seed + 7,
                                   max_new_tokens=room)
    qs = [x for x in test_q for _ in range(n_bon)]
    true = torch.tensor(rlhf.true_scores(texts, qs)).view(len(test_q), n_bon)
    ns = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= n_bon]
    bon = {}
    for name, m in rms.items():
        proxy = rlhf.reward_scores(m, tok, [x.question for x in qs], texts).view(len(test_q),
                                                                                n_bon)
        curve = rlhf.best_of_n(proxy, true, ns)
        top = proxy.argmax(dim=1)
        bon[name] = {"curve": curve,
                     "fit": fit_gao([r["kl"] for r in curve],
                                    [r["true"] - curve[0]["true"] for r in curve]),
                     "picked": [{"question": test_q[i].question, "answer": texts[i * n_bon + j],
                                 "proxy": float(proxy[i, j]), "true": float(true[i, j])}
                                for i, j in enumerate(top.tolist())][:12]}
        say(f"  {name}: true score n=1 {curve[0]['true']:+.2f}, best "
            f"{max(r['true'] for r in curve):+.2f}, n={ns[-1]} {curve[-1]['true']:+.2f}",
            flush=True)

    runs = {}
    rl_cfg = dict(steps=4 if q else c["rl_steps"], lr=c["rl_lr"], eval_every=2 if q else
                  c["eval_every"], eval_samples=c["eval_samples"], seed=ch.seed,
                  prompts_per_step=2 if q else 8, group_size=4 if q else 16,
                  max_new_tokens=room)
    for name, kl in (("RL", 0.0), ("RL + KL penalty", c["kl_coef"])):
        say(f"{name} against the on-policy reward model", flush=True)
        model = copy.deepcopy(ch.sft_model)

        def show(row, name=name):
            if row["step"] % 20 == 0:
                say(f"  {name} step {row['step']}/{rl_cfg['steps']}: reward "
                    f"{row['reward']:+.2f}, {row['seconds']:.0f} s", flush=True)

        res = rlhf.train_rlhf(model, rm, tok, train_q, rlhf.RLHFConfig(kl_coef=kl, **rl_cfg),
                              eval_questions=val_q, progress=show, log=lambda *a: None)
        runs[name] = {"model": model, "res": res}
    say(f"DPO on the same {len(world_pairs) + len(pol_pairs):,} pairs", flush=True)
    dpo_model = copy.deepcopy(ch.sft_model)
    dres = rlhf.train_dpo(dpo_model, tok, world_pairs + pol_pairs,
                          rlhf.DPOConfig(beta=c["dpo_beta"], lr=c["dpo_lr"],
                                         batch=8 if q else c["dpo_batch"],
                                         eval_every=2 if q else 25,
                                         eval_samples=c["eval_samples"],
                                         max_new_tokens=room, seed=ch.seed),
                          eval_questions=val_q, rm=rm, log=lambda *a: None)
    best = runs["RL"]["res"].best
    stopped = copy.deepcopy(ch.sft_model)
    stopped.load_state_dict(best["state"])
    say("measuring every policy on the held-out questions", flush=True)
    final = {}
    for name, m in (("assistant", ch.sft_model), ("RL, early-stopped", stopped),
                    ("RL, to the end", runs["RL"]["model"]),
                    ("RL + KL penalty", runs["RL + KL penalty"]["model"]), ("DPO", dpo_model)):
        final[name] = rlhf.measure(m, ch.sft_model, rm, tok, test_q, 4 if q else 8,
                                   seed=ch.seed + 99, max_new_tokens=room)

    meta = {"init_from": "sft_model.pt"}
    rlhf.export_reward_model(rm, ch.out / "reward_model.pt", meta=meta)
    export_model(stopped, ch.out / "rlhf_model.pt",
                 meta=meta | {"early_stopped_at": best["step"]})
    export_model(dpo_model, ch.out / "dpo_model.pt", meta=meta)
    curves = {name: [(s, sec, {k: v for k, v in e.items()}) for s, sec, e in r["res"].evals]
              for name, r in runs.items()}
    (ch.out / "rlhf_model.json").write_text(json.dumps(
        {"recipe": c, "reward_models": rm_log, "best_of_n": bon, "rl": curves,
         "rl_history": {n: r["res"].history for n, r in runs.items()},
         "early_stopped_at": best["step"], "dpo": {"history": dres.history, "evals": dres.evals},
         "final": final, "pairs": {"world": len(world_pairs), "policy": len(pol_pairs),
                                    "policy_test": len(pol_test)},
         "pair_examples": [vars(p) for p in pol_pairs[:20]]}, indent=1, default=str))
    ch.rlhf_model, ch.dpo_model, ch.reward_model = stopped, dpo_model, rm
    on, off = rm_log["on-policy"], rm_log["off-policy"]
    peak = max(runs["RL"]["res"].evals, key=lambda e: e[2]["true"])
    last = runs["RL"]["res"].evals[-1]
    f = lambda m: f"{m['true']:+.2f} / {m['proxy']:+.2f} / {m['kl']:.1f}"
    ch.report_rows = [
        ("pairs: templated / the assistant's own (train), held out",
         f"{len(world_pairs):,} / {len(pol_pairs):,}, {len(world_test)} / {len(pol_test)}"),
        ("reward model agreement with held-out choices, templated / the assistant's own: "
         "off-policy; on-policy",
         f"{off['agreement_world']:.0%} / {off['agreement_policy']:.0%}; "
         f"{on['agreement_world']:.0%} / {on['agreement_policy']:.0%}"),
        ("best-of-n true score, n = 1 / peak (n) / n = 64: off-policy RM",
         _bon_row(bon["off-policy"]["curve"])),
        ("best-of-n true score, n = 1 / peak (n) / n = 64: on-policy RM",
         _bon_row(bon["on-policy"]["curve"])),
        ("RL (no penalty) on held-out prompts: true / proxy / KL at the true peak (step) and at "
         "the end", f"{f(peak[2])} (step {peak[0]}); {f(last[2])}"),
        ("final, true / proxy / KL: assistant; early-stopped RL (ships); RL + KL penalty; DPO",
         "; ".join(f(final[k]) for k in ("assistant", "RL, early-stopped", "RL + KL penalty",
                                         "DPO"))),
    ]


def _bon_row(curve: list) -> str:
    top = max(curve, key=lambda r: r["true"])
    return (f"{curve[0]['true']:+.2f} / {top['true']:+.2f} (n={top['n']}) / "
            f"{curve[-1]['true']:+.2f}")


def _epochs(ch: Chain, tokens: int) -> str:
    """How many times the run went through its data (each shard at its share of the windows)."""
    meta = json.loads((ch.out / "data" / "meta.json").read_text())
    share = ch.recipe.curated_share if "curated_tokens" in meta else 0.0
    text = f"{tokens * (1 - share) / max(1, meta['train_tokens']):.1f}"
    if share:
        text += (f" of the corpus, {tokens * share / max(1, meta['curated_tokens']):.1f} of the "
                 "curated documents")
    return text


SIDE_BY_SIDE = {"base": "base", "sft": "chat", "idk": "chat", "tools": "tools", "rl": "chat",
                "rlhf": "chat", "dpo": "chat"}   # each model of the chain, and how it is asked
SIDE_N = 30          # questions of each kind (4 in a quick run)


def chain_model(ch: Chain, name: str):
    """The model ``name`` (``assets.MODELS``) as this run made it (its file in ``ch.out``), else
    the shipped one: ``(model, "this run" | "shipped")``."""
    f = ch.out / assets.MODELS[name].weights
    if f.exists():
        try:
            return load_model(str(f)), "this run"
        except ValueError as e:
            stage = MADE_BY[name]
            raise ValueError(f"{e}; the stage {stage!r} makes it: remake it with `python -m "
                             f"course_lib.pipeline --from '{stage}' --out {ch.out}` (the stages "
                             "before it from the shipped files) or run the chain into a new "
                             "--out") from e
    return assets.load_model(name), "shipped"


MADE_BY = {"base": "base model", "sft": "assistant", "idk": "hallucination and tools",
           "tools": "hallucination and tools", "rl": "reinforcement learning", "rlhf": "RLHF",
           "dpo": "RLHF"}   # which stage makes each model of assets.MODELS


def stage_side_by_side(ch: Chain):
    """Chapter 10: every model of the chain (base model to DPO) asked the same questions
    (``evals.side_by_side``), each the way it was made to be asked; a score per kind and the
    answers to the first question of each kind on the card."""
    from course_lib import chat
    from course_lib.evals import SIDE_BY_SIDE_KINDS, side_by_side, side_by_side_questions
    from course_lib.world import make_world

    ch.world = ch.world or make_world(ch.seed)
    ch.texts = ch.texts or corpus_texts()
    tok = chat.chat_tokenizer(ch.tokenizer or course_tokenizer())
    n = 4 if ch.quick else SIDE_N
    questions = side_by_side_questions(ch.world, ch.texts, n, ch.seed)
    models, made = {}, {}
    for name, how in SIDE_BY_SIDE.items():
        model, made[name] = chain_model(ch, name)
        models[name] = (model, how)
    if ch.progress:
        print(f"asking {len(models)} models {sum(map(len, questions.values()))} questions each",
              flush=True)
    got = side_by_side(models, tok, questions, max_new_tokens=48 if ch.quick else 200)
    kinds = list(SIDE_BY_SIDE_KINDS)
    fmt = {"who": lambda v: "yes" if v else "no", "liked": lambda v: f"{v:+.2f}"}
    label = " / ".join(k if k != "invented" else "invented refused" for k in kinds)
    shipped = [m for m in models if made[m] == "shipped"]
    rows = [("questions, of each kind", f"{n} ('who': 1): " + "; ".join(
        f"{k}: {d}" for k, d in SIDE_BY_SIDE_KINDS.items())),
        ("models read from course_lib/assets (the others: this run's)",
         ", ".join(shipped) or "none")]
    for name in models:
        s = got["scores"][name]
        rows.append((f"{name} ({models[name][1]}): {label}",
                     " / ".join(fmt.get(k, lambda v: f"{v:.0%}")(s[k]) for k in kinds)
                     + f" (of {n} each)"))
    for k in kinds:
        q = questions[k][0][0]
        for name in models:
            reply = " ".join(got["answers"][name][k][0].split())
            rows.append((f"{name} · {q}", reply[:200] + ("..." if len(reply) > 200 else "")))
    ch.report_rows = rows
    (ch.out / "side_by_side.json").write_text(json.dumps(
        {"questions": questions, "made": made, **got}, indent=1))


STAGES = [("world and crawl", stage_world), ("cleaned corpus", stage_corpus),
          ("tokenizer", stage_tokenizer), ("base model", stage_base_model),
          ("assistant", stage_assistant), ("hallucination and tools", stage_tools),
          ("reinforcement learning", stage_rl), ("RLHF", stage_rlhf),
          ("the models side by side", stage_side_by_side)]


def run_chain(out: str | Path = "runs/chain", start: str = "world and crawl", quick: bool = False,
              seed: int = 0, threads: int = 0, config: str | None = None,
              overrides: dict | None = None, progress: bool = True,
              recipe: str = SHIPPED_RECIPE, resume: bool = False) -> Chain:
    """Run the stages from ``start`` on with ``recipe`` (``RECIPES``), writing everything under
    ``out`` and the report card to ``out/report_card.md``. ``resume``: start after the last stage
    that a previous run into ``out`` finished (its report card says which), from its files."""
    names = [n for n, _ in STAGES]
    if start not in names:
        raise ValueError(f"unknown stage {start!r}; the stages are {names}")
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; the recipes are {sorted(RECIPES)}")
    ch = Chain(Path(out), quick, seed, threads, config, dict(overrides or {}), progress,
               recipe=RECIPES[recipe])
    ch.out.mkdir(parents=True, exist_ok=True)
    if resume:
        start = _resume(ch, names)
        if start is None:
            if progress:
                print(f"every stage of {ch.out} is finished; nothing to resume (its card, "
                      f"compared with the shipped one again: {report.write_html(ch.out)})",
                      flush=True)
            return ch
    else:
        if recipe != SHIPPED_RECIPE and start not in names[:2]:
            raise ValueError(f"recipe {recipe!r} remakes the crawl and the tokenizer: start from "
                             f"{names[0]!r} (the shipped files were made with "
                             f"{SHIPPED_RECIPE!r})")
        shipped = ASSETS / "report_card.json"
        if start != names[0] and not quick and shipped.exists():
            # the stages not rerun keep the shipped card's numbers
            _card_from(ch, json.loads(shipped.read_text()), names[:names.index(start)])
    todo = STAGES[names.index(start):]
    expected = _shipped_seconds(quick)
    clock = SuspendAwareClock().install()
    chain_t0 = clock()
    try:
        _run_stages(ch, todo, names, expected, clock, chain_t0, progress)
    finally:
        clock.uninstall()
    if progress:
        total = report.chain_minutes(ch.numbers)
        budget = report.QUICK_BUDGET_MIN if quick else report.CHAIN_BUDGET_MIN
        print(f"== chain finished: its stages took {total:.1f} min in all (budget {budget} min); "
              f"card: {ch.out / 'report_card.md'}, {ch.out / 'report_card.html'}", flush=True)
    return ch


def _run_stages(ch, todo, names, expected, clock, chain_t0, progress):
    for i, (name, fn) in enumerate(todo, 1):
        if progress:
            left = sum(expected.get(n, 0) for n, _ in todo[i - 1:])
            print(f"== chain [{names.index(name) + 1}/{len(names)}] {name}: "
                  f"{_clock(clock() - chain_t0)} into this run"
                  + (f", ~{_clock(left)} to go at the shipped run's pace" if left else ""),
                  flush=True)
        t0 = clock()
        ch.report_rows = []
        fn(ch)
        ch.report(name, ch.report_rows, clock() - t0)
        write_report_card(ch)
        if progress:
            print(f"== chain [{names.index(name) + 1}/{len(names)}] {name} done in "
                  f"{_clock(clock() - t0)}", flush=True)


class SuspendAwareClock:
    """Wall-clock seconds that leave out the time the process spent suspended: a chain stopped
    with Ctrl-Z (``SIGTSTP``) and continued with ``fg`` (``SIGCONT``) reports each stage's
    working time, not the pause (``kill -TSTP <pid>`` pauses a background chain the same way,
    to lend its cores to something else for a while). ``SIGSTOP`` cannot be seen and counts."""

    def __init__(self):
        self.suspended = 0.0

    def install(self) -> "SuspendAwareClock":
        import signal
        import threading

        self._before = None
        if hasattr(signal, "SIGTSTP") and threading.current_thread() is threading.main_thread():
            self._before = signal.signal(signal.SIGTSTP, self._suspend)
        return self

    def uninstall(self) -> None:
        import signal

        if self._before is not None:
            signal.signal(signal.SIGTSTP, self._before)
            self._before = None

    def _suspend(self, signum, frame):
        import os
        import signal

        t0 = time.perf_counter()
        # SIGSTOP, not SIGTSTP again: the kernel drops SIGTSTP for a process whose group has no
        # terminal (a chain started with nohup ... &), and SIGSTOP always stops
        os.kill(os.getpid(), signal.SIGSTOP)          # stops here until SIGCONT
        self.suspended += time.perf_counter() - t0

    def __call__(self) -> float:
        return time.perf_counter() - self.suspended


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _shipped_seconds(quick: bool) -> dict:
    """Each stage's seconds on the shipped card (for the chain's "to go"; none for --quick)."""
    try:
        card = json.loads((ASSETS / "report_card.json").read_text())
    except (OSError, ValueError):
        return {}
    return {} if quick else {k: v.get("seconds", 0) for k, v in card.items()
                             if isinstance(v, dict) and k != "chain"}


def _card_from(ch: Chain, numbers: dict, stages: list) -> None:
    """Put earlier stages' rows (from a report card's json) on ``ch``'s card, and the assistant's
    targets when the assistant is one of them."""
    for name in stages:
        if name in numbers:
            rows = [(k, v) for k, v in numbers[name].items() if k != "seconds"]
            ch.card.append((name, rows + [("time", f"{numbers[name]['seconds']:.0f} s")]))
            ch.numbers[name] = numbers[name]
    # each stage's targets travel with its rows (a target row names its chapter by its start)
    owner = {CH7_TARGETS: "hallucination and tools", CH8_TARGETS: "reinforcement learning"}
    kept = [tuple(r) for r in numbers.get("targets", [])
            if next((st for pre, st in owner.items() if r[0].startswith(pre)), "assistant")
            in stages]
    if kept:
        ch.targets = kept


def _resume(ch: Chain, names: list) -> str | None:
    """Load what the finished stages of a run into ``ch.out`` made; the first stage to run
    (None: all finished). The crawl lives only in memory, so a run stopped before its corpus
    starts again from the world."""
    card = ch.out / "report_card.json"
    if not card.exists():
        return names[0]
    numbers = json.loads(card.read_text())
    run = numbers.get("chain")
    if run is None:
        raise ValueError(f"{card} does not say which recipe made it (written before --resume "
                         f"existed): run the chain again into a new --out")
    mine = {"recipe": ch.recipe.name, "seed": ch.seed, "quick": ch.quick}
    if {k: run.get(k) for k in mine} != mine:
        raise ValueError(f"{ch.out} holds a run with {({k: run.get(k) for k in mine})}, not "
                         f"{mine}: resume it with those settings or use another --out")
    done = [n for n in names if n in run["finished"]]
    done = done[:next((i for i, n in enumerate(names) if n not in done), len(names))]
    if len(done) == len(names):
        return None
    if len(done) == 1:      # the crawl is gone; remake it with the world
        done = []
    _card_from(ch, numbers, done)
    remake = (f"python -m course_lib.pipeline --recipe {ch.recipe.name} --out {ch.out}"
              + (" --quick" if ch.quick else ""))
    from course_lib.world import make_world

    ch.world = make_world(ch.seed)

    def load(name, fn):
        path = ch.out / name
        try:
            return fn(path)
        except Exception as e:  # noqa: BLE001 - any failure to read means the file is bad
            why = (str(e).splitlines() or [type(e).__name__])[0][:120]
            raise ValueError(f"--resume: {path} is missing or unreadable ({why}); delete "
                             f"{card} and remake the run: {remake}") from e

    if len(done) >= 2:
        ch.texts = load("corpus.parquet", lambda f: corpus_texts(load_corpus(f)))
    if len(done) >= 3:
        ch.tokenizer = load("course_tokenizer.model", course_tokenizer)
        load("data/meta.json", lambda f: json.loads(f.read_text()))
    if len(done) >= 4:
        ch.model = load("base_model.pt", base_model)
    if len(done) >= 5:
        ch.sft_model = load("sft_model.pt", load_model)
        ch.sft_path = ch.out / "sft_model.pt"
    return names[len(done)]


def write_report_card(ch: Chain) -> Path:
    minutes = sum(v.get("seconds", 0) for v in ch.numbers.values()) / 60
    budget = report.QUICK_BUDGET_MIN if ch.quick else report.CHAIN_BUDGET_MIN
    lines = ["# Report card of the course pipeline", "",
             f"Made by `python -m course_lib.pipeline` ({'quick run' if ch.quick else 'full run'}, "
             f"world seed {ch.seed}, recipe {ch.recipe.name}). {len(ch.card)} of {len(STAGES)} "
             f"stages on the card, {minutes:.1f} min together (the whole chain's budget: "
             f"{budget} min on two cores). The same card with figures: `report_card.html`.", ""]
    for stage, rows in ch.card:
        lines += [f"## {stage}", "", "| measure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in rows] + [""]
    if ch.targets:
        lines += ["## what the second half of the course needs (issues 14-16's targets)", "",
                  "Measured on the assistant, on held-out items, greedy unless said.", "",
                  "| measure | value | target | met |", "|---|---|---|---|"]
        lines += [f"| {m} | {v} | {t} | {ok} |" for m, v, t, ok in ch.targets] + [""]
    numbers = dict(ch.numbers)
    numbers["chain"] = {"recipe": ch.recipe.name, "seed": ch.seed, "quick": ch.quick,
                        "finished": [stage for stage, _ in ch.card]}
    if ch.targets:
        numbers["targets"] = [list(r) for r in ch.targets]
    shipped = ASSETS / "report_card.json"
    if ch.out.resolve() != ASSETS.resolve() and shipped.exists():
        lines += report.markdown_comparison(report.compare(numbers, json.loads(
            shipped.read_text())), quick=ch.quick)
    # each file is written whole and then renamed: a run stopped mid-write keeps the last card
    _write(ch.out / "report_card.json", json.dumps(numbers, indent=1, default=str))
    path = _write(ch.out / "report_card.md", "\n".join(lines))
    report.write_html(ch.out)
    return path


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def ship(ch: Chain) -> None:
    """Copy what the run made (cleaned corpus, tokenizer, base model, assistant, their logs, the
    report card: every shipped file of ``assets.FILES`` the run wrote) into ``course_lib/assets``."""
    for name in assets.FILES:
        if (ch.out / name).exists():
            shutil.copy(ch.out / name, assets.ASSETS_DIR / name)
    card = assets.ASSETS_DIR / "report_card.md"   # the shipped card is compared with nothing
    card.write_text(card.read_text().split("\n## compared with the shipped run")[0].rstrip()
                    + "\n")


def _main(argv=None, prog: str = "python -m course_lib.pipeline"):
    import argparse

    names = [n for n, _ in STAGES]
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run the course pipeline (world -> crawl -> corpus -> tokenizer -> base "
                    "model -> assistant -> chapter 7's models -> RL -> RLHF and DPO -> every "
                    "model side by side) and write a report card (report_card.md, .json and "
                    ".html, compared with the shipped run's).")
    p.add_argument("--out", default="runs/chain", help="folder for everything the run makes")
    p.add_argument("--from", dest="start", default=names[0],
                   help=f"first stage (the earlier ones' shipped outputs are used): {names}")
    p.add_argument("--quick", action="store_true",
                   help="a tiny run of every stage (the tests', a few minutes)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--config", default=None,
                   help="base model's training config name or .toml path (default: the recipe's)")
    p.add_argument("--recipe", default=SHIPPED_RECIPE, choices=sorted(RECIPES),
                   help=f"how the models are made (default {SHIPPED_RECIPE}, the shipped one)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override training settings, e.g. --set max_steps=100")
    p.add_argument("--ch7", nargs="*", default=[], metavar="KEY=VALUE",
                   help=f"change chapter 7's recipe (CH7), e.g. --ch7 idk_steps=300; keys: "
                        f"{', '.join(CH7)}")
    p.add_argument("--ch8", nargs="*", default=[], metavar="KEY=VALUE",
                   help=f"change chapter 8's recipe (CH8), e.g. --ch8 lr=1e-5; keys: "
                        f"{', '.join(CH8)}")
    p.add_argument("--resume", action="store_true",
                   help="start after the last stage a previous run into --out finished")
    p.add_argument("--ship", action="store_true",
                   help="copy the tokenizer, model, log and report card into course_lib/assets")
    args = p.parse_args(argv)

    if args.ship and args.recipe != SHIPPED_RECIPE:
        raise SystemExit(f"--ship with --recipe {args.recipe}: set SHIPPED_RECIPE to "
                         f"{args.recipe!r} first (and re-release what depends on the models)")
    for flag, recipe in (("ch7", CH7), ("ch8", CH8)):
        items = getattr(args, flag)
        for kv in items:
            key, eq, value = kv.partition("=")
            if not eq or key not in recipe:
                raise SystemExit(f"--{flag} {kv!r}: write KEY=VALUE with KEY one of "
                                 f"{', '.join(recipe)}")
            old = recipe[key]
            recipe[key] = value.lower() in ("1", "true", "yes") if isinstance(old, bool) else (
                type(old)(value))
        if items and args.ship:
            raise SystemExit(f"--ship with --{flag}: change {flag.upper()} in "
                             "course_lib/pipeline.py instead, so that the shipped models are "
                             "what the code says")
    ch = run_chain(args.out, args.start, args.quick, threads=args.threads, config=args.config,
                   overrides=parse_overrides(args.set), recipe=args.recipe, resume=args.resume)
    print((ch.out / "report_card.md").read_text())
    if args.ship:
        if args.quick:
            raise SystemExit("--ship with --quick would replace the course's model by a toy")
        ship(ch)
        print(f"shipped to {ASSETS}")


if __name__ == "__main__":
    _main()
