"""Chapter 8's checks: right answers written several ways pass (string methods instead of a regex,
an int reward, statistics.stdev in float64, torch.where for the clip, a stacked min), every wrong
answer fails its own check only, with the input, the difference and a hint; the hidden test
cells' hand-written cases alone catch every wrong answer; calling course_lib.rl is caught; the
cases hold the edge cases the task texts name, and a loss is judged by its gradient too (none
where the clip binds)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch

from course_lib import rl as R
from course_lib.grading import checks, verify
from course_lib.grading import notebook as nbtools
from course_lib.grading import rl as G

answers = importlib.import_module("rl_answers")

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "rl" / "rl.ipynb"
HELPERS = {"extract_answer": "extract_answer", "reward": "reward_on_problem",
           "group_advantages": "advantages_or_error", "policy_loss": "policy_loss_with_grad"}
LOCKED = ("reward_on_problem", "advantages_or_error", "policy_loss_with_grad")
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
    with pytest.raises(AssertionError) as e:
        check(task, graded(load({task: src}), task))
    msg = str(e.value)
    assert G.TASKS[task].name in msg and "hint:" in msg, msg
    assert "difference:" in msg or "raised" in msg, msg


@pytest.mark.parametrize("name", list(EVERY_WRONG))
def test_each_wrong_answer_fails_only_its_own_check(name):
    """The other checks pass: reward calls extract_answer, and while it is checked that name is
    the course's, so a wrong parser costs its own task only."""
    task, src = EVERY_WRONG[name]
    ns = load({task: src})
    for other in G.TASKS:
        if other != task:
            check(other, graded(ns, other))


@pytest.mark.parametrize("name,says", [
    ("extract_first_answer_line", "is not the last line is no answer"),
    ("extract_accepts_trailing_text", "after 'Answer:' only spaces or tabs"),
    ("extract_no_cut", "the reply ends at its first special token"),
    ("extract_answer_not_last", "an Answer line that is not the last line is no answer"),
    ("extract_cut_im_end_only", "<|endoftext|>"),
    ("extract_trailing_blank_lines", "whose reply ends with the line 'Answer: 42'"),
    ("extract_no_tabs", "returned None for 'Answer: \\t 7 \\t'"),
    ("extract_needs_one_space", "returned None for 'Answer:7'"),
    ("extract_line_not_stripped", "whose reply ends with the line 'Answer: 7'"),
    ("extract_no_negative", "return -3"),
    ("extract_drops_commas", "returned 1234"),
    ("extract_int_of_rest", "'Answer: +12'"),
    ("extract_any_case", "must start with 'Answer:' exactly"),
    ("extract_text_before", "nothing may come before 'Answer:'"),
    ("extract_returns_string", "(a str)"),
    ("reward_pays_format", "a well-formatted wrong answer earns what no answer earns"),
    ("reward_number_anywhere", "its final answer is 41, and the problem's answer is 42"),
    ("reward_format_bonus", "the reward is 0.5 instead of 0.0"),
    ("reward_any_answer_line", "an Answer line that is not the last line is no answer"),
    ("reward_zero_is_no_answer", "its final answer is 0, the problem's answer"),
    ("reward_returns_bool", "a bool: return the float"),
    ("advantages_whole_batch", "the mean (and std) of the whole batch"),
    ("advantages_population_std", "the population std"),
    ("advantages_no_eps", "has nan or inf values: a group whose rewards are all equal"),
    ("advantages_batch_std", "the std of the whole batch"),
    ("advantages_eps_in_sqrt", "sqrt(var + eps)"),
    ("advantages_eps_only_at_zero", "eps left out"),
    ("advantages_ignore_normalize_std", "although normalize_std is False"),
    ("advantages_default_no_std", "although normalize_std is True"),
    ("advantages_strided_groups", "a group is group_size consecutive entries"),
    ("advantages_group_of_one", "raise ValueError (got"),
    ("advantages_no_divide_check", "raised RuntimeError"),
    ("advantages_bernoulli_std", "group_advantages([0.5, 1.0, 0.0, 0.25, 1.0, 1.0, 0.0, 0.75, "
     "0.25], 3)"),
    ("advantages_grouped_shape", "the advantages has shape (2, 4) instead of (8,)"),
    ("loss_unclipped", "the ratio is not clipped"),
    ("loss_over_padding", "divided by every position, padding included"),
    ("loss_per_sequence_mean", "the mean of each solution's mean"),
    ("loss_sign_flipped", "the loss is MINUS the objective"),
    ("loss_max_not_min", "max instead of min"),
    ("loss_clip_upper_only", "clipped at 1 + clip only"),
    ("loss_clip_lower_only", "clipped at 1 - clip only"),
    ("loss_clipped_term_only", "only the clipped term"),
    ("loss_clips_advantage", "the advantage clipped"),
    ("loss_ignores_mask", "the mean over every position, padding included"),
    ("loss_sum", "the sum: divide by the number of answer tokens"),
    ("loss_clip_fixed", "clip 0.2 whatever clip is"),
    ("loss_default_clip", "the default clip is 0.2"),
    ("loss_inverted_ratio", "the ratio upside down"),
    ("loss_advantages_per_column", "raised RuntimeError"),
    ("loss_detached", "no gradient reached logprobs"),
    ("loss_gradient_through_clip", "the clip binds there"),
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
    ("extract_answer", "from course_lib.rl import extract_answer"),
    ("reward", "from course_lib.rl import reward"),
    ("reward", '''import course_lib.rl


def reward(text, problem):
    return 1.0 if course_lib.rl.extract_answer(text) == problem.answer else 0.0'''),
    ("group_advantages", '''from course_lib import rl


def group_advantages(rewards, group_size, normalize_std=True, eps=1e-6):
    return rl.group_advantages(rewards, group_size, normalize_std, eps)'''),
    ("policy_loss", "from course_lib.rl import policy_loss"),
    ("policy_loss", '''from course_lib.grading import rl as g


def policy_loss(logprobs, old_logprobs, advantages, mask, clip=0.2):
    return g.reference_policy_loss_with_grad(logprobs, old_logprobs, advantages, mask,
                                              {"clip": clip})["loss"]'''),
])
def test_calling_the_reference_is_caught(task, src):
    with pytest.raises(AssertionError, match="course's reference implementation"):
        check(task, graded(load({task: src}), task))


