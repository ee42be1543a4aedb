"""Chapter 6's checks: right answers written several ways pass (the template as a string encoded
with the special tokens allowed, F.cross_entropy with ignore_index, tensors instead of lists),
every wrong answer fails its own check only, with the input, the difference and a hint; calling
course_lib.chat's references is caught while chat_tokenizer and check_conversation stay usable;
render_conversation is judged by ids and mask on many conversations and by the ValueError of
malformed ones, masked_cross_entropy by its value and by the gradient it sends to the logits."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch

from course_lib import chat as C
from course_lib.grading import checks
from course_lib.grading import finetuning as F

answers = importlib.import_module("finetuning_answers")

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "finetuning" / "finetuning.ipynb"
HELPERS = {"render_conversation": "render_with_chat_tokenizer",
           "masked_cross_entropy": "masked_cross_entropy_with_grad"}


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
    getattr(F, f"check_{task}")(fn, **kw)


@pytest.mark.parametrize("task", list(F.TASKS))
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


@pytest.mark.parametrize("name", list(answers.WRONG))
def test_wrong_answers_fail(name):
    task, src = answers.WRONG[name]
    ns = load({task: src})
    with pytest.raises(AssertionError) as e:
        check(task, graded(ns, task))
    msg = str(e.value)
    assert F.TASKS[task].name in msg and "hint:" in msg, msg
    assert "difference:" in msg or "raised" in msg, msg


@pytest.mark.parametrize("name", list(answers.WRONG))
def test_each_wrong_answer_fails_only_its_own_check(name):
    task, src = answers.WRONG[name]
    ns = load({task: src})
    for other in F.TASKS:
        if other != task:
            check(other, graded(ns, other))


@pytest.mark.parametrize("name,says", [
    ("mask_covers_user", "message 0 (user)'s content"),
    ("mask_shifted", "shifted by one position"),
    ("end_token_not_in_mask", "(assistant)'s <|im_end|>"),
    ("header_in_mask", "no header"),
    ("system_in_mask", "message 0 (system)'s content"),
    ("only_last_answer", "in every assistant message"),
    ("separator_missing", "'s <|im_sep|>"),
    ("special_tokens_as_text", "'s <|im_start|>"),
    ("newline_after_role", "'s <|im_sep|>"),
    ("no_validation", "returned instead of raising ValueError"),
    ("loss_ignores_mask", "the mean over every position"),
    ("loss_divides_by_all", "divided by all positions"),
    ("loss_unstable_softmax", "exp overflows"),
    ("loss_per_sequence_mean", "each sequence's mean"),
    ("loss_detached", "no gradient reached the logits"),
    ("loss_empty_mask_nan", "raise ValueError"),
])
def test_wrong_answers_are_told_what_went_wrong(name, says):
    task, src = answers.WRONG[name]
    with pytest.raises(AssertionError, match="hint:") as e:
        check(task, graded(load({task: src}), task))
    assert says in str(e.value), str(e.value)


def test_every_wrong_answer_has_its_message_tested():
    names = {n for n, _ in test_wrong_answers_are_told_what_went_wrong.pytestmark[0].args[1]}
    assert names == set(answers.WRONG)


def test_a_gradient_on_unmasked_positions_is_named():
    """A loss with the right value whose gradient also reaches a position the mask leaves out."""
    src = answers.LOSS.replace(
        "return nll[keep].mean()",
        "return nll[keep].mean() + (nll - nll.detach())[~keep].sum() * 1e-3")
    with pytest.raises(AssertionError, match="where the mask is 0") as e:
        check("masked_cross_entropy", graded(load({"masked_cross_entropy": src}),
                                             "masked_cross_entropy"))
    assert "hint:" in str(e.value)


@pytest.mark.parametrize("task,src", [
    ("render_conversation", "from course_lib.chat import render_conversation"),
    ("render_conversation", '''import course_lib.chat as chat

def render_conversation(conversation, tokenizer):
    return chat.render_conversation(conversation, tokenizer)'''),
    ("render_conversation", '''from course_lib.chat import render_prompt

def render_conversation(conversation, tokenizer):  # the prompt, and the answer by hand
    *before, last = conversation
    ids = render_prompt(before, tokenizer)
    body = tokenizer.encode_ordinary(last["content"]) + [4083]
    return ids + body, [0] * len(ids) + [1] * len(body)'''),
    ("render_conversation", '''from course_lib.grading import finetuning

def render_conversation(conversation, tokenizer):
    out = finetuning.reference_render_with_chat_tokenizer(conversation)
    return out["ids"], out["mask"]'''),
    ("masked_cross_entropy", "from course_lib.chat import masked_cross_entropy"),
    ("masked_cross_entropy", '''import course_lib.chat as chat

def masked_cross_entropy(logits, targets, mask):
    return chat.masked_cross_entropy(logits, targets, mask)'''),
])
def test_calling_the_reference_is_caught(task, src):
    with pytest.raises(AssertionError, match="course's reference implementation"):
        check(task, graded(load({task: src}), task))


@pytest.mark.parametrize("fn", [F.reference_render_with_chat_tokenizer,
                                lambda c: F.on_chat_tokenizer(C.render_conversation, c)])
def test_the_reference_itself_is_caught(fn):
    with pytest.raises(AssertionError, match="reference"):
        F.check_render_conversation(fn)


def test_chat_tokenizer_and_check_conversation_may_be_used():
    """The two functions of course_lib.chat the notebook offers work inside the checks (the
    correct answer calls check_conversation; this one also makes its own tokenizer)."""
    src = answers.RENDER.replace(
        "def render_conversation(conversation, tokenizer):\n",
        "def render_conversation(conversation, tokenizer):\n"
        "    from course_lib.chat import chat_tokenizer\n"
        "    tokenizer = chat_tokenizer()\n")
    check("render_conversation", graded(load({"render_conversation": src}),
                                        "render_conversation"))


@pytest.mark.parametrize("name", ["render_prompt", "draw_mask", "prepare_sft_data", "reply",
                                  "_header", "sft_conversations"])
def test_the_rest_of_course_lib_chat_is_off_limits(name):
    """Graded as the grader does (the task's poisoning around the locked cell's call), every
    other function of course_lib.chat raises ReferenceCalled."""
    def render(conversation, tokenizer):
        return getattr(C, name)(conversation, tokenizer)

    convo = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    outcome = checks.call_outcome(F.TASKS["render_conversation"],
                                  lambda c: F.on_chat_tokenizer(render, c), (convo,))
    assert outcome["kind"] == "reference" and name in outcome["error"], outcome
    outcome = checks.call_outcome(
        F.TASKS["masked_cross_entropy"],
        lambda *a: F.on_logits(lambda *b: getattr(C, name)(*b), *a),
        (torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([1, 1])))
    assert outcome["kind"] == "reference" and name in outcome["error"], outcome


def test_the_references_work_again_after_a_check():
    """The poisoning is undone, even after a student's function raised."""
    ns = load({"render_conversation": "from course_lib.chat import render_conversation"})
    with pytest.raises(AssertionError):
        check("render_conversation", graded(ns, "render_conversation"))
    tok = C.chat_tokenizer()
    convo = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert C.render_conversation(convo, tok)[1][-1] == 1
    assert float(C.masked_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]),
                                        torch.tensor([1, 0]))) == pytest.approx(1.0986, abs=1e-4)


