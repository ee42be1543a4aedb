"""Answers to the Pretraining assignment (chapter 4): right ones written two ways (and a few
more right ones in ``MORE_RIGHT``), and wrong ones, each of which must lose its task's points.
Used by tests/test_pretraining_checks.py and tests/submissions/make_pretraining_submissions.py.

Keys are the grade ids of the answer cells, which are also the function names."""

CROSS_ENTROPY = '''import torch

def cross_entropy(logits, targets, ignore_index=-100):
    logits = logits.reshape(-1, logits.size(-1)).float()
    targets = targets.reshape(-1)
    keep = targets != ignore_index
    logits, targets = logits[keep], targets[keep]
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    log_probs = shifted - shifted.exp().sum(dim=-1, keepdim=True).log()
    return -log_probs.gather(1, targets[:, None]).mean()'''

LR_AT = '''import math

def lr_at(step, max_lr, min_lr, warmup_steps, total_steps):
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))'''

ACCUMULATE = '''def accumulate_gradients(model, batches):
    total = 0.0
    for x, y in batches:
        _, loss = model(x, y)
        (loss / len(batches)).backward()
        total += loss.item()
    return total / len(batches)'''

FLOPS = '''def flops_per_token(n_params, n_layer, d_model, seq_len):
    return 6 * n_params + 12 * n_layer * seq_len * d_model'''

MFU = '''def mfu(tokens_per_s, flops_per_token, peak_flops):
    return tokens_per_s * flops_per_token / peak_flops'''

CORRECT = {"cross_entropy": CROSS_ENTROPY, "lr_at": LR_AT, "accumulate_gradients": ACCUMULATE,
           "flops_per_token": FLOPS, "mfu": MFU}

ALTERNATIVE = {
    # logsumexp, a mask times the per-position loss, in float64
    "cross_entropy": '''import torch

def cross_entropy(logits, targets, ignore_index=-100):
    V = logits.shape[-1]
    x = logits.double().view(-1, V)
    t = targets.view(-1)
    mask = (t != ignore_index).double()
    safe = torch.where(t == ignore_index, torch.zeros_like(t), t)
    nll = torch.logsumexp(x, dim=1) - x[torch.arange(len(t)), safe]
    return (nll * mask).sum() / mask.sum()''',
    # the warmup as a fraction clipped at 1, the cosine as a weight between the two rates
    "lr_at": '''import math

def lr_at(step, max_lr, min_lr, warmup_steps, total_steps):
    if warmup_steps > 0 and step < warmup_steps:
        return max_lr * min(1.0, (step + 1) / warmup_steps)
    decay_steps = total_steps - warmup_steps
    t = min(max(step - warmup_steps, 0), decay_steps) / decay_steps
    w = 0.5 + 0.5 * math.cos(math.pi * t)
    return w * max_lr + (1 - w) * min_lr''',
    # the micro-batches' losses summed into one graph, one backward
    "accumulate_gradients": '''def accumulate_gradients(model, batches):
    batches = list(batches)
    losses = [model(x, y)[1] for x, y in batches]
    loss = sum(losses) / len(losses)
    loss.backward()
    return loss.item()''',
    "flops_per_token": '''def flops_per_token(n_params, n_layer, d_model, seq_len):
    forward = 2 * n_params + 2 * n_layer * (2 * seq_len * d_model)  # matmuls + scores and values
    return 3 * forward  # backward costs twice the forward''',
    "mfu": '''def mfu(tokens_per_s, flops_per_token, peak_flops):
    achieved = flops_per_token * tokens_per_s  # FLOPs per second
    return achieved / peak_flops''',
}

# more right answers, each checked alone: (task, source)
MORE_RIGHT = {
    "ce_log_softmax": ("cross_entropy", '''import torch.nn.functional as F

def cross_entropy(logits, targets, ignore_index=-100):
    lp = F.log_softmax(logits.reshape(-1, logits.shape[-1]), dim=-1)
    t = targets.reshape(-1)
    keep = t != ignore_index
    return -lp[keep].gather(1, t[keep].unsqueeze(1)).squeeze(1).mean()'''),
    "ce_library": ("cross_entropy", '''import torch.nn.functional as F

def cross_entropy(logits, targets, ignore_index=-100):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=ignore_index)'''),
    "ce_loop": ("cross_entropy", '''import math
import torch

def cross_entropy(logits, targets, ignore_index=-100):
    rows = logits.reshape(-1, logits.shape[-1]).tolist()
    total, n = 0.0, 0
    for row, t in zip(rows, targets.reshape(-1).tolist()):
        if t == ignore_index:
            continue
        m = max(row)
        total += m + math.log(sum(math.exp(v - m) for v in row)) - row[t]
        n += 1
    return torch.tensor(total / n)'''),
    "lr_piecewise": ("lr_at", '''import math

def lr_at(step, max_lr, min_lr, warmup_steps, total_steps):
    if step >= total_steps:
        return min_lr
    if step + 1 <= warmup_steps:
        return (step + 1) * (max_lr / warmup_steps)
    frac = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + (max_lr - min_lr) * (math.cos(math.pi * frac) + 1) / 2'''),
    "acc_one_big_batch": ("accumulate_gradients", '''import torch

def accumulate_gradients(model, batches):
    xs, ys = zip(*batches)
    _, loss = model(torch.cat(xs), torch.cat(ys))  # equal micro-batches: the same mean
    loss.backward()
    return loss.detach()'''),
    "acc_scaled_sum": ("accumulate_gradients", '''def accumulate_gradients(model, batches):
    losses = []
    for x, y in batches:
        _, loss = model(x, y)
        losses.append(loss)
    total = 0
    for loss in losses:
        total = total + loss
    (total / len(losses)).backward()
    return total.item() / len(losses)'''),
}

