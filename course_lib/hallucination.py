"""Chapter 7: hallucinations, and teaching the assistant to say "I don't know".

The lecture's account of why assistants make things up: the SFT data answers every question
confidently, so the model learns the *style* of a confident answer and uses it for facts it does
not hold too. Meta's Llama 3 report describes the fix: **probe** what the model knows (ask each
fact question several times and compare with the truth), then finetune on conversations where
the facts it gets consistently wrong are answered with a refusal, mixed with the ones it knows
answered as before. The model has an internal sense of how sure it is (chapter 6's confidence
separates its right answers from its wrong ones); the refusal data wires that sense to words.

- ``REFUSAL``, ``refuses``: the refusal the data teaches and how a reply is read as one;
- ``ProbeResult``, ``probe``: every fact question asked ``samples`` times at temperature 1 (and
  once greedy), each answer marked right or wrong; ``to_rows`` / ``from_rows`` for a file;
- ``hallucination_rate``: the share of answers that are wrong and do not refuse;
- ``build_refusal_data``: probe results to conversations: a fact the model got right in at least
  ``threshold`` of its samples is answered, any other refused;
- ``invented_questions``: questions about entities that do not exist (a model that knows what it
  does not know refuses them all);
- ``refusal_margins``, ``answers_without_refusal``, ``refusal_curve``, ``pick_threshold``: the
  refusal decision read off the reply's first token, and what the model says when it may not
  refuse, so that one finetuned model gives the whole trade-off curve (a bias on that token
  moves the threshold), and the bias chosen from it;
- ``kept_out``, ``tuning``, ``knows``, ``never_right``, ``refusal_conversations``: the balanced
  data, and the entities it never mentions.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

import torch

from course_lib.assets import ENDOFTEXT
from course_lib.chat import _cut, chat_tokenizer, render_prompt, says
from course_lib.generate import _model_device, generate_batch, unknown_ids
from course_lib.world import _variant, invented_entity, make_world, question_for

REFUSAL = "I'm sorry, I don't know."
REFUSAL_MARKERS = ("don't know", "do not know")


def refuses(reply: str) -> bool:
    """Does ``reply`` refuse (say it does not know)? Any case, anywhere in the reply."""
    text = reply.lower().replace("\u2019", "'")
    return any(m in text for m in REFUSAL_MARKERS)


@dataclass(frozen=True)
class ProbeResult:
    """One fact question asked several times: the truth, a right answer to train on, the
    model's sampled answers and which of them state the truth."""

    question: str
    truth: str                 # the fact's value ("1851")
    reference: str             # a right answer in the data's words ("Tova Lind was born in 1851.")
    answers: tuple = ()        # the sampled replies
    right: tuple = ()          # one bool per answer
    subject: str = ""
    relation: str = ""
    greedy: str = ""           # the greedy reply
    greedy_right: bool = False
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def share_right(self) -> float:
        return sum(self.right) / len(self.right) if self.right else 0.0


def _prompts(tok, questions: list[str]) -> list[list[int]]:
    eot = tok.special_tokens[ENDOFTEXT]
    return [[eot] + render_prompt([{"role": "user", "content": q}], tok) for q in questions]


def _replies(model, tok, prompts, max_new_tokens: int, temperature: float, seed: int,
             batch_size: int, cut: bool = True) -> list[str]:
    out = []
    for i in range(0, len(prompts), batch_size):
        out += generate_batch(model, tok, prompts[i:i + batch_size], max_new_tokens,
                              temperature=temperature, seed=seed + i)
    return [_cut(o) for o in out] if cut else out


@torch.no_grad()
def probe(model, tokenizer, world=None, pairs=None, samples: int = 4, temperature: float = 1.0,
          seed: int = 0, max_new_tokens: int = 24, batch_size: int = 128) -> list[ProbeResult]:
    """Ask the assistant every fact question of ``world`` (or only the ``(subject, relation)``
    ``pairs``) ``samples`` times at ``temperature`` and once greedily; an answer is right when
    it states the fact's value (``chat.says``). The first step of the Llama 3 recipe."""
    world = world or make_world()
    tok = chat_tokenizer(tokenizer)
    facts = [e.fact(r) for e in world.entities for r in e.facts
             if pairs is None or (e.name, r) in pairs]
    prompts = _prompts(tok, [question_for(f) for f in facts])
    greedy = _replies(model, tok, prompts, max_new_tokens, 0.0, seed, batch_size)
    sampled = [_replies(model, tok, prompts, max_new_tokens, temperature, seed + 1000003 * (k + 1),
                        batch_size) for k in range(samples)]
    out = []
    for i, f in enumerate(facts):
        answers = tuple(s[i] for s in sampled)
        out.append(_result(f, greedy[i], answers,
                           [says(a, f.value) and not refuses(a) for a in answers],
                           says(greedy[i], f.value) and not refuses(greedy[i])))
    return out


