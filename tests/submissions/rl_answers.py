"""Answers to the Reinforcement learning assignment (chapter 8): right ones written two ways (and a
few more right ones in ``MORE_RIGHT``), and wrong ones, each of which must lose its task's points.
Used by tests/test_rl_checks.py, tests/test_rule_audit.py and
tests/submissions/make_rl_submissions.py.

Keys are the grade ids of the answer cells, which are also the function names."""

EXTRACT = r'''import re

STOPS = ("<|im_start|>", "<|im_sep|>", "<|im_end|>", "<|endoftext|>")


def extract_answer(text):
    for stop in STOPS:
        text = text.split(stop)[0]
    last = text.rstrip().split("\n")[-1].strip()
    m = re.fullmatch(r"Answer:[ \t]*(-?\d+)[ \t]*", last)
    return int(m.group(1)) if m else None'''

REWARD = '''def reward(text, problem):
    final = extract_answer(text)
    return 1.0 if final is not None and final == problem.answer else 0.0'''

ADVANTAGES = '''import torch


def group_advantages(rewards, group_size, normalize_std=True, eps=1e-6):
    if group_size < 2 or len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {group_size}")
    groups = rewards.float().view(-1, group_size)
    advantages = groups - groups.mean(dim=1, keepdim=True)
    if normalize_std:
        advantages = advantages / (groups.std(dim=1, keepdim=True) + eps)
    return advantages.reshape(-1)'''

LOSS = '''import torch


def policy_loss(logprobs, old_logprobs, advantages, mask, clip=0.2):
    ratio = torch.exp(logprobs - old_logprobs)
    A = advantages[:, None]
    objective = torch.minimum(ratio * A, ratio.clamp(1 - clip, 1 + clip) * A)
    return -(objective * mask).sum() / mask.sum()'''

CORRECT = {"extract_answer": EXTRACT, "reward": REWARD, "group_advantages": ADVANTAGES,
           "policy_loss": LOSS}

ALTERNATIVE = {
    # string methods instead of a regex, the special tokens found by position
    "extract_answer": '''def extract_answer(text):
    cut = len(text)
    for stop in ["<|im_end|>", "<|endoftext|>", "<|im_start|>", "<|im_sep|>"]:
        at = text.find(stop)
        if at != -1:
            cut = min(cut, at)
    lines = text[:cut].rstrip().splitlines() or [""]
    line = lines[-1].strip()
    if not line.startswith("Answer:"):
        return None
    number = line[len("Answer:"):].strip(" \\t")
    digits = number[1:] if number.startswith("-") else number
    if not digits or not all(c in "0123456789" for c in digits):
        return None
    return int(number)''',
    # its own parse of the last line, not extract_answer; an int for the comparison
    "reward": '''import re


def reward(text, problem):
    for stop in ("<|im_start|>", "<|im_sep|>", "<|im_end|>", "<|endoftext|>"):
        text = text.partition(stop)[0]
    lines = text.rstrip().split("\\n")
    m = re.match(r"\\s*Answer:[ \\t]*(-?[0-9]+)[ \\t]*$", lines[-1])
    return float(bool(m) and int(m.group(1)) == problem.answer)''',
    # group by group in Python, float64, the statistics module's (unbiased) stdev
    "group_advantages": '''import statistics

import torch


def group_advantages(rewards, group_size, normalize_std=True, eps=1e-6):
    values = [float(r) for r in rewards]
    if group_size < 2:
        raise ValueError("a group needs at least 2 solutions")
    if len(values) % group_size != 0:
        raise ValueError("group_size must divide the number of rewards")
    out = []
    for start in range(0, len(values), group_size):
        group = values[start:start + group_size]
        mean = sum(group) / group_size
        scale = statistics.stdev(group) + eps if normalize_std else 1.0
        out += [(r - mean) / scale for r in group]
    return torch.tensor(out, dtype=torch.float64)''',
    # torch.where for the clip, the masked tokens picked by boolean indexing
    "policy_loss": '''import torch


def policy_loss(logprobs, old_logprobs, advantages, mask, clip=0.2):
    keep = mask.bool()
    ratio = (logprobs - old_logprobs).exp()
    A = advantages.unsqueeze(1).expand_as(ratio)
    clipped = torch.where(A >= 0, torch.clamp(ratio, max=1 + clip),
                          torch.clamp(ratio, min=1 - clip))
    objective = torch.where(A >= 0, torch.minimum(ratio, clipped) * A,
                            torch.maximum(ratio, clipped) * A)
    return -objective[keep].mean()''',
}

