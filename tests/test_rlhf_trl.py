"""Chapter 9's losses against Hugging Face TRL's own code (``course_lib.rlhf``).

TRL 1.x has no free ``dpo_loss`` function any more: DPO's loss lives inside
``DPOTrainer.compute_loss(model, inputs)``, which runs the policy through TRL's fused LM head
(per-token log-probabilities of the completion tokens, never the full logits) and takes the
reference's log-probabilities from the batch when ``precompute_ref_log_probs=True``. So the real
trainers are built, on the smallest real transformers models (a one-layer Llama, a 64-word
tokenizer made in memory: nothing is downloaded), and their ``compute_loss`` is called on one
batch made by their own data collator. Nothing is trained. Against them:

- ``dpo_loss``: the loss, its gradient with respect to the policy's sequence log-probabilities
  (TRL's per-token log-probabilities, captured from the model's output) and to the model's
  weights, on reference log-probabilities drawn at random with margins up to about +-2000;
- ``sequence_logprob``: the policy's log-probability of each completion, against TRL's fused LM
  head, on the same batch and the same mask (``render_pair``/``pad`` make TRL's collator's
  ``input_ids``/``completion_mask`` up to the padding token);
- ``bradley_terry_loss``: ``RewardTrainer.compute_loss`` on a real sequence-classification model,
  values and gradients with respect to the rewards, at ordinary and at huge margins;
- the gathering inside ``sequence_logprob``: TRL's ``selective_log_softmax`` on the course GPT's
  logits, and on random logits of scale 100.
"""

from __future__ import annotations

import pytest
import torch

# A missing trl (an environment installed without the test extra) skips the file; any other
# failure to import it (say a trl that does not work with this torch) is an error that names
# its cause.
trl = pytest.importorskip("trl", reason="trl is not installed (pip install -e '.[test]')",
                          exc_type=ModuleNotFoundError)

import transformers  # noqa: E402  (installed with trl)
from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer  # noqa: E402
from trl.trainer.utils import selective_log_softmax  # noqa: E402

from course_lib import assets, rlhf  # noqa: E402
from course_lib.assets import CHAT_TOKENS, IM_END  # noqa: E402
from course_lib.model import GPT, GPTConfig  # noqa: E402

# importing transformers and trl is most of the file's ~10 s; their own deprecation notices (a
# config field renamed in transformers 5) are not this file's business
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

V = 4096                              # the course vocabulary: course-rendered ids go in as they are
PAD = 0                               # TRL's padding id (the course pads with <|im_end|>)
TOL = dict(rtol=1e-5, atol=1e-5)


