"""Answers to the Hallucinations and tools assignment (chapter 7): right ones written two ways
(and a few more right ones in ``MORE_RIGHT``), and wrong ones, each of which must lose its task's
points. Used by tests/test_tools_checks.py, tests/test_rule_audit.py and
tests/submissions/make_tools_submissions.py.

Keys are the grade ids of the answer cells, which are also the function names."""

RATE = r'''import re


def hallucination_rate(answers, truths, refusals):
    if not (len(answers) == len(truths) == len(refusals)):
        raise ValueError(f"one truth and one refusal flag per answer: got {len(answers)} answers, "
                         f"{len(truths)} truths and {len(refusals)} flags")
    if not answers:
        raise ValueError("no answers: the rate of nothing is undefined")
    made_up = 0
    for answer, truth, refused in zip(answers, truths, refusals):
        stated = re.search(r"(?<!\w)" + re.escape(truth.lower()) + r"(?!\w)", answer.lower())
        if not refused and stated is None:
            made_up += 1
    return made_up / len(answers)'''

REFUSAL_DATA = '''from course_lib.hallucination import REFUSAL


def build_refusal_data(probe_results, threshold):
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    data = []
    for r in probe_results:
        if not r.right:
            raise ValueError(f"no answers for {r.question!r}")
        knows = sum(r.right) >= threshold * len(r.right)
        data.append([{"role": "user", "content": r.question},
                     {"role": "assistant", "content": r.reference if knows else REFUSAL}])
    return data'''

PARSE = '''def parse_tool_call(ids, tokenizer):
    start = tokenizer.special_tokens["<|tool_start|>"]
    end = tokenizer.special_tokens["<|tool_end|>"]
    ids = list(ids)
    starts = [i for i, t in enumerate(ids) if t == start]
    if not starts:
        return None
    s = starts[-1]
    if end not in ids[s + 1:]:
        return None
    e = ids.index(end, s + 1)
    text = tokenizer.decode(ids[s + 1:e])
    name, colon, argument = text.partition(":")
    name, argument = name.strip(), argument.strip()
    if not colon or not name or not argument:
        raise ValueError(f"malformed call {text!r}: write 'tool: argument'")
    return name, argument'''

LOOP = '''import torch


def run_tool_loop(model, tokenizer, prompt, tools, max_calls, max_new_tokens=64):
    special = tokenizer.special_tokens
    ids, mask, written, calls = [], [], 0, 0
    with torch.no_grad():
        while written < max_new_tokens:
            logits, _ = model(torch.tensor([list(prompt) + ids]))
            nxt = int(logits[0, -1].argmax())
            ids.append(nxt)
            mask.append(1)
            written += 1
            if nxt == special["<|im_end|>"]:
                break
            if nxt != special["<|tool_end|>"]:
                continue
            calls += 1
            try:
                call = parse_tool_call(ids, tokenizer)
            except ValueError as e:
                result = f"error: {e}"
            else:
                if call is None:
                    result = "error: <|tool_end|> without a call"
                elif calls > max_calls:
                    result = f"error: at most {max_calls} tool calls per reply"
                elif call[0] not in tools:
                    result = f"error: unknown tool {call[0]!r}"
                else:
                    try:
                        result = str(tools[call[0]](call[1]))
                    except Exception as e:
                        result = f"error: {type(e).__name__}: {e}"
            pasted = ([special["<|result_start|>"]] + tokenizer.encode_ordinary(result)
                      + [special["<|result_end|>"]])
            ids += pasted
            mask += [0] * len(pasted)
    return ids, mask'''

CORRECT = {"hallucination_rate": RATE, "build_refusal_data": REFUSAL_DATA,
           "parse_tool_call": PARSE, "run_tool_loop": LOOP}

