"""The Transformer: a GPT in one readable file.

Introduced in chapter 3 (The Transformer). The lecture's framing: a window of token ids goes in;
out comes, for every position, a probability for every token of the vocabulary to come next. In
between is a fixed mathematical expression with billions of knobs (parameters); training turns
the knobs so that the probabilities match the data.

The expression, as GPT-2 wrote it (and nanoGPT after it):

1. **Embeddings**: each token id picks a row of ``wte`` (vocab x d_model) and each position a row
   of ``wpe`` (block_size x d_model); their sum is the residual stream ``x`` of shape (B, T, C).
2. **Blocks**, ``n_layer`` of them, each ``x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))``
   (pre-LayerNorm, with residual connections):
   - **causal self-attention**: every position makes a query, a key and a value (``c_attn``);
     ``softmax(q k^T / sqrt(d) + mask) v`` lets it read the values of earlier positions, weighted
     by how well its query matches their keys; ``n_head`` heads do this side by side;
   - **MLP**: widen to 4 x d_model, GELU, project back.
3. **Output**: a final LayerNorm and a linear map back to the vocabulary, whose weight is the
   token embedding itself (weight tying), gives logits; softmax gives probabilities.

Module and parameter names are GPT-2's (``transformer.wte``, ``transformer.h.0.attn.c_attn``,
``lm_head``), so a GPT-2 checkpoint's state dict loads with ``load_gpt2_state_dict``. Attention
uses ``torch.nn.functional.scaled_dot_product_attention`` (flash attention on GPUs); the
explicit ``attention`` below is the same computation written out, and the two are tested equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    """The shape of a GPT. Every knob of the network follows from these numbers."""

    block_size: int = 256      # the longest window of tokens the model reads
    vocab_size: int = 4096
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256          # d_model, the width of the residual stream
    dropout: float = 0.0
    bias: bool = True          # GPT-2 has biases in its linear layers and LayerNorms
    rope: bool = False         # rotary position embeddings (Llama's) instead of GPT-2's wpe

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head "
                             f"({self.n_head}): each head gets n_embd / n_head dimensions")
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


# The configurations the lecture talks about
GPT2_124M = GPTConfig(block_size=1024, vocab_size=50257, n_layer=12, n_head=12, n_embd=768)
GPT2_1558M = GPTConfig(block_size=1024, vocab_size=50257, n_layer=48, n_head=25, n_embd=1600)
GPT3_175B = GPTConfig(block_size=2048, vocab_size=50257, n_layer=96, n_head=96, n_embd=12288)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
              return_weights: bool = False, mask: torch.Tensor | None = None):
    """``softmax(q k^T / sqrt(d) + mask) v`` for ``(B, H, T, D)`` queries, keys and values,
    written out. With ``causal`` a position attends only to itself and earlier positions.
    ``mask`` (broadcastable to ``(B, H, T_q, T_k)``, True = may attend) replaces the causal
    mask when given (``attention_mask`` builds one for a KV cache and padding).
    Returns ``(B, H, T, D)`` (and the ``(B, H, T, T)`` weights when asked)."""
    d = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)           # (B, H, T, T)
    if mask is None and causal:
        t_q, t_k = q.size(-2), k.size(-2)
        # query i sits at position t_k - t_q + i (a KV cache makes t_k longer than t_q)
        mask = torch.ones(t_q, t_k, dtype=torch.bool, device=q.device).tril(t_k - t_q)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = F.softmax(scores, dim=-1)
    out = weights @ v
    return (out, weights) if return_weights else out


def attention_mask(t_q: int, key_mask: torch.Tensor) -> torch.Tensor:
    """The ``(B, 1, t_q, T_k)`` mask of ``t_q`` new queries that come after ``T_k - t_q`` cached
    tokens: causal, and no query reads a padding key (``key_mask`` ``(B, T_k)``, False = padding).
    Every query may read itself, so a padding query's row is never empty (its output is unused)."""
    t_k = key_mask.size(1)
    causal = torch.ones(t_q, t_k, dtype=torch.bool, device=key_mask.device).tril(t_k - t_q)
    itself = torch.zeros_like(causal)
    itself[torch.arange(t_q), torch.arange(t_k - t_q, t_k)] = True
    return (causal & key_mask[:, None, None, :]) | itself


class KVCache:
    """What a GPT has computed for the tokens it has already read: each layer's keys and values
    ``(B, H, T_seen, D)``, and which of those tokens are padding. Generating with it, each new
    token costs one position's work instead of the whole window's (chapter 5)."""

    def __init__(self, n_layer: int):
        self.layers: list = [None] * n_layer
        self.key_mask: torch.Tensor | None = None  # (B, T_seen), False for padding

    @property
    def length(self) -> int:
        return 0 if self.layers[0] is None else self.layers[0][0].size(2)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Append this step's keys and values; return all of them."""
        if self.layers[layer] is not None:
            k = torch.cat([self.layers[layer][0], k], dim=2)
            v = torch.cat([self.layers[layer][1], v], dim=2)
        self.layers[layer] = (k, v)
        return k, v

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for kv in self.layers if kv for t in kv)


