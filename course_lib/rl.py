"""Chapter 8: reinforcement learning on problems with a verifiable answer.

The lecture's textbook analogy: pretraining is the exposition, supervised finetuning the worked
examples, and reinforcement learning the practice problems at the end of the chapter, where the
answer is in the back of the book but the way to it is the student's own. The model writes many
solutions to each problem; a program checks each final answer; the solutions that reached the right
answer are made more likely, token by token, and the others less. Nothing says *how* to solve the
problem: whatever the model itself found that works is what is reinforced (DeepSeek-R1).

- ``extract_answer`` / ``reward``: the verifier. Only the final ``Answer:`` line counts, and a
  well-formatted wrong answer earns exactly what no answer earns: nothing;
- ``group_advantages``: GRPO's baseline, each solution's reward against the other solutions of
  the same problem (optionally divided by their standard deviation);
- ``policy_loss``: the clipped policy-gradient objective, a masked mean over every answer token
  of the batch (each token counts the same, however long its solution: DAPO's normalisation);
- ``StaticKVCache``, ``rollout``: many solutions sampled at once with a preallocated KV cache,
  rows leaving the batch when they write ``<|im_end|>``;
- ``token_logprobs``: the log-probability of each token a solution chose, under a model;
- ``pass_at_k``, ``evaluate``: pass@1 and pass@k (Chen et al.'s unbiased estimator), mean length,
  solutions cut at the length limit, solutions that re-check their work;
- ``RLConfig``, ``train_grpo``: the loop, with the monitoring that catches silent failure (the
  share of groups whose rewards are all equal, which give no gradient; solutions cut at the
  limit) and a clear stop (``NothingToLearn``) when no group has anything to teach.

    python -m course_lib.pipeline --from 'reinforcement learning' --ship   # remake the RL model
"""

from __future__ import annotations

import math
import random
import re
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from course_lib.assets import CHAT_TOKENS, ENDOFTEXT, IM_END
from course_lib.chat import _cut, chat_tokenizer, render_prompt
from course_lib.generate import _model_device, unknown_ids
from course_lib.model import KVCache

# --------------------------------------------------------------------------------------------
# The verifier
# --------------------------------------------------------------------------------------------

_ANSWER = re.compile(r"^Answer:[ \t]*(-?\d+)[ \t]*$", re.MULTILINE)


def extract_answer(text: str) -> int | None:
    """The solution's final answer: the integer of its last line when that line is
    ``Answer: N`` (the format the assistant learned). The reply ends at its first special token
    (``<|im_end|>``). Anything else is no answer (``None``): no ``Answer:`` line, one that is not
    the last line, or one whose number is followed by more text. An answer must come last, so a
    solution cannot list several candidates and be paid for the right one."""
    text = _cut(text)
    lines = text.rstrip().split("\n")
    m = _ANSWER.fullmatch(lines[-1].strip()) if lines else None
    return int(m.group(1)) if m else None


def reward(text: str, problem) -> float:
    """1.0 when ``text``'s final answer (``extract_answer``) is ``problem.answer``, else 0.0: a
    well-formatted wrong answer earns nothing, as does a right number in the wrong place."""
    got = extract_answer(text)
    return 1.0 if got is not None and got == problem.answer else 0.0


def rechecks(text: str) -> bool:
    """Whether a solution works the sum out more than once (the R1 "aha" at toy scale): two or
    more ``So ... =`` conclusions, or words of checking (check, again, wait, verify)."""
    text = _cut(text)
    return (len(re.findall(r"^So .*=", text, re.MULTILINE)) > 1
            or re.search(r"\b(check|again|wait|verify)\b", text, re.IGNORECASE) is not None)


# --------------------------------------------------------------------------------------------
# GRPO's two formulas
# --------------------------------------------------------------------------------------------


