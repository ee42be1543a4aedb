"""Chapter 7: hallucinations and tool use.

A model's knowledge lives in its weights, a vague recollection of what it read; what sits in its
context window is working memory, which it can read exactly. The lecture's fix for facts the
weights do not hold (and for sums that need more than one token of thought) is to let the model
write a *tool call*, have a program run it, and paste the output into the context::

    <|im_start|>assistant<|im_sep|><|tool_start|>search: Tova Lind<|tool_end|>
    <|result_start|>Tova Lind was born in 1851. ...<|result_end|>She was born in 1851.<|im_end|>

The model writes the call and the answer; the loop writes the result. This module holds the
parts that need no trained model:

- ``words``, ``world_pages``, ``SearchIndex``: a search engine over the world's encyclopedia,
  ranked with BM25 written out (Okapi's formula; tested against the ``rank_bm25`` package);
- ``calculator``: arithmetic on exact fractions, parsed with ``ast``, never ``eval``;
- ``TOOLS``, ``format_call``, ``format_result``, ``parse_call``, ``run_tool``: the call format
  and running one call (a failing tool answers ``"error: ..."``, for the model to read);
- ``tool_tokenizer``, ``split_tool_message``, ``render_tool_conversation``,
  ``render_tool_prompt``, ``visible_text``: conversations with tool calls as ids and a loss mask
  that leaves the results out (the model never writes them, so it must not learn to);
- ``run_tool_loop``: generation with the KV cache that stops at each ``<|tool_end|>``, runs the
  tool, pastes its result and goes on, until ``<|im_end|>``.
"""

from __future__ import annotations

import ast
import functools
import math
import random
import re
from collections import Counter
from fractions import Fraction

import torch

from course_lib.assets import (CHAT_TOKENS, ENDOFTEXT, IM_END, IM_START, RESULT_END,
                               RESULT_START, TOOL_END, TOOL_START, TOOL_TOKENS, with_special_tokens)
from course_lib.chat import _header, chat_tokenizer, check_conversation
from course_lib.generate import _model_device, sample, unknown_ids
from course_lib.model import KVCache
from course_lib.world import make_world, passage_for

# --------------------------------------------------------------------------------------------
# Search: BM25 over the world's encyclopedia
# --------------------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z]+|[0-9]+")


def words(text: str) -> list[str]:
    """The search tokenizer: ``text`` lowercased, cut into runs of letters and runs of digits
    (``"Tova Lind, born 1851."`` -> ``["tova", "lind", "born", "1851"]``). Punctuation and
    spaces only separate; accented letters separate too (the world's names are plain ASCII)."""
    return _WORD.findall(text.lower())


def world_pages(world=None) -> list[tuple[str, str]]:
    """One page ``(title, passage)`` per entity of ``world`` (default ``make_world()``), most
    popular first: the entity's name and ``world.passage_for`` it, with a random stream of its
    own (seeded by the world's seed and the name, so a page never depends on the others).

    Why ``passage_for`` and not the encyclopedia entry the corpus has (``world._encyclopedia``):
    the passage states every fact of the entity and little else, in about 50 tokens, which a
    256-token context can hold next to the question and the answer; an entry is three times
    longer, and it also names other entities in full (a city's entry lists three of its people,
    a person's entry their city and inventions), so a search for a person would find the city
    that lists them as well as, or before, the person's own page."""
    world = world or make_world()
    return [(e.name, passage_for(e, random.Random(f"course-search-{world.seed}-{e.name}")))
            for e in world.entities]


