"""Checks for the RLHF assignment (chapter 9).

The student writes the two preference losses and the log-probability DPO trains, which
``course_lib.rlhf`` holds:

- ``bradley_terry_loss(r_chosen, r_rejected)``: the mean over the pairs of
  ``-log sigmoid(r_chosen - r_rejected)``, a 0-dim tensor, finite for any margin;
- ``dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
  beta)``: the mean over the pairs of ``-log sigmoid(beta * ((pc - rc) - (pr - rr)))``, a 0-dim
  tensor, finite for any margin; the reference's log-probabilities get no gradient (detached);
  it may call the student's ``bradley_terry_loss``, which is the course's while it is checked
  (``Task.substitute``), so a wrong task 1 costs its own task only;
- ``sequence_logprob(model, ids, mask)``: ``(B,)``, the sum over ``t >= 1`` of
  ``mask[:, t] * log p(ids[:, t] | ids[:, :t])`` under the course GPT; gradients reach the model.

Nothing but data crosses to the grader, so each task goes through a locked cell: ``on_scores``
and ``on_logps`` call the loss on copies of its inputs that all require a gradient (the
reference's log-probabilities too), run ``backward`` and return the loss and every input's
``.grad``; ``on_gpt`` hands a small seeded GPT (``GPT(GPTConfig(**config))``, weights drawn with
``torch.manual_seed(seed)``, the token embedding scaled so that its predictions are far from
uniform) to ``sequence_logprob``, runs ``backward`` on the sum of what it returned and returns it
with every parameter's ``.grad``. A loss is judged by its value and by its gradients: none may
reach the reference.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from course_lib import rlhf as _rlhf
from course_lib.grading.checks import (Assignment, Task, as_args, backward_sum, close_tensor,
                                      locked_result_problem, loss_tensor_problem, one_thread,
                                      seeded_gpt)

REFERENCES = ("course_lib.rlhf", "course_lib.rl", "course_lib.grading.rlhf")
DEPENDS = ("course_lib.model",)  # sequence_logprob's inputs are GPTs built with it
DPO_SUBSTITUTE = {"bradley_terry_loss": "course_lib.rlhf:bradley_terry_loss"}
LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-6
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-7
LOGP_RTOL, LOGP_ATOL = 1e-4, 1e-4
PARAM_RTOL, PARAM_ATOL = 1e-3, 1e-5
EMBEDDING_SCALE = 40.0  # the checks' GPT: token embeddings of std 0.8, not 0.02 (opinions)


# -- the locked cells' helpers --------------------------------------------------------------------


def on_scores(bradley_terry_loss, r_chosen, r_rejected):
    """Call ``bradley_terry_loss(r_chosen, r_rejected)`` on copies of the scores that require a
    gradient and run ``backward`` on the result; ``{"loss": the result (detached), "grads": [the
    gradient of r_chosen, of r_rejected] (None where none reached it)}``."""
    leaves = [x.detach().clone().requires_grad_(True) for x in (r_chosen, r_rejected)]
    loss = backward_sum(bradley_terry_loss(*leaves))
    return {"loss": loss, "grads": [x.grad for x in leaves]}


def on_logps(dpo_loss, policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    """Call ``dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)`` on copies
    of the four log-probabilities that all require a gradient (the reference's too) and run
    ``backward`` on the result; ``{"loss": the result (detached), "grads": the four gradients, in
    the order of the arguments (None where none reached it)}``."""
    leaves = [x.detach().clone().requires_grad_(True)
              for x in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)]
    loss = backward_sum(dpo_loss(*leaves, float(beta)))
    return {"loss": loss, "grads": [x.grad for x in leaves]}


def checks_gpt(config, seed):
    """The checks' GPT: ``GPT(GPTConfig(**config))`` with weights drawn after
    ``torch.manual_seed(seed)`` and the token embedding (tied to the output layer) scaled by
    ``EMBEDDING_SCALE``, so that its next-token probabilities are far from uniform."""
    model = seeded_gpt(config, seed)
    with torch.no_grad():
        model.transformer.wte.weight.mul_(EMBEDDING_SCALE)
    return model


def on_gpt(sequence_logprob, config, seed, ids, mask):
    """Call ``sequence_logprob(model, ids, mask)`` on the checks' GPT (``checks_gpt(config,
    seed)``) and run ``backward`` on the sum of the result; ``{"logprobs": the result (detached),
    "grads": {parameter name: .grad or None}}``."""
    with one_thread():
        model = checks_gpt(config, seed)
        model.zero_grad(set_to_none=True)
        out = backward_sum(sequence_logprob(model, ids.clone(), mask.clone()))
    return {"logprobs": out, "grads": {name: None if p.grad is None else p.grad.detach().clone()
                                       for name, p in model.named_parameters()}}


def reference_bradley_terry_with_grad(r_chosen, r_rejected):
    return on_scores(_rlhf.bradley_terry_loss, r_chosen, r_rejected)


def reference_dpo_loss_with_grad(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    return on_logps(_rlhf.dpo_loss, policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)


def reference_sequence_logprob_on_gpt(config, seed, ids, mask):
    return on_gpt(_rlhf.sequence_logprob, config, seed, ids, mask)


def _notes(guesses, got, want, rtol, atol) -> str:
    """The usual mistakes (``(value, what it says)``) whose value is the student's and not the
    right one, for a message."""
    notes = [says for value, says in guesses
             if value.shape == got.shape and torch.isfinite(value).all()
             and not torch.allclose(value, want, rtol=rtol, atol=atol)
             and torch.allclose(got, value, rtol=rtol, atol=atol)]
    return f" ({'; or: '.join(notes)})" if notes else ""


def _rounded(x: torch.Tensor) -> list:
    return [float(f"{v:.4g}") for v in x.tolist()]


def _loss_problem(loss, want, guesses, unstable) -> str | None:
    """What is wrong with a returned loss's value (not a 0-dim float tensor, not finite, not
    ``want``), or None. ``guesses``: the usual mistakes' values; ``unstable``: the message for a
    loss that is inf or nan."""
    if (m := loss_tensor_problem(loss)):
        return m
    if loss.dim() != 0:
        return (f"returned a tensor of shape {tuple(loss.shape)}: return a 0-dim tensor, shape () "
                "(.mean() of the pairs' losses is one)")
    got, want = loss.double(), want.double()
    if not torch.isfinite(got):
        return f"the loss is {got.item()} instead of {want.item():.6g}: {unstable}"
    if torch.allclose(got, want, rtol=LOSS_RTOL, atol=LOSS_ATOL):
        return None
    return (f"the loss is {got.item():.6g} instead of {want.item():.6g}"
            f"{_notes(guesses, got, want, LOSS_RTOL, LOSS_ATOL)}")


def _grad_problem(grad, want, what, margins) -> str | None:
    """What is wrong with the gradient ``grad`` that ``what`` received (None: none reached it),
    or None when it is ``want``. Where a pair's margin is exactly 0 it need only be finite: the
    stable log-sigmoids built of ``clamp`` and ``abs`` have a kink there, whose gradient autograd
    takes from one side (the loss's value is compared all the same)."""
    if grad is None:
        return (f"the loss is right but no gradient reached {what}: keep the loss a tensor of the "
                "graph (no .item(), .detach(), torch.no_grad() or torch.tensor(...) on the way)")
    if not isinstance(grad, torch.Tensor) or tuple(grad.shape) != tuple(want.shape):
        return f"the gradient of {what} has the wrong shape"
    if not torch.isfinite(grad).all():
        bad = int(torch.nonzero(~torch.isfinite(grad))[0][0])
        return (f"the loss is right but the gradient of {what} holds nan or inf (at pair {bad}): "
                "a step overflows there in the backward pass (torch.where computes both of its "
                "branches, and the gradient of the branch it does not take is nan where that "
                "branch overflows); use F.logsigmoid or F.softplus")
    smooth = margins != 0
    grad, want = grad.double(), torch.where(smooth, want.double(), grad.double())
    if torch.allclose(grad, want, rtol=GRAD_RTOL, atol=GRAD_ATOL):
        return None
    diff = close_tensor(want, grad, rtol=GRAD_RTOL, atol=GRAD_ATOL, what=f"the gradient of {what}")
    return f"the loss is right, but {diff}"


# -- bradley_terry_loss ---------------------------------------------------------------------------


def _scores(chosen, rejected):
    return tuple(torch.tensor(x, dtype=torch.float32) for x in (chosen, rejected))


# (r_chosen, r_rejected) -- the first with a loss the stub (0) misses
_BT_FIXED = [
    _scores([1.5, 0.25, -0.5], [0.5, 0.75, -2.0]),            # margins 1, -0.5, 1.5
    _scores([2.0], [-1.0]),                                   # one pair
    _scores([0.5, 0.5], [0.5, -0.5]),                         # a tie: log 2
    _scores([-1.0, 0.0, -3.5, 4.0], [1.0, 2.5, -0.5, 4.5]),   # the chosen scored lower
    _scores([0.1, -0.2, 0.3, 0.0, 1.2, -0.7], [0.0, 0.4, -0.6, 0.9, 1.0, -0.8]),  # six pairs
    _scores([-100.0, 3.0], [100.0, 1.0]),                     # a margin of -200
    _scores([1000.0, -500.0, 2.0], [0.0, 500.0, 2.5]),        # margins +1000 and -1000
    _scores([30.0, -12.0], [-10.0, 20.0]),                    # margins 40, -32
]


def _bt_cases(seed=0, n_random=8, extra=None):
    g = torch.Generator().manual_seed(seed + 90_000)
    rng = random.Random(seed + 90_000)
    out = []
    for _ in range(n_random):
        B, scale = rng.randrange(1, 9), rng.choice([0.5, 1.0, 3.0, 10.0])
        out.append((torch.randn(B, generator=g) * scale, torch.randn(B, generator=g) * scale))
    return _BT_FIXED + out + [_scores(*c) for c in as_args(extra)]


def _bt_guesses(r_chosen, r_rejected):
    m = r_chosen.double() - r_rejected.double()
    return [
        (-F.logsigmoid(-m).mean(), "chosen and rejected swapped: the margin is r_chosen - "
         "r_rejected, and the loss is small when the chosen answer scores higher"),
        (-F.logsigmoid(m).sum(), "the sum over the pairs: take the mean"),
        (F.logsigmoid(m).mean(), "the sign: the loss is MINUS log sigmoid (a negative "
         "log-likelihood)"),
        (-torch.sigmoid(m).mean(), "sigmoid without the log: the loss is -log sigmoid(margin)"),
    ]


UNSTABLE = ("torch.log(torch.sigmoid(x)) is log(0) = -inf once sigmoid(x) underflows (a margin "
            "of about -100 in float32), and exp(-x) overflows for a large negative x; use "
            "F.logsigmoid(x) (or -F.softplus(-x)), finite for any margin")


def _compare_bt(args, expected, actual):
    r_chosen, r_rejected = args
    if (m := locked_result_problem(actual, ["loss", "grads"], "bradley_terry_with_grad")):
        return m
    margins = r_chosen - r_rejected
    where = f" (margins r_chosen - r_rejected: {_rounded(margins)})"
    if (m := _loss_problem(actual["loss"], expected["loss"], _bt_guesses(r_chosen, r_rejected),
                           UNSTABLE)):
        return m + where
    for grad, want, what in zip(actual["grads"], expected["grads"], ("r_chosen", "r_rejected")):
        if (m := _grad_problem(grad, want, what, margins)):
            return m + where
    return None


# -- dpo_loss -------------------------------------------------------------------------------------


def _logps(pc, pr, rc, rr, beta):
    return (*(torch.tensor(x, dtype=torch.float32) for x in (pc, pr, rc, rr)), float(beta))


# (policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta); values on a grid of 1/16, so
# that every margin is exact in float32 whichever way it is added up
_DPO_FIXED = [
    # the first step: the policy is the reference, every margin 0, the loss log 2
    _logps([-12.5, -30.25], [-14.0, -8.75], [-12.5, -30.25], [-14.0, -8.75], 0.1),
    # the policy moved: margins 2, -3, 1.25
    _logps([-10.0, -22.5, -5.25], [-14.0, -20.0, -9.5], [-11.0, -21.0, -6.0],
           [-13.0, -21.5, -9.0], 0.1),
    # the same at other betas
    _logps([-10.0, -22.5, -5.25], [-14.0, -20.0, -9.5], [-11.0, -21.0, -6.0],
           [-13.0, -21.5, -9.0], 0.5),
    _logps([-10.0, -22.5, -5.25], [-14.0, -20.0, -9.5], [-11.0, -21.0, -6.0],
           [-13.0, -21.5, -9.0], 2.0),
    # the policy prefers the chosen answer by 2, the reference by 7: the margin is -5
    _logps([-10.0], [-12.0], [-8.0], [-15.0], 0.25),
    # four pairs, one of them a tie
    _logps([-3.0, -40.0, -7.5, -18.0], [-5.0, -38.0, -7.5, -16.0],
           [-4.0, -41.0, -7.0, -17.5], [-4.5, -39.5, -8.0, -15.0], 1.0),
    # beta * margin = -400
    _logps([-900.0], [-100.0], [-500.0], [-500.0], 0.5),
    # beta * margin = +1000 and -1500
    _logps([-50.0, -800.0], [-300.0, -50.0], [-300.0, -300.0], [-50.0, -300.0], 2.0),
]


def _grid(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x * 16) / 16


def _dpo_cases(seed=0, n_random=8, extra=None):
    g = torch.Generator().manual_seed(seed + 91_000)
    rng = random.Random(seed + 91_000)
    out = []
    for _ in range(n_random):
        B = rng.randrange(1, 7)
        beta = rng.choice([0.05, 0.1, 0.1, 0.2, 0.5, 1.0])
        ref = _grid(-5 - torch.rand(2, B, generator=g) * 75)
        scale = rng.choice([0.5, 2.0, 8.0])
        pol = _grid(ref + torch.randn(2, B, generator=g) * scale)
        out.append((pol[0], pol[1], ref[0], ref[1], beta))
    return _DPO_FIXED + out + [_logps(*c) for c in as_args(extra)]


def _dpo_guesses(pc, pr, rc, rr, beta):
    pc, pr, rc, rr = (x.double() for x in (pc, pr, rc, rr))
    m = (pc - rc) - (pr - rr)
    return [
        (-F.logsigmoid(-beta * m).mean(), "chosen and rejected swapped: the margin is (pc - rc) "
         "- (pr - rr), and the loss is small when the policy favours the chosen answer more "
         "than the reference does"),
        (-F.logsigmoid(m).mean(), "beta left out: the margin is multiplied by beta inside the "
         "sigmoid"),
        (-beta * F.logsigmoid(m).mean(), "beta outside the log-sigmoid: beta multiplies the "
         "margin inside it, -logsigmoid(beta * margin)"),
        (-F.logsigmoid(m / beta).mean(), "the margin divided by beta: multiply it"),
        (-F.logsigmoid(beta * m).sum(), "the sum over the pairs: take the mean"),
        (F.logsigmoid(beta * m).mean(), "the sign: the loss is MINUS log sigmoid"),
        (-F.logsigmoid(beta * (pc - pr)).mean(), "the reference left out: the margin is the "
         "policy's log-ratio to the reference on the chosen answer minus that on the rejected "
         "one, (pc - rc) - (pr - rr)"),
        (-F.logsigmoid(beta * ((pc - rc) + (pr - rr))).mean(), "a sign inside the margin: "
         "(pc - rc) MINUS (pr - rr)"),
    ]


DPO_NAMES = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps",
             "ref_rejected_logps")


