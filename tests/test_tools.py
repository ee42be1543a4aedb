"""Chapter 7's library (course_lib.tools): BM25 search over the world (checked against the
rank_bm25 package), the calculator (and the attacks it refuses), the call format, rendering tool
conversations with the results masked, and the tool loop run on a tiny GPT trained here."""

from __future__ import annotations

import builtins
import copy
import time

import numpy as np
import pytest
import torch
from rank_bm25 import BM25Okapi

from course_lib import chat as C
from course_lib import tools as T
from course_lib.assets import (CHAT_TOKENS, ENDOFTEXT, IM_END, RESULT_END, RESULT_START,
                               TOOL_END, TOOL_START, TOOL_TOKENS)
from course_lib.generate import generate, unknown_ids
from course_lib.model import GPT, GPTConfig
from course_lib.world import make_world, question_for

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def index(world):
    return T.SearchIndex.from_world(world)


@pytest.fixture(scope="module")
def tok():
    return T.tool_tokenizer()


# --------------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------------


def test_words_lowercases_and_keeps_letters_and_digits_apart():
    assert T.words("Tova Lind, born 1851 (a baker).") == ["tova", "lind", "born", "1851", "a",
                                                         "baker"]
    assert T.words("route66 -- X") == ["route", "66", "x"]
    assert T.words("...") == []


def test_world_pages_one_per_entity_stating_its_facts(world):
    pages = T.world_pages(world)
    assert [t for t, _ in pages] == [e.name for e in world.entities]
    for (title, text), e in zip(pages, world.entities):
        assert e.name in text
        assert all(v in text for v in e.facts.values()), (title, text)
    assert pages == T.world_pages(make_world()), "pages must not depend on anything but the seed"
    other = T.world_pages(make_world(seed=1))
    assert pages != other


def _query_set(index):
    """Queries the tool will see: exact names, a name and a relation word, rare values."""
    names = [index.pages[i][0] for i in (0, 7, 123, 480, 999)]
    return names + [f"{names[1]} born", "Fiostopear farmer", "loom 1845", "lamp purple"]


def test_bm25_equals_rank_bm25_where_the_idf_floor_does_not_bite(index):
    """Textbook Okapi (epsilon=None) and BM25Okapi share the idf formula; they differ only for
    words in more than half the pages, which these queries avoid."""
    ref = BM25Okapi(index.docs, k1=1.5, b=0.75)
    n = len(index.docs)
    for q in _query_set(index):
        assert all(len(index.postings.get(w, ())) < n / 2 for w in T.words(q)), q
        mine, theirs = np.array(index.scores(q)), ref.get_scores(T.words(q))
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-12, err_msg=q)
        hits = index.search(q, k=5)
        assert len(hits) == min(5, int(np.count_nonzero(theirs)))
        np.testing.assert_allclose([s for *_, s in hits], np.sort(theirs)[::-1][:len(hits)],
                                   rtol=1e-9)
        assert hits[0][0] == index.pages[int(np.argmax(theirs))][0]


def test_bm25_with_epsilon_is_rank_bm25s_variant_and_the_floor_matters(index):
    ref = BM25Okapi(index.docs, k1=1.5, b=0.75, epsilon=0.25)
    floored = T.SearchIndex(index.pages, epsilon=0.25)
    common = "Who invented the loom"   # "the": in nearly every page, a negative textbook idf
    assert index.idf["the"] < 0 < floored.idf["the"]
    for q in _query_set(index) + [common, "the river Mallow", "is a city in Kandor"]:
        np.testing.assert_allclose(floored.scores(q), ref.get_scores(T.words(q)), rtol=1e-9,
                                   atol=1e-12, err_msg=q)
    assert not np.allclose(index.scores(common), ref.get_scores(T.words(common)))