class SearchIndex:
    """BM25 (Robertson and Spärck Jones' Okapi weighting) over ``pages``, a list of
    ``(title, text)``; a page is its title and text as ``words``.

    A page's score for a query sums, over the query's words (a repeated word counts again)::

        idf(w) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))
        idf(w) = log((N - n_w + 0.5) / (n_w + 0.5))

    ``tf`` is how often ``w`` occurs in the page, ``len`` the page's length in words, ``N`` the
    number of pages and ``n_w`` how many of them hold ``w``. ``k1`` caps what repeating a word
    earns (the 10th "Tova" adds little), ``b`` scales a long page's counts down.

    This idf is negative for a word in more than half the pages ("the", "is"): such words then
    count *against* a page. ``epsilon=None`` keeps that (the textbook formula); a number
    replaces every negative idf by ``epsilon`` times the mean idf of the vocabulary, which is
    what the ``rank_bm25`` package's ``BM25Okapi`` does (its default ``epsilon`` is 0.25)."""

    def __init__(self, pages: list[tuple[str, str]], k1: float = 1.5, b: float = 0.75,
                 epsilon: float | None = None):
        if not pages:
            raise ValueError("pages is empty; a search index needs at least one (title, text)")
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"k1 must be >= 0 and b in [0, 1], got k1={k1}, b={b}")
        self.pages = list(pages)
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self.docs = [words(f"{title} {text}") for title, text in self.pages]
        self.lengths = [len(d) for d in self.docs]
        self.avg_len = sum(self.lengths) / len(self.docs)
        self.postings: dict[str, list[tuple[int, int]]] = {}   # word -> [(page, tf)]
        for i, doc in enumerate(self.docs):
            for w, tf in Counter(doc).items():
                self.postings.setdefault(w, []).append((i, tf))
        self.idf = self._idf()

    @classmethod
    def from_world(cls, world=None, **bm25) -> SearchIndex:
        """The index of ``world_pages(world)``: what the ``search`` tool looks in."""
        return cls(world_pages(world), **bm25)

    def _idf(self) -> dict[str, float]:
        n = len(self.docs)
        idf = {w: math.log((n - len(p) + 0.5) / (len(p) + 0.5)) for w, p in self.postings.items()}
        if self.epsilon is not None:
            floor = self.epsilon * sum(idf.values()) / len(idf)
            idf = {w: (floor if v < 0 else v) for w, v in idf.items()}
        return idf

    def scores(self, query: str) -> list[float]:
        """Every page's BM25 score for ``query``, in page order (0 for pages sharing no word)."""
        out = [0.0] * len(self.docs)
        for w in words(query):
            for i, tf in self.postings.get(w, ()):
                norm = self.k1 * (1 - self.b + self.b * self.lengths[i] / self.avg_len)
                out[i] += self.idf[w] * tf * (self.k1 + 1) / (tf + norm)
        return out

    def search(self, query: str, k: int = 1) -> list[tuple[str, str, float]]:
        """The ``k`` best pages for ``query`` as ``(title, text, score)``, best first (ties in
        page order). Only pages sharing a word with the query count as found."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        matched = {i for w in words(query) for i, _ in self.postings.get(w, ())}
        scores = self.scores(query)
        best = sorted(matched, key=lambda i: (-scores[i], i))[:k]
        return [(*self.pages[i], scores[i]) for i in best]

    def tool(self, query: str) -> str:
        """The search tool: the best page's text, or a sentence saying nothing matched."""
        if not query.strip():
            raise ValueError("the search query is empty; write what to look for, "
                             "e.g. 'search: Tova Lind'")
        hits = self.search(query, k=1)
        return hits[0][1] if hits else f"No page matches {query.strip()!r}."


@functools.lru_cache(maxsize=4)
def _world_index(seed: int = 0) -> SearchIndex:
    return SearchIndex.from_world(make_world(seed))


def search(query: str) -> str:
    """The ``search`` tool of ``TOOLS``: ``SearchIndex.tool`` over the course world
    (``make_world()``, built once on first use)."""
    return _world_index().tool(query)


# --------------------------------------------------------------------------------------------
# Calculator: arithmetic without eval
# --------------------------------------------------------------------------------------------

MAX_EXPRESSION_CHARS = 100
MAX_MAGNITUDE = Fraction(10) ** 30   # no number, given or computed, larger than this
MAX_EXPONENT = 64
_NUMBER = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
_BINARY = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
           ast.FloorDiv: lambda a, b: Fraction(a // b), ast.Mod: lambda a, b: a % b}
_ALLOWED = "numbers, + - * / // % ** and parentheses"


def calculator(expression: str) -> str:
    """The value of an arithmetic ``expression`` as text: ``"47 + 85"`` -> ``"132"``,
    ``"1/8"`` -> ``"0.125"``, ``"2/3"`` -> ``"0.666667"``.

    The text is parsed with ``ast`` into a tree and the tree is walked by hand: only numbers
    (digits with at most one ``.``), ``+ - * / // % **``, unary minus and parentheses are
    allowed, so nothing but arithmetic can run (``eval`` would run any Python). Numbers are
    exact fractions (``0.1 + 0.2`` is ``0.3``); a whole result is written as an integer, any other
    rounded to 6 decimals. ``//`` and ``%`` follow Python (``-7 // 2`` is ``-4``). Raises
    ``ValueError`` naming the problem: anything but arithmetic, an expression over
    ``MAX_EXPRESSION_CHARS`` characters, an exponent that is not whole or above
    ``MAX_EXPONENT``, a number past ``MAX_MAGNITUDE`` (1e30), division by zero."""
    if not isinstance(expression, str):
        raise ValueError(f"expression must be a string, got {type(expression).__name__}")
    text = expression.strip()
    if not text:
        raise ValueError(f"the expression is empty; write arithmetic with {_ALLOWED}")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"the expression is too long ({len(text)} characters, at most "
                         f"{MAX_EXPRESSION_CHARS}); split the computation into steps")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ValueError(f"{text!r} is not an arithmetic expression; write {_ALLOWED}") from None
    return _format(_evaluate(tree.body, text))


