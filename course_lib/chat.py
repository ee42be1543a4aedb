"""Chapter 6: conversations as tokens, and supervised finetuning (SFT).

Post-training swaps the internet for conversations. A conversation is a list of messages
``{"role": "system" | "user" | "assistant", "content": str}``; it reaches the model as one token
sequence in which special tokens mark where each message starts and ends (the format the lecture
shows for GPT-4o)::

    <|im_start|>user<|im_sep|>What is 2 + 3?<|im_end|><|im_start|>assistant<|im_sep|>5<|im_end|>

The model is trained on these sequences with the same next-token loss as in pretraining, but only
the assistant's tokens (its content and its ``<|im_end|>``) count: the loss mask. At chat time the
conversation so far is rendered, ``<|im_start|>assistant<|im_sep|>`` is appended, and the model
writes until it produces ``<|im_end|>``: the end of its turn.

The chat tokens take ids 4081-4083 of the course model, which chapter 4 left free, so the base
model's weights are finetuned as they are (their rows of the embedding start untrained).

    python -m course_lib.chat                 # talk to the shipped assistant, streaming
    python -m course_lib.chat --model base    # the base model, prompted as a forum thread
    python -m course_lib.chat --model tools   # chapter 7's tool model, with search and calculator
    python -m course_lib.chat --list          # every stage's model (base, sft, ..., rlhf, dpo)
    python -m course_lib.pipeline --from assistant --ship   # remake the assistant
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from course_lib import assets
from course_lib.assets import (CHAT_TOKENS, ENDOFTEXT, IM_END, IM_SEP, IM_START, VAL_EVERY,
                               VOCAB_SIZE)
from course_lib.data import training_mentions
from course_lib.generate import (_cached_steps, _model_device, generate, generate_batch,
                                 unknown_ids)
from course_lib.train import write_shard
from course_lib.world import ASSISTANT_NAME, chat_conversations, fact_questions, make_world

ROLES = ("system", "user", "assistant")
SFT_MODEL_PATH = assets.path("sft_model.pt", must_exist=False)
SFT_LOG_PATH = assets.path("sft_model.json", must_exist=False)


# --------------------------------------------------------------------------------------------
# The format
# --------------------------------------------------------------------------------------------


def chat_tokenizer(tokenizer=None):
    """The course tokenizer (or ``tokenizer``) with the chat tokens registered besides
    ``<|endoftext|>``. Returns a new object when tokens had to be added."""
    if tokenizer is None:
        return assets.course_tokenizer(chat=True)
    return assets.with_special_tokens(tokenizer, CHAT_TOKENS)


def check_conversation(conversation, ends_with: str | None = "assistant") -> None:
    """Raise ``ValueError`` naming the first problem of ``conversation``: not a list of
    ``{"role", "content"}`` dicts, a role other than system/user/assistant, empty content, content
    holding a chat token, a system message after the first, turns that do not alternate (user,
    assistant, user, ...), or a last message other than ``ends_with`` (``None``: any)."""
    if not isinstance(conversation, (list, tuple)) or not conversation:
        raise ValueError("a conversation is a non-empty list of messages "
                         "{'role': ..., 'content': ...}, got "
                         f"{type(conversation).__name__} {conversation!r:.60}")
    for i, m in enumerate(conversation):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            raise ValueError(f"message {i} must be a dict with exactly the keys 'role' and "
                             f"'content', got {m!r:.80}")
        if m["role"] not in ROLES:
            raise ValueError(f"message {i} has role {m['role']!r}; roles are {', '.join(ROLES)}")
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise ValueError(f"message {i} ({m['role']}) has empty content: every message says "
                             "something")
        for t in (*CHAT_TOKENS, ENDOFTEXT):
            if t in m["content"]:
                raise ValueError(f"message {i} ({m['role']}) contains the special token {t!r} "
                                 "as text; a message cannot end or open a turn itself")
        if m["role"] == "system" and i > 0:
            raise ValueError(f"message {i} is a system message; only the first may be one")
    turns = [m["role"] for m in conversation if m["role"] != "system"]
    if not turns:
        raise ValueError("the conversation holds only a system message; add a user message")
    if turns[0] != "user":
        raise ValueError("the first message after the system message must be the user's, got "
                         f"{turns[0]!r}")
    offset = len(conversation) - len(turns)
    for j in range(1, len(turns)):
        if turns[j] == turns[j - 1]:
            raise ValueError(f"two {turns[j]} turns in a row (messages {offset + j - 1} and "
                             f"{offset + j}); user and assistant take turns")
    if ends_with is not None and turns[-1] != ends_with:
        raise ValueError(f"the conversation must end with an {ends_with} message, got "
                         f"{turns[-1]!r}" + (" (a conversation to train on ends with the "
                                             "answer to learn)" if ends_with == "assistant"
                                             else ""))


def _header(role: str, tokenizer) -> list[int]:
    return [CHAT_TOKENS[IM_START], *tokenizer.encode_ordinary(role), CHAT_TOKENS[IM_SEP]]


def render_conversation(conversation, tokenizer) -> tuple[list[int], list[int]]:
    """``conversation`` (ending with the assistant) as token ids and a loss mask of the same
    length: 1 on the tokens the assistant writes (its content and its ``<|im_end|>``), 0 on
    everything else (roles, separators, the system's and the user's words)."""
    check_conversation(conversation)
    ids, mask = [], []
    for m in conversation:
        head = _header(m["role"], tokenizer)
        body = tokenizer.encode_ordinary(m["content"]) + [CHAT_TOKENS[IM_END]]
        ids += head + body
        mask += [0] * len(head) + [int(m["role"] == "assistant")] * len(body)
    return ids, mask


def render_prompt(conversation, tokenizer) -> list[int]:
    """The conversation so far (ending with the user) and the assistant's header: what the
    model continues when it is the assistant's turn."""
    check_conversation(conversation, ends_with="user")
    ids = []
    for m in conversation:
        ids += _header(m["role"], tokenizer) + tokenizer.encode_ordinary(m["content"])
        ids.append(CHAT_TOKENS[IM_END])
    return ids + _header("assistant", tokenizer)


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
                         ) -> torch.Tensor:
    """Mean next-token loss over the positions where ``mask`` is 1. ``logits`` ``(..., V)``,
    ``targets`` and ``mask`` ``(...)``: each target is the token after its position, and its mask
    entry says whether that token is the assistant's."""
    if targets.shape != mask.shape or logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} must be targets' shape + (V,), and mask "
                         f"{tuple(mask.shape)} targets' shape {tuple(targets.shape)}")
    keep = mask.reshape(-1).bool()
    if not keep.any():
        raise ValueError("the mask is all 0: no assistant token to learn from")
    lp = torch.log_softmax(logits.reshape(-1, logits.size(-1)).float(), dim=-1)
    nll = -lp.gather(1, targets.reshape(-1, 1)).squeeze(1)
    return nll[keep].mean()


