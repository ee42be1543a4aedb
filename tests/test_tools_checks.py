"""Chapter 7's checks: right answers written several ways pass (a \\b regex, share_right,
fractions, a parser on the decoded text, a loop with its own call tracking and error words,
tensors instead of lists), every wrong answer fails its own check only, with the input, the
difference and a hint; the hidden test cells' hand-written cases alone catch every wrong answer;
calling course_lib.hallucination, course_lib.tools or course_lib.chat is caught while ProbeResult
and the tokenizer builders stay usable; a loop that never stops is stopped and told so; the
scripted models write their script greedily and notice a window that is not the reply."""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import pytest
import torch

from course_lib import chat as C
from course_lib import hallucination as H
from course_lib import tools as T
from course_lib.assets import SPECIAL_TOKENS
from course_lib.grading import checks, verify
from course_lib.grading import notebook as nbtools
from course_lib.grading import tools as G

answers = importlib.import_module("tools_answers")

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "tools" / "tools.ipynb"
HELPERS = {"hallucination_rate": "hallucination_rate_or_error",
           "build_refusal_data": "refusal_data_from_rows",
           "parse_tool_call": "parse_with_tool_tokenizer",
           "run_tool_loop": "run_tool_loop_on_script"}
EVERY_WRONG = {**answers.WRONG, **answers.RULE_WRONG}


