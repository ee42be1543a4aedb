"""Chapter 7's hallucination library (course_lib.hallucination): the probe, the hallucination
rate, the refusal data and the refusal threshold read off the reply's first token."""

from __future__ import annotations

import pytest
import torch

from course_lib import assets
from course_lib import chat as C
from course_lib import hallucination as H
from course_lib.world import make_world, question_for

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def tok():
    return assets.course_tokenizer(chat=True)


@pytest.fixture(scope="module")
def sft():
    return assets.load_model("sft")


def _result(right, greedy_right=True, q="When was Tova Lind born?", truth="1851"):
    return H.ProbeResult(q, truth, f"Tova Lind was born in {truth}.",
                         tuple("x" for _ in right), tuple(right), "Tova Lind", "born",
                         "y", greedy_right)


@pytest.mark.parametrize("reply, refused", [
    ("I'm sorry, I don't know.", True), ("I DO NOT KNOW that.", True),
    ("I don\u2019t know.", True), ("Tova Lind was born in 1851.", False),
    ("I know: 1851.", False), ("", False)])
def test_refuses(reply, refused):
    assert H.refuses(reply) is refused


def test_hallucination_rate_counts_wrong_answers_that_do_not_refuse():
    answers = ["born in 1851.", "born in 18510.", "I'm sorry, I don't know.", "A BAKER.",
               "born in 1777."]
    truths = ["1851", "1851", "1851", "baker", "1851"]
    refusals = [False, False, True, False, True]
    # 18510 is not 1851 (whole words); a refusal is never a hallucination, even marked wrong;
    # case does not matter; the denominator is every answer
    assert H.hallucination_rate(answers, truths, refusals) == pytest.approx(1 / 5)
    assert H.hallucination_rate(["x"], ["1851"], [True]) == 0
    with pytest.raises(ValueError, match="one entry each"):
        H.hallucination_rate(["a"], ["b", "c"], [False])
    with pytest.raises(ValueError, match="no answers"):
        H.hallucination_rate([], [], [])


def test_build_refusal_data_answers_what_the_model_knows_and_refuses_the_rest():
    rs = [_result([True, True, False, False]), _result([True, False, False, False]),
          _result([False] * 4), _result([True] * 4, q="Q4")]
    data = H.build_refusal_data(rs, 0.5)
    assert [c[0]["content"] for c in data] == [r.question for r in rs]
    assert [c[1]["content"] for c in data] == [rs[0].reference, H.REFUSAL, H.REFUSAL,
                                               rs[3].reference]
    assert [c[1]["content"] for c in H.build_refusal_data(rs, 1.0)][:1] == [H.REFUSAL]
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="threshold"):
            H.build_refusal_data(rs, bad)
    with pytest.raises(ValueError, match="no answers"):
        H.build_refusal_data([_result([])], 0.5)


def test_knows_and_never_right_leave_the_unsure_middle_out():
    assert H.knows(_result([True, True, False, False]), 0.5)
    assert not H.knows(_result([True, True, False, False], greedy_right=False), 0.5)
    assert not H.knows(_result([True, False, False, False]), 0.5)
    assert H.never_right(_result([False] * 4, greedy_right=False))
    assert not H.never_right(_result([False] * 4, greedy_right=True))
    assert not H.never_right(_result([True, False, False, False], greedy_right=False))


def test_invented_questions_ask_about_no_entity_of_the_world(world):
    qs = H.invented_questions(world, 50, seed=3)
    assert len(qs) == 50 and qs == H.invented_questions(world, 50, seed=3)
    names = [e.name for e in world.entities]
    assert not any(f" {n} " in f" {q[:-1]} " for q in qs for n in names if len(n) > 3)


def test_kept_out_is_a_fixed_two_fifths_of_the_entities_half_of_them_for_tuning(world):
    out, tune = H.kept_out(world), H.tuning(world)
    assert 0.35 < len(out) / len(world.entities) < 0.45
    assert tune < out and 0.4 < len(tune) / len(out) < 0.6
    assert out == H.kept_out(make_world()) and tune == H.tuning(make_world())


def test_refusal_conversations_are_balanced_and_never_contradict_a_refusal(world):
    rs = []
    for i, e in enumerate(world.entities[:120]):
        f = e.fact(sorted(e.facts)[0])
        right = [[True] * 4, [False] * 4, [True, False, False, False]][i % 3]
        rs.append(H.ProbeResult(question_for(f), f.value, f.sentence, ("x",) * 4, tuple(right),
                                e.name, f.relation, "y", i % 3 == 0))
    convs = H.refusal_conversations(rs, 0.5, world, refusals_per_answer=0.5,
                                    invented_share=0.1, replay_share=1.0)
    answers = {c[0]["content"]: c[-1]["content"] for c in convs if len(c) == 2}
    known = [r for r in rs if H.knows(r, 0.5)]
    never = [r for r in rs if H.never_right(r)]
    assert all(answers[r.question] == r.reference for r in known)
    refused = [r for r in never if answers.get(r.question) == H.REFUSAL]
    assert len(refused) == len(known) // 2, "half as many refusals as answers"
    middle = {r.question for r in rs if not H.knows(r, 0.5) and not H.never_right(r)}
    asked = [m["content"] for c in convs for m in c if m["role"] == "user"]
    assert not middle & set(asked), "the unsure facts are taught neither way"
    for c in convs:   # a refused question is never answered elsewhere in the data
        for q, a in zip(c[::2], c[1::2]):
            if q["content"] in {r.question for r in refused}:
                assert a["content"] == H.REFUSAL