def _compare_dpo(args, expected, actual):
    pc, pr, rc, rr, beta = args
    if (m := locked_result_problem(actual, ["loss", "grads"], "dpo_loss_with_grad")):
        return m
    margins = (pc - rc) - (pr - rr)
    where = f" (beta {beta:g}; beta * margin: {_rounded(beta * margins)})"
    if (m := _loss_problem(actual["loss"], expected["loss"], _dpo_guesses(pc, pr, rc, rr, beta),
                           UNSTABLE)):
        return m + where
    grads = list(actual["grads"])
    for i in (2, 3):  # the reference's: none, or zeros
        if isinstance(grads[i], torch.Tensor) and torch.any(grads[i] != 0):
            return (f"a gradient reached {DPO_NAMES[i]}: the reference is a constant; detach its "
                    f"log-probabilities (.detach()), so that no gradient reaches them{where}")
    for i in (0, 1):
        if (m := _grad_problem(grads[i], expected["grads"][i], DPO_NAMES[i], margins)):
            return m + where
    return None


# -- sequence_logprob -----------------------------------------------------------------------------

_CFG = {"n_layer": 1, "n_head": 2, "n_embd": 8, "block_size": 16, "vocab_size": 13,
        "dropout": 0.0}
_CFG2 = {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 16, "vocab_size": 23,
         "dropout": 0.0}


