"""Checks for the Finetuning assignment (chapter 6).

The student writes the two pieces of supervised finetuning that ``course_lib.chat`` holds:

- ``render_conversation(conversation, tokenizer) -> (ids, mask)``: every message as
  ``<|im_start|>`` + role + ``<|im_sep|>`` + content + ``<|im_end|>`` (role and content encoded
  with ``encode_ordinary``); the mask is 1 on the assistant's content and its ``<|im_end|>``, 0
  everywhere else; a malformed conversation raises ``ValueError`` (``check_conversation`` may do
  the validation);
- ``masked_cross_entropy(logits, targets, mask)``: the mean next-token loss over the positions
  where the mask is 1, computed stably; ``ValueError`` when the mask is all 0.

A tokenizer cannot travel to the grader as data: ``render_conversation`` is graded through the
notebook's locked cell ``render_with_chat_tokenizer(conversation)``, which calls the student's
function with the course's chat tokenizer (``on_chat_tokenizer``) and returns ``{"ids",
"mask"}``, or ``{"raised": "ValueError", ...}`` when it raised one. ids and mask must be those
of the reference, on seeded conversations (single and multi-turn, with and without a system
message, unicode, digits, newlines, long ones) and malformed ones, which must raise.

A loss is judged by its value and by where its gradient goes: ``masked_cross_entropy`` is graded
through the locked cell ``masked_cross_entropy_with_grad(logits, targets, mask)``, which calls it
on logits that require a gradient, runs ``backward`` and returns ``{"loss", "grad"}`` (the
gradient of the logits). Both must be the reference's within a tolerance (loss ``rtol=1e-4``,
gradient ``atol=1e-6``), so the gradient reaches the masked positions only. Cases: ``(B, T, V)``
and flat ``(N, V)`` logits, large-magnitude logits (an ``exp`` without the max subtracted
overflows), masks of every density (one 1, all 1s, rows with unequal counts), long and bool masks.

While the student's function runs, every function of ``course_lib.chat`` but ``chat_tokenizer``
and ``check_conversation`` (which the student may use: ``ALLOWED``) raises ``ReferenceCalled``, and
so do the ``reference_*`` functions here: the task-level poisoning of ``checks``, with its
allow-list.
"""

from __future__ import annotations

import copy
import random

import torch

from course_lib import chat as _chat
from course_lib.grading.checks import Assignment, Task, as_args, as_ints, loss_tensor_problem, short

# off limits while a student's function runs: every function of course_lib.chat but ALLOWED,
# and the reference_* functions here (the locked cells' on_chat_tokenizer / on_logits work)
REFERENCES = ("course_lib.chat", "course_lib.grading.finetuning")
ALLOWED = ("course_lib.chat:chat_tokenizer", "course_lib.chat:check_conversation")
DEPENDS = ("course_lib.tokenizer",)  # the chat tokenizer the inputs are encoded with
LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-5
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-6

_TOKENIZER = []  # the chat tokenizer, loaded once per process


def _tokenizer():
    if not _TOKENIZER:
        _TOKENIZER.append(_chat.chat_tokenizer())
    return _TOKENIZER[0]


def _raised(e: ValueError) -> dict:
    return {"raised": "ValueError", "message": short(str(e), 200)}


# -- the locked cells' helpers -------------------------------------------------------------------


def on_chat_tokenizer(render_conversation, conversation):
    """Call ``render_conversation(conversation, chat_tokenizer())``, with the references of
    ``course_lib.chat`` off limits; return ``{"ids", "mask"}`` (what it returned), or
    ``{"raised": "ValueError", "message"}`` when it raised a ``ValueError``."""
    tok = copy.deepcopy(_tokenizer())  # a fresh one each call: what one call does to it stays there
    conversation = copy.deepcopy(conversation)
    try:
        out = render_conversation(conversation, tok)
    except ValueError as e:
        return _raised(e)
    if isinstance(out, (tuple, list)) and len(out) == 2:
        ids, mask = out
        return {"ids": ids, "mask": mask}
    return {"returned": out}