def draw_mask(conversation, tokenizer, width: int = 100) -> str:
    """The rendered conversation as text, assistant-trained tokens in [brackets]: what the mask
    covers, readable in a terminal or a page."""
    ids, mask = render_conversation(conversation, tokenizer)
    pieces, line = [], ""
    for i, m in zip(ids, mask):
        text = tokenizer.decode([i]).replace("\n", "\\n")
        line += f"[{text}]" if m else text
        if len(line) >= width:
            pieces.append(line)
            line = ""
    return "\n".join(pieces + ([line] if line else []))


# --------------------------------------------------------------------------------------------
# The data
# --------------------------------------------------------------------------------------------


def held_out(world) -> frozenset:
    """Half of the world's facts, as ``(subject, relation)`` pairs, never asked in the SFT data:
    questions about them measure what finetuning unlocked from pretraining, not what it taught.
    Fixed by a hash, so the split does not move when the data grows."""
    out = set()
    for e in world.entities:
        for r in e.facts:
            if hashlib.sha256(f"{e.name}/{r}".encode()).digest()[0] % 2:
                out.add((e.name, r))
    return frozenset(out)


def sft_conversations(world=None, n: int = 6000, seed: int = 0, skills: bool = False,
                      max_rank: int | None = None, known: set | frozenset | None = None) -> list:
    """The finetuning set: ``world.chat_conversations`` (fact questions outside ``held_out``,
    arithmetic with worked steps, chit-chat, system prompts) with identity conversations; with
    ``skills`` also reading conversations and answer-only problems (the v2 recipe); with
    ``max_rank`` fact questions only about entities that popular; with ``known`` (a probe of the
    base model, ``evals.known_facts``) only about the facts it already answers right. Both keep
    finetuning from teaching answers the base model cannot know, which teaches it to make
    answers up."""

    world = world or make_world()
    return chat_conversations(world, n, seed, max_rank=max_rank, exclude=held_out(world),
                              skills=skills, known=known)