def _rows(config, seed, ids, mask):
    return (dict(config), int(seed), torch.tensor(ids, dtype=torch.long),
            torch.tensor(mask, dtype=torch.float32))


# (config, seed, ids, mask): prompt 0, answer 1, padding 0
_SEQ_FIXED = [
    # one row: a prompt of 3 tokens, an answer of 4, no padding
    _rows(_CFG, 0, [[3, 7, 1, 4, 9, 2, 5]], [[0, 0, 0, 1, 1, 1, 1]]),
    # rows of different prompt and answer lengths, right-padded (with 12)
    _rows(_CFG, 1, [[5, 8, 2, 2, 6, 12, 12], [1, 3, 3, 7, 4, 12, 12], [9, 0, 11, 6, 6, 2, 8]],
          [[0, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 1, 0, 0], [0, 0, 1, 1, 1, 1, 1]]),
    # padding of the answer's own tokens; a long row of padding after a short answer
    _rows(_CFG, 2, [[4, 10, 3, 3, 3, 3, 3, 3, 3, 3], [2, 5, 7, 1, 8, 6, 9, 0, 10, 4]],
          [[0, 0, 1, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1, 1, 1, 1, 0]]),
    # an answer from position 0 (no prompt): position 0 is never predicted
    _rows(_CFG, 3, [[5, 2, 8, 8, 1], [7, 7, 3, 0, 12]], [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]),
    # another model: two layers, 23 tokens
    _rows(_CFG2, 4, [[20, 1, 14, 3, 22, 9, 9, 17, 0, 0, 0, 0],
                     [6, 6, 6, 6, 6, 18, 2, 11, 5, 13, 21, 7],
                     [15, 4, 19, 8, 1, 0, 0, 0, 0, 0, 0, 0]],
          [[0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1],
           [0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]]),
    # two tokens: the answer is the second
    _rows(_CFG2, 5, [[3, 17]], [[0, 1]]),
]


