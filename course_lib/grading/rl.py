"""Checks for the Reinforcement learning assignment (chapter 8).

The student writes the verifier and GRPO's two formulas, which ``course_lib.rl`` holds:

- ``extract_answer(text)``: the integer of the reply's last line when that line is ``Answer: N``
  (spaces or tabs around, ``-`` allowed), the reply cut at its first special token and its
  trailing whitespace ignored; ``None`` for anything else;
- ``reward(text, problem)``: 1.0 when the final answer is ``problem.answer``, else 0.0;
- ``group_advantages(rewards, group_size, normalize_std=True, eps=1e-6)``: each reward minus
  its group's mean (groups: consecutive ``group_size`` entries), divided by the group's unbiased
  standard deviation plus ``eps`` when ``normalize_std``; ``ValueError`` when ``group_size`` is
  below 2 or does not divide the number of rewards;
- ``policy_loss(logprobs, old_logprobs, advantages, mask, clip=0.2)``: minus the masked mean,
  over every answer token of the batch, of ``min(r * A, clamp(r, 1 - clip, 1 + clip) * A)``,
  ``r = exp(logprobs - old_logprobs)``.

Nothing but data crosses to the grader, so three tasks go through a locked cell:
``on_problem`` (a ``world.Problem`` built from a row ``[kind, question, answer, steps]``),
``on_rewards`` (a raised ``ValueError`` as ``{"raised": ...}``; the options a case sets passed
as keywords, the others left to the function's defaults) and ``on_logprobs`` (the loss on
log-probabilities that require a gradient, ``backward`` run, ``{"loss", "grad"}``). A loss is
judged by its value and by its gradient: where the clip binds, no gradient.

``reward`` may call the student's ``extract_answer``: while it is checked, that name is the
course's (``Task.substitute``), so a wrong parser costs its own task only.
"""

from __future__ import annotations

import math
import random

import torch

from course_lib import rl as _rl
from course_lib.assets import CHAT_TOKENS, ENDOFTEXT
from course_lib.grading.checks import (Assignment, Task, as_args, close_number, close_tensor,
                                      loss_tensor_problem, short)
from course_lib.world import Problem, make_problem

REFERENCES = ("course_lib.rl", "course_lib.grading.rl")
DEPENDS = ("course_lib.world",)
REWARD_SUBSTITUTE = {"extract_answer": "course_lib.rl:extract_answer"}
STOPS = (*CHAT_TOKENS, ENDOFTEXT)   # where a reply ends
LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-6
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-7
ADV_RTOL, ADV_ATOL = 1e-4, 1e-5


def _raised(e: ValueError) -> dict:
    return {"raised": "ValueError", "message": short(str(e), 200)}


# -- the locked cells' helpers --------------------------------------------------------------------


def on_problem(reward, text, problem):
    """Call ``reward(text, Problem(kind, question, answer, steps))`` for ``problem``, a row
    ``[kind, question, answer, steps]``; returns what it returned."""
    kind, question, answer, steps = problem
    return reward(str(text), Problem(kind, question, int(answer), list(steps)))


def on_rewards(group_advantages, rewards, group_size, options):
    """Call ``group_advantages(rewards, group_size, **options)`` (``options``: the keywords a case
    sets, ``normalize_std`` and ``eps``; the others are the function's defaults);
    ``{"advantages": what it returned}``, or ``{"raised": "ValueError", "message"}``."""
    try:
        return {"advantages": group_advantages(rewards.clone(), group_size, **dict(options))}
    except ValueError as e:
        return _raised(e)


def on_logprobs(policy_loss, logprobs, old_logprobs, advantages, mask, options):
    """Call ``policy_loss(logprobs, old_logprobs, advantages, mask, **options)`` on a copy of
    ``logprobs`` that requires a gradient and run ``backward`` on the result; ``{"loss": the
    result (detached), "grad": the gradient of logprobs, or None}``."""
    x = logprobs.detach().clone().requires_grad_(True)
    loss = policy_loss(x, old_logprobs.clone(), advantages.clone(), mask.clone(), **dict(options))
    if (isinstance(loss, torch.Tensor) and loss.requires_grad and loss.numel() == 1
            and loss.is_floating_point()):
        loss.reshape(()).backward()
    if isinstance(loss, torch.Tensor):
        loss = loss.detach()
    return {"loss": loss, "grad": x.grad}


def reference_extract_answer(text):
    return _rl.extract_answer(text)


def reference_reward_on_problem(text, problem):
    return on_problem(_rl.reward, text, problem)


def reference_advantages_or_error(rewards, group_size, options):
    return on_rewards(_rl.group_advantages, rewards, group_size, options)


