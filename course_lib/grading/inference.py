"""Checks for the Inference assignment (chapter 5).

The student writes the sampler and the cached decoding loop that ``course_lib.generate`` holds:

- ``apply_temperature(logits, t)``: the logits divided by ``t`` (before any softmax);
- ``top_k_filter(logits, k)``: the ``k`` largest logits of each row stay (ties with the k-th
  too), the rest become ``-inf``; ``k=None`` or ``k >= V`` keeps all;
- ``top_p_filter(logits, p)``: the smallest set of likeliest tokens whose probabilities reach
  ``p`` stays (the token that crosses ``p`` too, always at least one); ``p=None`` or ``p >= 1``
  keeps all;
- ``sample(logits, temperature, top_k, top_p, generator)``: ``temperature=0`` is the argmax;
  otherwise temperature, top-k, top-p, then one draw per row with the ``torch.Generator``;
- ``generate_with_cache(model, ids, max_new_tokens)``: greedy decoding with a ``KVCache``.

The three filters are compared with the reference: the same ``-inf`` positions, the kept values
within ``rtol=1e-5``. Top-p cases keep every cumulative probability at least 1e-4 away from
``p``, so that no correct implementation is judged on a float rounding.

A draw is random, so ``sample`` is not compared draw by draw with the reference (an inverse-CDF
sampler with ``torch.rand`` is as right as ``torch.multinomial``). A ``torch.Generator`` cannot
travel to the grader as data, a seed can: the graded calls go through the notebook's locked
cell ``sample_with_seed(logits, temperature, top_k, top_p, seed, n)``, which calls the
student's ``sample`` (with ``on_generator``) on each row repeated ``n`` times with
``torch.Generator().manual_seed(seed)``, then on each row repeated ``SMALL`` (100) times twice
with ``seed + 1`` and once with ``seed + 2``. The check then requires:

- temperature 0: every draw is a largest logit of its row;
- every draw is a token the reference keeps (after temperature, top-k and top-p);
- the two runs with the same seed agree draw for draw (the generator is used), and the run with
  another seed differs, where two independent runs would agree with a chance below 1e-12;
- each kept token's count in the ``n`` draws of its row is within 6 standard deviations (plus
  3) of ``n`` times its probability. A right sampler fails this with a probability below 1e-8
  per token; temperature applied after the softmax, top-k or top-p off by one token, or the
  filters in another order miss it by far more on the fixed cases.

A model cannot travel either: ``generate_with_cache`` is graded through the locked cell
``generate_with_cache_on_gpt(config, seed, ids, max_new_tokens)``, which builds
``GPT(GPTConfig(**config))`` with ``torch.manual_seed(seed)`` (``on_seeded_gpt``), counts the
token positions its embedding reads, and returns the ids and that count. The ids must equal
the naive greedy loop's (``generate_naive(..., temperature=0)``, the whole window recomputed
for every token); the count must be at most ``B * (T + max_new_tokens)``: a loop that
recomputes the window reads about ``B * T * max_new_tokens`` and gets the tokens right but
not the point. Cases keep every greedy step's top-two logits at least 1e-5 apart, so the
tiny float differences between a cached and a full forward never change an argmax.
"""

from __future__ import annotations

import math
import random

import torch

from course_lib import generate as _generate
from course_lib.grading.checks import Assignment, Task, as_args, one_thread, seeded_gpt

# off limits while a student's function runs: course_lib.generate (decorated functions such as
# generate_with_cache too) and the reference_* functions here; the model, the KV cache and the
# locked cells' on_generator / on_seeded_gpt keep working
REFERENCES = ("course_lib.generate", "course_lib.grading.inference")
DEPENDS = ("course_lib.model",)  # generate_with_cache's inputs are GPTs built with it
# sample's own calls of the filters get the trusted ones: a wrong top_k_filter costs its task only
SAMPLE_SUBSTITUTE = {"apply_temperature": "course_lib.generate:apply_temperature",
                     "top_k_filter": "course_lib.generate:top_k_filter",
                     "top_p_filter": "course_lib.generate:top_p_filter"}
