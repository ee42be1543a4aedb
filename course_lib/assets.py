"""What the course ships, in one low layer: where each file lives, which token has which id, and
how to load the shipped tokenizer, models and corpus.

Every chapter starts from the previous chapter's output, shipped small in ``course_lib/assets``
(and remade by ``python -m course_lib.pipeline``). This module is the one place that knows those
files, the way nanochat's ``checkpoint_manager`` is: it imports only the modules below it
(``tokenizer``, ``model``), so any other module may import it and imports flow one way::

    world, tokenizer, model  ->  assets  ->  crawl, data, train, generate
        ->  chat and later chapters' modules  ->  evals, report, talk  ->  pipeline

- ``SPECIAL_TOKENS``: the registry of the course model's special-token ids. The model has 4,096
  embedding rows; BPE fills 0-4,079, ``<|endoftext|>`` is 4,080, and the rest are given out here
  by chapter (chat tokens for chapter 6, tool tokens reserved for chapter 7, the rest free), so
  the model's shape never changes when a chapter adds its tokens;
- ``course_tokenizer(chat=..., tools=...)``: the shipped tokenizer with the tokens a chapter needs;
- ``MODELS`` and ``load_model("base" | "sft" | path)``: every shipped model by name (later
  chapters register theirs), ``export_model`` for what ships, ``load_log`` for its training log;
- ``load_corpus()``: chapter 1's cleaned corpus; ``load_sample_text()``: real English text;
- ``path(name)``: a shipped file's path, with an error that names the command remaking it.
"""

from __future__ import annotations

import copy
import dataclasses
import gzip
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ASSETS_DIR = Path(__file__).parent / "assets"

# ---------------------------------------------------------------------------------------------
# Special tokens: one registry of ids
# ---------------------------------------------------------------------------------------------

VOCAB_SIZE = 4096          # the course model's embedding rows; never changes
ORDINARY_VOCAB = 4080      # bytes + BPE merges: ids 0..4079

ENDOFTEXT = "<|endoftext|>"
IM_START, IM_SEP, IM_END = "<|im_start|>", "<|im_sep|>", "<|im_end|>"
# Chapter 7 (reserved): the model opens a tool call, writes e.g. "search: Tova Lind", closes it;
# the tool's output is pasted between the result tokens (and masked out of the loss).
TOOL_START, TOOL_END = "<|tool_start|>", "<|tool_end|>"
RESULT_START, RESULT_END = "<|result_start|>", "<|result_end|>"

CHAT_TOKENS = {IM_START: 4081, IM_SEP: 4082, IM_END: 4083}                 # chapter 6
TOOL_TOKENS = {TOOL_START: 4084, TOOL_END: 4085, RESULT_START: 4086,       # chapter 7
               RESULT_END: 4087}
SPECIAL_TOKENS = {ENDOFTEXT: ORDINARY_VOCAB, **CHAT_TOKENS, **TOOL_TOKENS}
FREE_IDS = range(4088, VOCAB_SIZE)  # for chapters 8-9, if they need any: register them above


def _check_registry() -> None:
    ids = list(SPECIAL_TOKENS.values())
    assert len(set(ids)) == len(ids), "two special tokens share an id"
    assert all(ORDINARY_VOCAB <= i < VOCAB_SIZE for i in ids), "a special id outside 4080..4095"
    assert not set(ids) & set(FREE_IDS), "a registered id is also listed as free"


_check_registry()

# ---------------------------------------------------------------------------------------------
# Shipped files
# ---------------------------------------------------------------------------------------------

VAL_EVERY = 50  # every 50th document of the corpus is held out: the validation split