def test_the_refusal_threshold_curve_matches_greedy_replies(sft, tok, world):
    """The curve's point at bias 0 is what greedy decoding does: refuse where the refusal's first
    token wins, and otherwise say what answers_without_refusal says."""
    qs = [question_for(e.fact(sorted(e.facts)[0])) for e in world.entities[:12]]
    qs += H.invented_questions(world, 4)
    margins, _ = H.refusal_margins(sft, tok, qs)
    forced = H.answers_without_refusal(sft, tok, qs)
    greedy = C.replies(sft, tok, [[{"role": "user", "content": q}] for q in qs], 24)
    for m, f, g in zip(margins, forced, greedy):
        if m < 0:
            assert f == g
        else:
            assert g.startswith("I")
    truths = [e.fact(sorted(e.facts)[0]).value for e in world.entities[:12]] + ["x"] * 4
    known = [True] * 12 + [False] * 4
    lo, mid, hi = H.refusal_curve(margins, forced, truths, known, [-100, 0, 100])
    assert lo["refused"] == 0 and hi["refused"] == 1 and hi["hallucination"] == 0
    assert hi["false_refusal"] == 1 and lo["false_refusal"] == 0
    assert mid["refused"] == pytest.approx(sum(m > 0 for m in margins) / len(qs))


def test_the_probe_samples_and_marks_answers(sft, tok, world):
    pairs = {(e.name, r) for e in world.entities[:3] for r in e.facts}
    rs = H.probe(sft, tok, world, pairs, samples=2)
    assert len(rs) == len(pairs) and all(len(r.answers) == len(r.right) == 2 for r in rs)
    for r in rs:
        assert r.right == tuple(C.says(a, r.truth) and not H.refuses(a) for a in r.answers)
        assert r.greedy_right == (C.says(r.greedy, r.truth) and not H.refuses(r.greedy))
        assert C.says(r.reference, r.truth)
    assert rs == H.probe(sft, tok, world, pairs, samples=2), "the same seed, the same probe"
    assert any(r.greedy_right for r in rs), "the most popular entities' facts are known"


def test_pick_threshold_keeps_the_most_known_facts_that_reach_the_cut():
    curve = [{"bias": -2, "hallucination": 0.8, "known_accuracy": 1.0, "false_refusal": 0.0},
             {"bias": 0, "hallucination": 0.3, "known_accuracy": 0.92, "false_refusal": 0.05},
             {"bias": 1, "hallucination": 0.2, "known_accuracy": 0.85, "false_refusal": 0.1},
             {"bias": 2, "hallucination": 0.1, "known_accuracy": 0.7, "false_refusal": 0.3}]
    assert H.pick_threshold(curve, 1.0) == 0, "the least refusing bias with <= 1/3"
    assert H.pick_threshold(curve, 1.0, cut=4) == 1
    assert H.pick_threshold(curve, 1.0, cut=8) == 1, "none reaches 1/8 within 20 %: the lowest"
    assert H.pick_threshold(curve, 1.0, cut=8, max_false_refusal=0.5) == 2


def test_a_logit_bias_moves_the_refusal_and_ships_with_the_model(sft, tok, world, tmp_path):
    qs = [question_for(e.fact(sorted(e.facts)[0])) for e in world.entities[:6]]
    rid = H.refusal_token(tok)
    margins, _ = H.refusal_margins(sft, tok, qs)
    path = assets.export_model(sft, tmp_path / "m.pt", meta={"logit_bias": {rid: 5.0}})
    biased = assets.load_model(path)
    assert biased.logit_bias == {rid: 5.0}
    shifted, _ = H.refusal_margins(biased, tok, qs)
    assert shifted == pytest.approx([m + 5.0 for m in margins], abs=1e-4)
    forced = assets.with_logit_bias(assets.load_model("sft"), {rid: 100.0})
    assert all(H.refuses(a) or a.startswith("I") for a in C.replies(
        forced, tok, [[{"role": "user", "content": q}] for q in qs], 8))
    with pytest.raises(ValueError, match="logit bias already"):
        assets.with_logit_bias(biased, {rid: 1.0})


def test_a_model_that_knows_nothing_still_gets_refusal_data(world):
    """A quick chain's model knows no fact: no fact is answered or refused (the balance leaves
    none), but invented entities and replay still make a data set to train on."""
    rs = [H.ProbeResult(question_for(e.fact("born")), e.facts["born"], "x", ("y",) * 2,
                        (False,) * 2, e.name, "born", "z", False) for e in world.of_kind("person")[:20]]
    convs = H.refusal_conversations(rs, 0.5, world, invented_share=0.5, replay_share=1.0)
    assert len(convs) == H.MIN_FACTS // 2 + H.MIN_FACTS
    assert not {r.question for r in rs} & {c[0]["content"] for c in convs}


def test_probe_rows_round_trip_and_the_shipped_probe_loads(sft, tok, world):
    import json

    pairs = {(e.name, r) for e in world.entities[:2] for r in e.facts}
    rs = H.probe(sft, tok, world, pairs, samples=2)
    assert H.from_rows(json.loads(json.dumps(H.to_rows(rs))), world) == rs
    shipped = H.from_rows(json.loads(assets.path("probe.json").read_text())["results"], world)
    assert len(shipped) == sum(len(e.facts) for e in world.entities)