ALTERNATIVE = {
    # \\b and re.IGNORECASE (the truths begin and end with a word character), a generator
    "hallucination_rate": r'''import re


def hallucination_rate(answers, truths, refusals):
    if len({len(answers), len(truths), len(refusals)}) != 1 or len(answers) == 0:
        raise ValueError("answers, truths and refusals: equal lengths, at least one")
    def states(answer, truth):
        return re.search(rf"\b{re.escape(truth)}\b", answer, flags=re.IGNORECASE) is not None
    return sum(not r and not states(a, t) for a, t, r in zip(answers, truths, refusals)) / len(answers)''',
    # the share_right property, a comprehension, the keys in another order
    "build_refusal_data": '''from course_lib.hallucination import REFUSAL


def build_refusal_data(probe_results, threshold):
    if threshold <= 0 or threshold > 1:
        raise ValueError("threshold must be in (0, 1]")
    if any(len(r.right) == 0 for r in probe_results):
        raise ValueError("a probe result without answers")
    return [[{"content": r.question, "role": "user"},
             {"content": r.reference if r.share_right >= threshold else REFUSAL,
              "role": "assistant"}] for r in probe_results]''',
    # a scan from the end, str.split with maxsplit, ids from course_lib.assets
    "parse_tool_call": '''from course_lib.assets import TOOL_TOKENS


def parse_tool_call(ids, tokenizer):
    start, end = TOOL_TOKENS["<|tool_start|>"], TOOL_TOKENS["<|tool_end|>"]
    for s in range(len(ids) - 1, -1, -1):
        if ids[s] == start:
            break
    else:
        return None
    for e in range(s + 1, len(ids)):
        if ids[e] == end:
            break
    else:
        return None
    body = tokenizer.decode(ids[s + 1:e])
    if ":" not in body:
        raise ValueError("no ':' in the call")
    tool, argument = (x.strip() for x in body.split(":", 1))
    if tool == "" or argument == "":
        raise ValueError("a call needs a tool and an argument")
    return (tool, argument)''',
    # its own call tracking (no parse_tool_call), a for loop over the model's tokens, its own
    # error words, tensors returned
    "run_tool_loop": '''import torch
from course_lib.assets import CHAT_TOKENS, TOOL_TOKENS

IM_END = CHAT_TOKENS["<|im_end|>"]
START, END = TOOL_TOKENS["<|tool_start|>"], TOOL_TOKENS["<|tool_end|>"]
R_START, R_END = TOOL_TOKENS["<|result_start|>"], TOOL_TOKENS["<|result_end|>"]


def run_tool_loop(model, tokenizer, prompt, tools, max_calls, max_new_tokens=64):
    reply, trained, opened, n_calls = [], [], None, 0
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = model(torch.tensor(prompt + reply, dtype=torch.long)[None])[0]
        token = logits[0, -1].argmax().item()
        reply.append(token)
        trained.append(1)
        if token == IM_END:
            break
        if token == START:
            opened = len(reply)
        if token != END:
            continue
        n_calls += 1
        if opened is None:
            output = "error: nothing to close"
        else:
            text = tokenizer.decode(reply[opened:-1])
            opened = None
            name, sep, arg = text.partition(":")
            name, arg = name.strip(), arg.strip()
            if not (sep and name and arg):
                output = "error: malformed call " + repr(text)
            elif n_calls > max_calls:
                output = "error: too many calls"
            elif name not in tools:
                output = "error: no tool named " + name
            else:
                try:
                    output = f"{tools[name](arg)}"
                except BaseException as exc:
                    output = "error: the tool failed (" + repr(exc) + ")"
        pasted = [R_START, *tokenizer.encode_ordinary(output), R_END]
        reply.extend(pasted)
        trained.extend(0 for _ in pasted)
    return torch.tensor(reply), torch.tensor(trained)''',
}