REMAKE_CHAIN = "python -m course_lib.pipeline --ship"
# every shipped file, and the command that remakes it
FILES = {
    "corpus.parquet": "python -m course_lib.data (or python -m course_lib.pipeline --ship)",
    "real_text.jsonl.gz": "python course_lib/assets/make_real_text.py",
    "sample_text.txt.gz": "python course_lib/assets/make_sample_text.py",
    "course_tokenizer.model": "python -m course_lib.pipeline --from tokenizer --ship",
    "base_model.pt": "python -m course_lib.pipeline --from tokenizer --ship",
    "base_model.json": "python -m course_lib.pipeline --from tokenizer --ship",
    "sft_model.pt": "python -m course_lib.pipeline --from assistant --ship",
    "sft_model.json": "python -m course_lib.pipeline --from assistant --ship",
    "probe.json": "python -m course_lib.pipeline --from 'hallucination and tools' --ship",
    "idk_model.pt": "python -m course_lib.pipeline --from 'hallucination and tools' --ship",
    "idk_model.json": "python -m course_lib.pipeline --from 'hallucination and tools' --ship",
    "tool_model.pt": "python -m course_lib.pipeline --from 'hallucination and tools' --ship",
    "tool_model.json": "python -m course_lib.pipeline --from 'hallucination and tools' --ship",
    "rl_model.pt": "python -m course_lib.pipeline --from 'reinforcement learning' --ship",
    "rl_model.json": "python -m course_lib.pipeline --from 'reinforcement learning' --ship",
    "reward_model.pt": "python -m course_lib.pipeline --from RLHF --ship",
    "rlhf_model.pt": "python -m course_lib.pipeline --from RLHF --ship",
    "dpo_model.pt": "python -m course_lib.pipeline --from RLHF --ship",
    "rlhf_model.json": "python -m course_lib.pipeline --from RLHF --ship",
    "report_card.md": REMAKE_CHAIN,
    "report_card.json": REMAKE_CHAIN,
}


def path(name: str, must_exist: bool = True) -> Path:
    """The path of the shipped file ``name``; a missing one raises an error naming the command
    that remakes it."""
    if name not in FILES:
        raise KeyError(f"{name!r} is not a shipped file; the course ships {sorted(FILES)}")
    p = ASSETS_DIR / name
    if must_exist:
        sys.audit("course_lib.asset", str(p))  # the release record notes what grading opens
    if must_exist and not p.exists():
        raise FileNotFoundError(f"{p} does not exist; make it with `{FILES[name]}`")
    return p


def read(p: Path, what: str, load):
    """``load(p)``, or a ``ValueError`` that names the file that cannot be read and the command
    that remakes it (a shipped file) : a truncated download or a half-written file says so
    instead of raising from deep inside torch or pyarrow."""
    try:
        return load(p)
    except FileNotFoundError:
        raise
    except Exception as e:   # noqa: BLE001 - whatever the reader raises, the file is the problem
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        shipped = Path(p).resolve().parent == ASSETS_DIR.resolve() and Path(p).name in FILES
        fix = (f"remake it with `{FILES[Path(p).name]}`" if shipped else
               "make it again with the command that wrote it")
        raise ValueError(f"{p} cannot be read as {what} ({why}); {fix}") from e


def _given_or_shipped(given, name: str) -> Path:
    if given is None:
        return path(name)
    p = Path(given)
    sys.audit("course_lib.asset", str(p.resolve()))
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist (the shipped one is {ASSETS_DIR / name}, "
                                f"made by `{FILES[name]}`)")
    return p


# ---------------------------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------------------------


def with_special_tokens(tokenizer, tokens: dict):
    """``tokenizer`` with ``tokens`` registered besides its own; a new object when tokens had to
    be added (the shipped one is never changed in place)."""
    if all(tokenizer.special_tokens.get(t) == i for t, i in tokens.items()):
        return tokenizer
    tok = copy.deepcopy(tokenizer)
    tok.register_special_tokens(dict(tok.special_tokens) | dict(tokens))
    return tok


def course_tokenizer(chat: bool = False, tools: bool = False, path_: str | Path | None = None):
    """The shipped course tokenizer (BPE on chapter 1's corpus, 4,080 tokens + ``<|endoftext|>``);
    ``chat=True`` adds chapter 6's chat tokens, ``tools=True`` chapter 7's tool tokens too."""
    from course_lib.tokenizer import Tokenizer

    tok = read(_given_or_shipped(path_, "course_tokenizer.model"), "a tokenizer", Tokenizer.load)
    extra = {**(CHAT_TOKENS if chat or tools else {}), **(TOOL_TOKENS if tools else {})}
    return with_special_tokens(tok, extra) if extra else tok


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShippedModel:
    """A model the course ships: its weights file, its training log, the chapter that made it,
    and whether it speaks the chat format."""
    weights: str
    log: str
    chapter: int
    chat: bool
    tools: bool = False


# later chapters register theirs here (and in FILES)
MODELS = {
    "base": ShippedModel("base_model.pt", "base_model.json", chapter=4, chat=False),
    "sft": ShippedModel("sft_model.pt", "sft_model.json", chapter=6, chat=True),
    "idk": ShippedModel("idk_model.pt", "idk_model.json", chapter=7, chat=True),
    "tools": ShippedModel("tool_model.pt", "tool_model.json", chapter=7, chat=True, tools=True),
    "rl": ShippedModel("rl_model.pt", "rl_model.json", chapter=8, chat=True),
    "rlhf": ShippedModel("rlhf_model.pt", "rlhf_model.json", chapter=9, chat=True),
    "dpo": ShippedModel("dpo_model.pt", "rlhf_model.json", chapter=9, chat=True),
}