def _evaluate(node: ast.AST, text: str) -> Fraction:
    """The exact value of an expression tree built from what ``calculator`` allows."""
    if isinstance(node, ast.Constant):
        value = _number(node, text)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand, text)
        value = -value if isinstance(node.op, ast.USub) else value
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        value = _power(_evaluate(node.left, text), _evaluate(node.right, text))
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left, text), _evaluate(node.right, text)
        if right == 0 and isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)):
            raise ValueError(f"division by zero in {ast.get_source_segment(text, node)!r}")
        value = _BINARY[type(node.op)](left, right)
    else:
        raise ValueError(_not_allowed(node, text))
    if abs(value) > MAX_MAGNITUDE:
        raise ValueError(f"{ast.get_source_segment(text, node)!r} is too large (beyond 1e30); "
                         "the calculator works with numbers up to 1e30")
    return value


def _number(node: ast.Constant, text: str) -> Fraction:
    written = ast.get_source_segment(text, node) or ""
    if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
        raise ValueError(f"{written!r} is not a number; the calculator takes {_ALLOWED}")
    if not _NUMBER.fullmatch(written):
        raise ValueError(f"write numbers with digits and at most one '.', got {written!r} "
                         "(no exponents, underscores or hexadecimal)")
    return Fraction(written)   # exact: Fraction("0.1") is 1/10, unlike the float 0.1


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    """``base ** exponent`` for a whole ``exponent`` of at most ``MAX_EXPONENT``, refused before
    it is computed when the result would pass ``MAX_MAGNITUDE`` (``9**9**9`` never starts)."""
    if exponent.denominator != 1:
        raise ValueError(f"exponents must be whole numbers, got {_format(exponent)}")
    if abs(exponent) > MAX_EXPONENT:
        raise ValueError(f"the exponent {exponent} is too large (at most {MAX_EXPONENT} either "
                         "way)")
    if base == 0:
        if exponent < 0:
            raise ValueError("division by zero: 0 to a negative power")
        return Fraction(0 if exponent else 1)
    if abs(int(exponent)) * abs(math.log10(abs(base))) > 30:
        raise ValueError(f"{_format(base)} ** {exponent} is too large or too small (beyond "
                         "1e30 or below 1e-30)")
    return base ** int(exponent)


def _not_allowed(node: ast.AST, text: str) -> str:
    what = ast.get_source_segment(text, node) or type(node).__name__
    if isinstance(node, ast.Name):
        problem = f"names like {node.id!r} are not allowed"
    elif isinstance(node, ast.Call):
        problem = f"calls like {what!r} are not allowed"
    elif isinstance(node, ast.Attribute):
        problem = f"attribute access like {what!r} is not allowed"
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        problem = f"'^' in {what!r} is not a power here; write '**' for powers"
    else:
        problem = f"{what!r} ({type(node).__name__}) is not arithmetic"
    return f"{problem}; the calculator takes {_ALLOWED}"


def _format(value: Fraction) -> str:
    """An integer as an integer; anything else rounded to 6 decimals, trailing zeros dropped
    (a value that rounds to 0 is written with 6 significant digits instead: ``1e-09``)."""
    if value.denominator == 1:
        return str(value.numerator)
    micro = round(value * 10**6)
    if micro == 0:
        return f"{float(value):.6g}"
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), 10**6)
    return f"{sign}{whole}.{frac:06d}".rstrip("0").rstrip(".")


# --------------------------------------------------------------------------------------------
# The call format
# --------------------------------------------------------------------------------------------

TOOLS = {"search": search, "calculator": calculator}


def format_call(tool: str, argument: str) -> str:
    """A call as the model writes it: ``<|tool_start|>tool: argument<|tool_end|>``."""
    return f"{TOOL_START}{tool}: {argument}{TOOL_END}"


