"""Answers to the RLHF assignment (chapter 9): right ones written two ways (and a few more right
ones in ``MORE_RIGHT``), and wrong ones, each of which must lose its task's points. Used by
tests/test_rlhf_checks.py, tests/test_rule_audit.py and tests/submissions/make_rlhf_submissions.py.

Keys are the grade ids of the answer cells, which are also the function names."""

BRADLEY_TERRY = '''import torch
import torch.nn.functional as F


def bradley_terry_loss(r_chosen, r_rejected):
    return -F.logsigmoid(r_chosen - r_rejected).mean()'''

DPO = '''import torch
import torch.nn.functional as F


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta):
    chosen = policy_chosen_logps - ref_chosen_logps.detach()
    rejected = policy_rejected_logps - ref_rejected_logps.detach()
    return -F.logsigmoid(beta * (chosen - rejected)).mean()'''

SEQUENCE = '''import torch


def sequence_logprob(model, ids, mask):
    logits, _ = model(ids)
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = logp.gather(2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (picked * mask[:, 1:]).sum(dim=1)'''

CORRECT = {"bradley_terry_loss": BRADLEY_TERRY, "dpo_loss": DPO, "sequence_logprob": SEQUENCE}

ALTERNATIVE = {
    # softplus: -log sigmoid(x) = log(1 + exp(-x)) = softplus(-x)
    "bradley_terry_loss": '''import torch.nn.functional as F


def bradley_terry_loss(r_chosen, r_rejected):
    return F.softplus(r_rejected - r_chosen).mean()''',
    # the reference's margin under torch.no_grad(), a stable log-sigmoid written out:
    # log sigmoid(x) = min(x, 0) - log(1 + exp(-|x|))
    "dpo_loss": '''import torch


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta):
    with torch.no_grad():
        ref_margin = ref_chosen_logps - ref_rejected_logps
    x = beta * ((policy_chosen_logps - policy_rejected_logps) - ref_margin)
    log_sigmoid = torch.clamp(x, max=0) - torch.log1p(torch.exp(-x.abs()))
    return -log_sigmoid.mean()''',
    # cross_entropy per token (reduction='none'): minus the log-probability of each target
    "sequence_logprob": '''import torch.nn.functional as F


def sequence_logprob(model, ids, mask):
    logits, _ = model(ids)
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
    return -(nll * mask[:, 1:]).sum(dim=1)''',
}

MORE_RIGHT = {
    # log(1 + exp(-x)) as a logsumexp of (0, -x), summed and divided by the number of pairs
    "bt_logsumexp": ("bradley_terry_loss", '''import torch


def bradley_terry_loss(r_chosen, r_rejected):
    x = r_chosen - r_rejected
    per_pair = torch.logsumexp(torch.stack([torch.zeros_like(x), -x]), dim=0)
    return per_pair.sum() / x.numel()'''),
    # the stable form with a clamp, in float64
    "bt_float64": ("bradley_terry_loss", '''import torch


def bradley_terry_loss(r_chosen, r_rejected):
    x = (r_chosen - r_rejected).double()
    loss = torch.clamp(-x, min=0) + torch.log1p(torch.exp(-x.abs()))
    return loss.mean().float()'''),
    # DPO is Bradley-Terry on the implicit rewards beta * (log pi - log pi_ref): task 1's function
    "dpo_via_bradley_terry": ("dpo_loss", '''# task 1's loss on the implicit rewards
def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta):
    reward_chosen = beta * (policy_chosen_logps - ref_chosen_logps.detach())
    reward_rejected = beta * (policy_rejected_logps - ref_rejected_logps.detach())
    return bradley_terry_loss(reward_chosen, reward_rejected)'''),
    # the four stacked, the reference's detached once; softplus; a loop-free mean by hand
    "dpo_stacked": ("dpo_loss", '''import torch
import torch.nn.functional as F


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta):
    policy = torch.stack([policy_chosen_logps, policy_rejected_logps])
    ref = torch.stack([ref_chosen_logps, ref_rejected_logps]).detach()
    log_ratio = policy - ref
    margin = log_ratio[0] - log_ratio[1]
    return F.softplus(-beta * margin).sum() / margin.shape[0]'''),
    # log_softmax written out with logsumexp, the masked tokens picked by boolean indexing
    "seq_logsumexp": ("sequence_logprob", '''import torch


def sequence_logprob(model, ids, mask):
    logits = model(ids)[0][:, :-1]
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    picked = torch.gather(logp, -1, ids[:, 1:, None])[..., 0]
    keep = mask[:, 1:].bool()
    return torch.where(keep, picked, torch.zeros_like(picked)).sum(dim=-1)'''),
    # a loop over the rows and positions
    "seq_loop_rows": ("sequence_logprob", '''import torch


def sequence_logprob(model, ids, mask):
    logits, _ = model(ids)
    logp = torch.log_softmax(logits, dim=-1)
    totals = []
    for b in range(ids.shape[0]):
        total = logp.new_zeros(())
        for t in range(1, ids.shape[1]):
            if mask[b, t] > 0:
                total = total + logp[b, t - 1, ids[b, t]]
        totals.append(total)
    return torch.stack(totals)'''),
    # the last token is never read as context: the model reads ids[:, :-1] only; float64
    "seq_cropped_input": ("sequence_logprob", '''import torch


def sequence_logprob(model, ids, mask):
    logits, _ = model(ids[:, :-1])
    logp = logits.double().log_softmax(dim=2)
    targets = ids[:, 1:]
    picked = logp.gather(2, targets.unsqueeze(2)).squeeze(2)
    return (picked * mask[:, 1:].double()).sum(1)'''),
}