def hf_tokenizer():
    """The processing class the trainers insist on: a 64-word whitespace tokenizer, in memory."""
    vocab = {"<pad>": PAD, "<eos>": 1, "<unk>": 2, **{f"w{i}": i for i in range(3, 64)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>",
                                                eos_token="<eos>", unk_token="<unk>")


def llama_config(**kw):
    return transformers.LlamaConfig(
        vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=PAD, bos_token_id=1, eos_token_id=1, tie_word_embeddings=False, **kw)


TEXT_PAIRS = Dataset.from_dict({"prompt": ["w3 w4", "w5"], "chosen": [" w6 w7", " w8"],
                                "rejected": [" w9", " w10 w11"]})


def dpo_trainer(tmp_dir, beta):
    """A real ``DPOTrainer`` (standard sigmoid DPO) around a random one-layer Llama; with
    ``precompute_ref_log_probs`` the reference's log-probabilities are read from the batch. Its
    constructor runs the reference over ``TEXT_PAIRS`` once (milliseconds)."""
    torch.manual_seed(0)
    policy = transformers.LlamaForCausalLM(llama_config()).eval()
    args = DPOConfig(output_dir=str(tmp_dir), report_to="none", use_cpu=True,
                     save_strategy="no", logging_strategy="no", seed=0,
                     precompute_ref_log_probs=True, loss_type=["sigmoid"], beta=beta)
    trainer = DPOTrainer(model=policy, args=args, train_dataset=TEXT_PAIRS,
                         processing_class=hf_tokenizer())
    trainer.model.eval()
    return trainer


@pytest.fixture(scope="module")
def chat_tok():
    return assets.course_tokenizer(chat=True)


def course_pairs(tok, n, seed):
    """``n`` pairs rendered by the course (``render_pair``), cut where TRL cuts them: the prompt's
    ids, then the answer's (its closing ``<|im_end|>`` included), for the chosen and rejected."""
    g = torch.Generator().manual_seed(seed)
    words = ["Tova", "Lind", "lives", "in", "Mora", "the", "river", "is", "long", ".", "Thanks",
             "for", "asking", "!", "42", "I", "think"]
    rows = []
    for i in range(n):
        said = lambda k: " ".join(words[j] for j in torch.randint(len(words), (k,), generator=g))
        prompt = f"Where does person {i} live?"
        chosen, rejected = said(1 + i % 5), said(2 + (3 * i) % 7)
        (c, cm), (r, rm) = (rlhf.render_pair(tok, prompt, x) for x in (chosen, rejected))
        k = cm.index(1)
        assert c[:k] == r[:k] and rm.index(1) == k
        rows.append({"prompt_ids": c[:k], "chosen_ids": c[k:], "rejected_ids": r[k:]})
    return rows


def hf_as_course_model(model):
    """A transformers causal LM called as the course's models are: ``model(ids) -> (logits, _)``
    (its original forward: TRL's fused head is only taken with ``fused_lm_head=True``)."""
    return lambda ids: (model(input_ids=ids).logits, None)


def dpo_through_trl(trainer, batch):
    """TRL's DPO loss on ``batch``, backpropagated; with the policy's per-token log-probabilities
    as TRL computed them (their gradient kept) and the weights' gradients."""
    seen = {}

    def keep(module, args, out):
        out.log_probs.retain_grad()
        seen["out"] = out

    model = trainer.model
    model.zero_grad(set_to_none=True)
    hook = model.register_forward_hook(keep)
    try:
        loss = trainer.compute_loss(model, dict(batch))
    finally:
        hook.remove()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), seen["out"].log_probs, grads


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_dpo_loss_and_gradients_match_trl(tmp_path, chat_tok, beta):
    trainer = dpo_trainer(tmp_path, beta)
    n = 8
    rows = course_pairs(chat_tok, n, seed=1)
    # reference log-probabilities from far away, so that beta * margin reaches +-200 (beta 0.1)
    # and +-2000 (beta 1): logsigmoid's both tails, where a naive log(sigmoid) gives inf
    g = torch.Generator().manual_seed(2)
    ref_c = (torch.randn(n, generator=g) * 600).tolist()
    ref_r = (torch.randn(n, generator=g) * 600).tolist()
    ref_c[0], ref_r[0] = -1000.0, 1000.0
    ref_c[1], ref_r[1] = 1000.0, -1000.0
    for row, rc, rr in zip(rows, ref_c, ref_r):
        row.update(ref_chosen_logps=rc, ref_rejected_logps=rr)
    batch = trainer.data_collator(rows)
    ids, completion = batch["input_ids"], batch["completion_mask"]

    # the course's own rendering and padding give TRL's batch, up to the padding id
    course_ids, course_mask = rlhf.pad([r["prompt_ids"] + r["chosen_ids"] for r in rows]
                                       + [r["prompt_ids"] + r["rejected_ids"] for r in rows],
                                       [[0] * len(r["prompt_ids"]) + [1] * len(r["chosen_ids"])
                                        for r in rows]
                                       + [[0] * len(r["prompt_ids"]) + [1] * len(r["rejected_ids"])
                                          for r in rows])
    real = batch["attention_mask"].bool()
    assert torch.equal(course_ids[real], ids[real])
    assert (course_ids[~real] == CHAT_TOKENS[IM_END]).all()
    assert torch.equal(course_mask, completion.float())

    trl_loss, per_token, trl_grads = dpo_through_trl(trainer, batch)

    # the policy's sequence log-probabilities: TRL's fused LM head against sequence_logprob
    trl_logps = per_token.detach().sum(1)
    model = trainer.model
    model.zero_grad(set_to_none=True)
    ours = rlhf.sequence_logprob(hf_as_course_model(model), ids, completion)
    assert torch.allclose(ours.detach(), trl_logps, **TOL), (ours - trl_logps).abs().max()

    # the loss on the same numbers, and its gradient w.r.t. the policy's log-probabilities
    pc = trl_logps[:n].clone().requires_grad_()
    pr = trl_logps[n:].clone().requires_grad_()
    rc = torch.tensor(ref_c).requires_grad_()
    rr = torch.tensor(ref_r).requires_grad_()
    loss = rlhf.dpo_loss(pc, pr, rc, rr, beta)
    margins = beta * ((pc - rc) - (pr - rr)).detach()
    assert margins.abs().max() > 1500 * beta and torch.isfinite(loss)
    assert torch.allclose(loss, trl_loss, **TOL), (loss - trl_loss).abs()
    loss.backward()
    assert rc.grad is None and rr.grad is None                  # the reference is a constant
    # TRL sums the per-token log-probabilities: each token of a row gets the row's gradient
    shifted = completion[:, 1:].bool()
    trl_row_grad = torch.stack([per_token.grad[i][shifted[i]].mean() for i in range(2 * n)])
    for i in range(2 * n):
        assert torch.allclose(per_token.grad[i][shifted[i]], trl_row_grad[i].expand(
            int(shifted[i].sum())), **TOL)
    assert torch.allclose(torch.cat([pc.grad, pr.grad]), trl_row_grad, **TOL)

    # end to end: the course's pieces on the model give TRL's gradients on every weight
    rlhf.dpo_loss(ours[:n], ours[n:], torch.tensor(ref_c), torch.tensor(ref_r), beta).backward()
    for name, p in model.named_parameters():
        if name in trl_grads:
            assert torch.allclose(p.grad, trl_grads[name], rtol=1e-4, atol=1e-6), name
    model.zero_grad(set_to_none=True)