def format_result(result: str) -> str:
    """A tool's output as the loop pastes it: ``<|result_start|>result<|result_end|>``."""
    return f"{RESULT_START}{result}{RESULT_END}"


def parse_call(text: str, tools: dict | None = None) -> tuple[str, str]:
    """``(tool, argument)`` of a call ``"tool: argument"`` (the text between ``<|tool_start|>``
    and ``<|tool_end|>``; the two tokens may be included). Raises ``ValueError`` for a call with
    no ``:``, a tool not in ``tools`` (default ``TOOLS``) or an empty argument."""
    tools = TOOLS if tools is None else tools
    body = text.strip()
    if body.startswith(TOOL_START):
        body = body[len(TOOL_START):]
    if body.endswith(TOOL_END):
        body = body[:-len(TOOL_END)]
    name, colon, argument = body.partition(":")
    name, argument = name.strip(), argument.strip()
    if not colon or not name:
        raise ValueError(f"malformed call {body!r}: write 'tool: argument', "
                         "e.g. 'search: Tova Lind' or 'calculator: 47 + 85'")
    if name not in tools:
        raise ValueError(f"unknown tool {name!r}; the tools are {', '.join(sorted(tools))}")
    if not argument:
        raise ValueError(f"the call to {name!r} has no argument; write '{name}: ...'")
    return name, argument


def run_tool(call_text: str, tools: dict | None = None) -> str:
    """Run the call ``call_text`` (``"calculator: 47 + 85"``) and return the tool's output. A bad
    call or a tool's error comes back as ``"error: ..."``: the model reads it in its context
    and may try again; nothing raises through the generation loop."""
    tools = TOOLS if tools is None else tools
    try:
        name, argument = parse_call(call_text, tools)
        return str(tools[name](argument))
    except (ValueError, ArithmeticError, KeyError) as e:
        return f"error: {e}"


# --------------------------------------------------------------------------------------------
# Conversations with tool calls, as ids and a loss mask
# --------------------------------------------------------------------------------------------

_TOOL_SPLIT = re.compile("(" + "|".join(re.escape(t) for t in TOOL_TOKENS) + ")")


def tool_tokenizer(tokenizer=None):
    """The course tokenizer (or ``tokenizer``) with the chat and the tool tokens registered."""
    return with_special_tokens(chat_tokenizer(tokenizer), TOOL_TOKENS)


def split_tool_message(content: str, open_call: bool = False) -> list[tuple[str, str]]:
    """An assistant message's content cut into parts ``("text" | "call" | "result", text)``.

    A message with tools holds the special-token strings inline, exactly as the model writes
    them and the loop pastes them (so a reply of ``run_tool_loop`` is already a message)::

        "Let me look.<|tool_start|>search: Tova Lind<|tool_end|>"
        "<|result_start|>Tova Lind was born in 1851. ...<|result_end|>She was born in 1851."

    Every call is followed at once by its result. Raises ``ValueError`` naming what is out of
    place; ``open_call=True`` allows a last call with no result yet, or not even closed (a reply
    cut short)."""
    pieces = [p for p in _TOOL_SPLIT.split(content) if p]
    parts, i = [], 0
    while i < len(pieces):
        if pieces[i] not in TOOL_TOKENS:
            parts.append(("text", pieces[i]))
            i += 1
            continue
        if pieces[i] != TOOL_START:
            raise ValueError(f"{pieces[i]} with no call before it in {content!r:.120}; a call "
                             f"is {format_call('tool', 'argument')}, then its result "
                             f"{format_result('output')}")
        call, i = _enclosed(pieces, i, TOOL_END, content, open_call)
        parts.append(("call", call))
        if i == len(pieces) and open_call:
            break
        if i == len(pieces) or pieces[i] != RESULT_START:
            raise ValueError(f"the call {call!r} has no result right after it in "
                             f"{content!r:.120}; paste one: {format_result('output')}")
        result, i = _enclosed(pieces, i, RESULT_END, content)
        parts.append(("result", result))
    return parts


def _enclosed(pieces: list[str], i: int, close: str, content: str, open_end: bool = False
              ) -> tuple[str, int]:
    """The text between the opening token ``pieces[i]`` and ``close`` (may be empty), and the
    index after ``close``; ``open_end``: the content may end before ``close``."""
    j = i + 1
    inner = ""
    if j < len(pieces) and pieces[j] not in TOOL_TOKENS:
        inner, j = pieces[j], j + 1
    if j == len(pieces) and open_end:
        return inner, j
    if j == len(pieces) or pieces[j] != close:
        raise ValueError(f"{pieces[i]} is not closed by {close} in {content!r:.120}")
    return inner, j + 1