P_MARGIN = 1e-4      # no cumulative probability this close to p in a top-p case
GREEDY_MARGIN = 1e-5  # no greedy step's top two logits this close in a generate case
Z = 6.0              # standard deviations a token's count may stray
SMALL = 100          # draws per row of the runs that test the seed


def reference_apply_temperature(logits, t):
    return _generate.apply_temperature(logits, t)


def reference_top_k_filter(logits, k):
    return _generate.top_k_filter(logits, k)


def reference_top_p_filter(logits, p):
    return _generate.top_p_filter(logits, p)


def on_generator(sample, logits, temperature, top_k, top_p, seed, n):
    """Call ``sample`` on ``logits`` ``(B, V)`` with each row repeated ``n`` times (rows
    ``b * n`` to ``b * n + n - 1`` are copies of row ``b``) and
    ``torch.Generator().manual_seed(seed)``: ``"draws"``. Then, on each row repeated
    ``SMALL`` times, twice with ``seed + 1`` (``"seeded_twice"``) and once with ``seed + 2``
    (``"other_seed"``). Returns what each call returned."""
    def draw(rows, s):
        return sample(logits.repeat_interleave(rows, dim=0), temperature, top_k, top_p,
                      torch.Generator().manual_seed(s))

    with one_thread():
        return {"draws": draw(n, seed),
                "seeded_twice": (draw(SMALL, seed + 1), draw(SMALL, seed + 1)),
                "other_seed": draw(SMALL, seed + 2)}


def reference_sample_with_seed(logits, temperature, top_k, top_p, seed, n):
    return on_generator(_generate.sample, logits, temperature, top_k, top_p, seed, n)


def on_seeded_gpt(generate_with_cache, config, seed, ids, max_new_tokens):
    """Call ``generate_with_cache(model, ids, max_new_tokens)`` on ``GPT(GPTConfig(**config))``
    whose weights are drawn with ``torch.manual_seed(seed)``; return ``{"ids": what it returned,
    "positions_read": how many token positions the model's embedding read}``. The course's
    generation functions are off limits meanwhile (the task's references)."""
    read = [0]

    def count(module, inputs):
        read[0] += inputs[0].numel()

    with one_thread():
        model = seeded_gpt(config, seed).eval()
        hook = model.transformer.wte.register_forward_pre_hook(count)
        try:
            out = generate_with_cache(model, ids.clone(), max_new_tokens)
        finally:
            hook.remove()
    return {"ids": out, "positions_read": read[0]}


def _naive_greedy(model, ids, max_new_tokens):
    return _generate.generate_naive(model, ids, max_new_tokens, temperature=0)


def reference_generate_with_cache_on_gpt(config, seed, ids, max_new_tokens):
    """The naive greedy loop's ids, and what a cached loop reads: the prompt once, then one
    position per new token but the last."""
    out = on_seeded_gpt(_naive_greedy, config, seed, ids, max_new_tokens)
    out["positions_read"] = ids.numel() + ids.size(0) * (max_new_tokens - 1)
    return out


# -- comparing tensors -------------------------------------------------------------------------