# -------------------------------------------------------------------------------- reward model

@pytest.fixture(scope="module")
def reward_trainer(tmp_path_factory):
    torch.manual_seed(0)
    model = transformers.LlamaForSequenceClassification(llama_config(num_labels=1)).eval()
    pairs = Dataset.from_dict({"chosen_ids": [[3, 4, 5], [6]], "rejected_ids": [[7], [8, 9]]})
    args = RewardConfig(output_dir=str(tmp_path_factory.mktemp("rm")), report_to="none",
                        use_cpu=True, save_strategy="no", logging_strategy="no", seed=0)
    trainer = RewardTrainer(model=model, args=args, train_dataset=pairs,
                            processing_class=hf_tokenizer())
    trainer.model.eval()
    return trainer


@pytest.mark.parametrize("scale", [1.0, 1e5])
def test_bradley_terry_matches_trls_reward_loss(reward_trainer, scale):
    """``scale`` multiplies the score head: rewards of about 0.1, then margins in the thousands."""
    model = reward_trainer.model
    g = torch.Generator().manual_seed(3)
    rows = [{"chosen_ids": torch.randint(3, V, (int(a),), generator=g).tolist(),
             "rejected_ids": torch.randint(3, V, (int(b),), generator=g).tolist()}
            for a, b in torch.randint(1, 12, (16, 2), generator=g)]
    batch = reward_trainer.data_collator(rows)
    head = model.score.weight
    saved = head.detach().clone()
    try:
        with torch.no_grad():
            head.mul_(scale)
        trl_loss, out = reward_trainer.compute_loss(model, dict(batch), return_outputs=True)
        out.logits.retain_grad()
        trl_loss.backward()
    finally:
        with torch.no_grad():
            head.copy_(saved)
        model.zero_grad(set_to_none=True)
    rewards = out.logits.detach().squeeze(-1)
    rc, rr = (x.clone().requires_grad_() for x in rewards.chunk(2))
    loss = rlhf.bradley_terry_loss(rc, rr)
    loss.backward()
    margin = (rc - rr).detach()
    if scale > 1:
        assert margin.min() < -500 and margin.max() > 500 and torch.isfinite(loss)
    assert torch.allclose(loss, trl_loss.detach(), **TOL), (loss - trl_loss).abs()
    assert torch.allclose(torch.cat([rc.grad, rr.grad]), out.logits.grad.squeeze(-1), **TOL)


# -------------------------------------------------------------------------------- gathering

def test_sequence_logprob_gathers_what_selective_log_softmax_gathers():
    torch.manual_seed(4)
    gpt = GPT(GPTConfig(block_size=64, n_layer=1, n_head=2, n_embd=32, vocab_size=V)).eval()
    ids = torch.randint(0, V, (5, 20))
    mask = (torch.rand(5, 20) < 0.6).float()
    mask[:, 0] = 1                                   # position 0 is never predicted: ignored
    logits, _ = gpt(ids)
    theirs = (selective_log_softmax(logits[:, :-1], ids[:, 1:]) * mask[:, 1:]).sum(1)
    ours = rlhf.sequence_logprob(gpt, ids, mask)
    assert torch.allclose(ours, theirs, **TOL), (ours - theirs).abs().max()

    # random logits of scale 100 (nearly one-hot rows, log-probabilities down to about -1000),
    # with the gradient w.r.t. the logits
    big = (torch.randn(5, 20, V) * 100).requires_grad_()
    ours = rlhf.sequence_logprob(lambda x: (big, None), ids, mask)
    (ours * torch.arange(1.0, 6.0)).sum().backward()
    g_ours, big.grad = big.grad, None
    theirs = (selective_log_softmax(big[:, :-1], ids[:, 1:]) * mask[:, 1:]).sum(1)
    (theirs * torch.arange(1.0, 6.0)).sum().backward()
    assert ours.min() < -500 and torch.isfinite(ours).all()
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-3), (ours - theirs).abs().max()
    assert torch.allclose(g_ours, big.grad, rtol=1e-4, atol=1e-6)
