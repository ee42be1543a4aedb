"""Checks for the Hallucinations and tools assignment (chapter 7).

The student writes four pieces that ``course_lib.hallucination`` and ``course_lib.tools`` hold:

- ``hallucination_rate(answers, truths, refusals)``: the share of answers that neither refuse
  nor state their truth as whole words, any case (``chat.says``); ``ValueError`` for lists of
  different lengths or none at all;
- ``build_refusal_data(probe_results, threshold)``: one conversation per ``ProbeResult``, the
  reference answer when the model was right in at least ``threshold`` of its samples, else
  ``REFUSAL``; ``ValueError`` for a threshold outside (0, 1] or a result without answers;
- ``parse_tool_call(ids, tokenizer)``: ``(tool, argument)`` of the last call, decoded whole and
  cut at its first ``:``; None when no call is closed; ``ValueError`` for a malformed one;
- ``run_tool_loop(model, tokenizer, prompt, tools, max_calls, max_new_tokens)``: greedy
  generation that runs each call and pastes its result (``tools.generate_with_tools``).

Nothing but data crosses to the grader, so every task goes through a locked cell that builds
what cannot travel: ``on_answers`` (a raised ``ValueError`` as ``{"raised": ...}``),
``on_probe_results`` (``ProbeResult`` objects from rows), ``on_tool_tokenizer`` (the course
tokenizer with the chat and tool tokens) and ``on_scripted_model`` (a ``ScriptedModel``, the
tools of ``TOOLBOX`` named in the case, the tokenizer).

A ``ScriptedModel`` is a stand-in for a GPT that writes a fixed script, greedy-decodable: from
the window it is fed it reads which of its own tokens it has written (the pasted results left
out), and puts its one largest logit on the next. It checks what it reads: the window must
start with the prompt, hold its own tokens so far, and have a result pasted after every call it
closed; otherwise it writes ``<|endoftext|>`` (confused), which no right reply holds. Its
forward calls are counted: past ``2 * max_new_tokens + 10`` the locked cell stops the loop and
reports a runaway, so a loop that never stops fails cleanly instead of hanging.

The loop's result is compared with the reference's token by token, except inside error results:
a pasted result that the reference answers with ``"error: ..."`` must be one too (text starting
with ``error:``), in the student's own words. The mask must be 0 exactly on the pasted tokens.
``run_tool_loop`` may call the student's ``parse_tool_call``: while it is checked, that name is
the course's (``Task.substitute``), so a wrong parser costs its own task only.
"""

from __future__ import annotations

import copy
import random
import re
from dataclasses import dataclass
from fractions import Fraction

import torch

from course_lib import hallucination as _hallucination
from course_lib import tools as _tools
from course_lib.assets import (ENDOFTEXT, IM_END, IM_SEP, IM_START, RESULT_END, RESULT_START,
                               SPECIAL_TOKENS, TOOL_END, TOOL_START, VOCAB_SIZE, course_tokenizer)
from course_lib.grading.checks import (Assignment, Task, as_args, as_ints, close_number,
                                       compare_exact, short)

# off limits while a student's function runs: course_lib.hallucination, course_lib.tools and
# course_lib.chat (its says() is hallucination_rate's rule), the reference_* functions here;
# but ProbeResult (the inputs are made of it) and the tokenizer builders the course's
# parse_tool_call uses when it stands in for the student's (LOOP_SUBSTITUTE)
REFERENCES = ("course_lib.hallucination", "course_lib.tools", "course_lib.chat",
              "course_lib.grading.tools")
ALLOWED = ("course_lib.hallucination:ProbeResult", "course_lib.tools:tool_tokenizer",
           "course_lib.chat:chat_tokenizer")
DEPENDS = ("course_lib.tokenizer", "course_lib.assets")
LOOP_SUBSTITUTE = {"parse_tool_call": "course_lib.tools:parse_tool_call"}
BLOCK_SIZE = 1024    # the scripted model's window: no case comes near it, so nothing slides

_SPLIT = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")
_TOKENIZER = []      # the course tokenizer with the chat and tool tokens, loaded once


def _tokenizer():
    if not _TOKENIZER:
        _TOKENIZER.append(course_tokenizer(chat=True, tools=True))
    return _TOKENIZER[0]


def _fresh_tokenizer():
    """A copy of the course tokenizer for one call: its dicts and lists copied (their keys and
    values are immutable), so what a student's function does to it stays in that call."""
    tok = copy.copy(_tokenizer())
    for name, value in vars(tok).items():
        if isinstance(value, (dict, list)):
            setattr(tok, name, value.copy())
    return tok


def token_ids(pieces) -> list[int]:
    """Readable text as ids: a string (or each string of a list, encoded separately, so a list
    chooses where tokens break) with special tokens written inline as ``<|tool_start|>`` etc."""
    tok = _tokenizer()
    out = []
    for piece in [pieces] if isinstance(pieces, str) else pieces:
        for part in _SPLIT.split(piece):
            if part in SPECIAL_TOKENS:
                out.append(SPECIAL_TOKENS[part])
            elif part:
                out += tok.encode_ordinary(part)
    return out


def _text(ids) -> str:
    return _tokenizer().decode(list(ids))


def _raised(e: ValueError) -> dict:
    return {"raised": "ValueError", "message": short(str(e), 200)}


# -- the locked cells' helpers --------------------------------------------------------------------


def on_answers(hallucination_rate, answers, truths, refusals):
    """Call ``hallucination_rate(answers, truths, refusals)``; ``{"rate": what it returned}``, or
    ``{"raised": "ValueError", "message"}`` when it raised a ``ValueError``."""
    try:
        return {"rate": hallucination_rate(list(answers), list(truths), list(refusals))}
    except ValueError as e:
        return _raised(e)


