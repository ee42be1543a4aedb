"""Inference: turning next-token probabilities into text, one token at a time.

Introduced in chapter 5 (Inference). The model only ever gives a probability for every possible
next token; a *sampler* picks one, it is appended to the window, and the model runs again:

- ``apply_temperature`` divides the logits by ``t`` (``t < 1`` sharpens, ``t > 1`` flattens);
- ``top_k_filter`` keeps the ``k`` likeliest tokens; ``top_p_filter`` (nucleus) keeps the
  smallest set of likeliest tokens whose probabilities reach ``p``;
- ``sample`` does all three and draws with a ``torch.Generator`` (the same seed, the same text);
  ``temperature=0`` is greedy decoding, the likeliest token every time;
- ``generate`` repeats it; with a **KV cache** (``course_lib.model.KVCache``) each step feeds only
  the new token, reading the keys and values of earlier tokens from the cache instead of
  recomputing the whole window: the same tokens (tested), far less work;
- ``generate_naive`` is the loop without the cache, ``generate_with_cache`` the greedy loop with
  it written out step by step (the assignment's), ``stream`` yields text as it comes, and
  ``generate_batch`` runs several prompts of different lengths together (left padding, masked).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from course_lib.model import KVCache


def apply_temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """Logits divided by the temperature ``t > 0`` (before the softmax)."""
    if t <= 0:
        raise ValueError(f"temperature must be > 0, got {t}; use sample(..., temperature=0) "
                         "for greedy decoding")
    return logits / t


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Only the ``k`` largest logits of each row stay; the rest become ``-inf`` (tokens tied with
    the k-th stay too). ``k=None`` or ``k >= vocabulary`` keeps all."""
    if k is None or k >= logits.size(-1):
        return logits
    if k < 1:
        raise ValueError(f"top_k must be at least 1, got {k}")
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Nucleus filtering: sort each row's tokens from likeliest down and keep the shortest run
    whose probabilities add up to at least ``p`` (the token that crosses ``p`` is kept; so is
    always the likeliest one); the rest become ``-inf``. ``p=None`` or ``p >= 1`` keeps all."""
    if p is None or p >= 1.0:
        return logits
    if p <= 0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs      # probability of the tokens ranked above
    drop_sorted = before >= p                  # already reached p without this token
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of ``logits`` ``(B, V)`` (or ``(V,)``): temperature, then top-k,
    then top-p, then a draw from the softmax. ``temperature=0``: the argmax (greedy)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = top_p_filter(top_k_filter(apply_temperature(logits.float(), temperature), top_k),
                          top_p)
    probs = logits.softmax(dim=-1)
    flat = probs.reshape(-1, probs.size(-1))
    out = torch.multinomial(flat, 1, generator=generator)
    return out.reshape(probs.shape[:-1])


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def unknown_ids(tokenizer, vocab_size: int) -> torch.Tensor:
    """``(vocab_size,)`` True for the model's ids that are no token of ``tokenizer`` (the course
    model's 4,081-4,095, kept for chat tokens): they must never be sampled, or decoding fails."""
    known = getattr(tokenizer, "vocab", None) or range(tokenizer.n_vocab)
    mask = torch.ones(vocab_size, dtype=torch.bool)
    mask[[i for i in known if i < vocab_size]] = False
    return mask


@torch.no_grad()
def generate_naive(model, ids: torch.Tensor, max_new_tokens: int, **sampling) -> torch.Tensor:
    """The plain loop: run the model on the whole window (its last ``block_size`` tokens) for
    every new token. ``sampling``: ``temperature``, ``top_k``, ``top_p``, ``generator``."""
    model.eval()
    block = model.config.block_size
    for _ in range(max_new_tokens):
        logits, _ = model(ids[:, -block:])
        ids = torch.cat([ids, sample(logits[:, -1], **sampling)[:, None]], dim=1)
    return ids


@torch.no_grad()
def generate(model, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None, use_cache: bool = True,
             stop_token: int | None = None, forbid: torch.Tensor | None = None) -> torch.Tensor:
    """``ids`` ``(B, T)`` followed by ``max_new_tokens`` sampled tokens (fewer if every row has
    produced ``stop_token``; rows that stopped are padded with it). With the KV cache it gives
    exactly the tokens ``generate_naive`` gives, also past ``block_size`` (see
    ``_cached_steps``). ``forbid`` ``(V,)`` bool: ids never to produce (``unknown_ids``)."""
    out = ids
    for new in _cached_steps(model, ids, max_new_tokens, temperature, top_k, top_p, generator,
                             use_cache, forbid):
        if stop_token is not None:
            done = (out[:, ids.size(1):] == stop_token).any(dim=1)
            new = torch.where(done, torch.full_like(new, stop_token), new)
        out = torch.cat([out, new[:, None]], dim=1)
        if stop_token is not None and (out[:, ids.size(1):] == stop_token).any(dim=1).all():
            break
    return out