def reference_policy_loss_with_grad(logprobs, old_logprobs, advantages, mask, options):
    return on_logprobs(_rl.policy_loss, logprobs, old_logprobs, advantages, mask, options)


def _shape(actual, keys, cell):
    """None when ``actual`` is what the locked cell ``cell`` returns, else the message."""
    if isinstance(actual, dict) and (set(keys) <= set(actual) or "raised" in actual):
        return None
    return f"not the result of the notebook's locked cell {cell} (was it redefined?)"


# -- extract_answer --------------------------------------------------------------------------------


def _reply(text: str) -> str:
    """The reply: ``text`` up to its first special token (``STOPS``)."""
    for t in STOPS:
        text = text.split(t)[0]
    return text


def _last_line(text: str) -> str:
    return _reply(text).rstrip().split("\n")[-1].strip()


def _why_none(text: str) -> str:
    """Why the reference finds no answer in ``text``, for the messages."""
    reply, last = _reply(text), _last_line(text)
    lines = [ln.strip() for ln in reply.rstrip().split("\n")]
    if "Answer:" not in reply and "Answer:" in text:
        return ("the only 'Answer:' comes after a special token, and the reply ends at its "
                "first special token (<|im_end|>, <|im_start|>, <|im_sep|>, <|endoftext|>)")
    if last.startswith("Answer:"):
        return (f"the last line is {last!r}: after 'Answer:' only spaces or tabs, the digits "
                "and a '-' in front may stand (no '+', ',', '.', words or other text)")
    if any(ln.startswith("Answer:") for ln in lines):
        return (f"an Answer line that is not the last line is no answer (the last line is "
                f"{short(last, 60)})")
    if last.lower().lstrip().startswith("answer"):
        return f"the last line is {last!r}: the line must start with 'Answer:' exactly"
    if "Answer:" in last:
        return f"the last line is {last!r}: nothing may come before 'Answer:'"
    return "there is no 'Answer: N' line"


# (text, what it shows) -- the first must have an answer (the stub returns None)
_EXTRACT_FIXED = [
    "Answer: 42",                                                     # the format
    "We add 17 + 25 one place at a time, from the ones.\nones: 7 + 5 = 12, write 2, carry 1\n"
    "tens: 1 + 2 + 1 = 4, write 4\nSo 17 + 25 = 42.\nAnswer: 42",     # a worked solution
    "So 17 + 25 = 42.\nAnswer: 42\n\n  \n\t\n",                        # trailing blank lines
    "So 9 - 12 = -3.\nAnswer: -3",                                    # negative
    "Answer:7",                                                       # no space
    "Answer: \t 7 \t",                                                # spaces and tabs
    "So 3 + 4 = 7.\n   Answer: 7",                                    # spaces before
    "So 5 + 7 = 12.\nAnswer: 12<|im_end|>",                           # cut at <|im_end|>
    "Answer: 12<|im_end|><|im_start|>user<|im_sep|>And now?<|im_end|>\nAnswer: 13",
    "Answer: 12\n<|endoftext|>Answer: 13",                            # <|endoftext|>
    "Answer: 12<|im_sep|>\nAnswer: 13",                               # <|im_sep|>
    "So 5 + 7 = 12.\n<|im_end|>\nAnswer: 12",                         # after the cut: None
    "So 5 + 7 = 12.<|im_start|>assistant\nAnswer: 12",
    "So 5 + 7 = 12.",                                                 # no Answer line
    "The answer is 12.",
    "",
    "Answer: 12\nLet me check: 5 + 7 = 12.",                          # not the last line
    "Answer: 11\nWait, 5 + 7 = 12.\nAnswer: 12",                      # the last line counts
    "Answer: 11\nAnswer: 12",
    "Answer: 12.",                                                    # more after the number
    "Answer: 12 apples",
    "Answer: 1,234",
    "Answer: 12.0",
    "Answer: +12",
    "Answer: twelve",
    "Answer:",
    "Answer: -",
    "answer: 12",                                                     # exactly 'Answer:'
    "ANSWER: 12",
    "Answer : 12",
    "Final Answer: 12",                                               # nothing before it
    "So the Answer: 12",
    "Answer: 007",                                                    # an integer all the same
    "Answer: -0",
]

_EXTRACT_TAILS = ["", "\n", "  \n\n", "<|im_end|>", "<|im_end|><|im_start|>user<|im_sep|>Hi",
                  "<|endoftext|>Answer: 1", "\nLet me check.", ".", " apples", "\t"]


def _problems(n, seed):
    """``n`` problems like chapter 8's (``evals.rl_problems``: addition and subtraction of
    numbers of up to four digits, worked in compact steps), made from the world's generator."""
    rng = random.Random(f"rl-checks-{seed}")
    return [make_problem(rng, None, ("addition", "subtraction")[i % 2], max_digits=4,
                         style="compact") for i in range(n)]


