"""Chapter 9's checks: right answers written several ways pass (softplus, a stable log-sigmoid by
hand, logsumexp, float64, DPO through Bradley-Terry, cross_entropy per token, a loop over rows, the
last token cropped from the input), every wrong answer fails its own check only, with the input,
the difference and a hint; the hidden test cells' hand-written cases alone catch every wrong
answer; calling course_lib.rlhf or course_lib.rl is caught; the cases hold the edge cases the task
texts name (margins of -200 and +-1000, policy = reference, rows of different lengths, a 1 in
mask[:, 0]); no gradient may reach the reference's log-probabilities."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest
import torch

from course_lib import rlhf as R
from course_lib.grading import checks, verify
from course_lib.grading import notebook as nbtools
from course_lib.grading import rlhf as G

answers = importlib.import_module("rlhf_answers")
broken = importlib.import_module("make_rlhf_submissions")

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "rlhf" / "rlhf.ipynb"
HELPERS = {"bradley_terry_loss": "bradley_terry_with_grad", "dpo_loss": "dpo_loss_with_grad",
           "sequence_logprob": "sequence_logprob_on_gpt"}
LOCKED = tuple(HELPERS.values())
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
    for helper in LOCKED:
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
    assert src != answers.CORRECT[task], f"{name}: the replacement changed nothing"
    with pytest.raises(AssertionError) as e:
        check(task, graded(load({task: src}), task))
    msg = str(e.value)
    assert G.TASKS[task].name in msg and "hint:" in msg, msg
    assert "difference:" in msg or "raised" in msg, msg


@pytest.mark.parametrize("name", list(EVERY_WRONG))
def test_each_wrong_answer_fails_only_its_own_check(name):
    """The other checks pass: dpo_loss may call bradley_terry_loss, and while it is checked that
    name is the course's, so a wrong task 1 costs its own task only."""
    task, src = EVERY_WRONG[name]
    ns = load({task: src})
    for other in G.TASKS:
        if other != task:
            check(other, graded(ns, other))


def test_a_wrong_bradley_terry_does_not_cost_dpo_that_calls_it():
    _, dpo = answers.MORE_RIGHT["dpo_via_bradley_terry"]
    for name, (task, src) in EVERY_WRONG.items():
        if task == "bradley_terry_loss":
            check("dpo_loss", graded(load({"bradley_terry_loss": src, "dpo_loss": dpo}),
                                     "dpo_loss"))


@pytest.mark.parametrize("name,says", [
    ("bt_swapped", "chosen and rejected swapped"),
    ("bt_unstable", "the loss is inf instead of"),
    ("bt_sum", "the sum over the pairs"),
    ("bt_shape_one", "returned a tensor of shape (1,): return a 0-dim tensor"),
    ("bt_detached", "no gradient reached r_chosen"),
    ("bt_where_nan_grad", "holds nan or inf (at pair 0): a step overflows there"),
    ("dpo_swapped", "chosen and rejected swapped"),
    ("dpo_no_beta", "beta left out"),
    ("dpo_beta_outside", "beta outside the log-sigmoid"),
    ("dpo_no_detach", "a gradient reached ref_chosen_logps"),
    ("dpo_unstable", "F.logsigmoid(x) (or -F.softplus(-x)), finite for any margin"),
    ("dpo_sum", "the sum over the pairs"),
    ("dpo_beta_divides", "the margin divided by beta"),
    ("dpo_no_reference", "the reference left out"),
    ("dpo_argument_order", "a gradient reached ref_chosen_logps"),
    ("dpo_shape_one", "returned a tensor of shape (1,)"),
    ("dpo_detached", "no gradient reached policy_chosen_logps"),
    ("seq_mask_ignored", "every token counted, the prompt's and the padding's too"),
    ("seq_off_by_one", "the logits at t - 1 predict ids[t]"),
    ("seq_mean", "the mean over the answer's tokens"),
    ("seq_mask_not_shifted", "the mask not shifted"),
    ("seq_padding_counted", "the padding after the answer counted"),
    ("seq_roll_counts_position_0", "position 0 is never predicted"),
    ("seq_first_row_span", "the mask: [[0, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 1, 0, 0]"),
    ("seq_keeps_dim", "the result has shape (1, 1) instead of (1,)"),
    ("seq_logits_not_logprobs", "the logits themselves, not log-probabilities"),
    ("seq_softmax_over_time", "log_softmax over the positions"),
    ("seq_no_grad", "no gradient reached the model"),
])
def test_wrong_answers_are_told_what_went_wrong(name, says):
    task, src = EVERY_WRONG[name]
    with pytest.raises(AssertionError, match="hint:") as e:
        check(task, graded(load({task: src}), task))
    assert says in str(e.value), str(e.value)


def test_every_wrong_answer_has_its_message_tested():
    names = {n for n, _ in test_wrong_answers_are_told_what_went_wrong.pytestmark[0].args[1]}
    assert names == set(EVERY_WRONG)


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
    right = [load(answers.CORRECT), load(answers.ALTERNATIVE)]
    right += [load({t: s}) for t, s in answers.MORE_RIGHT.values()]
    for ns in right:
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


# -- the references are off limits -----------------------------------------------------------------