def test_the_edge_cases_are_there():
    """Conversations: one and several turns, with and without a system message, unicode,
    digits, long ones, and each of check_conversation's problems; losses: (B, T, V) and (N, V),
    large logits, every mask density, bool masks, an empty mask."""
    tok = C.chat_tokenizer()
    rc = [c[0] for c in checks.task_cases(F.TASKS["render_conversation"])]
    good, bad = [], []
    for c in rc:
        try:
            C.check_conversation(c)
            good.append(c)
        except ValueError:
            bad.append(c)
    assert any(len(c) == 2 for c in good) and any(len(c) >= 6 for c in good)
    assert any(c[0]["role"] == "system" for c in good)
    assert any(c[0]["role"] != "system" for c in good)
    assert any(any(ord(ch) > 127 for m in c for ch in m["content"]) for c in good)
    assert any(len(C.render_conversation(c, tok)[0]) > 300 for c in good)
    assert any(sum(m["role"] == "assistant" for m in c) >= 3 for c in good)
    problems = set()
    for c in bad:
        with pytest.raises(ValueError) as e:
            C.check_conversation(c)
        problems.add(str(e.value)[:25])
    assert len(bad) >= 7 and len(problems) >= 6
    lc = checks.task_cases(F.TASKS["masked_cross_entropy"])
    assert any(a[0].dim() == 3 for a in lc) and any(a[0].dim() == 2 for a in lc)
    assert any(a[0].abs().max() > 500 for a in lc)
    assert any(a[2].dtype == torch.bool for a in lc)
    densities = {round(float(a[2].float().mean()), 2) for a in lc}
    assert 0.0 in densities and 1.0 in densities
    assert any(a[2].sum() == 1 for a in lc)
    assert any(a[2].dim() == 2 and len(set(a[2].sum(-1).tolist())) > 1 for a in lc)


def test_cases_are_deterministic():
    for task in F.TASKS:
        a = checks.task_cases(F.TASKS[task], seed=3, n_random=6)
        b = checks.task_cases(F.TASKS[task], seed=3, n_random=6)
        assert repr(a) == repr(b), task


def test_results_cross_as_data():
    conv = checks.task_cases(F.TASKS["render_conversation"])[1]
    back = checks.from_data(checks.to_data(F.reference_render_with_chat_tokenizer(*conv)))
    assert set(back) == {"ids", "mask"} and len(back["ids"]) == len(back["mask"])
    case = checks.task_cases(F.TASKS["masked_cross_entropy"])[1]
    back = checks.from_data(checks.to_data(F.reference_masked_cross_entropy_with_grad(*case)))
    assert back["loss"].shape == () and back["grad"].shape == case[0].shape


def test_hidden_tests_use_other_inputs():
    nb = json.loads(SOLUTION.read_text())
    sources = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert all("### BEGIN HIDDEN TESTS" in s for s in sources if "checks.check_" in s)
    for task in F.TASKS:
        visible = checks.task_cases(F.TASKS[task])
        hidden = checks.task_cases(F.TASKS[task], seed=5, n_random=6)
        assert {repr(c) for c in hidden} - {repr(c) for c in visible}, task