def _filtered(expected, actual, what="the result", rtol=1e-5, atol=1e-6):
    """None when ``actual`` has ``-inf`` exactly where ``expected`` has, and the other values
    within the tolerance."""
    if not isinstance(actual, torch.Tensor):
        return f"{what} is a {type(actual).__name__} instead of a torch.Tensor"
    if tuple(actual.shape) != tuple(expected.shape):
        return f"{what} has shape {tuple(actual.shape)} instead of {tuple(expected.shape)}"
    if not actual.is_floating_point():
        return f"{what} has dtype {actual.dtype} instead of a float dtype"
    actual = actual.to(expected.dtype)
    if torch.isnan(actual).any():
        return f"{what} has nan values"
    e_out, a_out = expected == float("-inf"), actual == float("-inf")
    if not torch.equal(e_out, a_out):
        where = tuple(int(i) for i in torch.nonzero(e_out != a_out)[0])
        kept = int((~a_out[where[:-1]]).sum()) if actual.dim() else 0
        should = int((~e_out[where[:-1]]).sum()) if actual.dim() else 0
        row = f"row {where[:-1]}" if where[:-1] else "the row"
        if e_out[where]:
            return (f"{what}{list(where)} is {actual[where].item():.6g}, but it should be -inf "
                    f"(filtered out); {row} keeps {kept} tokens instead of {should}")
        return (f"{what}{list(where)} is {actual[where].item():.6g} instead of "
                f"{expected[where].item():.6g} (it should stay); {row} keeps {kept} tokens "
                f"instead of {should}")
    keep = ~e_out
    if not torch.allclose(actual[keep], expected[keep], rtol=rtol, atol=atol):
        diff = (actual - expected).abs().masked_fill(~keep, 0)
        where = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
        return (f"{what}{list(where)} is {actual[where].item():.6g} instead of "
                f"{expected[where].item():.6g}")
    return None


def _compare_temperature(args, expected, actual):
    diff = _filtered(expected, actual, what="the result")
    if diff and isinstance(actual, torch.Tensor) and actual.shape == expected.shape:
        logits, t = args
        a = actual.to(expected.dtype)
        if torch.allclose(a, logits * t, rtol=1e-5, atol=1e-6):
            diff += " (the logits times t: divide by t)"
        elif torch.allclose(a.sum(-1), torch.ones(a.shape[:-1]), atol=1e-4) and (a >= 0).all():
            diff += " (probabilities: return logits, the softmax comes later)"
    return diff


def _compare_filter(args, expected, actual):
    return _filtered(expected, actual, what="the result")


# -- cases: the filters --------------------------------------------------------------------------


def _logits_args(extra):
    """Literal cases of a test cell, ``[[logits as nested lists], setting]``, with the logits
    as a float tensor."""
    return [(torch.tensor(a[0], dtype=torch.float32), *a[1:]) for a in as_args(extra)]


def _temperature_cases(seed=0, n_random=6, extra=None):
    g = torch.Generator().manual_seed(seed + 6000)
    fixed = [(torch.tensor([1.0, 2.0, 4.0]), 2.0),
             (torch.randn(2, 7, generator=g) * 3, 0.5),
             (torch.randn(3, 11, generator=g), 1.0),
             (torch.randn(2, 3, 5, generator=g), 1.7),
             (torch.randn(1, 6, generator=g) * 100, 1e-3),
             (torch.randn(4, 9, generator=g), 100.0)]
    rng = random.Random(seed)
    out = []
    for _ in range(n_random):
        shape = rng.choice([(rng.randrange(1, 5), rng.randrange(2, 40)), (rng.randrange(2, 30),)])
        out.append((torch.randn(*shape, generator=g) * rng.choice([0.5, 1.0, 4.0]),
                    rng.choice([0.1, 0.5, 0.7, 0.9, 1.0, 1.2, 1.5, 2.0, 3.0])))
    return fixed + out + _logits_args(extra)


def _top_k_cases(seed=0, n_random=6, extra=None):
    g = torch.Generator().manual_seed(seed + 7000)
    fixed = [(torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]]), 2),
             (torch.randn(3, 10, generator=g), 1),
             (torch.randn(2, 8, generator=g), 8),                                # k = V: all
             (torch.randn(2, 6, generator=g), 50),                               # k > V: all
             (torch.randn(2, 6, generator=g), None),                             # no filter
             (torch.tensor([[3.0, 3.0, 1.0, 0.0], [2.0, 1.0, 1.0, 1.0]]), 1),    # tie at the top
             (torch.tensor([[0.0, 2.0, 1.0, 2.0, -1.0, 1.0]]), 3),               # tie at the k-th
             (torch.randint(-3, 3, (4, 12), generator=g).float(), 5),           # many ties
             (torch.randn(20, generator=g) - 5, 4),                              # (V,), negative
             (torch.randn(2, 3, 9, generator=g), 3)]                             # (B, T, V)
    rng = random.Random(seed)
    out = []
    for _ in range(n_random):
        V = rng.randrange(2, 60)
        shape = rng.choice([(rng.randrange(1, 5), V), (V,)])
        logits = (torch.randint(-4, 4, shape, generator=g).float() if rng.random() < 0.3
                  else torch.randn(*shape, generator=g) * rng.choice([1.0, 3.0]))
        out.append((logits, rng.choice([1, 2, rng.randrange(1, V + 1), rng.randrange(1, V + 1)])))
    return fixed + out + _logits_args(extra)


