"""Chapter 8's library (``course_lib.rl``): the verifier, GRPO's formulas, the batched sampler
against chapter 5's, token log-probabilities, pass@k, and the loop's stop when nothing can be
learned. Tiny random models: seconds."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from course_lib import rl
from course_lib.assets import CHAT_TOKENS, IM_END
from course_lib.generate import generate, generate_batch
from course_lib.model import GPT, GPTConfig
from course_lib.world import Problem

STOP = CHAT_TOKENS[IM_END]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=64, n_layer=2, n_head=2, n_embd=32, vocab_size=4096)).eval()


class IdTok:
    """A stand-in for decode only: ids as text (the rollout tests need no real tokenizer)."""

    def decode(self, ids):
        return " ".join(map(str, ids))


# -------------------------------------------------------------------------------- the verifier

P = Problem("addition", "What is 2 + 3?", 5)


@pytest.mark.parametrize("text, want", [
    ("2 + 3 = 5.\nAnswer: 5", 5),
    ("Answer: 5<|im_end|>more text\nAnswer: 7", 5),          # the reply ends at <|im_end|>
    ("work\nAnswer:   -12  \n\n", -12),
    ("Answer: 5\nAnswer: 6", 6),                             # the last line decides
    ("Answer: 5\nso it is", None),                           # not the last line
    ("Answer: 5.", None), ("Answer: 5 apples", None), ("Answer: 1,005", None),
    ("The answer is 5", None), ("", None)])
def test_extract_answer(text, want):
    assert rl.extract_answer(text) == want


def test_reward_pays_only_the_right_final_answer():
    assert rl.reward("ones: 2 + 3 = 5\nAnswer: 5", P) == 1.0
    assert rl.reward("ones: 2 + 3 = 5\nAnswer: 6", P) == 0.0      # formatted, wrong: nothing
    assert rl.reward("5", P) == 0.0
    assert rl.reward("Answer: 5 or Answer: 6", P) == 0.0


def test_rechecks():
    assert rl.rechecks("So 2 + 3 = 5.\nLet me check: So 2 + 3 = 5.\nAnswer: 5")
    assert not rl.rechecks("ones: 2 + 3 = 5\nSo 2 + 3 = 5.\nAnswer: 5")


# -------------------------------------------------------------------------------- GRPO formulas

def test_group_advantages():
    r = torch.tensor([1.0, 0, 0, 0, 1, 1, 1, 1])
    a = rl.group_advantages(r, 4)
    first = torch.tensor([0.75, -0.25, -0.25, -0.25]) / (torch.tensor([1.0, 0, 0, 0]).std() + 1e-6)
    assert torch.allclose(a[:4], first)
    assert torch.equal(a[4:], torch.zeros(4))                 # all equal: 0, not NaN
    assert torch.allclose(rl.group_advantages(r, 4, normalize_std=False)[:4],
                          torch.tensor([0.75, -0.25, -0.25, -0.25]))
    for bad in (3, 1):
        with pytest.raises(ValueError, match="group"):
            rl.group_advantages(r, bad)


def test_policy_loss_on_policy_is_minus_the_mean_advantage_per_token():
    logp = torch.log(torch.rand(2, 5)).requires_grad_()
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    adv = torch.tensor([1.0, -2.0])
    loss = rl.policy_loss(logp, logp.detach(), adv, mask)
    assert loss.item() == pytest.approx(-(3 * 1.0 + 5 * -2.0) / 8)
    loss.backward()
    assert torch.equal(logp.grad[0, 3:], torch.zeros(2))      # padding gets no gradient
    assert torch.allclose(logp.grad[1], torch.full((5,), 2.0 / 8))


def test_policy_loss_clip_binds_and_stops_the_gradient():
    old = torch.zeros(1, 2)
    logp = torch.tensor([[0.5, -0.5]], requires_grad=True)       # ratios e^0.5, e^-0.5
    loss = rl.policy_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 2))
    # positive advantage: the first token's ratio is capped at 1.2 (no gradient), the second's
    # unclipped ratio is the smaller term
    assert loss.item() == pytest.approx(-(1.2 + math.exp(-0.5)) / 2)
    loss.backward()
    assert logp.grad[0, 0] == 0 and logp.grad[0, 1] != 0


# -------------------------------------------------------------------------------- sampling

def test_draw_matches_the_softmax_and_never_draws_a_forbidden_token():
    g = torch.Generator().manual_seed(0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2, 0.0]])).expand(20000, -1)
    got = rl.draw(logits, 1.0, g)
    freq = torch.bincount(got, minlength=4).float() / got.numel()
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.2, 0.0]), atol=0.015)
    assert torch.equal(rl.draw(logits[:3], 0), torch.zeros(3, dtype=torch.long))
    hot = rl.draw(torch.log(torch.tensor([[0.5, 0.3, 0.2, 0.0]])).expand(20000, -1), 0.5, g)
    assert (hot == 0).float().mean() > 0.6                     # sharper at T < 1


def test_rollout_greedy_gives_generate_batchs_tokens(tiny):
    from course_lib import assets
    from course_lib.generate import unknown_ids

    tok = assets.course_tokenizer(chat=True)
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10]]
    got = rl.rollout(tiny, prompts, 12, temperature=0, forbid=unknown_ids(tok, 4096))
    want = generate_batch(tiny, tok, prompts, 12, temperature=0)
    for t, w, cut in zip(got.tokens, want, got.truncated):
        assert w.startswith(tok.decode(t)) and cut == (len(t) == 12 and t[-1] != STOP)


def test_rollout_stops_rows_at_the_stop_token_and_compaction_changes_nothing(tiny):
    prompts = [[i, i + 1] for i in range(1, 40)]
    # the stop token: whatever the model writes most often first, so that rows stop at
    # different steps
    first = [t[0] for t in rl.rollout(tiny, prompts, 1, temperature=0).tokens]
    stop = max(set(first), key=first.count)
    a = rl.rollout(tiny, prompts, 20, 0, stop_id=stop, compact=1.0)    # drop rows at once
    b = rl.rollout(tiny, prompts, 20, 0, stop_id=stop, compact=0.0)    # never drop
    assert a.tokens == b.tokens and a.truncated == b.truncated
    for t, cut in zip(a.tokens, a.truncated):
        assert (t[-1] == stop) != cut and stop not in t[:-1]
    assert any(len(t) == 1 for t in a.tokens) and any(cut for cut in a.truncated)
    # the same tokens as chapter 5's loop, one prompt at a time
    for p, t in zip(prompts[:5], a.tokens):
        one = generate(tiny, torch.tensor([p]), 20, temperature=0, stop_token=stop)[0, 2:]
        assert one[:len(t)].tolist() == t


def test_rollout_is_seeded(tiny):
    run = lambda s: rl.rollout(tiny, [[1, 2]] * 4, 10, 1.0,
                               torch.Generator().manual_seed(s)).tokens
    assert run(3) == run(3) and run(3) != run(4)


def test_token_logprobs(tiny):
    prompts, responses = [[1, 2, 3], [4]], [[5, 6], [7, 8, 9]]
    logp, mask = rl.token_logprobs(tiny, prompts, responses)
    assert mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    for i, (p, r) in enumerate(zip(prompts, responses)):
        logits, _ = tiny(torch.tensor([p + r]))
        want = logits[0].log_softmax(-1)[torch.arange(len(p) - 1, len(p) + len(r) - 1),
                                         torch.tensor(r)]
        assert torch.allclose(logp[i, :len(r)], want, atol=1e-5)
        assert logp[i, len(r):].abs().sum() == 0


def test_one_update_makes_the_rewarded_solution_likelier(tiny):
    import copy

    model = copy.deepcopy(tiny).train()
    prompts, responses = [[1, 2]] * 2, [[30, 31, 32], [40, 41, 42]]
    adv = rl.group_advantages(torch.tensor([1.0, 0.0]), 2)
    before, _ = rl.token_logprobs(model, prompts, responses)
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    rl.policy_loss(*rl.token_logprobs(model, prompts, responses)[:1], before.detach(), adv,
                   rl.token_logprobs(model, prompts, responses)[1]).backward()
    opt.step()
    with torch.no_grad():
        after, _ = rl.token_logprobs(model, prompts, responses)
    assert after[0].sum() > before[0].sum() and after[1].sum() < before[1].sum()


# -------------------------------------------------------------------------------- pass@k

def test_pass_at_k_is_the_chance_that_k_draws_include_a_right_one():
    for n, c, k in [(5, 0, 1), (5, 2, 1), (5, 2, 3), (6, 1, 6), (8, 3, 4)]:
        draws = list(itertools.combinations([1] * c + [0] * (n - c), k))
        assert rl.pass_at_k(n, c, k) == pytest.approx(sum(map(any, draws)) / len(draws))
    with pytest.raises(ValueError):
        rl.pass_at_k(4, 5, 1)


# -------------------------------------------------------------------------------- the loop

def test_nothing_to_learn_stops_with_a_clear_message(tiny):
    from course_lib import assets

    tok = assets.course_tokenizer(chat=True)
    problems = [Problem("addition", f"What is {i} + 1?", i + 1) for i in range(4)]
    cfg = rl.RLConfig(steps=10, problems_per_step=2, group_size=2, max_new_tokens=8,
                      patience=3, eval_every=100)
    with pytest.raises(rl.NothingToLearn, match="all right or all wrong"):
        rl.train_grpo(tiny, tok, problems, cfg, log=lambda *a: None)