def _model_file(name_or_path) -> Path:
    if isinstance(name_or_path, str) and name_or_path in MODELS:
        return path(MODELS[name_or_path].weights)
    p = Path(name_or_path)
    if not p.exists():
        hint = "" if p.suffix else f" (the shipped models are {sorted(MODELS)})"
        raise FileNotFoundError(f"{p} does not exist{hint}")
    return p


def export_model(model, path_: str | Path, meta: dict | None = None) -> Path:
    """The weights alone (float32) with the model's shape, for inference: what ships."""
    import torch

    raw = getattr(model, "module", model)
    raw = getattr(raw, "_orig_mod", raw)
    p = Path(path_)
    p.parent.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().float().cpu().contiguous() for k, v in raw.state_dict().items()
               if k != "lm_head.weight"}  # tied to transformer.wte.weight
    torch.save({"config": dataclasses.asdict(raw.config), "model": weights,
                "meta": meta or {}}, p)
    return p


def load_model(name_or_path: str | Path = "base", device: str = "cpu"):
    """A ``course_lib.model.GPT`` in eval mode: a shipped model by name (``"base"``, ``"sft"``,
    see ``MODELS``) or a file of ``export_model`` or a training checkpoint (loaded with
    ``weights_only``: a checkpoint file cannot run code when loaded)."""
    import torch

    from course_lib.model import GPT, GPTConfig

    def build(f):
        state = torch.load(f, map_location=device, weights_only=True)
        cfg = state["config"]
        if "data_dir" in cfg:  # a training checkpoint holds the TrainConfig
            fields = {f.name for f in dataclasses.fields(GPTConfig)}
            cfg = {k: v for k, v in cfg.items() if k in fields}
        model = GPT(GPTConfig(**cfg)).to(device)
        weights = dict(state["model"])
        weights.setdefault("lm_head.weight", weights["transformer.wte.weight"])
        model.load_state_dict(weights)
        return model.eval(), state.get("meta", {})

    model, meta = read(_model_file(name_or_path), "a model", build)
    bias = meta.get("logit_bias")
    return with_logit_bias(model, {int(k): v for k, v in bias.items()}) if bias else model


def with_logit_bias(model, bias: dict):
    """``model`` with constants added to some tokens' logits at every position, ``{token id:
    bias}`` (what OpenAI's API calls ``logit_bias``): a forward hook, kept in the model's
    ``logit_bias`` attribute. A shipped model whose ``export_model`` meta holds a
    ``"logit_bias"`` gets it when loaded (chapter 7's "I don't know" model: its refusal
    threshold, picked from the trade-off curve)."""
    import torch

    ids = torch.tensor(sorted(bias), dtype=torch.long)
    add = torch.tensor([float(bias[i]) for i in sorted(bias)])

    def hook(module, args, output):
        logits, loss = output
        logits = logits.clone()
        logits[..., ids.to(logits.device)] += add.to(logits.device, logits.dtype)
        return logits, loss

    if getattr(model, "logit_bias", None):
        raise ValueError("the model has a logit bias already; load it again to set another")
    model.register_forward_hook(hook)
    model.logit_bias = dict(bias)
    return model


def load_log(name: str) -> dict:
    """The training log that ships with the model ``name`` (history, samples, measurements)."""
    if name not in MODELS:
        raise KeyError(f"no shipped model {name!r}; the course ships {sorted(MODELS)}")
    return json.loads(path(MODELS[name].log).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------


def load_corpus(path_: str | Path | None = None):
    """The cleaned pretraining corpus of chapter 1 (a ``datasets.Dataset`` with FineWeb's
    columns); remake it with ``python -m course_lib.data``."""
    import datasets

    return read(_given_or_shipped(path_, "corpus.parquet"), "the corpus",
                lambda f: datasets.Dataset.from_parquet(str(f)))


def load_sample_text(n_chars: int | None = None) -> str:
    """The real English text that ships with the course (the Python Language Reference and
    standard-library docstrings, ~1 MB); ``n_chars`` keeps only the start."""
    text = gzip.decompress(path("sample_text.txt.gz").read_bytes()).decode("utf-8")
    return text if n_chars is None else text[:n_chars]
