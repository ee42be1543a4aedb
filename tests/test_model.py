"""Chapter 3: the GPT of course_lib.model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib import model as M

SMALL = M.GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=4, n_embd=32)


@pytest.fixture
def gpt():
    torch.manual_seed(0)
    return M.GPT(SMALL).eval()


def test_names_are_gpt2s(gpt):
    names = set(gpt.state_dict())
    for n in ("transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight",
              "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj.bias",
              "transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.weight",
              "transformer.ln_f.bias", "lm_head.weight"):
        assert n in names


def test_output_head_is_tied_to_the_embedding(gpt):
    assert gpt.lm_head.weight.data_ptr() == gpt.transformer.wte.weight.data_ptr()


@pytest.mark.parametrize("B,H,T,D", [(1, 1, 1, 4), (2, 3, 7, 5), (1, 2, 16, 8)])
@pytest.mark.parametrize("causal", [True, False])
def test_explicit_attention_equals_sdpa(B, H, T, D, causal):
    g = torch.Generator().manual_seed(B * 100 + T)
    q, k, v = (torch.randn(B, H, T, D, generator=g) for _ in range(3))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert torch.allclose(M.attention(q, k, v, causal=causal), ref, atol=1e-6)


def test_attention_is_causal_and_weights_sum_to_one():
    q, k, v = (torch.randn(1, 2, 6, 4) for _ in range(3))
    _, w = M.attention(q, k, v, causal=True, return_weights=True)
    assert torch.allclose(w.sum(-1), torch.ones(1, 2, 6))
    assert (w.triu(1) == 0).all() and (w.diagonal(dim1=-2, dim2=-1) > 0).all()


def test_attention_with_a_longer_key_window_sees_the_past():
    """A query for the last positions (KV-cache decoding) attends to every earlier key."""
    q_all, k, v = (torch.randn(1, 1, 5, 4) for _ in range(3))
    full = M.attention(q_all, k, v)
    last = M.attention(q_all[:, :, -2:], k, v)
    assert torch.allclose(full[:, :, -2:], last, atol=1e-6)


def test_model_sdpa_and_explicit_paths_agree(gpt):
    idx = torch.randint(0, 50, (2, 12))
    a, _ = gpt(idx)
    gpt.set_attention(use_sdpa=False)
    b, _ = gpt(idx)
    assert torch.allclose(a, b, atol=1e-5)


def test_future_tokens_do_not_change_past_logits(gpt):
    idx = torch.randint(0, 50, (1, 10))
    other = idx.clone()
    other[0, 6:] = (other[0, 6:] + 1) % 50
    assert torch.allclose(gpt(idx)[0][0, :6], gpt(other)[0][0, :6], atol=1e-6)


def test_block_forward_equals_block():
    torch.manual_seed(1)
    block = M.Block(SMALL)
    for p in block.parameters():  # non-trivial LayerNorm weights and biases too
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(3, 9, 32)
    assert torch.allclose(block(x), M.block_forward(x, block.state_dict(), SMALL.n_head),
                          atol=1e-5)


@pytest.mark.parametrize("n_layer,n_head,d,vocab,block,tied,bias", [
    (2, 4, 32, 50, 16, True, True), (1, 1, 8, 11, 3, False, True), (3, 2, 16, 7, 9, True, False),
    (2, 2, 12, 30, 5, False, False)])
def test_count_parameters_equals_the_built_model(n_layer, n_head, d, vocab, block, tied, bias):
    cfg = M.GPTConfig(block_size=block, vocab_size=vocab, n_layer=n_layer, n_head=n_head,
                      n_embd=d, bias=bias)
    m = M.GPT(cfg)
    if not tied:  # untie: a separate output matrix
        m.lm_head.weight = torch.nn.Parameter(m.lm_head.weight.detach().clone())
    assert M.count_parameters(n_layer, n_head, d, vocab, block, tied=tied, bias=bias) == \
        m.num_parameters()


def test_the_lectures_parameter_counts():
    def count(c):
        return M.count_parameters(c.n_layer, c.n_head, c.n_embd, c.vocab_size, c.block_size)
    assert count(M.GPT2_124M) == 124_439_808
    assert round(count(M.GPT2_1558M) / 1e9, 2) == 1.56
    assert round(count(M.GPT3_175B) / 1e9) == 175


def test_a_gpt2_state_dict_loads(gpt):
    idx = torch.randint(0, 50, (2, 8))
    hf = {}  # Hugging Face's layout: no "transformer." prefix, Conv1D weights transposed
    for k, v in gpt.state_dict().items():
        if k == "lm_head.weight":
            continue
        k = k.removeprefix("transformer.")
        hf[k] = v.t().clone() if k.endswith(M._CONV1D) else v.clone()
    hf["h.0.attn.bias"] = torch.ones(1, 1, 16, 16)  # HF's causal mask buffer is ignored
    other = M.load_gpt2_state_dict(M.GPT(SMALL).eval(), hf)
    assert torch.equal(other(idx)[0], gpt(idx)[0])
    with pytest.raises(ValueError, match="shape"):
        M.load_gpt2_state_dict(M.GPT(M.GPTConfig(block_size=16, vocab_size=51, n_layer=2,
                                                 n_head=4, n_embd=32)), hf)


def test_attention_weights_for_heat_maps(gpt):
    w = gpt.attention_weights(torch.randint(0, 50, (1, 7)))
    assert len(w) == 2 and w[0].shape == (1, 4, 7, 7)
    assert (w[1].triu(1) == 0).all()
    assert all(b.attn.use_sdpa for b in gpt.transformer.h)  # restored


def test_bad_inputs_say_what_to_do(gpt):
    with pytest.raises(ValueError, match="divisible"):
        M.GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="block_size"):
        gpt(torch.zeros(1, 17, dtype=torch.long))


def test_loss_is_cross_entropy_and_learns(gpt):
    torch.manual_seed(0)
    idx = torch.randint(0, 50, (4, 16))
    targets = torch.roll(idx, -1, dims=1)
    logits, loss = gpt(idx, targets)
    assert torch.isclose(loss, F.cross_entropy(logits.view(-1, 50), targets.view(-1)))
    gpt.train()
    opt = torch.optim.AdamW(gpt.parameters(), lr=1e-2)
    for _ in range(30):
        _, loss = gpt(idx, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 1.0