def _render_message(m: dict, tok) -> tuple[list[int], list[int]]:
    """One message as ids and mask, in chat.render_conversation's format; an assistant message's
    calls are its own (mask 1), its results are pasted text (mask 0, delimiters included)."""
    head = _header(m["role"], tok)
    if m["role"] != "assistant":
        if _TOOL_SPLIT.search(m["content"]):
            raise ValueError(f"a {m['role']} message contains a tool token; only the assistant "
                             "calls tools (and only the loop pastes results)")
        body = tok.encode_ordinary(m["content"]) + [CHAT_TOKENS[IM_END]]
        return head + body, [0] * (len(head) + len(body))
    ids, mask = list(head), [0] * len(head)
    for kind, text in split_tool_message(m["content"]):
        if kind == "text":
            piece, trained = tok.encode_ordinary(text), 1
        elif kind == "call":
            piece, trained = ([TOOL_TOKENS[TOOL_START], *tok.encode_ordinary(text),
                               TOOL_TOKENS[TOOL_END]], 1)
        else:
            piece, trained = ([TOOL_TOKENS[RESULT_START], *tok.encode_ordinary(text),
                               TOOL_TOKENS[RESULT_END]], 0)
        ids += piece
        mask += [trained] * len(piece)
    return ids + [CHAT_TOKENS[IM_END]], mask + [1]


def render_tool_conversation(conversation, tokenizer) -> tuple[list[int], list[int]]:
    """``conversation`` (ending with the assistant) as ids and a loss mask, like
    ``chat.render_conversation`` (a conversation without tools renders exactly as there), with
    assistant messages that may hold calls and results inline (``split_tool_message``).

    The mask is 1 on what the model writes at chat time: its text, each call with its
    ``<|tool_start|>`` and ``<|tool_end|>`` (it must learn to open a call and to close it, which is
    where the loop takes over), and its ``<|im_end|>``. It is 0 on the result and on its two
    delimiters: the loop writes all three, so the model must not learn to produce them (that
    would be learning to make up search results). The model still learns to go on after
    ``<|result_end|>``: the first token after it is the model's and is trained."""
    tok = tool_tokenizer(tokenizer)
    check_conversation(conversation)
    ids, mask = [], []
    for m in conversation:
        i, k = _render_message(m, tok)
        ids += i
        mask += k
    return ids, mask


def render_tool_prompt(conversation, tokenizer) -> list[int]:
    """The conversation so far (ending with the user; earlier replies may hold tool calls) and
    the assistant's header: what ``run_tool_loop`` continues."""
    tok = tool_tokenizer(tokenizer)
    check_conversation(conversation, ends_with="user")
    ids = [i for m in conversation for i in _render_message(m, tok)[0]]
    return ids + _header("assistant", tok)


