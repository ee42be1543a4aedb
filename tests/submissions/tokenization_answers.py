"""Answers to the Tokenization assignment (chapter 2): right ones written two ways, one wrong
answer per task (each must lose exactly that task's points) and a decode that is wrong another
way. Used by tests/test_tokenization_checks.py, tests/test_grading.py and make_submissions.py (which makes the
notebooks from them).

Keys are the grade ids of the answer cells, which are also the function names."""

GET_STATS = '''def get_stats(ids):
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts'''
MERGE = '''def merge(ids, pair, idx):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(idx)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out'''
TRAIN = '''def train_bpe(text, vocab_size):
    ids = list(text.encode("utf-8"))
    merges = {}
    for idx in range(256, vocab_size):
        stats = get_stats(ids)
        if not stats:
            break
        pair = min(stats, key=lambda p: (-stats[p], p))
        ids = merge(ids, pair, idx)
        merges[pair] = idx
    return merges'''
ENCODE = '''def encode(text, merges):
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        stats = get_stats(ids)
        pair = min(stats, key=lambda p: merges.get(p, float("inf")))
        if pair not in merges:
            break
        ids = merge(ids, pair, merges[pair])
    return ids'''
DECODE = '''def decode(ids, merges):
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), idx in merges.items():
        vocab[idx] = vocab[a] + vocab[b]
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")'''
CORRECT = {"get_stats": GET_STATS, "merge": MERGE, "train_bpe": TRAIN, "encode": ENCODE,
           "decode": DECODE}

# Correct, written differently from the solution (Counter, regex-free slicing, a different
# encode: apply merges in learned order, which gives the same ids for byte-level BPE).
ALTERNATIVE = {
    "get_stats": '''import collections

def get_stats(ids):
    return dict(collections.Counter(zip(ids, ids[1:])))''',
    "merge": '''def merge(ids, pair, idx):
    out = list(ids)
    k = 0
    while k < len(out) - 1:
        if out[k] == pair[0] and out[k + 1] == pair[1]:
            out[k:k + 2] = [idx]
        k += 1
    return out''',
    "train_bpe": '''def train_bpe(text, vocab_size):
    seq = list(text.encode())
    learned = {}
    while len(learned) < vocab_size - 256:
        counts = get_stats(seq)
        if not counts:
            return learned
        top = max(counts.values())
        best = sorted(p for p, c in counts.items() if c == top)[0]
        new = 256 + len(learned)
        learned[best] = new
        seq = merge(seq, best, new)
    return learned''',
    "encode": '''def encode(text, merges):
    ids = list(text.encode())
    for pair, idx in sorted(merges.items(), key=lambda kv: kv[1]):
        ids = merge(ids, pair, idx)
    return ids''',
    "decode": '''def decode(ids, merges):
    parts = {}
    def token_bytes(i):
        if i < 256:
            return bytes([i])
        if i not in parts:
            a, b = next(p for p, j in merges.items() if j == i)
            parts[i] = token_bytes(a) + token_bytes(b)
        return parts[i]
    return bytes().join(token_bytes(i) for i in ids).decode("utf-8", "replace")''',
}

# One wrong implementation per task (each must lose exactly that task's points).
WRONG = {
    "get_stats": '''def get_stats(ids):  # misses the last pair
    counts = {}
    for i in range(len(ids) - 2):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
    return counts''',
    "merge": '''def merge(ids, pair, idx):  # does not skip the second id of a merged pair
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(idx)
        else:
            out.append(ids[i])
        i += 1
    return out''',
    "train_bpe": '''def train_bpe(text, vocab_size):  # ties go to the first pair seen, not the smallest
    ids = list(text.encode("utf-8"))
    merges = {}
    for idx in range(256, vocab_size):
        stats = get_stats(ids)
        if not stats:
            break
        pair = max(stats, key=stats.get)
        ids = merge(ids, pair, idx)
        merges[pair] = idx
    return merges''',
    "encode": '''def encode(text, merges):  # applies the most frequent pair, not the earliest merge
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        stats = get_stats(ids)
        known = [p for p in stats if p in merges]
        if not known:
            break
        pair = max(known, key=lambda p: (stats[p], -merges[p]))
        ids = merge(ids, pair, merges[pair])
    return ids''',
    "decode": '''def decode(ids, merges):  # strict UTF-8: raises on a cut character
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), idx in merges.items():
        vocab[idx] = vocab[a] + vocab[b]
    return b"".join(vocab[i] for i in ids).decode("utf-8")''',
}

DECODE_PER_TOKEN = '''def decode(ids, merges):  # decodes token by token: breaks characters split across tokens
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), idx in merges.items():
        vocab[idx] = vocab[a] + vocab[b]
    return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)'''

