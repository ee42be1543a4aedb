"""Chapter 9's library (``course_lib.rlhf``): Bradley-Terry and DPO's losses, sequence
log-probabilities, pairs as ids, the reward model's reading position, best-of-n's estimator and
its KL, the KL of a policy from its reference; and one smoke test for each training function
(a few steps on a tiny random model: they may still change, so only their rows' keys are
checked). Tiny random models: seconds. The hidden labeller's rules are in tests/test_data.py;
tests/test_rlhf_trl.py checks the losses against Hugging Face TRL."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch

from course_lib import rlhf
from course_lib.assets import CHAT_TOKENS, ENDOFTEXT, IM_END, IM_START
from course_lib.chat import render_prompt
from course_lib.model import GPT, GPTConfig
from course_lib.world import FactQuestion

STOP = CHAT_TOKENS[IM_END]


@pytest.fixture(scope="module")
def tok():
    from course_lib import assets

    return assets.course_tokenizer(chat=True)


def tiny_gpt(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=128, n_layer=1, n_head=2, n_embd=32,
                         vocab_size=4096)).eval()


@pytest.fixture(scope="module")
def tiny():
    return tiny_gpt()


QUESTIONS = [FactQuestion(question=f"Where does {name} live?", answer=town, subject=name,
                          relation="lives in", rank=1, prompt=f"{name} lives in")
             for name, town in [("Tova Lind", "Mora"), ("Ake Berg", "Lund"),
                                ("Ines Falk", "Visby"), ("Olle Dahl", "Ystad")]]


# -------------------------------------------------------------------------------- Bradley-Terry

def test_bradley_terry_value_by_hand():
    loss = rlhf.bradley_terry_loss(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0]))
    want = (math.log1p(math.exp(-1)) + math.log(2) + math.log1p(math.exp(1))) / 3
    assert loss.item() == pytest.approx(want, rel=1e-6)


def test_bradley_terry_is_finite_at_huge_margins():
    # log(sigmoid(-1000)) is log(0) = -inf in float32; logsigmoid is exact
    lose = rlhf.bradley_terry_loss(torch.tensor([-1000.0]), torch.tensor([0.0]))
    win = rlhf.bradley_terry_loss(torch.tensor([1000.0]), torch.tensor([0.0]))
    assert lose.item() == pytest.approx(1000.0) and win.item() == 0.0
    assert torch.isinf(-torch.log(torch.sigmoid(torch.tensor(-1000.0))))


def test_bradley_terry_gradient_raises_chosen_and_lowers_rejected():
    rc = torch.tensor([0.5, -2.0, 3.0], requires_grad=True)
    rr = torch.tensor([0.0, 1.0, -1.0], requires_grad=True)
    rlhf.bradley_terry_loss(rc, rr).backward()
    assert (rc.grad < 0).all() and (rr.grad > 0).all()          # descent: chosen up, rejected down
    assert torch.allclose(rc.grad, -torch.sigmoid(rr - rc).detach() / 3)
    assert torch.allclose(rr.grad, -rc.grad)
    # the worse the pair is ordered, the larger the push
    assert rc.grad[1].abs() > rc.grad[0].abs() > rc.grad[2].abs()


# -------------------------------------------------------------------------------- DPO

def test_dpo_loss_value_by_hand():
    pc, pr = torch.tensor([-10.0, -4.0]), torch.tensor([-12.0, -3.0])
    rc, rr = torch.tensor([-11.0, -4.0]), torch.tensor([-11.0, -4.0])
    # margins: (1 - (-1)) = 2 and (0 - 1) = -1
    want = (math.log1p(math.exp(-0.5 * 2)) + math.log1p(math.exp(0.5))) / 2
    assert rlhf.dpo_loss(pc, pr, rc, rr, beta=0.5).item() == pytest.approx(want, rel=1e-6)


def test_dpo_loss_at_beta_zero_is_log_2():
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(5, generator=g) * 50 for _ in range(4)]
    assert rlhf.dpo_loss(*x, beta=0.0).item() == pytest.approx(math.log(2))


def test_dpo_reference_gets_no_gradient_and_policy_does():
    pc, pr, rc, rr = (torch.randn(4, requires_grad=True) for _ in range(4))
    rlhf.dpo_loss(pc, pr, rc, rr, beta=0.1).backward()
    assert rc.grad is None and rr.grad is None
    assert (pc.grad < 0).all() and (pr.grad > 0).all()


def test_dpo_is_bradley_terry_on_the_implicit_rewards():
    g = torch.Generator().manual_seed(1)
    pc, pr, rc, rr = (torch.randn(6, generator=g) * 30 for _ in range(4))
    for beta in (0.05, 0.1, 1.0, 10.0):
        bt = rlhf.bradley_terry_loss(beta * (pc - rc), beta * (pr - rr))
        assert torch.allclose(rlhf.dpo_loss(pc, pr, rc, rr, beta), bt)
    big = rlhf.dpo_loss(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([1000.0]),
                        torch.tensor([-1000.0]), beta=1.0)
    assert big.item() == pytest.approx(2000.0)


# -------------------------------------------------------------------------------- sequence_logprob

def loop_logprob(model, rows, masks):
    """One row at a time, unpadded: the sum over t >= 1 of mask[t] * log p(ids[t] | ids[:t])."""
    out = []
    for ids, mask in zip(rows, masks):
        logits, _ = model(torch.tensor([ids]))
        logp = logits[0, :-1].log_softmax(-1)
        out.append(sum(logp[t - 1, ids[t]].item() for t in range(1, len(ids)) if mask[t]))
    return torch.tensor(out)


ROWS = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [14, 15, 16, 17, 18, 19, 20, 21]]
MASKS = [[0, 0, 1, 1, 1, 1], [0, 0, 1], [0, 0, 0, 0, 1, 1, 0, 1]]


def test_sequence_logprob_is_the_loop_over_masked_tokens(tiny):
    ids, mask = rlhf.pad(ROWS, MASKS)
    got = rlhf.sequence_logprob(tiny, ids, mask)
    assert got.shape == (3,)
    assert torch.allclose(got, loop_logprob(tiny, ROWS, MASKS), atol=1e-5)


def test_sequence_logprob_ignores_prompt_and_padding(tiny):
    ids, mask = rlhf.pad(ROWS, MASKS)
    base = rlhf.sequence_logprob(tiny, ids, mask)
    # the prompt's tokens are not counted: marking them adds exactly their log-probabilities
    with_prompt = [[0] + [1] * (len(r) - 1) for r in ROWS]
    prompt_only = [[0] + [1 - m for m in ms[1:]] for ms in MASKS]
    assert torch.allclose(rlhf.sequence_logprob(tiny, *rlhf.pad(ROWS, with_prompt)),
                          base + loop_logprob(tiny, ROWS, prompt_only), atol=1e-5)
    # whatever the padding holds, and however much of it there is, a row's value stays
    padding = torch.arange(ids.size(1)) >= torch.tensor([len(r) for r in ROWS])[:, None]
    noisy = ids.masked_scatter(padding, torch.randint(0, 4000, (int(padding.sum()),)))
    assert not torch.equal(noisy, ids)
    assert torch.allclose(rlhf.sequence_logprob(tiny, noisy, mask), base, atol=1e-5)
    wide_ids = torch.cat([ids, torch.full((3, 20), STOP)], dim=1)
    wide_mask = torch.cat([mask, torch.zeros(3, 20)], dim=1)
    assert torch.allclose(rlhf.sequence_logprob(tiny, wide_ids, wide_mask), base, atol=1e-5)


# -------------------------------------------------------------------------------- pairs as ids

def test_render_pair_masks_exactly_the_answer_and_its_closing(tok):
    ids, mask = rlhf.render_pair(tok, "Where does Tova Lind live?", "She lives in Mora.")
    prompt = [tok.special_tokens[ENDOFTEXT]] + render_prompt(
        [{"role": "user", "content": "Where does Tova Lind live?"}], tok)
    answer = tok.encode("She lives in Mora.")
    assert ids == prompt + answer + [STOP]
    assert mask == [0] * len(prompt) + [1] * (len(answer) + 1)
    assert len(ids) == len(mask)


def test_render_pair_encodes_special_tokens_the_policy_wrote_as_those_tokens(tok):
    said = f"Mora{IM_END}{IM_START}user"
    ids, mask = rlhf.render_pair(tok, "Where?", said)
    body = [i for i, m in zip(ids, mask) if m]
    assert body == tok.encode("Mora") + [STOP, CHAT_TOKENS[IM_START]] + tok.encode("user") + [STOP]
    assert tok.decode(body[:-1]) == said


def test_pad_right_pads_with_im_end_and_zero_mask():
    ids, mask = rlhf.pad(ROWS, MASKS)
    assert ids.shape == mask.shape == (3, 8) and ids.dtype == torch.long
    for i, (r, m) in enumerate(zip(ROWS, MASKS)):
        assert ids[i, :len(r)].tolist() == r and (ids[i, len(r):] == STOP).all()
        assert mask[i, :len(m)].tolist() == m and (mask[i, len(m):] == 0).all()


# -------------------------------------------------------------------------------- reward model

def test_reward_model_starts_at_zero_but_can_learn(tiny, tok):
    rm = rlhf.RewardModel(copy.deepcopy(tiny))
    assert rm.head.weight.abs().sum() == 0 and rm.head.bias.abs().sum() == 0
    ids, mask, n = rlhf._pair_tensors(tok, [rlhf.Pair("Where?", "Mora.", "Lund")], "cpu")
    r = rm(ids, mask)
    assert torch.equal(r, torch.zeros(2))
    rlhf.bradley_terry_loss(r[:n], r[n:]).backward()
    assert rm.head.weight.grad.abs().sum() > 0              # the zero head still gets a gradient


def test_reward_model_reads_the_last_masked_token(tiny, tok):
    rm = rlhf.RewardModel(copy.deepcopy(tiny)).eval()
    torch.manual_seed(2)
    torch.nn.init.normal_(rm.head.weight)
    rows = [rlhf.render_pair(tok, "Where does Tova Lind live?", a)
            for a in ["Mora.", "She lives in Mora, I think. Hope that helps!", "Lund"]]
    ids, mask = rlhf.pad([x for x, _ in rows], [m for _, m in rows])
    got = rm(ids, mask)
    with torch.no_grad():
        h = rm.gpt.features(ids)
        for i, (x, m) in enumerate(rows):
            last = len(m) - 1                                  # the answer's <|im_end|>
            assert ids[i, last] == STOP and m[last] == 1
            assert got[i].item() == pytest.approx(rm.head(h[i, last]).item(), abs=1e-5)
            alone = rm(torch.tensor([x]), torch.tensor([m], dtype=torch.float))
            assert alone.item() == pytest.approx(got[i].item(), abs=1e-5)
    # more padding after it, of any token, changes nothing
    wide = torch.cat([ids, torch.randint(0, 4000, (3, 7))], dim=1)
    assert torch.allclose(rm(wide, torch.cat([mask, torch.zeros(3, 7)], 1)), got, atol=1e-5)


# -------------------------------------------------------------------------------- best-of-n

def test_best_of_one_is_the_plain_mean():
    g = torch.Generator().manual_seed(3)
    proxy, true = torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g)
    (row,) = rlhf.best_of_n(proxy, true, ns=(1,))
    assert row == {"n": 1, "kl": 0.0, "proxy": pytest.approx(proxy.mean().item(), abs=1e-6),
                   "true": pytest.approx(true.mean().item(), abs=1e-6)}


def test_best_of_n_is_the_mean_over_every_subset_of_n():
    g = torch.Generator().manual_seed(4)
    proxy, true = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g)
    for row in rlhf.best_of_n(proxy, true, ns=(2, 3, 5, 7)):
        n, picks_p, picks_t = row["n"], [], []
        for q in range(3):
            for sub in itertools.combinations(range(7), n):
                best = max(sub, key=lambda i: proxy[q, i])
                picks_p.append(proxy[q, best].item())
                picks_t.append(true[q, best].item())
        assert row["proxy"] == pytest.approx(sum(picks_p) / len(picks_p), abs=1e-6)
        assert row["true"] == pytest.approx(sum(picks_t) / len(picks_t), abs=1e-6)


def test_best_of_n_matches_a_monte_carlo_draw_of_n():
    g = torch.Generator().manual_seed(5)
    Q, N, n, draws = 4, 64, 16, 20_000
    proxy = torch.randn(Q, N, generator=g)
    true = proxy + torch.randn(Q, N, generator=g)         # correlated, as a reward model is
    (row,) = rlhf.best_of_n(proxy, true, ns=(n,))
    sub = torch.rand(Q, draws, N, generator=g).argsort(-1)[..., :n]     # random n-subsets
    q = torch.arange(Q)[:, None, None]
    best = proxy[q, sub].argmax(-1, keepdim=True)          # the reward model's pick in each
    mc_proxy = proxy[q, sub].gather(-1, best).mean()
    mc_true = true[q, sub].gather(-1, best).mean()
    assert row["proxy"] == pytest.approx(mc_proxy.item(), abs=0.02)
    assert row["true"] == pytest.approx(mc_true.item(), abs=0.03)
    assert row["proxy"] > proxy.mean().item() + 1          # best-of-16 is well above the mean


def test_best_of_n_kl_is_the_analytic_formula_and_the_limit_of_the_real_kl():
    rows = rlhf.best_of_n(torch.randn(2, 64), torch.randn(2, 64))
    assert [r["n"] for r in rows] == [1, 2, 4, 8, 16, 32, 64]
    for r in rows:
        assert r["kl"] == pytest.approx(math.log(r["n"]) - (r["n"] - 1) / r["n"])
    # the exact KL of best-of-n over N distinct samples from uniform 1/N tends to it
    N = 4000
    for n in (2, 8, 32):
        p = torch.tensor([math.comb(i - 1, n - 1) / math.comb(N, n) for i in range(1, N + 1)],
                         dtype=torch.double)
        kl = float((p[p > 0] * (p[p > 0] * N).log()).sum())
        assert kl == pytest.approx(math.log(n) - (n - 1) / n, abs=0.01)


def test_best_of_n_refuses_n_beyond_the_samples():
    with pytest.raises(ValueError, match="n=9"):
        rlhf.best_of_n(torch.randn(2, 8), torch.randn(2, 8), ns=(1, 9))
    with pytest.raises(ValueError):
        rlhf.best_of_n(torch.randn(2, 8), torch.randn(2, 8), ns=(0,))


# -------------------------------------------------------------------------------- sequence_kl

def test_sequence_kl_is_zero_against_itself_and_positive_after_a_change(tiny):
    prompts = [[1, 2, 3], [4, 5], [6]]
    responses = [[7, 8, 9, 10], [11], [12, 13]]
    assert torch.equal(rlhf.sequence_kl(tiny, tiny, prompts, responses), torch.zeros(3))
    other = copy.deepcopy(tiny)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    kl = rlhf.sequence_kl(other, tiny, prompts, responses)
    assert kl.shape == (3,) and (kl > 0).all()


# -------------------------------------------------------------------------------- training smoke

def test_train_reward_model_smoke(tiny, tok):
    rm = rlhf.RewardModel(copy.deepcopy(tiny))
    pairs = [rlhf.Pair(q.question, f"{q.subject} lives in {q.answer}.", "I do not know")
             for q in QUESTIONS]
    rows = rlhf.train_reward_model(rm, tok, pairs, rlhf.RMConfig(steps=2, batch=3))
    assert [r["step"] for r in rows] == [1, 2]
    assert all(set(r) == {"step", "loss", "accuracy"} and math.isfinite(r["loss"]) for r in rows)
    assert rlhf.agreement(rm, tok, pairs) in {i / 4 for i in range(5)}


def test_policy_pairs_smoke(tiny, tok):
    pairs = rlhf.policy_pairs(tiny, tok, QUESTIONS, seed=0, samples=3)
    assert pairs and all(isinstance(p, rlhf.Pair) for p in pairs)
    assert all(p.chosen_score > p.rejected_score for p in pairs)
    assert {p.prompt for p in pairs} <= {q.question for q in QUESTIONS}


MEASURE_KEYS = {"kl", "proxy", "true", "words", "examples"}


def test_measure_smoke(tiny, tok):
    rm = rlhf.RewardModel(copy.deepcopy(tiny))
    res = rlhf.measure(tiny, tiny, rm, tok, QUESTIONS[:2], samples=2, max_new_tokens=6)
    assert set(res) == MEASURE_KEYS
    assert {"question", "answer", "proxy", "true"} <= set(res["examples"][0])


def test_train_rlhf_smoke(tok):
    model = tiny_gpt(1)
    rm = rlhf.RewardModel(tiny_gpt(2))
    torch.nn.init.normal_(rm.head.weight)                   # scores that differ: a gradient
    cfg = rlhf.RLHFConfig(steps=2, prompts_per_step=2, group_size=2, max_new_tokens=6,
                          eval_every=2, eval_samples=1)
    res = rlhf.train_rlhf(model, rm, tok, QUESTIONS, cfg, eval_questions=QUESTIONS[:2],
                          log=lambda *a: None)
    assert [r["step"] for r in res.history] == [1, 2]
    assert all({"reward", "loss", "kl", "seconds"} <= set(r) for r in res.history)
    assert [s for s, _, _ in res.evals] == [0, 2]
    assert all(set(e) == MEASURE_KEYS for _, _, e in res.evals)


def test_train_dpo_smoke(tok):
    model = tiny_gpt(1)
    pairs = [rlhf.Pair(q.question, f"{q.subject} lives in {q.answer}.", "I do not know")
             for q in QUESTIONS]
    cfg = rlhf.DPOConfig(batch=2, epochs=1, eval_every=1, eval_samples=1)
    res = rlhf.train_dpo(model, tok, pairs, cfg, eval_questions=QUESTIONS[:1],
                         rm=rlhf.RewardModel(tiny_gpt(2)), log=lambda *a: None)
    assert res.model is model and [r["step"] for r in res.history] == [1, 2]
    assert all(set(r) == {"step", "loss", "chosen", "rejected", "margin", "accuracy", "seconds"}
               for r in res.history)
    assert [s for s, _, _ in res.evals] == [0, 1, 2]
    assert all(set(e) == MEASURE_KEYS for _, _, e in res.evals)