def visible_text(reply: str) -> str:
    """What the user is shown of a reply: its text without calls and results."""
    parts = split_tool_message(reply, open_call=True)
    return "".join(text for kind, text in parts if kind == "text").strip()


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def run_tool_loop(model, tokenizer, conversation, tools: dict | None = None,
                  max_new_tokens: int = 200, max_calls: int = 3, temperature: float = 0.0,
                  top_k: int | None = None, seed: int = 0, answer_room: int = 16,
                  on_text=None) -> tuple[str, list[tuple[str, str]]]:
    """The assistant's reply to ``conversation`` (ending with the user), with tools.

    Generation uses the KV cache (chapter 5) and ``sample`` (greedy at ``temperature=0``). When
    the model writes ``<|tool_end|>``, the text since its last ``<|tool_start|>`` is run with
    ``run_tool``, and ``<|result_start|>``, the result's ids and ``<|result_end|>`` go into the
    cache in one forward pass; then the model goes on. It stops at ``<|im_end|>`` (or another
    chat token), after ``max_new_tokens`` tokens of its own (pasted results do not count), or
    when the context is full. The reply stays well formed: the model may not write the result
    tokens (only the loop does), ``<|tool_end|>`` outside a call or ``<|tool_start|>`` inside one
    (a reply cut short may end inside a call). Calls past ``max_calls`` get the result
    ``"error: ..."`` instead of running.

    The context never slides (that would drop the question): a result is cut to fit the
    ``block_size`` window with ``answer_room`` tokens left for the answer, and when not even one
    token of it fits, or the window fills while the model writes, the reply stops there.

    Returns ``(reply, calls)``: the reply's text with the calls and results inline (a message
    ``render_tool_conversation`` takes back; ``visible_text`` strips them) and the list of
    ``(call, result)`` as pasted. ``on_text``: called with each new piece of that text as it is
    written or pasted (the tool tokens among them), for a terminal to stream."""
    tools = TOOLS if tools is None else tools
    tok = tool_tokenizer(tokenizer)
    block = model.config.block_size
    prompt = [tok.special_tokens[ENDOFTEXT]] + render_tool_prompt(conversation, tok)
    if len(prompt) >= block:
        raise ValueError(f"the conversation is {len(prompt)} tokens, which leaves no room in the "
                         f"model's block_size {block}; shorten it")
    device = _model_device(model)
    never = unknown_ids(tok, model.config.vocab_size)
    never[[TOOL_TOKENS[RESULT_START], TOOL_TOKENS[RESULT_END]]] = True  # only the loop pastes
    # a well-formed reply: <|tool_end|> only inside a call, <|tool_start|> only outside one
    outside, inside = never.clone(), never.clone()
    outside[TOOL_TOKENS[TOOL_END]] = True
    inside[TOOL_TOKENS[TOOL_START]] = True
    outside, inside = outside.to(device), inside.to(device)
    stops = {CHAT_TOKENS[IM_END], CHAT_TOKENS[IM_START], tok.special_tokens[ENDOFTEXT]}
    g = torch.Generator(device=device).manual_seed(seed)
    model.eval()
    cache = KVCache(model.config.n_layer)
    feed, reply, calls, written, opened = prompt, [], [], 0, None
    shown, started = "", False

    def show():   # the new piece of the reply's text, stripped at its start as it is returned
        nonlocal shown, started
        text = tok.decode(reply)
        if on_text is None or text.endswith("\ufffd"):   # half a character waits
            return
        piece, shown = text[len(shown):], text
        piece = piece if started else piece.lstrip()
        started = started or bool(piece)
        if piece:
            on_text(piece)

    while written < max_new_tokens and cache.length + len(feed) <= block:
        logits, _ = model(torch.tensor([feed], device=device), cache=cache)
        forbid = outside if opened is None else inside
        nxt = int(sample(logits[:, -1].masked_fill(forbid, float("-inf")), temperature, top_k,
                         None, g)[0])
        written += 1
        if nxt in stops:
            break
        reply.append(nxt)
        show()
        feed = [nxt]
        if nxt == TOOL_TOKENS[TOOL_START]:
            opened = len(reply)
        if nxt != TOOL_TOKENS[TOOL_END]:
            continue
        call, opened = tok.decode(reply[opened:-1]), None
        result = (run_tool(call, tools) if len(calls) < max_calls else
                  f"error: no more tool calls in this reply (at most {max_calls})")
        room = block - cache.length - 3 - answer_room   # TOOL_END + the two result tokens
        result_ids = tok.encode_ordinary(result)[:max(room, 0)]
        if not result_ids and result:
            break                                        # no room left for the result
        calls.append((call, tok.decode(result_ids)))
        pasted = [TOOL_TOKENS[RESULT_START], *result_ids, TOOL_TOKENS[RESULT_END]]
        reply += pasted
        show()
        feed = [nxt, *pasted]
    return tok.decode(reply).strip(), calls


# --------------------------------------------------------------------------------------------
# The loop on token ids (the assignment's): parse a call, run it, paste, go on
# --------------------------------------------------------------------------------------------


def parse_tool_call(ids: list[int], tokenizer) -> tuple[str, str] | None:
    """The call the model just closed: ``(tool, argument)`` of the ids between the last
    ``<|tool_start|>`` and the ``<|tool_end|>`` after it, decoded together (a call is many
    tokens: ``"search: Tova Lind"`` may be ``"search", ":", " T", "ova", ...``) and cut at the
    first ``:``, both sides stripped. ``None`` when there is no ``<|tool_start|>`` or the last
    one is not closed yet. Raises ``ValueError`` for a closed call with no ``:``, no tool name
    or no argument. Whether the tool exists is for the caller (``run_tool``) to say."""
    ids = list(ids)
    start, end = TOOL_TOKENS[TOOL_START], TOOL_TOKENS[TOOL_END]
    if start not in ids:
        return None
    s = len(ids) - 1 - ids[::-1].index(start)
    if end not in ids[s + 1:]:
        return None
    e = ids.index(end, s + 1)
    body = tool_tokenizer(tokenizer).decode(ids[s + 1:e])
    name, colon, argument = body.partition(":")
    if not colon or not name.strip() or not argument.strip():
        raise ValueError(f"malformed call {body!r}: write 'tool: argument', "
                         "e.g. 'search: Tova Lind'")
    return name.strip(), argument.strip()