def _p_ok(logits, p):
    """Every cumulative probability (likeliest first) at least P_MARGIN away from ``p``."""
    if p is None or p >= 1.0:
        return True
    probs = torch.sort(logits.float().softmax(-1), dim=-1, descending=True).values
    cum = probs.double().cumsum(-1)[..., :-1]
    return bool(((cum - p).abs() > P_MARGIN).all())


def _top_p_cases(seed=0, n_random=6, extra=None):
    g = torch.Generator().manual_seed(seed + 8000)
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    fixed = [(probs.log(), 0.6),                                  # the crossing token stays
             (probs.log()[[2, 0, 3, 1]], 0.7),                   # not sorted
             (probs.log(), 0.85),
             (torch.tensor([[4.0, 0.0, -1.0, 0.5], [0.0, 0.1, 0.2, 0.3]]), 0.5),  # one dominant
             (torch.randn(3, 10, generator=g), 0.01),            # only the likeliest
             (torch.randn(2, 12, generator=g), 0.9),
             (torch.randn(2, 12, generator=g), 1.0),             # all
             (torch.randn(2, 12, generator=g), None),            # no filter
             (torch.randn(2, 3, 9, generator=g) * 2, 0.75),      # (B, T, V)
             (torch.randn(4, 30, generator=g) * 3, 0.95)]
    rng = random.Random(seed)
    out = []
    while len(out) < n_random:
        V = rng.randrange(2, 60)
        shape = rng.choice([(rng.randrange(1, 5), V), (V,)])
        logits = torch.randn(*shape, generator=g) * rng.choice([0.5, 1.0, 2.0, 4.0])
        p = rng.choice([0.1, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99])
        if _p_ok(logits, p):
            out.append((logits, p))
    cases = fixed + out + _logits_args(extra)
    for logits, p in cases[:len(fixed) + len(out)]:
        assert _p_ok(logits, p), (logits, p)
    return cases


# -- sample ---------------------------------------------------------------------------------------


def _filtered_probs(logits, temperature, top_k, top_p):
    """The reference's probabilities of each token of each row, after the filters."""
    logits = logits.float()
    if temperature == 0:
        return None
    x = _generate.top_p_filter(_generate.top_k_filter(
        _generate.apply_temperature(logits, temperature), top_k), top_p)
    return x.softmax(-1)


def _sample_ok(logits, temperature, top_k, top_p):
    if temperature == 0:
        return bool((logits.topk(2, dim=-1).values.diff(dim=-1).abs() > 1e-6).all())
    x = _generate.top_k_filter(_generate.apply_temperature(logits.float(), temperature), top_k)
    return _p_ok(x, top_p)