WRONG = {
    # -- bradley_terry_loss ------------------------------------------------------------------------
    # chosen and rejected swapped: the rejected answer is trained to win
    "bt_swapped": ("bradley_terry_loss", BRADLEY_TERRY.replace(
        "F.logsigmoid(r_chosen - r_rejected)", "F.logsigmoid(r_rejected - r_chosen)")),
    # log(sigmoid(x)): log(0) = -inf once sigmoid underflows (a margin of -200)
    "bt_unstable": ("bradley_terry_loss", BRADLEY_TERRY.replace(
        "-F.logsigmoid(r_chosen - r_rejected).mean()",
        "-torch.log(torch.sigmoid(r_chosen - r_rejected)).mean()")),
    # the sum over the pairs
    "bt_sum": ("bradley_terry_loss", BRADLEY_TERRY.replace(".mean()", ".sum()")),
    # -- dpo_loss ---------------------------------------------------------------------------------
    # chosen and rejected swapped
    "dpo_swapped": ("dpo_loss", DPO.replace(
        "F.logsigmoid(beta * (chosen - rejected))", "F.logsigmoid(beta * (rejected - chosen))")),
    # beta left out
    "dpo_no_beta": ("dpo_loss", DPO.replace(
        "F.logsigmoid(beta * (chosen - rejected))", "F.logsigmoid(chosen - rejected)")),
    # beta outside the log-sigmoid
    "dpo_beta_outside": ("dpo_loss", DPO.replace(
        "-F.logsigmoid(beta * (chosen - rejected)).mean()",
        "-beta * F.logsigmoid(chosen - rejected).mean()")),
    # the reference's log-probabilities not detached: a gradient reaches them
    "dpo_no_detach": ("dpo_loss", DPO.replace(".detach()", "")),
    # -- sequence_logprob -------------------------------------------------------------------------
    # the mask ignored: the prompt's tokens (and the padding's) summed too
    "seq_mask_ignored": ("sequence_logprob", SEQUENCE.replace(
        "(picked * mask[:, 1:]).sum(dim=1)", "picked.sum(dim=1)")),
    # off by one: the logits at t scored against ids[t]
    "seq_off_by_one": ("sequence_logprob", SEQUENCE.replace(
        "    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)\n"
        "    picked = logp.gather(2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)\n"
        "    return (picked * mask[:, 1:]).sum(dim=1)",
        "    logp = torch.log_softmax(logits.float(), dim=-1)\n"
        "    picked = logp.gather(2, ids.unsqueeze(-1)).squeeze(-1)\n"
        "    return (picked * mask).sum(dim=1)")),
    # the mean over the answer's tokens, not the sum
    "seq_mean": ("sequence_logprob", SEQUENCE.replace(
        "return (picked * mask[:, 1:]).sum(dim=1)",
        "return (picked * mask[:, 1:]).sum(dim=1) / mask[:, 1:].sum(dim=1)")),
    # the mask not shifted: ids[:, 1:] scored where mask[:, :-1] is 1
    "seq_mask_not_shifted": ("sequence_logprob", SEQUENCE.replace(
        "(picked * mask[:, 1:])", "(picked * mask[:, :-1])")),
}