MORE_RIGHT = {
    # the words of the answer compared by hand (no regex): a truth preceded and followed by a
    # character that is not alphanumeric and not _
    "rate_by_hand": ("hallucination_rate", '''def hallucination_rate(answers, truths, refusals):
    n = len(answers)
    if n == 0 or len(truths) != n or len(refusals) != n:
        raise ValueError("bad input")

    def word_char(c):
        return c.isalnum() or c == "_"

    def states(answer, truth):
        a, t = answer.lower(), truth.lower()
        i = a.find(t)
        while i != -1:
            before = a[i - 1] if i else " "
            after = a[i + len(t)] if i + len(t) < len(a) else " "
            if not word_char(before) and not word_char(after):
                return True
            i = a.find(t, i + 1)
        return False

    bad = [not refusals[i] and not states(answers[i], truths[i]) for i in range(n)]
    return float(sum(bad)) / n'''),
    # a tuple of tuples, the threshold compared as a fraction
    "refusal_fractions": ("build_refusal_data", '''from fractions import Fraction
from course_lib.hallucination import REFUSAL


def build_refusal_data(probe_results, threshold):
    if not (0 < threshold <= 1):
        raise ValueError("threshold out of range")
    out = []
    for r in probe_results:
        n = len(r.right)
        if n == 0:
            raise ValueError("empty probe")
        known = Fraction(sum(r.right), n) >= Fraction(threshold)
        out.append((dict(role="user", content=r.question),
                    dict(role="assistant", content=r.reference if known else REFUSAL)))
    return out'''),
    # a list instead of a tuple; regular expression on the decoded text
    "parse_regex": ("parse_tool_call", '''import re


def parse_tool_call(ids, tokenizer):
    text = tokenizer.decode(list(ids))
    if "<|tool_start|>" not in text:
        return None
    last = text.rsplit("<|tool_start|>", 1)[1]
    if "<|tool_end|>" not in last:
        return None
    body = last.split("<|tool_end|>", 1)[0]
    m = re.fullmatch(r"\\s*([^:]*?)\\s*:\\s*(.*?)\\s*", body, flags=re.S)
    if not m or not m.group(1) or not m.group(2):
        raise ValueError("malformed call")
    return [m.group(1), m.group(2)]'''),
    # the window cropped to the model's block_size, the calls counted before parsing, a result
    # for every closed call built by a helper
    "loop_cropped_window": ("run_tool_loop", '''import torch


def _result(ids, tokenizer, tools, calls, max_calls):
    try:
        call = parse_tool_call(ids, tokenizer)
    except ValueError as e:
        return "error: " + str(e)
    if call is None:
        return "error: stray <|tool_end|>"
    if calls > max_calls:
        return "error: call budget spent"
    name, argument = call
    fn = tools.get(name)
    if fn is None:
        return f"error: {name} is not a tool"
    try:
        return str(fn(argument))
    except Exception as e:
        return f"error: {e!r}"


@torch.no_grad()
def run_tool_loop(model, tokenizer, prompt, tools, max_calls, max_new_tokens=64):
    sp = tokenizer.special_tokens
    ids, mask, calls = [], [], 0
    while mask.count(1) < max_new_tokens:
        window = (list(prompt) + ids)[-model.config.block_size:]
        nxt = model(torch.tensor([window]))[0][0, -1].argmax().item()
        ids.append(nxt)
        mask.append(1)
        if nxt == sp["<|im_end|>"]:
            return ids, mask
        if nxt == sp["<|tool_end|>"]:
            calls += 1
            body = tokenizer.encode_ordinary(_result(ids, tokenizer, tools, calls, max_calls))
            ids.extend([sp["<|result_start|>"], *body, sp["<|result_end|>"]])
            mask.extend([0] * (len(body) + 2))
    return ids, mask'''),
}

