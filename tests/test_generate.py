"""Chapter 5's inference (course_lib.generate): samplers, the KV cache, streaming, batches."""

from __future__ import annotations

import pytest
import torch

from course_lib import generate as G
from course_lib import model as M


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    m = M.GPT(M.GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=32))
    return m.eval()


@pytest.fixture(scope="module")
def base():
    from course_lib.pipeline import base_model, course_tokenizer

    return base_model(), course_tokenizer()


def test_temperature_divides_logits_before_the_softmax():
    x = torch.tensor([1.0, 2.0, 4.0])
    assert torch.equal(G.apply_temperature(x, 2.0), x / 2)
    p_cold = G.apply_temperature(x, 0.5).softmax(-1)
    p_hot = G.apply_temperature(x, 5.0).softmax(-1)
    assert p_cold[2] > x.softmax(-1)[2] > p_hot[2]
    with pytest.raises(ValueError, match="greedy"):
        G.apply_temperature(x, 0)


def test_top_k_keeps_exactly_k_and_ties():
    x = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    kept = torch.isfinite(G.top_k_filter(x, 2))
    assert kept.tolist() == [[False, True, False, True, False]]
    assert torch.isfinite(G.top_k_filter(x, 1)).sum() == 1
    assert torch.equal(G.top_k_filter(x, None), x) and torch.equal(G.top_k_filter(x, 9), x)
    tied = torch.tensor([3.0, 3.0, 1.0])
    assert torch.isfinite(G.top_k_filter(tied, 1)).sum() == 2  # both tied at the k-th value


def test_top_p_keeps_the_token_that_crosses_p_and_at_least_one():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()
    keep = lambda p: torch.isfinite(G.top_p_filter(logits, p)).tolist()  # noqa: E731
    assert keep(0.5) == [True, False, False, False]   # 0.5 reaches 0.5
    assert keep(0.6) == [True, True, False, False]    # 0.5 < 0.6: the crossing token stays
    assert keep(0.8) == [True, True, False, False]    # 0.8 reached exactly (within float)
    assert keep(0.81) == [True, True, True, False]
    assert keep(0.01) == [True, False, False, False]  # never empty
    shuffled = logits[[2, 0, 3, 1]]
    assert torch.isfinite(G.top_p_filter(shuffled, 0.6)).tolist() == [False, True, False, True]


def test_sample_is_seeded_greedy_at_zero_and_respects_filters():
    logits = torch.randn(4, 30, generator=torch.Generator().manual_seed(1))
    a = G.sample(logits, 1.0, generator=torch.Generator().manual_seed(7))
    b = G.sample(logits, 1.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.shape == (4,)
    assert torch.equal(G.sample(logits, 0), logits.argmax(-1))
    for _ in range(20):
        s = G.sample(logits, 1.5, top_k=3)
        top3 = logits.topk(3).indices
        assert all(int(s[r]) in top3[r].tolist() for r in range(4))
    assert G.sample(logits[0], 0).shape == ()


@pytest.mark.parametrize("temperature", [0, 1.0])
def test_cache_gives_exactly_the_naive_tokens_even_past_the_window(tiny, temperature):
    ids = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(3))
    kw = dict(temperature=temperature, top_k=20, top_p=0.9)
    naive = G.generate_naive(tiny, ids, 30, generator=torch.Generator().manual_seed(5), **kw)
    cached = G.generate(tiny, ids, 30, generator=torch.Generator().manual_seed(5), **kw)
    assert cached.shape == (2, 35) and torch.equal(naive, cached)  # 35 > block_size 16


def test_cached_logits_equal_the_full_forward(tiny):
    ids = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(4))
    full, _ = tiny(ids)
    cache = M.KVCache(2)
    first, _ = tiny(ids[:, :7], cache=cache)
    rest = [tiny(ids[:, t:t + 1], cache=cache)[0] for t in range(7, 12)]
    assert torch.allclose(torch.cat([first, *rest], dim=1), full, atol=1e-5)
    assert cache.length == 12
    assert cache.memory_bytes() == 2 * 2 * 3 * 12 * 32 * 4  # layers x (k, v) x B x T x C x fp32


def test_generate_with_cache_equals_greedy_naive(tiny, base):
    ids = torch.randint(0, 50, (2, 4), generator=torch.Generator().manual_seed(2))
    assert torch.equal(G.generate_with_cache(tiny, ids, 12), G.generate_naive(tiny, ids, 12,
                                                                             temperature=0))
    model, tok = base
    ids = torch.tensor([tok.encode("The favourite colour of")])
    assert torch.equal(G.generate_with_cache(model, ids, 20),
                       G.generate_naive(model, ids, 20, temperature=0))
    with pytest.raises(ValueError, match="block_size"):
        G.generate_with_cache(tiny, ids[:, :4], 20)


def test_stream_yields_the_text_generate_gives(base):
    model, tok = base
    pieces = list(G.stream(model, tok, "Arithmetic practice", 40, temperature=0.8, seed=3))
    ids = torch.tensor([tok.encode("Arithmetic practice")])
    whole = G.generate(model, ids, 40, temperature=0.8,
                       generator=torch.Generator().manual_seed(3))
    assert "".join(pieces) == tok.decode(whole[0, ids.size(1):].tolist())
    assert len(pieces) > 5


def test_batched_prompts_of_different_lengths_get_what_each_gets_alone(base):
    model, tok = base
    prompts = ["The", "In the ones place we add 3 and 4 and get",
               "Stummo Brousvior was born in"]
    together = G.generate_batch(model, tok, prompts, 12, temperature=0)
    for prompt, text in zip(prompts, together):
        ids = torch.tensor([tok.encode(prompt)])
        alone = G.generate(model, ids, 12, temperature=0)
        assert text == tok.decode(alone[0, ids.size(1):].tolist()), prompt


def test_stop_token_ends_rows(tiny):
    ids = torch.zeros(2, 3, dtype=torch.long)
    out = G.generate(tiny, ids, 40, temperature=0)
    first = int(out[0, 3])
    stopped = G.generate(tiny, ids, 40, temperature=0, stop_token=first)
    assert stopped.shape[1] == 4 and int(stopped[0, 3]) == first


def test_ids_that_are_no_token_are_never_sampled(base):
    """The course model has 4,096 rows but 4,081 tokens: a hot sampler must not draw the rest
    (decoding them would fail)."""
    model, tok = base
    forbid = G.unknown_ids(tok, model.config.vocab_size)
    assert forbid.sum() == 15 and not forbid[:4081].any()


def test_forbidden_ids_are_masked_before_sampling(tiny):
    class FortyTokens:  # a tokenizer that knows 40 of the model's 50 ids
        vocab = {i: bytes([i]) for i in range(40)}

    forbid = G.unknown_ids(FortyTokens(), 50)
    ids = torch.zeros(8, 2, dtype=torch.long)
    free = G.generate(tiny, ids, 12, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert int(free.max()) >= 40  # a random model draws them often...
    masked = G.generate(tiny, ids, 12, temperature=1.0, forbid=forbid,
                        generator=torch.Generator().manual_seed(0))
    assert int(masked.max()) < 40  # ...and never with forbid


def test_stream_and_batches_of_the_base_model_decode_at_high_temperature(base):
    model, tok = base
    text = "".join(G.stream(model, tok, "The", 60, temperature=5.0, seed=1))
    assert text
    assert all(G.generate_batch(model, tok, ["The", "A"], 20, temperature=5.0, seed=2))
