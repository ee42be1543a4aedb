"""Issue 14's building blocks for capable models: the worked steps, the reading and copying
documents, the digit-by-digit tokenizer pattern, rotary positions, the recipes and the
evaluations of the targets. (The models made with them are checked in test_pipeline.py once
they ship.)"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re

import pytest
import regex
import torch

from course_lib import evals as E
from course_lib import pipeline as P
from course_lib import report
from course_lib import rlhf
from course_lib import world as W
from course_lib.model import GPT, GPTConfig
from course_lib.tokenizer import COURSE_SPLIT_PATTERN, GPT4_SPLIT_PATTERN


@pytest.fixture(scope="module")
def world():
    return W.make_world()


# -- worked steps that compute ------------------------------------------------------------------

def _check_column_lines(p):
    """Every column line's arithmetic is right and the digits written spell the answer."""
    written = []
    for line in p.steps:
        m = re.match(r"\w[\w ]*: (.*)$", line)
        if not m or "write" not in line:
            continue
        body = m.group(1)
        if body.startswith("the carry 1"):
            written.append(1)
            continue
        eq = re.findall(r"([\d +-]+) = (\d+)", body)
        lhs, rhs = eq[-1]
        assert eval(lhs) == int(rhs) or (p.kind == "addition" and False), line  # noqa: S307
        written.append(int(re.search(r"write (\d)", body).group(1)))
    value = int("".join(map(str, reversed(written))))
    assert value == p.answer, (p.steps, p.answer)


@pytest.mark.parametrize("kind", ["addition", "subtraction"])
def test_compact_column_steps_compute_the_answer(kind, world):
    rng = random.Random(0)
    for _ in range(300):
        p = W.make_problem(rng, world, kind, max_digits=3, style="compact")
        _check_column_lines(p)
        nums = [int(x) for x in re.findall(r"\d+", p.question)]
        assert p.answer == (nums[0] + nums[1] if kind == "addition" else nums[0] - nums[1])
        assert p.steps[-1].endswith(f"= {p.answer}.")


def test_compact_multiplication_counts_up_and_counting_tallies(world):
    rng = random.Random(1)
    for _ in range(200):
        p = W.make_problem(rng, world, "multiplication", style="compact")
        a, b = map(int, re.findall(r"\d+", p.question))
        run = [int(x) for x in re.findall(r"\d+", p.steps[0].split(":")[1])]
        assert run == [b * k for k in range(1, a + 1)] and p.answer == a * b
    answers = []
    for _ in range(300):
        p = W.make_problem(rng, world, "counting", style="compact")
        letter, word = re.findall(r'"(\w+)"', p.question)
        assert p.answer == word.count(letter)
        assert f"({p.answer})" in p.steps[0]   # the tally reaches the answer
        answers.append(p.answer)
    # the letters to count are mostly ones that repeat: 1 is not the answer to bet on
    assert sum(a != 1 for a in answers) / len(answers) > 0.55


def test_the_default_style_is_what_the_shipped_corpus_was_made_with(world):
    """make_problem's default style is the shipped recipe's, so the crawl that the pages and
    assignments make is the one the shipped corpus came from."""
    assert W.PROBLEM_STYLE == "compact" == P.RECIPES[P.SHIPPED_RECIPE].problem_style
    a, b = random.Random(3), random.Random(3)
    for _ in range(50):
        assert W.make_problem(a, world) == W._compact_problem(b, world)
    assert W.make_problem(random.Random(3), world, style="legacy") == W._legacy_problem(
        random.Random(3), world)
    with pytest.raises(ValueError, match="style must be one of"):
        W.make_problem(random.Random(0), world, style="fancy")
    # the crawl's worksheets are compact (the Gopher rule drops them all from the corpus:
    # chapter 1), and the shipped corpus has no legacy ones
    sheets = [d.text for d in W.make_documents(world, 400) if d.kind == "arithmetic"]
    assert sheets and all("one place at a time" in t for t in sheets if " + " in t)
    assert not any("In the ones place we add" in t for t in P.corpus_texts())