def prepare_sft_data(tokenizer, out_dir: str | Path, conversations: list,
                     val_every: int = VAL_EVERY, vocab_size: int = VOCAB_SIZE,
                     render=None) -> dict:
    """Write ``train.bin`` and ``val.bin`` (every ``val_every``-th conversation) for
    ``course_lib.train``: each conversation rendered after an ``<|endoftext|>``, with
    ``.mask`` (the loss mask) and ``.starts`` (where each conversation begins) beside it.
    ``render``: how a conversation becomes ids and mask (default ``render_conversation``;
    chapter 7 passes ``tools.render_tool_conversation``, which masks tool results out)."""

    out_dir = Path(out_dir)
    tok = chat_tokenizer(tokenizer)
    render = render or render_conversation
    eot = tok.special_tokens[ENDOFTEXT]
    meta = {}
    for split in ("train", "val"):
        ids, mask, starts = [], [], []
        for i, c in enumerate(conversations):
            if (i % val_every == 0) != (split == "val"):
                continue
            cids, cmask = render(c, tok)
            starts.append(len(ids))
            ids += [eot] + cids
            mask += [0] + cmask
        path = write_shard(ids, out_dir / f"{split}.bin", vocab_size)
        np.asarray(mask, dtype=np.uint8).tofile(f"{path}.mask")
        np.asarray(starts, dtype=np.int64).tofile(f"{path}.starts")
        meta[f"{split}_tokens"] = len(ids)
        meta[f"{split}_trained_tokens"] = int(sum(mask))
        meta[f"{split}_conversations"] = len(starts)
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


# --------------------------------------------------------------------------------------------
# Talking to a model
# --------------------------------------------------------------------------------------------


def sft_model(path: str | Path | None = None, device: str = "cpu"):
    """The shipped assistant (``assets.load_model("sft")``), or the model in ``path``."""
    return assets.load_model(path or "sft", device)


def _cut(text: str) -> str:
    """The reply up to the first special token: ``<|im_end|>`` ends the turn, and any other one
    (a model opening a new turn itself) would make the conversation unrenderable."""
    for t in (*CHAT_TOKENS, ENDOFTEXT):
        text = text.split(t)[0]
    return text.strip()