def call_tool(name: str, argument: str, tools: dict) -> str:
    """Run ``tools[name](argument)``; an unknown tool or any exception the tool raises comes
    back as ``"error: ..."`` text for the model to read, never as an exception."""
    if name not in tools:
        return f"error: unknown tool {name!r}; the tools are {', '.join(sorted(tools))}"
    try:
        return str(tools[name](argument))
    except Exception as e:   # a tool is someone else's code: whatever it raises, the loop goes on
        return f"error: {type(e).__name__}: {e}"


@torch.no_grad()
def generate_with_tools(model, tokenizer, prompt: list[int], tools: dict | None = None,
                        max_calls: int = 3, max_new_tokens: int = 64
                        ) -> tuple[list[int], list[int]]:
    """The tool loop in its plainest form, on token ids (greedy, the whole window each step):
    the model writes tokens after ``prompt``; at each ``<|tool_end|>`` the call is parsed
    (``parse_tool_call``) and run (``call_tool``: an unknown tool or a raising tool answers
    ``"error: ..."``, a malformed call answers ``"error: malformed ..."``; every
    ``<|tool_end|>`` counts as a call, and one past ``max_calls`` answers ``"error: ..."``
    without running), and ``<|result_start|>``, the
    result's ids and ``<|result_end|>`` are pasted. It stops after ``<|im_end|>`` (kept) or
    ``max_new_tokens`` tokens of the model's own (pasted ones do not count: a model that never
    closes its call stops there). Returns the reply's ids and its loss mask: 1 on what the model
    wrote, 0 on what the loop pasted. ``run_tool_loop`` is the same loop with the KV cache,
    sampling and a well-formed reply guaranteed."""
    tools = TOOLS if tools is None else tools
    tok = tool_tokenizer(tokenizer)
    device = _model_device(model)
    block = model.config.block_size
    model.eval()
    ids, mask, written, calls, open_call = [], [], 0, 0, False
    while written < max_new_tokens:
        window = (list(prompt) + ids)[-block:]
        logits, _ = model(torch.tensor([window], device=device))
        nxt = int(logits[0, -1].argmax())
        ids.append(nxt)
        mask.append(1)
        written += 1
        if nxt == CHAT_TOKENS[IM_END]:
            break
        if nxt == TOOL_TOKENS[TOOL_START]:
            open_call = True
        if nxt != TOOL_TOKENS[TOOL_END]:
            continue
        if calls >= max_calls:   # every <|tool_end|> is a call, well formed or not
            result = f"error: no more tool calls in this reply (at most {max_calls})"
        elif not open_call:      # a stray close: the last call was answered already
            result = "error: <|tool_end|> with no <|tool_start|> before it"
        else:
            try:
                result = call_tool(*parse_tool_call(ids, tok), tools)
            except ValueError as e:
                result = f"error: {e}"
        calls, open_call = calls + 1, False
        pasted = [TOOL_TOKENS[RESULT_START], *tok.encode_ordinary(result),
                  TOOL_TOKENS[RESULT_END]]
        ids += pasted
        mask += [0] * len(pasted)
    return ids, mask


# --------------------------------------------------------------------------------------------
# The tool model's data
# --------------------------------------------------------------------------------------------

_NUMBERS = re.compile(r"\d+")
_OPERATOR = {"addition": "+", "subtraction": "-", "multiplication": "*"}


def search_reply(fact, answer: str | None = None, index: SearchIndex | None = None) -> str:
    """An assistant message that looks ``fact``'s subject up and then answers: the call
    ``search: <subject>``, the result the index gives for it (what the loop will paste), then
    ``answer``; by default the result's sentence that states the fact, copied (a small model
    copies a sentence it can see far better than it rewords one)."""
    index = index or _world_index()
    result = index.tool(fact.subject)
    if answer is None:
        stating = [s for s in _sentences(result) if re.search(
            rf"(?<!\w){re.escape(fact.value)}(?!\w)", s)]
        answer = stating[0] if stating else fact.sentence
    return format_call("search", fact.subject) + format_result(result) + answer


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=\.)\s+", text) if s.strip()]