def on_probe_results(build_refusal_data, rows, threshold):
    """Call ``build_refusal_data`` on one ``ProbeResult(question, truth, reference, answers,
    right)`` per row and ``threshold``; ``{"data": what it returned}``, or ``{"raised":
    "ValueError", "message"}``."""
    results = [_hallucination.ProbeResult(q, t, ref, tuple(answers), tuple(bool(r) for r in right))
               for q, t, ref, answers, right in rows]
    try:
        return {"data": build_refusal_data(results, threshold)}
    except ValueError as e:
        return _raised(e)


def on_tool_tokenizer(parse_tool_call, ids):
    """Call ``parse_tool_call(ids, tokenizer)`` with the course tokenizer (chat and tool tokens);
    ``{"call": what it returned}``, or ``{"raised": "ValueError", "message"}``."""
    try:
        return {"call": parse_tool_call(list(ids), _fresh_tokenizer())}
    except ValueError as e:
        return _raised(e)


class RunawayLoop(BaseException):
    """The scripted model was called far more often than ``max_new_tokens`` allows. A
    ``BaseException``, so that a loop's ``except Exception`` does not swallow it."""


@dataclass
class ScriptConfig:
    block_size: int = BLOCK_SIZE
    vocab_size: int = VOCAB_SIZE
    n_layer: int = 1


class ScriptedModel(torch.nn.Module):
    """A stand-in for a GPT that writes ``script`` after ``prompt`` (token ids), then
    ``repeat`` over and over (a model that never stops), greedily: its forward returns logits
    ``(B, T, vocab_size)`` whose last position has its one largest value (1 against 0) on the
    next token of its own. It reads the window it is fed (no KV cache) and writes
    ``<|endoftext|>`` when the window is not the prompt, its own tokens so far and a pasted
    result after each call it closed. More than ``limit`` forward calls raise ``RunawayLoop``."""

    def __init__(self, prompt, script, repeat=(), limit=None):
        super().__init__()
        self.config = ScriptConfig()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # a parameter: the model has a device
        self.prompt, self.script, self.repeat = list(prompt), list(script), list(repeat)
        if not self.repeat and SPECIAL_TOKENS[IM_END] not in self.script:
            raise ValueError("a script that does not end with <|im_end|> needs a repeat")
        self.limit, self.forwards = limit, 0

    def own(self, k: int) -> int:
        """The model's ``k``-th token of its own (0-based)."""
        if k < len(self.script):
            return self.script[k]
        return self.repeat[(k - len(self.script)) % len(self.repeat)]

    def next_token(self, ids: list[int]) -> int:
        confused = SPECIAL_TOKENS[ENDOFTEXT]
        if ids[:len(self.prompt)] != self.prompt:
            return confused
        start, end = SPECIAL_TOKENS[RESULT_START], SPECIAL_TOKENS[RESULT_END]
        closes = SPECIAL_TOKENS[TOOL_END]
        reply, i, k = ids[len(self.prompt):], 0, 0
        while i < len(reply):
            if reply[i] == start:   # a result: right after a call it closed, and closed
                if i == 0 or reply[i - 1] != closes or end not in reply[i:]:
                    return confused
                i = reply.index(end, i) + 1
                continue
            if i and reply[i - 1] == closes:
                return confused     # it closed a call and read no result
            if reply[i] != self.own(k):
                return confused     # not what it wrote
            i, k = i + 1, k + 1
        if reply[-1:] == [closes]:
            return confused         # it closed a call and reads no result yet
        return self.own(k)

    def forward(self, idx, targets=None, cache=None, **unused):
        self.forwards += 1
        if self.limit is not None and self.forwards > self.limit:
            raise RunawayLoop(self.forwards)
        if cache is not None:
            raise TypeError("the checks' model has no KV cache: feed it the whole window, "
                            "model(torch.tensor([prompt + ids]))")
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.is_floating_point():
            raise ValueError("the model takes a (B, T) tensor of token ids, e.g. "
                             "torch.tensor([prompt + ids])")
        B, T = idx.shape
        logits = torch.zeros(B, T, self.config.vocab_size)
        for b in range(B):
            logits[b, -1, self.next_token(idx[b].tolist())] = 1.0
        return logits, None


# the tools a case may offer, by name: plain functions, one of which always raises
PAGES = {
    "tova lind": "Tova Lind was born in 1851 in Velmora. She built the first lantern clock.",
    "kessel": "Kessel is a port city on Kessel Bay, in the south of Velmora.",
    "ada morven": "Ada Morven was born in 1790 in Kessel. She mapped the northern rivers.",
    "zürich": "Zürich is a city on a lake; its river is the Limmat.",
}


def search_tool(query: str) -> str:
    """The page whose title the query names (any case), or a sentence saying none does."""
    q = query.lower()
    for title, page in PAGES.items():
        if title in q:
            return page
    return f"No page matches {query.strip()!r}."


def calculator_tool(expression: str) -> str:
    """``"a + b"``, ``"a - b"`` or ``"a * b"`` of two whole numbers; ``ValueError`` for
    anything else."""
    m = re.fullmatch(r"\s*(-?\d+)\s*([-+*])\s*(-?\d+)\s*", expression)
    if not m:
        raise ValueError(f"cannot compute {expression!r}; write 'a + b', 'a - b' or 'a * b'")
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    return str(a + b if op == "+" else a - b if op == "-" else a * b)


def weather_tool(city: str) -> str:
    """A tool that always fails, as a service that is down does."""
    raise RuntimeError(f"the weather service is down (asked about {city!r})")


TOOLBOX = {"search": search_tool, "calculator": calculator_tool, "weather": weather_tool}


