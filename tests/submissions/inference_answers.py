"""Answers to the Inference assignment (chapter 5): right ones written two ways (and a few more
right ones in ``MORE_RIGHT``), and wrong ones, each of which must lose its task's points.
Used by tests/test_inference_checks.py and tests/submissions/make_inference_submissions.py.

Keys are the grade ids of the answer cells, which are also the function names."""

TEMPERATURE = '''import torch

def apply_temperature(logits, t):
    return logits / t'''

TOP_K = '''def top_k_filter(logits, k):
    if k is None or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))'''

TOP_P = '''def top_p_filter(logits, p):
    if p is None or p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs
    drop_sorted = before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))'''

SAMPLE = '''def sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = top_p_filter(top_k_filter(apply_temperature(logits, temperature), top_k), top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]'''

GENERATE = '''from course_lib.model import KVCache

def generate_with_cache(model, ids, max_new_tokens):
    cache = KVCache(model.config.n_layer)
    with torch.no_grad():
        logits, _ = model(ids, cache=cache)
        out = [ids]
        for step in range(max_new_tokens):
            nxt = logits[:, -1].argmax(dim=-1, keepdim=True)
            out.append(nxt)
            if step + 1 < max_new_tokens:
                pos = torch.tensor([ids.size(1) + step])
                logits, _ = model(nxt, cache=cache, pos=pos)
    return torch.cat(out, dim=1)'''

CORRECT = {"apply_temperature": TEMPERATURE, "top_k_filter": TOP_K, "top_p_filter": TOP_P,
           "sample": SAMPLE, "generate_with_cache": GENERATE}

ALTERNATIVE = {
    # a multiplication by 1 / t, in float64
    "apply_temperature": '''import torch

def apply_temperature(logits, t):
    return (logits.double() * (1.0 / t)).float()''',
    # sort, and compare with the k-th value of the sorted row
    "top_k_filter": '''def top_k_filter(logits, k):
    V = logits.shape[-1]
    if k is None or k >= V:
        return logits.clone()
    kth = logits.sort(dim=-1, descending=True).values[..., k - 1:k]
    return torch.where(logits >= kth, logits, torch.full_like(logits, float("-inf")))''',
    # the inclusive cumsum shifted right by one (the way Hugging Face writes it), gather back
    "top_p_filter": '''def top_p_filter(logits, p):
    if p is None or p >= 1:
        return logits
    probs, order = logits.softmax(dim=-1).sort(dim=-1, descending=True)
    remove = probs.cumsum(dim=-1) > p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    inverse = order.argsort(dim=-1)
    remove = remove.gather(-1, inverse)
    out = logits.clone()
    out[remove] = float("-inf")
    return out''',
    # its own inverse-CDF draw with torch.rand, the filters written inline
    "sample": '''def sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.max(dim=-1).indices
    x = logits.float() / temperature
    if top_k is not None and top_k < x.size(-1):
        kth = x.topk(top_k, dim=-1).values[:, -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sx, order = x.sort(dim=-1, descending=True)
        sp = sx.softmax(dim=-1)
        drop = (sp.cumsum(dim=-1) - sp) >= top_p
        x = x.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))
    cdf = x.softmax(dim=-1).cumsum(dim=-1)
    u = torch.rand(x.size(0), 1, generator=generator) * cdf[:, -1:]
    idx = (cdf < u).sum(dim=-1)
    return idx.clamp(max=x.size(-1) - 1)''',
    # the prompt but its last token first; no pos (the model puts it after the cache); a loop
    # over the new tokens that always feeds the newest one
    "generate_with_cache": '''import course_lib.model as M

@torch.no_grad()
def generate_with_cache(model, ids, max_new_tokens):
    cache = M.KVCache(model.config.n_layer)
    if ids.size(1) > 1:
        model(ids[:, :-1], cache=cache)
    last = ids[:, -1:]
    tokens = ids
    for _ in range(max_new_tokens):
        logits, _ = model(last, cache=cache)
        last = logits[:, -1, :].argmax(dim=-1)[:, None]
        tokens = torch.cat([tokens, last], dim=1)
    return tokens''',
}

