"""Answers to the Finetuning assignment (chapter 6): right ones written two ways (and a few more
right ones in ``MORE_RIGHT``), and wrong ones, each of which must lose its task's points.
Used by tests/test_finetuning_checks.py and tests/submissions/make_finetuning_submissions.py.

Keys are the grade ids of the answer cells, which are also the function names."""

RENDER = '''from course_lib.chat import check_conversation


def render_conversation(conversation, tokenizer):
    check_conversation(conversation)
    start = tokenizer.special_tokens["<|im_start|>"]
    sep = tokenizer.special_tokens["<|im_sep|>"]
    end = tokenizer.special_tokens["<|im_end|>"]
    ids, mask = [], []
    for message in conversation:
        header = [start] + tokenizer.encode_ordinary(message["role"]) + [sep]
        body = tokenizer.encode_ordinary(message["content"]) + [end]
        trained = 1 if message["role"] == "assistant" else 0
        ids += header + body
        mask += [0] * len(header) + [trained] * len(body)
    return ids, mask'''

LOSS = '''import torch


def masked_cross_entropy(logits, targets, mask):
    keep = mask.reshape(-1).bool()
    if not keep.any():
        raise ValueError("the mask is all 0")
    logp = torch.log_softmax(logits.reshape(-1, logits.size(-1)).float(), dim=-1)
    nll = -logp.gather(1, targets.reshape(-1, 1)).squeeze(1)
    return nll[keep].mean()'''

CORRECT = {"render_conversation": RENDER, "masked_cross_entropy": LOSS}

ALTERNATIVE = {
    # the template as a string, encoded with the special tokens allowed; the mask from the
    # lengths of the pieces; its own validation
    "render_conversation": '''def render_conversation(conversation, tokenizer):
    if not isinstance(conversation, list) or not conversation:
        raise ValueError("a conversation is a non-empty list")
    roles = [m.get("role") for m in conversation]
    for i, m in enumerate(conversation):
        if set(m) != {"role", "content"} or m["role"] not in ("system", "user", "assistant"):
            raise ValueError(f"message {i} is not a message")
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise ValueError(f"message {i} is empty")
        if any(t in m["content"] for t in tokenizer.special_tokens):
            raise ValueError(f"message {i} holds a special token")
    if "system" in roles[1:]:
        raise ValueError("a system message after the first")
    turns = [r for r in roles if r != "system"]
    if not turns or turns != ["user", "assistant"] * (len(turns) // 2) or len(turns) % 2:
        raise ValueError("user and assistant take turns, user first, assistant last")
    ids, mask = [], []
    for m in conversation:
        head = tokenizer.encode(f"<|im_start|>{m['role']}<|im_sep|>", allowed_special="all")
        body = tokenizer.encode(m["content"] + "<|im_end|>", allowed_special="all")
        ids.extend(head)
        ids.extend(body)
        mask.extend([0] * len(head))
        mask.extend([int(m["role"] == "assistant")] * len(body))
    return ids, mask''',
    # F.cross_entropy with the unmasked targets ignored
    "masked_cross_entropy": '''import torch
import torch.nn.functional as F


def masked_cross_entropy(logits, targets, mask):
    if int(mask.sum()) == 0:
        raise ValueError("no position to train on")
    ignored = targets.masked_fill(mask == 0, -100)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ignored.reshape(-1),
                           ignore_index=-100)''',
}

MORE_RIGHT = {
    # returns tensors; the ids found by name with encode(allowed_special=...)
    "render_returns_tensors": ("render_conversation", '''import torch
from course_lib.chat import check_conversation


def render_conversation(conversation, tokenizer):
    check_conversation(conversation)
    pieces = []
    for m in conversation:
        special = lambda t: tokenizer.encode(t, allowed_special={t})
        pieces.append((special("<|im_start|>") + tokenizer.encode_ordinary(m["role"])
                       + special("<|im_sep|>"), 0))
        pieces.append((tokenizer.encode_ordinary(m["content"]) + special("<|im_end|>"),
                       int(m["role"] == "assistant")))
    ids = torch.tensor([i for p, _ in pieces for i in p])
    mask = torch.tensor([w for p, w in pieces for _ in p])
    return ids, mask'''),
    # the masked sum over the count, with a hand-written stable log-softmax
    "loss_by_hand": ("masked_cross_entropy", '''import torch


def masked_cross_entropy(logits, targets, mask):
    m = mask.to(torch.float32)
    if m.sum() == 0:
        raise ValueError("nothing to learn from")
    top = logits.max(dim=-1, keepdim=True).values
    lse = (logits - top).exp().sum(dim=-1).log() + top.squeeze(-1)
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return ((lse - picked) * m).sum() / m.sum()'''),
}

