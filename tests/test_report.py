"""Chapter 10's report card (course_lib.report): the comparison with the shipped run, its noise
rule, and the HTML page."""

from __future__ import annotations

import json
import re

import pytest

from course_lib import assets
from course_lib import report as R


@pytest.mark.parametrize("measure, mine, shipped, verdict", [
    ("facts", "72%", "72%", "same"),
    # a share on 100 items: 2 sqrt(2 p (1 - p) / 100) is about 14 points at p = 0.5
    ("held-out pass@1", "49%", "55%", "within noise"),
    ("held-out pass@1", "30%", "55%", "differs"),
    # on 1,000 items the band is 4.5 points: the same 6 points now differ
    ("accuracy", "49% of 1,000", "55% of 1,000", "differs"),
    ("accuracy", "90% / 10%", "91% / 11%", "within noise"),
    # counts move like Poisson counts, 2 sqrt(2 k): an outcome's count within that, a change of
    # data or recipe far outside it
    ("kept-out facts the assistant knew / never got right", "117 / 309", "110 / 308",
     "within noise"),
    ("conversations", "1,985, of which 794 refused", "1,935, of which 774 refused",
     "within noise"),
    ("parameters", "362,240", "2,566,272", "differs"),
    ("documents kept", "1,200 of 5,107 pages", "1,000 of 5,107 pages", "differs"),
    ("documents kept", "3,407 of 5,107 pages", "3,407 of 5,107 pages", "same"),
    # decimals: max(0.1, 10 %)
    ("final loss (train / validation)", "0.610 / 1.580", "0.598 / 1.571", "within noise"),
    ("final loss (train / validation)", "0.610 / 1.980", "0.598 / 1.571", "differs"),
    # where a curve peaked follows its values; only the values are judged
    ("best-of-n", "+0.58 / +0.66 (n=8) / +0.40", "+0.58 / +0.68 (n=4) / +0.42", "within noise"),
    ("RL", "+0.63 (step 40)", "+0.63 (step 20)", "within noise"),
    ("RL", "+0.93 (step 40)", "+0.63 (step 20)", "differs"),
    # samples of text are not judged, nor values of another shape
    ("'Who are you?'", "'I am Pebble, made by'", "'I am Pebble.'", "text differs"),
    ("a", "1 / 2", "1 / 2 / 3", "text differs"),
    ("sft · What is 3511 + 515?", "Answer: 3866", "Answer: 8866", "text differs"),
    # times depend on the machine: only their ratio is shown
    ("time", "100 s", "50 s", "clock"),
    ("speed", "3,065 tokens/s", "3,065 tokens/s", "clock"),
    ("x", None, "1", "missing"),
    ("x", "1", None, "new"),
])
def test_each_rule_of_the_comparison(measure, mine, shipped, verdict):
    got, why = R.compare_value(measure, mine, shipped)
    assert got == verdict, (got, why)
    if verdict == "differs":
        assert " vs " in why


def test_the_clock_gives_the_ratio_and_differing_rows_name_their_numbers():
    assert R.compare_value("time", "100 s", "50 s")[1].startswith("2.00x")
    _, why = R.compare_value("loss", "0.9 / 1.6", "0.5 / 1.6")
    assert why.startswith("0.9 vs 0.5")


def test_numbers_are_read_as_written():
    assert R.numbers_in("18% / 52% -> 49% / 70%") == ["18%", "52%", "49%", "70%"]
    assert R.numbers_in("6,000 x 2,048 = 12,288,000 tokens") == ["6,000", "2,048", "12,288,000"]
    assert R.numbers_in("-1.84 / +1.92 / 57.6; 2.18e+14 FLOPs") == ["-1.84", "+1.92", "57.6",
                                                                    "2.18e+14"]
    assert R.numbers_in("h.3 and 5-digit") == ["5"]
    assert R.numbers_in("1,985, of which 794") == ["1,985", "794"]   # a comma after is text
    assert R.skeleton("3 / 4 / 5-digit sums: 75%") == "# / # / #-digit sums: #"


