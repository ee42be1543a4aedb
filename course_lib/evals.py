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
import re
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
    decile_of = mention_deciles(world, mentions)
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


# chapter 4's two arithmetic probes, phrased as each problem style's worked solutions phrase them
ARITHMETIC_PROBES = {
    "legacy": {"digit": "In the ones place we add {a} and {b} and get",
               "sum": "So the sum of {a} and {b} is"},
    "compact": {"digit": "ones: {a} + {b} =", "sum": "So {a} + {b} ="},
}


def _probe(kind: str, style: str | None) -> str:
    from course_lib import world as W

    style = style or W.PROBLEM_STYLE
    if style not in ARITHMETIC_PROBES:
        raise ValueError(f"style must be one of {sorted(ARITHMETIC_PROBES)}, got {style!r}")
    return ARITHMETIC_PROBES[style][kind]


def digit_addition_accuracy(model, tokenizer, style: str | None = None) -> dict:
    """Adding two digits as the corpus's worked solutions do (legacy style: "In the ones place
    we add 7 and 5 and get" -> " 12"; compact: "ones: 7 + 5 =" -> " 12"; default
    ``world.PROBLEM_STYLE``), over all 100 pairs; chance is guessing uniformly among the 19
    sums."""
    pairs = [(x, y) for x in range(10) for y in range(10)]
    prompt = _probe("digit", style)
    prompts = [tokenizer.encode(prompt.format(a=x, b=y)) for x, y in pairs]
    answers = [tokenizer.encode(f" {x + y}") for x, y in pairs]
    ok, _ = _greedy_matches(model, prompts, answers)
    return {"accuracy": sum(ok) / len(ok), "chance": 1 / 19, "n": len(ok), "prompt": prompt,
            "wrong": [f"{x}+{y}" for (x, y), c in zip(pairs, ok) if not c]}


def sum_accuracy(model, tokenizer, n: int = 200, seed: int = 0, max_value: int = 100,
                 style: str | None = None) -> dict:
    """Whole sums with no worked steps (legacy: "So the sum of 23 and 45 is" -> " 68"; compact:
    "So 23 + 45 =" -> " 68"), a and b drawn below ``max_value``: harder than digits, since the
    corpus only states such sums after working them out. Chance: the probability that a sum of
    the same kind equals it."""
    rng = random.Random(seed)
    pairs = [(rng.randrange(2, max_value), rng.randrange(2, max_value)) for _ in range(n)]
    prompt = _probe("sum", style)
    prompts = [tokenizer.encode(prompt.format(a=a, b=b)) for a, b in pairs]
    answers = [tokenizer.encode(f" {a + b}") for a, b in pairs]
    ok, _ = _greedy_matches(model, prompts, answers)
    sums = Counter(a + b for a in range(2, max_value) for b in range(2, max_value))
    total = sum(sums.values())
    chance = sum((c / total) ** 2 for c in sums.values())
    return {"accuracy": sum(ok) / n, "chance": chance, "n": n, "prompt": prompt}


# ---------------------------------------------------------------------------------------------
# Capabilities the second half of the course stands on (issue 14): reading the context,
# computing with worked steps, knowing the head of the world
# ---------------------------------------------------------------------------------------------

def reading_prompt(passage: str, question: str) -> str:
    from course_lib.world import reading_prompt as rp

    return rp(passage, question)


@dataclass
class ReadingItem:
    passage: str        # every fact of the entity (what a search would return)
    question: str       # about one of them
    prompt: str         # the fact's sentence up to the value (the base model completes it)
    value: str
    unrelated: str      # a question about another (invented) entity: not in the passage


def reading_items(world, n: int = 200, seed: int = 0, entities: list | None = None,
                  only: set | frozenset | None = None) -> list[ReadingItem]:
    """``n`` reading items about ``entities`` (default: entities invented for the test, so that
    their facts can only come from the passage), each with an unrelated question. ``only``: the
    ``(subject, relation)`` pairs that may be asked (e.g. ``chat.held_out``, so that an answer
    without the passage measures pretraining, not the SFT data)."""
    from course_lib import world as W

    rng = random.Random(f"reading-items-{seed}")
    pool = entities if entities is not None else [W.invented_entity(world, rng)
                                                  for _ in range(n)]
    items = []
    for i in range(n):
        e = pool[i % len(pool)]
        relations = sorted(r for r in e.facts if only is None or (e.name, r) in only)
        if not relations:
            raise ValueError(f"{e.name} has no fact in only=: pass entities with one")
        f = e.fact(rng.choice(relations))
        o = W.invented_entity(world, rng)
        g = o.fact(rng.choice(sorted(o.facts)))
        items.append(ReadingItem(W.passage_for(e, rng), W.question_for(f), f.prompt, f.value,
                                 W.question_for(g)))
    return items