def calculator_reply(problem) -> str:
    """An assistant message that hands ``problem``'s arithmetic (addition, subtraction or
    multiplication of the two numbers in its question) to the calculator, then answers."""
    if problem.kind not in _OPERATOR:
        raise ValueError(f"the calculator data covers {sorted(_OPERATOR)}, not {problem.kind!r}")
    a, b = (int(x) for x in _NUMBERS.findall(problem.question)[:2])
    expression = f"{a} {_OPERATOR[problem.kind]} {b}"
    return (format_call("calculator", expression) + format_result(calculator(expression))
            + f"Answer: {problem.answer}")


def named_identity_conversation(name: str, rng: random.Random) -> list[dict]:
    """A system message giving the assistant ``name``, and a question about who it is answered
    with that name: data that makes the model read its system message instead of reciting the
    one name its SFT data always used."""
    from course_lib.world import ASSISTANT_MAKER

    q, a = rng.choice([("Who are you?", f"I am {name}, a small language model made by "
                                         f"{ASSISTANT_MAKER}."),
                       ("What is your name?", f"My name is {name}."),
                       ("Hi! Tell me about yourself.", f"I am {name}, a small language model. "
                                                       "I answer questions about my world.")])
    return [{"role": "system", "content": f"You are {name}, a helpful assistant."},
            {"role": "user", "content": q}, {"role": "assistant", "content": a}]


def assistant_names(n: int, seed: int = 0) -> list[str]:
    """``n`` invented assistant names (two syllables, capitalised), distinct."""
    from course_lib.world import _word

    rng, out = random.Random(f"course-names-{seed}"), []
    while len(out) < n:
        name = _word(rng, 2).title()
        if name not in out and len(name) >= 4:
            out.append(name)
    return out


def tool_conversations(results, threshold: float, world, n_calculator: int = 1500,
                       n_identity: int = 400, replay_share: float = 0.7, seed: int = 0,
                       names: list[str] | None = None) -> list[list[dict]]:
    """Chapter 7's tool data: each probed fact (``hallucination.ProbeResult``) the model
    ``knows`` answered directly, as before, and every other one looked up (``search_reply``):
    the model learns to search only where its memory fails, and keeps its direct answers.
    Then word problems of 2-5 digits handed to the calculator (``calculator_reply``), system
    messages naming the assistant (``named_identity_conversation``, over ``names``) and chapter
    6's conversations replayed (``replay_share`` of the facts; their fact questions only about
    what the model knows, their word problems left out), shuffled."""
    from course_lib.chat import sft_conversations
    from course_lib.hallucination import knows
    from course_lib.world import make_problem

    rng = random.Random(f"course-tool-data-{seed}")
    index = _world_index(world.seed)
    facts = []
    for r in results:
        f = world.by_name(r.subject).fact(r.relation)
        content = r.reference if knows(r, threshold) else search_reply(f, index=index)
        facts.append([{"role": "user", "content": r.question},
                      {"role": "assistant", "content": content}])
    calc = []
    for _ in range(n_calculator):
        p = make_problem(rng, world, rng.choice(list(_OPERATOR)), rng.choice([2, 3, 4, 5]),
                         style="compact")
        calc.append([{"role": "user", "content": p.question},
                     {"role": "assistant", "content": calculator_reply(p)}])
    names = names or assistant_names(250, seed)
    identity = [named_identity_conversation(names[i % len(names)], rng)
                for i in range(n_identity)]
    replay = sft_conversations(world, int(replay_share * len(facts)), seed + 1, skills=True,
                               known={(r.subject, r.relation): r.truth for r in results
                                      if knows(r, threshold)})
    # the replayed word problems would answer the calculator's questions with worked steps
    replay = [c for c in replay if not _is_sum(c)]
    out = facts + calc + identity + replay
    rng.shuffle(out)
    return out


def _is_sum(conversation) -> bool:
    """An arithmetic word problem (numbers in the question, not a reading passage or a letter
    count): what the tool model hands to the calculator."""
    from course_lib.world import READING_INTRO

    q = next(m["content"] for m in conversation if m["role"] == "user")
    return (not q.startswith(READING_INTRO) and "letter" not in q
            and _NUMBERS.search(q) is not None)