def rope_angles(pos: torch.Tensor, head_dim: int, base: float = 10000.0):
    """Rotary position embeddings (RoFormer; Llama): the cosines and sines by which each pair of
    a head's query and key channels is rotated at position ``pos`` (``(T,)`` or ``(B, T)``),
    shaped to broadcast over ``(B, H, T, head_dim // 2)``."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=pos.device).float() / head_dim)
    angles = pos.float()[..., None] * inv_freq               # (T, D/2) or (B, T, D/2)
    angles = angles[None, None] if angles.dim() == 2 else angles[:, None]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the channel pairs (i, i + D/2) of ``x`` ``(B, H, T, D)`` by the angles of its
    positions: the dot product of a rotated query and key then depends only on how far apart
    they are, so "the token before me" is the same pattern at every position."""
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


class CausalSelfAttention(nn.Module):
    """``n_head`` heads of causal self-attention, computed together."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.use_sdpa = True  # False: the explicit attention (for teaching and heat maps)
        self.last_weights = None  # (B, H, T, T), kept when ``keep_weights`` is set
        self.keep_weights = False
        self.layer = 0  # this block's index, for the KV cache (set by GPT)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None,
                mask: torch.Tensor | None = None, rope: tuple | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        # (B, T, C) -> (B, H, T, D): each head sees its own slice of the channels
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if rope is not None:  # rotary positions: rotate queries and keys (cached rotated)
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:  # earlier tokens' keys and values, then this step's
            k, v = cache.update(self.layer, k, v)
        if self.use_sdpa and not self.keep_weights:
            # without a mask: causal when queries and keys are the same tokens; a single new
            # token after cached ones may read them all
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=mask is None and k.size(2) == T,
                dropout_p=self.dropout if self.training else 0.0)
        else:
            y, w = attention(q, k, v, causal=True, return_weights=True, mask=mask)
            if self.keep_weights:
                self.last_weights = w.detach()
            if self.training and self.dropout > 0:  # as SDPA's dropout_p does
                y = F.dropout(w, self.dropout) @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)        # heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Widen to 4 x d_model, GELU (GPT-2's tanh approximation), project back."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """One Transformer block: pre-LayerNorm attention and MLP, each added to the residual."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None,
                mask: torch.Tensor | None = None, rope: tuple | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, mask, rope)
        x = x + self.mlp(self.ln_2(x))
        return x


def block_forward(x: torch.Tensor, params: dict, n_head: int, eps: float = 1e-5) -> torch.Tensor:
    """``Block.forward`` as one function of its input ``(B, T, C)`` and a dict of its weights
    (the names of ``Block.state_dict()``: ``ln_1.weight``, ``attn.c_attn.weight``, ...)."""
    p = params
    B, T, C = x.shape

    def ln(h, name):
        return F.layer_norm(h, (C,), p[f"{name}.weight"], p.get(f"{name}.bias"), eps)

    def linear(h, name):
        return F.linear(h, p[f"{name}.weight"], p.get(f"{name}.bias"))

    h = ln(x, "ln_1")
    q, k, v = linear(h, "attn.c_attn").split(C, dim=2)
    q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))
    y = attention(q, k, v, causal=True).transpose(1, 2).reshape(B, T, C)
    x = x + linear(y, "attn.c_proj")
    h = ln(x, "ln_2")
    x = x + linear(F.gelu(linear(h, "mlp.c_fc"), approximate="tanh"), "mlp.c_proj")
    return x