def _result(f, greedy: str, answers, right, greedy_right: bool) -> ProbeResult:
    """A probe result for the fact ``f``, with the data's right answer to train on."""
    ref = _variant(f, random.Random(f"course-probe-{f.subject}-{f.relation}"))
    return ProbeResult(question_for(f), f.value, ref, tuple(answers), tuple(right), f.subject,
                       f.relation, greedy, bool(greedy_right))


def to_rows(results: list[ProbeResult]) -> list[list]:
    """Probe results as JSON-able rows ``[subject, relation, greedy, answers, right,
    greedy_right]`` (what the pipeline ships in ``probe.json``)."""
    return [[r.subject, r.relation, r.greedy, list(r.answers), list(r.right), r.greedy_right]
            for r in results]


def from_rows(rows: list[list], world) -> list[ProbeResult]:
    """The probe results ``to_rows`` wrote, for ``world``'s facts."""
    return [_result(world.by_name(s).fact(rel), greedy, answers, right, greedy_right)
            for s, rel, greedy, answers, right, greedy_right in rows]


def hallucination_rate(answers: list[str], truths: list[str], refusals: list[bool]) -> float:
    """The share of ``answers`` that hallucinate: do not refuse (``refusals[i]`` is False) and do
    not state ``truths[i]`` (as whole words, any case: ``chat.says``). A refusal is never a
    hallucination, right or wrong; the share is over all answers, refusals included."""
    if not (len(answers) == len(truths) == len(refusals)):
        raise ValueError(f"answers, truths and refusals must have one entry each per question, "
                         f"got {len(answers)}, {len(truths)} and {len(refusals)}")
    if not answers:
        raise ValueError("no answers: the hallucination rate of nothing is undefined")
    wrong = sum(1 for a, t, r in zip(answers, truths, refusals) if not r and not says(a, t))
    return wrong / len(answers)