MORE_RIGHT = {
    "top_k_kthvalue": ("top_k_filter", '''def top_k_filter(logits, k):
    if k is None or k >= logits.shape[-1]:
        return logits
    kth = (-logits).kthvalue(k, dim=-1, keepdim=True).values.neg()
    out = logits.clone()
    out[logits < kth] = float("-inf")
    return out'''),
    "top_p_loop": ("top_p_filter", '''def top_p_filter(logits, p):
    if p is None or p >= 1:
        return logits
    flat = logits.reshape(-1, logits.shape[-1])
    out = torch.full_like(flat, float("-inf"))
    for r in range(flat.shape[0]):
        probs = flat[r].softmax(-1)
        total = 0.0
        for j in probs.argsort(descending=True).tolist():
            out[r, j] = flat[r, j]
            total += probs[j].item()
            if total >= p:
                break
    return out.reshape(logits.shape)'''),
    "sample_one_row_at_a_time": ("sample", '''def sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return torch.tensor([int(row.argmax()) for row in logits])
    out = []
    for row in logits:
        row = top_p_filter(top_k_filter(apply_temperature(row[None], temperature), top_k), top_p)
        out.append(torch.multinomial(row.softmax(-1)[0], 1, generator=generator))
    return torch.cat(out)'''),
    "generate_batch_positions": ("generate_with_cache", '''from course_lib.model import KVCache

def generate_with_cache(model, ids, max_new_tokens):
    B, T = ids.shape
    model.eval()
    cache = KVCache(len(model.transformer.h))
    logits, _ = model(ids, cache=cache, pos=torch.arange(T).expand(B, T))
    new = []
    for step in range(max_new_tokens):
        nxt = logits[:, -1].argmax(-1)
        new.append(nxt)
        if step < max_new_tokens - 1:
            logits, _ = model(nxt[:, None], cache=cache, pos=torch.full((B, 1), T + step))
    return torch.cat([ids, torch.stack(new, dim=1)], dim=1)'''),
}