@pytest.mark.parametrize("task,fn", [
    ("extract_answer", R.extract_answer),
    ("extract_answer", G.reference_extract_answer),
    ("reward", lambda text, problem: G.on_problem(R.reward, text, problem)),
    ("group_advantages", G.reference_advantages_or_error),
    ("policy_loss", lambda *a: G.on_logprobs(R.policy_loss, *a)),
])
def test_the_reference_itself_is_caught(task, fn):
    with pytest.raises(AssertionError, match="reference"):
        check(task, fn)


def test_the_references_work_again_after_a_check():
    """The poisoning is undone, even after a student's function raised."""
    ns = load({"extract_answer": "from course_lib.rl import extract_answer"})
    with pytest.raises(AssertionError):
        check("extract_answer", graded(ns, "extract_answer"))
    assert R.extract_answer("Answer: 5") == 5
    assert R.group_advantages(torch.tensor([1.0, 0.0]), 2).tolist() == pytest.approx(
        [0.7071, -0.7071], abs=1e-3)


def test_the_problem_class_may_be_used():
    """world.Problem (the inputs are made of it) works inside the checks."""
    src = answers.REWARD.replace(
        "def reward(text, problem):\n",
        "def reward(text, problem):\n"
        "    from course_lib.world import Problem\n"
        "    problem = Problem(problem.kind, problem.question, problem.answer, problem.steps)\n")
    check("reward", graded(load({"reward": src}), "reward"))


# -- the cases -------------------------------------------------------------------------------------