def test_bm25_parameters_change_scores_as_the_formula_says(index):
    """k1 = 0 makes a page's score the sum of idfs of the words it holds (counts do not matter);
    b = 0 ignores page length."""
    q = index.pages[5][0]
    flat = T.SearchIndex(index.pages, k1=0.0)
    expected = [sum(flat.idf[w] for w in T.words(q) if w in set(d)) for d in flat.docs]
    np.testing.assert_allclose(flat.scores(q), expected, rtol=1e-12)
    no_len = T.SearchIndex(index.pages, b=0.0)
    tf_only = [sum(no_len.idf[w] * d.count(w) * 2.5 / (d.count(w) + 1.5) for w in T.words(q))
               for d in no_len.docs]
    np.testing.assert_allclose(no_len.scores(q), tf_only, rtol=1e-12)


def test_an_exact_name_finds_its_own_page(index):
    t = time.perf_counter()
    hits = [index.search(name, k=1)[0][0] == name for name, _ in index.pages]
    share = sum(hits) / len(hits)
    print(f"\nexact-name hit rate {share:.1%} over {len(hits)} entities "
          f"({time.perf_counter() - t:.2f} s)")
    assert share >= 0.99
    floored = T.SearchIndex(index.pages, epsilon=0.25)
    assert sum(floored.search(n, k=1)[0][0] == n for n, _ in index.pages) >= 0.99 * len(hits)


def test_search_returns_only_matching_pages_best_first(index):
    assert index.search("xyzzy qwerty") == []
    hits = index.search("Fiostopear", k=10)
    assert hits[0][0] == "Fiostopear" and len(hits) == sum("Fiostopear" in t for _, t in
                                                           index.pages) == 3
    assert all("Fiostopear" in text for _, text, _ in hits)
    assert [s for *_, s in hits] == sorted((s for *_, s in hits), reverse=True)
    assert index.tool("xyzzy") == "No page matches 'xyzzy'."
    assert index.tool(index.pages[9][0]) == index.pages[9][1]
    assert T.search(index.pages[9][0]) == index.pages[9][1], "TOOLS' search is the world's"
    with pytest.raises(ValueError, match="k must"):
        index.search("x", k=0)
    with pytest.raises(ValueError, match="empty"):
        index.tool("  ")


# --------------------------------------------------------------------------------------------
# Calculator
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("expression, value", [
    ("47 + 85", "132"), ("47+85", "132"), ("(47) + (85)", "132"), ("85 + 47", "132"),
    ("  47 +\t85 ", "132"), ("200 - 68", "132"), ("-(-132)", "132"), ("264 / 2", "132"),
    ("11 * 12", "132"), ("2 ** 7 + 4", "132"), ("1 + 2 * 3", "7"), ("(1 + 2) * 3", "9"),
    ("7 / 2", "3.5"), ("2 / 3", "0.666667"), ("-2 / 3", "-0.666667"), ("1 / 8", "0.125"),
    ("0.1 + 0.2", "0.3"), ("1.50 * 2", "3"), (".5 + 1", "1.5"), ("1 / 3 * 3", "1"),
    ("-7 // 2", "-4"), ("7 // 2", "3"), ("-7 % 3", "2"), ("7.5 % 2", "1.5"),
    ("2 ** -2", "0.25"), ("2 ** 10", "1024"), ("-2 ** 2", "-4"), ("(-2) ** 2", "4"),
    ("2 ** 3 ** 2", "512"), ("10 / 4 * 2", "5"), ("1 / 10 ** 9", "1e-09"), ("+5 - 10", "-5"),
    ("2 ** 64", "18446744073709551616"),
])
def test_calculator_answers(expression, value):
    assert T.calculator(expression) == value