def reading_accuracy(model, tokenizer, items: list[ReadingItem], chat: bool = False) -> dict:
    """Reading, measured. Base model (``chat=False``): the fact's sentence completed after the
    passage and the question, against after the question alone (teacher-forced greedy). The
    assistant (``chat=True``): its greedy reply to the passage and question, right when it says
    the value. For the unrelated question: the share answered with a value taken from the
    passage (``copied``) and the share told that the passage does not say (``refused``)."""
    from course_lib import world as W

    if not chat:
        eot = [tokenizer.special_tokens.get("<|endoftext|>")] if getattr(
            tokenizer, "special_tokens", None) else []
        answers = [tokenizer.encode(" " + it.value) for it in items]
        withp = [eot + tokenizer.encode(reading_prompt(it.passage, it.question)
                                        + f"\nAnswer: {it.prompt}") for it in items]
        without = [eot + tokenizer.encode(f"Question: {it.question}\nAnswer: {it.prompt}")
                   for it in items]
        ok_with, _ = _greedy_matches(model, withp, answers)
        ok_without, _ = _greedy_matches(model, without, answers)
        refuse = [tokenizer.encode(" " + W.NOT_IN_PASSAGE)] * len(items)
        unrel = [eot + tokenizer.encode(reading_prompt(it.passage, it.unrelated) + "\nAnswer:")
                 for it in items]
        ok_ref, _ = _greedy_matches(model, unrel, refuse)
        return {"with_passage": _mean(ok_with), "without": _mean(ok_without),
                "refused": _mean(ok_ref), "n": len(items)}
    from course_lib.chat import replies, says

    def ask(contents):
        return replies(model, tokenizer, [[{"role": "user", "content": c}] for c in contents],
                       max_new_tokens=40)

    r_with = ask([reading_prompt(it.passage, it.question) for it in items])
    r_without = ask([it.question for it in items])
    r_unrel = ask([reading_prompt(it.passage, it.unrelated) for it in items])
    passage_values = [[v for v in _values_in(it.passage)] for it in items]
    return {"with_passage": _mean([says(r, it.value) for r, it in zip(r_with, items)]),
            "without": _mean([says(r, it.value) for r, it in zip(r_without, items)]),
            "refused": _mean([W.NOT_IN_PASSAGE.lower().rstrip(".") in r.lower()
                              for r in r_unrel]),
            "copied": _mean([any(says(r, v) for v in vs)
                             for r, vs in zip(r_unrel, passage_values)]),
            "n": len(items), "examples": list(zip(r_with[:3], r_unrel[:3]))}


def _values_in(passage: str) -> list[str]:
    from course_lib import world as W

    vocab = (W.OCCUPATIONS + W.COLOURS + W.COUNTRIES + W.RIVERS + W.KNOWN_FOR
             + W.ANIMAL_CLASSES + W.FOODS + W.HABITATS + W.PURPOSES)
    from course_lib.chat import says
    return [v for v in vocab if says(passage, v)]


def _mean(xs) -> float:
    xs = list(xs)
    return sum(map(float, xs)) / len(xs) if xs else 0.0


PROBLEM_SUITE = (("addition", 2), ("subtraction", 2), ("addition", 3), ("multiplication", 2),
                 ("counting", 0))


def problem_set(kind: str, digits: int, n: int = 100, seed: int = 0, world=None) -> list:
    """``n`` problems of one kind, held out by seed; ``digits`` is the size of the larger
    operand (2: 10-99, 3: 100-999; multiplication: the tables up to 12); counting keeps only
    words where the answer is not 1 (``digits`` ignored)."""
    from course_lib import world as W

    rng = random.Random(f"problem-set-{kind}-{digits}-{seed}")
    out = []
    while len(out) < n:
        p = W.make_problem(rng, world, kind, max_digits=max(2, digits), style="compact")
        if kind in ("addition", "subtraction"):
            nums = [int(x) for x in re.findall(r"\d+", p.question)]
            if len(str(max(nums))) != digits:
                continue
        if kind == "counting" and p.answer == 1:
            continue
        out.append(p)
    return out


def parse_answer(text: str) -> int | None:
    """The integer after the last ``Answer:`` (the assistant's) or ``The answer is`` (the
    corpus's worksheets); None when there is none."""
    found = re.findall(r"(?:Answer:|The answer is)\s*(-?\d+)", text)
    return int(found[-1]) if found else None