def group_advantages(rewards: torch.Tensor, group_size: int, normalize_std: bool = True,
                     eps: float = 1e-6) -> torch.Tensor:
    """Each solution's advantage: its reward minus the mean reward of its group (the
    ``group_size`` consecutive solutions of one problem), divided by the group's standard
    deviation (``torch.std``'s, unbiased) plus ``eps`` when ``normalize_std``. A group whose
    rewards are all equal gets advantage 0 (not NaN): it has nothing to teach."""
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be one-dimensional, got shape {tuple(rewards.shape)}")
    if group_size < 2 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size} "
                         "(group_size must be at least 2 and divide the number of rewards)")
    g = rewards.view(-1, group_size)
    adv = g - g.mean(dim=1, keepdim=True)
    if normalize_std:
        adv = adv / (g.std(dim=1, keepdim=True) + eps)
    return adv.reshape(-1)


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, clip: float = 0.2) -> torch.Tensor:
    """The clipped policy-gradient loss (PPO's, as GRPO uses it). ``logprobs`` ``(B, T)``: each
    chosen token's log-probability under the model being trained; ``old_logprobs``: under the
    model that sampled it; ``advantages`` ``(B,)``: one per solution, shared by its tokens;
    ``mask`` ``(B, T)``: 1 on the solution's tokens, 0 on padding. Per token: the ratio
    ``r = exp(logprobs - old_logprobs)`` and the smaller of ``r * A`` and
    ``clamp(r, 1 - clip, 1 + clip) * A``; the loss is minus their mean over the masked tokens of
    the whole batch."""
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages[:, None].to(logprobs.dtype)
    objective = torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    return -(objective * mask).sum() / mask.sum().clamp(min=1)


# --------------------------------------------------------------------------------------------
# Rollouts: many solutions at once
# --------------------------------------------------------------------------------------------