@pytest.mark.parametrize("expression, problem", [
    ("__import__('os')", "calls"), ("__import__('os').system('true')", "calls"),
    ("().__class__", "attribute"), ("(1).__class__.__bases__", "attribute"),
    ("x + 1", "names"), ("print", "names"), ("True + 1", "not a number"),
    ("'a' * 3", "not a number"), ("2j", "not a number"), ("[1, 2]", "not arithmetic"),
    ("1 < 2", "not arithmetic"), ("1 if 1 else 2", "not arithmetic"),
    ("lambda: 1", "not arithmetic"), ("1, 2", "not arithmetic"), ("2 ^ 3", r"\*\*"),
    ("9**9**9", "exponent"), ("2 ** 1000", "exponent"), ("10 ** 31", "too large"),
    ("99999999999 ** 3", "too large"), ("0.1 ** -40", "too large"), ("0.1 ** 40", "too small"),
    ("1000000 * 1000000 * 1000000 * 1000000 * 1000000 * 1000000", "too large"),
    ("2 ** 0.5", "whole"), ("1 / 0", "zero"), ("5 % 0", "zero"), ("5 // (2 - 2)", "zero"),
    ("0 ** -1", "zero"), ("1e5", "digits"), ("0x10", "digits"), ("1_000", "digits"),
    ("1" * 101, "too long"), ("1+" * 60 + "1", "too long"), ("(" * 80 + "1" + ")" * 80, "long"),
    ("", "empty"), ("   ", "empty"), ("47 +", "not an arithmetic"), ("import os", "not an"),
])
def test_calculator_refuses_with_a_reason(expression, problem):
    with pytest.raises(ValueError, match=problem):
        T.calculator(expression)