def _sample_cases(seed=0, n_random=4, extra=None):
    g = torch.Generator().manual_seed(seed + 9000)
    probs = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    N = 4000
    fixed = [(torch.randn(3, 10, generator=g), 0, None, None, 1, 20),        # greedy
             (torch.randn(2, 20, generator=g) * 2, 0, 5, 0.5, 2, 20),        # greedy, filters
             (torch.randn(1, 8, generator=g), 1.0, None, None, 3, N),        # plain draw
             (torch.randn(1, 8, generator=g) * 2, 0.5, None, None, 4, N),    # cold
             (torch.randn(1, 8, generator=g) * 0.5, 2.0, None, None, 5, N),  # hot
             (torch.randn(2, 12, generator=g) * 1.5, 1.0, 4, None, 6, N),    # top-k
             (probs.log(), 1.0, None, 0.75, 7, N),                           # top-p crossing
             (probs.log(), 1.0, 2, 0.5, 8, N),                               # k then p: 1 token
             (probs.log(), 0.5, None, 0.75, 11, N),                          # t then p
             (torch.tensor([[2.0, 1.5, 1.0, 0.8, 0.0, -1.0]]), 0.7, 4, 0.8, 9, N),
             (torch.randn(1, 15, generator=g) * 2, 1.3, 6, 0.9, 10, N)]
    rng = random.Random(seed)
    out = []
    while len(out) < n_random:
        V = rng.randrange(3, 25)
        logits = torch.randn(rng.choice([1, 2]), V, generator=g) * rng.choice([0.5, 1.0, 2.0])
        t = rng.choice([0, 0.5, 0.8, 1.0, 1.0, 1.5])
        case = (logits, t, rng.choice([None, 1, 3, rng.randrange(1, V + 1)]),
                rng.choice([None, 0.5, 0.8, 0.9, 0.95]), rng.randrange(10_000), 20 if t == 0 else N)
        if _sample_ok(*case[:4]):
            out.append(case)
    return fixed + out + as_args(extra)


def _describe(logits, temperature, top_k, top_p):
    parts = [f"temperature {temperature}"]
    if top_k is not None:
        parts.append(f"top_k {top_k}")
    if top_p is not None:
        parts.append(f"top_p {top_p}")
    return ", ".join(parts)


def _compare_sample(args, expected, actual):
    logits, temperature, top_k, top_p, seed, n = args
    B, V = logits.shape
    if (not isinstance(actual, dict) or set(actual) != {"draws", "seeded_twice", "other_seed"}
            or not isinstance(actual["seeded_twice"], tuple) or len(actual["seeded_twice"]) != 2):
        return ("not the draws of the notebook's locked cell sample_with_seed "
                "(was it redefined?)")
    runs = [(actual["draws"], n), (actual["seeded_twice"][0], SMALL),
            (actual["seeded_twice"][1], SMALL), (actual["other_seed"], SMALL)]
    for d, rows in runs:
        if not isinstance(d, torch.Tensor):
            return f"sample returned a {type(d).__name__} instead of a torch.Tensor"
        if d.is_floating_point() or d.dtype == torch.bool:
            return f"sample returned a tensor of dtype {d.dtype}: token ids are integers"
        if tuple(d.shape) != (B * rows,):
            return (f"sample returned shape {tuple(d.shape)} for logits of shape "
                    f"{(B * rows, V)}: one token id per row, shape {(B * rows,)}")
    draws = actual["draws"].long().view(B, n)
    if temperature == 0:
        best = logits.max(dim=-1, keepdim=True).values
        ok = logits.gather(1, draws) == best
        if not ok.all():
            b, i = (int(x) for x in torch.nonzero(~ok)[0])
            return (f"with temperature 0 row {b} gave token {int(draws[b, i])} (logit "
                    f"{logits[b, draws[b, i]].item():.4g}), not its largest logit "
                    f"{int(logits[b].argmax())} ({best[b].item():.4g}): greedy is the argmax")
        return None
    first, again = actual["seeded_twice"]
    if not torch.equal(first, again):
        return ("two calls with torch.Generator().manual_seed(seed) drew different tokens: "
                "draw with the generator you are given (torch.multinomial(..., generator=g) or "
                "torch.rand(..., generator=g)), not the global random state")
    q = _filtered_probs(logits, temperature, top_k, top_p)
    # the chance that two independent runs of SMALL draws per row agree everywhere
    log_same = SMALL * (q.double() ** 2).sum(-1).log().sum().item()
    if log_same < math.log(1e-12) and torch.equal(first, actual["other_seed"]):
        return (f"seeds {seed + 1} and {seed + 2} drew the same {B * SMALL} tokens: the draws "
                "must come from the generator you are given, not from one you make")
    setting = _describe(logits, temperature, top_k, top_p)
    for b in range(B):
        row = draws[b]
        if ((row < 0) | (row >= V)).any():
            return f"row {b} drew token {int(row[(row < 0) | (row >= V)][0])}, not in 0..{V - 1}"
        outside = q[b][row] == 0
        if outside.any():
            tok = int(row[outside][0])
            kept = torch.nonzero(q[b] > 0).view(-1).tolist()
            return (f"row {b} ({setting}) drew token {tok} {int(outside.sum())} times in {n} "
                    f"draws, but the filters remove it: only tokens {kept} may be drawn")
        counts = torch.bincount(row, minlength=V).double()
        mean = n * q[b].double()
        sd = (mean * (1 - q[b].double())).sqrt()
        excess = (counts - mean).abs() - (Z * sd + 3)
        if (excess > 0).any():
            j = int(excess.argmax())
            plain = torch.softmax(logits[b].double(), -1)[j].item()
            note = ""
            if temperature != 1 and abs(counts[j].item() - n * plain) <= Z * math.sqrt(
                    n * plain * (1 - plain)) + 3:
                note = (" (about its probability at temperature 1: does the temperature "
                        "divide the logits before the softmax?)")
            return (f"row {b} ({setting}) drew token {j} {int(counts[j])} times in {n} draws; "
                    f"its probability after the filters is {q[b, j].item():.4f}, so about "
                    f"{mean[j].item():.0f} (at most {Z:g} standard deviations away, "
                    f"{Z * sd[j].item() + 3:.0f}){note}")
    return None


