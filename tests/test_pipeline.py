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


@pytest.mark.slow
def test_quick_chain_remakes_tokenizer_and_model_and_writes_a_report_card(tmp_path):
    """The shortened chain from the shipped corpus: a 512-token tokenizer and a tiny model for
    300 steps, whose validation loss must fall from ln(4096) = 8.3 to below 5.2 (it reaches
    ~5.0): below the 5.3 nats of a unigram model of those 512 tokens, so it uses the context."""
    ch = P.run_chain(tmp_path, start="tokenizer", quick=True, threads=1, progress=False)
    log = json.loads((tmp_path / "base_model.json").read_text())
    assert log["history"][0]["loss"] > 7.5
    assert log["val_loss"] < 5.2, log["val_loss"]
    card = (tmp_path / "report_card.md").read_text()
    for heading in ("## tokenizer", "## base model", "## assistant"):
        assert heading in card
    assert "fact completion" in card and "| parameters |" in card
    # issue 14's targets are on the card, each with its value, target and verdict
    assert "## what the second half of the course needs" in card
    numbers = json.loads((tmp_path / "report_card.json").read_text())
    assert len(numbers["targets"]) >= 10
    assert all(len(r) == 4 and r[3] in ("yes", "**no**") for r in numbers["targets"])
    again = T.load_model(tmp_path / "base_model.pt")
    x = torch.randint(0, 500, (1, 8))
    with torch.no_grad():
        assert torch.equal(again(x)[0], ch.model.eval()(x)[0])


def test_unknown_stage_is_named():
    with pytest.raises(ValueError, match="tokenizer"):
        P.run_chain("/tmp/unused", start="tokeniser")


@pytest.mark.slow
@pytest.mark.skipif(P.SHIPPED_RECIPE == "v1", reason="issue 14's targets are for recipe v2's "
                    "models; the shipped ones are still v1 (docs/capability.md)")
def test_shipped_assistant_meets_the_targets():
    """A held-out sample of every issue 14 target on the shipped assistant: a later change that
    loses a capability (reading, worked arithmetic, knowing the head, room for RL) fails here."""
    from course_lib import evals as E
    from course_lib import world as W

    world = W.make_world()
    texts = [t for i, t in enumerate(P.corpus_texts()) if i % P.VAL_EVERY]
    rows, _ = E.capability_card(P.assets.load_model("sft"), P.course_tokenizer(), world, texts,
                                n=40, seed=7)
    missed = [r for r in rows if r[3] != "yes"]
    assert not missed, missed