def on_scripted_model(run_tool_loop, prompt, script, repeat, tools, max_calls, max_new_tokens):
    """Call ``run_tool_loop(model, tokenizer, prompt, tools, max_calls, max_new_tokens)`` with a
    ``ScriptedModel(prompt, script, repeat)``, the course tokenizer and the ``TOOLBOX`` tools
    named in ``tools``; ``{"ids", "mask"}`` (what it returned), or ``{"runaway": forward
    calls}`` when the model was called more than ``2 * max_new_tokens + 10`` times."""
    model = ScriptedModel(prompt, script, repeat, limit=2 * max_new_tokens + 10)
    toolbox = {name: TOOLBOX[name] for name in tools}
    try:
        out = run_tool_loop(model, _fresh_tokenizer(), list(prompt), toolbox, max_calls,
                            max_new_tokens)
    except RunawayLoop as e:
        return {"runaway": e.args[0]}
    if isinstance(out, (tuple, list)) and len(out) == 2:
        return {"ids": out[0], "mask": out[1]}
    return {"returned": out}


def reference_hallucination_rate_or_error(answers, truths, refusals):
    return on_answers(_hallucination.hallucination_rate, answers, truths, refusals)


def reference_refusal_data_from_rows(rows, threshold):
    return on_probe_results(_hallucination.build_refusal_data, rows, threshold)


def reference_parse_with_tool_tokenizer(ids):
    return on_tool_tokenizer(_tools.parse_tool_call, ids)


def reference_run_tool_loop_on_script(prompt, script, repeat, tools, max_calls, max_new_tokens):
    return on_scripted_model(_tools.generate_with_tools, prompt, script, repeat, tools,
                             max_calls, max_new_tokens)


def _shape(actual, keys, cell):
    """None when ``actual`` is what the locked cell ``cell`` returns, else the message."""
    if isinstance(actual, dict) and (set(keys) <= set(actual) or "raised" in actual):
        return None
    return f"not the result of the notebook's locked cell {cell} (was it redefined?)"


# -- hallucination_rate ----------------------------------------------------------------------------


def _says(answer, truth, whole=True, any_case=True):
    """``chat.says`` and its usual mistakes (substring, case kept), for the messages."""
    a, t = (answer.lower(), truth.lower()) if any_case else (answer, truth)
    if not whole:
        return t in a
    return re.search(rf"(?<!\w){re.escape(t)}(?!\w)", a) is not None


def _rate_guesses(answers, truths, refusals):
    n = len(answers)
    rows = list(zip(answers, truths, refusals))
    answered = [(a, t) for a, t, r in rows if not r]
    return [
        (sum(1 for a, t, r in rows if not _says(a, t)) / n,
         "a refusal counted as a hallucination when it does not state the truth: a refusal "
         "never counts, right or wrong"),
        (sum(1 for a, t in answered if not _says(a, t)) / len(answered) if answered else None,
         "the share of the answers that do not refuse: divide by all answers, refusals included"),
        (sum(1 for a, t in answered if not _says(a, t, whole=False)) / n,
         "the truth found inside a longer word ('1851' in '18512'): it must stand as whole words"),
        (sum(1 for a, t in answered if not _says(a, t, any_case=False)) / n,
         "'kessel' not matched to 'Kessel': compare in any case (lowercase both)"),
        (sum(1 for a, t in answered
             if not re.search(rf"(?<![^\W_]){re.escape(t.lower())}(?![^\W_])", a.lower())) / n,
         "'_' taken as a word boundary ('year_1851' states '1851'): '_' is a word character"),
        (sum(1 for a, t in answered if _says(a, t)) / n,
         "the share of right answers: count the answers that do NOT state the truth"),
    ]


def _compare_rate(args, expected, actual):
    answers, truths, refusals = args
    if (m := _shape(actual, ["rate"], "hallucination_rate_or_error")):
        return m
    if "raised" in expected:
        if "raised" in actual:
            return None
        return (f"{expected['message']}: raise ValueError (got {short(actual.get('rate'), 60)} "
                "instead)")
    if "raised" in actual:
        return f"raised ValueError ({actual.get('message')}) on lists of {len(answers)} answers"
    diff = close_number(expected["rate"], actual["rate"], rel=1e-9, abs_=1e-12,
                        what="the hallucination rate")
    if diff and isinstance(actual["rate"], (int, float)):
        for value, says in _rate_guesses(answers, truths, refusals):
            if (value is not None and value != expected["rate"]
                    and abs(value - actual["rate"]) < 1e-9):
                return f"{diff} ({says})"
    return diff


def _rate_args(rows):
    """``[(answer, truth, refused), ...]`` as the three lists."""
    return ([a for a, _, _ in rows], [t for _, t, _ in rows], [r for _, _, r in rows])


_RATE_FIXED = [
    # the lecture's example: right, made up, refused
    [("Tova Lind was born in 1851.", "1851", False), ("She was born in 1849.", "1851", False),
     ("I'm sorry, I don't know.", "1851", True)],
    # any case
    [("The capital is KESSEL.", "Kessel", False), ("kessel, on the bay", "Kessel", False),
     ("It is Velmora.", "Kessel", False), ("Born in ZÜRICH.", "Zürich", False)],
    # whole words: inside a longer word (letters, digits, _) it is not stated
    [("Born in 18512.", "1851", False), ("Her name is Lindqvist.", "Lind", False),
     ("In 1851.", "1851", False), ("the year_1851 file", "1851", False),
     ("(1851) was the year", "1851", False), ("in the 1851s", "1851", False),
     ("Tova Lind-Berg", "Lind", False)],
    # a refusal never counts, whatever it says; the share is over all answers
    [("I don't know, maybe 1790?", "1851", True), ("Ada Morven", "1790", True),
     ("It was 1790.", "1790", False), ("It was 1791.", "1790", False)],
    # multi-word truths, the truth at the very start and end
    [("It lies on kessel bay, north of here.", "Kessel Bay", False),
     ("Kessel is on a bay.", "Kessel Bay", False), ("1851", "1851", False),
     ("Velmora", "Kessel", False)],
    [("Nobody knows.", "Kessel", False)],                          # all hallucinated: 1.0
    [("I'm sorry, I don't know.", "Kessel", True)] * 3,           # all refused: 0.0
]