MORE_RIGHT = {
    # the last Answer line found by a multiline regex over the reply, then checked to be last
    "extract_multiline_regex": ("extract_answer", r'''import re


def extract_answer(text):
    text = re.split(r"<\|(?:im_start|im_sep|im_end|endoftext)\|>", text, maxsplit=1)[0]
    text = text.rstrip()
    found = list(re.finditer(r"^[ \t]*Answer:[ \t]*(-?[0-9]+)[ \t]*$", text, re.MULTILINE))
    if not found or found[-1].end() != len(text):
        return None
    return int(found[-1].group(1))'''),
    # an int reward (1 or 0) is the same number
    "reward_int": ("reward", '''def reward(text, problem):
    return int(extract_answer(text) == problem.answer)'''),
    # torch's own mean and std over a view, the std as a sqrt of the unbiased variance
    "advantages_var": ("group_advantages", '''import torch


def group_advantages(rewards, group_size, normalize_std=True, eps=1e-6):
    n = rewards.numel()
    if group_size < 2 or n % group_size:
        raise ValueError("bad group_size")
    g = rewards.reshape(n // group_size, group_size).to(torch.float64)
    mean = g.sum(dim=1, keepdim=True) / group_size
    out = g - mean
    if normalize_std:
        var = ((g - mean) ** 2).sum(dim=1, keepdim=True) / (group_size - 1)
        out = out / (var.sqrt() + eps)
    return out.flatten().float()'''),
    # the two terms stacked and the smaller taken with torch.min over a dimension; float64
    "loss_stacked_min": ("policy_loss", '''import torch


def policy_loss(logprobs, old_logprobs, advantages, mask, clip=0.2):
    lp = logprobs.double()
    r = torch.exp(lp - old_logprobs.double())
    a = advantages.double().view(-1, 1)
    terms = torch.stack([r * a, torch.clamp(r, 1 - clip, 1 + clip) * a])
    objective = terms.min(dim=0).values
    m = mask.double()
    return (-(objective * m).sum() / m.sum()).float()'''),
}