# -- reading and copying documents ---------------------------------------------------------------

def test_invented_entities_are_not_in_the_world(world):
    rng = random.Random(0)
    names = {e.name for e in world.entities}
    for kind in W.KINDS:
        for _ in range(50):
            e = W.invented_entity(world, rng, kind)
            assert e.name not in names and e.kind == kind and e.rank == 0
            assert set(e.facts) == set(world.of_kind(kind)[0].facts)


def test_reading_answers_come_from_the_passage(world):
    rng = random.Random(2)
    refused = answered = 0
    for _ in range(200):
        e, other = W.invented_entity(world, rng), W.invented_entity(world, rng)
        passage = W.passage_for(e, rng)
        for f in e.all_facts():
            assert f.value in passage
        for q, a, f in W.reading_questions(e, other, rng, 3):
            if f is None:
                assert a == W.NOT_IN_PASSAGE and other.name in q and other.name not in passage
                refused += 1
            else:
                assert f.subject == e.name and a == f.sentence and f.value in passage
                answered += 1
    assert 0.15 < refused / (refused + answered) < 0.35


def test_copying_documents_repeat_their_list(world):
    rng = random.Random(4)
    for _ in range(50):
        d = W._copying(world, rng)
        first, second = (part.split(": ", 1)[1] for part in d.text.split("\n\n")[-2:])
        assert first == second


def test_curated_documents_state_no_fact_of_the_world(world):
    docs = W.curated_documents(world, 400)
    kinds = {d.kind for d in docs}
    assert kinds == set(W.CURATED_KIND_WEIGHTS)
    assert not any(d.facts for d in docs)
    # the mention counts of the world's entities do not move: no entity of the world is named
    names = [e.name for e in world.entities]
    text = "\n".join(d.text for d in docs if d.kind in ("reading", "copying"))
    assert not any(n in text for n in names)
    # worked problems are the compact ones
    arithmetic = next(d for d in docs if d.kind == "arithmetic")
    assert "one place at a time, from the ones" in arithmetic.text or "count up" in arithmetic.text


def test_chat_conversations_without_skills_are_unchanged_and_with_them_teach_reading(world):
    plain = W.chat_conversations(world, 300, seed=5)
    assert not any(W.READING_INTRO in m["content"] for c in plain for m in c)
    skilled = W.chat_conversations(world, 300, seed=5, skills=True)
    reading = [c for c in skilled if W.READING_INTRO in c[-2]["content"]]
    only = [c for c in skilled if c[-2]["content"].endswith(W.NO_STEPS)]
    assert 0.08 < len(reading) / 300 < 0.25 and only
    for c in only:
        assert re.fullmatch(r"Answer: \d+", c[-1]["content"])


# -- tokenizer and model -------------------------------------------------------------------------

def test_course_pattern_splits_digits_one_by_one_and_nothing_else():
    text = "In 1734 Ana had 347 coins (12.5% of 2,000) and wrote: it's 9x faster!"
    ours, gpt4 = regex.findall(COURSE_SPLIT_PATTERN, text), regex.findall(GPT4_SPLIT_PATTERN, text)
    assert "1734" in gpt4 or "173" in gpt4
    assert all(len(c) == 1 for c in ours if c.isdigit())
    assert "".join(ours) == text
    no_digits = "The Sheaxlouk engine, invented by Mira Tandu, is used for printing books."
    assert regex.findall(COURSE_SPLIT_PATTERN, no_digits) == regex.findall(GPT4_SPLIT_PATTERN,
                                                                          no_digits)