# -- generate_with_cache ------------------------------------------------------------------------


def _gen_config(rng, block_size):
    n_head = rng.choice([1, 2])
    return {"n_layer": rng.choice([1, 2]), "n_head": n_head, "n_embd": n_head * rng.choice([4, 8]),
            "block_size": block_size, "vocab_size": rng.choice([11, 16, 23]), "dropout": 0.0}


def _greedy_ok(config, seed, ids, max_new_tokens):
    """The naive greedy loop's top two logits are GREEDY_MARGIN apart at every step."""
    with one_thread(), torch.no_grad():
        model = seeded_gpt(config, seed).eval()
        for _ in range(max_new_tokens):
            logits, _ = model(ids)
            top = logits[:, -1].topk(2, dim=-1).values
            if ((top[:, 0] - top[:, 1]) < GREEDY_MARGIN).any():
                return False
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return True


def _generate_cases(seed=0, n_random=2, extra=None):
    g = torch.Generator().manual_seed(seed + 10_000)
    rng = random.Random(seed)
    shapes = [(1, 4, 5, 16), (1, 1, 6, 8),     # (B, T, max_new_tokens, block_size); T = 1
              (3, 3, 4, 16), (2, 1, 7, 8),     # batches
              (2, 5, 1, 8),                     # one new token
              (1, 13, 3, 16), (2, 6, 2, 8)]     # prompt + new tokens fill the block
    for _ in range(n_random):
        block = rng.choice([8, 16])
        T = rng.randrange(1, block)
        shapes.append((rng.randrange(1, 4), T, rng.randrange(1, block - T + 1), block))
    out = []
    for B, T, m, block in shapes:
        while True:
            config = _gen_config(rng, block)
            case = (config, rng.randrange(1000),
                    torch.randint(0, config["vocab_size"], (B, T), generator=g), m)
            if _greedy_ok(*case):
                out.append(case)
                break
    return out + as_args(extra)


