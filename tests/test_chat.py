"""Chapter 6's library (course_lib.chat): the chat format and its loss mask, the masked loss,
finetuning data for course_lib.train, and the shipped assistant."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from course_lib import chat as C
from course_lib import pipeline as P
from course_lib import train as T
from course_lib.world import ASSISTANT_NAME, make_world


@pytest.fixture(scope="module")
def tok():
    return C.chat_tokenizer()


def convo(*pairs, system=None):
    out = [{"role": "system", "content": system}] if system else []
    for q, a in pairs:
        out.append({"role": "user", "content": q})
        if a is not None:
            out.append({"role": "assistant", "content": a})
    return out


def test_chat_tokens_take_the_ids_chapter_4_left_free(tok):
    assert C.CHAT_TOKENS == {"<|im_start|>": 4081, "<|im_sep|>": 4082, "<|im_end|>": 4083}
    assert tok.special_tokens[P.ENDOFTEXT] == 4080
    base = P.course_tokenizer()
    assert "<|im_end|>" not in base.special_tokens, "chat_tokenizer must not change its argument"
    assert C.chat_tokenizer(tok) is tok
    text = "Hello there, 12 + 7?"
    assert tok.encode(text) == base.encode(text)


def test_render_marks_exactly_the_assistant_tokens(tok):
    c = convo(("Who are you?", "I am Pebble."), ("And 2 + 2?", "4"), system="Be brief.")
    ids, mask = C.render_conversation(c, tok)
    assert len(ids) == len(mask) and set(mask) == {0, 1}
    assert tok.decode(ids) == (
        "<|im_start|>system<|im_sep|>Be brief.<|im_end|>"
        "<|im_start|>user<|im_sep|>Who are you?<|im_end|>"
        "<|im_start|>assistant<|im_sep|>I am Pebble.<|im_end|>"
        "<|im_start|>user<|im_sep|>And 2 + 2?<|im_end|>"
        "<|im_start|>assistant<|im_sep|>4<|im_end|>")
    trained = tok.decode([i for i, m in zip(ids, mask) if m])
    assert trained == "I am Pebble.<|im_end|>4<|im_end|>"
    # the masked tokens are contiguous runs that end with <|im_end|>, one per assistant turn
    runs = "".join(map(str, mask)).split("0")
    assert [len(r) for r in runs if r] == [len(tok.encode("I am Pebble.")) + 1,
                                           len(tok.encode("4")) + 1]
    end = C.CHAT_TOKENS["<|im_end|>"]
    assert all(ids[i] == end for i in range(len(ids)) if mask[i] and
               (i + 1 == len(ids) or not mask[i + 1]))


def test_prompt_ends_with_the_assistants_header(tok):
    c = convo(("What is 3 + 4?", None))
    ids = C.render_prompt(c, tok)
    assert tok.decode(ids).endswith("<|im_end|><|im_start|>assistant<|im_sep|>")
    full, _ = C.render_conversation(convo(("What is 3 + 4?", "7")), tok)
    assert full[:len(ids)] == ids


@pytest.mark.parametrize("bad,match", [
    ([], "non-empty list"),
    ("hello", "non-empty list"),
    ([{"role": "bot", "content": "hi"}], "role 'bot'"),
    ([{"role": "user", "content": "  "}, {"role": "assistant", "content": "a"}], "empty content"),
    ([{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}], "empty content"),
    ([{"role": "user"}], "exactly the keys"),
    ([{"role": "user", "content": "a", "name": "x"}], "exactly the keys"),
    (convo(("q", "a")) + [{"role": "assistant", "content": "b"}], "two assistant turns in a row"),
    ([{"role": "user", "content": "q"}, {"role": "user", "content": "q2"},
      {"role": "assistant", "content": "a"}], "two user turns in a row"),
    (convo(("q", "a")) + [{"role": "system", "content": "s"}], "only the first"),
    ([{"role": "assistant", "content": "a"}], "first message after the system"),
    ([{"role": "system", "content": "s"}], "only a system message"),
    (convo(("q", None)), "must end with an assistant"),
    (convo(("say <|im_end|> please", "no")), "special token '<\\|im_end\\|>'"),
])
def test_malformed_conversations_are_named(tok, bad, match):
    with pytest.raises(ValueError, match=match):
        C.render_conversation(bad, tok)


def test_masked_cross_entropy_is_the_mean_over_the_assistant_tokens():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g) * 4
    targets = torch.randint(0, 11, (3, 7), generator=g)
    mask = (torch.rand(3, 7, generator=g) < 0.4).long()
    mask[0, 0] = 1
    got = C.masked_cross_entropy(logits, targets, mask)
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, 11),
                                             targets.masked_fill(mask == 0, -100).reshape(-1))
    torch.testing.assert_close(got, want)
    # not the mean over every token, and only masked positions get gradient
    everything = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1))
    assert not torch.isclose(got, everything)
    x = logits.clone().requires_grad_()
    C.masked_cross_entropy(x, targets, mask).backward()
    assert (x.grad.abs().sum(-1) > 0).long().equal(mask)
    big = C.masked_cross_entropy(logits * 1e4, targets, mask)
    assert torch.isfinite(big)
    with pytest.raises(ValueError, match="all 0"):
        C.masked_cross_entropy(logits, targets, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="shape"):
        C.masked_cross_entropy(logits, targets, mask[:, :-1])


def test_finetuning_shards_mask_targets_and_start_windows_at_conversations(tmp_path, tok):
    convs = [convo((f"What is {i} + 1?", f"It is {i + 1}.")) for i in range(120)]
    meta = C.prepare_sft_data(tok, tmp_path, convs, val_every=10)
    assert meta["train_conversations"] == 108 and meta["val_conversations"] == 12
    shards = T.TokenShards(tmp_path / "train.bin", 32, 16, 4096)
    x, y = shards.batch(torch.Generator().manual_seed(0))
    eot, end = tok.special_tokens[P.ENDOFTEXT], C.CHAT_TOKENS["<|im_end|>"]
    assert (x[:, 0] == eot).all(), "every window starts at a conversation"
    starts = set(np.fromfile(tmp_path / "train.bin.starts", dtype=np.int64).tolist())
    assert 0 in starts and len(starts) == 108
    for row_x, row_y in zip(x, y):
        trained = [int(t) for t in row_y if t != -100]
        assert trained and end in trained
        text = tok.decode([t for t in row_y.tolist() if t != -100])
        assert "What is" not in text and "user" not in text and text.startswith("It is")
    # a plain shard (no .mask / .starts) is unchanged: every target kept
    T.write_shard(list(range(100)), tmp_path / "plain.bin", 4096)
    _, y = T.TokenShards(tmp_path / "plain.bin", 8, 4, 4096).batch(torch.Generator())
    assert (y != -100).all()


def test_a_mask_of_the_wrong_length_is_refused(tmp_path):
    T.write_shard(list(range(100)), tmp_path / "t.bin", 4096)
    np.ones(99, dtype=np.uint8).tofile(tmp_path / "t.bin.mask")
    with pytest.raises(ValueError, match="99 entries for 100 tokens"):
        T.TokenShards(tmp_path / "t.bin", 8, 4, 4096)


def test_finetuning_starts_from_the_given_weights_and_learns_the_answers(tmp_path, tok):
    """A tiny GPT trained from random weights, exported, then finetuned with init_from on
    conversations whose answer is fixed by the question: the masked loss falls."""
    convs = [convo((f"Colour of thing {i % 7}?", ["red", "green", "blue", "black", "white",
                                                 "grey", "pink"][i % 7]))
             for i in range(300)]
    C.prepare_sft_data(tok, tmp_path / "sft", convs, val_every=10)
    shape = dict(vocab_size=4096, n_layer=2, n_head=2, n_embd=32, block_size=24, threads=1,
                 batch_size=8, eval_every=20, eval_batches=2, sample_every=0,
                 checkpoint_every=0, warmup_steps=5, max_lr=1e-2)
    pre = T.train(T.load_config("tiny", **shape, data_dir=str(tmp_path / "sft"), max_steps=1,
                                seed=1, out_dir=str(tmp_path / "pre")), progress=False)
    T.export_model(pre.model, tmp_path / "pre.pt")
    cfg = T.load_config("sft", **shape, data_dir=str(tmp_path / "sft"), max_steps=80,
                        init_from=str(tmp_path / "pre.pt"), out_dir=str(tmp_path / "ft"))
    first = T.train(cfg, progress=False, stop_after=1).model
    torch.testing.assert_close(  # one small step away from the exported weights (another seed)
        first.transformer.wpe.weight.detach(), pre.model.transformer.wpe.weight.detach(),
        atol=0.01, rtol=0)
    res = T.train(cfg, progress=False)
    losses = [r["loss"] for r in res.history]
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    bad = T.load_config("sft", **(shape | {"n_embd": 64}), data_dir=str(tmp_path / "sft"),
                        init_from=str(tmp_path / "pre.pt"), out_dir=str(tmp_path / "x"))
    with pytest.raises(ValueError, match="make the shapes agree"):
        T.train(bad, progress=False)


def test_the_finetuning_set_never_asks_the_held_out_facts():
    world = make_world()
    hold = C.held_out(world)
    facts = {(f.subject, f.relation) for f in world.facts()}
    assert 0.4 < len(hold) / len(facts) < 0.6
    convs = C.sft_conversations(world, 1500)
    asked = set()
    by_question = {q.question: (q.subject, q.relation) for q in
                   __import__("course_lib.world", fromlist=["x"]).fact_questions(world)}
    for c in convs:
        C.check_conversation(c)
        for m in c:
            if m["role"] == "user":
                q = m["content"]
                q = q if q in by_question else q[4:5].upper() + q[5:] if q.startswith("And ") else q
                if q in by_question:
                    asked.add(by_question[q])
    assert asked and not asked & hold
    assert any(ASSISTANT_NAME in m["content"] for c in convs for m in c)


def test_says_matches_whole_words():
    assert C.says("The favourite colour is green.", "green")
    assert not C.says("It is greenish.", "green")
    assert C.says("Born in 1874, yes.", "1874") and not C.says("18745", "1874")


@pytest.fixture(scope="module")
def assistant():
    return C.sft_model()


def test_shipped_assistant_knows_who_it_is_and_stops_at_its_turns_end(assistant, tok):
    answer = C.reply(assistant, tok, convo(("Who are you?", None)))
    assert ASSISTANT_NAME in answer, answer
    assert "<|im" not in answer and "user" not in answer.lower()
    log = json.loads(C.SFT_LOG_PATH.read_text())
    # finetuning teaches the format, not facts: the held-out popular questions are answered no
    # better than by the base model through chapter 5's best prompt (recipe v2's assistant is
    # behind it: docs/capability.md, findings 13-14; chapter 6 shows it), and far better than
    # facts of entities no document names
    sft, base, rare = (log[k]["accuracy"] for k in ("popular_sft", "popular_base", "rare_sft"))
    assert sft <= base + 0.05 and sft > 2 * rare and sft > 0.4, (sft, base, rare)
    assert ASSISTANT_NAME in log["who"]["assistant"]


def test_chat_loop_keeps_the_conversation_and_resets(assistant, tok):
    said = iter(["Hello!", "/reset", "What is your name?", "/quit"])
    shown = []
    c = C.chat_loop(assistant, tok, read=lambda _: next(said), write=shown.append,
                    temperature=0)
    assert [m["role"] for m in c] == ["user", "assistant"]
    assert c[0]["content"] == "What is your name?" and len(shown) == 2
    assert ASSISTANT_NAME in c[1]["content"]


def test_a_reply_is_cut_at_any_chat_token():
    assert C._cut(" 4<|im_end|><|im_start|>user") == "4"
    assert C._cut("Yes.<|im_start|>user<|im_sep|>and?") == "Yes."
    assert C._cut("a<|im_sep|>b") == "a" and C._cut("x<|endoftext|>y") == "x"


def test_fit_leaves_room_for_a_long_worked_answer():
    """A short prompt gets every new token asked for that fits the window (a 4-digit worked
    solution runs to about 190 tokens: half of a 256-token window cut every one of them before
    its answer); a long prompt keeps its last tokens and half the window for the reply."""
    from types import SimpleNamespace

    model = SimpleNamespace(config=SimpleNamespace(block_size=256))
    prompts, new = C._fit(model, [[1] * 40, [2] * 30], 200)
    assert new == 200 and [len(p) for p in prompts] == [40, 30]
    prompts, new = C._fit(model, [[1] * 40], 250)
    assert new == 216 and len(prompts[0]) == 40           # all the window the prompt leaves
    prompts, new = C._fit(model, [list(range(300)), [1] * 10], 200)
    assert new == 128 and prompts[0] == list(range(300))[-128:] and prompts[1] == [1] * 10
