"""Answers to the Transformer assignment (chapter 3): right ones written two ways, and the wrong
ones the issue names. Used by tests/test_transformer_checks.py."""

ATTENTION = '''import math
import torch

def attention(q, k, v, causal=True):
    T = q.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if causal:
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v'''

BLOCK = '''import math
import torch
import torch.nn.functional as F

def block_forward(x, params):
    B, T, C = x.shape
    H = params["n_head"]
    def ln(h, name):
        return F.layer_norm(h, (C,), params[name + ".weight"], params[name + ".bias"])
    def lin(h, name):
        return h @ params[name + ".weight"].T + params[name + ".bias"]
    h = ln(x, "ln_1")
    q, k, v = lin(h, "attn.c_attn").split(C, dim=-1)
    q, k, v = [t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v)]
    y = attention(q, k, v, causal=True).transpose(1, 2).reshape(B, T, C)
    x = x + lin(y, "attn.c_proj")
    h = ln(x, "ln_2")
    return x + lin(F.gelu(lin(h, "mlp.c_fc"), approximate="tanh"), "mlp.c_proj")'''

COUNT = '''def count_parameters(n_layer, n_head, d_model, vocab_size, block_size, tied=True):
    C = d_model
    block = 2 * (2 * C) + (3 * C * C + 3 * C) + (C * C + C) + (4 * C * C + 4 * C) + (4 * C * C + C)
    total = vocab_size * C + block_size * C + n_layer * block + 2 * C
    return total if tied else total + vocab_size * C'''

CORRECT = {"attention": ATTENTION, "block_forward": BLOCK, "count_parameters": COUNT}

ALTERNATIVE = {
    # einsum, explicit max subtraction, an additive mask with a large negative number
    "attention": '''import torch

def attention(q, k, v, causal=True):
    d = q.shape[-1]
    s = torch.einsum("bhqd,bhkd->bhqk", q, k) * d ** -0.5
    if causal:
        T = s.shape[-1]
        s = s + torch.triu(torch.full((T, T), -1e30), diagonal=1)
    s = s - s.max(dim=-1, keepdim=True).values
    w = s.exp()
    w = w / w.sum(dim=-1, keepdim=True)
    return torch.einsum("bhqk,bhkd->bhqd", w, v)''',
    # LayerNorm written out, heads in a Python loop
    "block_forward": '''import math
import torch

def block_forward(x, params):
    C = x.shape[-1]
    H = params["n_head"]
    D = C // H
    def ln(h, name):
        mu = h.mean(-1, keepdim=True)
        var = ((h - mu) ** 2).mean(-1, keepdim=True)
        return (h - mu) / torch.sqrt(var + 1e-5) * params[name + ".weight"] + params[name + ".bias"]
    def lin(h, name):
        return torch.nn.functional.linear(h, params[name + ".weight"], params[name + ".bias"])
    qkv = lin(ln(x, "ln_1"), "attn.c_attn")
    heads = []
    for i in range(H):
        q = qkv[..., i * D:(i + 1) * D]
        k = qkv[..., C + i * D:C + (i + 1) * D]
        v = qkv[..., 2 * C + i * D:2 * C + (i + 1) * D]
        heads.append(attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1))
    x = x + lin(torch.cat(heads, dim=-1), "attn.c_proj")
    h = lin(ln(x, "ln_2"), "mlp.c_fc")
    g = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))
    return x + lin(g, "mlp.c_proj")''',
    # counting by building the shapes
    "count_parameters": '''def count_parameters(n_layer, n_head, d_model, vocab_size, block_size, tied=True):
    C = d_model
    shapes = [(vocab_size, C), (block_size, C)]
    for _ in range(n_layer):
        shapes += [(C,), (C,), (C, 3 * C), (3 * C,), (C, C), (C,), (C,), (C,),
                   (C, 4 * C), (4 * C,), (4 * C, C), (C,)]
    shapes += [(C,), (C,)]
    if not tied:
        shapes.append((vocab_size, C))
    total = 0
    for s in shapes:
        n = 1
        for d in s:
            n *= d
        total += n
    return total''',
}

WRONG = {
    "no_scaling": ("attention", ATTENTION.replace(" / math.sqrt(q.size(-1))", "")),
    "mask_after_softmax": ("attention", '''import math
import torch

def attention(q, k, v, causal=True):
    T = q.size(-2)
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
    if causal:
        w = w.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), 0.0)
    return w @ v'''),
    "mask_hides_diagonal": ("attention", ATTENTION.replace(
        "torch.tril(torch.ones(T, T, dtype=torch.bool))",
        "torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-1)")),
    "softmax_wrong_axis": ("attention", ATTENTION.replace("dim=-1) @ v", "dim=-2) @ v")),
    "unstable_softmax": ("attention", ATTENTION.replace(
        "return torch.softmax(scores, dim=-1) @ v",
        "w = scores.exp()\n    return (w / w.sum(-1, keepdim=True)) @ v")),
    "post_ln": ("block_forward", BLOCK.replace(
        '''    h = ln(x, "ln_1")
    q, k, v = lin(h, "attn.c_attn").split(C, dim=-1)''', '''    q, k, v = lin(x, "attn.c_attn").split(C, dim=-1)''').replace(
        '''    x = x + lin(y, "attn.c_proj")
    h = ln(x, "ln_2")
    return x + lin(F.gelu(lin(h, "mlp.c_fc"), approximate="tanh"), "mlp.c_proj")''',
        '''    x = ln(x + lin(y, "attn.c_proj"), "ln_1")
    return ln(x + lin(F.gelu(lin(x, "mlp.c_fc"), approximate="tanh"), "mlp.c_proj"), "ln_2")''')),
    "exact_gelu": ("block_forward", BLOCK.replace('approximate="tanh"', 'approximate="none"')),
    "no_position_embeddings": ("count_parameters", COUNT.replace(" + block_size * C", "")),
    "tied_counted_twice": ("count_parameters", COUNT.replace(
        "return total if tied else total + vocab_size * C", "return total + vocab_size * C")),
}

# one wrong answer per rule of the task text that the wrong answers above leave unbroken, each
# breaking that rule only (tests/rule_audit.py names them): name -> (task, source)
RULE_WRONG = {
    "attention_always_causal": ("attention", ATTENTION.replace("    if causal:\n", "    if True:\n")),
    "attention_scaled_by_T": ("attention", ATTENTION.replace("math.sqrt(q.size(-1))",
                                                            "math.sqrt(q.size(-2))")),
    "block_not_causal": ("block_forward", BLOCK.replace("attention(q, k, v, causal=True)",
                                                        "attention(q, k, v, causal=False)")),
    "block_heads_split_wrong": ("block_forward", BLOCK.replace(
        "t.view(B, T, H, C // H).transpose(1, 2)", "t.reshape(B, H, T, C // H)")),
    "block_layer_norm_eps": ("block_forward", BLOCK.replace(
        'params[name + ".bias"])', 'params[name + ".bias"], eps=1e-3)')),
    "block_no_c_proj": ("block_forward", BLOCK.replace('x = x + lin(y, "attn.c_proj")', "x = x + y")),
    "count_output_bias": ("count_parameters", COUNT.replace(
        "else total + vocab_size * C", "else total + vocab_size * C + vocab_size")),
    "count_no_final_ln": ("count_parameters", COUNT.replace(" + n_layer * block + 2 * C",
                                                           " + n_layer * block")),
}

for _name, (_task, _src) in RULE_WRONG.items():
    assert _src != CORRECT[_task], f"{_name}: the replacement did not apply"