WRONG = {
    # -- hallucination_rate ----------------------------------------------------------------------
    # a refusal that does not state the truth counted as a hallucination
    "rate_counts_refusals": ("hallucination_rate", RATE.replace(
        "if not refused and stated is None:", "if stated is None:")),
    # the truth found inside longer words ("1851" in "18512")
    "rate_substring": ("hallucination_rate", RATE.replace(
        'stated = re.search(r"(?<!\\w)" + re.escape(truth.lower()) + r"(?!\\w)", answer.lower())',
        "stated = True if truth.lower() in answer.lower() else None")),
    # the case kept: "kessel" does not state "Kessel"
    "rate_case_sensitive": ("hallucination_rate", RATE.replace(
        're.escape(truth.lower()) + r"(?!\\w)", answer.lower())',
        're.escape(truth) + r"(?!\\w)", answer)')),
    # -- build_refusal_data ----------------------------------------------------------------------
    # more than the threshold: a fact right in exactly threshold of the samples is refused
    "refusal_strict": ("build_refusal_data", REFUSAL_DATA.replace(
        "knows = sum(r.right) >= threshold * len(r.right)",
        "knows = sum(r.right) > threshold * len(r.right)")),
    # known only when every sample was right
    "refusal_all_right": ("build_refusal_data", REFUSAL_DATA.replace(
        "knows = sum(r.right) >= threshold * len(r.right)", "knows = all(r.right)")),
    # -- parse_tool_call -------------------------------------------------------------------------
    # each token decoded on its own: a character split across tokens comes out as two �
    "parse_token_by_token": ("parse_tool_call", PARSE.replace(
        "text = tokenizer.decode(ids[s + 1:e])",
        'text = "".join(tokenizer.decode([i]) for i in ids[s + 1:e])')),
    # the ':' looked for as a token of its own: a ':' merged into a longer token is missed
    "parse_colon_token": ("parse_tool_call", PARSE.replace(
        '''    text = tokenizer.decode(ids[s + 1:e])
    name, colon, argument = text.partition(":")
    name, argument = name.strip(), argument.strip()''',
        '''    text = tokenizer.decode(ids[s + 1:e])
    body, colon_id = ids[s + 1:e], tokenizer.encode_ordinary(":")[0]
    colon = colon_id in body
    k = body.index(colon_id) if colon else len(body)
    name = tokenizer.decode(body[:k]).strip()
    argument = tokenizer.decode(body[k + 1:]).strip()''')),
    # the first call in the ids instead of the last
    "parse_first_call": ("parse_tool_call", PARSE.replace("s = starts[-1]", "s = starts[0]")),
    # -- run_tool_loop ---------------------------------------------------------------------------
    # the pasted result trained: mask 1 on the tool's output
    "loop_trains_on_results": ("run_tool_loop", LOOP.replace(
        "mask += [0] * len(pasted)", "mask += [1] * len(pasted)")),
    # stops at <|im_end|> only: a model that never writes it is run for ever
    "loop_never_stops": ("run_tool_loop", LOOP.replace(
        "while written < max_new_tokens:", "while True:")),
    # the pasted tokens counted towards max_new_tokens
    "loop_counts_pasted": ("run_tool_loop", LOOP.replace(
        "            mask += [0] * len(pasted)",
        "            mask += [0] * len(pasted)\n            written += len(pasted)")),
    # a tool that raises stops the loop (only ValueError is caught)
    "loop_catches_only_value_error": ("run_tool_loop", LOOP.replace(
        "                    except Exception as e:", "                    except ValueError as e:")),
}