WRONG = {
    # cross_entropy
    "unstable_softmax": ("cross_entropy", '''import torch

def cross_entropy(logits, targets, ignore_index=-100):
    logits = logits.reshape(-1, logits.size(-1))
    targets = targets.reshape(-1)
    keep = targets != ignore_index
    probs = logits.exp() / logits.exp().sum(dim=-1, keepdim=True)
    return -probs[keep].gather(1, targets[keep][:, None]).log().mean()'''),
    "ignore_index_not_honoured": ("cross_entropy", CROSS_ENTROPY.replace(
        "keep = targets != ignore_index", "keep = targets != -100")),
    "mean_over_ignored_too": ("cross_entropy", '''import torch

def cross_entropy(logits, targets, ignore_index=-100):
    logits = logits.reshape(-1, logits.size(-1)).float()
    targets = targets.reshape(-1)
    keep = targets != ignore_index
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    log_probs = shifted - shifted.exp().sum(dim=-1, keepdim=True).log()
    picked = log_probs.gather(1, targets.clamp(min=0)[:, None]).squeeze(1)
    return -(picked * keep).sum() / targets.numel()'''),
    "sum_not_mean": ("cross_entropy", CROSS_ENTROPY.replace(
        "targets[:, None]).mean()", "targets[:, None]).sum()")),
    # lr_at
    "off_by_one_warmup": ("lr_at", LR_AT.replace("max_lr * (step + 1) / warmup_steps",
                                                 "max_lr * step / warmup_steps")),
    "never_reaches_min_lr": ("lr_at", '''import math

def lr_at(step, max_lr, min_lr, warmup_steps, total_steps):
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / total_steps  # the cosine stretched past total_steps
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))'''),
    "rises_after_total_steps": ("lr_at", LR_AT.replace(
        "    if step >= total_steps:\n        return min_lr\n", "")),
    "decays_to_zero": ("lr_at", LR_AT.replace(
        "return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))",
        "return 0.5 * max_lr * (1 + math.cos(math.pi * progress))")),
    "no_warmup_guard": ("lr_at", LR_AT.replace(
        "    if step < warmup_steps:\n        return max_lr * (step + 1) / warmup_steps\n",
        "    if (step + 1) / warmup_steps <= 1:\n        return max_lr * (step + 1) / warmup_steps\n")),
    # accumulate_gradients
    "loss_not_divided": ("accumulate_gradients", ACCUMULATE.replace(
        "(loss / len(batches)).backward()", "loss.backward()")),
    "zero_grad_between": ("accumulate_gradients", ACCUMULATE.replace(
        "        _, loss = model(x, y)\n",
        "        model.zero_grad()\n        _, loss = model(x, y)\n")),
    "returns_sum_of_losses": ("accumulate_gradients", ACCUMULATE.replace(
        "return total / len(batches)", "return total")),
    "no_backward": ("accumulate_gradients", '''def accumulate_gradients(model, batches):
    losses = [model(x, y)[1].item() for x, y in batches]
    return sum(losses) / len(losses)'''),
    # flops_per_token
    "flops_6n_only": ("flops_per_token", '''def flops_per_token(n_params, n_layer, d_model, seq_len):
    return 6 * n_params'''),
    "flops_attention_6": ("flops_per_token", FLOPS.replace("12 * n_layer", "6 * n_layer")),
    # mfu
    "mfu_upside_down": ("mfu", '''def mfu(tokens_per_s, flops_per_token, peak_flops):
    return peak_flops / (tokens_per_s * flops_per_token)'''),
    "mfu_percent": ("mfu", MFU.replace("return tokens_per_s", "return 100 * tokens_per_s")),
}

for _name, (_task, _src) in WRONG.items():
    assert _src != CORRECT[_task], f"{_name}: the replacement did not apply"

# one wrong answer per rule of the task text that the wrong answers above leave unbroken, each
# breaking that rule only (tests/rule_audit.py names them): name -> (task, source)
RULE_WRONG = {
    "ce_returns_float": ("cross_entropy", CROSS_ENTROPY.replace(
        "targets[:, None]).mean()", "targets[:, None]).mean().item()")),
    "ce_returns_shape_1": ("cross_entropy", CROSS_ENTROPY.replace(
        "targets[:, None]).mean()", "targets[:, None]).mean(0)")),
    # assumes a batch axis: logits (V,) with a 0-d target fails
    "ce_needs_a_batch_axis": ("cross_entropy", CROSS_ENTROPY.replace(
        "logits = logits.reshape(-1, logits.size(-1)).float()\n    targets = targets.reshape(-1)",
        "logits = logits.flatten(0, -2).float()\n    targets = targets.flatten()")),
    "lr_returns_tensor": ("lr_at", LR_AT.replace("import math", "import math\nimport torch").replace(
        "(1 + math.cos(math.pi * progress))",
        "(1 + torch.cos(torch.tensor(math.pi * progress, dtype=torch.float64)))")),
}

for _name, (_task, _src) in RULE_WRONG.items():
    assert _src != CORRECT[_task], f"{_name}: the replacement did not apply"
