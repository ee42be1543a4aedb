"""Benchmark of course_lib.tokenizer (chapter 2): BPE training and encoding speed.

    python bench/bench_tokenizer.py                       # 1 MB sample text, vocab 4096
    python bench/bench_tokenizer.py --chars 200000 --vocab-size 1024 --plain full

One run measures, on the same text:

(a) training time of ``RegexTokenizer.train`` with the fast trainer (``train_fast``), with the
    plain teaching trainer (``train_plain``), and of Hugging Face ``tokenizers`` (BPE model,
    GPT-4 split pattern, byte-level alphabet), with the ratios plain/fast and fast/HF;
(b) encoding throughput of the pure-Python encoder against its ``to_tiktoken()`` export, for the
    tokenizer trained in (a) and for GPT-4's cl100k_base, and the ratio (``encode_ordinary`` on
    both sides, one thread; ``encode()`` and tiktoken's batch API on all cores are shown too).

The plain trainer costs about one pass over the whole text per merge (~25-60 min for 3840 merges
on 1 MB here). ``--plain auto`` (default) runs it in full when a first estimate says it finishes
within ``--plain-budget`` seconds; otherwise it estimates the full time: it times the real
``train_plain`` for the first ``--plain-merges`` merges, then times single plain steps (the
loop body of ``train_plain``: ``get_stats`` over all chunks, ``best_pair``, ``merge`` over all
chunks, the library's own functions) at evenly spaced points of the training, starting from the
exact state the plain trainer would be in (the fast trainer's merges, which the tests prove
identical, applied to the chunks), and integrates the step time over all merges with the
trapezoid rule. A step never costs more than the one before it (the text only gets shorter; the
number of chunks, a large part of the cost, stays), so the first merges' rate times the number
of merges overestimates the total, and the cheapest measured step times the number of merges
underestimates it (up to timing noise); both bounds are printed, and the target is checked
against the lower one. ``--plain full`` always measures it.

Every timing is the best of ``--repeats`` runs (the machine is shared). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc

from course_lib import tokenizer as tk
from course_lib.assets import load_sample_text

TARGETS = {"plain/fast": 50.0, "fast/HF": 10.0, "pure/tiktoken": 50.0}


def best_time(fn, repeats):
    """Best wall time of ``repeats`` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def reset_peak_rss() -> None:
    """Forget the peak RSS so far. A child process starts with its parent's peak (Linux keeps it
    across fork and exec), which would count the parent's memory as the child's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory of this process since ``reset_peak_rss`` (VmHWM), in MB."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------------------------
# Hugging Face tokenizers, in a subprocess (rayon's thread count is fixed when it starts)
# --------------------------------------------------------------------------------------------

# Oniguruma (HF's regex engine) reads ``{1,3}+`` as "one to three, repeated" (any number of
# digits) rather than tiktoken's possessive ``{1,3}``; possessiveness changes nothing there.
HF_PATTERN = tk.GPT4_SPLIT_PATTERN.replace(r"\p{N}{1,3}+", r"\p{N}{1,3}")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, which HF's ByteLevel uses."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def hf_worker(args) -> None:
    """Train HF BPE ``repeats`` times; print JSON with the best time and the learned tokens."""
    reset_peak_rss()
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    text = load_text(args)

    def make():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(HF_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=args.vocab_size, min_frequency=0,
                                      show_progress=False, special_tokens=[],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        return tok, trainer

    best = float("inf")
    for _ in range(args.repeats):
        tok, trainer = make()
        start = time.perf_counter()
        tok.train_from_iterator([text], trainer=trainer)
        best = min(best, time.perf_counter() - start)
    maxrss = peak_rss_mb()
    u2b = {c: b for b, c in _bytes_to_unicode().items()}
    learned = sorted(bytes(u2b[c] for c in s).hex() for s in tok.get_vocab() if len(s) > 1)
    pieces = [p for p, _ in tok.pre_tokenizer.pre_tokenize_str(text)]
    pieces_bytes = [bytes(u2b[c] for c in p) for p in pieces]
    ours = [c.encode("utf-8") for c in tk.RegexTokenizer()._chunks(text)]
    print(json.dumps({"seconds": best, "vocab": tok.get_vocab_size(), "learned": learned,
                      "same_pretokens": pieces_bytes == ours,
                      "maxrss_mb": maxrss}))


def fast_worker(args) -> None:
    """Train with train_fast once in a fresh process; print JSON with its max RSS."""
    reset_peak_rss()
    text = load_text(args)
    before = peak_rss_mb()
    tk.RegexTokenizer().train(text, args.vocab_size)
    print(json.dumps({"maxrss_mb": peak_rss_mb(), "before_mb": before}))


def run_worker(args, kind: str, threads: int = 1) -> dict:
    cmd = [sys.executable, __file__, f"--{kind}-worker", "--vocab-size", str(args.vocab_size),
           "--repeats", str(args.repeats)]
    if args.chars is not None:
        cmd += ["--chars", str(args.chars)]
    if args.text_file:
        cmd += ["--text-file", args.text_file]
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# The plain trainer: measured in full, or estimated from measured steps
# --------------------------------------------------------------------------------------------


def plain_step(state: list[list[int]], idx: int) -> list[list[int]]:
    """One iteration of ``train_plain``'s loop, with the library's own functions."""
    counts: dict = {}
    for ids in state:
        tk.get_stats(ids, counts)
    pair = tk.best_pair(counts)
    return [tk.merge(ids, pair, idx) for ids in state]


def state_after(chunks: list[str], merges: dict, n: int) -> list[list[int]]:
    """The ids the plain trainer holds after its first ``n`` merges (of ``merges``)."""
    first = tk.RegexTokenizer()
    first.merges = dict(list(merges.items())[:n])
    encoded = {c: first._encode_chunk(c.encode("utf-8")) for c in set(chunks)}
    return [list(encoded[c]) for c in chunks]


def estimate_plain(chunks, merges, num_merges, prefix_merges, points, steps):
    """Time ``train_plain`` on the first merges, and plain steps at ``points`` places; return
    (prefix seconds, estimated total seconds, [(merge number, seconds per step, ids left)])."""
    start = time.perf_counter()
    prefix = tk.train_plain(chunks, 256 + prefix_merges)
    prefix_s = time.perf_counter() - start
    assert list(prefix.items()) == list(merges.items())[:prefix_merges], "plain != fast"
    samples = []
    for k in range(points):
        at = round(k * (num_merges - steps) / (points - 1))
        state = state_after(chunks, merges, at)
        n_ids = sum(map(len, state))
        best = float("inf")
        for s in range(steps):
            t0 = time.perf_counter()
            state = plain_step(state, 256 + at + s)
            best = min(best, time.perf_counter() - t0)
        samples.append((at, best, n_ids))
    total = 0.0
    for (a0, t0, _), (a1, t1, _) in zip(samples, samples[1:]):
        total += (a1 - a0) * (t0 + t1) / 2
    total += (num_merges - samples[-1][0]) * samples[-1][1]
    return prefix_s, total, samples


# --------------------------------------------------------------------------------------------


def load_text(args) -> str:
    if args.text_file:
        text = open(args.text_file, encoding="utf-8").read()
    else:
        text = load_sample_text()
    return text if args.chars is None else text[:args.chars]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=None,
                        help="use the first CHARS characters of the text (default: all, ~1 MB)")
    parser.add_argument("--text-file", default=None,
                        help="a UTF-8 text file instead of the shipped sample text")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--plain", choices=["auto", "full", "estimate", "skip"], default="auto")
    parser.add_argument("--plain-budget", type=float, default=900.0,
                        help="seconds: with --plain auto, run the plain trainer in full if the "
                             "estimate is below this")
    parser.add_argument("--plain-merges", type=int, default=20,
                        help="merges of the real train_plain timed before estimating")
    parser.add_argument("--plain-points", type=int, default=9,
                        help="places along the training where plain steps are timed")
    parser.add_argument("--plain-steps", type=int, default=3,
                        help="plain steps timed at each place (the best counts)")
    parser.add_argument("--gpt4-chars", type=int, default=None,
                        help="characters of the text for the GPT-4 encoders (default: all)")
    parser.add_argument("--hf-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fast-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.hf_worker:
        return hf_worker(args)
    if args.fast_worker:
        return fast_worker(args)

    text = load_text(args)
    nbytes = len(text.encode("utf-8"))
    mb = nbytes / 1e6
    num_merges = args.vocab_size - 256
    print(f"machine: {machine()}")
    print(f"text: {nbytes:,} bytes ({len(text):,} characters), vocab_size {args.vocab_size} "
          f"({num_merges} merges), best of {args.repeats}")
    print(f"command: python bench/bench_tokenizer.py {' '.join(sys.argv[1:])}".rstrip())
    results = {}

    # ---- (a) training ----------------------------------------------------------------------
    print("\n(a) BPE training, RegexTokenizer.train (GPT-4 split pattern), end to end")
    chunk_s, chunks = best_time(lambda: tk.RegexTokenizer()._chunks(text), args.repeats)
    print(f"  split into chunks (regex)        {chunk_s:8.2f} s   {len(chunks):,} chunks, "
          f"{len(set(chunks)):,} distinct")

    def train_fast():
        tok = tk.RegexTokenizer()
        tok.train(text, args.vocab_size)
        return tok

    fast_s, fast_tok = best_time(train_fast, args.repeats)
    tracemalloc.start()
    train_fast()
    fast_peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    rss = run_worker(args, "fast")
    print(f"  train_fast                       {fast_s:8.2f} s   peak Python memory "
          f"{fast_peak:.0f} MB (tracemalloc); peak RSS of a process that only trains "
          f"{rss['maxrss_mb']:.0f} MB ({rss['before_mb']:.0f} MB before training)")
    results["fast_s"] = fast_s

    plain_mode = args.plain
    if plain_mode == "auto":
        # first guess: the real train_plain for a few merges, as if every merge cost the same
        # (an overestimate: merges get cheaper as the text shortens)
        start = time.perf_counter()
        tk.train_plain(chunks, 256 + min(5, num_merges))
        guess = (time.perf_counter() - start) / min(5, num_merges) * num_merges
        plain_mode = "full" if guess <= args.plain_budget else "estimate"
        print(f"  train_plain first guess          {guess:8.0f} s   -> {plain_mode} "
              f"(budget {args.plain_budget:.0f} s)")
    if plain_mode == "full":
        plain_tok = tk.RegexTokenizer()
        start = time.perf_counter()
        plain_tok.train(text, args.vocab_size, algorithm="plain")
        plain_s = time.perf_counter() - start
        assert list(plain_tok.merges.items()) == list(fast_tok.merges.items()), "plain != fast"
        print(f"  train_plain (measured in full)   {plain_s:8.1f} s   same merges as train_fast: yes")
    elif plain_mode == "estimate":
        prefix_merges = min(args.plain_merges, num_merges)
        prefix_s, total, samples = estimate_plain(
            chunks, fast_tok.merges, num_merges, prefix_merges,
            args.plain_points, args.plain_steps)
        plain_s = chunk_s + total  # train() splits the text first, then merges
        plain_low = chunk_s + num_merges * min(t for _, t, _ in samples)
        plain_high = chunk_s + num_merges * prefix_s / prefix_merges
        print(f"  train_plain, first {prefix_merges} merges      {prefix_s:8.1f} s   "
              f"({prefix_s / prefix_merges:.3f} s/merge; same merges as train_fast: yes)")
        print("  plain step time along the training (merge number: s/step, ids in the text):")
        print("    " + ", ".join(f"{at}: {t:.3f} s ({n / 1e3:.0f}k)" for at, t, n in samples))
        print(f"  train_plain (estimated, all {num_merges}) {plain_s:8.0f} s   = split "
              f"{chunk_s:.1f} s + trapezoid over the step times; between {plain_low:.0f} s "
              f"(cheapest step x {num_merges}) and {plain_high:.0f} s (first merges' rate "
              f"x {num_merges})")
    else:
        plain_s = None
    results["plain_s"] = plain_s

    # BasicTokenizer: the whole text is one chunk, so nothing is deduplicated and the position
    # lists cover every byte -- the memory-heavy case of train_fast.
    def train_basic():
        tok = tk.BasicTokenizer()
        tok.train(text, args.vocab_size)
        return tok

    basic_s, _ = best_time(train_basic, 1)
    tracemalloc.start()
    train_basic()
    basic_peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    print(f"  train_fast, BasicTokenizer       {basic_s:8.2f} s   (no split: one {mb:.1f} MB chunk) "
          f"peak Python memory {basic_peak:.0f} MB")

    hf = {}
    try:
        for threads in (1, os.cpu_count() or 1):
            if threads not in hf:
                hf[threads] = run_worker(args, "hf", threads)
    except (ImportError, subprocess.CalledProcessError) as e:
        print(f"  HF tokenizers: not measured ({e})")
    for threads, r in hf.items():
        print(f"  HF tokenizers, {threads} thread{'s' if threads > 1 else ' '}       "
              f"{r['seconds']:8.2f} s   peak RSS of a process that only trains "
              f"{r['maxrss_mb']:.0f} MB")
    if hf:
        r = hf[1]
        ours = {fast_tok.vocab[i].hex() for i in fast_tok.merges.values()}
        common = len(ours & set(r["learned"]))
        print(f"  HF pre-tokens identical to ours: {'yes' if r['same_pretokens'] else 'NO'}; "
              f"learned tokens in common: {common} of {num_merges}")

    # ---- (b) encoding ------------------------------------------------------------------------
    # encode_ordinary on both sides: the text has no special tokens, and tiktoken's encode() on
    # an Encoding without special tokens is much slower than its encode_ordinary() (measured
    # here; the special-token search seems to run at every position), which would flatter the
    # ratio. encode() is shown too. tiktoken is cheap to time, so it gets more repeats.
    print("\n(b) encoding throughput, pure Python vs to_tiktoken() export, 1 thread")
    t_repeats = max(args.repeats, 10)

    def encode_pair(label, tok, enc, sample):
        smb = len(sample.encode("utf-8")) / 1e6
        pure_s, pure_ids = best_time(lambda: tok.encode_ordinary(sample), args.repeats)
        tt_s, tt_ids = best_time(lambda: enc.encode_ordinary(sample), t_repeats)
        assert pure_ids == tt_ids, f"{label}: tiktoken gives other ids than the pure-Python encoder"
        pure_full_s, _ = best_time(lambda: tok.encode(sample), 1)
        tt_full_s, tt_full_ids = best_time(lambda: enc.encode(sample), t_repeats)
        assert tt_full_ids == pure_ids
        pieces = [sample[i:i + 50_000] for i in range(0, len(sample), 50_000)]
        batch_s, _ = best_time(lambda: enc.encode_ordinary_batch(pieces, num_threads=os.cpu_count()),
                               t_repeats)
        n = len(pure_ids)
        print(f"  {label} ({smb:.2f} MB, {n:,} tokens)")
        print(f"    pure Python encode_ordinary   {smb / pure_s:8.2f} MB/s {n / pure_s / 1e3:8.0f}k tokens/s")
        print(f"    tiktoken encode_ordinary      {smb / tt_s:8.2f} MB/s {n / tt_s / 1e3:8.0f}k tokens/s"
              f"   same ids: yes   ratio {pure_s / tt_s:.1f}x")
        print(f"    encode() (special-token check): pure {smb / pure_full_s:.2f} MB/s, tiktoken "
              f"{smb / tt_full_s:.2f} MB/s, ratio {pure_full_s / tt_full_s:.1f}x")
        print(f"    tiktoken encode_ordinary_batch, {os.cpu_count()} threads: {smb / batch_s:.2f} MB/s, "
              f"ratio {pure_s / batch_s:.1f}x")
        return pure_s / tt_s

    results["encode_ratio"] = encode_pair(f"trained RegexTokenizer, vocab {args.vocab_size}",
                                          fast_tok, fast_tok.to_tiktoken(), text)
    # Why encode_ordinary: the same export with one special token registered, timed in turns
    # with the one without, so both see the same load on the machine.
    with_special = tk.RegexTokenizer()
    with_special.merges = dict(fast_tok.merges)
    with_special.register_special_tokens({"<|endoftext|>": args.vocab_size})
    encs = {"no special token": fast_tok.to_tiktoken(), "one special token": with_special.to_tiktoken()}
    times = {name: [] for name in encs}
    for _ in range(t_repeats):
        for name, e in encs.items():
            start = time.perf_counter()
            e.encode(text)
            times[name].append(time.perf_counter() - start)
    print("    tiktoken encode(), best of {} in turns: {}".format(t_repeats, ", ".join(
        f"{name} {mb / min(t):.2f} MB/s" for name, t in times.items())))

    gtext = text if args.gpt4_chars is None else text[:args.gpt4_chars]
    cl100k = tk.cl100k_base()
    results["gpt4_encode_ratio"] = encode_pair("GPT4Tokenizer vs tiktoken cl100k_base",
                                               tk.GPT4Tokenizer(), cl100k, gtext)
    # Diagnosis only: what tiktoken's split costs. The same ranks with GPT-4's pattern minus its
    # look-ahead and possessive quantifiers (which need fancy_regex's backtracking engine);
    # it splits some text differently, so its ids are not cl100k's.
    import tiktoken

    plain_pattern = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
                     r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+""")
    simple = tiktoken.Encoding("diagnosis", pat_str=plain_pattern,
                               mergeable_ranks=tk.load_cl100k_ranks(), special_tokens={})
    times = {"GPT-4's pattern": [], "no look-ahead/possessive": []}
    for _ in range(t_repeats):
        for name, e in zip(times, (cl100k, simple)):
            start = time.perf_counter()
            e.encode_ordinary(gtext)
            times[name].append(time.perf_counter() - start)
    gmb = len(gtext.encode("utf-8")) / 1e6
    print("    tiktoken split cost, cl100k ranks, best of {} in turns: {}".format(t_repeats, ", ".join(
        f"{name} {gmb / min(t):.2f} MB/s" for name, t in times.items())))

    # ---- ratios against the targets ----------------------------------------------------------
    print("\nratios (target in brackets)")
    rows = []
    if plain_s is not None:
        if plain_mode == "full":
            rows.append(("train: plain / fast (measured)", plain_s / fast_s, ">=",
                         TARGETS["plain/fast"]))
        else:
            rows.append(("train: plain / fast (estimated)", plain_s / fast_s, "~", None))
            rows.append(("train: plain / fast (lower bound)", plain_low / fast_s, ">=",
                         TARGETS["plain/fast"]))
    for threads, r in hf.items():
        rows.append((f"train: fast / HF ({threads} thread{'s' if threads > 1 else ''})",
                     fast_s / r["seconds"], "<=", TARGETS["fast/HF"]))
    rows.append((f"encode: pure Python / tiktoken (vocab {args.vocab_size})",
                 results["encode_ratio"], ">=", TARGETS["pure/tiktoken"]))
    rows.append(("encode: pure Python / tiktoken (GPT-4)", results["gpt4_encode_ratio"], ">=",
                 TARGETS["pure/tiktoken"]))
    for name, value, op, target in rows:
        if target is None:
            print(f"  {name:48s} {value:9.1f}x")
            continue
        met = value >= target if op == ">=" else value <= target
        print(f"  {name:48s} {value:9.1f}x  [{op} {target:.0f}x] {'met' if met else 'MISSED'}")
    print(f"\npeak RSS of this process: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