def test_compare_covers_both_cards_and_marks_stages_a_run_did_not_reach():
    shipped = {"a": {"x": "1", "y": "50%", "seconds": 10.0}, "b": {"z": "2", "seconds": 5.0},
               "chain": {"finished": ["a", "b"]}}
    mine = {"a": {"x": "1", "y": "90%", "w": "3", "seconds": 30.0},
            "chain": {"finished": ["a"]}}
    rows = R.compare(mine, shipped)
    got = {(r["stage"], r["measure"]): r["verdict"] for r in rows}
    assert got == {("a", "x"): "same", ("a", "y"): "differs", ("a", "w"): "new",
                   ("a", "time"): "clock", ("b", "(the stage)"): "missing"}
    md = "\n".join(R.markdown_comparison(rows))
    assert "1 same" in md and "| a | y | 90% | 50% |" in md and "this run did not reach it" in md
    assert "| a | 30 s | 10 s | 3.00x |" in md
    assert R.summary(rows) == {"same": 1, "differs": 1, "new": 1, "clock": 1, "missing": 1}


def test_the_shipped_card_compared_with_itself_is_all_same_or_clock():
    card = R.load_card(assets.ASSETS_DIR)
    verdicts = {r["verdict"] for r in R.compare(card, card)}
    assert verdicts <= {"same", "clock"}
    assert R.chain_minutes(card) > 60


def test_a_missing_or_broken_card_says_how_to_remake_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="course_lib.pipeline --out"):
        R.load_card(tmp_path)
    (tmp_path / "report_card.json").write_text("{not json")
    with pytest.raises(ValueError, match="--resume"):
        R.load_card(tmp_path)


def test_the_html_card_is_one_offline_file_with_its_figures(tmp_path):
    card = json.loads((assets.ASSETS_DIR / "report_card.json").read_text())
    stage = "hallucination and tools"
    card[stage]["probe: greedy right / never right / always right"] = "5% / 50% / 4%"
    (tmp_path / "report_card.json").write_text(json.dumps(card))
    for name in ("base_model.json", "rl_model.json", "rlhf_model.json"):
        (tmp_path / name).write_bytes((assets.ASSETS_DIR / name).read_bytes())
    page = R.write_html(tmp_path).read_text()
    assert "<script" not in page and not re.search(r"(src|href)=['\"]https?:", page)
    assert page.count("data:image/png;base64,") == len(R.figures(tmp_path)) >= 4
    assert "class='differs'><td>probe: greedy right" in page
    assert "budget 150 min" in page


def test_figures_overlay_the_run_on_the_shipped_one():
    figs = dict(R.figures(assets.ASSETS_DIR))
    assert {"time per stage", "RL held-out pass@1",
            "RLHF: best-of-n and RL against the true score"} <= set(figs)
    ax = figs["RL held-out pass@1"].axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert "this run, seed 0" in labels and "shipped, seed 0" in labels


def test_a_broken_shipped_file_is_named_with_the_command_that_remakes_it(tmp_path, monkeypatch):
    """--from a stage reads the shipped files before it: one that is truncated or not what it
    should be says which file and which command remakes it."""
    for name in ("base_model.pt", "course_tokenizer.model", "corpus.parquet"):
        (tmp_path / name).write_bytes(b"half a file")
    monkeypatch.setattr(assets, "ASSETS_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"base_model\.pt cannot be read as a model .*"
                                         r"python -m course_lib\.pipeline"):
        assets.load_model("base")
    with pytest.raises(ValueError, match=r"course_tokenizer\.model cannot be read as a tokenizer"):
        assets.course_tokenizer()
    with pytest.raises(ValueError, match=r"corpus\.parquet cannot be read as the corpus .*"
                                         r"course_lib\.data"):
        assets.load_corpus()
    # a file that loads but is no model (a dict without weights) is named too
    import torch

    torch.save({"config": {}}, tmp_path / "elsewhere.pt")
    with pytest.raises(ValueError, match="elsewhere.pt cannot be read as a model"):
        assets.load_model(str(tmp_path / "elsewhere.pt"))
    (tmp_path / "base_model.pt").unlink()
    with pytest.raises(FileNotFoundError, match="does not exist; make it with"):
        assets.load_model("base")


def test_the_last_stage_names_a_broken_model_of_the_run_and_the_stage_that_makes_it(tmp_path):
    from course_lib import pipeline as P

    assert set(P.MADE_BY) == set(assets.MODELS) and set(P.MADE_BY.values()) <= {
        name for name, _ in P.STAGES}
    ch = P.Chain(tmp_path, recipe=P.RECIPES["v2"])
    (tmp_path / "rl_model.pt").write_bytes(b"cut short")
    with pytest.raises(ValueError, match=r"rl_model\.pt cannot be read as a model.*"
                                         r"--from 'reinforcement learning' --out"):
        P.chain_model(ch, "rl")
    model, made = P.chain_model(ch, "dpo")      # not made by this run: the shipped one
    assert made == "shipped" and model.config.vocab_size == assets.VOCAB_SIZE