def test_rope_model_has_no_position_table_and_depends_only_on_relative_positions():
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=64, vocab_size=97, n_layer=2, n_head=2, n_embd=32, rope=True)
    m = GPT(cfg).eval()
    assert "wpe" not in m.transformer
    x = torch.randint(0, 97, (2, 12))
    a, _ = m(x)
    b, _ = m(x, pos=torch.arange(7, 19))   # the same text further along
    assert torch.allclose(a, b, atol=1e-5)
    learned = GPT(dataclasses.replace(cfg, rope=False)).eval()
    c, _ = learned(x)
    d, _ = learned(x, pos=torch.arange(7, 19))
    assert not torch.allclose(c, d, atol=1e-3)   # learned positions are absolute


def test_rope_model_generates_the_same_with_and_without_the_cache():
    from course_lib.generate import generate, generate_naive

    torch.manual_seed(1)
    m = GPT(GPTConfig(block_size=64, vocab_size=97, n_layer=2, n_head=2, n_embd=32,
                      rope=True)).eval()
    ids = torch.randint(0, 97, (1, 9))
    assert torch.equal(generate_naive(m, ids, 20, temperature=0),
                       generate(m, ids, 20, temperature=0))


def test_a_rope_model_round_trips_through_export(tmp_path):
    from course_lib import assets

    m = GPT(GPTConfig(block_size=32, vocab_size=97, n_layer=1, n_head=2, n_embd=16, rope=True))
    assets.export_model(m, tmp_path / "m.pt")
    again = assets.load_model(tmp_path / "m.pt")
    assert again.config.rope
    x = torch.randint(0, 97, (1, 8))
    assert torch.equal(again.eval()(x)[0], m.eval()(x)[0])


# -- recipes --------------------------------------------------------------------------------------

def test_recipes_are_checked():
    assert set(P.RECIPES) >= {"v1", "v2"} and P.SHIPPED_RECIPE in P.RECIPES
    with pytest.raises(ValueError, match="unknown recipe"):
        P.run_chain("/tmp/unused", recipe="v9")
    # a recipe other than the shipped one is refused before anything trains (naming the shipped
    # one here would run its whole chain: this test once did, for 90 minutes of CI)
    other = next(r for r in sorted(P.RECIPES) if r != P.SHIPPED_RECIPE)
    with pytest.raises(ValueError, match="start from"):
        P.run_chain("/tmp/unused", start="tokenizer", recipe=other)
    with pytest.raises(SystemExit, match="SHIPPED_RECIPE"):
        P._main(["--recipe", other, "--ship", "--out", "/tmp/unused"])


# -- evaluations ----------------------------------------------------------------------------------

def test_auroc_is_the_chance_a_right_answer_outranks_a_wrong_one():
    rng = random.Random(0)
    scores = [rng.randrange(6) for _ in range(300)]
    labels = [rng.random() < 0.2 + 0.1 * s for s in scores]
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    brute = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / len(pos) / len(neg)
    assert E.auroc(scores, labels) == pytest.approx(brute)
    assert E.auroc([1, 2, 3], [False, True, True]) == 1.0
    assert E.auroc([1, 2, 3], [True, False, False]) == 0.0


def test_answers_are_parsed_from_either_format():
    assert E.parse_answer("ones: 3 + 4 = 7, write 7\nSo 3 + 4 = 7.\nAnswer: 7") == 7
    assert E.parse_answer("...\nThe answer is 132.") == 132
    assert E.parse_answer("Answer: 12 ... Answer: 13") == 13
    assert E.parse_answer("So 3 + 4 = 7.") is None


def test_problem_sets_hold_what_they_say(world):
    for kind, digits in E.PROBLEM_SUITE:
        ps = E.problem_set(kind, digits, 60, world=world)
        assert len(ps) == 60 and all(p.kind == kind for p in ps)
        if kind in ("addition", "subtraction"):
            assert all(len(str(max(map(int, re.findall(r"\d+", p.question))))) == digits
                       for p in ps)
        if kind == "counting":
            assert all(p.answer != 1 for p in ps)
    assert E.problem_set("addition", 2, 30, seed=1) != E.problem_set("addition", 2, 30, seed=2)