def problem_accuracy(model, tokenizer, problems: list, chat: bool = True, steps: bool = True,
                     samples: int = 1, temperature: float = 0.0, seed: int = 0,
                     max_new_tokens: int = 200) -> dict:
    """Problems solved, measured by their final answer. The assistant (``chat=True``) is asked
    the question (``steps=False``: with "Give only the answer.", so the answer must come right
    after the question); a base model continues a worksheet's "Solution." With ``samples > 1``
    (and ``temperature > 0``): pass@1 (mean over samples) and pass@k (any sample right).
    ``best_constant`` is the accuracy of always giving the commonest answer."""
    from course_lib import chat as C
    from course_lib.generate import generate_batch

    if chat:
        tok = C.chat_tokenizer(tokenizer)
        eot = tok.special_tokens["<|endoftext|>"]
        from course_lib.world import NO_STEPS

        q = [p.question + ("" if steps else " " + NO_STEPS) for p in problems]
        prompts = [[eot] + C.render_prompt([{"role": "user", "content": x}], tok) for x in q]
    else:
        tok = tokenizer
        # no space after "Solution.": the text's next token is " We" (a space is part of the
        # word that follows it), so a trailing space would be a token the data never has there
        prompts = [tok.encode(f"First problem. {p.question}\n\nSolution."
                              + ("" if steps else " The answer is")) for p in problems]
    prompts, max_new_tokens = C._fit(model, prompts, max_new_tokens)
    right = [[False] * samples for _ in problems]
    texts = [[""] * samples for _ in problems]
    for s in range(samples):
        for i in range(0, len(prompts), 64):
            outs = generate_batch(model, tok, prompts[i:i + 64], max_new_tokens,
                                  temperature=temperature, seed=seed * 1000 + s)
            for j, o in enumerate(outs):
                o = C._cut(o) if chat else o.split("<|endoftext|>")[0]
                if not chat and not steps:
                    o = "The answer is" + o
                texts[i + j][s] = o
                right[i + j][s] = parse_answer(o) == problems[i + j].answer
    common = Counter(p.answer for p in problems).most_common(1)[0][1] / len(problems)
    return {"accuracy": _mean(x for r in right for x in r),
            f"pass@{samples}": _mean(any(r) for r in right), "best_constant": common,
            "n": len(problems), "example": texts[0][0]}