def _rate_cases(seed=0, n_random=6, extra=None):
    fixed = [_rate_args(rows) for rows in _RATE_FIXED]
    bad = [(["It was 1851."], ["1851", "1790"], [False, False]),       # lengths differ
           (["It was 1851.", "No."], ["1851", "1790"], [False]),
           ([], [], [])]                                                # nothing
    rng = random.Random(seed + 70_000)
    truths = ["1851", "1790", "Kessel", "Velmora", "Tova Lind", "Kessel Bay", "Zürich", "42"]
    out = []
    for _ in range(n_random):
        rows = []
        for _ in range(rng.randrange(1, 9)):
            t = rng.choice(truths)
            refused = rng.random() < 0.3
            a = rng.choice([f"It is {t}.", f"{t.upper()}!", f"maybe {t.lower()}", f"({t})",
                            f"It is {rng.choice(truths)}.", f"{t}0", f"x{t}", f"{t}_b",
                            "I'm sorry, I don't know.", f"I don't know; {t}?"])
            rows.append((a, t, refused))
        out.append(_rate_args(rows))
    return fixed + bad + out + as_args(extra)


# -- build_refusal_data ----------------------------------------------------------------------------

QUESTIONS = [("When was Tova Lind born?", "1851", "Tova Lind was born in 1851."),
             ("Where was Ada Morven born?", "Kessel", "Ada Morven was born in Kessel."),
             ("What is the capital of Velmora?", "Kessel", "The capital of Velmora is Kessel."),
             ("What did Tova Lind build?", "lantern clock", "She built the first lantern clock."),
             ("When was Ada Morven born?", "1790", "Ada Morven was born in 1790."),
             ("Which river runs through Zürich?", "Limmat", "The Limmat runs through Zürich.")]


def _row(i, right, wrong="I think it was 1700."):
    """A probe result as a row: question ``i`` of ``QUESTIONS`` with one answer per entry of
    ``right`` (its truth when True, ``wrong`` when False)."""
    q, t, ref = QUESTIONS[i % len(QUESTIONS)]
    return [q, t, ref, [f"It is {t}." if r else wrong for r in right], list(right)]


def _float_safe(rows, threshold):
    """Every way of writing "right in at least threshold of its samples" agrees on ``rows``
    (with floats either way round, and exactly): float rounding never decides a case."""
    for *_, right in rows:
        n, k = len(right), sum(right)
        if n and len({k >= threshold * n, k / n >= threshold,
                      Fraction(k, n) >= Fraction(threshold)}) > 1:
            return False
    return True


T, F = True, False

_REFUSAL_FIXED = [
    # known, unknown, exactly at the threshold (answered), in order
    ([_row(0, [T, T, T, T]), _row(1, [F, F, F, F]), _row(2, [T, F, T, F])], 0.5),
    ([_row(3, [T, T, T, F]), _row(4, [T, T, T, T]), _row(5, [T, F, F, F])], 1.0),   # all right
    ([_row(0, [T, F, F, F]), _row(1, [F, F, F, F]), _row(2, [F, T])], 0.25),
    ([_row(4, [T]), _row(5, [F])], 0.5),                                           # one sample
    ([_row(i, r) for i, r in enumerate([[T, T, F], [F, F, T], [T, T, T], [F, F, F], [T, F],
                                        [T, T, T, T, F, F]])], 2 / 3),
    ([_row(0, [T, T, T, F, F]), _row(1, [T, T, F, F, F])], 0.6),
    ([], 0.5),                                                                    # nothing
]
_REFUSAL_BAD = [
    ([_row(0, [T, T])], 0.0), ([_row(1, [T, F])], 1.5), ([_row(2, [F])], -0.5),  # threshold
    ([], 0.0),                                                                    # even empty
    ([_row(0, [T, T]), _row(1, [])], 0.5),                                        # no answers
]


def _refusal_cases(seed=0, n_random=6, extra=None):
    rng = random.Random(seed + 71_000)
    out = []
    while len(out) < n_random:
        rows = []
        for _ in range(rng.randrange(1, 7)):
            p = rng.choice([0.2, 0.5, 0.8])
            rows.append(_row(rng.randrange(len(QUESTIONS)),
                             [rng.random() < p for _ in range(rng.randrange(1, 7))]))
        threshold = rng.choice([0.25, 0.5, 0.75, 1.0, 0.2, 0.4, 0.6, 0.8, 1 / 3, 2 / 3])
        if _float_safe(rows, threshold):
            out.append((rows, threshold))
    cases = _REFUSAL_FIXED + _REFUSAL_BAD + out + as_args(extra)
    for rows, threshold in cases:
        assert _float_safe(rows, threshold), (rows, threshold)
    return cases


