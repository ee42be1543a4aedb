"""The course pipeline of chapter 4 (course_lib.pipeline): the shipped tokenizer and base model,
their remaking, the measurements of what the base model knows, and the report card."""

from __future__ import annotations

import json

import pytest
import torch

from course_lib import pipeline as P
from course_lib import evals as E
from course_lib import train as T


@pytest.fixture(scope="module")
def tok():
    return P.course_tokenizer()


@pytest.fixture(scope="module")
def model():
    return P.base_model()


def test_shipped_tokenizer_has_the_course_vocabulary(tok):
    assert len(tok.merges) == P.ORDINARY_VOCAB - 256
    assert tok.special_tokens == {"<|endoftext|>": 4080}
    text = "Stummo Brousvior was born in 1874. 12 + 7 = 19"
    assert tok.decode(tok.encode(text)) == text
    ids = tok.encode("<|endoftext|>", allowed_special="all")
    assert ids == [4080]
    assert max(tok.vocab) < P.VOCAB_SIZE  # ids 4081..4095 stay free for chapter 6


@pytest.mark.slow
def test_remaking_the_tokenizer_gives_the_shipped_one(tok):
    again = P.train_course_tokenizer(P.corpus_texts())
    assert again.merges == tok.merges and again.special_tokens == tok.special_tokens


def test_shipped_model_loads_and_its_log_is_complete(model):
    assert model.config.vocab_size == P.VOCAB_SIZE
    assert 1_000_000 < model.num_parameters() < 10_000_000  # "a few million"
    log = json.loads(P.BASE_LOG_PATH.read_text())
    for key in ("history", "samples", "fact_deciles", "digit_addition", "tokens", "seconds",
                "train_flops", "config"):
        assert key in log, key
    assert log["history"][-1]["loss"] < 2.0
    assert log["history"][0]["loss"] > 7.0  # from ln(4096) = 8.3: it really learned


def test_greedy_check_agrees_with_generating(model, tok):
    """The teacher-forced check of _greedy_matches gives what decoding one token at a time
    gives."""
    prompts = ["The favourite colour of", "In the ones place we add 3 and 4 and get",
               "Greaxtea is a city in"]
    for prompt in prompts:
        text = T.sample_text(model, tok, prompt, max_new_tokens=3, temperature=0)
        ids = tok.encode(text)[len(tok.encode(prompt)):]
        ok, _ = E._greedy_matches(model, [tok.encode(prompt)], [ids])
        assert ok == [True]
        wrong = ids[:-1] + [(ids[-1] + 1) % 4000]
        assert E._greedy_matches(model, [tok.encode(prompt)], [wrong])[0] == [False]


@pytest.mark.slow
def test_base_model_knows_popular_facts_and_not_rare_ones(model, tok):
    res = P.fact_accuracy(model, tok)
    top, bottom = res.deciles[0][3], res.deciles[-1][3]
    assert top > 0.5 and top > bottom + 0.3, res.table()
    assert res.chance < top
    assert res.deciles[0][1][0] > res.deciles[-1][1][1]  # deciles ordered by mentions


def test_base_model_adds_digits_better_than_chance(model, tok):
    res = P.digit_addition_accuracy(model, tok)
    assert res["accuracy"] > 2 * res["chance"], res


def test_unknown_stage_is_named():
    with pytest.raises(ValueError, match="tokenizer"):
        P.run_chain("/tmp/unused", start="tokeniser")


# targets the shipped models miss, {measure prefix: why (docs/capability.md)}. None since
# finding 14 (recipe v2's SFT asks every fact not held out); a retrain that misses one must say
# so here, and add a floor below which this test fails anyway.
KNOWN_MISSES: dict = {}


@pytest.mark.slow
def test_shipped_assistant_meets_the_targets():
    """A held-out sample of every issue 14 target on the shipped assistant: a later change that
    loses a capability (reading, worked arithmetic, knowing the head, room for RL) fails here."""
    from course_lib import evals as E
    from course_lib import world as W

    world = W.make_world()
    texts = [t for i, t in enumerate(P.corpus_texts()) if i % P.VAL_EVERY]
    rows, nums = E.capability_card(P.assets.load_model("sft"), P.course_tokenizer(), world,
                                   texts, n=40, seed=7)
    missed = [r for r in rows if r[3] != "yes"
              and not any(r[0].startswith(known) for known in KNOWN_MISSES)]
    assert not missed, missed
    rl = nums["rl_room"]
    assert 0.1 <= rl["accuracy"] <= 0.5 and rl["pass@8"] >= 2 * rl["accuracy"], rl


def test_a_chain_started_later_keeps_the_targets_of_the_stages_it_does_not_rerun(tmp_path):
    numbers = {"assistant": {"x": 1, "seconds": 1.0},
               "hallucination and tools": {"y": 2, "seconds": 2.0},
               "targets": [["reading: a", "1", "t", "yes"],
                           [f"{P.CH7_TARGETS}: b", "2", "t", "**no**"],
                           [f"{P.CH8_TARGETS} c", "3", "t", "yes"]]}
    for stages, want in ((["assistant"], ["reading: a"]),
                         (["assistant", "hallucination and tools"],
                          ["reading: a", f"{P.CH7_TARGETS}: b"])):
        ch = P.Chain(tmp_path)
        P._card_from(ch, numbers, stages)
        assert [r[0] for r in ch.targets] == want
        assert [stage for stage, _ in ch.card] == stages


def test_the_chains_clock_leaves_out_a_pause():
    """Ctrl-Z (SIGTSTP) pauses a chain; its stage times leave the pause out, and the handler is
    taken back when the chain ends."""
    import os
    import signal
    import subprocess
    import time

    from course_lib.pipeline import SuspendAwareClock

    before = signal.getsignal(signal.SIGTSTP)
    clock = SuspendAwareClock().install()
    try:
        t0, w0 = clock(), time.perf_counter()
        subprocess.Popen(["bash", "-c", f"sleep 0.3; kill -TSTP {os.getpid()}; sleep 1.5; "
                                        f"kill -CONT {os.getpid()}"], start_new_session=True)
        while time.perf_counter() - w0 < 2.5:
            time.sleep(0.01)
        wall, worked = time.perf_counter() - w0, clock() - t0
    finally:
        clock.uninstall()
    assert wall >= 2.5 and 1.4 <= wall - worked <= 2.0, (wall, worked)
    assert signal.getsignal(signal.SIGTSTP) == before