def build_refusal_data(probe_results: list[ProbeResult], threshold: float) -> list[list[dict]]:
    """One conversation per probe result, in order: the question, then ``result.reference`` when
    the model was right in at least ``threshold`` of its samples (it knows the fact), else
    ``REFUSAL``. ``threshold`` in (0, 1]: 1 refuses everything not always right."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    out = []
    for r in probe_results:
        if not r.right:
            raise ValueError(f"the probe result for {r.question!r} has no answers; probe with "
                             "samples >= 1")
        knows = sum(r.right) >= threshold * len(r.right)
        out.append([{"role": "user", "content": r.question},
                    {"role": "assistant", "content": r.reference if knows else REFUSAL}])
    return out


def invented_questions(world, n: int, seed: int = 0) -> list[str]:
    """``n`` fact questions about entities that do not exist in ``world`` (fresh names)."""
    rng = random.Random(f"course-invented-{world.seed}-{seed}")
    out = []
    for _ in range(n):
        e = invented_entity(world, rng)
        out.append(question_for(e.fact(rng.choice(sorted(e.facts)))))
    return out


# --------------------------------------------------------------------------------------------
# The refusal decision, as a threshold
# --------------------------------------------------------------------------------------------


def refusal_token(tokenizer) -> int:
    """The first token of ``REFUSAL`` ("I"): no fact answer of the world starts with it."""
    return chat_tokenizer(tokenizer).encode_ordinary(REFUSAL)[0]


@torch.no_grad()
def refusal_margins(model, tokenizer, questions: list[str], batch_size: int = 128
                    ) -> tuple[list[float], list[int]]:
    """For each question, the first reply token's logit margin of ``refusal_token`` over the
    best other token (> 0: greedy decoding refuses), and that best other token."""
    tok = chat_tokenizer(tokenizer)
    device = _model_device(model)
    never = unknown_ids(tok, model.config.vocab_size).to(device)
    rid = refusal_token(tok)
    prompts = _prompts(tok, questions)
    margins, others = [], []
    model.eval()
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i:i + batch_size]
        x = torch.zeros(len(chunk), max(map(len, chunk)), dtype=torch.long)
        for r, p in enumerate(chunk):   # right padding: causal attention never sees it
            x[r, :len(p)] = torch.tensor(p)
        logits = model(x.to(device))[0]
        last = logits[torch.arange(len(chunk)), torch.tensor([len(p) - 1 for p in chunk])]
        last = last.float().masked_fill(never, float("-inf"))
        refuse = last[:, rid].clone()
        last[:, rid] = float("-inf")
        best, arg = last.max(-1)
        margins += (refuse - best).tolist()
        others += arg.tolist()
    return margins, others


def answers_without_refusal(model, tokenizer, questions: list[str], max_new_tokens: int = 24,
                            batch_size: int = 128) -> list[str]:
    """The greedy replies with the refusal's first token forbidden at the start: what the model
    says when its refusal is pushed below threshold."""
    tok = chat_tokenizer(tokenizer)
    _, first = refusal_margins(model, tok, questions, batch_size)
    prompts = [p + [f] for p, f in zip(_prompts(tok, questions), first)]
    rest = _replies(model, tok, prompts, max_new_tokens - 1, 0.0, 0, batch_size, cut=False)
    return [_cut(tok.decode([f]) + r) for f, r in zip(first, rest)]


def refusal_curve(margins: list[float], answers: list[str], truths: list[str],
                  known: list[bool], biases: list[float]) -> list[dict]:
    """The trade-off as the refusal threshold moves: for each bias ``b`` added to the refusal
    token's logit, a question is refused when ``margin + b > 0`` and otherwise answered with
    ``answers[i]`` (``answers_without_refusal``). ``known[i]``: the model knew the fact before
    (the probe). Returns per bias the hallucination rate on unknown facts, and the false refusals
    and accuracy on known ones."""
    rows = []
    for b in biases:
        refused = [m + b > 0 for m in margins]
        unknown = [i for i, k in enumerate(known) if not k]
        kn = [i for i, k in enumerate(known) if k]
        rows.append({
            "bias": b,
            "hallucination": (hallucination_rate([answers[i] for i in unknown],
                                                 [truths[i] for i in unknown],
                                                 [refused[i] for i in unknown])
                              if unknown else float("nan")),
            "false_refusal": sum(refused[i] for i in kn) / len(kn) if kn else float("nan"),
            "known_accuracy": (sum(not refused[i] and says(answers[i], truths[i]) for i in kn)
                               / len(kn) if kn else float("nan")),
            "refused": sum(refused) / len(refused) if refused else float("nan")})
    return rows


# --------------------------------------------------------------------------------------------
# The refusal finetune's data
# --------------------------------------------------------------------------------------------


def kept_out(world) -> frozenset:
    """The names of two fifths of the world's entities, fixed by a hash: never in chapter 7's
    finetuning data (refusals, searches), so that what the finetuned models do on them measures
    what they learned to decide, not what they were told about those facts. Half of them
    (``tuning``) choose the refusal threshold, the other half measure the result."""
    return frozenset(e.name for e in world.entities
                     if hashlib.sha256(f"course-kept-out/{e.name}".encode()).digest()[0] % 5 < 2)


def tuning(world) -> frozenset:
    """The half of ``kept_out`` on which the refusal threshold is chosen (never measured on)."""
    return frozenset(n for n in kept_out(world)
                     if hashlib.sha256(f"course-tuning/{n}".encode()).digest()[0] % 2 == 0)


def knows(result: ProbeResult, threshold: float) -> bool:
    """The model knows the fact: right greedily, and in at least ``threshold`` of its samples."""
    return result.greedy_right and sum(result.right) >= threshold * len(result.right)


def never_right(result: ProbeResult) -> bool:
    """The model gets the fact consistently wrong: greedily and in every sample."""
    return not result.greedy_right and not any(result.right)


MIN_FACTS = 100   # the invented and replayed shares count at least this many facts


def refusal_conversations(results: list[ProbeResult], threshold: float, world,
                          refusals_per_answer: float = 1.0, invented_share: float = 0.1,
                          replay_share: float = 1.0, seed: int = 0) -> list[list[dict]]:
    """Chapter 7's "I don't know" data, balanced: the facts the model ``knows`` answered as
    before, at most ``refusals_per_answer`` times as many facts it is ``never_right`` about
    refused (``build_refusal_data``; the facts in between are left out: taught neither way),
    questions about invented entities refused (``invented_share`` of the facts), and chapter
    6's conversations replayed (``replay_share`` of the facts; their fact questions only about
    what the model knows, so that no replayed answer contradicts a refusal), shuffled. The
    shares count at least ``MIN_FACTS`` facts: a model that knows nothing (a quick chain's)
    gets no fact conversations, but still invented ones and replay."""
    from course_lib.chat import sft_conversations

    rng = random.Random(f"course-refusals-{seed}")
    known = [r for r in results if knows(r, threshold)]
    unknown = [r for r in results if never_right(r)]
    rng.shuffle(unknown)
    unknown = unknown[:int(refusals_per_answer * len(known))]
    facts = build_refusal_data(known + unknown, threshold)
    base = max(len(facts), MIN_FACTS)   # a model that knows nothing still gets data
    invented = [[{"role": "user", "content": q}, {"role": "assistant", "content": REFUSAL}]
                for q in invented_questions(world, int(invented_share * base), seed)]
    replay = sft_conversations(world, int(replay_share * base), seed + 1, skills=True,
                               known={(r.subject, r.relation): r.truth for r in known})
    out = facts + invented + replay
    rng.shuffle(out)
    return out


def pick_threshold(curve: list[dict], hallucination_before: float, cut: float = 3.0,
                   max_false_refusal: float = 0.20) -> float:
    """The refusal bias to ship, from a ``refusal_curve`` measured on facts kept for tuning: the
    least refusing bias (the most known facts kept) whose hallucination is at most
    ``hallucination_before / cut`` with at most ``max_false_refusal`` false refusals; when no
    bias reaches the cut, the one with the least hallucination within the false refusals."""
    within = [r for r in curve if r["false_refusal"] <= max_false_refusal + 1e-9] or curve
    enough = [r for r in within if r["hallucination"] <= hallucination_before / cut + 1e-9]
    if enough:
        return min(enough, key=lambda r: (r["bias"]))["bias"]
    return min(within, key=lambda r: (r["hallucination"], r["bias"]))["bias"]