class GPT(nn.Module):
    """The whole model: ids ``(B, T)`` in, logits ``(B, T, vocab_size)`` out (and the
    cross-entropy loss when ``targets`` are given)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            **({} if config.rope else {"wpe": nn.Embedding(config.block_size, config.n_embd)}),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying: one matrix, two uses
        for i, block in enumerate(self.transformer.h):
            block.attn.layer = i
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: scale the residual projections down
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameters counted once (the tied output matrix is the embedding); with
        ``non_embedding`` the position and token embeddings are left out."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel()
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
        return n

    def set_attention(self, use_sdpa: bool = True, keep_weights: bool = False) -> None:
        """Choose SDPA or the explicit attention; keep each layer's weights for heat maps."""
        for block in self.transformer.h:
            block.attn.use_sdpa = use_sdpa
            block.attn.keep_weights = keep_weights

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                cache: KVCache | None = None, pos: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None):
        """``idx`` ``(B, T)``. For generation (chapter 5): ``cache`` holds the keys and values of
        the tokens read before (and receives these); ``pos`` (``(T,)`` or ``(B, T)``) gives each
        token's position (default: right after the cached ones); ``key_mask`` ``(B, T)`` marks
        padding with False (left-padded batches; the cache remembers it)."""
        logits = self.lm_head(self.features(idx, cache, pos, key_mask))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                                   ignore_index=-100)
        return logits, loss

    def features(self, idx: torch.Tensor, cache: KVCache | None = None,
                 pos: torch.Tensor | None = None, key_mask: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """The last layer's normalised hidden states ``(B, T, n_embd)``: what ``lm_head`` turns
        into logits (and chapter 9's reward model into one score); arguments as ``forward``."""
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of length {past + T} is longer than block_size "
                             f"{self.config.block_size}; crop it to the last "
                             f"{self.config.block_size} tokens")
        if pos is None:
            pos = torch.arange(past, past + T, device=idx.device)
        mask = None
        if key_mask is not None or (cache is not None and cache.key_mask is not None):
            new = (key_mask if key_mask is not None
                   else torch.ones(B, T, dtype=torch.bool, device=idx.device))
            full = new if cache is None or cache.key_mask is None else torch.cat(
                [cache.key_mask, new], dim=1)
            if cache is not None:
                cache.key_mask = full
            mask = attention_mask(T, full)
        elif past and T > 1:  # several new tokens after cached ones: causal with an offset
            mask = torch.ones(T, past + T, dtype=torch.bool, device=idx.device).tril(past)
        rope = None
        if self.config.rope:
            x = self.transformer.drop(self.transformer.wte(idx))
            rope = rope_angles(pos, self.config.n_embd // self.config.n_head)
        else:
            x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x, cache, mask, rope)
        return self.transformer.ln_f(x)

    def attention_weights(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """The attention weights of every layer for ``idx``: a list of ``(B, H, T, T)``."""
        saved = [(b.attn.use_sdpa, b.attn.keep_weights) for b in self.transformer.h]
        self.set_attention(use_sdpa=False, keep_weights=True)
        try:
            with torch.no_grad():
                self(idx)
            return [b.attn.last_weights for b in self.transformer.h]
        finally:
            for b, (use_sdpa, keep) in zip(self.transformer.h, saved):
                b.attn.use_sdpa, b.attn.keep_weights = use_sdpa, keep


def count_parameters(n_layer: int, n_head: int, d_model: int, vocab_size: int, block_size: int,
                     tied: bool = True, bias: bool = True) -> int:
    """The number of parameters of a GPT of this shape, in closed form (no model built):
    embeddings, then per block 2 LayerNorms, attention (q, k, v and output projection) and the
    MLP (4 x d_model wide), then the final LayerNorm and, if not tied, the output matrix.
    ``n_head`` does not change the count: the heads split d_model between them."""
    if d_model % n_head:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_head ({n_head})")
    b = 1 if bias else 0
    ln = 2 * d_model if bias else d_model
    attn = d_model * 3 * d_model + b * 3 * d_model + d_model * d_model + b * d_model
    mlp = d_model * 4 * d_model + b * 4 * d_model + 4 * d_model * d_model + b * d_model
    per_block = 2 * ln + attn + mlp
    total = vocab_size * d_model + block_size * d_model + n_layer * per_block + ln
    if not tied:
        total += vocab_size * d_model
    return total


def flops_per_token(n_params: int, n_layer: int, d_model: int, seq_len: int) -> float:
    """Training FLOPs per token: 6 per parameter (forward 2, backward 4) plus attention's
    ``12 * n_layer * seq_len * d_model`` (scores and weighted values, forward and backward: the
    PaLM paper's appendix B estimate, used by nanoGPT's ``estimate_mfu``)."""
    return 6 * n_params + 12 * n_layer * seq_len * d_model


# Hugging Face's GPT-2 stores these as Conv1D, whose weight is the transpose of nn.Linear's.
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def load_gpt2_state_dict(model: GPT, state_dict: dict) -> GPT:
    """Copy a GPT-2 checkpoint's weights (Hugging Face names, ``transformer.`` prefix optional,
    ``attn.bias`` masks ignored) into ``model``, transposing the Conv1D weights."""
    ours = model.state_dict()
    loaded = set()
    for key, value in state_dict.items():
        name = key if key.startswith(("transformer.", "lm_head.")) else f"transformer.{key}"
        if name.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        if name not in ours:
            raise KeyError(f"checkpoint has {key!r}, which this GPT does not; is it GPT-2?")
        value = value.t() if name.endswith(_CONV1D) else value
        if value.shape != ours[name].shape:
            raise ValueError(f"{key}: checkpoint shape {tuple(value.shape)}, model shape "
                             f"{tuple(ours[name].shape)}; build the GPT with the checkpoint's "
                             "config")
        with torch.no_grad():
            ours[name].copy_(value)
        loaded.add(name)
    missing = set(ours) - loaded - {"lm_head.weight"}
    if missing:
        raise KeyError(f"checkpoint lacks {sorted(missing)[:5]}")
    return model