def _seq_cases(seed=0, n_random=6, extra=None):
    rng = random.Random(seed + 92_000)
    out = []
    for _ in range(n_random):
        config = dict(rng.choice([_CFG, _CFG2]))
        V, B, T = config["vocab_size"], rng.randrange(1, 5), rng.randrange(2, 13)
        pad = rng.randrange(V)
        ids, mask = [], []
        for _ in range(B):
            prompt = rng.choice([0, 1, 1, 2, 3, 4]) if T > 2 else 1
            prompt = min(prompt, T - 1)
            answer = rng.randrange(1, T - prompt + 1)
            n = prompt + answer
            ids.append([rng.randrange(V) for _ in range(n)] + [pad] * (T - n))
            mask.append([0] * prompt + [1] * answer + [0] * (T - n))
        out.append(_rows(config, rng.randrange(1000), ids, mask))
    return _SEQ_FIXED + out + [_rows(*c) for c in as_args(extra)]


@torch.no_grad()
def _seq_guesses(config, seed, ids, mask):
    """What the usual mistakes return (for the messages)."""
    with one_thread():
        logits = checks_gpt(config, seed)(ids)[0].double()
    logp = logits.log_softmax(-1)
    m = mask.double()
    nxt = logp[:, :-1].gather(2, ids[:, 1:, None]).squeeze(2)        # log p(ids[t] | ids[:t])
    same = logp.gather(2, ids[:, :, None]).squeeze(2)                 # logits at t for ids[t]
    raw = logits[:, :-1].gather(2, ids[:, 1:, None]).squeeze(2)
    over_time = logits[:, :-1].log_softmax(1).gather(2, ids[:, 1:, None]).squeeze(2)
    first = m.argmax(1)
    to_end = (torch.arange(m.size(1))[None, :] >= first[:, None]).double()
    wrapped = torch.cat([logp[:, -1:], logp[:, :-1]], 1).gather(2, ids[:, :, None]).squeeze(2)
    return [
        ((nxt * m[:, 1:]).sum(1) / m[:, 1:].sum(1).clamp(min=1), "the mean over the answer's "
         "tokens: the log-probability of a sequence is the SUM of its tokens'"),
        (nxt.sum(1), "every token counted, the prompt's and the padding's too: multiply by the "
         "mask"),
        ((same * m).sum(1), "the logits at position t scored against ids[t]: the logits at t - 1 "
         "predict ids[t] (take logits[:, :-1] against ids[:, 1:])"),
        ((nxt * m[:, :-1]).sum(1), "the mask not shifted: the token ids[:, 1:] is scored where "
         "mask[:, 1:] is 1 (mask[:, :-1] drops the answer's first token and counts the one "
         "after it)"),
        ((nxt * to_end[:, 1:]).sum(1), "the padding after the answer counted: only the tokens "
         "whose mask is 1 count"),
        ((wrapped * m).sum(1), "position 0 counted (torch.roll wraps the last position's "
         "logits round to it): position 0 is never predicted"),
        ((raw * m[:, 1:]).sum(1), "the logits themselves, not log-probabilities: take "
         "log_softmax over the vocabulary first"),
        ((over_time * m[:, 1:]).sum(1), "log_softmax over the positions (dim=1): normalise over "
         "the vocabulary, the last dimension"),
    ]