# one wrong answer per rule of the task text that the wrong answers above leave unbroken, each
# breaking that rule only (tests/rule_audit.py names them): name -> (task, source)
RULE_WRONG = {
    # -- hallucination_rate ----------------------------------------------------------------------
    # the share of right answers (the ones that state the truth)
    "rate_of_right_answers": ("hallucination_rate", RATE.replace(
        "if not refused and stated is None:", "if not refused and stated is not None:")),
    # divided by the answers that do not refuse
    "rate_over_answered": ("hallucination_rate", RATE.replace(
        "    return made_up / len(answers)",
        "    answered = sum(1 for r in refusals if not r)\n"
        "    return made_up / answered if answered else 0.0")),
    # letters and digits only as word characters: "year_1851" states "1851"
    "rate_underscore_separates": ("hallucination_rate", RATE.replace(
        'r"(?<!\\w)" + re.escape(truth.lower()) + r"(?!\\w)"',
        'r"(?<![^\\W_])" + re.escape(truth.lower()) + r"(?![^\\W_])"')),
    # zip stops at the shortest list: no ValueError for lists of different lengths
    "rate_lengths_unchecked": ("hallucination_rate", RATE.replace(
        '''    if not (len(answers) == len(truths) == len(refusals)):
        raise ValueError(f"one truth and one refusal flag per answer: got {len(answers)} answers, "
                         f"{len(truths)} truths and {len(refusals)} flags")
''', "")),
    # no answers: 0.0 instead of ValueError
    "rate_empty_is_zero": ("hallucination_rate", RATE.replace(
        '''        raise ValueError("no answers: the rate of nothing is undefined")''',
        "        return 0.0")),
    # -- build_refusal_data ----------------------------------------------------------------------
    # the conversations of the known facts only
    "refusal_skips_unknown": ("build_refusal_data", REFUSAL_DATA.replace(
        '''        data.append([{"role": "user", "content": r.question},''',
        '''        if not knows:
            continue
        data.append([{"role": "user", "content": r.question},''')),
    # the bare truth ("1851") instead of the reference answer
    "refusal_answers_truth": ("build_refusal_data", REFUSAL_DATA.replace(
        "r.reference if knows else REFUSAL", "r.truth if knows else REFUSAL")),
    # a refusal in other words than REFUSAL
    "refusal_own_words": ("build_refusal_data", REFUSAL_DATA.replace(
        "r.reference if knows else REFUSAL", 'r.reference if knows else "I don\'t know."')),
    # any threshold accepted
    "refusal_threshold_unchecked": ("build_refusal_data", REFUSAL_DATA.replace(
        '''    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
''', "")),
    # the threshold checked per result: an empty list with a bad threshold returns []
    "refusal_threshold_checked_per_result": ("build_refusal_data", REFUSAL_DATA.replace(
        '''    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    data = []
    for r in probe_results:
''', '''    data = []
    for r in probe_results:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
''')),
    # a result without answers goes through (0 >= threshold * 0: answered)
    "refusal_no_answers_unchecked": ("build_refusal_data", REFUSAL_DATA.replace(
        '''        if not r.right:
            raise ValueError(f"no answers for {r.question!r}")
''', "")),
    # -- parse_tool_call -------------------------------------------------------------------------
    # the last <|tool_end|> after the last <|tool_start|>
    "parse_last_tool_end": ("parse_tool_call", PARSE.replace(
        "e = ids.index(end, s + 1)", "e = len(ids) - 1 - ids[::-1].index(end)")),
    # cut at the last ':'
    "parse_last_colon": ("parse_tool_call", PARSE.replace(
        'name, colon, argument = text.partition(":")', 'name, colon, argument = text.rpartition(":")')),
    # the spaces kept
    "parse_no_strip": ("parse_tool_call", PARSE.replace(
        "name, argument = name.strip(), argument.strip()\n    if not colon or not name or not argument:",
        "if not colon or not name.strip() or not argument.strip():")),
    # ValueError (not None) when there is no call at all
    "parse_no_start_raises": ("parse_tool_call", PARSE.replace(
        "    if not starts:\n        return None",
        '    if not starts:\n        raise ValueError("no call")')),
    # the last closed call, even when a later one is still open
    "parse_any_closed_call": ("parse_tool_call", PARSE.replace(
        "    s = starts[-1]\n    if end not in ids[s + 1:]:\n        return None",
        "    closed = [i for i in starts if end in ids[i + 1:]]\n    if not closed:\n"
        "        return None\n    s = closed[-1]")),
    # no ':' is not an error: the whole text is the tool, the argument empty
    "parse_no_colon_ok": ("parse_tool_call", PARSE.replace(
        "if not colon or not name or not argument:", "if not name or (colon and not argument):")),
    # an empty tool name goes through
    "parse_empty_name_ok": ("parse_tool_call", PARSE.replace(
        "if not colon or not name or not argument:", "if not colon or not argument:")),
    # an argument of spaces goes through (checked before stripping)
    "parse_spaces_argument_ok": ("parse_tool_call", PARSE.replace(
        '''    name, colon, argument = text.partition(":")
    name, argument = name.strip(), argument.strip()
    if not colon or not name or not argument:''',
        '''    name, colon, argument = text.partition(":")
    if not colon or not name.strip() or not argument:
        raise ValueError(f"malformed call {text!r}: write 'tool: argument'")
    name, argument = name.strip(), argument.strip()
    if False:''')),
    # an unknown tool is a malformed call
    "parse_checks_the_tool": ("parse_tool_call", PARSE.replace(
        "    return name, argument",
        '    if name not in ("search", "calculator", "weather"):\n'
        '        raise ValueError(f"unknown tool {name!r}")\n    return name, argument')),
    # -- run_tool_loop ---------------------------------------------------------------------------
    # the calls the model writes left out of the mask
    "loop_calls_untrained": ("run_tool_loop", LOOP.replace(
        "            calls += 1\n",
        "            calls += 1\n"
        '            opened = [i for i, t in enumerate(ids) if t == special["<|tool_start|>"]]\n'
        "            k = opened[-1] if opened else len(ids) - 1\n"
        "            mask[k:] = [0] * (len(mask) - k)\n")),
    # the model fed the reply without the prompt
    "loop_without_prompt": ("run_tool_loop", LOOP.replace(
        "model(torch.tensor([list(prompt) + ids]))", "model(torch.tensor([ids or list(prompt)]))")),
    # the results returned but never fed to the model
    "loop_results_not_fed": ("run_tool_loop", LOOP.replace(
        "    ids, mask, written, calls = [], [], 0, 0\n",
        "    ids, mask, written, calls = [], [], 0, 0\n    seen = []\n").replace(
        "model(torch.tensor([list(prompt) + ids]))", "model(torch.tensor([list(prompt) + seen]))").replace(
        "            ids.append(nxt)\n", "            ids.append(nxt)\n            seen.append(nxt)\n")),
    # a draw from the softmax instead of the argmax
    "loop_samples": ("run_tool_loop", LOOP.replace(
        "nxt = int(logits[0, -1].argmax())",
        "nxt = int(torch.multinomial(logits[0, -1].softmax(-1), 1))")),
    # the result pasted without <|result_start|> and <|result_end|>
    "loop_no_result_tokens": ("run_tool_loop", LOOP.replace(
        '''            pasted = ([special["<|result_start|>"]] + tokenizer.encode_ordinary(result)
                      + [special["<|result_end|>"]])''',
        "            pasted = tokenizer.encode_ordinary(result)")),
    # a malformed call raises out of the loop
    "loop_malformed_raises": ("run_tool_loop", LOOP.replace(
        '''            try:
                call = parse_tool_call(ids, tokenizer)
            except ValueError as e:
                result = f"error: {e}"
            else:
                if call is None:''', '''            call = parse_tool_call(ids, tokenizer)
            if True:
                if call is None:''')),
    # a <|tool_end|> with no call: nothing pasted
    "loop_stray_end_ignored": ("run_tool_loop", LOOP.replace(
        '''            calls += 1
            try:''', '''            calls += 1
            try:
                if parse_tool_call(ids, tokenizer) is None:
                    continue
            except ValueError:
                pass
            try:''')),
    # an unknown tool raises KeyError
    "loop_unknown_tool_raises": ("run_tool_loop", LOOP.replace(
        '''                elif call[0] not in tools:
                    result = f"error: unknown tool {call[0]!r}"
                else:
                    try:
                        result = str(tools[call[0]](call[1]))''', '''                else:
                    tool = tools[call[0]]
                    try:
                        result = str(tool(call[1]))''')),
    # max_calls ignored
    "loop_ignores_max_calls": ("run_tool_loop", LOOP.replace(
        '''                elif calls > max_calls:
                    result = f"error: at most {max_calls} tool calls per reply"
''', "")),
    # only the calls that parse are counted
    "loop_counts_good_calls_only": ("run_tool_loop", LOOP.replace(
        "            calls += 1\n            try:", "            try:").replace(
        "                if call is None:", "                calls += call is not None\n"
                                           "                if call is None:")),
    # the error results start with "Error:"
    "loop_error_capitalised": ("run_tool_loop", LOOP.replace(
        "            pasted = ([special", '            result = "E" + result[1:] if result.startswith("error:") else result\n'
                                         "            pasted = ([special")),
    # <|im_end|> dropped from the reply
    "loop_drops_im_end": ("run_tool_loop", LOOP.replace(
        '''            if nxt == special["<|im_end|>"]:
                break''', '''            if nxt == special["<|im_end|>"]:
                ids.pop()
                mask.pop()
                break''')),
    # the prompt returned too
    "loop_returns_prompt": ("run_tool_loop", LOOP.replace(
        "    return ids, mask", "    return list(prompt) + ids, [0] * len(prompt) + mask")),
}

for _table in (WRONG, RULE_WRONG):
    for _name, (_task, _src) in _table.items():
        assert _src != CORRECT[_task], f"{_name}: the replacement did not apply"