def auroc(scores: list[float], labels: list[bool]) -> float:
    """Area under the ROC curve: the probability that a random right answer has a higher score
    than a random wrong one (ties count half). 0.5 is no separation, 1 perfect."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return float("nan")
    ranked = sorted([(s, 1) for s in pos] + [(s, 0) for s in neg])
    rank_sum, i = 0.0, 0
    while i < len(ranked):   # average ranks over ties
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        avg = (i + j + 1) / 2
        rank_sum += avg * sum(1 for k in range(i, j) if ranked[k][1])
        i = j
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


@torch.no_grad()
def greedy_answer_probability(model, prompts: list[list[int]], lengths: list[int],
                              batch_size: int = 64) -> list[float]:
    """How sure the model is of its own answer: the probability of the ``lengths[i]`` tokens
    greedy decoding writes after ``prompts[i]`` (the product of each step's top probability).
    The whole answer, not its first token: with digits one by one a year's first token is
    nearly always "1", and a job's is the article " a", so their first token says nothing."""
    model.eval()
    device = next(model.parameters()).device
    block = model.config.block_size
    out = []
    for i in range(0, len(prompts), batch_size):
        n = lengths[i:i + batch_size]
        chunk = [p[-(block - k):] for p, k in zip(prompts[i:i + batch_size], n)]
        x = torch.zeros(len(chunk), max(len(p) + k for p, k in zip(chunk, n)), dtype=torch.long)
        for r, p in enumerate(chunk):
            x[r, :len(p)] = torch.tensor(p)
        prob = torch.ones(len(chunk))
        for step in range(max(n)):   # right-padding is never attended to: attention is causal
            probs = model(x.to(device))[0].float().softmax(-1).cpu()
            for r, p in enumerate(chunk):
                if step < n[r]:
                    top, tok = probs[r, len(p) - 1 + step].max(-1)
                    prob[r] *= top
                    x[r, len(p) + step] = tok
        out += prob.tolist()
    return out


def mention_deciles(world, mentions) -> dict:
    """Each entity's tenth of the world by how many training documents name it: 1 for the most
    named, 10 for the least (ties by rank)."""
    order = sorted(world.entities, key=lambda e: (-mentions[e.name], e.rank))
    return {e.name: 1 + (10 * i) // len(order) for i, e in enumerate(order)}


@torch.no_grad()
def fact_confidence(model, tokenizer, world=None, texts: list[str] | None = None,
                    chat: bool = True, batch_size: int = 64,
                    only: frozenset | set | None = None) -> dict:
    """Every fact of the world asked, and how sure the model is. The assistant (``chat=True``)
    gets the question and starts its answer with the fact's sentence up to the value; a base
    model gets the sentence alone. Right: greedy decoding gives exactly the value. Confidence:
    the probability of the model's greedy answer (``greedy_answer_probability``). Returns accuracy by decile of
    entities by mentions (1: most named), chance, and the AUROC of confidence for right vs wrong.
    ``only``: the ``(subject, relation)`` pairs to ask (e.g. ``chat.held_out``: never in SFT)."""
    from course_lib import chat as C
    from course_lib import world as W

    world, mentions = training_mentions(world, texts)
    tok = C.chat_tokenizer(tokenizer) if chat else tokenizer
    eot = tok.special_tokens["<|endoftext|>"]
    facts = [(e, f) for e in world.entities for f in e.all_facts()
             if only is None or (e.name, f.relation) in only]
    prompts, answers = [], []
    for e, f in facts:
        lead = f.prompt if f.relation != "job" else f"{f.subject} works as"
        value = f" {f.value}" if f.relation != "job" else f" {W._a(f.value)}"
        if chat:
            ids = [eot] + C.render_prompt([{"role": "user", "content": W.question_for(f)}], tok)
            prompts.append(ids + tok.encode_ordinary(lead))
        else:
            prompts.append([eot] + tok.encode_ordinary(lead))
        answers.append(tok.encode_ordinary(value))
    ok, _ = _greedy_matches(model, prompts, answers, batch_size)
    conf = greedy_answer_probability(model, prompts, [len(a) for a in answers], batch_size)
    decile_of = mention_deciles(world, mentions)
    by_decile = {}
    for (e, _), c in zip(facts, ok):
        by_decile.setdefault(decile_of[e.name], []).append(c)
    common = Counter((e.kind, f.relation, f.value) for e, f in facts)
    per_rel = Counter((e.kind, f.relation) for e, f in facts)
    best = {}
    for (k, rel, _), n in common.items():
        best[(k, rel)] = max(best.get((k, rel), 0), n)
    chance = _mean(best[(e.kind, f.relation)] / per_rel[(e.kind, f.relation)] for e, f in facts)
    return {"accuracy": _mean(ok), "deciles": {d: _mean(v) for d, v in sorted(by_decile.items())},
            "chance": chance, "auroc": auroc(conf, ok), "n": len(ok),
            "rows": [(e.name, f.relation, mentions[e.name], c, p)
                     for (e, f), c, p in zip(facts, ok, conf)]}


def known_facts(model, tokenizer, world=None, texts: list[str] | None = None,
                only: frozenset | set | None = None, batch_size: int = 64) -> frozenset:
    """The ``(subject, relation)`` pairs a base model completes right, greedy, from the fact's
    sentence (``fact_confidence`` with ``chat=False``): a probe of what it knows, the first step
    of the Llama 3 factuality recipe, and what recipe v2's SFT asks about."""
    rows = fact_confidence(model, tokenizer, world, texts, chat=False, batch_size=batch_size,
                           only=only)["rows"]
    return frozenset((name, rel) for name, rel, _, right, _ in rows if right)


def base_beliefs(model, tokenizer, world=None, only: frozenset | set | None = None,
                 batch_size: int = 64) -> dict:
    """What a base model believes of each fact: its greedy completion of the fact's sentence,
    when that completion is one of the values the relation takes in the world (right or wrong).
    Returns ``{(subject, relation): value}``; a pair whose completion is no such value is left
    out. Right answers are exactly ``known_facts``' pairs. ``Recipe(sft_facts="beliefs")``
    writes these as the SFT answers (self-distillation: the answers add no belief the base model
    lacks; tried for recipe v2, it cost knowledge: docs/capability.md). ``only``: the pairs to
    ask."""
    from course_lib import world as W
    from course_lib.generate import generate_batch

    world = world or W.make_world()
    facts = [(e, f) for e in world.entities for f in e.all_facts()
             if only is None or (e.name, f.relation) in only]
    said = {}                                 # (kind, relation) -> {written form: value}
    for e in world.entities:
        for f in e.all_facts():
            form = W._a(f.value) if f.relation == "job" else f.value
            said.setdefault((e.kind, f.relation), {})[form] = f.value
    longest = max(len(tokenizer.encode_ordinary(" " + form)) for forms in said.values()
                  for form in forms)
    eot = tokenizer.special_tokens["<|endoftext|>"]
    prompts = [[eot] + tokenizer.encode_ordinary(f.prompt if f.relation != "job"
                                                  else f"{f.subject} works as")
               for _, f in facts]
    out = {}
    for i in range(0, len(facts), batch_size):
        texts = generate_batch(model, tokenizer, prompts[i:i + batch_size], longest + 1,
                               temperature=0)
        for (e, f), text in zip(facts[i:i + batch_size], texts):
            forms = said[(e.kind, f.relation)]
            hits = [form for form in forms if re.match(rf" {re.escape(form)}(?![\w])", text)]
            if hits:
                out[(e.name, f.relation)] = forms[max(hits, key=len)]
    return out


# the distribution chapter 8's RL trains on (issue 14 target 4: room for RL): one column past
# the worksheets, which stop at 3 digits. 3-digit problems leave no room (the v2 assistant:
# pass@1 60-76 %); 4-digit ones are solved only when SFT shows a few (docs/capability.md)
RL_PROBLEMS = (("addition", 4), ("subtraction", 4))


def rl_problems(n: int, seed: int = 0, world=None) -> list:
    """Chapter 8's training distribution (``RL_PROBLEMS``): 4-digit addition and subtraction,
    alternating."""
    half = [problem_set(k, d, (n + 1) // 2, seed, world) for k, d in RL_PROBLEMS]
    return [p for pair in zip(*half) for p in pair][:n]


def rl_harder_problems(n: int, seed: int = 0, world=None) -> list:
    """Chapter 8's transfer set: the training distribution's kinds one column longer (5-digit
    addition and subtraction), alternating."""
    half = [problem_set(k, d + 1, (n + 1) // 2, seed, world) for k, d in RL_PROBLEMS]
    return [p for pair in zip(*half) for p in pair][:n]


def rlhf_questions(world, seed: int = 0) -> dict:
    """Chapter 9's prompts: every fact question of the world, shuffled once and split into
    ``train`` (RL prompts and the policy's labelled pairs), ``val`` (100: the curves and early
    stopping) and ``test`` (200: best-of-n and the final numbers)."""
    import random

    from course_lib.world import fact_questions

    qs = fact_questions(world)
    random.Random(f"course-rlhf-{seed}").shuffle(qs)
    return {"test": qs[:200], "val": qs[200:300], "train": qs[300:]}


def capability_card(sft, tokenizer, world, train_texts: list[str], n: int = 100,
                    seed: int = 0) -> tuple[list, dict]:
    """Issue 14's targets measured on the assistant ``sft``, on held-out items: rows
    ``(measure, value, target, met)`` for the report card, and the numbers."""
    from course_lib import chat as C
    from course_lib.data import entity_mentions

    nums, rows = {}, []

    def row(measure, value, target, met):
        rows.append((measure, value, target, "yes" if met else "**no**"))

    mentions = entity_mentions(world, train_texts)
    # the least-named entities' facts SFT never asked (it may teach the others: recipe v2 asks
    # every fact not held out), so that "without the passage" measures what pretraining left
    held = C.held_out(world)
    rare = sorted((e for e in world.entities if any((e.name, r) in held for r in e.facts)),
                  key=lambda e: (mentions[e.name], -e.rank))[:n]
    invented = reading_items(world, n, seed)
    seen_little = reading_items(world, n, seed + 1, entities=rare, only=held)
    r_inv = reading_accuracy(sft, tokenizer, invented, chat=True)
    r_rare = reading_accuracy(sft, tokenizer, seen_little, chat=True)
    nums["reading_invented"], nums["reading_rare"] = r_inv, r_rare
    for name, r in (("invented entities", r_inv),
                    ("least-named entities (facts never in SFT)", r_rare)):
        row(f"reading: facts of {name}, with the passage / without",
            f"{r['with_passage']:.0%} / {r['without']:.0%}", ">= 80% / <= 20%",
            r["with_passage"] >= 0.8 and r["without"] <= 0.2)
    row("reading: a question the passage does not answer, refused / answered from it",
        f"{r_inv['refused']:.0%} / {r_inv['copied']:.0%}", "not answered from it",
        r_inv["copied"] <= 0.1)
    targets = {("addition", 2): 0.7, ("subtraction", 2): 0.7, ("addition", 3): 0.5,
               ("counting", 0): 0.7, ("multiplication", 2): None}
    for (kind, digits), goal in targets.items():
        ps = problem_set(kind, digits, n, seed, world)
        worked = problem_accuracy(sft, tokenizer, ps, chat=True)
        direct = problem_accuracy(sft, tokenizer, ps, chat=True, steps=False, max_new_tokens=12)
        label = f"{digits}-digit {kind}" if kind in ("addition", "subtraction") else (
            "letter counting (answer not 1)" if kind == "counting" else "multiplication tables")
        nums[label] = {"worked": worked, "direct": direct}
        # answer only: no better than a third of worked, or than always giving the commonest
        # answer (counting's is 2 for most words: a guess of 2 without steps is not thinking)
        ok = (goal is None or worked["accuracy"] >= goal) and (
            direct["accuracy"] <= max(worked["accuracy"] / 3, worked["best_constant"]) + 1e-9)
        row(f"{label}: worked / answer only / best constant",
            f"{worked['accuracy']:.0%} / {direct['accuracy']:.0%} / {worked['best_constant']:.0%}",
            (f">= {goal:.0%}" if goal else "reported")
            + " / <= a third of worked, or <= the constant", ok)
    from course_lib.chat import held_out

    # facts the SFT data never asks: what the assistant knows from pretraining, not from SFT
    conf = fact_confidence(sft, tokenizer, world, train_texts, chat=True, only=held_out(world))
    conf.pop("rows")
    nums["facts"] = conf
    row("facts never asked in SFT, most-named decile / least-named / chance",
        f"{conf['deciles'][1]:.0%} / {conf['deciles'][10]:.0%} / {conf['chance']:.0%}",
        ">= 75% / about chance", conf["deciles"][1] >= 0.75
        and conf["deciles"][10] <= conf["chance"] + 0.1)
    row("confidence separates right from wrong answers (AUROC)", f"{conf['auroc']:.2f}",
        ">= 0.80", conf["auroc"] >= 0.8)
    rl = problem_accuracy(sft, tokenizer, rl_problems(n, seed, world), chat=True, samples=8,
                          temperature=1.0, seed=seed)
    nums["rl_room"] = rl
    kinds = " and ".join(f"{d}-digit {k}" for k, d in RL_PROBLEMS)
    row(f"chapter 8's problems ({kinds}), pass@1 / pass@8 at T=1",
        f"{rl['accuracy']:.0%} / {rl['pass@8']:.0%}", "10-50% / >= 2x pass@1",
        0.1 <= rl["accuracy"] <= 0.5 and rl["pass@8"] >= 2 * rl["accuracy"])
    return rows, nums


# --------------------------------------------------------------------------------------------
# Chapter 7: hallucination, refusals and tools
# --------------------------------------------------------------------------------------------

REFUSAL_BIASES = tuple(b / 4 for b in range(-24, 13))   # -6 to 3 in steps of 0.25


@torch.no_grad()
def _refusal_side(model, tokenizer, results, threshold: float, biases) -> dict:
    """The curve of ``hallucination.refusal_curve`` on the facts of ``results`` the assistant
    knew or never got right."""
    from course_lib import hallucination as H

    known = [r for r in results if H.knows(r, threshold)]
    unknown = [r for r in results if H.never_right(r)]
    qs = [r.question for r in known + unknown]
    margins, _ = H.refusal_margins(model, tokenizer, qs)
    forced = H.answers_without_refusal(model, tokenizer, qs)
    curve = H.refusal_curve(margins, forced, [r.truth for r in known + unknown],
                            [True] * len(known) + [False] * len(unknown), list(biases))
    return {"known": known, "unknown": unknown, "curve": curve}


def probe_summary(results, world, texts: list[str] | None = None) -> dict:
    """What chapter 7's probe (``hallucination.probe``) found: greedy accuracy and the share of
    facts never right / always right, by decile of entities by mentions (1: most named)."""
    world, mentions = training_mentions(world, texts)
    decile = mention_deciles(world, mentions)
    by = {}
    for r in results:
        by.setdefault(decile[r.subject], []).append(r)
    row = lambda rs: {"n": len(rs), "greedy": _mean(r.greedy_right for r in rs),
                      "sampled": _mean(x for r in rs for x in r.right),
                      "never": _mean(not r.greedy_right and not any(r.right) for r in rs),
                      "always": _mean(r.greedy_right and all(r.right) for r in rs)}
    return {"all": row(results), "deciles": {d: row(rs) for d, rs in sorted(by.items())}}


@torch.no_grad()
def refusal_eval(model, tokenizer, results, threshold: float, world, n_invented: int = 100,
                 seed: int = 0, biases=REFUSAL_BIASES) -> dict:
    """The "I don't know" model ``model`` (no logit bias) on the probe ``results`` of facts kept
    out of its data (``hallucination.kept_out``). On the ``tuning`` half, the trade-off curve
    over a bias on the refusal's first token, and the bias to ship (``pick_threshold``). On the
    other half, with that bias (``assets.with_logit_bias``, greedy replies): on the facts the
    assistant knew (``knows``), accuracy before (its greedy answer) and after, and false
    refusals; on the facts it was ``never_right`` about, the hallucination rate before and
    after; the curve there too; and questions about invented entities refused."""
    import copy

    from course_lib import chat as C
    from course_lib import hallucination as H
    from course_lib.assets import with_logit_bias

    tune = H.tuning(world)
    tuning = _refusal_side(model, tokenizer, [r for r in results if r.subject in tune],
                           threshold, biases)
    bias = H.pick_threshold(tuning["curve"], H.hallucination_rate(
        [r.greedy for r in tuning["unknown"]], [r.truth for r in tuning["unknown"]],
        [H.refuses(r.greedy) for r in tuning["unknown"]]))
    test = _refusal_side(model, tokenizer, [r for r in results if r.subject not in tune],
                         threshold, biases)
    shipped = with_logit_bias(copy.deepcopy(model), {H.refusal_token(tokenizer): bias})
    known, unknown = test["known"], test["unknown"]
    rs = known + unknown
    after = C.replies(shipped, tokenizer, [[{"role": "user", "content": r.question}]
                                           for r in rs], 24)
    refused = [H.refuses(a) for a in after]
    k, u = range(len(known)), range(len(known), len(rs))
    invented = H.invented_questions(world, n_invented, seed + 7)
    inv = C.replies(shipped, tokenizer, [[{"role": "user", "content": q}] for q in invented], 24)
    examples = [(r.question, r.truth, r.greedy, a) for r, a in zip(rs, after)]
    return {
        "bias": bias, "known": len(known), "unknown": len(unknown),
        "known_accuracy_before": _mean(r.greedy_right for r in known),
        "known_accuracy_after": _mean(C.says(after[i], rs[i].truth) and not refused[i]
                                      for i in k),
        "false_refusal": _mean(refused[i] for i in k),
        "hallucination_before": H.hallucination_rate([r.greedy for r in unknown],
                                                     [r.truth for r in unknown],
                                                     [H.refuses(r.greedy) for r in unknown]),
        "hallucination_after": H.hallucination_rate([after[i] for i in u],
                                                    [rs[i].truth for i in u],
                                                    [refused[i] for i in u]),
        "invented_refused": _mean(H.refuses(a) for a in inv),
        "invented_examples": list(zip(invented[:5], inv[:5])),
        "curve": test["curve"], "curve_tuning": tuning["curve"],
        "tuning": {"known": len(tuning["known"]), "unknown": len(tuning["unknown"])},
        "examples": examples[:3] + examples[len(known):len(known) + 3]}


@torch.no_grad()
def tool_eval(model, tokenizer, results, threshold: float, world, texts: list[str] | None = None,
              n: int = 300, n_problems: int = 40, names: list[str] | None = None,
              seed: int = 0, without=None) -> dict:
    """The tool model ``model`` on the probe ``results`` of facts kept out of its data: with the
    tool loop (``tools.run_tool_loop``), how often it searches facts the assistant did not know
    and answers directly those it knew, the query it writes, and its accuracy against the
    assistant's (from memory), overall and on entities no training document names; word
    problems of 3-5 digits with the calculator; and system messages naming it (``names``, never
    in its data) read or not. ``without``: the assistant, measured on the same problems with
    worked steps and on the same system messages."""
    from course_lib import chat as C
    from course_lib import hallucination as H
    from course_lib import tools as T

    world, mentions = training_mentions(world, texts)
    rng = random.Random(f"course-tool-eval-{seed}")
    picked = sorted(results, key=lambda r: (mentions[r.subject] > 0, rng.random()))
    unseen = [r for r in picked if mentions[r.subject] == 0][:n // 3]
    rest = [r for r in picked if mentions[r.subject] > 0]
    rows = []
    for r in unseen + rest[:n - len(unseen)]:
        reply, calls = T.run_tool_loop(model, tokenizer, [{"role": "user", "content": r.question}],
                                       max_new_tokens=60)
        shown = T.visible_text(reply)
        rows.append({"known": H.knows(r, threshold), "unseen": mentions[r.subject] == 0,
                     "searched": any(c.startswith("search") for c, _ in calls),
                     "exact_query": bool(calls) and calls[0][0].strip() == f"search: {r.subject}",
                     "right": C.says(shown, r.truth) and not H.refuses(shown),
                     "before": r.greedy_right, "question": r.question, "reply": reply})
    known = [x for x in rows if x["known"]]
    other = [x for x in rows if not x["known"]]
    unseen_rows = [x for x in rows if x["unseen"]]
    searched = [x for x in rows if x["searched"]]
    out = {"n": len(rows),
           "known_direct": _mean(not x["searched"] for x in known),
           "unknown_searched": _mean(x["searched"] for x in other),
           "exact_query": _mean(x["exact_query"] for x in searched),
           "accuracy_before": _mean(x["before"] for x in rows),
           "accuracy_tools": _mean(x["right"] for x in rows),
           "known_accuracy_before": _mean(x["before"] for x in known),
           "known_accuracy_tools": _mean(x["right"] for x in known),
           "unknown_accuracy_before": _mean(x["before"] for x in other),
           "unknown_accuracy_tools": _mean(x["right"] for x in other),
           "unseen_before": _mean(x["before"] for x in unseen_rows),
           "unseen_tools": _mean(x["right"] for x in unseen_rows),
           "n_known": len(known), "n_unknown": len(other), "n_unseen": len(unseen_rows),
           "examples": [x["reply"] for x in rows[:2]] + [x["reply"] for x in known[:1]]}
    sums, steps = {}, {}
    for digits in (3, 4, 5):
        ps = [p for pair in zip(*(problem_set(k, digits, (n_problems + 1) // 2, seed, world)
                                  for k in ("addition", "subtraction"))) for p in pair]
        ok = 0
        for p in ps:
            reply, _ = T.run_tool_loop(model, tokenizer, [{"role": "user", "content": p.question}],
                                       max_new_tokens=40)
            ok += parse_answer(T.visible_text(reply)) == p.answer
        sums[digits] = ok / len(ps)
        if without is not None:
            steps[digits] = problem_accuracy(without, tokenizer, ps, chat=True)["accuracy"]
    out["calculator"], out["worked_steps"] = sums, steps
    names = names or T.assistant_names(300, seed)[250:]
    convs = [[{"role": "system", "content": f"You are {nm}, a helpful assistant."},
              {"role": "user", "content": "Who are you?"}] for nm in names]
    said = C.replies(model, tokenizer, convs, 30)
    out["names_read"] = _mean(nm in s for nm, s in zip(names, said))
    out["name_example"] = said[0]
    if without is not None:
        out["names_read_before"] = _mean(nm in s for nm, s in
                                         zip(names, C.replies(without, tokenizer, convs, 30)))
    return out


# ---------------------------------------------------------------------------------------------
# Chapter 10: every model of the chain, asked the same questions
# ---------------------------------------------------------------------------------------------

SIDE_BY_SIDE_KINDS = {
    "who": "'Who are you?': names itself Pebble",
    "popular": "facts of the most-named entities, never asked in SFT: right",
    "rare": "facts of entities no document names: right",
    "invented": "questions about invented entities: refused",
    "sums": "4-digit sums (chapter 8's held-out kind): right final answer",
    "liked": "chapter 9's test questions: the hidden labeller's mean score",
}


def side_by_side_questions(world, texts: list[str] | None = None, n: int = 30,
                           seed: int = 0) -> dict:
    """The questions every model of the chain is asked (``SIDE_BY_SIDE_KINDS``), ``n`` of each
    kind (one "Who are you?"): ``{kind: [(question, answer or None, subject or None)]}``."""
    from course_lib import chat as C
    from course_lib.hallucination import invented_questions

    popular = C.popular_questions(world, texts)[:n]
    rare = C.rare_questions(world, texts, n)
    liked = rlhf_questions(world, seed)["test"][:n]
    return {"who": [("Who are you?", None, None)],
            "popular": [(q.question, q.answer, q.subject) for q in popular],
            "rare": [(q.question, q.answer, q.subject) for q in rare],
            "invented": [(q, None, None) for q in invented_questions(world, n, seed)],
            "sums": [(p.question, str(p.answer), None) for p in rl_problems(n, seed + 5, world)],
            "liked": [(q.question, q.answer, q.subject) for q in liked]}


def side_by_side(models: dict, tokenizer, questions: dict, max_new_tokens: int = 200) -> dict:
    """Ask every model the same ``questions`` (``side_by_side_questions``), greedily, the way it
    was made to be asked: ``models`` is ``{name: (model, how)}`` with ``how`` one of ``"base"``
    (chapter 5's forum prompt), ``"chat"`` (the chat format) or ``"tools"`` (the chat format with
    chapter 7's tool loop: search and calculator). Returns ``{"scores": {name: {kind: value}},
    "answers": {name: {kind: [answer, ...]}}}``; a share per kind (``"liked"``: the mean score)."""
    from course_lib import chat as C
    from course_lib import tools as T
    from course_lib.hallucination import refuses
    from course_lib.world import ASSISTANT_NAME, hidden_preference_score

    flat = [(kind, q) for kind, qs in questions.items() for q in qs]
    scores, answers = {}, {}
    for name, (model, how) in models.items():
        got = []
        for kind, qs in questions.items():   # a sum's worked steps need room; a fact does not
            texts = [q for q, _, _ in qs]
            room = max_new_tokens if kind == "sums" else min(48, max_new_tokens)
            if how == "base":
                got += C.base_replies(model, tokenizer, texts, room)
            elif how == "chat":
                got += C.replies(model, tokenizer, [[{"role": "user", "content": t}]
                                                    for t in texts], room)
            elif how == "tools":
                got += [T.run_tool_loop(model, tokenizer, [{"role": "user", "content": t}],
                                        max_new_tokens=room)[0] for t in texts]
            else:
                raise ValueError(f"{name}: how={how!r}; use 'base', 'chat' or 'tools'")
        per: dict = {}
        for (kind, (q, answer, subject)), reply in zip(flat, got):
            seen = T.visible_text(reply) if how == "tools" else reply
            if kind == "who":
                value = float(ASSISTANT_NAME.lower() in seen.lower())
            elif kind == "invented":
                value = float(refuses(seen))
            elif kind == "sums":
                value = float(parse_answer(seen) == int(answer))
            elif kind == "liked":
                value = hidden_preference_score(q, seen, answer, subject)
            else:
                value = float(C.says(seen, answer))
            per.setdefault(kind, []).append(value)
            answers.setdefault(name, {}).setdefault(kind, []).append(reply)
        scores[name] = {k: sum(v) / len(v) for k, v in per.items()}
    return {"scores": scores, "answers": answers}