def _compare_refusal(args, expected, actual):
    rows, threshold = args
    if (m := _shape(actual, ["data"], "refusal_data_from_rows")):
        return m
    if "raised" in expected:
        if "raised" in actual:
            return None
        return (f"{expected['message']}: raise ValueError (got {short(actual.get('data'), 80)} "
                "instead)")
    if "raised" in actual:
        return f"raised ValueError ({actual.get('message')}) although the input is valid"
    got, want = actual["data"], expected["data"]
    if not isinstance(got, (list, tuple)):
        return f"returned a {type(got).__name__}: return a list of conversations"
    if len(got) != len(want):
        return f"{len(got)} conversations for {len(want)} probe results: one per result, in order"
    for i, (g, w) in enumerate(zip(got, want)):
        right = rows[i][4]
        k, n = sum(right), len(right)
        if (isinstance(g, (list, tuple)) and len(g) == 2 and g[0] == w[0]
                and isinstance(g[1], dict) and set(g[1]) == {"role", "content"}
                and g[1]["role"] == "assistant" and g[1]["content"] != w[1]["content"]):
            says = ("answers it" if w[1]["content"] != _hallucination.REFUSAL else "refuses")
            why = (f"it was right in {k} of {n} samples, "
                   + (f"at least {threshold:g} of them" if says == "answers it"
                      else f"fewer than {threshold:g} of them"))
            return (f"conversation {i} ({rows[i][0]!r}): the assistant says "
                    f"{g[1]['content']!r}, but it should say {w[1]['content']!r}: {why}, so "
                    f"the data {says}")
        if compare_exact(w, g):
            return (f"conversation {i} is {short(g, 160)} instead of {short(w, 160)}: "
                    "[{'role': 'user', 'content': question}, {'role': 'assistant', "
                    "'content': reference or REFUSAL}]")
    return None


# -- parse_tool_call -------------------------------------------------------------------------------

_PARSE_FIXED = [
    "<|tool_start|>search: Tova Lind<|tool_end|>",
    ["<|tool_start|>", "se", "arch", ":", " T", "ova", " Lind", "<|tool_end|>"],   # many tokens
    "<|tool_start|>search: Zürich<|tool_end|>",        # ü is two byte tokens: decode together
    "Let me look.<|tool_start|>search: Kessel<|tool_end|><|result_start|>Kessel is a port city."
    "<|result_end|>",
    # two calls: the last one counts
    "<|tool_start|>search: Tova Lind<|tool_end|><|result_start|>Tova Lind was born in 1851."
    "<|result_end|>So<|tool_start|>calculator: 1851 + 30<|tool_end|>",
    # the last call is not closed yet: no call, even though an earlier one is
    "<|tool_start|>search: Tova Lind<|tool_end|><|result_start|>Tova Lind was born in 1851."
    "<|result_end|><|tool_start|>calcul",
    "She was born in 1851.",                            # no call at all
    "Hmm.<|tool_end|>",                                 # a <|tool_end|>, but no <|tool_start|>
    "<|tool_start|>search: Tova",                       # open
    "<|tool_start|>search: Note: Kessel Bay<|tool_end|>",   # the first ':' cuts
    "<|tool_start|>search:\nKessel Bay<|tool_end|>",     # ':\n' is one token
    "<|tool_start|>  calculator :   12 + 30  <|tool_end|>",  # both sides stripped
    "<|tool_start|>search: Kessel<|tool_end|>then<|tool_end|>",   # the first <|tool_end|> after it
    "<|tool_start|>browser: Kessel<|tool_end|>",        # a tool that may not exist: still a call
    "<|tool_end|>x<|tool_start|>search: Ada Morven<|tool_end|>",
    "<|tool_start|>search Tova Lind<|tool_end|>",       # malformed: no ':'
    "<|tool_start|>: Tova Lind<|tool_end|>",            # malformed: no tool name
    "<|tool_start|>   :Tova<|tool_end|>",
    "<|tool_start|>search:<|tool_end|>",                # malformed: no argument
    "<|tool_start|>search:   <|tool_end|>",
    "<|tool_start|><|tool_end|>",                       # malformed: empty
]

_CALL_TEXT = ["search: Tova Lind", "search: Zürich", "calculator: 47 + 85", "weather: Kessel",
              "search: Note: Kessel Bay", " calculator :12*3 ", "browser: Ada Morven",
              "search Tova", ": x", "search:", "calculator: 1 - 2 : 3", "search: Malmö",
              "search:\nTova Lind"]
_TEXT = ["Let me look.", "Hmm", " ", "She was born in 1851.", "Okay: ", "ü"]


def _random_pieces(rng, text):
    """``text`` cut at random places, each piece encoded on its own."""
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randrange(0, 5)))) \
        if len(text) > 1 else []
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


def _parse_cases(seed=0, n_random=8, extra=None):
    rng = random.Random(seed + 72_000)
    out = []
    for _ in range(n_random):
        pieces = []
        for _ in range(rng.randrange(0, 3)):
            pieces.append(rng.choice(_TEXT))
            call = rng.choice(_CALL_TEXT)
            pieces += ["<|tool_start|>", *_random_pieces(rng, call), "<|tool_end|>",
                       f"<|result_start|>result {rng.randrange(100)}<|result_end|>"]
        last = rng.choice(["closed", "closed", "open", "none"])
        call = rng.choice(_CALL_TEXT)
        if last == "closed":
            pieces += ["<|tool_start|>", *_random_pieces(rng, call), "<|tool_end|>"]
        elif last == "open":
            pieces += ["<|tool_start|>", *_random_pieces(rng, call[:rng.randrange(len(call))])]
        out.append(pieces)
    return [(token_ids(p),) for p in _PARSE_FIXED + out] + [(token_ids(a[0]),)
                                                            for a in as_args(extra)]


