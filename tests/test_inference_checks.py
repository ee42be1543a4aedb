"""Chapter 5's checks: right answers written several ways pass (an inverse-CDF sampler with
torch.rand too), every wrong answer fails with the input, the difference and a hint, calling
course_lib.generate is caught, sample is judged by its kept set, its seed and the distribution of
many draws, and generate_with_cache by the naive loop's tokens and the positions it reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from course_lib import generate as G
from course_lib.grading import checks
from course_lib.grading import inference as I

import inference_answers as answers

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "inference" / "inference.ipynb"
HELPERS = {"sample": "sample_with_seed", "generate_with_cache": "generate_with_cache_on_gpt"}


def helper_source(grade_id: str) -> str:
    """A locked cell of the notebook through which the checks call sample or
    generate_with_cache."""
    nb = json.loads(SOLUTION.read_text())
    return next("".join(c["source"]) for c in nb["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def load(overrides: dict) -> dict:
    """A notebook namespace: the answers (the right ones unless overridden) and the locked cells."""
    ns: dict = {}
    for name in answers.CORRECT:
        exec(overrides.get(name, answers.CORRECT[name]), ns)
    for helper in HELPERS.values():
        exec(helper_source(helper), ns)
    return ns


def graded(ns: dict, task: str):
    """What a test cell passes to the check of ``task``."""
    return ns[HELPERS.get(task, task)]


@pytest.mark.parametrize("task", list(I.TASKS))
@pytest.mark.parametrize("which", ["correct", "alternative"])
def test_right_answers_pass(task, which):
    ns = load(answers.CORRECT if which == "correct" else answers.ALTERNATIVE)
    getattr(I, f"check_{task}")(graded(ns, task))
    getattr(I, f"check_{task}")(graded(ns, task), seed=7, n_random=8)


@pytest.mark.parametrize("name", list(answers.MORE_RIGHT))
def test_more_right_answers_pass(name):
    task, src = answers.MORE_RIGHT[name]
    ns = load({task: src})
    getattr(I, f"check_{task}")(graded(ns, task))
    if name != "sample_one_row_at_a_time":  # a Python loop over 4,000 rows: right but slow
        getattr(I, f"check_{task}")(graded(ns, task), seed=11, n_random=8)


@pytest.mark.parametrize("name", list(answers.WRONG))
def test_wrong_answers_fail(name):
    task, src = answers.WRONG[name]
    ns = load({task: src})
    with pytest.raises(AssertionError) as e:
        getattr(I, f"check_{task}")(graded(ns, task))
    msg = str(e.value)
    assert I.TASKS[task].name in msg and "hint:" in msg, msg
    assert "difference:" in msg or "raised" in msg, msg


@pytest.mark.parametrize("name", list(answers.WRONG))
def test_each_wrong_answer_fails_only_its_own_check(name):
    """The other checks pass: sample calls the filters, and while it is checked they are the
    trusted ones, so a wrong filter costs its own task only."""
    task, src = answers.WRONG[name]
    ns = load({task: src})
    for other in I.TASKS:
        if other != task:
            getattr(I, f"check_{other}")(graded(ns, other))


@pytest.mark.parametrize("name,says", [
    ("temperature_multiplies", "the logits times t"),
    ("temperature_returns_probs", "probabilities: return logits"),
    ("top_k_off_by_one", "keeps 3 tokens instead of 2"),
    ("top_k_ties_dropped", "(it should stay)"),
    ("top_k_no_guard", "raised"),
    ("top_p_drops_crossing", "(it should stay)"),
    ("top_p_can_drop_all", "keeps 0 tokens instead of 1"),
    ("temperature_after_softmax", "does the temperature divide the logits before the softmax?"),
    ("ignores_generator", "two calls with torch.Generator().manual_seed(seed) drew different"),
    ("own_generator", "drew the same"),
    ("filters_in_wrong_order", "but the filters remove it"),
    ("greedy_samples", "greedy is the argmax"),
    ("sample_top_k_off_by_one", "drew token"),
    ("cache_positions_off_by_one", "are the later steps at the right position"),
    ("no_cache_recomputes", "the tokens are right, but the model read"),
    ("returns_new_tokens_only", "only the new tokens?"),
])
def test_wrong_answers_are_told_what_went_wrong(name, says):
    task, src = answers.WRONG[name]
    with pytest.raises(AssertionError, match="hint:") as e:
        getattr(I, f"check_{task}")(graded(load({task: src}), task))
    assert says in str(e.value), str(e.value)


@pytest.mark.parametrize("task,make", [
    ("apply_temperature", lambda: G.apply_temperature),
    ("top_k_filter", lambda: (lambda logits, k: G.top_k_filter(logits, k))),
    ("top_p_filter", lambda: I.reference_top_p_filter),
    ("sample", lambda: (lambda *a: I.on_generator(G.sample, *a))),
    ("sample", lambda: I.reference_sample_with_seed),
    ("generate_with_cache", lambda: (lambda *a: I.on_seeded_gpt(G.generate_with_cache, *a))),
    ("generate_with_cache", lambda: (lambda *a: I.on_seeded_gpt(
        lambda m, ids, n: G.generate(m, ids, n, temperature=0), *a))),
    ("generate_with_cache", lambda: I.reference_generate_with_cache_on_gpt),
])
def test_calling_the_reference_is_caught(task, make):
    with pytest.raises(AssertionError, match="reference"):
        getattr(I, f"check_{task}")(make())


def test_the_edge_cases_are_there():
    """k = 1, k = V, k > V, None, ties at the k-th; p tiny, 1, None, a dominant token; greedy,
    cold, hot, k then p; T = 1, batches, one new token, a full block."""
    tk = checks.task_cases(I.TASKS["top_k_filter"])
    V = [a[0].size(-1) for a in tk]
    ks = [a[1] for a in tk]
    assert 1 in ks and None in ks and any(k is not None and k == v for k, v in zip(ks, V))
    assert any(k is not None and k > v for k, v in zip(ks, V))
    assert any(a[0].dim() == 1 for a in tk) and any(a[0].dim() == 3 for a in tk)
    tp = [a[1] for a in checks.task_cases(I.TASKS["top_p_filter"])]
    assert {0.01, 1.0, None} <= set(tp)
    sm = checks.task_cases(I.TASKS["sample"])
    temps = {a[1] for a in sm}
    assert {0, 0.5, 1.0, 2.0} <= temps
    assert any(a[2] is not None and a[3] is not None for a in sm)
    assert all(a[5] >= 4000 for a in sm if a[1] != 0)
    gen = checks.task_cases(I.TASKS["generate_with_cache"])
    assert any(a[2].size(1) == 1 for a in gen) and any(a[2].size(0) > 1 for a in gen)
    assert any(a[3] == 1 for a in gen)
    assert any(a[2].size(1) + a[3] == a[0]["block_size"] for a in gen)


@pytest.mark.parametrize("seed", [0, 5, 7, 11])
def test_the_reference_ids_are_what_the_cached_loop_gives(seed):
    """The naive loop's greedy tokens (what the check wants) are also the reference cached
    loop's, on every case: no case hangs on an argmax that float rounding could flip."""
    for case in checks.task_cases(I.TASKS["generate_with_cache"], seed=seed, n_random=6):
        naive = I.reference_generate_with_cache_on_gpt(*case)
        cached = I.on_seeded_gpt(G.generate_with_cache, *case)
        assert torch.equal(naive["ids"], cached["ids"])
        assert cached["positions_read"] == naive["positions_read"]


def test_a_correct_sampler_passes_other_seeds():
    """The count test's tolerance: a right sampler passes on many other seeds."""
    ns = load(answers.ALTERNATIVE)
    cases = checks.task_cases(I.TASKS["sample"])
    for shift in range(1, 6):
        moved = [(*c[:4], c[4] + 1000 * shift, c[5]) for c in cases]
        I.check_sample(graded(ns, "sample"), cases=moved, n_random=0)


def test_sample_results_cross_as_data():
    case = checks.task_cases(I.TASKS["sample"])[2]
    back = checks.from_data(checks.to_data(I.reference_sample_with_seed(*case)))
    assert set(back) == {"draws", "seeded_twice", "other_seed"}
    assert back["draws"].shape == (case[0].size(0) * case[5],)


def test_hidden_tests_use_other_inputs():
    nb = json.loads(SOLUTION.read_text())
    sources = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert all("### BEGIN HIDDEN TESTS" in s for s in sources if "checks.check_" in s)
    for task in I.TASKS:
        visible = checks.task_cases(I.TASKS[task])
        hidden = checks.task_cases(I.TASKS[task], seed=5, n_random=6)
        assert {repr(c) for c in hidden} - {repr(c) for c in visible}, task