WRITTEN = ("The model sees three token ids, not ten letters, so the count of r's is not in its "
           "input; spelling the word with spaces makes each letter a token.")


# One wrong answer per rule of the task text that no other wrong answer breaks, each breaking
# that rule only (tests/rule_audit.py names them; tests/test_rule_audit.py checks they lose their
# task).
# name -> (task, source)
RULE_WRONG = {
    # -- get_stats --------------------------------------------------------------------------------
    "stats_string_keys": ("get_stats", GET_STATS.replace(
        "counts[pair] = counts.get(pair, 0) + 1",
        "key = f'{pair[0]},{pair[1]}'\n        counts[key] = counts.get(key, 0) + 1")),
    "stats_non_overlapping": ("get_stats", '''def get_stats(ids):  # skips past a counted pair
    counts, i = {}, 0
    while i + 1 < len(ids):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
        i += 2 if ids[i] == ids[i + 1] else 1
    return counts'''),
    "stats_empty_raises": ("get_stats", '''def get_stats(ids):  # reads ids[0] before looking
    counts, prev = {}, ids[0]
    for x in ids[1:]:
        counts[(prev, x)] = counts.get((prev, x), 0) + 1
        prev = x
    return counts'''),
    # -- merge ------------------------------------------------------------------------------------
    "merge_from_right": ("merge", '''def merge(ids, pair, idx):  # overlapping pairs taken from the right
    out, i = [], len(ids) - 1
    while i >= 0:
        if i >= 1 and (ids[i - 1], ids[i]) == pair:
            out.append(idx)
            i -= 2
        else:
            out.append(ids[i])
            i -= 1
    return out[::-1]'''),
    "merge_first_only": ("merge", '''def merge(ids, pair, idx):  # replaces the first occurrence only
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return list(ids[:i]) + [idx] + list(ids[i + 2:])
    return list(ids)'''),
    "merge_either_order": ("merge", MERGE.replace(
        "(ids[i], ids[i + 1]) == pair", "{ids[i], ids[i + 1]} == set(pair)")),
    # -- train_bpe --------------------------------------------------------------------------------
    "train_code_points": ("train_bpe", TRAIN.replace('ids = list(text.encode("utf-8"))',
                                                    "ids = [ord(c) for c in text]")),
    "train_one_merge_too_many": ("train_bpe", TRAIN.replace("range(256, vocab_size)",
                                                           "range(256, vocab_size + 1)")),
    "train_ties_to_largest": ("train_bpe", TRAIN.replace("key=lambda p: (-stats[p], p)",
                                                        "key=lambda p: (-stats[p], [-x for x in p])")),
    "train_least_frequent": ("train_bpe", TRAIN.replace("key=lambda p: (-stats[p], p)",
                                                       "key=lambda p: (stats[p], p)")),
    "train_no_early_stop": ("train_bpe", TRAIN.replace("        if not stats:\n            break\n", "")),
    "train_sorted_merges": ("train_bpe", TRAIN.replace("    return merges",
                                                      "    return dict(sorted(merges.items()))")),
    "train_merges_as_list": ("train_bpe", TRAIN.replace("    return merges",
                                                       "    return [[list(p), i] for p, i in merges.items()]")),
    # -- encode -----------------------------------------------------------------------------------
    "encode_code_points": ("encode", ENCODE.replace('ids = list(text.encode("utf-8"))',
                                                   "ids = [ord(c) for c in text]")),
    "encode_dict_order": ("encode", '''def encode(text, merges):  # merges in the dict's order, not by new id
    ids = list(text.encode("utf-8"))
    for pair, idx in merges.items():
        ids = merge(ids, pair, idx)
    return ids'''),
    "encode_single_sweep": ("encode", '''def encode(text, merges):  # one left-to-right sweep, never repeated
    ids = list(text.encode("utf-8"))
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) in merges:
            out.append(merges[(ids[i], ids[i + 1])])
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out'''),
    "encode_empty_raises": ("encode", '''def encode(text, merges):  # min() of no pairs raises on "" and one byte
    ids = list(text.encode("utf-8"))
    while True:
        stats = get_stats(ids)
        pair = min(stats, key=lambda p: merges.get(p, float("inf")))
        if pair not in merges:
            return ids
        ids = merge(ids, pair, merges[pair])'''),
    "encode_drops_unseen": ("encode", ENCODE.replace(
        'ids = list(text.encode("utf-8"))',
        'seen = {x for p in merges for x in p}\n    ids = [b for b in text.encode("utf-8") if b in seen]')),
    # -- decode -----------------------------------------------------------------------------------
    "decode_per_token": ("decode", DECODE_PER_TOKEN),
    "decode_one_level": ("decode", '''def decode(ids, merges):  # a merged id's parts taken as bytes
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), idx in merges.items():
        vocab[idx] = bytes([a % 256, b % 256])
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")'''),
}