def _compare_seq(args, expected, actual):
    config, seed, ids, mask = args
    if (m := locked_result_problem(actual, ["logprobs", "grads"], "sequence_logprob_on_gpt")):
        return m
    got, want = actual["logprobs"], expected["logprobs"]
    diff = close_tensor(want, got, rtol=LOGP_RTOL, atol=LOGP_ATOL, what="the result")
    if diff:
        if isinstance(got, torch.Tensor) and got.is_floating_point() and got.shape == want.shape:
            diff += _notes(_seq_guesses(config, seed, ids, mask), got.double(), want.double(),
                           LOGP_RTOL, LOGP_ATOL)
        return f"{diff} (the mask: {mask.int().tolist()})"
    grads = actual["grads"]
    if not isinstance(grads, dict):
        return "not the result of the notebook's locked cell sequence_logprob_on_gpt"
    if all(grads.get(name) is None for name in expected["grads"]):
        return ("the log-probabilities are right but no gradient reached the model: DPO trains "
                "the model through them (no torch.no_grad(), .detach() or .item() on the way)")
    for name, exp in expected["grads"].items():
        if exp is None:
            continue
        diff = close_tensor(exp, grads.get(name), rtol=PARAM_RTOL, atol=PARAM_ATOL,
                            what=f"the gradient of {name}")
        if diff:
            return (f"the log-probabilities are right, but {diff}: is every step of the "
                    "log-softmax part of the graph?")
    return None