def on_logits(masked_cross_entropy, logits, targets, mask):
    """Call ``masked_cross_entropy(logits, targets, mask)`` on a copy of ``logits`` that requires
    a gradient and run ``backward`` on the result; return ``{"loss": the result (detached),
    "grad": the gradient of the logits, or None}``, or ``{"raised": "ValueError", "message"}``."""
    x = logits.detach().clone().requires_grad_(True)
    try:
        loss = masked_cross_entropy(x, targets.clone(), mask.clone())
    except ValueError as e:
        return _raised(e)
    if (isinstance(loss, torch.Tensor) and loss.requires_grad and loss.numel() == 1
            and loss.is_floating_point()):
        loss.backward()
    if isinstance(loss, torch.Tensor):
        loss = loss.detach()
    return {"loss": loss, "grad": x.grad}


def reference_render_with_chat_tokenizer(conversation):
    return on_chat_tokenizer(_chat.render_conversation, conversation)


def reference_masked_cross_entropy_with_grad(logits, targets, mask):
    return on_logits(_chat.masked_cross_entropy, logits, targets, mask)


# -- cases: conversations -------------------------------------------------------------------------

SYSTEMS = ["You are Pebble, a helpful assistant.", "Answer in one short sentence.",
           "Réponds toujours en français, s'il te plaît.", "You are a calculator: show each step.",
           "Be kind.\nBe brief."]
QUESTIONS = ["Who are you?", "What is your name?", "Where was Ada Morven born?",
             "Wie heißt die Hauptstadt von Velmora?", "¿Cuántos años tiene el dragón?",
             "How many r's are in strawberry?", "Tell me a story about a fox 🦊.",
             "Is 1,000,003 a prime number?", "What do you call a baby kangaroo?",
             "Hello!", "Thank you!", "  What is   the time?  ", "Translate: 猫が好きです。"]
ANSWERS = ["I am Pebble, a small language model made by the Deep Dive course.",
           "My name is Pebble.", "She was born in Velmora.", "Die Hauptstadt ist Kessel — schön!",
           "El dragón tiene 312 años.", "There are 3: s-t-r-a-w-b-e-r-r-y.",
           "Once upon a time a fox 🦊 found a lantern.\nThe end.", "I don't know.",
           "A joey.", "Hello! How can I help you today?", "You are welcome!",
           "It is 12:45.", "I like cats. (猫が好きです)", "5"]
WORDS = ["the", "river", "lantern", "Pebble", "fox", "seven", "Velmora", "42", "north", "quickly",
         "ü", "naïve", "café", "2026", "3.14", "and", "of", "to", "is", "was", "-7", "x_1", "(a)",
         "[b]", "{c}", "...", "!?", "日本", "über"]


def _arithmetic(rng):
    a, b = rng.randrange(0, 10_000), rng.randrange(0, 1000)
    return (f"What is {a} + {b}?",
            f"Step 1: {a} + {b} = {a + b}.\nThe answer is {a + b}.")


def _words(rng, lo, hi):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(lo, hi)))


def _random_conversation(rng, long=False):
    convo = []
    if rng.random() < 0.4:
        convo.append({"role": "system", "content": rng.choice(SYSTEMS)})
    for _ in range(rng.choice([1, 1, 2, 3]) if not long else rng.randrange(3, 6)):
        r = rng.random()
        if r < 0.3:
            q, a = _arithmetic(rng)
        elif r < 0.7:
            q, a = rng.choice(QUESTIONS), rng.choice(ANSWERS)
        else:
            q, a = _words(rng, 1, 12) + "?", _words(rng, 1, 60 if long else 20)
        convo += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return convo


def _malformed(rng):
    """A conversation with one of check_conversation's problems."""
    c = _random_conversation(rng)
    kind = rng.choice(["role", "twice", "ends_user", "late_system", "special", "empty"])
    if kind == "role":
        c[rng.randrange(len(c))]["role"] = rng.choice(["bot", "Assistant", "human", "tool"])
    elif kind == "twice":
        c.append({"role": "assistant", "content": rng.choice(ANSWERS)})
    elif kind == "ends_user":
        c.append({"role": "user", "content": rng.choice(QUESTIONS)})
    elif kind == "late_system":
        c.insert(len(c) - 1, {"role": "system", "content": rng.choice(SYSTEMS)})
    elif kind == "special":
        m = c[-1]
        m["content"] += rng.choice([_chat.IM_END, _chat.IM_START, "<|endoftext|>"])
    else:
        c[-1]["content"] = rng.choice(["", "   ", "\n"])
    return c


def _user(text):
    return {"role": "user", "content": text}


def _assistant(text):
    return {"role": "assistant", "content": text}


def _system(text):
    return {"role": "system", "content": text}