def _variants(rng, p: Problem) -> list[str]:
    """Replies to ``p`` a model might write: its worked solution, the final line changed or
    moved, the reply cut or continued."""
    steps, right = "\n".join(p.steps), p.answer
    wrong = right + rng.choice([-10, -1, 1, 2, 100])
    return [
        f"{steps}\nAnswer: {right}{rng.choice(_EXTRACT_TAILS)}",
        f"{steps}\nAnswer: {wrong}{rng.choice(_EXTRACT_TAILS)}",
        f"{steps}\nAnswer:{rng.choice(['', ' ', '  ', chr(9)])}{right}",
        f"Answer: {wrong}\n{steps}\nAnswer: {right}",
        f"{steps}\nAnswer: {right}\n{rng.choice(p.steps)}",
        f"{steps}\nAnswer: {right:,}",
        steps,
        f"{steps}\nanswer: {right}",
    ]


def _extract_cases(seed=0, n_random=12, extra=None):
    rng = random.Random(seed + 80_000)
    texts = list(_EXTRACT_FIXED)
    for p in _problems(max(1, (n_random + 7) // 8), seed + 80_000):
        texts += _variants(rng, p)
    out = texts[:len(_EXTRACT_FIXED) + n_random]
    return [(t,) for t in out] + as_args(extra)


def _compare_extract(args, expected, actual):
    (text,) = args
    if actual is not None and (type(actual) is bool or not isinstance(actual, int)):
        return (f"returned {short(actual, 60)} (a {type(actual).__name__}) for {short(text, 120)}: "
                f"return the int {expected!r}" if expected is not None else
                f"returned {short(actual, 60)} (a {type(actual).__name__}): return None here "
                f"({_why_none(text)})")
    if actual == expected:
        return None
    if expected is None:
        return f"returned {actual!r} for {short(text, 160)}, but {_why_none(text)}: return None"
    last = _last_line(text)
    if actual is None:
        cut = (" (the reply ends at its first special token: cut the text there, then take "
               "its last line)" if any(t in text for t in STOPS) else "")
        return (f"returned None for {short(text, 160)}, whose reply ends with the line "
                f"{last!r}: return {expected}{cut}")
    return (f"returned {actual!r} instead of {expected!r} for {short(text, 160)}: the answer is "
            f"the number of the last line ({last!r})")


# -- reward ----------------------------------------------------------------------------------------


def _row(p: Problem) -> list:
    return [p.kind, p.question, p.answer, list(p.steps)]


_SUM = ["addition", "Mia has 17 shells and finds 25 more. How many shells does Mia have now?", 42,
        ["We add 17 + 25 one place at a time, from the ones.",
         "ones: 7 + 5 = 12, write 2, carry 1", "tens: 1 + 2 + 1 = 4, write 4",
         "So 17 + 25 = 42."]]
_NONE_LEFT = ["subtraction", "Tom had 12 coins and gave away 12. How many coins are left?", 0,
              ["We take 12 from 12 one place at a time, from the ones.",
               "ones: 2 - 2 = 0, write 0", "tens: 1 - 1 = 0, write 0", "So 12 - 12 = 0."]]
_BELOW = ["subtraction", "Ana had 9 stones and gave away 12. How many stones are left?", -3,
          ["So 9 - 12 = -3."]]


def _solution(row, final=None) -> str:
    return "\n".join(row[3] + [f"Answer: {row[2] if final is None else final}"])


_REWARD_FIXED = [
    (_solution(_SUM), _SUM),                                          # right: 1.0
    (_solution(_SUM, 41), _SUM),                                      # formatted, wrong: 0.0
    ("\n".join(_SUM[3]), _SUM),                                       # right number, no Answer
    (_solution(_SUM) + "\nLet me check: 17 + 25 = 42.", _SUM),        # not the last line
    (_solution(_SUM) + ".", _SUM),                                    # not the format
    (_solution(_SUM) + "<|im_end|><|im_start|>user<|im_sep|>Answer: 41", _SUM),   # cut
    ("Answer: 41\nWait, 17 + 25 = 42.\nAnswer: 42", _SUM),            # the last one counts
    ("Answer: 42\nWait, 17 + 25 = 41.\nAnswer: 41", _SUM),            # even when wrong
    ("", _SUM),
    (_solution(_NONE_LEFT), _NONE_LEFT),                              # the answer 0
    ("\n".join(_NONE_LEFT[3]), _NONE_LEFT),
    (_solution(_NONE_LEFT, 1), _NONE_LEFT),
    (_solution(_BELOW), _BELOW),                                      # negative
    (_solution(_BELOW, 3), _BELOW),
]


def _reward_cases(seed=0, n_random=12, extra=None):
    rng = random.Random(seed + 81_000)
    out = []
    for p in _problems(max(1, (n_random + 7) // 8), seed + 81_000):
        out += [(t, _row(p)) for t in _variants(rng, p)]
    return list(_REWARD_FIXED) + out[:n_random] + as_args(extra)


def _compare_reward(args, expected, actual):
    text, problem = args
    if isinstance(actual, bool):
        return f"returned {actual!r}, a bool: return the float {expected!r}"
    diff = close_number(expected, actual, rel=0.0, abs_=0.0, what="the reward")
    if diff is None:
        return None
    if isinstance(actual, torch.Tensor) and actual.numel() == 1:
        actual = actual.item()
    final = _rl.extract_answer(text)
    if final is None:
        why = f"the reply has no final answer ({_why_none(text)})"
    elif final != problem[2]:
        why = (f"its final answer is {final}, and the problem's answer is {problem[2]}: a "
               "well-formatted wrong answer earns what no answer earns")
    else:
        why = f"its final answer is {final}, the problem's answer"
    return f"{diff} for {short(text, 160)}: {why}"


# -- group_advantages ------------------------------------------------------------------------------


def _float64_advantages(rewards, group_size, normalize_std=True, eps=1e-6):
    g = rewards.double().view(-1, group_size)
    adv = g - g.mean(dim=1, keepdim=True)
    if normalize_std:
        adv = adv / (g.std(dim=1, keepdim=True) + eps)
    return adv.reshape(-1)


def _adv_safe(rewards, group_size, options) -> bool:
    """The reference (float32) and a float64 computation agree: float rounding never decides a
    case (an all-equal group whose mean is not exact would give noise divided by eps)."""
    if group_size < 2 or rewards.numel() % group_size:
        return True
    want = _rl.group_advantages(rewards, group_size, **options).double()
    return torch.allclose(want, _float64_advantages(rewards, group_size, **options),
                          rtol=1e-6, atol=1e-6)


def _adv(values, group_size, **options):
    return (torch.tensor(values, dtype=torch.float32), group_size, options)


_ADV_FIXED = [
    _adv([1, 0, 1, 1, 0, 0, 0, 0], 4),                  # a mixed group, an all-wrong one
    _adv([1, 0, 0, 1, 1, 1], 2),                        # groups of 2; an all-right group
    _adv([1, 1, 1, 1, 0, 0, 0, 0], 4),                  # every group all equal: all 0
    _adv([1, 1, 0, 0], 2),                              # consecutive groups, not every 2nd
    _adv([0.5, 1.0, 0.0, 0.25, 1.0, 1.0, 0.0, 0.75, 0.25], 3),   # rewards that are not 0/1
    _adv([0, 1, 1, 0, 1], 5),                           # one group
    _adv([1, 0, 0, 0, 1, 1, 1, 0], 4, normalize_std=False),
    _adv([-1.0, 2.0, -1.0, 0.5], 2, normalize_std=False),
    _adv([1, 0, 1, 0], 2, eps=0.25),                    # eps added to the std
    _adv([1, 0, 0, 1, 1, 1], 3, eps=1.0, normalize_std=True),
    _adv([0, 0, 1, 0, 0, 0, 0, 0], 8, normalize_std=True),
    # group_size below 2, or not dividing the number of rewards: ValueError
    _adv([1, 0, 1, 0], 1), _adv([1, 0, 1, 0], 0), _adv([1, 0, 1], 2),
    _adv([1, 0, 1, 0, 1, 0], 4), _adv([1, 0], 3),
]


def _adv_cases(seed=0, n_random=10, extra=None):
    rng = random.Random(seed + 82_000)
    out = []
    while len(out) < n_random:
        size, groups = rng.randrange(2, 9), rng.randrange(1, 6)
        values = rng.choice([[0.0, 1.0], [0.0, 1.0], [0.0, 0.5, 1.0], [-1.0, 0.0, 1.0, 2.0]])
        p = rng.random()
        rewards = []
        for _ in range(groups):
            if rng.random() < 0.25:
                rewards += [rng.choice(values)] * size          # an all-equal group
            else:
                rewards += [values[-1] if rng.random() < p else rng.choice(values)
                            for _ in range(size)]
        options = {}
        if rng.random() < 0.3:
            options["normalize_std"] = rng.random() < 0.5
        if rng.random() < 0.3:
            options["eps"] = rng.choice([1e-6, 1e-4, 0.1, 0.5])
        case = _adv(rewards, size, **options)
        if _adv_safe(*case):
            out.append(case)
    literal = [(torch.tensor(c[0], dtype=torch.float32), c[1], dict(c[2]) if len(c) > 2 else {})
               for c in as_args(extra)]
    cases = _ADV_FIXED + out + literal
    for case in cases:
        assert _adv_safe(*case), case
    return cases


def _adv_guesses(rewards, group_size, options):
    """What the usual mistakes return (for the messages)."""
    normalize, eps = options.get("normalize_std", True), options.get("eps", 1e-6)
    r = rewards.double()
    g = r.view(-1, group_size)
    centred = (g - g.mean(1, keepdim=True)).reshape(-1)
    std = g.std(1, keepdim=True).expand_as(g).reshape(-1)
    out = [((r - r.mean()) / (r.std() + eps) if normalize else r - r.mean(),
            "the mean (and std) of the whole batch: each solution is compared with the other "
            "solutions of its own problem, the group")]
    if normalize:
        out += [
            (centred / (r.std() + eps), "the std of the whole batch: divide by the group's std"),
            (centred / (g.std(1, unbiased=False, keepdim=True).expand_as(g).reshape(-1) + eps),
             "the population std (unbiased=False): use torch.std's default, the unbiased one "
             "(divides by group_size - 1)"),
            (centred / (g.var(1, keepdim=True).expand_as(g).reshape(-1) + eps).sqrt(),
             "sqrt(var + eps): add eps to the std, std + eps"),
            (centred / std.clamp(min=1e-30), "eps left out: divide by std + eps"),
            (centred, "not divided by the std + eps although normalize_std is True"),
        ]
    else:
        out.append((centred / (std + eps), "divided by the std although normalize_std is False"))
    if group_size > 1 and r.numel() // group_size > 1:
        s = r.view(group_size, -1)
        out.append((((s - s.mean(0, keepdim=True)) / (s.std(0, keepdim=True) + eps) if normalize
                     else s - s.mean(0, keepdim=True)).reshape(-1),
                    "groups taken every len(rewards) // group_size entries: a group is "
                    "group_size consecutive entries (the samples of one problem)"))
    return out


def _notes(notes) -> str:
    """The usual mistakes that give the student's value, for a message."""
    return f" ({'; or: '.join(notes)})" if notes else ""


def _compare_adv(args, expected, actual):
    rewards, group_size, options = args
    if (m := _shape(actual, ["advantages"], "advantages_or_error")):
        return m
    call = f"group_advantages({rewards.tolist()}, {group_size}" + "".join(
        f", {k}={v!r}" for k, v in options.items()) + ")"
    if "raised" in expected:
        if "raised" in actual:
            return None
        return (f"{call}: {expected['message']}; raise ValueError (got "
                f"{short(actual.get('advantages'), 80)} instead)")
    if "raised" in actual:
        return f"{call} raised ValueError ({actual.get('message')}), but the input is valid"
    got, want = actual["advantages"], expected["advantages"]
    if isinstance(got, torch.Tensor) and got.is_floating_point() and not torch.isfinite(got).all():
        return (f"{call} has nan or inf values: a group whose rewards are all equal has std 0; "
                "its advantages are 0 (divide by std + eps)")
    diff = close_tensor(want, got, rtol=ADV_RTOL, atol=ADV_ATOL, what="the advantages")
    if diff is None:
        return None
    notes = []
    if isinstance(got, torch.Tensor) and got.shape == want.shape:
        notes = [says for value, says in _adv_guesses(rewards, group_size, options)
                 if torch.isfinite(value).all()
                 and not torch.allclose(value, want.double(), rtol=ADV_RTOL, atol=ADV_ATOL)
                 and torch.allclose(got.double(), value, rtol=ADV_RTOL, atol=ADV_ATOL)]
    return f"{call}: {diff}{_notes(notes)}"


# -- policy_loss -----------------------------------------------------------------------------------


def _clear_of_clip(logprobs, old, mask, clip, margin=1e-3) -> bool:
    """No answer token's ratio lies within ``margin`` of ``1 - clip`` or ``1 + clip``, where
    the gradient depends on how min and clamp break ties."""
    r = (logprobs - old).double().exp()
    near = ((r - (1 - clip)).abs() < margin) | ((r - (1 + clip)).abs() < margin)
    return not bool((near & (mask > 0)).any())


def _loss_case(logprobs, old, advantages, mask, **options):
    t = [torch.tensor(x, dtype=torch.float32) for x in (logprobs, old, advantages, mask)]
    return (*t, options)


def _ratios(old, ratios):
    """Log-probabilities whose ratios to ``old`` are ``ratios``."""
    return [[o + math.log(r) for o, r in zip(orow, rrow)] for orow, rrow in zip(old, ratios)]


_OLD = [[-0.5, -1.2, -2.0, -0.1], [-3.0, -0.7, -1.5, -0.9]]
_LOSS_FIXED = [
    # the first step on a batch: logprobs == old_logprobs on the answer tokens, every ratio 1;
    # rows of different lengths; padding of other values
    _loss_case([[-0.5, -1.2, -2.0, 0.0], [-3.0, 0.0, 0.0, 0.0]],
               [[-0.5, -1.2, -2.0, -2.0], [-3.0, -0.7, -2.0, -1.0]], [1.0, -0.5],
               [[1, 1, 1, 0], [1, 0, 0, 0]]),
    # every side at once: A > 0 with r above 1 + clip (binds), below 1 - clip (does not) and
    # inside; A < 0 with r below 1 - clip (binds), above 1 + clip (does not) and inside
    _loss_case(_ratios(_OLD, [[1.6, 0.5, 1.1, 1.0], [0.6, 1.3, 0.9, 1.0]]), _OLD, [1.5, -2.0],
               [[1, 1, 1, 1], [1, 1, 1, 1]]),
    # the clip binds at 1 + clip (A > 0) and at 1 - clip (A < 0): no gradient there
    _loss_case(_ratios(_OLD, [[1.5, 1.1, 0.9, 1.3], [0.5, 0.9, 1.1, 0.7]]), _OLD, [1.5, -2.0],
               [[1, 1, 1, 1], [1, 1, 1, 1]]),
    # the other sides do not bind: A > 0 with r < 1 - clip, A < 0 with r > 1 + clip
    _loss_case(_ratios(_OLD, [[0.5, 0.7, 1.1, 1.0], [1.5, 1.3, 0.9, 1.0]]), _OLD, [2.0, -1.5],
               [[1, 1, 1, 1], [1, 1, 1, 1]]),
    # padding (of any value) is not counted; rows of different lengths, each token the same
    _loss_case([[-0.3, -1.0, -2.5, 0.4, 1.7], [-0.2, -4.0, 2.0, -1.0, 0.0],
                [-1.1, -0.6, -0.8, -2.0, -0.4]],
               [[-0.4, -1.1, -2.0, -3.0, 0.5], [-0.1, -3.0, 0.0, -2.0, 1.0],
                [-1.0, -0.6, -1.0, -2.2, -0.3]],
               [2.0, -1.5, 0.5], [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]]),
    # another clip: 0.1 binds where 0.2 would not, 0.5 where nothing binds at 0.2
    _loss_case(_ratios(_OLD, [[1.15, 1.35, 0.85, 1.0], [0.85, 1.15, 0.95, 1.3]]), _OLD,
               [1.0, -2.0], [[1, 1, 1, 1], [1, 1, 1, 0]], clip=0.1),
    _loss_case(_ratios(_OLD, [[1.6, 1.4, 0.45, 1.0], [0.4, 0.6, 1.6, 1.2]]), _OLD, [0.7, -1.3],
               [[1, 1, 1, 1], [1, 1, 1, 1]], clip=0.5),
    # the default clip is 0.2: 1.25 and 0.75 bind
    _loss_case(_ratios(_OLD, [[1.25, 1.15, 0.75, 1.0], [0.75, 0.85, 1.25, 1.0]]), _OLD,
               [1.0, -1.0], [[1, 1, 1, 1], [1, 1, 1, 1]]),
    # as many solutions as tokens: an advantage belongs to a row, not a column
    _loss_case([[-1.0, -0.5, -2.0], [-0.2, -0.3, -1.0], [-3.0, -0.1, -0.4]],
               [[-1.1, -0.4, -2.0], [-0.3, -0.3, -0.9], [-2.9, -0.1, -0.5]],
               [1.5, -0.5, 0.25], [[1, 1, 1], [1, 1, 0], [1, 0, 0]]),
    # one solution of one token; a zero advantage
    _loss_case([[-0.7]], [[-0.9]], [1.0], [[1]]),
    _loss_case(_ratios(_OLD, [[1.5, 0.5, 1.0, 1.0], [1.1, 0.9, 1.0, 1.0]]), _OLD, [0.0, 1.0],
               [[1, 1, 1, 1], [1, 1, 1, 1]]),
    # a row that is all padding
    _loss_case(_ratios(_OLD, [[1.1, 0.9, 1.3, 1.0], [1.0, 1.0, 1.0, 1.0]]), _OLD, [1.0, 3.0],
               [[1, 1, 1, 1], [0, 0, 0, 0]]),
]


def _loss_cases(seed=0, n_random=8, extra=None):
    g = torch.Generator().manual_seed(seed + 83_000)
    rng = random.Random(seed + 83_000)
    out = []
    while len(out) < n_random:
        B, T = rng.randrange(1, 6), rng.randrange(1, 13)
        clip = rng.choice([None, 0.1, 0.2, 0.3])
        old = -torch.rand(B, T, generator=g) * 6
        logprobs = old + torch.randn(B, T, generator=g) * rng.choice([0.05, 0.2, 0.4])
        adv = torch.randn(B, generator=g) * rng.choice([0.5, 1.0, 2.0])
        lengths = [rng.randrange(1, T + 1) for _ in range(B)]
        mask = torch.tensor([[1.0] * n + [0.0] * (T - n) for n in lengths])
        if rng.random() < 0.5:      # padding as token_logprobs leaves it: 0
            logprobs, old = logprobs * mask, old * mask
        options = {} if clip is None else {"clip": clip}
        if _clear_of_clip(logprobs, old, mask, clip or 0.2):
            out.append((logprobs, old, adv, mask, options))
    literal = [_loss_case(*c[:4], **(dict(c[4]) if len(c) > 4 else {})) for c in as_args(extra)]
    cases = _LOSS_FIXED + out + literal
    for lp, old, _, mask, options in cases:
        assert _clear_of_clip(lp, old, mask, options.get("clip", 0.2)), (lp, old, options)
    return cases


def _loss_at(logprobs, old, adv, mask, clip):
    """The right loss, in float64, at ``clip``."""
    r = (logprobs.double() - old.double()).exp()
    a = adv.double()[:, None]
    m = mask.double()
    obj = torch.minimum(r * a, r.clamp(1 - clip, 1 + clip) * a)
    return -(obj * m).sum() / m.sum().clamp(min=1)


def _loss_guesses(logprobs, old, adv, mask, clip):
    """What the usual mistakes return (for the messages)."""
    r = (logprobs.double() - old.double()).exp()
    a = adv.double()[:, None]
    m = mask.double()
    n = m.sum().clamp(min=1)
    clipped = r.clamp(1 - clip, 1 + clip)
    obj = torch.minimum(r * a, clipped * a)

    def mean(o):
        return -(o * m).sum() / n

    out = [
        (mean(r * a), "the ratio is not clipped: take min(r * A, clamp(r, 1 - clip, 1 + clip) "
         "* A)"),
        (mean(torch.maximum(r * a, clipped * a)), "max instead of min: the objective is the "
         "smaller (pessimistic) of the two"),
        (mean(clipped * a), "only the clipped term: the objective is the smaller of r * A and the "
         "clipped term"),
        (mean(torch.minimum(r * a, r.clamp(max=1 + clip) * a)), "clipped at 1 + clip only: "
         "clamp at 1 - clip too (it binds when A < 0)"),
        (mean(torch.minimum(r * a, r.clamp(min=1 - clip) * a)), "clipped at 1 - clip only: "
         "clamp at 1 + clip too (it binds when A > 0)"),
        (mean(torch.minimum(r * a, r * a.clamp(1 - clip, 1 + clip))), "the advantage clipped: "
         "clamp the ratio r, not A"),
        ((obj * m).sum() / n, "the sign: the loss is MINUS the objective (gradient descent on "
         "the loss climbs the objective)"),
        (-(obj * m).sum() / m.numel(), "divided by every position, padding included: divide by "
         "the number of answer tokens, mask.sum()"),
        (-obj.mean(), "the mean over every position, padding included: multiply by the mask"),
        (-(obj * m).sum(), "the sum: divide by the number of answer tokens"),
        (mean(torch.minimum(r * a, r.clamp(0.8, 1.2) * a)), "clip 0.2 whatever clip is: use "
         "the clip argument"),
        (mean(torch.minimum(a / r, (1 / r).clamp(1 - clip, 1 + clip) * a)), "the ratio upside "
         "down: r = exp(logprobs - old_logprobs)"),
    ]
    rows = m.sum(1) > 0
    if rows.sum() > 1 or (m.sum(1) == 0).any():
        per_row = -((obj * m).sum(1)[rows] / m.sum(1)[rows]).mean()
        out.append((per_row, "the mean of each solution's mean: every answer token of the batch "
                    "counts the same, a long solution's as much as a short one's (divide the "
                    "batch's sum by the batch's number of answer tokens)"))
    if logprobs.shape[0] == logprobs.shape[1]:
        ab = adv.double()[None, :]
        out.append((mean(torch.minimum(r * ab, clipped * ab)), "the advantages broadcast along "
                    "the tokens' axis: advantages[:, None], one per row (solution)"))
    return out


def _compare_loss(args, expected, actual):
    logprobs, old, adv, mask, options = args
    clip = options.get("clip", 0.2)
    if (m := _shape(actual, ["loss", "grad"], "policy_loss_with_grad")):
        return m
    loss, grad = actual["loss"], actual["grad"]
    if (m := loss_tensor_problem(loss)):
        return m
    got, want = loss.reshape(()).double(), expected["loss"].double()
    if not torch.isfinite(got):
        return f"the loss is {got.item()} instead of {want.item():.6g}"
    if not torch.allclose(got, want, rtol=LOSS_RTOL, atol=LOSS_ATOL):
        guesses = _loss_guesses(logprobs, old, adv, mask, clip)
        if "clip" not in options:
            guesses += [(v, "the default clip is 0.2 (the checks leave clip out when a case does "
                         f"not set it; this is the loss at clip={c})")
                        for c in (0.1, 0.15, 0.25, 0.3, 0.5)
                        for v in [_loss_at(logprobs, old, adv, mask, c)]]
        notes = [says for value, says in guesses
                 if torch.isfinite(value) and not torch.allclose(value, want, rtol=LOSS_RTOL,
                                                                 atol=LOSS_ATOL)
                 and torch.allclose(got, value, rtol=LOSS_RTOL, atol=LOSS_ATOL)]
        return f"the loss is {got.item():.6g} instead of {want.item():.6g}{_notes(notes)}"
    if grad is None:
        return ("the loss is right but no gradient reached logprobs: keep it a tensor of the "
                "graph (no .item(), .detach(), torch.no_grad() or torch.tensor(...) on the way)")
    want_grad = expected["grad"]
    if not isinstance(grad, torch.Tensor) or tuple(grad.shape) != tuple(want_grad.shape):
        return "the gradient of logprobs has the wrong shape"
    if not torch.isfinite(grad).all():
        return "the gradient of logprobs holds nan or inf"
    if torch.allclose(grad.double(), want_grad.double(), rtol=GRAD_RTOL, atol=GRAD_ATOL):
        return None
    if want_grad.abs().max() > 0 and torch.allclose(grad.double(), -want_grad.double(),
                                                    rtol=GRAD_RTOL, atol=GRAD_ATOL):
        return ("the loss is right here, but its gradient points the other way: the ratio "
                "upside down? r = exp(logprobs - old_logprobs)")
    bad = ~torch.isclose(grad.double(), want_grad.double(), rtol=GRAD_RTOL, atol=GRAD_ATOL)
    b, t = (int(i) for i in torch.nonzero(bad)[0])
    r = float((logprobs[b, t] - old[b, t]).exp())
    at = (f"at [{b}, {t}] (ratio {r:.3g}, advantage {float(adv[b]):.3g}): "
          f"{float(grad[b, t]):.4g} instead of {float(want_grad[b, t]):.4g}")
    if mask[b, t] == 0:
        return f"the gradient reaches padding {at}: only the answer tokens may be trained"
    if want_grad[b, t] == 0 and float(adv[b]) == 0:
        return f"the gradient of logprobs {at}: the advantage is 0, so the token gets none"
    if want_grad[b, t] == 0:
        return (f"the gradient of logprobs {at}: the clip binds there (the smaller term is the "
                "clipped one, a constant), so that token gets no gradient")
    return f"the gradient of logprobs differs {at}"


TASKS = {
    "extract_answer": Task(
        "extract_answer", reference_extract_answer, _extract_cases, compare_case=_compare_extract,
        hint="cut the text at the first of <|im_start|>, <|im_sep|>, <|im_end|>, <|endoftext|>; "
             "last = text.rstrip().split('\\n')[-1].strip(); m = re.fullmatch(r'Answer:[ \\t]*"
             "(-?\\d+)[ \\t]*', last); return int(m.group(1)) if m else None"),
    "reward": Task(
        "reward_on_problem", reference_reward_on_problem, _reward_cases,
        compare_case=_compare_reward, substitute=REWARD_SUBSTITUTE,
        hint="final = extract_answer(text); return 1.0 if final is not None and final == "
             "problem.answer else 0.0 (a formatted wrong answer gets 0.0, like no answer)"),
    "group_advantages": Task(
        "advantages_or_error", reference_advantages_or_error, _adv_cases,
        compare_case=_compare_adv,
        hint="raise ValueError if group_size < 2 or len(rewards) % group_size; g = "
             "rewards.view(-1, group_size); adv = g - g.mean(dim=1, keepdim=True); if "
             "normalize_std: adv = adv / (g.std(dim=1, keepdim=True) + eps); return "
             "adv.reshape(-1)"),
    "policy_loss": Task(
        "policy_loss_with_grad", reference_policy_loss_with_grad, _loss_cases,
        compare_case=_compare_loss,
        hint="r = torch.exp(logprobs - old_logprobs); A = advantages[:, None]; objective = "
             "torch.minimum(r * A, r.clamp(1 - clip, 1 + clip) * A); return -(objective * "
             "mask).sum() / mask.sum()"),
}

ASSIGNMENT = Assignment(TASKS, references=REFERENCES, depends=DEPENDS)
globals().update(ASSIGNMENT.checks())  # check_extract_answer, check_reward, check_group_advantages, check_policy_loss