TASKS = {
    "bradley_terry_loss": Task(
        "bradley_terry_with_grad", reference_bradley_terry_with_grad, _bt_cases,
        compare_case=_compare_bt,
        hint="return -F.logsigmoid(r_chosen - r_rejected).mean() (import torch.nn.functional as "
             "F): chosen minus rejected, the mean over the pairs, stable for any margin"),
    "dpo_loss": Task(
        "dpo_loss_with_grad", reference_dpo_loss_with_grad, _dpo_cases, compare_case=_compare_dpo,
        substitute=DPO_SUBSTITUTE,
        hint="margin = (policy_chosen_logps - ref_chosen_logps.detach()) - "
             "(policy_rejected_logps - ref_rejected_logps.detach()); return "
             "-F.logsigmoid(beta * margin).mean()"),
    "sequence_logprob": Task(
        "sequence_logprob_on_gpt", reference_sequence_logprob_on_gpt, _seq_cases,
        compare_case=_compare_seq, timeout=20.0,
        hint="logits, _ = model(ids); logp = logits[:, :-1].log_softmax(dim=-1); picked = "
             "logp.gather(2, ids[:, 1:].unsqueeze(-1)).squeeze(-1); return (picked * "
             "mask[:, 1:]).sum(dim=1)"),
}

ASSIGNMENT = Assignment(TASKS, references=REFERENCES, depends=DEPENDS)
globals().update(ASSIGNMENT.checks())  # check_bradley_terry_loss, check_dpo_loss, check_sequence_logprob