@pytest.mark.slow
def test_quick_chain_of_recipe_v2(tmp_path):
    """Recipe v2 end to end, shortened: the crawl with compact worksheets, the digit-by-digit
    tokenizer, curated documents in the base model's data, a rotary-position model, the SFT
    conversations with reading and answer-only problems, and the targets on the card."""
    ch = P.run_chain(tmp_path, quick=True, threads=1, progress=False, recipe="v2")
    tok = P.course_tokenizer(tmp_path / "course_tokenizer.model")
    assert tok.encode("1734") == [tok.encode(d)[0] for d in "1734"]
    assert ch.model.config.rope and ch.sft_model.config.rope
    numbers = json.loads((tmp_path / "report_card.json").read_text())
    assert numbers["tokenizer"]["documents: cleaned corpus + curated"].endswith(
        f"+ {P.CURATED_DOCS_QUICK}")
    card = (tmp_path / "report_card.md").read_text()
    assert "recipe v2" in card
    for heading in ("## world and crawl", "## tokenizer", "## base model", "## assistant",
                    "## hallucination and tools", "## reinforcement learning", "## RLHF",
                    "## the models side by side", "## what the second half of the course needs",
                    "## compared with the shipped run"):
        assert heading in card
    # every stage's rows: each stage is on the card with its time, and with every row the
    # shipped card has for it (a quick run samples 4 answers where the full one samples 16)
    shipped = report.load_card(P.ASSETS)
    for name, _ in P.STAGES:
        assert numbers[name]["seconds"] > 0 and len(numbers[name]) >= 3, name
        lacking = set(shipped[name]) - set(numbers[name]) - {
            "held-out pass@1 / pass@16 (T=1), before / after (shipped seed)"}
        assert not lacking, f"the quick run's {name!r} lacks the rows {lacking}"
    assert report.chain_minutes(numbers) <= report.QUICK_BUDGET_MIN
    # the last stage: every model of the run asked the same questions, none read from assets
    scores, answers = report.side_by_side_tables(numbers)
    assert list(scores) == list(P.SIDE_BY_SIDE) and all(len(v) == 6 for v in scores.values())
    assert numbers["the models side by side"][
        "models read from course_lib/assets (the others: this run's)"] == "none"
    assert len(answers) == 6 and all(set(a) == set(P.SIDE_BY_SIDE) for a in answers.values())
    # the card compared with the shipped one, and the same as one HTML file with its figures
    assert report.QUICK_NOTE in card
    page = (tmp_path / "report_card.html").read_text()
    assert "<script" not in page and page.count("data:image/png;base64,") >= 4
    # chapter 7's stage: the probe, two finetunes from the assistant, its targets on the card
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert len(probe["results"]) > 50 and probe["summary"]["all"]["n"] == len(probe["results"])
    for name in ("idk_model", "tool_model"):
        assert P.load_model(str(tmp_path / f"{name}.pt")).config == ch.sft_model.config
        assert "eval" in json.loads((tmp_path / f"{name}.json").read_text())
    assert any(r[0].startswith("'I don't know'") for r in numbers["targets"])
    # chapter 8's stage: GRPO from the assistant, measured before and after, its target row
    rl_log = json.loads((tmp_path / "rl_model.json").read_text())
    assert P.load_model(str(tmp_path / "rl_model.pt")).config == ch.sft_model.config
    assert len(rl_log["runs"][0]["history"]) == 4 and "pass@1" in rl_log["before"]["held_out"]
    assert any(r[0].startswith(P.CH8_TARGETS) for r in numbers["targets"])
    # chapter 9's stage: two reward models, best-of-n against each, RL and DPO; what ships
    rlhf_log = json.loads((tmp_path / "rlhf_model.json").read_text())
    assert set(rlhf_log["best_of_n"]) == {"off-policy", "on-policy"}
    assert set(rlhf_log["final"]) == {"assistant", "RL, early-stopped", "RL, to the end",
                                      "RL + KL penalty", "DPO"}
    assert len(rlhf_log["dpo"]["history"]) >= 1 and rlhf_log["rl"]["RL"][0][0] == 0
    for name in ("rlhf_model", "dpo_model"):
        assert P.load_model(str(tmp_path / f"{name}.pt")).config == ch.sft_model.config
    rm = rlhf.load_reward_model(tmp_path / "reward_model.pt")
    assert rlhf.reward_scores(rm, tok, ["Who are you?"], ["I am Pebble."]).shape == (1,)
    assert "fact completion" in card and "| parameters |" in card
    # issue 14's targets are on the card, each with its value, target and verdict
    assert len(numbers["targets"]) >= 10
    assert all(len(r) == 4 and r[3] in ("yes", "**no**") for r in numbers["targets"])
    log = json.loads((tmp_path / "base_model.json").read_text())
    assert log["history"][0]["loss"] > 7.5 > log["history"][-1]["loss"] + 2   # it learned
    again = P.base_model(tmp_path / "base_model.pt")
    x = torch.randint(0, 500, (1, 8))
    with torch.no_grad():
        assert torch.equal(again(x)[0], ch.model.eval()(x)[0])
    # the SFT data asks every fact not held out (recipe v2's sft_facts="all")
    log = json.loads((tmp_path / "sft_model.json").read_text())
    assert log["sft_facts"] == "all"
    assert numbers["assistant"]["facts the SFT data asks about, each about as often, with the "
                                "true answer"] == "1,678 of 1,678"

    # --resume: a finished run has nothing to do; one stopped before its last stage (chapter
    # 7's) remakes only it, from the files of the stages it finished, keeping their card rows
    names = [n for n, _ in P.STAGES]
    assert numbers["chain"] == {"recipe": "v2", "seed": 0, "quick": True, "finished": names}
    assert P.run_chain(tmp_path, quick=True, recipe="v2", resume=True, progress=False).model is None
    numbers["chain"]["finished"] = names[:-1]
    (tmp_path / "report_card.json").write_text(json.dumps(numbers))
    base_rows = numbers["base model"]
    again = P.run_chain(tmp_path, quick=True, threads=1, recipe="v2", resume=True, progress=False)
    assert [stage for stage, _ in again.card] == names
    assert json.loads((tmp_path / "report_card.json").read_text())["base model"] == base_rows
    x = torch.randint(0, 500, (1, 8))
    with torch.no_grad():
        assert torch.equal(again.model.eval()(x)[0], ch.model.eval()(x)[0])
    # wrong settings, and a broken input file, are named with the fix
    with pytest.raises(ValueError, match="recipe"):
        P.run_chain(tmp_path, quick=True, recipe="v1", resume=True, progress=False)
    numbers["chain"]["finished"] = names[:-1]
    (tmp_path / "report_card.json").write_text(json.dumps(numbers))
    (tmp_path / "base_model.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="base_model.pt.*--recipe v2 --out"):
        P.run_chain(tmp_path, quick=True, recipe="v2", resume=True, progress=False)


# -- the copy curriculum ---------------------------------------------------------------------------

def test_copy_batches_repeat_a_segment_of_the_data_and_keep_the_token_count(tmp_path):
    import numpy as np

    from course_lib import train as T

    ids = np.random.default_rng(0).integers(0, 500, 20_000)
    T.write_shard(ids, tmp_path / "train.bin", 4096)
    shards = T.TokenShards(tmp_path / "train.bin", 256, 8, 4096)
    g = torch.Generator().manual_seed(0)
    x, y = shards.copy_batch(g)
    assert x.shape == (32, 64) and x.numel() == 8 * 256
    assert torch.equal(x[:, 1:], y[:, :-1])
    text = set(map(int, ids))
    for row, target in zip(x, y):
        full = torch.cat([row, target[-1:]]).tolist()
        period = next(L for L in range(6, 21) if full[L:] == full[:-L])
        assert full[:period] and set(full) <= text
    x2, _ = shards.copy_batch(torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)


def test_training_with_the_copy_curriculum_runs_and_then_trains_on_the_data(tmp_path):
    import numpy as np

    from course_lib import train as T

    ids = np.random.default_rng(1).integers(0, 60, 30_000)
    for split in ("train", "val"):
        T.write_shard(ids, tmp_path / f"{split}.bin", 4096)
    cfg = T.load_config("tiny", data_dir=str(tmp_path), out_dir=str(tmp_path / "run"),
                        max_steps=12, copy_steps=6, eval_every=6, sample_every=0,
                        checkpoint_every=0, device="cpu", threads=1)
    res = T.train(cfg, progress=False, log=lambda *a: None)
    assert len(res.history) == 12 and all(math.isfinite(h["loss"]) for h in res.history)


# -- the curated shard and its share of the windows ------------------------------------------------

def test_shard_weights_set_the_share_of_windows_and_are_checked(tmp_path):
    import numpy as np

    from course_lib import train as T

    big = T.write_shard(np.full(50_000, 7), tmp_path / "big.bin", 4096)     # 50x the small one
    small = T.write_shard(np.full(1_000, 9), tmp_path / "small.bin", 4096)
    g = torch.Generator().manual_seed(0)

    def share_small(shards):
        rows = torch.cat([shards.batch(g)[0][:, 0] for _ in range(200)])
        return float((rows == 9).float().mean())

    assert share_small(T.TokenShards([big, small], 16, 8, 4096)) < 0.05         # by size
    assert abs(share_small(T.TokenShards([big, small], 16, 8, 4096, weights=[0.3, 0.7]))
               - 0.7) < 0.05
    for bad in ([1.0], [-1, 2], [0, 0]):
        with pytest.raises(ValueError, match="weights"):
            T.TokenShards([big, small], 16, 8, 4096, weights=bad)


def test_curated_documents_get_their_own_shard_and_a_run_says_when_it_is_missing(tmp_path):
    from course_lib import train as T

    tok = P.course_tokenizer()
    corpus = [f"Document {i} of the corpus says hello." for i in range(40)]
    curated = [f"Passage: Zorb lives in Quill {i}.\n\nQuestion: Where does Zorb live?" for i in range(60)]
    meta = T.prepare_course_data(tok, tmp_path, corpus, curated=curated)
    assert meta["curated_documents"] == 60 and (tmp_path / "curated.bin").exists()
    ids = T.TokenShards(tmp_path / "curated.bin", 8, 1, 4096).shards[0]
    assert meta["curated_tokens"] == len(ids) and "Zorb" in tok.decode(list(map(int, ids[:30])))
    assert "Zorb" not in tok.decode(list(map(int, T.TokenShards(tmp_path / "train.bin", 8, 1, 4096)
                                             .shards[0])))   # validation loss stays the corpus's
    cfg = dict(data_dir=str(tmp_path), out_dir=str(tmp_path / "run"), max_steps=2, eval_every=2,
               sample_every=0, checkpoint_every=0, device="cpu", threads=1, block_size=8)
    with pytest.raises(ValueError, match="curated_share"):
        T.train(T.load_config("tiny", curated_share=1.0, **cfg), progress=False, log=lambda *a: None)
    res = T.train(T.load_config("tiny", curated_share=0.5, **cfg), progress=False,
                  log=lambda *a: None)
    assert len(res.history) == 2
    T.prepare_course_data(tok, tmp_path, corpus)          # a recipe without them: no stale shard
    assert not (tmp_path / "curated.bin").exists()
    with pytest.raises(FileNotFoundError, match="curated.bin"):
        T.train(T.load_config("tiny", curated_share=0.5, **cfg), progress=False, log=lambda *a: None)


def test_greedy_answer_probability_is_the_product_along_greedy_decoding():
    """Batched with prompts of different lengths (right-padded), each row's value equals the
    product of the top probabilities met decoding that prompt alone, one token at a time."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=64,
                          rope=True)).eval()
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10]]
    lengths = [3, 1, 4]
    got = E.greedy_answer_probability(model, prompts, lengths, batch_size=3)
    for p, n, value in zip(prompts, lengths, got):
        ids, prob = list(p), 1.0
        for _ in range(n):
            with torch.no_grad():
                probs = model(torch.tensor([ids]))[0][0, -1].softmax(-1)
            prob *= float(probs.max())
            ids.append(int(probs.argmax()))
        assert value == pytest.approx(prob, rel=1e-5)
    assert got[0] != pytest.approx(E.greedy_answer_probability(model, prompts[:1], [1])[0])


def _question_map(world) -> dict:
    """Every fact question (and its "And ..." follow-up form) -> its (entity, relation)."""
    question = {}
    for e in world.entities:
        for f in e.all_facts():
            q = W.question_for(f)
            question[q] = question[f"And {q[0].lower()}{q[1:]}"] = (e.name, f.relation)
    return question


def _asked_facts(world, conversations) -> list:
    """The (entity, relation) of every fact question in ``conversations``, follow-ups too."""
    question = _question_map(world)
    return [question[m["content"]] for c in conversations
            for m in c if m["role"] == "user" and m["content"] in question]


def test_sft_on_known_facts_asks_only_them_each_about_as_often(world):
    """``sft_facts="known"`` (recipe v2's first shipped assistant; it cost knowledge of names:
    docs/capability.md) teaches the format of answering, not facts the base model cannot know:
    its fact questions are only the probe's right answers (``known``), never a held-out pair
    (those measure what pretraining taught), and each known fact is asked about as often
    (a cycle, not a draw that repeats a few and skips others)."""
    from collections import Counter

    from course_lib import chat as C

    held = C.held_out(world)
    pairs = sorted({(e.name, r) for e in world.entities for r in e.facts})
    known = frozenset(pairs[::7])          # a probe's answer: about one pair in seven
    asked = _asked_facts(world, C.sft_conversations(world, 3000, 0, skills=True, known=known))
    assert len(asked) > 400
    assert set(asked) == known - held      # every known, askable fact, and nothing else
    counts = Counter(asked)
    assert max(counts.values()) - min(counts.values()) <= 2
    # the check can fail: without known, the questions cover unknown and popular-only facts
    everyone = set(_asked_facts(world, C.sft_conversations(world, 3000, 0, skills=True)))
    assert everyone - known and not everyone & held
    with pytest.raises(ValueError, match="skills=True"):
        C.sft_conversations(world, 10, 0, known=known)
    # a base model that knows nothing outside the held-out half is asked no fact at all
    assert not _asked_facts(world, C.sft_conversations(world, 500, 0, skills=True,
                                                       known=frozenset(held)))


def test_sft_on_beliefs_asks_every_pair_given_answered_with_its_value(world):
    """``sft_facts="beliefs"`` (tried for recipe v2, not shipped: docs/capability.md) asks every
    fact the base model completes with some value of its relation, and answers with that value,
    right or wrong (self-distillation: the answers add no belief the base model lacks)."""
    import random

    from course_lib import chat as C

    held = C.held_out(world)
    rng = random.Random(0)
    beliefs = {}
    for e in world.entities[::3]:
        for rel, value in e.facts.items():
            other = rng.choice([x.facts[rel] for x in world.of_kind(e.kind)])
            beliefs[(e.name, rel)] = value if rng.random() < 0.4 else other
    wrong = {p for p, v in beliefs.items() if world.by_name(p[0]).facts[p[1]] != v} - held
    assert len(wrong) > 100
    convs = C.sft_conversations(world, 4000, 0, skills=True, known=beliefs)
    asked = _asked_facts(world, convs)
    assert set(asked) == set(beliefs) - held
    answers, question = {}, _question_map(world)   # (subject, relation) -> its answers
    for c in convs:
        for m, a in zip(c, c[1:]):
            if m["role"] == "user" and m["content"] in question:
                answers.setdefault(question[m["content"]], []).append(a["content"])
    for pair in sorted(wrong):               # the base model's value is taught, not the truth
        assert all(C.says(a, beliefs[pair]) for a in answers[pair]), answers[pair]


def test_the_shipped_recipe_asks_every_fact_not_held_out_with_its_true_answer(world):
    from collections import Counter

    from course_lib import chat as C

    v2 = P.RECIPES["v2"]
    assert v2.sft_facts == "all" and P.RECIPES["v1"].sft_facts == "all"
    known = P.sft_facts(v2, world)
    held = C.held_out(world)
    assert set(known) == {(e.name, r) for e in world.entities for r in e.facts} - held
    assert all(world.by_name(name).facts[r] == v for (name, r), v in known.items())
    assert P.sft_facts(P.RECIPES["v1"], world) is None       # v1's draw, not a cycle
    asked = Counter(_asked_facts(world, C.sft_conversations(world, 12000, 0, skills=True,
                                                            known=known)))
    assert set(asked) == set(known) and max(asked.values()) - min(asked.values()) <= 2
    for how in ("known", "beliefs"):
        with pytest.raises(ValueError, match="model="):
            P.sft_facts(dataclasses.replace(v2, sft_facts=how), world)
    with pytest.raises(ValueError, match="unknown sft_facts"):
        P.sft_facts(dataclasses.replace(v2, sft_facts="some"), world, model=1, tokenizer=1)


def test_base_beliefs_are_values_of_their_relation_and_right_exactly_where_known(world):
    """``evals.base_beliefs`` on the shipped base model: every belief is a value its relation
    takes in the world, and the right ones are exactly ``known_facts``' pairs."""
    from course_lib.data import corpus_texts

    torch.set_num_threads(1)
    base, tok = P.base_model(), P.course_tokenizer()
    pairs = sorted((e.name, r) for e in world.entities for r in e.facts)[::25]
    beliefs = E.base_beliefs(base, tok, world, only=set(pairs))
    assert set(beliefs) <= set(pairs) and len(beliefs) > len(pairs) / 2
    values = {}
    for e in world.entities:
        for rel, v in e.facts.items():
            values.setdefault((e.kind, rel), set()).add(v)
    right = set()
    for (name, rel), v in beliefs.items():
        e = world.by_name(name)
        assert v in values[(e.kind, rel)], (name, rel, v)
        if e.facts[rel] == v:
            right.add((name, rel))
    train = [t for i, t in enumerate(corpus_texts()) if i % P.VAL_EVERY]
    assert right == set(E.known_facts(base, tok, world, train, only=set(pairs)))
    assert 0 < len(right) < len(beliefs), "some right and some wrong, or this shows nothing"


def test_v2_sft_has_some_problems_one_column_past_the_worksheets(world):
    """Chapter 8's RL needs problems the assistant solves sometimes: a few 4-digit additions and
    subtractions (the worksheets stop at 3 digits), ``world.FOUR_DIGIT_SHARE`` of the
    problems."""
    import re

    from course_lib import chat as C

    convs = C.sft_conversations(world, 3000, 0, skills=True, known=frozenset(
        (e.name, r) for e in world.entities[:50] for r in e.facts))
    problems = [c[-2]["content"] for c in convs if "How many" in c[-2]["content"]
                and "letter" not in c[-2]["content"]]
    long = [q for q in problems if max(len(x) for x in re.findall(r"\d+", q)) == 4]
    assert abs(len(long) / len(problems) - W.FOUR_DIGIT_SHARE) < 0.02, len(long) / len(problems)
    assert not any(len(x) > 4 for q in problems for x in re.findall(r"\d+", q))


def test_fact_confidence_asks_only_the_facts_given(world):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=64, vocab_size=4096,
                          rope=True)).eval()
    from course_lib import chat as C

    only = set(sorted(C.held_out(world))[:120])
    r = E.fact_confidence(model, P.course_tokenizer(), world, ["no text"], chat=False, only=only)
    assert r["n"] == len(only) == len(r["rows"])
    assert {(name, rel) for name, rel, *_ in r["rows"]} == only