def _parse_guesses(ids):
    """What the usual mistakes return on ``ids`` (for the messages)."""
    tok, s, e = _tokenizer(), SPECIAL_TOKENS[TOOL_START], SPECIAL_TOKENS[TOOL_END]
    out = []
    if s in ids:
        a = ids.index(s)
        if e in ids[a + 1:]:
            b = ids.index(e, a + 1)
            if a != len(ids) - 1 - ids[::-1].index(s):
                name, _, arg = tok.decode(ids[a + 1:b]).partition(":")
                out.append(((name.strip(), arg.strip()), "the first call: take the last "
                            "<|tool_start|> (the call the model just closed)"))
        last = len(ids) - 1 - ids[::-1].index(s)
        if e in ids[last + 1:]:
            b = ids.index(e, last + 1)
            body = tok.decode(ids[last + 1:b])
            each = "".join(tok.decode([i]) for i in ids[last + 1:b])
            name, _, arg = each.partition(":")
            out.append(((name.strip(), arg.strip()), "each token decoded on its own: a "
                        "character can be split across tokens; decode the call's ids together"))
            name, _, arg = body.partition(":")
            out.append(((name, arg), "the tool and the argument are not stripped of spaces"))
            if body.count(":") > 1:
                name, _, arg = body.rpartition(":")
                out.append(((name.strip(), arg.strip()), "cut at the last ':'; cut at the "
                            "first (an argument may hold ':')"))
    return out


def _compare_parse(args, expected, actual):
    (ids,) = args
    if (m := _shape(actual, ["call"], "parse_with_tool_tokenizer")):
        return m
    text = short(_text(ids), 200)
    if "raised" in expected:
        if "raised" in actual:
            return None
        return (f"the call in {text} is malformed ({expected['message']}); raise ValueError "
                f"(got {short(actual.get('call'), 80)})")
    if "raised" in actual:
        return f"raised ValueError ({actual.get('message')}) on {text}"
    got, want = actual["call"], expected["call"]
    if want is None:
        if got is None:
            return None
        why = ("there is no <|tool_start|>" if SPECIAL_TOKENS[TOOL_START] not in ids else
               "the last <|tool_start|> is not closed yet")
        return f"returned {short(got, 80)} for {text}, but {why}: return None"
    if got is None:
        return f"returned None for {text}, whose last call is closed: return {want!r}"
    if (not isinstance(got, (tuple, list)) or len(got) != 2
            or not all(isinstance(x, str) for x in got)):
        return f"returned {short(got, 80)}: return a pair (tool, argument) of two strings"
    if tuple(got) != tuple(want):
        note = next((f" ({says})" for value, says in _parse_guesses(ids)
                     if tuple(got) == value != tuple(want)), "")
        return f"{tuple(got)!r} instead of {tuple(want)!r} for {text}{note}"
    return None


# -- run_tool_loop ---------------------------------------------------------------------------------

QUESTION = "When was Tova Lind born?"
_LOOP_FIXED = [
    # (question, script, repeat, tools, max_calls, max_new_tokens)
    # a search, then the answer
    (QUESTION, "<|tool_start|>search: Tova Lind<|tool_end|>She was born in 1851.<|im_end|>", "",
     ["search", "calculator"], 3, 64),
    # a call written in many small tokens
    ("What is 47 + 85?", ["<|tool_start|>", "cal", "cul", "ator", ":", " 4", "7", " +", " 8",
                          "5", "<|tool_end|>", "It is 132.<|im_end|>"], "",
     ["calculator"], 3, 64),
    # malformed (no ':'), then right
    (QUESTION, "<|tool_start|>search Tova Lind<|tool_end|><|tool_start|>search: Tova Lind"
               "<|tool_end|>1851.<|im_end|>", "", ["search"], 3, 64),
    # an unknown tool
    (QUESTION, "<|tool_start|>browser: Tova Lind<|tool_end|>I'm sorry, I don't know.<|im_end|>",
     "", ["search", "calculator"], 3, 64),
    # a tool that raises, and one that raises ValueError
    ("Is it raining in Kessel?", "<|tool_start|>weather: Kessel<|tool_end|>I cannot tell."
                                 "<|im_end|>", "", ["search", "weather"], 3, 64),
    ("What is two plus two?", "<|tool_start|>calculator: two plus two<|tool_end|><|tool_start|>"
                              "calculator: 2 + 2<|tool_end|>4.<|im_end|>", "", ["calculator"], 3,
     64),
    # past max_calls: the second call is answered with an error
    (QUESTION, "<|tool_start|>search: Tova Lind<|tool_end|><|tool_start|>search: Ada Morven"
               "<|tool_end|>1851.<|im_end|>", "", ["search"], 1, 64),
    # every call counts, a malformed one too
    (QUESTION, "<|tool_start|>search<|tool_end|><|tool_start|>search: Tova Lind<|tool_end|>"
               "1851.<|im_end|>", "", ["search"], 1, 64),
    (QUESTION, "<|tool_start|>search: Ada Morven<|tool_end|><|tool_start|>search: Kessel"
               "<|tool_end|><|tool_start|>search: Tova Lind<|tool_end|>1851.<|im_end|>", "",
     ["search"], 2, 64),
    # a <|tool_end|> with no <|tool_start|> before it
    (QUESTION, "Hmm.<|tool_end|>1851.<|im_end|>", "", ["search"], 3, 64),
    # a call that is never closed: stop after max_new_tokens
    (QUESTION, "<|tool_start|>search: Tova", " Lind", ["search"], 3, 20),
    # a model that never stops; then one that never stops after a call (results do not count)
    ("Tell me a story.", "Once upon a time", " there was a fox", ["search"], 3, 24),
    (QUESTION, "<|tool_start|>search: Tova Lind<|tool_end|>She", " was", ["search"], 3, 30),
    # no call at all; the end at once; <|im_end|> as the last token allowed
    ("Hello!", "Hello! How can I help?<|im_end|>", "", ["search"], 3, 64),
    ("Hello!", "<|im_end|>", "", ["search"], 3, 64),
    ("Hello!", "Hi.<|im_end|>", "", [], 3, 4),
    # an argument with ':' and the answer after two results
    ("Where is Kessel?", "<|tool_start|>search: Note: Kessel<|tool_end|>On the bay."
                         "<|tool_start|>calculator: 12 * 3<|tool_end|>36<|im_end|>", "",
     ["search", "calculator"], 3, 64),
]


