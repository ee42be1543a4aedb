"""Chapter 9: reinforcement learning from human feedback, and how it gets gamed.

In the lecture's unverifiable domains (a joke about pelicans, a poem, a summary) there is no
answer in the back of the book. People could score every sample of every RL step, but their time
is expensive; so a neural network is trained to imitate their judgement (a **reward model**) and
RL runs against the imitation instead. Ordering two answers is easier for a person than scoring
one, so the reward model learns from pairs (Bradley-Terry: the chosen answer's score should beat
the rejected one's). The imitation is good where it was trained and wrong elsewhere, and RL is a
search for exactly the places where it is wrong: run it long enough and the reward keeps rising
while the quality the people wanted falls (over-optimisation, Goodhart's law). RLHF is therefore
run for a little while only, held near the starting model with a KL penalty or stopped early.
DPO skips the reward model and trains the policy on the pairs directly.

The course world's "human" is ``world.hidden_preference_score``: a rule the reward model never
sees, only the choices it makes.

- ``render_pair`` / ``pad``: a prompt and an answer as the chat template's ids, with a mask on
  the answer's tokens;
- ``RewardModel``: the course transformer with one number out instead of a vocabulary's logits,
  read at the answer's last token;
- ``bradley_terry_loss``, ``train_reward_model``, ``agreement``, ``reward_scores``;
- ``policy_pairs``: the policy's own samples, two per prompt, ordered by the hidden rule (as
  InstructGPT's labellers ranked model outputs);
- ``best_of_n``: the expected proxy and true score of the best of ``n`` samples by the reward
  model, against the analytic KL ``log n - (n - 1) / n``;
- ``sequence_kl``, ``measure``: the policy's distance from where it started, its proxy reward and
  its true score, on held-out prompts;
- ``train_rlhf``: chapter 8's GRPO loop with the reward model as the reward;
- ``sequence_logprob``, ``dpo_loss``, ``train_dpo``: direct preference optimisation, with the
  chosen and rejected log-probabilities logged (both may fall).

    python -m course_lib.pipeline --from RLHF --ship   # remake the reward model and policies
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib import assets
from course_lib.assets import CHAT_TOKENS, ENDOFTEXT, IM_END, export_model
from course_lib.chat import chat_tokenizer, render_prompt
from course_lib.generate import _model_device, unknown_ids
from course_lib.rl import RLConfig, problem_prompts, rollout, token_logprobs, train_grpo
from course_lib.world import hidden_preference_score

# --------------------------------------------------------------------------------------------
# Pairs as ids
# --------------------------------------------------------------------------------------------


def render_pair(tokenizer, prompt: str, response: str) -> tuple[list[int], list[int]]:
    """The user's ``prompt`` and the assistant's ``response`` in the chat template (after
    ``<|endoftext|>``, as chapter 8's prompts), and a mask that is 1 on the response's tokens
    and its closing ``<|im_end|>``. A sampled response may contain special tokens the policy
    wrote: they are encoded as the tokens they were, not as text."""
    prompt_ids = [tokenizer.special_tokens[ENDOFTEXT]] + render_prompt(
        [{"role": "user", "content": prompt}], tokenizer)
    body = tokenizer.encode(response, allowed_special="all") + [CHAT_TOKENS[IM_END]]
    return prompt_ids + body, [0] * len(prompt_ids) + [1] * len(body)


def pad(rows: list[list[int]], masks: list[list[int]], device="cpu"
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token rows (with ``<|im_end|>``) and their masks (with 0) to one ``(B, T)``."""
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), CHAT_TOKENS[IM_END], dtype=torch.long)
    mask = torch.zeros(len(rows), T)
    for i, (r, m) in enumerate(zip(rows, masks)):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(m)] = torch.tensor(m, dtype=torch.float)
    return ids.to(device), mask.to(device)


# --------------------------------------------------------------------------------------------
# The reward model
# --------------------------------------------------------------------------------------------