def test_the_edge_cases_are_there():
    """Answers: each special token, trailing blank lines, tabs, negatives, an Answer line that
    is not last, each kind of text after the number, the wrong case, text before; rewards: right,
    formatted wrong, the right number elsewhere, the answer 0, a negative answer; advantages: an
    all-equal group, groups of 2, non-binary rewards, normalize_std off, a large eps, each
    ValueError; losses: ratio 1, the clip binding on both sides and not binding on the others,
    padding with values, rows of different lengths, other clips, a square batch, an empty row."""
    texts = [t for (t,) in checks.task_cases(G.TASKS["extract_answer"])]
    found = [R.extract_answer(t) for t in texts]
    for token in G.STOPS:
        assert any(token in t and f is not None for t, f in zip(texts, found)), token
    for bad in ("Answer: 12.", "Answer: 1,234", "Answer: +12", "answer: 12", "Final Answer: 12",
                "Answer: 12\nLet me check: 5 + 7 = 12."):
        assert bad in texts and R.extract_answer(bad) is None, bad
    assert R.extract_answer("Answer: \t 7 \t") == 7 and R.extract_answer("So 9 - 12 = -3.\n"
                                                                        "Answer: -3") == -3

    rc = checks.task_cases(G.TASKS["reward"])
    rewards = [G.reference_reward_on_problem(*c) for c in rc]
    assert rewards[0] == 1.0 and 0.0 in rewards
    assert any(r == 1.0 and c[1][2] == 0 for c, r in zip(rc, rewards))
    assert any(r == 1.0 and c[1][2] < 0 for c, r in zip(rc, rewards))
    assert any(r == 0.0 and R.extract_answer(c[0]) not in (None, c[1][2])
               for c, r in zip(rc, rewards))

    ac = checks.task_cases(G.TASKS["group_advantages"])
    outs = [G.reference_advantages_or_error(*c) for c in ac]
    assert sum("raised" in o for o in outs) >= 5
    assert any(o.get("advantages") is not None and (o["advantages"] == 0).any()
               and (o["advantages"] != 0).any() for o in outs)
    assert any(opts.get("normalize_std") is False for *_, opts in ac)
    assert any(opts.get("eps", 0) >= 0.5 for *_, opts in ac)
    assert any(not set(r.tolist()) <= {0.0, 1.0} for r, *_ in ac)

    lc = checks.task_cases(G.TASKS["policy_loss"])
    binds = {"upper": False, "lower": False, "free_low": False, "free_high": False}
    for lp, old, adv, mask, opts in lc:
        clip = opts.get("clip", 0.2)
        r = (lp - old).exp()
        a = adv[:, None].expand_as(r)
        on = mask > 0
        binds["upper"] |= bool((on & (a > 0) & (r > 1 + clip)).any())
        binds["lower"] |= bool((on & (a < 0) & (r < 1 - clip)).any())
        binds["free_low"] |= bool((on & (a > 0) & (r < 1 - clip)).any())
        binds["free_high"] |= bool((on & (a < 0) & (r > 1 + clip)).any())
    assert all(binds.values()), binds
    assert any(((lp == old) | (mask == 0)).all() for lp, old, _, mask, _ in lc)
    assert any(((mask == 0) & (lp != 0)).any() for lp, _, _, mask, _ in lc)
    assert any(len(set(mask.sum(1).tolist())) > 1 for *_, mask, _ in lc)
    assert any(lp.shape[0] == lp.shape[1] for lp, *_ in lc)
    assert {opts.get("clip") for *_, opts in lc} >= {None, 0.1, 0.5}


def test_the_gradient_is_zero_where_the_clip_binds():
    """The reference's gradient (what the checks compare with) is 0 exactly on the tokens where
    the clipped term is the smaller, and flows elsewhere."""
    lp, old, adv, mask, opts = G._LOSS_FIXED[1]
    out = G.reference_policy_loss_with_grad(lp, old, adv, mask, opts)
    r = (lp - old).exp()
    bound = ((adv[:, None] > 0) & (r > 1.2)) | ((adv[:, None] < 0) & (r < 0.8))
    assert bound.any() and (~bound).any()
    assert (out["grad"][bound] == 0).all() and (out["grad"][~bound] != 0).all()


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
