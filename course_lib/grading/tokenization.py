"""Checks for the Tokenization assignment (chapter 2).

The student writes byte-level BPE as five functions; each check compares one of them with a
reference built from ``course_lib.tokenizer`` on fixed edge cases plus seeded random inputs:

- ``get_stats(ids) -> {(a, b): count}``
- ``merge(ids, pair, idx) -> list[int]``
- ``train_bpe(text, vocab_size) -> {(a, b): new_id}`` (merges in the order learned, new ids from
  256; the most frequent pair wins and ties go to the smallest pair ``(a, b)``; stop early when
  no pair is left)
- ``encode(text, merges) -> list[int]``
- ``decode(ids, merges) -> str`` (invalid UTF-8 becomes U+FFFD, never an error)

In a test cell: ``checks.check_merge(merge)``; hidden tests pass other seeds and cases.

A mistake costs the marks of its own task only: while ``train_bpe`` and ``encode`` are checked,
the student's ``get_stats`` and ``merge`` are replaced by the course's (``Task.substitute``), so
a wrong ``merge`` loses merge's points and not also those of the tasks that call it.
"""

from __future__ import annotations

import random

from course_lib import tokenizer as _tok
from course_lib.grading.checks import Assignment, Task, as_args, compare_exact

REFERENCES = ("course_lib.tokenizer", "course_lib.grading.tokenization")


# -- references in the assignment's functional form -------------------------------------------


def reference_train_bpe(text: str, vocab_size: int) -> dict:
    ids = list(text.encode("utf-8"))
    merges = {}
    for idx in range(256, vocab_size):
        counts = _tok.get_stats(ids)
        if not counts:
            break
        pair = _tok.best_pair(counts)
        ids = _tok.merge(ids, pair, idx)
        merges[pair] = idx
    return merges


def reference_encode(text: str, merges: dict) -> list:
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        pair = min(_tok.get_stats(ids), key=lambda p: merges.get(p, float("inf")))
        if pair not in merges:
            break
        ids = _tok.merge(ids, pair, merges[pair])
    return ids


def reference_decode(ids: list, merges: dict) -> str:
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), idx in merges.items():
        vocab[idx] = vocab[a] + vocab[b]
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


# -- inputs ----------------------------------------------------------------------------------

_ALPHABETS = ["ab", "abc ", "aab ba", "the cat sat on the mat. ", "héllo wörld ", "日本語のテキスト",
              "🙂👍🏽 ok"]


def _random_ids(rng, n_max=60):
    hi = rng.choice([3, 6, 300])
    return [rng.randrange(hi) for _ in range(rng.randrange(n_max))]


def _random_text(rng, n_min=0, n_max=120):
    alphabet = rng.choice(_ALPHABETS)
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(n_min, n_max)))


def _get_stats_cases(seed=0, n_random=10, extra=None):
    fixed = [([1, 2, 3, 1, 2],), ([],), ([7],), ([5, 5, 5, 5],), ([0, 255, 0, 255, 0],),
             ([256, 300, 256, 300, 256],)]
    rng = random.Random(seed)
    return fixed + [(_random_ids(rng),) for _ in range(n_random)] + as_args(extra)


def _merge_cases(seed=0, n_random=10, extra=None):
    fixed = [([1, 2, 3, 1, 2], (1, 2), 4), ([5, 5, 5], (5, 5), 6), ([], (1, 2), 3),
             ([1], (1, 2), 3), ([2, 1, 2, 1], (1, 2), 300), ([1, 2, 1, 2, 1, 2], (2, 1), 7),
             ([3, 4, 5], (4, 3), 9)]
    rng = random.Random(seed)
    out = []
    for _ in range(n_random):
        ids = _random_ids(rng)
        if len(ids) >= 2 and rng.random() < 0.8:
            i = rng.randrange(len(ids) - 1)
            pair = (ids[i], ids[i + 1])
        else:
            pair = (rng.randrange(6), rng.randrange(6))
        out.append((ids, pair, 256 + rng.randrange(1000)))
    return fixed + out + as_args(extra)