class RewardModel(nn.Module):
    """A GPT whose output is one number per sequence: the last layer's hidden state at the last
    token of the answer (its ``<|im_end|>``), through a linear head. Started from the assistant
    so that it begins with everything the assistant knows about the world."""

    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt
        self.config = gpt.config
        self.head = nn.Linear(gpt.config.n_embd, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``ids`` ``(B, T)`` right-padded, ``mask`` ``(B, T)`` 1 on the answer: ``(B,)``
        scores, read at each row's last masked token."""
        if not bool((mask.sum(dim=1) > 0).all()):
            raise ValueError("a row of mask is all 0: the reward model reads the score at the "
                             "answer's last token, so every row needs an answer (render it "
                             "with render_pair)")
        h = self.gpt.features(ids)
        last = (mask * torch.arange(mask.size(1), device=mask.device)).argmax(dim=1)
        return self.head(h[torch.arange(ids.size(0), device=ids.device), last]).squeeze(-1)


def export_reward_model(rm: RewardModel, path, meta: dict | None = None):
    """Ship a reward model: its transformer as ``assets.export_model`` writes one, the head's
    weights in the file's meta."""
    head = {"weight": rm.head.weight.detach().float().flatten().tolist(),
            "bias": float(rm.head.bias.detach())}
    return export_model(rm.gpt, path, meta=(meta or {}) | {"reward_head": head})


def load_reward_model(path=None, device: str = "cpu") -> RewardModel:
    """The shipped reward model (``reward_model.pt``), or one ``export_reward_model`` wrote."""
    import torch as _t

    p = path or assets.path("reward_model.pt")
    head = _t.load(p, map_location="cpu", weights_only=True)["meta"].get("reward_head")
    if head is None:
        raise ValueError(f"{p} holds no reward head: it is a language model, not a reward "
                         "model (remake it with python -m course_lib.pipeline --from RLHF)")
    rm = RewardModel(assets.load_model(p, device))
    with _t.no_grad():
        rm.head.weight.copy_(_t.tensor(head["weight"]).view_as(rm.head.weight))
        rm.head.bias.fill_(head["bias"])
    for q in rm.parameters():
        q.requires_grad_(False)
    return rm.eval().to(device)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry's negative log-likelihood that the chosen answer wins,
    ``-log sigmoid(r_chosen - r_rejected)``, averaged over the pairs. ``logsigmoid`` stays finite
    for any margin, where ``log(sigmoid(x))`` becomes ``log(0)`` below about -100."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


@dataclass
class Pair:
    """A prompt and two answers, ``chosen`` preferred by the labeller."""

    prompt: str
    chosen: str
    rejected: str
    chosen_score: float = float("nan")
    rejected_score: float = float("nan")


def _pair_tensors(tokenizer, pairs, device):
    c = [render_pair(tokenizer, p.prompt, p.chosen) for p in pairs]
    r = [render_pair(tokenizer, p.prompt, p.rejected) for p in pairs]
    ids, mask = pad([x for x, _ in c + r], [m for _, m in c + r], device)
    return ids, mask, len(pairs)


@torch.no_grad()
def reward_scores(rm, tokenizer, prompts: list[str], responses: list[str], batch: int = 256
                  ) -> torch.Tensor:
    """The reward model's score of each ``(prompt, response)``: a ``(N,)`` tensor."""
    tok = chat_tokenizer(tokenizer)
    device = _model_device(rm)
    rm.eval()
    out = []
    for i in range(0, len(prompts), batch):
        rows = [render_pair(tok, p, r) for p, r in zip(prompts[i:i + batch],
                                                      responses[i:i + batch])]
        ids, mask = pad([x for x, _ in rows], [m for _, m in rows], device)
        out.append(rm(ids, mask).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def agreement(rm, tokenizer, pairs) -> float:
    """The share of ``pairs`` whose chosen answer the reward model scores higher (a tie counts
    half: a model that cannot tell the two apart agrees half the time, as a coin would)."""
    rc = reward_scores(rm, tokenizer, [p.prompt for p in pairs], [p.chosen for p in pairs])
    rr = reward_scores(rm, tokenizer, [p.prompt for p in pairs], [p.rejected for p in pairs])
    return float((rc > rr).float().mean() + 0.5 * (rc == rr).float().mean())


@dataclass
class RMConfig:
    steps: int = 600
    batch: int = 32                 # pairs per step
    lr: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0


def train_reward_model(rm, tokenizer, pairs, cfg: RMConfig | None = None, progress=None
                       ) -> list[dict]:
    """Bradley-Terry on ``pairs`` (objects with ``prompt``, ``chosen``, ``rejected``), AdamW with
    a linear decay to 0; ``rm`` is trained in place. Returns one row per step: loss and the
    share of the batch ordered right."""
    cfg = cfg or RMConfig()
    tok = chat_tokenizer(tokenizer)
    device = _model_device(rm)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    opt = torch.optim.AdamW(rm.parameters(), lr=cfg.lr, betas=(0.9, 0.95),
                            weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / cfg.steps)
    order: list[int] = []
    history = []
    rm.train()
    for step in range(1, cfg.steps + 1):
        if len(order) < cfg.batch:
            more = list(range(len(pairs)))
            rng.shuffle(more)
            order += more
        idx, order = order[:cfg.batch], order[cfg.batch:]
        ids, mask, n = _pair_tensors(tok, [pairs[i] for i in idx], device)
        r = rm(ids, mask)
        loss = bradley_terry_loss(r[:n], r[n:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
        opt.step()
        sched.step()
        row = {"step": step, "loss": loss.item(), "accuracy": float((r[:n] > r[n:]).float().mean())}
        history.append(row)
        if progress:
            progress(row)
    rm.eval()
    return history


# --------------------------------------------------------------------------------------------
# The policy's own answers, judged by the hidden labeller
# --------------------------------------------------------------------------------------------


def true_scores(texts: list[str], questions) -> list[float]:
    """The hidden labeller's score of each answer (``questions[i]`` with ``question``,
    ``answer`` and ``subject``)."""
    return [hidden_preference_score(q.question, t, q.answer, q.subject)
            for t, q in zip(texts, questions)]


@torch.no_grad()
def sample_answers(model, tokenizer, questions, samples: int, temperature: float = 1.0,
                   max_new_tokens: int = 48, seed: int = 0, batch: int = 512
                   ) -> tuple[list[str], list[list[int]]]:
    """``samples`` answers to every question (question-major), as texts (up to ``<|im_end|>``)
    and token ids (with it)."""
    tok = chat_tokenizer(tokenizer)
    device = _model_device(model)
    prompts = [p for p in problem_prompts(questions, tok) for _ in range(samples)]
    g = torch.Generator(device=device).manual_seed(seed)
    forbid = unknown_ids(tok, model.config.vocab_size).to(device)
    tokens = []
    for i in range(0, len(prompts), batch):
        tokens += rollout(model, prompts[i:i + batch], max_new_tokens, temperature, g,
                          forbid=forbid).tokens
    stop = CHAT_TOKENS[IM_END]
    texts = [tok.decode([t for t in ts if t != stop]) for ts in tokens]
    return texts, tokens


def policy_pairs(model, tokenizer, questions, seed: int = 0, samples: int = 2,
                 max_new_tokens: int = 48) -> list[Pair]:
    """Pairs from the policy's own answers: ``samples`` answers to each question, the hidden
    labeller's scores, and the first two that differ ordered into chosen and rejected (ties
    make no pair)."""
    texts, _ = sample_answers(model, tokenizer, questions, samples, seed=seed,
                              max_new_tokens=max_new_tokens)
    out = []
    for i, q in enumerate(questions):
        ts = texts[i * samples:(i + 1) * samples]
        sc = true_scores(ts, [q] * samples)
        for a in range(samples):
            b = next((b for b in range(a + 1, samples) if sc[b] != sc[a]), None)
            if b is not None:
                hi, lo = (a, b) if sc[a] > sc[b] else (b, a)
                out.append(Pair(q.question, ts[hi], ts[lo], sc[hi], sc[lo]))
                break
    return out


# --------------------------------------------------------------------------------------------
# Over-optimisation: best-of-n and RL against the reward model
# --------------------------------------------------------------------------------------------


def best_of_n(proxy: torch.Tensor, true: torch.Tensor, ns=(1, 2, 4, 8, 16, 32, 64)) -> list[dict]:
    """The expected proxy and true score of the answer the reward model ranks best among ``n``
    drawn from a question's ``N`` samples (``proxy``, ``true``: ``(Q, N)``), computed exactly
    from all ``N``: the sample ranked ``i``-th lowest is the best of a random ``n``-subset with
    probability ``C(i-1, n-1) / C(N, n)`` (Gao et al. 2022's estimator). The KL from the policy
    to best-of-n is ``log n - (n - 1) / n`` nats (exact when no two answers tie in score, an
    upper bound otherwise)."""
    Q, N = proxy.shape
    order = proxy.argsort(dim=1)
    p_sorted = proxy.gather(1, order).double()
    t_sorted = torch.as_tensor(true, dtype=torch.double).gather(1, order)
    out = []
    for n in ns:
        if not 1 <= n <= N:
            raise ValueError(f"n={n} needs 1 <= n <= {N} (the samples per question)")
        w = torch.tensor([math.comb(i - 1, n - 1) for i in range(1, N + 1)], dtype=torch.double)
        w = w / math.comb(N, n)
        out.append({"n": n, "kl": math.log(n) - (n - 1) / n,
                    "proxy": float((p_sorted * w).sum(1).mean()),
                    "true": float((t_sorted * w).sum(1).mean())})
    return out


@torch.no_grad()
def sequence_kl(model, ref, prompts: list[list[int]], responses: list[list[int]],
                batch: int = 256) -> torch.Tensor:
    """Per answer, an unbiased estimate of KL(policy || reference) over the whole answer (the
    answers sampled from the policy): the sum over its tokens of Schulman's k3,
    ``exp(r) - r - 1`` with ``r = log p_ref - log p_policy``. ``(N,)`` nats."""
    out = []
    for i in range(0, len(prompts), batch):
        P, R = prompts[i:i + batch], responses[i:i + batch]
        lp, mask = token_logprobs(model, P, R)
        lr_, _ = token_logprobs(ref, P, R)
        d = lr_ - lp
        out.append(((d.exp() - d - 1) * mask).sum(1).cpu())
    return torch.cat(out)


def measure(model, ref, rm, tokenizer, questions, samples: int = 4, seed: int = 0,
            max_new_tokens: int = 48) -> dict:
    """On held-out ``questions``: the policy's mean KL from ``ref`` (nats per answer), the
    reward model's mean score (proxy) and the hidden labeller's (true), the mean length in
    words and the share of answers with a closing; with the first few answers as examples."""
    tok = chat_tokenizer(tokenizer)
    texts, tokens = sample_answers(model, tok, questions, samples, seed=seed,
                                   max_new_tokens=max_new_tokens)
    qs = [q for q in questions for _ in range(samples)]
    prompts = [p for p in problem_prompts(questions, tok) for _ in range(samples)]
    kl = sequence_kl(model, ref, prompts, tokens)
    proxy = (reward_scores(rm, tok, [q.question for q in qs], texts) if rm is not None
             else torch.full((len(texts),), float("nan")))
    true = true_scores(texts, qs)
    return {"kl": float(kl.mean()), "proxy": float(proxy.mean()),
            "true": sum(true) / len(true),
            "words": sum(len(t.split()) for t in texts) / len(texts),
            "examples": [{"question": q.question, "answer": t, "proxy": float(p), "true": s}
                         for q, t, p, s in list(zip(qs, texts, proxy, true))[::samples][:6]]}


def _frozen_copy(model):
    """The reference: a copy of ``model`` in eval mode that no gradient reaches."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def _line(step: int, res: dict) -> str:
    return (f"step {step}: KL {res['kl']:.2f}, proxy {res['proxy']:+.2f}, "
            f"true {res['true']:+.2f}, {res['words']:.1f} words")


@dataclass
class RLHFConfig:
    """GRPO against the reward model (chapter 8's loop); answers are short, so steps are quick."""

    steps: int = 300
    prompts_per_step: int = 8
    group_size: int = 16
    lr: float = 3e-5
    kl_coef: float = 0.0
    max_new_tokens: int = 48
    eval_every: int = 20
    eval_samples: int = 4
    seed: int = 0


def train_rlhf(model, rm, tokenizer, questions, cfg: RLHFConfig | None = None,
               eval_questions=None, progress=None, log=print):
    """RL of ``model`` (in place) against the reward model ``rm`` on ``questions``. Every
    ``eval_every`` steps, ``measure`` on ``eval_questions`` (KL from the start, proxy, true).
    Returns chapter 8's ``RLResult`` (``evals``: ``(step, seconds, measure(...))``) with
    ``best``: the step, true score and weights of the evaluation whose true score was highest
    (early stopping on a held-out gold metric: what a lab does with a few fresh human labels)."""
    cfg = cfg or RLHFConfig()
    tok = chat_tokenizer(tokenizer)
    ref = _frozen_copy(model)

    def reward_fn(texts, qs):
        return reward_scores(rm, tok, [q.question for q in qs],
                             [t.replace(IM_END, "") for t in texts]).tolist()

    best = {"step": 0, "true": -math.inf, "state": None}

    def evaluate_fn(m, step):
        res = measure(m, ref, rm, tok, eval_questions, cfg.eval_samples, seed=10_000 + step,
                      max_new_tokens=cfg.max_new_tokens)
        log(_line(step, res))
        if res["true"] > best["true"]:   # early stopping on the held-out true score
            best.update(step=step, true=res["true"],
                        state={k: v.detach().clone() for k, v in m.state_dict().items()})
        return res

    rcfg = RLConfig(steps=cfg.steps, problems_per_step=cfg.prompts_per_step,
                    group_size=cfg.group_size, lr=cfg.lr, kl_coef=cfg.kl_coef,
                    max_new_tokens=cfg.max_new_tokens, eval_every=cfg.eval_every,
                    patience=cfg.steps + 1, seed=cfg.seed)
    result = train_grpo(model, tok, questions, rcfg, progress=progress, log=log,
                        reward_fn=reward_fn, evaluate_fn=evaluate_fn if eval_questions else None)
    result.best = best
    return result


# --------------------------------------------------------------------------------------------
# DPO
# --------------------------------------------------------------------------------------------


def sequence_logprob(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The log-probability ``model`` gives each row's masked tokens: ``ids`` ``(B, T)``,
    ``mask`` ``(B, T)`` 1 on the answer's tokens (aligned with ``ids``; position 0 is never
    predicted). Returns ``(B,)``: the sum over ``t >= 1`` of ``mask[t] * log p(ids[t] |
    ids[:t])``. The prompt's tokens do not count: they were given, not chosen."""
    logits, _ = model(ids)
    logp = logits[:, :-1].float().log_softmax(dim=-1)
    picked = logp.gather(2, ids[:, 1:, None]).squeeze(2)
    return (picked * mask[:, 1:].to(picked.dtype)).sum(dim=1)


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float) -> torch.Tensor:
    """DPO's loss (Rafailov et al. 2023), averaged over the pairs: Bradley-Terry on the implicit
    rewards ``beta * (log pi(y) - log pi_ref(y))``, i.e.
    ``-log sigmoid(beta * ((pc - rc) - (pr - rr)))``. The reference's log-probabilities are
    constants (detached: no gradient reaches the reference)."""
    margin = ((policy_chosen_logps - ref_chosen_logps.detach())
              - (policy_rejected_logps - ref_rejected_logps.detach()))
    return -F.logsigmoid(beta * margin).mean()


@dataclass
class DPOConfig:
    beta: float = 0.1
    lr: float = 1e-5
    batch: int = 32
    epochs: int = 1
    eval_every: int = 25
    eval_samples: int = 4
    max_new_tokens: int = 48        # for the evaluations' answers
    seed: int = 0


@dataclass
class DPOResult:
    model: object
    history: list = field(default_factory=list)
    evals: list = field(default_factory=list)
    config: dict = field(default_factory=dict)


def train_dpo(model, tokenizer, pairs, cfg: DPOConfig | None = None, eval_questions=None,
              rm=None, progress=None, log=print) -> DPOResult:
    """DPO of ``model`` (in place) on ``pairs`` against a frozen copy of itself. Each step's row:
    loss, the mean chosen and rejected log-probabilities (per answer), the implicit reward margin
    and the share of pairs it orders right. Every ``eval_every`` steps, ``measure`` (needs ``rm``
    for the proxy column)."""
    cfg = cfg or DPOConfig()
    tok = chat_tokenizer(tokenizer)
    device = _model_device(model)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    ref = _frozen_copy(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    order = [i for _ in range(cfg.epochs) for i in rng.sample(range(len(pairs)), len(pairs))]
    steps = math.ceil(len(order) / cfg.batch)   # the last batch may be smaller: no pair skipped
    result = DPOResult(model, config=asdict(cfg))
    clock = 0.0

    def run_eval(step):
        if eval_questions:
            res = measure(model, ref, rm, tok, eval_questions, cfg.eval_samples,
                          seed=10_000 + step, max_new_tokens=cfg.max_new_tokens)
            result.evals.append((step, clock, res))
            log(_line(step, res))

    run_eval(0)
    for step in range(1, steps + 1):
        w0 = time.perf_counter()
        batch = [pairs[i] for i in order[(step - 1) * cfg.batch:step * cfg.batch]]
        ids, mask, n = _pair_tensors(tok, batch, device)
        model.train()
        logp = sequence_logprob(model, ids, mask)
        with torch.no_grad():
            ref_logp = sequence_logprob(ref, ids, mask)
        loss = dpo_loss(logp[:n], logp[n:], ref_logp[:n], ref_logp[n:], cfg.beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.eval()
        margin = cfg.beta * ((logp[:n] - ref_logp[:n]) - (logp[n:] - ref_logp[n:])).detach()
        clock += time.perf_counter() - w0
        logp = logp.detach()
        row = {"step": step, "loss": loss.item(), "chosen": float(logp[:n].mean()),
               "rejected": float(logp[n:].mean()), "margin": float(margin.mean()),
               "accuracy": float((margin > 0).float().mean()), "seconds": clock}
        result.history.append(row)
        if progress:
            progress(row)
        if step % cfg.eval_every == 0 or step == steps:
            run_eval(step)
    return result