@pytest.mark.parametrize("task,src", [
    ("bradley_terry_loss", "from course_lib.rlhf import bradley_terry_loss"),
    ("dpo_loss", '''import course_lib.rlhf


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta):
    return course_lib.rlhf.dpo_loss(policy_chosen_logps, policy_rejected_logps,
                                    ref_chosen_logps, ref_rejected_logps, beta)'''),
    ("sequence_logprob", "from course_lib.rlhf import sequence_logprob"),
    # chapter 8's per-token log-probabilities are off limits too
    ("sequence_logprob", broken.CALLS_REFERENCE["sequence_logprob"]),
    ("dpo_loss", '''from course_lib.grading import rlhf as g


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta):
    return g.reference_dpo_loss_with_grad(policy_chosen_logps, policy_rejected_logps,
                                          ref_chosen_logps, ref_rejected_logps, beta)["loss"]'''),
])
def test_calling_the_reference_is_caught(task, src):
    with pytest.raises(AssertionError, match="course's reference implementation"):
        check(task, graded(load({task: src}), task))


@pytest.mark.parametrize("task,fn", [
    ("bradley_terry_loss", G.reference_bradley_terry_with_grad),
    ("bradley_terry_loss", lambda c, r: G.on_scores(R.bradley_terry_loss, c, r)),
    ("dpo_loss", G.reference_dpo_loss_with_grad),
    ("dpo_loss", lambda *a: G.on_logps(R.dpo_loss, *a)),
    ("sequence_logprob", G.reference_sequence_logprob_on_gpt),
    ("sequence_logprob", lambda *a: G.on_gpt(R.sequence_logprob, *a)),
])
def test_the_reference_itself_is_caught(task, fn):
    with pytest.raises(AssertionError, match="reference"):
        check(task, fn)


def test_the_references_work_again_after_a_check():
    """The poisoning is undone, even after a student's function raised."""
    ns = load({"bradley_terry_loss": "from course_lib.rlhf import bradley_terry_loss"})
    with pytest.raises(AssertionError):
        check("bradley_terry_loss", graded(ns, "bradley_terry_loss"))
    assert R.bradley_terry_loss(torch.zeros(2), torch.zeros(2)).item() == pytest.approx(math.log(2))


# -- the cases -------------------------------------------------------------------------------------


def test_the_edge_cases_are_there():
    """Bradley-Terry: one pair, a tie, negative margins, margins of -200 and +-1000; DPO: the
    policy equal to the reference (loss log 2), several betas, a reference that prefers the chosen
    answer more than the policy, beta * margin of -400, +1000 and -1500; sequence_logprob: rows of
    different prompt and answer lengths with padding, a 1 in mask[:, 0], two models."""
    bt = checks.task_cases(G.TASKS["bradley_terry_loss"])
    margins = torch.cat([c - r for c, r in bt])
    assert (margins == 0).any() and (margins < 0).any() and any(len(c) == 1 for c, _ in bt)
    assert (margins <= -200).any() and (margins >= 1000).any() and (margins <= -1000).any()
    assert all(torch.isfinite(R.bradley_terry_loss(c, r)) for c, r in bt)

    dc = checks.task_cases(G.TASKS["dpo_loss"])
    assert any(torch.equal(pc, rc) and torch.equal(pr, rr) for pc, pr, rc, rr, _ in dc)
    assert {b for *_, b in dc} >= {0.1, 0.5, 2.0}
    scaled = torch.cat([b * ((pc - rc) - (pr - rr)) for pc, pr, rc, rr, b in dc])
    assert (scaled <= -400).any() and (scaled >= 1000).any() and (scaled <= -1000).any()
    assert any(((pc - pr) > 0).all() and ((pc - rc) - (pr - rr) < 0).all()
               for pc, pr, rc, rr, _ in dc)
    first = dc[0]
    assert R.dpo_loss(*first).item() == pytest.approx(math.log(2))

    sc = checks.task_cases(G.TASKS["sequence_logprob"])
    assert any(m.size(0) > 1 and len({tuple(r.tolist()) for r in m}) == m.size(0)
               and (m[:, -1] == 0).any() for *_, m in sc)
    assert any((m[:, 0] == 1).any() for *_, m in sc)
    assert len({c["vocab_size"] for c, *_ in sc}) > 1


def test_no_gradient_reaches_the_reference():
    """The reference's answer (what the checks compare with) leaves the reference's
    log-probabilities without a gradient; the policy's get one."""
    out = G.reference_dpo_loss_with_grad(*G._DPO_FIXED[1])
    assert out["grads"][2] is None and out["grads"][3] is None
    assert (out["grads"][0] != 0).all() and (out["grads"][1] != 0).all()


def test_the_checks_gpt_has_opinions():
    """The checks' GPT's next-token probabilities are far from uniform, so that a wrong position
    or token changes a log-probability by much more than the tolerance."""
    config, seed, ids, mask = G._SEQ_FIXED[0]
    with torch.no_grad():
        logp = G.checks_gpt(config, seed)(ids)[0].log_softmax(-1)
    assert logp.max(-1).values.mean() > -1.0 and logp.min(-1).values.mean() < -5.0


def test_cases_are_deterministic():
    for task in G.TASKS:
        a = checks.task_cases(G.TASKS[task], seed=3, n_random=6)
        b = checks.task_cases(G.TASKS[task], seed=3, n_random=6)
        assert repr(a) == repr(b), task


def test_results_cross_as_data():
    for task in G.TASKS:
        t = G.TASKS[task]
        for case in checks.task_cases(t)[:4]:
            again = checks.from_data(checks.to_data(case))
            assert repr(again) == repr(case)
            value = checks.to_data(t.reference(*case))
            assert checks.to_data(checks.from_data(value)) == value