def _prompt(question) -> list[int]:
    """``<|endoftext|>`` and a user's question in the chat format, then the assistant's header."""
    return token_ids(f"{ENDOFTEXT}{IM_START}user{IM_SEP}{question}{IM_END}{IM_START}assistant"
                     f"{IM_SEP}")


def _loop_case(question, script, repeat, tools, max_calls, max_new_tokens):
    return (_prompt(question), token_ids(script), token_ids(repeat), list(tools), max_calls,
            max_new_tokens)


def _loop_ok(case) -> bool:
    """The model's ``max_new_tokens``-th token is not a <|tool_end|> (whether a call closed by
    the last token allowed gets its result is left open), and the reply fits the window."""
    prompt, script, repeat, _, _, m = case
    model, tokens = ScriptedModel(prompt, script, repeat), []
    while len(tokens) < m and SPECIAL_TOKENS[IM_END] not in tokens:
        tokens.append(model.own(len(tokens)))
    return ((len(tokens) < m or tokens[-1] != SPECIAL_TOKENS[TOOL_END])
            and len(prompt) + 3 * m + 200 < BLOCK_SIZE)


_SEGMENTS = [
    "<|tool_start|>search: Tova Lind<|tool_end|>", "<|tool_start|>search: Ada Morven<|tool_end|>",
    "<|tool_start|>search: Nowhere<|tool_end|>", "<|tool_start|>calculator: 47 + 85<|tool_end|>",
    "<|tool_start|>calculator: 47 plus 85<|tool_end|>", "<|tool_start|>weather: Kessel<|tool_end|>",
    "<|tool_start|>browser: Kessel<|tool_end|>", "<|tool_start|>search Kessel<|tool_end|>",
    "<|tool_start|>search: Zürich<|tool_end|>", "Let me look.", "So", " it is 1851.",
]


def _loop_cases(seed=0, n_random=6, extra=None):
    rng = random.Random(seed + 73_000)
    out = []
    while len(out) < n_random:
        script = "".join(rng.choice(_SEGMENTS) for _ in range(rng.randrange(0, 5)))
        ends = rng.random() < 0.7
        script += "The answer is 1851.<|im_end|>" if ends else "And"
        case = _loop_case(rng.choice([QUESTION, "What is 47 + 85?", "Hi"]), script,
                          "" if ends else rng.choice([" on", " and on"]),
                          rng.sample(["search", "calculator", "weather"], rng.randrange(1, 4)),
                          rng.randrange(1, 4), rng.randrange(8, 65))
        if _loop_ok(case):
            out.append(case)
    cases = [_loop_case(*c) for c in _LOOP_FIXED + as_args(extra)] + out
    for case in cases[:len(_LOOP_FIXED)]:
        assert _loop_ok(case), case
    return cases


def _parts(ids):
    """A reply cut into ``("own", id)`` tokens and ``("pasted", [ids])`` results (from
    ``<|result_start|>`` to ``<|result_end|>``, both included; an unclosed one runs to the end)."""
    start, end = SPECIAL_TOKENS[RESULT_START], SPECIAL_TOKENS[RESULT_END]
    parts, i = [], 0
    while i < len(ids):
        if ids[i] == start:
            j = ids.index(end, i) + 1 if end in ids[i:] else len(ids)
            parts.append(("pasted", ids[i:j]))
            i = j
        else:
            parts.append(("own", ids[i]))
            i += 1
    return parts


def _is_error(block) -> bool:
    return _text(block[1:-1]).startswith("error:")