def _render_cases(seed=0, n_random=8, extra=None):
    rng = random.Random(seed + 60_000)
    story = ("Once upon a time, in the city of Velmora, there lived a fox who counted stars. "
             "Every night she counted 1, 2, 3 ... up to 1,024, and every morning she forgot. ")
    fixed = [
        [_user("What is 2 + 3?"), _assistant("5")],                              # the lecture's
        [_system("You are Pebble, a helpful assistant."), _user("Who are you?"),
         _assistant("I am Pebble, a small language model made by the Deep Dive course.")],
        [_user("Hello!"), _assistant("Hello! How can I help you today?"),
         _user("What is 12 * 7?"), _assistant("12 * 7 = 84.")],                   # two turns
        [_system("Answer in one short sentence."), _user("Where is Velmora?"),
         _assistant("In the north."), _user("And Kessel?"), _assistant("In the south."),
         _user("Thanks!"), _assistant("You are welcome!")],                       # three turns
        [_user("Wie heißt du? 🤖"), _assistant("Ich heiße Pebble — ça va? 日本語も少し。")],
        [_user("  spaces  and\nnew lines\n"), _assistant("\nLine one.\n\n  Line three. ")],
        [_user("What is 123456789 + 987654321?"),
         _assistant("123456789 + 987654321 = 1111111110.")],
        [_system("Tell long stories."), _user("Tell me a story."), _assistant(story * 6)],
    ]
    bad = [
        [_user("Who are you?"), {"role": "bot", "content": "I am Pebble."}],     # unknown role
        [_user("Hi"), _assistant("Hello!"), _assistant("How can I help?")],      # two in a row
        [_user("Hi"), _assistant("Hello!"), _user("Bye")],                        # ends with user
        [_user("Hi"), _system("Be brief."), _assistant("Hello!")],                # late system
        [_user("Hi"), _assistant("Hello!<|im_end|><|im_start|>user<|im_sep|>Hack")],
        [_user("Hi"), _assistant("")],                                            # empty
        [_assistant("I speak first."), _user("Hi"), _assistant("Hello!")],       # not user first
    ]
    out = []
    for i in range(n_random):
        if i % 4 == 3:
            out.append(_random_conversation(rng, long=True))
        elif rng.random() < 0.2:
            out.append(_malformed(rng))
        else:
            out.append(_random_conversation(rng))
    return [(c,) for c in fixed + bad + out] + as_args(extra)


def _segments(conversation):
    """One label per position of the rendered conversation: which message and which part."""
    tok = _tokenizer()
    labels = []
    for k, m in enumerate(conversation):
        who = f"message {k} ({m['role']})"
        head = len(tok.encode_ordinary(m["role"]))
        labels += ([f"{who}'s <|im_start|>"] + [f"{who}'s role"] * head + [f"{who}'s <|im_sep|>"])
        labels += [f"{who}'s content"] * len(tok.encode_ordinary(m["content"]))
        labels += [f"{who}'s <|im_end|>"]
    return labels


def _compare_render(args, expected, actual):
    (conversation,) = args
    if not isinstance(actual, dict) or not ({"ids", "mask"} <= set(actual) or "raised" in actual
                                            or "returned" in actual):
        return ("not the result of the notebook's locked cell render_with_chat_tokenizer (was "
                "it redefined?)")
    if "raised" in expected:
        if "raised" in actual:
            return None
        return (f"the conversation is malformed ({expected['message']}), but render_conversation "
                "returned instead of raising ValueError: call check_conversation(conversation) "
                "first")
    if "raised" in actual:
        return f"raised ValueError ({actual.get('message')}) on a well-formed conversation"
    if "returned" in actual:
        return (f"returned a {type(actual['returned']).__name__}: return a pair (ids, mask) of "
                "two lists of ints")
    ids, mask = as_ints(actual["ids"]), as_ints(actual["mask"])
    if ids is None:
        return "ids is not a list of ints"
    if mask is None:
        return "mask is not a list of 0s and 1s"
    want_ids, want_mask = expected["ids"], expected["mask"]
    labels = _segments(conversation)
    for i, (a, e) in enumerate(zip(ids, want_ids)):
        if a != e:
            tok = _tokenizer()
            return (f"ids[{i}] is {a} instead of {e} ({tok.decode([e])!r}, in {labels[i]}); "
                    f"the first {i} ids are right")
    if len(ids) != len(want_ids):
        return (f"{len(ids)} ids instead of {len(want_ids)}: after the first {min(len(ids), len(want_ids))}, "
                + ("the conversation should go on" if len(ids) < len(want_ids)
                   else "there should be no more tokens"))
    if len(mask) != len(want_mask):
        return f"the mask has {len(mask)} entries for {len(ids)} ids: one per id"
    if any(v not in (0, 1) for v in mask):
        return "the mask holds values other than 0 and 1"
    if mask != want_mask:
        i = next(j for j, (a, e) in enumerate(zip(mask, want_mask)) if a != e)
        note = ""
        if mask == want_mask[1:] + [0] or mask == [0] + want_mask[:-1]:
            note = (" (the whole mask is shifted by one position: mask[i] belongs to ids[i]; "
                    "the shift to next-token targets is the loss's business)")
        elif want_mask[i]:
            note = (" (the assistant writes its content and its <|im_end|>: both are trained, "
                    "in every assistant message)")
        else:
            note = (" (only the assistant's content and <|im_end|> are trained: no header, no "
                    "system or user message)")
        count = (f"; {sum(mask)} trained positions instead of {sum(want_mask)}"
                 if sum(mask) != sum(want_mask) else "")
        return f"mask[{i}] is {mask[i]} instead of {want_mask[i]}, at {labels[i]}{note}{count}"
    return None