WRONG = {
    # -- extract_answer ---------------------------------------------------------------------------
    # the first Answer line anywhere in the reply, not the last line
    "extract_first_answer_line": ("extract_answer", r'''import re


def extract_answer(text):
    for stop in ("<|im_start|>", "<|im_sep|>", "<|im_end|>", "<|endoftext|>"):
        text = text.split(stop)[0]
    m = re.search(r"^[ \t]*Answer:[ \t]*(-?\d+)[ \t]*$", text, re.MULTILINE)
    return int(m.group(1)) if m else None'''),
    # anything may follow the number: "Answer: 12." and "Answer: 12 apples" give 12
    "extract_accepts_trailing_text": ("extract_answer", EXTRACT.replace(
        r'm = re.fullmatch(r"Answer:[ \t]*(-?\d+)[ \t]*", last)',
        r'm = re.match(r"Answer:[ \t]*(-?\d+)", last)')),
    # the reply not cut at its first special token
    "extract_no_cut": ("extract_answer", EXTRACT.replace(
        "    for stop in STOPS:\n        text = text.split(stop)[0]\n", "")),
    # -- reward -----------------------------------------------------------------------------------
    # pays for the format: any final answer, right or wrong, earns 1.0
    "reward_pays_format": ("reward", '''def reward(text, problem):
    return 1.0 if extract_answer(text) is not None else 0.0'''),
    # the right number anywhere in the reply earns 1.0
    "reward_number_anywhere": ("reward", '''import re


def reward(text, problem):
    return 1.0 if str(problem.answer) in re.findall(r"-?\\d+", text) else 0.0'''),
    # -- group_advantages -------------------------------------------------------------------------
    # the mean and std of the whole batch instead of the group's
    "advantages_whole_batch": ("group_advantages", ADVANTAGES.replace(
        '''    advantages = groups - groups.mean(dim=1, keepdim=True)
    if normalize_std:
        advantages = advantages / (groups.std(dim=1, keepdim=True) + eps)''',
        '''    advantages = groups - groups.mean()
    if normalize_std:
        advantages = advantages / (groups.std() + eps)''')),
    # the population std (divided by group_size, not group_size - 1)
    "advantages_population_std": ("group_advantages", ADVANTAGES.replace(
        "groups.std(dim=1, keepdim=True)", "groups.std(dim=1, keepdim=True, unbiased=False)")),
    # no eps: an all-equal group gives 0 / 0 = nan
    "advantages_no_eps": ("group_advantages", ADVANTAGES.replace(
        "(groups.std(dim=1, keepdim=True) + eps)", "groups.std(dim=1, keepdim=True)")),
    # -- policy_loss ------------------------------------------------------------------------------
    # the ratio never clipped: objective = r * A
    "loss_unclipped": ("policy_loss", LOSS.replace(
        "torch.minimum(ratio * A, ratio.clamp(1 - clip, 1 + clip) * A)", "ratio * A")),
    # averaged over every position, padding included
    "loss_over_padding": ("policy_loss", LOSS.replace(
        "return -(objective * mask).sum() / mask.sum()",
        "return -(objective * mask).sum() / mask.numel()")),
    # each solution's mean, then the mean over solutions
    "loss_per_sequence_mean": ("policy_loss", LOSS.replace(
        "return -(objective * mask).sum() / mask.sum()",
        "return -((objective * mask).sum(dim=1) / mask.sum(dim=1)).mean()")),
    # the objective itself, not minus it: gradient descent on it makes good solutions rarer
    "loss_sign_flipped": ("policy_loss", LOSS.replace(
        "return -(objective * mask).sum() / mask.sum()",
        "return (objective * mask).sum() / mask.sum()")),
    # the right value, but the gradient of the unclipped objective (also where the clip binds)
    "loss_gradient_through_clip": ("policy_loss", LOSS.replace(
        "    return -(objective * mask).sum() / mask.sum()",
        "    objective = ratio * A + (objective - ratio * A).detach()\n"
        "    return -(objective * mask).sum() / mask.sum()")),
}