def _train_cases(seed=0, n_random=6, extra=None):
    fixed = [("aaabdaaabac", 259), ("hello world", 256), ("", 260), ("ab", 300), ("abcd", 258),
             ("héllo wörld 👋👋", 270)]
    rng = random.Random(seed)
    out = [(_random_text(rng, 10, 200), 256 + rng.randrange(30)) for _ in range(n_random)]
    return fixed + out + as_args(extra)


def _encode_cases(seed=0, n_random=6, extra=None):
    m = reference_train_bpe("aaabdaaabac", 259)
    # "abcbc": (b, c) is the most frequent pair but (a, b) was learned first
    fixed = [("aaabdaaabac", m), ("", m), ("xyz aaab", m), ("hello", {}),
             ("abcbc", {(97, 98): 256, (98, 99): 257}),
             # the dict's order is not the learned order: the smallest new id goes first
             ("abab", {(97, 98): 257, (98, 97): 256}),
             ("🙂🙂🙂", reference_train_bpe("🙂🙂🙂🙂", 262))]
    rng = random.Random(seed)
    out = []
    for _ in range(n_random):
        merges = reference_train_bpe(_random_text(rng, 20, 200), 256 + rng.randrange(25))
        out.append((_random_text(rng, 0, 80), merges))
    return fixed + out + as_args(extra)


def _decode_cases(seed=0, n_random=6, extra=None):
    m = reference_train_bpe("aaabdaaabac", 259)
    fixed = [([], {}), ([104, 105], {}), ([258, 100, 258, 97, 99], m), ([0xE2, 0x82], {}),
             ([0xFF, 104], {}), ([0x80, 0x41], m)]
    rng = random.Random(seed)
    out = []
    for _ in range(n_random):
        merges = reference_train_bpe(_random_text(rng, 20, 200), 256 + rng.randrange(25))
        ids = reference_encode(_random_text(rng, 0, 80), merges)
        if ids and rng.random() < 0.4:  # cut inside a character, or inject a stray byte
            ids = ids[:-1] + [rng.randrange(128, 256)]
        out.append((ids, merges))
    return fixed + out + as_args(extra)


def _compare_merges(expected, actual):
    diff = compare_exact(expected, actual)
    if diff is None and isinstance(actual, dict) and list(actual) != list(expected):
        return ("the same merges, but not in the order they were learned (the dict's first "
                f"pair must be the first merge): {list(actual)[:4]} instead of "
                f"{list(expected)[:4]}")
    return diff


# while a task that calls them is checked, get_stats and merge are the course's
HELPERS = {"get_stats": "course_lib.tokenizer:get_stats", "merge": "course_lib.tokenizer:merge"}

TASKS = {
    "get_stats": Task("get_stats", _tok.get_stats, _get_stats_cases, references=REFERENCES,
                      hint="count every adjacent pair (ids[i], ids[i+1]); keys are tuples"),
    "merge": Task("merge", _tok.merge, _merge_cases, references=REFERENCES,
                  hint="scan left to right; after replacing a pair skip both ids, so "
                       "merge([5, 5, 5], (5, 5), 6) == [6, 5]"),
    "train_bpe": Task("train_bpe", reference_train_bpe, _train_cases, references=REFERENCES,
                      compare=_compare_merges, substitute=HELPERS,
                      hint="start from the UTF-8 bytes; new ids count up from 256; the most "
                           "frequent pair wins, ties go to the smallest (a, b); stop when no "
                           "pairs are left"),
    "encode": Task("encode", reference_encode, _encode_cases, references=REFERENCES,
                   substitute=HELPERS,
                   hint="start from the UTF-8 bytes and always apply the merge learned earliest "
                        "(lowest new id) among the pairs present"),
    "decode": Task("decode", reference_decode, _decode_cases, references=REFERENCES,
                   hint="build each id's bytes from its two parts, join all bytes, then "
                        ".decode('utf-8', errors='replace')"),
}

ASSIGNMENT = Assignment(TASKS, references=REFERENCES)
globals().update(ASSIGNMENT.checks())  # check_get_stats, check_merge, check_train_bpe, check_encode, check_decode