def _compare_loop(args, expected, actual):
    prompt, script, repeat, tools, max_calls, m = args
    if isinstance(actual, dict) and "runaway" in actual:
        return (f"the loop did not stop: it called the model {actual['runaway']} times with "
                f"max_new_tokens={m} (this model never writes <|im_end|>); stop after "
                f"max_new_tokens tokens of the model's own")
    if isinstance(actual, dict) and "returned" in actual:
        return f"returned a {type(actual['returned']).__name__}: return a pair (ids, mask)"
    if (m_ := _shape(actual, ["ids", "mask"], "run_tool_loop_on_script")):
        return m_
    ids, mask = as_ints(actual["ids"]), as_ints(actual["mask"])
    if ids is None:
        return "ids is not a list of ints"
    if mask is None:
        return "mask is not a list of 0s and 1s"
    if len(mask) != len(ids):
        return f"the mask has {len(mask)} entries for {len(ids)} ids: one per id"
    want, got = _parts(expected["ids"]), _parts(ids)
    for kind, block in got:     # a reference called inside the loop's own try/except
        called = kind == "pasted" and re.search(r"ReferenceCalled\W+([\w.]+)", _text(block))
        if called:
            return (f"a pasted result says {called.group(0)!r}: the loop called the course's "
                    f"reference implementation ({called.group(1)}); write your own code")
    own_e = sum(1 for k, _ in want if k == "own")
    calls = 0
    for n, (w, g) in enumerate(zip(want, got)):
        so_far = f"after {short(_text(_flat(got[:n])), 200)!r}" if n else "at the start"
        if w[0] == "pasted":
            calls += 1
            if g[0] != "pasted":
                return (f"{so_far}: the result of call {calls} should be pasted there, "
                        f"<|result_start|>{_text(w[1][1:-1])}<|result_end|>, but the reply "
                        f"goes on with {_text([g[1]])!r}")
            if g[1][-1:] != [SPECIAL_TOKENS[RESULT_END]]:
                return f"{so_far}: the result of call {calls} is not closed by <|result_end|>"
            if _is_error(w[1]):
                if not _is_error(g[1]):
                    return (f"{so_far}: the result of call {calls} is {_text(g[1][1:-1])!r}, "
                            f"but it should be an error ('error: ...'), as in "
                            f"{_text(w[1][1:-1])!r}")
            elif g[1] != w[1]:
                return (f"{so_far}: the result of call {calls} is {_text(g[1][1:-1])!r} instead "
                        f"of {_text(w[1][1:-1])!r} (the tool's output, encoded with "
                        "encode_ordinary)")
        elif g != w:
            if g[0] == "pasted":
                return (f"{so_far}: a result is pasted ({_text(g[1])!r}), but the model "
                        f"writes {_text([w[1]])!r} there")
            hint = (" (the model read a window that was not the prompt, its own tokens and the "
                    "pasted results: feed it all of them each step)"
                    if g[1] == SPECIAL_TOKENS[ENDOFTEXT] else "")
            return (f"{so_far}: the model's token is {_text([g[1]])!r} instead of "
                    f"{_text([w[1]])!r}{hint}")
    if len(got) != len(want):
        own_g = sum(1 for k, _ in got if k == "own")
        if len(got) < len(want):
            rest = want[len(got)]
            what = ("the result of a call" if rest[0] == "pasted" else
                    f"the model's token {_text([rest[1]])!r}")
            note = ""
            if own_g < min(own_e, m) and SPECIAL_TOKENS[IM_END] not in ids:
                note = (f" (the model wrote {own_g} tokens of its own, max_new_tokens is {m}: "
                        "pasted tokens do not count)")
            return (f"the reply stops after {short(_text(ids), 200)!r}; next comes {what}{note}")
        extra = got[len(want)]
        why = ("the model wrote <|im_end|>: stop there (keep it)" if SPECIAL_TOKENS[IM_END] in
               expected["ids"][-1:] else f"the model has written max_new_tokens={m} tokens of "
               "its own (pasted tokens do not count)")
        return (f"the reply goes on after {short(_text(expected['ids']), 200)!r} with "
                f"{_text(_flat([extra]))!r}, but {why}")
    trained = [1 if k == "own" else 0 for k, piece in got
               for _ in ([piece] if k == "own" else piece)]
    if mask != trained:
        i = next(j for j, (a, b) in enumerate(zip(mask, trained)) if a != b)
        if trained[i]:
            return (f"mask[{i}] is {mask[i]} on {_text([ids[i]])!r}, a token the model wrote: "
                    "1 (the model learns to write its calls, its answer and <|im_end|>)")
        return (f"mask[{i}] is {mask[i]} on {_text([ids[i]])!r}, a token the loop pasted (a "
                "result or its <|result_start|>/<|result_end|>): 0, the model must not learn to "
                "write tool outputs")
    return None


def _flat(parts):
    return [i for k, p in parts for i in ([p] if k == "own" else p)]


TASKS = {
    "hallucination_rate": Task(
        "hallucination_rate_or_error", reference_hallucination_rate_or_error, _rate_cases,
        compare_case=_compare_rate,
        hint="check the three lengths are equal and not 0 (else raise ValueError); an answer "
             "hallucinates when not refusals[i] and re.search(r'(?<!\\w)' + re.escape(truth."
             "lower()) + r'(?!\\w)', answer.lower()) is None; return that count / len(answers)"),
    "build_refusal_data": Task(
        "refusal_data_from_rows", reference_refusal_data_from_rows, _refusal_cases,
        compare_case=_compare_refusal,
        hint="raise ValueError unless 0 < threshold <= 1, and for a result whose r.right is "
             "empty; the model knows a fact when sum(r.right) >= threshold * len(r.right); "
             "[{'role': 'user', 'content': r.question}, {'role': 'assistant', 'content': "
             "r.reference if it knows else REFUSAL}] for each result, in order"),
    "parse_tool_call": Task(
        "parse_with_tool_tokenizer", reference_parse_with_tool_tokenizer, _parse_cases,
        compare_case=_compare_parse,
        hint="s = the index of the last <|tool_start|> id (None if there is none); e = the first "
             "<|tool_end|> after it (None if there is none); body = tokenizer.decode(ids[s + 1:e]) "
             "(all at once); name, colon, argument = body.partition(':'); raise ValueError if "
             "there is no colon or name.strip() or argument.strip() is empty"),
    "run_tool_loop": Task(
        "run_tool_loop_on_script", reference_run_tool_loop_on_script, _loop_cases,
        compare_case=_compare_loop, timeout=20.0, substitute=LOOP_SUBSTITUTE,
        hint="loop while the model has written fewer than max_new_tokens tokens: logits, _ = "
             "model(torch.tensor([prompt + ids])); nxt = int(logits[0, -1].argmax()); append it "
             "with mask 1; stop after <|im_end|>; at <|tool_end|>: parse_tool_call (ValueError or "
             "None -> 'error: ...'), past max_calls -> 'error: ...', an unknown tool -> 'error: "
             "...', else tools[name](argument) inside try/except Exception -> 'error: ...'; "
             "append [<|result_start|>] + tokenizer.encode_ordinary(result) + [<|result_end|>] "
             "with mask 0 (they do not count as the model's tokens); every call counts"),
}

ASSIGNMENT = Assignment(TASKS, references=REFERENCES, allowed=ALLOWED, depends=DEPENDS)
globals().update(ASSIGNMENT.checks())  # check_hallucination_rate, check_build_refusal_data, check_parse_tool_call, check_run_tool_loop