def reply(model, tokenizer, conversation, max_new_tokens: int = 200, temperature: float = 0.0,
          top_k: int | None = None, top_p: float | None = None, seed: int = 0,
          on_text=None) -> str:
    """The assistant's next message: the conversation (ending with the user) rendered, then
    sampled with chapter 5's ``generate`` (KV cache) until ``<|im_end|>``. ``on_text``: called
    with each piece of the reply as its tokens come (a terminal streams them); the reply is the
    same either way."""

    tok = chat_tokenizer(tokenizer)
    device = _model_device(model)
    ids = torch.tensor([[tok.special_tokens[ENDOFTEXT]] + render_prompt(conversation, tok)],
                       device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    if on_text is not None:
        return _streamed(model, tok, ids, max_new_tokens, temperature, top_k, top_p, g, on_text)
    out = generate(model, ids, max_new_tokens, temperature, top_k, top_p, generator=g,
                   stop_token=CHAT_TOKENS[IM_END],
                   forbid=unknown_ids(tok, model.config.vocab_size).to(device))
    return _cut(tok.decode(out[0, ids.size(1):].tolist()))


def _streamed(model, tok, ids, max_new_tokens, temperature, top_k, top_p, g, on_text) -> str:
    """``reply``'s tokens one by one (chapter 5's cached steps), each new piece of text handed to
    ``on_text``, until a special token: the reply, cut as ``_cut`` cuts."""
    stops = {tok.special_tokens[t] for t in (*CHAT_TOKENS, ENDOFTEXT)}
    forbid = unknown_ids(tok, model.config.vocab_size).to(ids.device)
    got, shown, started = [], "", False
    for new in _cached_steps(model, ids, max_new_tokens, temperature, top_k, top_p, g,
                             forbid=forbid):
        if int(new[0]) in stops:
            break
        got.append(int(new[0]))
        text = tok.decode(got)
        if text.endswith("\ufffd"):   # half a character: wait for the rest
            continue
        piece, shown = text[len(shown):], text
        if not started:        # the reply is shown stripped, as it is returned
            piece = piece.lstrip()
            started = bool(piece)
        if piece:
            on_text(piece)
    return _cut(tok.decode(got))


def replies(model, tokenizer, conversations: list, max_new_tokens: int = 40) -> list[str]:
    """Greedy replies to many conversations at once (``generate_batch``, padded)."""

    tok = chat_tokenizer(tokenizer)
    eot = tok.special_tokens[ENDOFTEXT]
    prompts, max_new_tokens = _fit(model, [[eot] + render_prompt(c, tok) for c in conversations],
                                   max_new_tokens)
    out = []
    for i in range(0, len(prompts), 64):
        out += generate_batch(model, tok, prompts[i:i + 64], max_new_tokens, temperature=0)
    return [_cut(o) for o in out]


def _fit(model, prompts: list, wanted: int) -> tuple[list, int]:
    """Prompts and a number of new tokens that fit the model's window: at most ``wanted`` new
    tokens, and no fewer than what the longest prompt leaves (or half the window, if more); a
    prompt longer than the rest keeps its last tokens."""
    window = model.config.block_size
    room = window - max((len(p) for p in prompts), default=0)
    new = min(wanted, max(room, window // 2))
    keep = window - new
    return [p[-keep:] for p in prompts], new


def forum_prompt(question: str) -> str:
    """Chapter 5's trick: the opening of a forum thread in which the next words are an answer.
    What a base model needs to act as an assistant."""
    return (f"{question}\nkelmo12 asked: {question} I could not find it anywhere.\n"
            f"drastu45 replied:")


def base_replies(model, tokenizer, questions: list[str], max_new_tokens: int = 40) -> list[str]:
    """The base model's answers through ``forum_prompt``, cut at the end of the reply's line."""

    prompts, max_new_tokens = _fit(model, [tokenizer.encode_ordinary(forum_prompt(q))
                                           for q in questions], max_new_tokens)
    out = []
    for i in range(0, len(prompts), 64):
        out += generate_batch(model, tokenizer, prompts[i:i + 64], max_new_tokens, temperature=0)
    return [o.split("\n")[0].split(ENDOFTEXT)[0].strip() for o in out]


def says(answer: str, value: str) -> bool:
    """Does ``answer`` state ``value`` (as whole words, any case)?"""
    import re

    return re.search(rf"(?<!\w){re.escape(value.lower())}(?!\w)", answer.lower()) is not None


def question_accuracy(model, tokenizer, questions: list, base: bool = False,
                      max_new_tokens: int = 40) -> dict:
    """Share of ``FactQuestion``s answered with their value: the assistant in the chat format
    (``base=False``) or a base model through ``forum_prompt`` (``base=True``). Returns
    ``{"accuracy", "n", "rows": [(question, answer, value, right)]}``."""
    texts = [q.question for q in questions]
    if base:
        answers = base_replies(model, tokenizer, texts, max_new_tokens)
    else:
        answers = replies(model, tokenizer, [[{"role": "user", "content": t}] for t in texts],
                          max_new_tokens)
    rows = [(q.question, a, q.answer, says(a, q.answer)) for q, a in zip(questions, answers)]
    return {"accuracy": sum(r[3] for r in rows) / max(1, len(rows)), "n": len(rows), "rows": rows}


def popular_questions(world=None, texts: list[str] | None = None, top: int = 100,
                      held: bool = True) -> list:
    """Fact questions about the ``top`` most-mentioned entities (``held``: only those held out of
    the SFT data; ``False``: only those in it)."""

    world, mentions = training_mentions(world, texts)
    popular = {e.name for e in sorted(world.entities,
                                      key=lambda e: (-mentions[e.name], e.rank))[:top]}
    hold = held_out(world)
    return [q for q in fact_questions(world) if q.subject in popular
            and ((q.subject, q.relation) in hold) == held]


def rare_questions(world=None, texts: list[str] | None = None, n: int = 100) -> list:
    """Fact questions about entities no training document names (held out of SFT too): what
    neither stage could teach."""

    world, mentions = training_mentions(world, texts)
    hold = held_out(world)
    qs = [q for q in fact_questions(world) if mentions[q.subject] == 0
          and (q.subject, q.relation) in hold]
    return qs[:n]


def chat_loop(model=None, tokenizer=None, system: str | None = None, temperature: float = 0.7,
              seed: int = 0, read=input, write=print, respond=None, stream: bool = False,
              name: str | None = None) -> list:
    """Talk to the assistant in a terminal: ``/reset`` forgets, ``/quit`` (or end of input)
    ends. Returns the conversation.

    ``respond(model, tokenizer, conversation, temperature=, seed=, on_text=)`` writes the reply
    (default ``reply``; chapter 7's tool loop is another); ``stream``: each piece is written as
    it comes, ``write(piece, end="", flush=True)``, instead of the whole reply at the end."""
    model = model or sft_model()
    tok = chat_tokenizer(tokenizer)
    respond = respond or reply
    prompt = f"{(name or ASSISTANT_NAME).lower()}> "
    start = [{"role": "system", "content": system}] if system else []
    convo = list(start)
    turn = 0
    while True:
        try:
            text = read("you> ").strip()
        except EOFError:
            break
        if text in ("/quit", "/exit"):
            break
        if text == "/reset":
            convo = list(start)
            continue
        if not text:
            continue
        convo.append({"role": "user", "content": text})
        if stream:
            write(prompt, end="", flush=True)
        try:
            answer = respond(model, tok, convo, temperature=temperature, seed=seed + turn,
                             on_text=(lambda piece: write(piece, end="", flush=True))
                             if stream else None)
        except ValueError as e:  # a message the format cannot hold
            write(f"(not sent: {e})")
            convo.pop()
            continue
        convo.append({"role": "assistant", "content": answer or "..."})
        write("" if stream else f"{prompt}{answer}")
        turn += 1
    return convo


def _main(argv=None):
    # The terminal app sits above the chapter modules (it also runs chapter 7's tool loop), so it
    # lives in course_lib.talk; `python -m course_lib.chat` is kept as its name. Handing over by
    # module name keeps chat free of an import of a later chapter's module.
    import runpy
    import sys

    sys.argv = [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    runpy.run_module("course_lib.talk", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _main()