WRONG = {
    # -- apply_temperature --------------------------------------------------------------------
    "temperature_multiplies": ("apply_temperature", TEMPERATURE.replace("logits / t",
                                                                        "logits * t")),
    "temperature_returns_probs": ("apply_temperature", TEMPERATURE.replace(
        "logits / t", "torch.softmax(logits / t, dim=-1)")),
    # -- top_k_filter -------------------------------------------------------------------------
    # the k-th largest at index k of the sorted row (it is at k - 1): k + 1 tokens stay
    "top_k_off_by_one": ("top_k_filter", TOP_K.replace(
        "torch.topk(logits, k, dim=-1).values[..., -1:]",
        "torch.sort(logits, dim=-1, descending=True).values[..., k:k + 1]")),
    "top_k_ties_dropped": ("top_k_filter", '''def top_k_filter(logits, k):
    if k is None or k >= logits.size(-1):
        return logits
    idx = torch.topk(logits, k, dim=-1).indices
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, idx, True)
    return logits.masked_fill(~keep, float("-inf"))'''),
    # sorts, then keeps the first k positions of the row instead of the k largest tokens
    "top_k_wrong_positions": ("top_k_filter", '''def top_k_filter(logits, k):
    if k is None or k >= logits.size(-1):
        return logits
    values, order = torch.sort(logits, dim=-1, descending=True)
    out = torch.full_like(logits, float("-inf"))
    out[..., :k] = values[..., :k]
    return out'''),
    "top_k_no_guard": ("top_k_filter", TOP_K.replace(
        "    if k is None or k >= logits.size(-1):\n        return logits\n", "")),
    # -- top_p_filter -------------------------------------------------------------------------
    # keeps the tokens whose cumulative probability is <= p: the one that crosses p is lost
    "top_p_drops_crossing": ("top_p_filter", TOP_P.replace(
        "before = probs.cumsum(dim=-1) - probs\n    drop_sorted = before >= p",
        "drop_sorted = probs.cumsum(dim=-1) > p\n    drop_sorted[..., 0] = False")),
    # shifts the mask but forgets that the likeliest token always stays
    "top_p_can_drop_all": ("top_p_filter", TOP_P.replace(
        "before = probs.cumsum(dim=-1) - probs\n    drop_sorted = before >= p",
        "drop_sorted = probs.cumsum(dim=-1) > p\n"
        "    drop_sorted[..., 1:] = drop_sorted[..., :-1].clone()")),
    # the mask in sorted order applied to the unsorted logits
    "top_p_unsorted_mask": ("top_p_filter", TOP_P.replace(
        "drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)",
        "drop = drop_sorted")),
    # -- sample -------------------------------------------------------------------------------
    # divides the probabilities: multinomial renormalises, so the temperature does nothing
    "temperature_after_softmax": ("sample", '''def sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = top_p_filter(top_k_filter(logits, top_k), top_p)
    probs = logits.softmax(dim=-1) / temperature
    return torch.multinomial(probs, 1, generator=generator)[:, 0]'''),
    "ignores_generator": ("sample", SAMPLE.replace("generator=generator", "")),
    "own_generator": ("sample", SAMPLE.replace(
        "generator=generator)", "generator=torch.Generator().manual_seed(0))")),
    "filters_in_wrong_order": ("sample", SAMPLE.replace(
        "top_p_filter(top_k_filter(apply_temperature(logits, temperature), top_k), top_p)",
        "top_k_filter(top_p_filter(apply_temperature(logits, temperature), top_p), top_k)")),
    "top_p_before_temperature": ("sample", SAMPLE.replace(
        "top_p_filter(top_k_filter(apply_temperature(logits, temperature), top_k), top_p)",
        "apply_temperature(top_p_filter(top_k_filter(logits, top_k), top_p), temperature)")),
    # temperature 0 treated as "no temperature": it samples instead of taking the argmax
    "greedy_samples": ("sample", SAMPLE.replace(
        "    if temperature == 0:\n        return logits.argmax(dim=-1)\n",
        "    if temperature == 0:\n        temperature = 1.0\n")),
    # top-k written inline, one token short
    "sample_top_k_off_by_one": ("sample", '''def sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = apply_temperature(logits, temperature)
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits <= kth, float("-inf"))
    probs = top_p_filter(logits, top_p).softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]'''),
    # -- generate_with_cache ------------------------------------------------------------------
    "cache_positions_off_by_one": ("generate_with_cache", GENERATE.replace(
        "torch.tensor([ids.size(1) + step])", "torch.tensor([ids.size(1) + step + 1])")),
    # the right tokens, but the whole window again for every one of them
    "no_cache_recomputes": ("generate_with_cache", '''def generate_with_cache(model, ids, max_new_tokens):
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits, _ = model(ids)
            ids = torch.cat([ids, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    return ids'''),
    # reads the logits of the prompt's first token, not its last
    "cache_first_logits": ("generate_with_cache", GENERATE.replace(
        "nxt = logits[:, -1].argmax", "nxt = logits[:, 0].argmax")),
    # returns only the new tokens
    "returns_new_tokens_only": ("generate_with_cache", GENERATE.replace(
        "out = [ids]", "out = []")),
}

# one wrong answer per rule of the task text that the wrong answers above leave unbroken, each
# breaking that rule only (tests/rule_audit.py names them): name -> (task, source)
RULE_WRONG = {
    # the k-th largest of the whole tensor, not of each row
    "top_k_whole_tensor": ("top_k_filter", TOP_K.replace(
        "torch.topk(logits, k, dim=-1).values[..., -1:]",
        "torch.topk(logits.flatten(), k).values[-1]")),
    # guards None only: k >= V reaches topk, which raises
    "top_k_no_guard_for_large_k": ("top_k_filter", TOP_K.replace(
        "if k is None or k >= logits.size(-1):", "if k is None:")),
    "top_p_no_guard": ("top_p_filter", TOP_P.replace(
        "    if p is None or p >= 1.0:\n        return logits\n", "")),
    # (B, 1): the column multinomial returns
    "sample_returns_column": ("sample", SAMPLE.replace(
        "generator=generator)[:, 0]", "generator=generator)")),
    "sample_greedy_keeps_dims": ("sample", SAMPLE.replace(
        "return logits.argmax(dim=-1)\n", "return logits.argmax(dim=-1, keepdim=True)\n")),
}

for _name, (_task, _src) in RULE_WRONG.items():
    assert _src != CORRECT[_task], f"{_name}: the replacement did not apply"