WRONG = {
    # -- render_conversation ----------------------------------------------------------------
    # the user's words are trained too (every message but the system's)
    "mask_covers_user": ("render_conversation", RENDER.replace(
        'trained = 1 if message["role"] == "assistant" else 0',
        'trained = 1 if message["role"] != "system" else 0')),
    # the mask already shifted to the targets (mask[i] for ids[i + 1])
    "mask_shifted": ("render_conversation", RENDER.replace(
        "    return ids, mask", "    return ids, mask[1:] + [0]")),
    # the assistant's <|im_end|> not trained: the model never learns to stop
    "end_token_not_in_mask": ("render_conversation", RENDER.replace(
        "mask += [0] * len(header) + [trained] * len(body)",
        "mask += [0] * len(header) + [trained] * (len(body) - 1) + [0]")),
    # <|im_start|>assistant<|im_sep|> trained as well
    "header_in_mask": ("render_conversation", RENDER.replace(
        "mask += [0] * len(header) + [trained] * len(body)",
        "mask += [trained] * len(header) + [trained] * len(body)")),
    # the system message trained (every message but the user's)
    "system_in_mask": ("render_conversation", RENDER.replace(
        'trained = 1 if message["role"] == "assistant" else 0',
        'trained = 1 if message["role"] != "user" else 0')),
    # only the last answer trained
    "only_last_answer": ("render_conversation", RENDER.replace(
        'trained = 1 if message["role"] == "assistant" else 0',
        "trained = 1 if message is conversation[-1] else 0")),
    # no <|im_sep|> between the role and the content
    "separator_missing": ("render_conversation", RENDER.replace(
        'header = [start] + tokenizer.encode_ordinary(message["role"]) + [sep]',
        'header = [start] + tokenizer.encode_ordinary(message["role"])')),
    # the special tokens written as text and encoded as ordinary text (many tokens, not one)
    "special_tokens_as_text": ("render_conversation", RENDER.replace(
        'header = [start] + tokenizer.encode_ordinary(message["role"]) + [sep]',
        'header = tokenizer.encode_ordinary("<|im_start|>" + message["role"] + "<|im_sep|>")')),
    # ChatML's habit: a newline after the role (another template than the course's)
    "newline_after_role": ("render_conversation", RENDER.replace(
        'tokenizer.encode_ordinary(message["role"])',
        'tokenizer.encode_ordinary(message["role"] + "\\n")')),
    # no validation: a malformed conversation is rendered anyway
    "no_validation": ("render_conversation", RENDER.replace(
        "    check_conversation(conversation)\n", "")),
    # -- masked_cross_entropy -----------------------------------------------------------------
    # the mean over every position: the mask is ignored
    "loss_ignores_mask": ("masked_cross_entropy", LOSS.replace(
        "return nll[keep].mean()", "return nll.mean()")),
    # the masked sum divided by the number of all positions
    "loss_divides_by_all": ("masked_cross_entropy", LOSS.replace(
        "return nll[keep].mean()", "return nll[keep].sum() / nll.numel()")),
    # exp without the max subtracted: overflows on large logits
    "loss_unstable_softmax": ("masked_cross_entropy", LOSS.replace(
        "logp = torch.log_softmax(logits.reshape(-1, logits.size(-1)).float(), dim=-1)",
        "flat = logits.reshape(-1, logits.size(-1)).float()\n"
        "    logp = (flat.exp() / flat.exp().sum(dim=-1, keepdim=True)).log()")),
    # the mean of each sequence's mean
    "loss_per_sequence_mean": ("masked_cross_entropy", '''import torch


def masked_cross_entropy(logits, targets, mask):
    if not mask.bool().any():
        raise ValueError("the mask is all 0")
    logp = torch.log_softmax(logits.float(), dim=-1)
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    m = mask.float()
    if nll.dim() == 1:
        return (nll * m).sum() / m.sum()
    rows = m.sum(-1) > 0
    return ((nll * m).sum(-1)[rows] / m.sum(-1)[rows]).mean()'''),
    # the loss as a Python number in a new tensor: right value, no gradient
    "loss_detached": ("masked_cross_entropy", LOSS.replace(
        "return nll[keep].mean()", "return torch.tensor(nll[keep].mean().item())")),
    # no check for an empty mask: nan instead of ValueError
    "loss_empty_mask_nan": ("masked_cross_entropy", LOSS.replace(
        '    if not keep.any():\n        raise ValueError("the mask is all 0")\n', "")),
}

# one wrong answer per rule of the task text that the wrong answers above leave unbroken, each
# breaking that rule only (tests/rule_audit.py names them): name -> (task, source)
RULE_WRONG = {
    # role and content encoded as one text: tokens can merge across the boundary
    "role_and_content_one_text": ("render_conversation", RENDER.replace(
        '''        header = [start] + tokenizer.encode_ordinary(message["role"]) + [sep]
        body = tokenizer.encode_ordinary(message["content"]) + [end]''',
        '''        both = tokenizer.encode_ordinary(message["role"] + " " + message["content"])
        n = len(tokenizer.encode_ordinary(message["role"]))
        header = [start] + both[:n] + [sep]
        body = both[n:] + [end]''')),
    # logits (B, T, V) only: a flat (N, V) batch fails
    "loss_needs_3d": ("masked_cross_entropy", LOSS.replace(
        "    keep = mask.reshape(-1).bool()\n",
        "    B, T, V = logits.shape\n    keep = mask.reshape(-1).bool()\n")),
    # a 0/1 long mask used as an index: picks positions 0 and 1 instead of the masked ones
    "loss_long_mask_as_index": ("masked_cross_entropy", LOSS.replace(
        "    keep = mask.reshape(-1).bool()\n", "    keep = mask.reshape(-1)\n")),
}

for _name, (_task, _src) in RULE_WRONG.items():
    assert _src != CORRECT[_task], f"{_name}: the replacement did not apply"