def _compare_generate(args, expected, actual):
    config, seed, ids, m = args
    B, T = ids.shape
    if (not isinstance(actual, dict) or set(actual) != {"ids", "positions_read"}):
        return ("not the result of the notebook's locked cell generate_with_cache_on_gpt "
                "(was it redefined?)")
    got, want = actual["ids"], expected["ids"]
    if not isinstance(got, torch.Tensor):
        return f"generate_with_cache returned a {type(got).__name__} instead of a torch.Tensor"
    if tuple(got.shape) != tuple(want.shape):
        extra = (" (only the new tokens? return the prompt followed by them)"
                 if tuple(got.shape) == (B, m) else "")
        return f"the ids have shape {tuple(got.shape)} instead of {tuple(want.shape)}{extra}"
    if got.is_floating_point():
        return f"the ids have dtype {got.dtype}: token ids are integers"
    got = got.long()
    if not torch.equal(got[:, :T], want[:, :T]):
        return "the first T ids are not the prompt: return the prompt followed by the new tokens"
    if not torch.equal(got, want):
        r, c = (int(x) for x in torch.nonzero(got != want)[0])
        step = c - T
        note = (" (the first token, from the prompt's forward, is right: are the later steps "
                "at the right position, ids.size(1) + step, and do they read the cache?)"
                if step > 0 else "")
        return (f"row {r}, new token {step}: {int(got[r, c])} instead of {int(want[r, c])} "
                f"(the greedy tokens of the loop that recomputes the whole window){note}")
    read, limit = actual["positions_read"], B * (T + m)
    if not isinstance(read, int) or read > limit:
        return (f"the tokens are right, but the model read {read} token positions to make {m} "
                f"tokens from {B} prompt(s) of {T}: with a KV cache it reads the prompt once and "
                f"then one new token per step, at most {limit} (B * (T + max_new_tokens))")
    return None


TASKS = {
    "apply_temperature": Task(
        "apply_temperature", reference_apply_temperature, _temperature_cases,
        references=REFERENCES, compare_case=_compare_temperature,
        hint="return logits / t, a tensor of the same shape (no softmax here)"),
    "top_k_filter": Task(
        "top_k_filter", reference_top_k_filter, _top_k_cases, references=REFERENCES,
        compare_case=_compare_filter,
        hint="the k-th largest value of each row: torch.topk(logits, k, dim=-1).values[..., -1:]; "
             "logits below it become -inf (masked_fill), so ties with it stay; k None or "
             "k >= logits.size(-1) returns the logits unchanged"),
    "top_p_filter": Task(
        "top_p_filter", reference_top_p_filter, _top_p_cases, references=REFERENCES,
        compare_case=_compare_filter,
        hint="sort each row descending (torch.sort gives the order too), softmax, cumsum; a token "
             "is dropped when the tokens ranked above it already reach p (cumsum - its own "
             "probability >= p), so the crossing token and the likeliest one always stay; put "
             "the mask back in the original order (scatter) and fill -inf; p None or >= 1: all"),
    "sample": Task(
        "sample_with_seed", reference_sample_with_seed, _sample_cases,
        compare_case=_compare_sample, timeout=20.0,
        substitute=SAMPLE_SUBSTITUTE,
        hint="temperature 0: logits.argmax(dim=-1); otherwise apply_temperature, then "
             "top_k_filter, then top_p_filter, softmax, and torch.multinomial(probs, 1, "
             "generator=generator)[:, 0]: one id per row, shape (B,)"),
    "generate_with_cache": Task(
        "generate_with_cache_on_gpt", reference_generate_with_cache_on_gpt, _generate_cases,
        compare_case=_compare_generate, timeout=20.0,
        hint="cache = KVCache(model.config.n_layer); logits, _ = model(ids, cache=cache) once; "
             "then for each step: the argmax of logits[:, -1] is the next token (B, 1); feed "
             "only it: model(nxt, cache=cache, pos=torch.tensor([ids.size(1) + step])); return "
             "torch.cat of the prompt and the new tokens, (B, T + max_new_tokens)"),
}

ASSIGNMENT = Assignment(TASKS, references=REFERENCES, depends=DEPENDS)
globals().update(ASSIGNMENT.checks())  # check_apply_temperature, check_top_k_filter, check_top_p_filter, check_sample, check_generate_with_cache