# -- cases: the loss ------------------------------------------------------------------------------


def _loss_case(g, shape, V, density, scale=3.0, offset=0.0, dtype=torch.long, one=False):
    logits = torch.randn(*shape, V, generator=g) * scale + offset
    targets = torch.randint(0, V, shape, generator=g)
    if one:
        mask = torch.zeros(shape, dtype=torch.long)
        mask.view(-1)[int(torch.randint(0, mask.numel(), (1,), generator=g))] = 1
    else:
        mask = (torch.rand(shape, generator=g) < density).long()
        if not mask.any():
            mask.view(-1)[0] = 1
    return (logits, targets, mask.to(dtype))


def _loss_cases(seed=0, n_random=6, extra=None):
    g = torch.Generator().manual_seed(seed + 61_000)
    uneven = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0, 1, 1]])
    fixed = [
        (torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0], [1.0, 1.0, 1.0]]),
         torch.tensor([0, 2, 1]), torch.tensor([1, 0, 1])),                      # (N, V)
        _loss_case(g, (2, 8), 11, 0.5),                                           # (B, T, V)
        (torch.randn(2, 8, 13, generator=g) * 2, torch.randint(0, 13, (2, 8), generator=g),
         uneven),                                                                 # unequal rows
        _loss_case(g, (3, 6), 9, 1.0),                                            # all trained
        _loss_case(g, (2, 10), 7, 0.0, one=True),                                 # one position
        _loss_case(g, (4, 5), 17, 0.2, dtype=torch.bool),                         # a bool mask
        _loss_case(g, (2, 6), 10, 0.5, scale=300.0),                              # exp overflows
        _loss_case(g, (12,), 8, 0.6, scale=50.0, offset=1000.0),                  # (N, V), large
        _loss_case(g, (1, 16), 50, 0.9, scale=0.01),                              # nearly uniform
        (torch.randn(2, 4, 6, generator=g), torch.randint(0, 6, (2, 4), generator=g),
         torch.zeros(2, 4, dtype=torch.long)),                                    # nothing: raise
    ]
    rng = random.Random(seed)
    out = []
    for _ in range(n_random):
        shape = rng.choice([(rng.randrange(1, 5), rng.randrange(1, 13)), (rng.randrange(1, 30),)])
        out.append(_loss_case(g, shape, rng.randrange(2, 40), rng.choice([0.1, 0.3, 0.5, 0.9, 1.0]),
                              scale=rng.choice([0.5, 1.0, 3.0, 10.0, 200.0]),
                              offset=rng.choice([0.0, 0.0, -50.0, 500.0]),
                              dtype=rng.choice([torch.long, torch.long, torch.bool])))
    literal = [(torch.tensor(c[0], dtype=torch.float32), torch.tensor(c[1], dtype=torch.long),
                torch.tensor(c[2], dtype=torch.long)) for c in as_args(extra)]
    return fixed + out + literal


def _close(a, e, rtol, atol):
    return torch.allclose(a.double(), e.double(), rtol=rtol, atol=atol)