# one wrong answer per rule of the task text that the wrong answers above leave unbroken, each
# breaking that rule only (tests/rule_audit.py names them): name -> (task, source)
RULE_WRONG = {
    # -- extract_answer ---------------------------------------------------------------------------
    # the last Answer line wherever it is, even with text after it
    "extract_answer_not_last": ("extract_answer", r'''import re


def extract_answer(text):
    for stop in ("<|im_start|>", "<|im_sep|>", "<|im_end|>", "<|endoftext|>"):
        text = text.split(stop)[0]
    found = re.findall(r"^[ \t]*Answer:[ \t]*(-?\d+)[ \t]*$", text, re.MULTILINE)
    return int(found[-1]) if found else None'''),
    # cut at <|im_end|> only
    "extract_cut_im_end_only": ("extract_answer", EXTRACT.replace(
        'STOPS = ("<|im_start|>", "<|im_sep|>", "<|im_end|>", "<|endoftext|>")',
        'STOPS = ("<|im_end|>",)')),
    # trailing blank lines not ignored: the last line is an empty one
    "extract_trailing_blank_lines": ("extract_answer", EXTRACT.replace(
        'last = text.rstrip().split("\\n")[-1].strip()',
        'last = text.split("\\n")[-1].strip()')),
    # spaces, but no tabs
    "extract_no_tabs": ("extract_answer", EXTRACT.replace(
        r're.fullmatch(r"Answer:[ \t]*(-?\d+)[ \t]*", last)',
        r're.fullmatch(r"Answer: *(-?\d+) *", last.strip(" "))').replace(
        'last = text.rstrip().split("\\n")[-1].strip()',
        'last = text.rstrip().split("\\n")[-1]')),
    # exactly one space after the colon
    "extract_needs_one_space": ("extract_answer", EXTRACT.replace(
        r're.fullmatch(r"Answer:[ \t]*(-?\d+)[ \t]*", last)',
        r're.fullmatch(r"Answer: (-?\d+)[ \t]*", last)')),
    # the line not stripped: spaces before Answer: make it no answer
    "extract_line_not_stripped": ("extract_answer", EXTRACT.replace(
        'last = text.rstrip().split("\\n")[-1].strip()',
        'last = text.rstrip().split("\\n")[-1]')),
    # no minus sign
    "extract_no_negative": ("extract_answer", EXTRACT.replace(r"(-?\d+)", r"(\d+)")),
    # commas dropped: "Answer: 1,234" gives 1234
    "extract_drops_commas": ("extract_answer", EXTRACT.replace(
        'last = text.rstrip().split("\\n")[-1].strip()',
        'last = text.rstrip().split("\\n")[-1].strip().replace(",", "")')),
    # int() of what follows the colon: accepts "+12" (and "1_000")
    "extract_int_of_rest": ("extract_answer", '''def extract_answer(text):
    for stop in ("<|im_start|>", "<|im_sep|>", "<|im_end|>", "<|endoftext|>"):
        text = text.split(stop)[0]
    last = text.rstrip().split("\\n")[-1].strip()
    if not last.startswith("Answer:"):
        return None
    try:
        return int(last[len("Answer:"):])
    except ValueError:
        return None'''),
    # any case: "answer: 12" gives 12
    "extract_any_case": ("extract_answer", EXTRACT.replace(
        r're.fullmatch(r"Answer:[ \t]*(-?\d+)[ \t]*", last)',
        r're.fullmatch(r"Answer:[ \t]*(-?\d+)[ \t]*", last, re.IGNORECASE)')),
    # text before "Answer:" on the last line allowed
    "extract_text_before": ("extract_answer", EXTRACT.replace(
        r're.fullmatch(r"Answer:[ \t]*(-?\d+)[ \t]*", last)',
        r're.search(r"Answer:[ \t]*(-?\d+)[ \t]*$", last)')),
    # the number as a string
    "extract_returns_string": ("extract_answer", EXTRACT.replace(
        "return int(m.group(1)) if m else None", "return m.group(1) if m else None")),
    # -- reward -----------------------------------------------------------------------------------
    # half a point for a formatted wrong answer
    "reward_format_bonus": ("reward", '''def reward(text, problem):
    final = extract_answer(text)
    if final is None:
        return 0.0
    return 1.0 if final == problem.answer else 0.5'''),
    # 1.0 when any Answer line holds the right number: several candidates, one paid
    "reward_any_answer_line": ("reward", '''import re


def reward(text, problem):
    text = text.split("<|im_end|>")[0].split("<|endoftext|>")[0]
    found = re.findall(r"^[ \\t]*Answer:[ \\t]*(-?\\d+)[ \\t]*$", text, re.MULTILINE)
    return 1.0 if str(problem.answer) in found else 0.0'''),
    # `if final and ...`: the answer 0 never pays
    "reward_zero_is_no_answer": ("reward", '''def reward(text, problem):
    final = extract_answer(text)
    return 1.0 if final and final == problem.answer else 0.0'''),
    # a bool instead of the float
    "reward_returns_bool": ("reward", '''def reward(text, problem):
    return extract_answer(text) == problem.answer'''),
    # -- group_advantages -------------------------------------------------------------------------
    # the group's mean, but the std of the whole batch
    "advantages_batch_std": ("group_advantages", ADVANTAGES.replace(
        "(groups.std(dim=1, keepdim=True) + eps)", "(groups.std() + eps)")),
    # eps inside the square root: sqrt(var + eps)
    "advantages_eps_in_sqrt": ("group_advantages", ADVANTAGES.replace(
        "(groups.std(dim=1, keepdim=True) + eps)",
        "(groups.var(dim=1, keepdim=True) + eps).sqrt()")),
    # eps only where the std is 0 (no nan), never added
    "advantages_eps_only_at_zero": ("group_advantages", ADVANTAGES.replace(
        "(groups.std(dim=1, keepdim=True) + eps)",
        "torch.where(groups.std(dim=1, keepdim=True) > 0, groups.std(dim=1, keepdim=True), "
        "torch.tensor(1.0))")),
    # always divided by the std
    "advantages_ignore_normalize_std": ("group_advantages", ADVANTAGES.replace(
        "    if normalize_std:\n        advantages = advantages /",
        "    if True:\n        advantages = advantages /")),
    # normalize_std=False by default
    "advantages_default_no_std": ("group_advantages", ADVANTAGES.replace(
        "normalize_std=True", "normalize_std=False")),
    # groups taken every N // group_size entries
    "advantages_strided_groups": ("group_advantages", ADVANTAGES.replace(
        '''    groups = rewards.float().view(-1, group_size)
    advantages = groups - groups.mean(dim=1, keepdim=True)
    if normalize_std:
        advantages = advantages / (groups.std(dim=1, keepdim=True) + eps)
    return advantages.reshape(-1)''',
        '''    groups = rewards.float().view(group_size, -1)
    advantages = groups - groups.mean(dim=0, keepdim=True)
    if normalize_std:
        advantages = advantages / (groups.std(dim=0, keepdim=True) + eps)
    return advantages.reshape(-1)''')),
    # a group of one allowed (its std is nan)
    "advantages_group_of_one": ("group_advantages", ADVANTAGES.replace(
        "if group_size < 2 or len(rewards) % group_size:",
        "if group_size < 1 or len(rewards) % group_size:")),
    # no check that group_size divides the rewards: view raises a RuntimeError
    "advantages_no_divide_check": ("group_advantages", ADVANTAGES.replace(
        "if group_size < 2 or len(rewards) % group_size:", "if group_size < 2:")),
    # the std of 0/1 rewards from the share of 1s, sqrt(p (1 - p) n / (n - 1)): wrong for any
    # other rewards
    "advantages_bernoulli_std": ("group_advantages", ADVANTAGES.replace(
        "(groups.std(dim=1, keepdim=True) + eps)",
        "((groups.mean(dim=1, keepdim=True) * (1 - groups.mean(dim=1, keepdim=True)) * "
        "group_size / (group_size - 1)).sqrt() + eps)")),
    # the advantages as (number of groups, group_size)
    "advantages_grouped_shape": ("group_advantages", ADVANTAGES.replace(
        "    return advantages.reshape(-1)", "    return advantages")),
    # -- policy_loss ------------------------------------------------------------------------------
    # max instead of min
    "loss_max_not_min": ("policy_loss", LOSS.replace("torch.minimum(", "torch.maximum(")),
    # clipped at 1 + clip only
    "loss_clip_upper_only": ("policy_loss", LOSS.replace(
        "ratio.clamp(1 - clip, 1 + clip)", "ratio.clamp(max=1 + clip)")),
    # clipped at 1 - clip only
    "loss_clip_lower_only": ("policy_loss", LOSS.replace(
        "ratio.clamp(1 - clip, 1 + clip)", "ratio.clamp(min=1 - clip)")),
    # only the clipped term, no min
    "loss_clipped_term_only": ("policy_loss", LOSS.replace(
        "torch.minimum(ratio * A, ratio.clamp(1 - clip, 1 + clip) * A)",
        "ratio.clamp(1 - clip, 1 + clip) * A")),
    # the advantage clipped instead of the ratio
    "loss_clips_advantage": ("policy_loss", LOSS.replace(
        "ratio.clamp(1 - clip, 1 + clip) * A", "ratio * A.clamp(1 - clip, 1 + clip)")),
    # the mask ignored: the mean over every position
    "loss_ignores_mask": ("policy_loss", LOSS.replace(
        "return -(objective * mask).sum() / mask.sum()", "return -objective.mean()")),
    # the sum, not the mean
    "loss_sum": ("policy_loss", LOSS.replace(
        "return -(objective * mask).sum() / mask.sum()", "return -(objective * mask).sum()")),
    # clip 0.2 whatever clip is
    "loss_clip_fixed": ("policy_loss", LOSS.replace(
        "ratio.clamp(1 - clip, 1 + clip)", "ratio.clamp(0.8, 1.2)")),
    # a default clip of 0.1
    "loss_default_clip": ("policy_loss", LOSS.replace("clip=0.2", "clip=0.1")),
    # the ratio upside down
    "loss_inverted_ratio": ("policy_loss", LOSS.replace(
        "torch.exp(logprobs - old_logprobs)", "torch.exp(old_logprobs - logprobs)")),
    # the advantages broadcast along the tokens' axis (right only when B != T raises anyway)
    "loss_advantages_per_column": ("policy_loss", LOSS.replace(
        "A = advantages[:, None]", "A = advantages")),
    # a number, not a tensor of the graph
    "loss_detached": ("policy_loss", LOSS.replace(
        "return -(objective * mask).sum() / mask.sum()",
        "return torch.tensor((-(objective * mask).sum() / mask.sum()).item())")),
}