def test_calculator_never_calls_eval(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the calculator called eval/exec")
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert T.calculator("(3 + 4) * 6 / 7") == "6"


def test_calculator_is_quick_on_its_worst_inputs():
    t = time.perf_counter()
    for e in ["9**9**9", "99 ** 64", "(2 ** 64) ** 64", "1" * 100, "-" * 99 + "1"]:
        try:
            T.calculator(e)
        except ValueError:
            pass
    assert time.perf_counter() - t < 0.5


# --------------------------------------------------------------------------------------------
# The call format
# --------------------------------------------------------------------------------------------


def test_parse_call():
    assert T.parse_call("search: Tova Lind") == ("search", "Tova Lind")
    assert T.parse_call(" calculator :47 + 85 ") == ("calculator", "47 + 85")
    assert T.parse_call(T.format_call("search", "a: b")) == ("search", "a: b")
    with pytest.raises(ValueError, match="unknown tool 'weather'.*calculator, search"):
        T.parse_call("weather: Paris")
    with pytest.raises(ValueError, match="malformed"):
        T.parse_call("search Tova Lind")
    with pytest.raises(ValueError, match="malformed"):
        T.parse_call(": Tova Lind")
    with pytest.raises(ValueError, match="no argument"):
        T.parse_call("calculator:  ")
    assert T.parse_call("echo: hi", tools={"echo": str}) == ("echo", "hi")


def test_run_tool_runs_real_tools_and_turns_errors_into_results(index):
    name = index.pages[3][0]
    assert T.run_tool(f"search: {name}") == index.pages[3][1]
    assert T.run_tool("calculator: 47 + 85") == "132"
    assert T.run_tool("calculator: 1 / 0").startswith("error: division by zero")
    assert T.run_tool("calculator: __import__('os')").startswith("error: calls")
    assert T.run_tool("weather: Paris").startswith("error: unknown tool")
    assert T.run_tool("no colon here").startswith("error: malformed")
    assert T.TOOLS["calculator"] is T.calculator and set(T.TOOLS) == {"search", "calculator"}


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _tool_convo(result="Tova Lind was born in 1851.", system=None):
    reply = ("Let me look it up." + T.format_call("search", "Tova Lind")
             + T.format_result(result) + "She was born in 1851.")
    c = [{"role": "user", "content": "When was Tova Lind born?"},
         {"role": "assistant", "content": reply},
         {"role": "user", "content": "And 47 + 85?"},
         {"role": "assistant", "content": T.format_call("calculator", "47 + 85")
          + T.format_result("132") + "132."}]
    return ([{"role": "system", "content": system}] if system else []) + c


def test_without_tools_the_rendering_is_chapter_6s(tok, world):
    convos = C.sft_conversations(world, n=40, seed=3) + [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello!"}]]
    for c in convos:
        assert T.render_tool_conversation(c, tok) == C.render_conversation(c, tok)
        assert T.render_tool_prompt(c[:-1], tok) == C.render_prompt(c[:-1], tok)


def test_results_are_masked_out_and_calls_are_trained(tok):
    c = _tool_convo(system="Be brief.")
    ids, mask = T.render_tool_conversation(c, tok)
    assert len(ids) == len(mask)
    header = "<|im_start|>{}<|im_sep|>"
    assert tok.decode(ids) == "".join(header.format(m["role"]) + m["content"] + IM_END
                                      for m in c)
    untrained_assistant = []
    inside = False
    for i, m in zip(ids, mask):
        if i == TOOL_TOKENS[RESULT_START]:
            inside = True
        assert m == (0 if inside else m), "a token of a result is trained"
        if inside:
            untrained_assistant.append(i)
        if i == TOOL_TOKENS[RESULT_END]:
            inside = False
    results = ["Tova Lind was born in 1851.", "132"]
    assert untrained_assistant == [t for r in results for t in
                                   [TOOL_TOKENS[RESULT_START], *tok.encode_ordinary(r),
                                    TOOL_TOKENS[RESULT_END]]]
    trained = tok.decode([i for i, m in zip(ids, mask) if m])
    assert trained == ("Let me look it up." + TOOL_START + "search: Tova Lind" + TOOL_END
                       + "She was born in 1851." + IM_END
                       + TOOL_START + "calculator: 47 + 85" + TOOL_END + "132." + IM_END)
    # all that is not the assistant's (system, user, headers) stays 0, as in chapter 6
    plain = [dict(m, content=T.visible_text(m["content"])) for m in c]
    _, plain_mask = C.render_conversation(plain, tok)
    assert sum(mask) == sum(plain_mask) + sum(len(tok.encode_ordinary(x)) + 2 for x in
                                              ("search: Tova Lind", "calculator: 47 + 85"))


def test_malformed_tool_messages_are_refused(tok):
    bad = [
        "Hi" + T.format_call("search", "X"),                        # call without a result
        T.format_result("made up") + "Hi",                          # result without a call
        T.format_call("search", "X") + "Hi" + T.format_result("r"),  # text in between
        TOOL_START + "search: X" + RESULT_START + "r" + RESULT_END,  # call never closed
        T.format_call("search", "X") + RESULT_START + "r",          # result never closed
    ]
    for content in bad:
        c = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": content}]
        with pytest.raises(ValueError, match="result|call|closed"):
            T.render_tool_conversation(c, tok)
    c = [{"role": "user", "content": "Q" + T.format_result("fake")},
         {"role": "assistant", "content": "A"}]
    with pytest.raises(ValueError, match="only the assistant"):
        T.render_tool_conversation(c, tok)
    assert T.split_tool_message("a" + T.format_call("search", "X"), open_call=True) == [
        ("text", "a"), ("call", "search: X")]


# --------------------------------------------------------------------------------------------
# The loop, on a tiny GPT trained here to call tools
# --------------------------------------------------------------------------------------------


def _training_conversations(world):
    """A person, a city and an animal (their questions differ in more than the name) and two
    sums, each answered through a tool."""
    out = []
    for e in [world.of_kind(kind)[0] for kind in ("person", "city", "animal")]:
        f = e.all_facts()[0]
        out.append([{"role": "user", "content": question_for(f)},
                    {"role": "assistant", "content": T.format_call("search", e.name)
                     + T.format_result(T.search(e.name)) + f.sentence}])
    for a, b in [(47, 85), (123, 456)]:
        out.append([{"role": "user", "content": f"What is {a} + {b}?"},
                    {"role": "assistant", "content": T.format_call("calculator", f"{a} + {b}")
                     + T.format_result(str(a + b)) + f"{a} + {b} = {a + b}."}])
    return out


@pytest.fixture(scope="module")
def trained(world, tok):
    """A 2-layer GPT (d=64) trained for 250 full-batch steps on five tool conversations rendered
    by render_tool_conversation, its masked loss (a few seconds on one thread)."""
    convos = _training_conversations(world)
    eot = tok.special_tokens[ENDOFTEXT]
    rows = [T.render_tool_conversation(c, tok) for c in convos]
    width = max(len(i) for i, _ in rows) + 1
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for r, (i, m) in enumerate(rows):
        ids[r, :len(i) + 1] = torch.tensor([eot] + i)
        mask[r, :len(m) + 1] = torch.tensor([0] + m)
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=128, n_layer=2, n_head=2, n_embd=64))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    t = time.perf_counter()
    for _ in range(250):
        logits, _ = model(ids[:, :-1])
        loss = C.masked_cross_entropy(logits, ids[:, 1:], mask[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"\ntiny tool model: loss {loss.item():.4f} after 250 steps "
          f"({time.perf_counter() - t:.1f} s)")
    model.eval()
    return model, convos


def test_the_loop_runs_the_real_tool_and_pastes_its_output(trained, tok):
    model, convos = trained
    for c in convos:
        question, answer = c[0], c[1]["content"]
        (want_call, want_result), = [(p[1], r[1]) for p, r in zip(
            T.split_tool_message(answer), T.split_tool_message(answer)[1:])
            if p[0] == "call"]
        reply, calls = T.run_tool_loop(model, tok, [question], max_new_tokens=80)
        assert calls == [(want_call, T.run_tool(want_call))], reply
        assert T.run_tool(want_call) == want_result
        assert T.format_call(*want_call.split(": ", 1)) + T.format_result(want_result) in reply
        assert T.visible_text(reply) == T.visible_text(answer)
        # the reply is a message: it renders back into a training conversation
        T.render_tool_conversation([question, {"role": "assistant", "content": reply}], tok)


def test_without_the_loop_the_model_goes_on_writing_after_its_call(trained, tok):
    """The pasted text comes from the tool, not the model: generating straight through, the
    model writes the call and then something else (it never learned the results)."""
    model, convos = trained
    eot = tok.special_tokens[ENDOFTEXT]
    for c in convos[:3]:
        result = T.split_tool_message(c[1]["content"])[1][1]
        prompt = torch.tensor([[eot] + T.render_tool_prompt(c[:1], tok)])
        out = generate(model, prompt, 60, temperature=0, stop_token=CHAT_TOKENS[IM_END],
                       forbid=unknown_ids(tok, model.config.vocab_size))
        plain = tok.decode(out[0, prompt.size(1):].tolist())
        assert TOOL_END in plain, plain
        after = plain.split(TOOL_END, 1)[1]
        assert after.strip(), "the model stopped by itself at the call"
        assert result not in after and T.format_result(result) not in plain


def test_the_loop_limits_calls_and_never_overflows_the_window(trained, tok, world):
    model, convos = trained
    question = convos[0][:1]
    reply, calls = T.run_tool_loop(model, tok, question, max_new_tokens=80, max_calls=0)
    assert calls == [(calls[0][0], "error: no more tool calls in this reply (at most 0)")]
    # a page far longer than the 128-token window: the result is cut, the model never sees more
    # than block_size tokens (its forward would raise), and there is room left to answer
    name = world.of_kind("person")[0].name   # the one convos[0] searches for
    long_page = f"{name} " + " ".join(f"line {i} of a very long page." for i in range(200))
    tools = {"search": T.SearchIndex([(name, long_page)]).tool, "calculator": T.calculator}
    reply, calls = T.run_tool_loop(model, tok, question, tools=tools, max_new_tokens=80,
                                   answer_room=16)
    (call, pasted), = calls
    assert long_page.startswith(pasted) and 50 < len(tok.encode_ordinary(pasted)) < 128
    prompt = 1 + len(T.render_tool_prompt(question, tok))
    call_ids = len(tok.encode_ordinary(call)) + 2
    assert prompt + call_ids + len(tok.encode_ordinary(pasted)) + 2 == 128 - 16
    # no room at all: the loop stops at the call instead of pasting
    reply, calls = T.run_tool_loop(model, tok, question, tools=tools, max_new_tokens=80,
                                   answer_room=120)
    assert calls == [] and reply.endswith(TOOL_END)
    with pytest.raises(ValueError, match="block_size"):
        T.run_tool_loop(model, tok, [{"role": "user", "content": "word " * 200}])


def test_the_loop_samples_with_a_seed(trained, tok):
    model, convos = trained
    runs = [T.run_tool_loop(model, tok, convos[3][:1], temperature=1.5, seed=s,
                            max_new_tokens=40) for s in (1, 1, 2)]
    assert runs[0] == runs[1]


def _steered(model, token: int):
    """A copy of ``model`` whose every next-token choice leans hard to ``token`` (a forward hook
    adds a large constant to that token's logit): a real GPT that wants to write one token.
    (Leaning through the final LayerNorm's bias, as this once did, depends on which embedding
    happens to be longest: with the one-digit tokenizer another token won.)"""
    steered = copy.deepcopy(model)

    def lean(module, args, output):
        logits, loss = output
        logits = logits.clone()
        logits[..., token] += 1e4
        return logits, loss

    steered.register_forward_hook(lean)
    return steered


def _well_formed(reply: str, calls: list) -> list:
    """The reply's parts; every result in it is one the loop pasted, in order."""
    parts = T.split_tool_message(reply, open_call=True)   # raises on a stray or nested token
    assert [t for k, t in parts if k == "result"] == [r for _, r in calls], reply
    assert reply.count(RESULT_START) == reply.count(RESULT_END) == len(calls), reply
    return parts


@pytest.mark.parametrize("token", [RESULT_START, RESULT_END])
def test_only_the_loop_writes_result_tokens(trained, tok, token):
    """A model that wants to write a result token never does: the loop forbids it, so the reply
    is exactly the one the same model writes without the lean, pastes and all."""
    model, convos = trained
    steered = _steered(model, TOOL_TOKENS[token])
    plain = generate(steered, torch.tensor([[0, 1, 2]]), 3, temperature=0)
    assert plain[0, 3:].tolist() == [TOOL_TOKENS[token]] * 3, "the steering did not take"
    reply, calls = T.run_tool_loop(steered, tok, convos[0][:1], max_new_tokens=20)
    assert (reply, calls) == T.run_tool_loop(model, tok, convos[0][:1], max_new_tokens=20)
    assert calls, "the trained model calls its tool first (else this shows nothing)"
    _well_formed(reply, calls)


def test_tool_end_only_closes_an_open_call(trained, tok):
    """A model that wants to write <|tool_end|> everywhere can only close a call with it: it
    opens one (as trained), closes it at once, and the loop answers the empty call with an
    error; outside a call the token is never written."""
    model, convos = trained
    steered = _steered(model, TOOL_TOKENS[TOOL_END])
    reply, calls = T.run_tool_loop(steered, tok, convos[0][:1], max_new_tokens=20)
    parts = _well_formed(reply, calls)
    assert calls and calls[0][0] == "" and calls[0][1].startswith("error: malformed call"), reply
    assert reply.count(TOOL_END) == reply.count(TOOL_START) == len(calls) > 0, reply
    assert [k for k, _ in parts][:3] == ["call", "result", "text"], parts


def test_a_call_cannot_open_inside_a_call(trained, tok):
    """A model that wants to write <|tool_start|> everywhere opens a call, then, inside it, can
    only write the call itself: calls never nest."""
    model, convos = trained
    steered = _steered(model, TOOL_TOKENS[TOOL_START])
    reply, calls = T.run_tool_loop(steered, tok, convos[0][:1], max_new_tokens=20)
    assert reply.startswith(TOOL_START), reply
    parts = _well_formed(reply, calls)
    assert all(TOOL_START not in t for k, t in parts if k == "call"), parts
    assert calls and calls[0][0] != "", "inside the call the model wrote a call, not another start"


# --------------------------------------------------------------------------------------------
# The id-level loop (the assignment's) and the tool model's data
# --------------------------------------------------------------------------------------------


def _ids(tok, text):
    return tok.encode(text, allowed_special="all")


def test_parse_tool_call_reads_the_last_closed_call_across_tokens(tok):
    call = _ids(tok, T.format_call("search", "Tova Lind"))
    assert len(call) > 4, "a call is many tokens"
    assert T.parse_tool_call(call, tok) == ("search", "Tova Lind")
    earlier = _ids(tok, T.format_call("calculator", "1 + 2") + T.format_result("3") + "so ")
    assert T.parse_tool_call(earlier + call, tok) == ("search", "Tova Lind")
    assert T.parse_tool_call(_ids(tok, T.format_call("search", " a: b ")), tok) == ("search",
                                                                                   "a: b")
    assert T.parse_tool_call(_ids(tok, "no call here"), tok) is None
    assert T.parse_tool_call(call[:-1], tok) is None, "not closed yet"
    assert T.parse_tool_call(earlier + call[:-1], tok) is None, "the last call is not closed"
    for body in ("search Tova", ": Tova", "search:  "):
        with pytest.raises(ValueError, match="malformed"):
            T.parse_tool_call(_ids(tok, T.format_call("x", "y").replace("x: y", body)), tok)


def test_call_tool_turns_every_failure_into_an_error_result():
    def boom(_):
        raise RuntimeError("the tool broke")

    tools = {"echo": lambda a: a.upper(), "boom": boom}
    assert T.call_tool("echo", "hi", tools) == "HI"
    assert T.call_tool("nope", "hi", tools).startswith("error: unknown tool 'nope'")
    assert T.call_tool("boom", "hi", tools) == "error: RuntimeError: the tool broke"


def test_generate_with_tools_is_the_greedy_loop_and_masks_what_it_pastes(trained, tok):
    model, convos = trained
    for c in convos:
        prompt = [tok.special_tokens[ENDOFTEXT]] + T.render_tool_prompt(c[:1], tok)
        ids, mask = T.generate_with_tools(model, tok, prompt, max_new_tokens=40)
        reply, calls = T.run_tool_loop(model, tok, c[:1], max_new_tokens=40)
        assert tok.decode([i for i in ids if i != CHAT_TOKENS[IM_END]]).strip() == reply
        pasted = [i for i, m in zip(ids, mask) if m == 0]
        assert tok.decode(pasted) == "".join(T.format_result(r) for _, r in calls)
        assert ids[-1] == CHAT_TOKENS[IM_END] and mask[-1] == 1


def test_generate_with_tools_always_ends(trained, tok):
    """A model that opens a call and never closes it, and one that closes calls forever: the loop
    stops at max_new_tokens of the model's own, with every call answered."""
    model, convos = trained
    prompt = [tok.special_tokens[ENDOFTEXT]] + T.render_tool_prompt(convos[0][:1], tok)
    never_closes = _steered(model, tok.encode_ordinary(" a")[0])
    ids, mask = T.generate_with_tools(never_closes, tok, prompt, max_new_tokens=15)
    assert sum(mask) == 15 and 0 not in mask
    closes = _steered(model, TOOL_TOKENS[TOOL_END])
    ids, mask = T.generate_with_tools(closes, tok, prompt, max_calls=2, max_new_tokens=6)
    assert sum(mask) == 6 and ids.count(TOOL_TOKENS[RESULT_START]) == 6
    text = tok.decode(ids)
    assert text.count("error: no more tool calls") == 4 and "error: <|tool_end|> with no" in text


def test_search_and_calculator_replies_paste_what_the_tools_return(world, index, tok):
    e = world.entities[400]
    f = e.fact(sorted(e.facts)[0])
    reply = T.search_reply(f, f.sentence, index)
    assert T.split_tool_message(reply) == [("call", f"search: {e.name}"),
                                           ("result", index.tool(e.name)), ("text", f.sentence)]
    from course_lib.world import Problem
    p = Problem("subtraction", "Ana had 4821 stones and gave away 977. How many are left?", 3844)
    assert T.calculator_reply(p) == (T.format_call("calculator", "4821 - 977")
                                     + T.format_result("3844") + "Answer: 3844")
    with pytest.raises(ValueError, match="counting"):
        T.calculator_reply(Problem("counting", "How many r?", 3))


def test_tool_conversations_search_only_what_the_model_does_not_know(world, tok):
    from course_lib import hallucination as H

    rs = []
    for i, e in enumerate(world.entities[100:160]):
        f = e.fact(sorted(e.facts)[0])
        rs.append(H.ProbeResult(question_for(f), f.value, f.sentence, ("x",) * 2,
                                (i % 2 == 0,) * 2, e.name, f.relation, "y", i % 2 == 0))
    convs = T.tool_conversations(rs, 0.5, world, n_calculator=30, n_identity=10,
                                 replay_share=1.0)
    said = {}
    for c in convs:
        for q, a in zip(c, c[1:]):
            if q["role"] == "user":
                said.setdefault(q["content"], []).append(a["content"])
    for r in rs:
        searched = T.format_call("search", r.subject) + T.format_result(T.search(r.subject))
        if H.knows(r, 0.5):
            assert r.reference in said[r.question], r.question
            assert not any(TOOL_START in a for a in said[r.question])
        else:   # looked up, answered with the result's sentence, never from memory
            f = world.by_name(r.subject).fact(r.relation)
            (answer,) = said[r.question]
            assert answer == T.search_reply(f) and answer.startswith(searched), r.question
            assert C.says(answer.split(RESULT_END)[-1], r.truth), answer
    sums = [c for c in convs if T._is_sum(c)]
    assert len(sums) == 30 and all(T.format_call("calculator", "")[:-len(TOOL_END)]
                                   in c[1]["content"] for c in sums), "sums use the calculator"
    named = [c for c in convs if c[0]["role"] == "system" and "helpful" in c[0]["content"]
             and c[0]["content"].split()[2].rstrip(",") in c[-1]["content"]]
    assert len(named) >= 10
    for c in convs:   # every conversation renders, results masked
        ids, mask = T.render_tool_conversation(c, tok)
        assert len(ids) == len(mask)


def test_a_stray_tool_end_after_a_call_does_not_run_that_call_again(tok):
    """A model that closes a call, reads its result, then writes <|tool_end|> again: the second
    close has no call of its own, so it gets an error result, not the first call's page again."""
    from course_lib.grading.tools import ScriptedModel

    prompt = [tok.special_tokens[ENDOFTEXT]] + T.render_tool_prompt(
        [{"role": "user", "content": "Who is Tova Lind?"}], tok)
    script = (_ids(tok, T.format_call("search", "Tova Lind") + "Hmm.") + [TOOL_TOKENS[TOOL_END]]
              + _ids(tok, "Done.") + [CHAT_TOKENS[IM_END]])
    ran = []
    tools = {"search": lambda q: ran.append(q) or f"page of {q}"}
    ids, mask = T.generate_with_tools(ScriptedModel(prompt, script), tok, prompt, tools,
                                      max_new_tokens=40)
    text = tok.decode(ids)
    assert ran == ["Tova Lind"], ran
    assert text.count("page of Tova Lind") == 1 and "error: <|tool_end|> with no" in text, text
    assert [i for i, m in zip(ids, mask) if m] == script