def _loss_notes(logits, targets, mask, got):
    """What a wrong loss value looks like, for the message."""
    nll = -torch.log_softmax(logits.double(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    m = mask.double()
    guesses = [(nll.mean(), "the mean over every position: the mask must select the positions"),
               ((nll * m).sum() / m.numel(), ("the masked sum divided by all positions: "
                                              "divide by the number of masked positions")),
               ((nll * m).sum(), "the sum: take the mean over the masked positions"),
               ((nll * (1 - m)).sum() / (1 - m).sum().clamp(min=1),
                "the mean over the positions where the mask is 0")]
    if nll.dim() == 2:
        rows = m.sum(-1) > 0
        guesses.append((((nll * m).sum(-1)[rows] / m.sum(-1)[rows]).mean(),
                        ("the mean of each sequence's mean: every masked token counts the "
                         "same, average over all of them at once")))
    for value, says in guesses:
        if abs(got - value.item()) <= 1e-4 * abs(value.item()) + 1e-5:
            return f" ({says})"
    return ""


def _compare_loss(args, expected, actual):
    logits, targets, mask = args
    if not isinstance(actual, dict) or not ({"loss", "grad"} <= set(actual) or "raised" in actual):
        return ("not the result of the notebook's locked cell masked_cross_entropy_with_grad "
                "(was it redefined?)")
    if "raised" in expected:
        if "raised" in actual:
            return None
        return ("the mask is all 0, so there is no token to learn from: raise ValueError "
                f"(got {short(actual.get('loss'), 60)} instead)")
    if "raised" in actual:
        return f"raised ValueError ({actual.get('message')}) although the mask has 1s"
    loss, grad = actual["loss"], actual["grad"]
    if (m := loss_tensor_problem(loss)):
        return m
    got, want = loss.reshape(()).double(), expected["loss"].double()
    if not torch.isfinite(got):
        return (f"the loss is {got.item()} instead of {want.item():.6g}: with logits as large as "
                f"{logits.abs().max().item():.4g}, exp overflows; use torch.log_softmax (or "
                "subtract each row's max before exp)")
    if not _close(got, want, LOSS_RTOL, LOSS_ATOL):
        return (f"the loss is {got.item():.6g} instead of {want.item():.6g}"
                f"{_loss_notes(logits, targets, mask, got.item())}")
    if grad is None:
        return ("the loss is right but no gradient reached the logits: keep it a tensor of the "
                "graph (no .item(), .detach() or torch.tensor(...) on the way)")
    want_grad = expected["grad"]
    if not isinstance(grad, torch.Tensor) or tuple(grad.shape) != tuple(want_grad.shape):
        return "the gradient of the logits has the wrong shape"
    if not torch.isfinite(grad).all():
        return "the gradient of the logits holds nan or inf"
    if not _close(grad, want_grad, GRAD_RTOL, GRAD_ATOL):
        off = mask.reshape(-1) == 0
        g2 = grad.reshape(-1, grad.size(-1))
        if off.any() and g2[off].abs().max() > GRAD_ATOL:
            p = int(torch.nonzero(off & (g2.abs().amax(-1) > GRAD_ATOL))[0])
            where = tuple(int(i) for i in torch.unravel_index(torch.tensor(p), mask.shape))
            return (f"the gradient reaches position {list(where)}, where the mask is 0: only "
                    "the masked positions may be trained")
        diff = (grad.double() - want_grad.double()).abs()
        return f"the gradient of the logits differs by up to {diff.max().item():.3g}"
    return None


TASKS = {
    "render_conversation": Task(
        "render_with_chat_tokenizer", reference_render_with_chat_tokenizer, _render_cases,
        compare_case=_compare_render, timeout=20.0,
        hint="check_conversation(conversation) first; then for each message: "
             "[im_start] + tokenizer.encode_ordinary(role) + [im_sep] with mask 0s, then "
             "tokenizer.encode_ordinary(content) + [im_end] with mask 1s if the role is "
             "'assistant' else 0s; the ids are tokenizer.special_tokens['<|im_start|>'] etc."),
    "masked_cross_entropy": Task(
        "masked_cross_entropy_with_grad", reference_masked_cross_entropy_with_grad, _loss_cases,
        compare_case=_compare_loss, timeout=20.0,
        hint="raise ValueError if mask has no 1; logp = torch.log_softmax(logits, dim=-1); "
             "nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1); keep = mask.bool(); "
             "return nll[keep].mean()"),
}

ASSIGNMENT = Assignment(TASKS, references=REFERENCES, allowed=ALLOWED, depends=DEPENDS)
globals().update(ASSIGNMENT.checks())  # check_render_conversation, check_masked_cross_entropy