# one wrong answer per rule of the task text that the wrong answers above leave unbroken, each
# breaking that rule only (tests/rule_audit.py names them): name -> (task, source)
RULE_WRONG = {
    # -- bradley_terry_loss ------------------------------------------------------------------------
    # a tensor of shape (1,), not 0-dim
    "bt_shape_one": ("bradley_terry_loss", BRADLEY_TERRY.replace(".mean()",
                                                                 ".mean(dim=0, keepdim=True)")),
    # a number, not a tensor of the graph
    "bt_detached": ("bradley_terry_loss", BRADLEY_TERRY.replace(
        "return -F.logsigmoid(r_chosen - r_rejected).mean()",
        "return torch.tensor(-F.logsigmoid(r_chosen - r_rejected).mean().item())")),
    # both branches of a torch.where: the right value, but a nan gradient where a branch overflows
    "bt_where_nan_grad": ("bradley_terry_loss", '''import torch


def bradley_terry_loss(r_chosen, r_rejected):
    x = r_chosen - r_rejected
    per_pair = torch.where(x >= 0, torch.log1p(torch.exp(-x)), -x + torch.log1p(torch.exp(x)))
    return per_pair.mean()'''),
    # -- dpo_loss ---------------------------------------------------------------------------------
    # log(sigmoid(x))
    "dpo_unstable": ("dpo_loss", DPO.replace(
        "-F.logsigmoid(beta * (chosen - rejected)).mean()",
        "-torch.log(torch.sigmoid(beta * (chosen - rejected))).mean()")),
    # the sum over the pairs
    "dpo_sum": ("dpo_loss", DPO.replace(".mean()", ".sum()")),
    # the margin divided by beta
    "dpo_beta_divides": ("dpo_loss", DPO.replace("beta * (chosen - rejected)",
                                                 "(chosen - rejected) / beta")),
    # the reference left out: the policy's own margin
    "dpo_no_reference": ("dpo_loss", DPO.replace(
        "-F.logsigmoid(beta * (chosen - rejected)).mean()",
        "-F.logsigmoid(beta * (policy_chosen_logps - policy_rejected_logps)).mean()")),
    # the arguments read as (policy_chosen, ref_chosen, policy_rejected, ref_rejected): the same
    # value, but the policy's rejected log-probabilities detached and the reference's trained
    "dpo_argument_order": ("dpo_loss", DPO.replace(
        "    chosen = policy_chosen_logps - ref_chosen_logps.detach()\n"
        "    rejected = policy_rejected_logps - ref_rejected_logps.detach()\n",
        "    chosen = policy_chosen_logps - policy_rejected_logps.detach()\n"
        "    rejected = ref_chosen_logps - ref_rejected_logps.detach()\n")),
    # a tensor of shape (1,)
    "dpo_shape_one": ("dpo_loss", DPO.replace(".mean()", ".mean(dim=0, keepdim=True)")),
    # a number, not a tensor of the graph
    "dpo_detached": ("dpo_loss", DPO.replace(
        "return -F.logsigmoid(beta * (chosen - rejected)).mean()",
        "return torch.tensor(-F.logsigmoid(beta * (chosen - rejected)).mean().item())")),
    # -- sequence_logprob -------------------------------------------------------------------------
    # from the answer's first token to the end of the row: the padding counted
    "seq_padding_counted": ("sequence_logprob", SEQUENCE.replace(
        "    return (picked * mask[:, 1:]).sum(dim=1)",
        "    start = mask.argmax(dim=1, keepdim=True)\n"
        "    after = torch.arange(ids.shape[1])[None, :] >= start\n"
        "    return (picked * after[:, 1:]).sum(dim=1)")),
    # torch.roll for the shift: position 0 gets the last position's logits, counted when
    # mask[:, 0] is 1
    "seq_roll_counts_position_0": ("sequence_logprob", SEQUENCE.replace(
        "    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)\n"
        "    picked = logp.gather(2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)\n"
        "    return (picked * mask[:, 1:]).sum(dim=1)",
        "    logp = torch.roll(torch.log_softmax(logits.float(), dim=-1), 1, dims=1)\n"
        "    picked = logp.gather(2, ids.unsqueeze(-1)).squeeze(-1)\n"
        "    return (picked * mask).sum(dim=1)")),
    # the first row's answer span used for every row
    "seq_first_row_span": ("sequence_logprob", SEQUENCE.replace(
        "    return (picked * mask[:, 1:]).sum(dim=1)",
        "    return (picked * mask[:1, 1:]).sum(dim=1)")),
    # shape (B, 1)
    "seq_keeps_dim": ("sequence_logprob", SEQUENCE.replace(".sum(dim=1)",
                                                           ".sum(dim=1, keepdim=True)")),
    # the logits themselves, not log-probabilities
    "seq_logits_not_logprobs": ("sequence_logprob", SEQUENCE.replace(
        "torch.log_softmax(logits[:, :-1].float(), dim=-1)", "logits[:, :-1].float()")),
    # log_softmax over the positions
    "seq_softmax_over_time": ("sequence_logprob", SEQUENCE.replace(
        "torch.log_softmax(logits[:, :-1].float(), dim=-1)",
        "torch.log_softmax(logits[:, :-1].float(), dim=1)")),
    # under torch.no_grad(): the right numbers, but nothing to train
    "seq_no_grad": ("sequence_logprob", SEQUENCE.replace(
        "    logits, _ = model(ids)\n",
        "    with torch.no_grad():\n        logits, _ = model(ids)\n")),
}