def _cached_steps(model, ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                  generator=None, use_cache=True, forbid=None) -> Iterator[torch.Tensor]:
    """Yield each new token ``(B,)``. With the cache: one forward of the prompt (prefill), then
    one forward of one token per step. The window never exceeds ``block_size``: when it is full,
    the cache is dropped and refilled from the window's last ``block_size`` tokens, which is what
    the naive loop reads too (positions shift, so nothing cached can be kept)."""
    model.eval()
    block = model.config.block_size
    with torch.no_grad():
        window = ids
        cache = None
        for _ in range(max_new_tokens):
            if not use_cache:
                logits, _ = model(window[:, -block:])
            elif cache is None or cache.length >= block:
                cache = KVCache(model.config.n_layer)
                logits, _ = model(window[:, -block:], cache=cache)
            else:
                logits, _ = model(window[:, -1:], cache=cache)
            logits = logits[:, -1]
            if forbid is not None:
                logits = logits.masked_fill(forbid.to(logits.device), float("-inf"))
            new = sample(logits, temperature, top_k, top_p, generator)
            window = torch.cat([window, new[:, None]], dim=1)
            yield new


@torch.no_grad()
def generate_with_cache(model, ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding with a KV cache, written out (prompt and output within ``block_size``):
    the prompt goes through the model once, filling the cache; then each step feeds only the
    newest token, at the position right after the cached ones."""
    if ids.size(1) + max_new_tokens > model.config.block_size:
        raise ValueError("prompt + new tokens exceed block_size; use generate() for longer text")
    model.eval()
    cache = KVCache(model.config.n_layer)
    logits, _ = model(ids, cache=cache)                       # positions 0 .. T-1
    out = [ids]
    for step in range(max_new_tokens):
        nxt = logits[:, -1].argmax(dim=-1, keepdim=True)
        out.append(nxt)
        if step + 1 < max_new_tokens:
            pos = torch.tensor([ids.size(1) + step], device=ids.device)  # right after the cache
            logits, _ = model(nxt, cache=cache, pos=pos)
    return torch.cat(out, dim=1)


def stream(model, tokenizer, prompt: str, max_new_tokens: int = 100, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, seed: int = 0,
           stop: str | None = None) -> Iterator[str]:
    """Yield the continuation of ``prompt`` piece by piece as tokens come (a token that ends in
    the middle of a UTF-8 character waits for the next). Stops after ``stop`` (e.g. the
    end-of-text token) if given."""
    device = _model_device(model)
    ids = torch.tensor([tokenizer.encode(prompt, allowed_special="all")], device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    got, shown = [], ""
    forbid = unknown_ids(tokenizer, model.config.vocab_size)
    for new in _cached_steps(model, ids, max_new_tokens, temperature, top_k, top_p, g,
                             forbid=forbid):
        got.append(int(new[0]))
        text = tokenizer.decode(got)
        if text.endswith("\ufffd"):  # an incomplete character: wait for the rest
            continue
        piece, shown = text[len(shown):], text
        yield piece
        if stop is not None and stop in text:
            return


@torch.no_grad()
def generate_batch(model, tokenizer, prompts: list[str] | list[list[int]], max_new_tokens: int,
                   temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                   seed: int = 0, pad_id: int = 0) -> list[str]:
    """Continue several prompts at once. Shorter prompts are padded on the left, the padding is
    masked out of attention and every row's positions start at 0 where its text starts, so each
    row gets the tokens it would get alone (greedy; tested). A prompt may also be given as token
    ids (a rendered conversation, say). Returns the continuations."""
    device = _model_device(model)
    model.eval()
    encoded = [list(p) if not isinstance(p, str) else tokenizer.encode(p, allowed_special="all")
               for p in prompts]
    T = max(len(e) for e in encoded)
    if T + max_new_tokens > model.config.block_size:
        raise ValueError(f"the longest prompt ({T} tokens) + {max_new_tokens} new tokens exceed "
                         f"block_size {model.config.block_size}")
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long, device=device)
    key_mask = torch.zeros(len(prompts), T, dtype=torch.bool, device=device)
    for r, e in enumerate(encoded):
        ids[r, T - len(e):] = torch.tensor(e, device=device)
        key_mask[r, T - len(e):] = True
    pos = (key_mask.long().cumsum(dim=1) - 1).clamp(min=0)   # 0 at each row's first real token
    g = torch.Generator(device=device).manual_seed(seed)
    cache = KVCache(model.config.n_layer)
    logits, _ = model(ids, cache=cache, pos=pos, key_mask=key_mask)
    next_pos = pos[:, -1:] + 1
    forbid = unknown_ids(tokenizer, model.config.vocab_size).to(device)
    new_tokens = []
    for step in range(max_new_tokens):
        nxt = sample(logits[:, -1].masked_fill(forbid, float("-inf")), temperature, top_k, top_p, g)
        new_tokens.append(nxt)
        if step + 1 < max_new_tokens:
            logits, _ = model(nxt[:, None], cache=cache, pos=next_pos)
            next_pos = next_pos + 1
    out = torch.stack(new_tokens, dim=1).tolist()
    return [tokenizer.decode(row) for row in out]