def helper_source(grade_id: str) -> str:
    """A locked cell of the notebook through which the checks call the student's function."""
    nb = json.loads(SOLUTION.read_text())
    return next("".join(c["source"]) for c in nb["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def load(overrides: dict) -> dict:
    """A notebook namespace: the answers (the right ones unless overridden) and the locked cells."""
    ns: dict = {}
    for name in answers.CORRECT:
        exec(overrides.get(name, answers.CORRECT[name]), ns)  # noqa: S102 (the answers are ours)
    for helper in HELPERS.values():
        exec(helper_source(helper), ns)  # noqa: S102
    return ns


def graded(ns: dict, task: str):
    """What a test cell passes to the check of ``task``."""
    return ns[HELPERS[task]]


def check(task, fn, **kw):
    getattr(G, f"check_{task}")(fn, **kw)


@pytest.mark.parametrize("task", list(G.TASKS))
@pytest.mark.parametrize("which", ["correct", "alternative"])
def test_right_answers_pass(task, which):
    ns = load(answers.CORRECT if which == "correct" else answers.ALTERNATIVE)
    check(task, graded(ns, task))
    check(task, graded(ns, task), seed=7, n_random=8)


@pytest.mark.parametrize("name", list(answers.MORE_RIGHT))
def test_more_right_answers_pass(name):
    task, src = answers.MORE_RIGHT[name]
    ns = load({task: src})
    check(task, graded(ns, task))
    check(task, graded(ns, task), seed=11, n_random=8)


@pytest.mark.parametrize("name", list(EVERY_WRONG))
def test_wrong_answers_fail(name):
    task, src = EVERY_WRONG[name]
    with pytest.raises(AssertionError) as e:
        check(task, graded(load({task: src}), task))
    msg = str(e.value)
    assert G.TASKS[task].name in msg and "hint:" in msg, msg
    assert "difference:" in msg or "raised" in msg, msg


@pytest.mark.parametrize("name", list(answers.WRONG))
def test_each_wrong_answer_fails_only_its_own_check(name):
    """The other checks pass: run_tool_loop calls parse_tool_call, and while it is checked that
    name is the course's, so a wrong parser costs its own task only."""
    task, src = answers.WRONG[name]
    ns = load({task: src})
    for other in G.TASKS:
        if other != task:
            check(other, graded(ns, other))


@pytest.mark.parametrize("name,says", [
    ("rate_counts_refusals", "a refusal never counts"),
    ("rate_substring", "it must stand as whole words"),
    ("rate_case_sensitive", "compare in any case"),
    ("rate_of_right_answers", "count the answers that do NOT state the truth"),
    ("rate_over_answered", "divide by all answers, refusals included"),
    ("rate_underscore_separates", "'_' is a word character"),
    ("rate_lengths_unchecked", "raise ValueError (got 0.0"),
    ("rate_empty_is_zero", "raise ValueError (got 0.0"),
    ("refusal_strict", "right in 2 of 4 samples, at least 0.5 of them, so the data answers it"),
    ("refusal_all_right", "right in 2 of 4 samples, at least 0.5 of them"),
    ("refusal_skips_unknown", "2 conversations for 3 probe results"),
    ("refusal_answers_truth", "the assistant says '1851', but it should say 'Tova Lind was"),
    ("refusal_own_words", "fewer than 0.5 of them, so the data refuses"),
    ("refusal_threshold_unchecked", "threshold must be in (0, 1], got 0.0': raise ValueError"),
    ("refusal_threshold_checked_per_result", "raise ValueError (got [] instead)"),
    ("refusal_no_answers_unchecked", "has no answers"),
    ("parse_token_by_token", "decode the call's ids together"),
    ("parse_colon_token", "on '<|tool_start|>search:\\nKessel Bay<|tool_end|>'"),
    ("parse_first_call", "take the last <|tool_start|>"),
    ("parse_last_tool_end", "instead of ('search', 'Kessel')"),
    ("parse_last_colon", "cut at the first (an argument may hold ':')"),
    ("parse_no_strip", "not stripped of spaces"),
    ("parse_no_start_raises", "raised ValueError ('no call')"),
    ("parse_any_closed_call", "the last <|tool_start|> is not closed yet: return None"),
    ("parse_no_colon_ok", "is malformed"),
    ("parse_empty_name_ok", "got ('', 'Tova Lind')"),
    ("parse_spaces_argument_ok", "got ('search', '')"),
    ("parse_checks_the_tool", "raised ValueError (\"unknown tool 'browser'\")"),
    ("loop_calls_untrained", "a token the model wrote: 1"),
    ("loop_trains_on_results", "the model must not learn to write tool outputs"),
    ("loop_never_stops", "the loop did not stop"),
    ("loop_counts_pasted", "pasted tokens do not count"),
    ("loop_catches_only_value_error", "raised RuntimeError"),
    ("loop_without_prompt", "feed it all of them each step"),
    ("loop_results_not_fed", "feed it all of them each step"),
    ("loop_samples", "the model's token is"),
    ("loop_no_result_tokens", "the result of call 1 should be pasted there"),
    ("loop_malformed_raises", "raised ValueError"),
    ("loop_stray_end_ignored", "<|tool_end|> with no <|tool_start|> before it"),
    ("loop_unknown_tool_raises", "raised KeyError"),
    ("loop_ignores_max_calls", "but it should be an error"),
    ("loop_counts_good_calls_only", "but it should be an error"),
    ("loop_error_capitalised", "is \"Error: malformed"),
    ("loop_drops_im_end", "next comes the model's token '<|im_end|>'"),
    ("loop_returns_prompt", "feed it all of them each step"),
])
def test_wrong_answers_are_told_what_went_wrong(name, says):
    task, src = EVERY_WRONG[name]
    with pytest.raises(AssertionError, match="hint:") as e:
        check(task, graded(load({task: src}), task))
    assert says in str(e.value), str(e.value)


def test_every_wrong_answer_has_its_message_tested():
    names = {n for n, _ in test_wrong_answers_are_told_what_went_wrong.pytestmark[0].args[1]}
    assert names == set(EVERY_WRONG)


def test_a_loop_that_never_stops_is_stopped_fast():
    """The scripted model counts its forward calls: a loop that ignores max_new_tokens is cut
    off at 2 * max_new_tokens + 10 calls and reported, in well under a second, instead of
    running into the grader's time limit."""
    ns = load({"run_tool_loop": answers.WRONG["loop_never_stops"][1]})
    case = G._loop_case("Tell me a story.", "Once", " more", ["search"], 3, 24)
    start = time.perf_counter()
    out = ns["run_tool_loop_on_script"](*case)
    assert out == {"runaway": 2 * 24 + 11}
    assert time.perf_counter() - start < 2.0
    message = checks.judge(G.TASKS["run_tool_loop"], case,
                           checks.expected_data(G.TASKS["run_tool_loop"], case),
                           {"ok": True, "value": checks.to_data(out)})
    assert "the loop did not stop" in message and "max_new_tokens=24" in message


# -- the hidden tests ------------------------------------------------------------------------------


def hidden_literal_cases() -> dict:
    """``{task: the argument tuples of its hidden call's cases=[...] only}``, as the verifier
    builds them."""
    out = {}
    for cell in verify.graded_cells(nbtools.read_json(SOLUTION)):
        for call in cell.calls:
            if "cases" in call.kwargs:
                task = G.TASKS[call.check.removeprefix("check_")]
                literal = call.kwargs["cases"]
                out[call.check.removeprefix("check_")] = task.cases(
                    seed=0, n_random=0, extra=literal)[-len(literal):]
    return out


@pytest.mark.parametrize("name", list(EVERY_WRONG))
def test_the_hidden_hand_written_cases_alone_catch_every_wrong_answer(name):
    """Every rule the task text states has a hand-written case in the hidden test cell: the
    literal cases alone, without the fixed and random ones, fail each wrong answer."""
    task_name, src = EVERY_WRONG[name]
    task = G.TASKS[task_name]
    fn = graded(load({task_name: src}), task_name)
    cases = hidden_literal_cases()[task_name]
    failures = [checks.judge(task, a, checks.expected_data(task, a),
                             checks.call_outcome(task, fn, a)) for a in cases]
    assert any(failures), f"{name} passes every hand-written hidden case of {task_name}"


def test_the_hidden_hand_written_cases_pass_the_right_answers():
    literal = hidden_literal_cases()
    assert set(literal) == set(G.TASKS)
    for ns in (load(answers.CORRECT), load(answers.ALTERNATIVE)):
        for task_name, cases in literal.items():
            task = G.TASKS[task_name]
            for a in cases:
                assert checks.judge(task, a, checks.expected_data(task, a),
                                    checks.call_outcome(task, graded(ns, task_name), a)) is None


def test_hidden_tests_use_other_inputs():
    nb = json.loads(SOLUTION.read_text())
    sources = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert all("### BEGIN HIDDEN TESTS" in s for s in sources if "checks.check_" in s)
    for task in G.TASKS:
        visible = checks.task_cases(G.TASKS[task])
        hidden = checks.task_cases(G.TASKS[task], seed=5, n_random=6)
        assert {repr(c) for c in hidden} - {repr(c) for c in visible}, task


# -- the references are off limits, the building blocks are not ------------------------------------


@pytest.mark.parametrize("task,src", [
    ("hallucination_rate", "from course_lib.hallucination import hallucination_rate"),
    ("hallucination_rate", '''from course_lib.chat import says


def hallucination_rate(answers, truths, refusals):
    if not answers or not (len(answers) == len(truths) == len(refusals)):
        raise ValueError("bad lists")
    return sum(not r and not says(a, t) for a, t, r in zip(answers, truths, refusals)) / len(answers)'''),
    ("build_refusal_data", '''import course_lib.hallucination as h


def build_refusal_data(probe_results, threshold):
    return h.build_refusal_data(probe_results, threshold)'''),
    ("parse_tool_call", "from course_lib.tools import parse_tool_call"),
    ("parse_tool_call", '''from course_lib.tools import parse_call


def parse_tool_call(ids, tokenizer):
    text = tokenizer.decode(list(ids))
    if "<|tool_start|>" not in text:
        return None
    last = text.rsplit("<|tool_start|>", 1)[1]
    if "<|tool_end|>" not in last:
        return None
    return parse_call(last.split("<|tool_end|>")[0], {"search": 0, "calculator": 0})'''),
    ("run_tool_loop", '''from course_lib.tools import generate_with_tools


def run_tool_loop(model, tokenizer, prompt, tools, max_calls, max_new_tokens=64):
    return generate_with_tools(model, tokenizer, prompt, tools, max_calls, max_new_tokens)'''),
    ("run_tool_loop", answers.LOOP.replace(
        "            try:\n                call = parse_tool_call(ids, tokenizer)",
        "            try:\n                from course_lib.tools import call_tool\n"
        "                call = parse_tool_call(ids, tokenizer)").replace(
        "result = str(tools[call[0]](call[1]))", "result = call_tool(call[0], call[1], tools)")),
    ("run_tool_loop", '''from course_lib.grading import tools as g


def run_tool_loop(model, tokenizer, prompt, tools, max_calls, max_new_tokens=64):
    out = g.reference_run_tool_loop_on_script(prompt, model.script, model.repeat, list(tools),
                                              max_calls, max_new_tokens)
    return out["ids"], out["mask"]'''),
])
def test_calling_the_reference_is_caught(task, src):
    with pytest.raises(AssertionError, match="course's reference implementation"):
        check(task, graded(load({task: src}), task))


@pytest.mark.parametrize("task,fn", [
    ("hallucination_rate", G.reference_hallucination_rate_or_error),
    ("build_refusal_data", lambda rows, t: G.on_probe_results(H.build_refusal_data, rows, t)),
    ("parse_tool_call", lambda ids: G.on_tool_tokenizer(T.parse_tool_call, ids)),
    ("run_tool_loop", G.reference_run_tool_loop_on_script),
])
def test_the_reference_itself_is_caught(task, fn):
    with pytest.raises(AssertionError, match="reference"):
        check(task, fn)


def test_probe_results_and_the_tokenizer_builders_may_be_used():
    """ProbeResult (the inputs are made of it, and a student may make more), REFUSAL, and the
    tokenizer builders work inside the checks."""
    refusal = answers.REFUSAL_DATA.replace(
        "    data = []\n",
        "    from course_lib.hallucination import ProbeResult\n"
        "    probe_results = [ProbeResult(r.question, r.truth, r.reference, r.answers, r.right)\n"
        "                     for r in probe_results]\n    data = []\n")
    check("build_refusal_data", graded(load({"build_refusal_data": refusal}),
                                       "build_refusal_data"))
    parse = answers.PARSE.replace(
        "def parse_tool_call(ids, tokenizer):\n",
        "def parse_tool_call(ids, tokenizer):\n"
        "    from course_lib.chat import chat_tokenizer\n"
        "    from course_lib.tools import tool_tokenizer\n"
        "    tokenizer = tool_tokenizer(chat_tokenizer(tokenizer))\n")
    check("parse_tool_call", graded(load({"parse_tool_call": parse}), "parse_tool_call"))


def test_the_references_work_again_after_a_check():
    """The poisoning is undone, even after a student's function raised."""
    ns = load({"hallucination_rate": "from course_lib.hallucination import hallucination_rate"})
    with pytest.raises(AssertionError):
        check("hallucination_rate", graded(ns, "hallucination_rate"))
    assert H.hallucination_rate(["In 1851."], ["1851"], [False]) == 0.0
    assert C.says("In 1851.", "1851")
    assert T.parse_tool_call(G.token_ids("<|tool_start|>search: x<|tool_end|>"),
                             G._tokenizer()) == ("search", "x")


# -- the cases and the scripted model --------------------------------------------------------------


def _loop_results(case):
    out = G.reference_run_tool_loop_on_script(*case)
    texts = [G._text(block[1:-1]) for kind, block in G._parts(out["ids"]) if kind == "pasted"]
    return out, texts


def test_the_edge_cases_are_there():
    """Rates: refusals, uppercase, truths inside longer words and next to '_', every answer
    wrong, lists of unequal lengths, none; refusal data: a share exactly at the threshold,
    threshold 1, bad thresholds (with and without results), a result without answers; calls:
    split characters, two calls, an open call after a closed one, none, ':' in the argument,
    each malformed kind; loops: each kind of error result, a call never closed, replies that
    never end, with and without a result before."""
    rc = checks.task_cases(G.TASKS["hallucination_rate"])
    flat = [(a, t, r) for answers_, truths, refusals in rc
            for a, t, r in zip(answers_, truths, refusals)]
    assert any(r for *_, r in flat) and any(a.isupper() for a, *_ in flat)
    assert any("_1851" in a for a, *_ in flat) and any("18512" in a for a, *_ in flat)
    assert any(len({len(x) for x in c}) > 1 for c in rc) and ([], [], []) in rc
    rates = [G.reference_hallucination_rate_or_error(*c).get("rate") for c in rc]
    assert 1.0 in rates and 0.0 in rates

    fc = checks.task_cases(G.TASKS["build_refusal_data"])
    assert any(sum(r[4]) == t * len(r[4]) and 0 < t < 1 for rows, t in fc for r in rows)
    assert any(t == 1.0 for _, t in fc) and ([], 0.0) in fc and ([], 0.5) in fc
    assert any(not r[4] for rows, _ in fc for r in rows)

    pids = [ids for (ids,) in checks.task_cases(G.TASKS["parse_tool_call"])]
    pc = [G._text(ids) for ids in pids]
    outs = [G.reference_parse_with_tool_tokenizer(ids) for ids in pids]
    assert any("ü" in t for t in pc) and any(t.count("<|tool_start|>") >= 2 for t in pc)
    assert any(o.get("call") is None and "<|tool_start|>" in t for o, t in zip(outs, pc))
    assert sum("raised" in o for o in outs) >= 6
    assert any(o.get("call") and ":" in o["call"][1] for o in outs)

    texts = []
    for case in checks.task_cases(G.TASKS["run_tool_loop"]):
        out, pasted = _loop_results(case)
        texts += pasted
        if SPECIAL_TOKENS["<|im_end|>"] not in out["ids"]:
            assert sum(out["mask"]) == case[5]           # stopped at max_new_tokens
    for kind in ("malformed", "unknown tool", "RuntimeError", "ValueError", "no more tool calls",
                 "with no <|tool_start|>"):
        assert any(t.startswith("error:") and kind in t for t in texts), kind
    assert any(not t.startswith("error:") for t in texts)


def test_cases_are_deterministic():
    for task in G.TASKS:
        a = checks.task_cases(G.TASKS[task], seed=3, n_random=6)
        b = checks.task_cases(G.TASKS[task], seed=3, n_random=6)
        assert repr(a) == repr(b), task


def test_results_cross_as_data():
    for task, fn in [("hallucination_rate", G.reference_hallucination_rate_or_error),
                     ("build_refusal_data", G.reference_refusal_data_from_rows),
                     ("parse_tool_call", G.reference_parse_with_tool_tokenizer),
                     ("run_tool_loop", G.reference_run_tool_loop_on_script)]:
        for case in checks.task_cases(G.TASKS[task])[:4]:
            assert checks.from_data(checks.to_data(case)) == case
            value = fn(*case)
            assert checks.from_data(checks.to_data(value)) == value


def test_the_scripted_model_writes_its_script_greedily():
    tok = G._tokenizer()
    prompt = G.token_ids("<|endoftext|><|im_start|>user<|im_sep|>Hi<|im_end|>"
                         "<|im_start|>assistant<|im_sep|>")
    script = G.token_ids("<|tool_start|>search: Kessel<|tool_end|>South.<|im_end|>")
    model = G.ScriptedModel(prompt, script)
    result = G.token_ids("<|result_start|>Kessel is a port.<|result_end|>")
    k = script.index(SPECIAL_TOKENS["<|tool_end|>"]) + 1    # the call, closed
    reply = script[:k] + result + script[k:k + 2]
    logits, loss = model(torch.tensor([prompt + reply]))
    assert loss is None and logits.shape == (1, len(prompt) + len(reply), model.config.vocab_size)
    assert int(logits[0, -1].argmax()) == script[k + 2]
    assert torch.softmax(logits[0, -1], -1)[script[k + 2]] < 0.01  # a draw would miss it
    confused = SPECIAL_TOKENS["<|endoftext|>"]
    for window in (prompt + script[:k + 2],                 # no result after the call
                   prompt + script[:k],                     # the call closed, no result yet
                   reply,                                   # no prompt
                   prompt + script[:2] + [tok.encode_ordinary("x")[0]],   # not what it wrote
                   prompt + result):                        # a result it did not ask for
        assert model.next_token(window) == confused, tok.decode(window)
    with pytest.raises(TypeError, match="no KV cache"):
        model(torch.tensor([prompt]), cache=object())
    never = G.ScriptedModel(prompt, G.token_ids("a"), G.token_ids(" b c"), limit=3)
    assert [never.own(k) for k in range(5)] == G.token_ids("a b c b c")
    for _ in range(3):
        never(torch.tensor([prompt]))
    with pytest.raises(G.RunawayLoop):
        never(torch.tensor([prompt]))


def test_the_tools_of_the_checks():
    assert G.search_tool("Tova Lind") == G.PAGES["tova lind"]
    assert G.search_tool("Nowhere").startswith("No page matches")
    assert G.calculator_tool("47 + 85") == "132" and G.calculator_tool(" 12 * 3") == "36"
    with pytest.raises(ValueError):
        G.calculator_tool("two plus two")
    with pytest.raises(RuntimeError):
        G.weather_tool("Kessel")