class StaticKVCache(KVCache):
    """A KV cache allocated once for ``capacity`` positions: each step writes its keys and values
    in place instead of concatenating a longer copy (chapter 5's ``KVCache``), and ``keep``
    drops rows that have finished."""

    def __init__(self, n_layer: int, batch: int, n_head: int, capacity: int, head_dim: int,
                 dtype=torch.float32, device="cpu"):
        super().__init__(n_layer)
        shape = (batch, n_head, capacity, head_dim)
        self.k = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.v = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.n = 0
        self.capacity = capacity

    @property
    def length(self) -> int:
        return self.n

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        end = self.n + k.size(2)
        if end > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} positions; {end} needed")
        self.k[layer][:, :, self.n:end] = k
        self.v[layer][:, :, self.n:end] = v
        if layer == len(self.k) - 1:
            self.n = end
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (indices) of the batch, in that order."""
        self.k = [t[rows] for t in self.k]
        self.v = [t[rows] for t in self.v]
        if self.key_mask is not None:
            self.key_mask = self.key_mask[rows]

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


@dataclass
class Rollout:
    """Sampled solutions: ``tokens[i]`` the ids row ``i`` wrote (its ``<|im_end|>`` included when
    it wrote one), ``truncated[i]`` when it reached the length limit first."""

    tokens: list
    truncated: list

    @property
    def lengths(self) -> list[int]:
        return [len(t) for t in self.tokens]


def draw(logits: torch.Tensor, temperature: float = 1.0,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``logits`` ``(B, V)``, drawn from ``softmax(logits / temperature)``
    (``temperature=0``: the argmax). The same distribution as chapter 5's ``sample`` without
    top-k/top-p, drawn by inverting the cumulative distribution with one uniform number per row:
    ``torch.multinomial`` draws one random number per vocabulary entry, and at batch 64 that
    alone took a third of the decoding time (``bench/bench_rollout.py``)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = (logits.float() / temperature).softmax(dim=-1)
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(probs.size(0), 1, generator=generator, device=probs.device) * cdf[:, -1:]
    idx = torch.searchsorted(cdf, u, right=True).clamp(max=probs.size(-1) - 1)
    # rounding at the top end could land on a zero-probability (forbidden) token: never keep it
    ok = probs.gather(1, idx) > 0
    if not bool(ok.all()):
        idx = torch.where(ok, idx, probs.argmax(dim=-1, keepdim=True))
    return idx.squeeze(1)


@torch.no_grad()
def rollout(model, prompts: list[list[int]], max_new_tokens: int, temperature: float = 1.0,
            generator: torch.Generator | None = None, stop_id: int = CHAT_TOKENS[IM_END],
            forbid: torch.Tensor | None = None, compact: float = 0.75) -> Rollout:
    """Sample a continuation of every prompt at once, until it writes ``stop_id`` or
    ``max_new_tokens``. Prompts are left-padded (masked out of attention, positions from 0 at
    each row's first token, as ``generate_batch``); the cache is allocated once; rows that have
    finished stop costing work: when the running rows are at most ``compact`` of the cache's,
    the finished ones are dropped from it."""
    device = _model_device(model)
    model.eval()
    cfg = model.config
    B = len(prompts)
    T = max(len(p) for p in prompts)
    if T + max_new_tokens > cfg.block_size:
        raise ValueError(f"the longest prompt ({T} tokens) + {max_new_tokens} new tokens exceed "
                         f"block_size {cfg.block_size}")
    ids = torch.zeros(B, T, dtype=torch.long, device=device)
    key_mask = torch.zeros(B, T, dtype=torch.bool, device=device)
    for r, p in enumerate(prompts):
        ids[r, T - len(p):] = torch.tensor(p, device=device)
        key_mask[r, T - len(p):] = True
    pos = (key_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    dtype = next(model.parameters()).dtype
    cache = StaticKVCache(cfg.n_layer, B, cfg.n_head, T + max_new_tokens,
                          cfg.n_embd // cfg.n_head, dtype, device)
    logits, _ = model(ids, cache=cache, pos=pos, key_mask=key_mask)
    logits = logits[:, -1]
    next_pos = pos[:, -1:] + 1
    rows = torch.arange(B, device=device)          # the batch's rows, by their prompt index
    out = torch.full((B, max_new_tokens), stop_id, dtype=torch.long, device=device)
    length = torch.full((B,), max_new_tokens, dtype=torch.long, device=device)
    live = torch.ones(B, dtype=torch.bool, device=device)   # over the cache's rows
    for step in range(max_new_tokens):
        if forbid is not None:
            logits = logits.masked_fill(forbid, float("-inf"))
        nxt = draw(logits, temperature, generator)
        nxt = torch.where(live, nxt, torch.full_like(nxt, stop_id))
        out[rows, step] = nxt
        ended = live & (nxt == stop_id)
        if ended.any():
            length[rows[ended]] = step + 1
            live = live & ~ended
            n_live = int(live.sum())
            if n_live == 0:
                break
            if n_live <= compact * live.numel():
                keep = live.nonzero().squeeze(1)
                cache.keep(keep)
                rows, nxt, next_pos, live = rows[keep], nxt[keep], next_pos[keep], live[keep]
        if step + 1 < max_new_tokens:
            logits, _ = model(nxt[:, None], cache=cache, pos=next_pos)
            logits = logits[:, -1]
            next_pos = next_pos + 1
    tokens = [out[i, :int(length[i])].tolist() for i in range(B)]
    truncated = [len(t) == max_new_tokens and t[-1] != stop_id for t in tokens]
    return Rollout(tokens, truncated)


def token_logprobs(model, prompts: list[list[int]], responses: list[list[int]]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T)`` log-probabilities of each response's tokens under ``model`` (gradients flow
    when enabled), and the ``(B, T)`` mask that is 1 on them and 0 on padding. Each row is
    prompt + response, right-padded, so positions start at 0 as in ``rollout``."""
    device = _model_device(model)
    L = max(len(p) + len(r) for p, r in zip(prompts, responses))
    R = max(len(r) for r in responses)
    ids = torch.zeros(len(prompts), L, dtype=torch.long, device=device)
    gather = torch.zeros(len(prompts), R, dtype=torch.long, device=device)   # logits' positions
    targets = torch.zeros(len(prompts), R, dtype=torch.long, device=device)
    mask = torch.zeros(len(prompts), R, device=device)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        seq = p + r
        ids[i, :len(seq)] = torch.tensor(seq, device=device)
        n = len(r)
        gather[i, :n] = torch.arange(len(p) - 1, len(p) - 1 + n, device=device)
        targets[i, :n] = torch.tensor(r, device=device)
        mask[i, :n] = 1
    logits, _ = model(ids)
    picked = logits.gather(1, gather[:, :, None].expand(-1, -1, logits.size(-1)))
    logp = picked.float().log_softmax(dim=-1).gather(2, targets[:, :, None]).squeeze(2)
    return logp * mask, mask


# --------------------------------------------------------------------------------------------
# Measuring: pass@k
# --------------------------------------------------------------------------------------------


def pass_at_k(n: int, c: int, k: int) -> float:
    """The probability that at least one of ``k`` solutions drawn without replacement from ``n``
    samples, ``c`` of them right, is right (Chen et al. 2021's unbiased estimator)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def problem_prompts(problems, tokenizer) -> list[list[int]]:
    """Each problem's question as the user's message, rendered for the assistant to answer."""
    tok = chat_tokenizer(tokenizer)
    eot = tok.special_tokens[ENDOFTEXT]
    return [[eot] + render_prompt([{"role": "user", "content": p.question}], tok)
            for p in problems]


@torch.no_grad()
def sample_solutions(model, tokenizer, problems, samples: int, temperature: float = 1.0,
                     max_new_tokens: int = 200, seed: int = 0, batch: int = 256):
    """``samples`` solutions of every problem (problem-major: the ``samples`` of problem 0
    first); returns ``(texts, rollout)``."""
    tok = chat_tokenizer(tokenizer)
    prompts = [p for p in problem_prompts(problems, tok) for _ in range(samples)]
    g = torch.Generator(device=_model_device(model)).manual_seed(seed)
    forbid = unknown_ids(tok, model.config.vocab_size).to(_model_device(model))
    tokens, truncated = [], []
    for i in range(0, len(prompts), batch):
        r = rollout(model, prompts[i:i + batch], max_new_tokens, temperature, g, forbid=forbid)
        tokens += r.tokens
        truncated += r.truncated
    return [tok.decode(t) for t in tokens], Rollout(tokens, truncated)


def evaluate(model, tokenizer, problems, samples: int = 16, ks=(1, 16), temperature: float = 1.0,
             max_new_tokens: int = 200, seed: int = 0) -> dict:
    """pass@k for each ``k`` of ``ks`` (at most ``samples``), from ``samples`` solutions of every
    problem at ``temperature``; with the mean solution length in tokens, the share cut at
    ``max_new_tokens`` and the share that re-checks its work (``rechecks``)."""
    texts, ro = sample_solutions(model, tokenizer, problems, samples, temperature,
                                 max_new_tokens, seed)
    right = [reward(t, p) for t, p in zip(texts, (p for p in problems for _ in range(samples)))]
    out = {}
    for k in ks:
        out[f"pass@{k}"] = sum(pass_at_k(samples, int(sum(right[i * samples:(i + 1) * samples])), k)
                               for i in range(len(problems))) / len(problems)
    out.update(length=sum(ro.lengths) / len(texts), truncated=sum(ro.truncated) / len(texts),
               rechecks=sum(map(rechecks, texts)) / len(texts), n=len(problems),
               samples=samples, example=_cut(texts[0]))
    return out


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


class NothingToLearn(RuntimeError):
    """Every group's rewards were equal for too long: no solution differs from its siblings, so
    the policy gradient is zero and the run would only burn time."""


@dataclass
class RLConfig:
    """GRPO's settings. The defaults are the shipped run's (docs/capability.md finding 16)."""

    steps: int = 160
    problems_per_step: int = 8
    group_size: int = 16            # solutions per problem
    lr: float = 6e-5
    temperature: float = 1.0
    max_new_tokens: int = 200
    normalize_std: bool = True
    clip: float = 0.2
    epochs: int = 1                 # passes over each batch (the ratio and clip matter from 2)
    kl_coef: float = 0.0            # penalty on the k3 KL estimate to the starting model
    kl_every: int = 10              # measure the KL this often when it is not penalised
    micro_batch: int = 32           # sequences per forward/backward
    grad_clip: float = 1.0
    patience: int = 20              # steps in a row with no group to learn from before stopping
    eval_every: int = 25
    seconds: float | None = None    # also stop after this much training time (wall clock)
    seed: int = 0


@dataclass
class RLResult:
    model: object
    history: list = field(default_factory=list)    # one dict per step
    evals: list = field(default_factory=list)      # (step, seconds, evaluate(...)) tuples
    config: dict = field(default_factory=dict)
    stopped: str = ""


def _kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from the policy's own samples (Schulman's
    k3: ``exp(ref - logp) - (ref - logp) - 1``, never negative), masked mean."""
    d = ref_logp - logp
    return ((d.exp() - d - 1) * mask).sum() / mask.sum().clamp(min=1)


def train_grpo(model, tokenizer, problems, cfg: RLConfig | None = None, eval_problems=None,
               eval_samples: int = 4, progress=None, log=print, reward_fn=None,
               evaluate_fn=None) -> RLResult:
    """GRPO on ``problems`` (each with ``.question`` and ``.answer``): every step draws
    ``problems_per_step`` problems, samples ``group_size`` solutions of each, rewards them,
    turns rewards into group-relative advantages and takes ``epochs`` clipped policy-gradient
    steps on the batch. ``model`` is trained in place; a copy of its starting weights is the KL
    reference. Each step's history row: reward, zero-variance groups, truncated share, length,
    loss, clipped share, KL (when measured), sampling and training seconds. Raises
    ``NothingToLearn`` after ``patience`` steps in a row in which every group's rewards were
    equal. ``eval_problems``: measured every ``eval_every`` steps (pass@1 over
    ``eval_samples``), outside the training clock.

    Chapter 9 reuses the loop with a learned reward: ``reward_fn(texts, problems)`` returns one
    reward per text (default: the verifier ``reward``), and ``evaluate_fn(model, step)`` returns
    the dict recorded at each evaluation (default: pass@k on ``eval_problems``)."""
    import copy

    cfg = cfg or RLConfig()
    tok = chat_tokenizer(tokenizer)
    device = _model_device(model)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    forbid = unknown_ids(tok, model.config.vocab_size).to(device)
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    prompts_all = problem_prompts(problems, tok)
    result = RLResult(model, config=asdict(cfg))
    order, flat = [], 0
    clock = 0.0

    def run_eval(step):
        if evaluate_fn is not None:
            result.evals.append((step, clock, evaluate_fn(model, step)))
        elif eval_problems:
            ks = (1,) if eval_samples == 1 else (1, eval_samples)
            res = evaluate(model, tok, eval_problems, eval_samples, ks=ks,
                           max_new_tokens=cfg.max_new_tokens, seed=10_000 + step)
            result.evals.append((step, clock, res))
            log(f"step {step}: held-out " + ", ".join(f"pass@{k} {res[f'pass@{k}']:.1%}"
                                                     for k in ks)
                + f", length {res['length']:.0f}")

    run_eval(0)
    for step in range(1, cfg.steps + 1):
        t0 = time.process_time()
        w0 = time.perf_counter()
        if len(order) < cfg.problems_per_step:
            more = list(range(len(problems)))
            rng.shuffle(more)
            order += more
        chosen, order = order[:cfg.problems_per_step], order[cfg.problems_per_step:]
        prompts = [prompts_all[i] for i in chosen for _ in range(cfg.group_size)]
        ro = rollout(model, prompts, cfg.max_new_tokens, cfg.temperature, g, forbid=forbid)
        texts = [tok.decode(t) for t in ro.tokens]
        group = [problems[i] for i in chosen for _ in range(cfg.group_size)]
        rewards = torch.tensor([float(r) for r in reward_fn(texts, group)] if reward_fn else
                               [reward(t, p) for t, p in zip(texts, group)])
        adv = group_advantages(rewards, cfg.group_size, cfg.normalize_std)
        groups = rewards.view(-1, cfg.group_size)
        zero_var = float((groups.max(dim=1).values == groups.min(dim=1).values).float().mean())
        sample_s = time.perf_counter() - w0
        row = {"step": step, "reward": float(rewards.mean()), "zero_variance": zero_var,
               "truncated": sum(ro.truncated) / len(texts), "length": sum(ro.lengths) / len(texts),
               "rechecks": sum(map(rechecks, texts)) / len(texts), "sample_s": sample_s}
        if zero_var == 1.0:
            flat += 1
            if flat >= cfg.patience:
                result.stopped = (
                    f"stopped at step {step}: for {flat} steps in a row every problem's "
                    f"{cfg.group_size} solutions were all right or all wrong (mean reward "
                    f"{row['reward']:.0%}), so there was no gradient. RL only amplifies what "
                    "sampling already finds: start from a model whose pass@k on these problems "
                    "is above 0 and whose pass@1 is below 1, or change the problems.")
                result.history.append(row)
                raise NothingToLearn(result.stopped)
        else:
            flat = 0
        w1 = time.perf_counter()
        keep = [i for i in range(len(prompts)) if adv[i] != 0]   # zero advantage: no gradient
        n_tokens = sum(len(ro.tokens[i]) for i in keep)
        measure_kl = cfg.kl_coef > 0 or step % cfg.kl_every == 0
        losses, clipped, kls = [], [], []
        old = {}
        model.train()
        for epoch in range(cfg.epochs):
            opt.zero_grad(set_to_none=True)
            for s in range(0, len(keep), cfg.micro_batch):
                part = keep[s:s + cfg.micro_batch]
                P = [prompts[i] for i in part]
                Rs = [ro.tokens[i] for i in part]
                logp, mask = token_logprobs(model, P, Rs)
                if epoch == 0:
                    old[s] = logp.detach()
                a = adv[part].to(device)
                loss = policy_loss(logp, old[s], a, mask, cfg.clip)
                weight = mask.sum() / max(n_tokens, 1)
                total = loss * weight
                if measure_kl and epoch == 0:
                    with torch.no_grad():
                        ref_logp, _ = token_logprobs(ref, P, Rs)
                    kl = _kl_k3(logp, ref_logp, mask)
                    kls.append(kl.item() * weight.item())
                    if cfg.kl_coef > 0:
                        total = total + cfg.kl_coef * kl * weight
                total.backward()
                losses.append(loss.item() * weight.item())
                ratio = (logp.detach() - old[s]).exp()
                clipped.append(float((((ratio - 1).abs() > cfg.clip).float() * mask).sum())
                               / max(n_tokens, 1))
            if keep:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
        model.eval()
        row.update(loss=sum(losses), clipped=sum(clipped) / cfg.epochs,
                   kl=sum(kls) if kls else None, train_s=time.perf_counter() - w1,
                   cpu_s=time.process_time() - t0, tokens=sum(ro.lengths))
        clock += time.perf_counter() - w0
        row["seconds"] = clock
        result.history.append(row)
        if progress:
            progress(row)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            run_eval(step)
        if cfg.seconds is not None and clock >= cfg.seconds:
            if not result.evals or result.evals[-1][0] != step:
                run_eval(step)
            result.stopped = f"the time budget ({cfg.seconds:.0f} s) ran out at step {step}"
            break
    return result
