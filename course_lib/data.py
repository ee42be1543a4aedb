"""From a web crawl to a pretraining corpus: the stages of a FineWeb-like cleaning pipeline.

Introduced in chapter 1 (Pretraining data). FineWeb (HuggingFace, 2024) starts from Common
Crawl's raw pages and keeps about 15 trillion tokens of good English text. Its stages, in order,
and the small function here that does each one on the course's mini crawl (``course_lib.crawl``):

1. **URL filtering** (``url_filter``): drop pages from blocklisted domains (adult, gambling,
   spam) and URLs full of banned words.
2. **Text extraction** (``extract_text``): HTML to the text a reader sees, without scripts,
   styles, menus and footers. FineWeb used ``trafilatura``; ``extract_text_trafilatura`` does too.
3. **Language identification** (``language_score``): a character n-gram naive Bayes model gives
   the probability that the text is English; FineWeb kept pages that fastText scored >= 0.65.
   ``language_score_langid`` is the production alternative (langid.py's model ships offline).
4. **Quality filters** (``gopher_quality``, ``gopher_repetition``, ``c4_filter``,
   ``fineweb_filter``): heuristics from DeepMind's Gopher, Google's C4 and FineWeb itself:
   too few words, too many symbols, repeated lines and n-grams, lorem ipsum, code.
5. **Deduplication**: exact (``exact_hash`` of the normalised text) and near duplicates
   (``minhash_signature`` + locality-sensitive hashing in ``near_duplicate_pairs``;
   ``near_duplicate_pairs_datasketch`` is the production alternative).
6. **PII removal** (``redact_pii``): e-mail addresses, phone numbers and IP addresses become
   ``<EMAIL>``, ``<PHONE>`` and ``<IP>``.

``run_pipeline`` runs them all over the crawl with HuggingFace ``datasets`` (``map`` with
``num_proc`` worker processes), records for every page the stage that removed it and why (a
broken record is removed with a reason, never a crash), and ``write_corpus`` saves the survivors
as parquet in FineWeb's schema. ``python -m course_lib.data`` remakes the shipped corpus.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import re
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from course_lib import assets, crawl

# --------------------------------------------------------------------------------------------
# 1. URL filtering
# --------------------------------------------------------------------------------------------

# A tiny stand-in for the UT1 blocklist FineWeb used (its adult, gambling, phishing lists).
BLOCKLIST = {
    "adult": {"hot-singles-xxx.com", "xxx-videos-free.net", "adult-dating-now.biz"},
    "gambling": {"casino-bonanza.biz", "mega-slots-win.com"},
    "spam": {"cheap-pills-store.biz", "free-gift-cards.click"},
}
# FineWeb also removes URLs containing banned words (and soft-banned words seen twice or more).
BANNED_URL_WORDS = {"xxx", "porn", "sexy", "casino", "slots"}
SOFT_BANNED_URL_WORDS = {"adult", "dating", "bets", "pills", "cheap", "loans", "win"}


def url_filter(url: str) -> str | None:
    """None when the URL may be crawled, else the reason it is blocked."""
    if not isinstance(url, str) or not url:
        return "missing or empty url"
    host = (urlsplit(url).hostname or "").lower()
    parts = host.split(".")
    for category, domains in BLOCKLIST.items():
        for i in range(len(parts) - 1):
            if ".".join(parts[i:]) in domains:
                return f"blocklisted domain ({category}): {host}"
    words = set(re.split(r"[^a-z0-9]+", url.lower()))
    banned = sorted(words & BANNED_URL_WORDS)
    if banned:
        return f"banned word in url: {banned[0]}"
    soft = sorted(words & SOFT_BANNED_URL_WORDS)
    if len(soft) >= 2:
        return f"soft-banned words in url: {', '.join(soft)}"
    return None


# --------------------------------------------------------------------------------------------
# 2. Text extraction
# --------------------------------------------------------------------------------------------

# Elements whose text a reader never sees as the article.
SKIP_TAGS = {"script", "style", "noscript", "head", "nav", "header", "footer", "aside", "form",
             "template", "svg", "button", "select", "iframe"}
# Elements that start a new line of text.
BLOCK_TAGS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol", "tr", "table",
              "br", "article", "main", "section", "blockquote", "pre", "dd", "dt", "hr", "body",
              "title"}
_VOID_TAGS = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed",
              "source", "track", "wbr"}


class _TextExtractor(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skip_depth = 0
        self.stack: list[str] = []

    def _newline(self):
        line = " ".join("".join(self.current).split())
        if line:
            self.lines.append(line)
        self.current = []

    def handle_starttag(self, tag, attrs):
        if tag in _VOID_TAGS:
            if tag in BLOCK_TAGS and not self.skip_depth:
                self._newline()
            return
        self.stack.append(tag)
        if tag in SKIP_TAGS:
            self.skip_depth += 1
        elif tag in BLOCK_TAGS and not self.skip_depth:
            self._newline()

    def handle_endtag(self, tag):
        if tag not in self.stack:
            return  # a stray end tag: ignore, as browsers do
        while self.stack:  # close anything left open inside it (broken HTML)
            t = self.stack.pop()
            if t in SKIP_TAGS:
                self.skip_depth -= 1
            if t == tag:
                break
        if tag in BLOCK_TAGS and not self.skip_depth:
            self._newline()

    def handle_data(self, data):
        if not self.skip_depth:
            self.current.append(data)


def extract_text(html: str) -> str:
    """The visible text of a page without boilerplate elements: everything outside
    ``SKIP_TAGS`` (scripts, styles, menus, headers, footers, sidebars, forms), one line per block
    element, whitespace collapsed, entities decoded, empty lines dropped."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    parser._newline()
    return "\n".join(parser.lines)


def extract_text_trafilatura(html: str) -> str:
    """The production extractor FineWeb used: trafilatura finds the main content of the page
    (dropping menus, cookie banners and link lists by their structure, not only their tags)."""
    import trafilatura

    text = trafilatura.extract(html, include_comments=False, include_tables=True,
                               favor_precision=True, deduplicate=False)
    return text or ""


# --------------------------------------------------------------------------------------------
# 3. Language identification
# --------------------------------------------------------------------------------------------

def language_training_texts(split: str = "train") -> dict:
    """Real texts by language (``"train"``: every even document, ``"test"``: every odd one): what
    the language identifier learns from. Not a stage: students may call it (the assignment's
    ``allowed``)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    out: dict = {}
    for k, d in enumerate(sorted(crawl.load_real_text(), key=lambda d: d["id"])):
        if k % 2 == (0 if split == "train" else 1):
            out.setdefault(d["lang"], []).append(d["text"])
    return out


LANGUAGE_THRESHOLD = 0.65  # FineWeb keeps pages whose English score is at least this


def char_ngrams(text: str, n: int = 3) -> list[str]:
    """Character n-grams of the lowercased text with spaces marking word edges
    (``"the cat"`` -> ``" th", "the", "he ", ...``); digits and punctuation become spaces."""
    text = " " + " ".join(re.sub(r"[\d\W_]+", " ", text.lower()).split()) + " "
    return [text[i:i + n] for i in range(len(text) - n + 1)] if text.strip() else []


@dataclass
class LanguageModel:
    """Character trigram counts per language, for a naive Bayes language identifier.

    ``logp[lang][g]`` is ``log P(g | lang)`` with add-one smoothing; ``unseen[lang]`` is the
    log-probability of a trigram the language never showed."""

    counts: dict           # lang -> Counter of trigrams
    totals: dict           # lang -> total count
    vocab_size: int
    logp: dict = field(default_factory=dict)
    unseen: dict = field(default_factory=dict)

    @classmethod
    def train(cls, texts_by_lang: dict) -> LanguageModel:
        counts = {lang: Counter(g for t in texts for g in char_ngrams(t))
                  for lang, texts in texts_by_lang.items()}
        vocab = len(set().union(*counts.values())) + 1
        totals = {k: sum(c.values()) for k, c in counts.items()}
        logp = {lang: {g: math.log(n + 1) - math.log(totals[lang] + vocab) for g, n in c.items()}
                for lang, c in counts.items()}
        unseen = {lang: -math.log(totals[lang] + vocab) for lang in counts}
        return cls(counts, totals, vocab, logp, unseen)


_MODEL_CACHE: dict = {}


def language_model() -> LanguageModel:
    """The teaching language identifier, trained on the training half of the real text that
    ships with the course (``language_training_texts``), cached."""
    if "model" not in _MODEL_CACHE:
        _MODEL_CACHE["model"] = LanguageModel.train(language_training_texts())
    return _MODEL_CACHE["model"]


def language_scores(text: str, model: LanguageModel | None = None,
                    max_ngrams: int = 1000) -> dict:
    """Probability of each language given the text: naive Bayes over character trigrams with
    add-one smoothing and a uniform prior (the first ``max_ngrams`` trigrams are enough)."""
    model = model or language_model()
    grams = char_ngrams(text)[:max_ngrams]
    if not grams:
        return {lang: 1.0 / len(model.counts) for lang in model.counts}
    logp = {}
    for lang, table in model.logp.items():
        # log P(text | lang) = sum over the text's trigrams of log P(trigram | lang)
        logp[lang] = sum(map(table.get, grams, itertools.repeat(model.unseen[lang])))
    top = max(logp.values())
    z = sum(math.exp(v - top) for v in logp.values())
    return {lang: math.exp(v - top) / z for lang, v in logp.items()}


def language_score(text: str, lang: str = "en", model: LanguageModel | None = None) -> float:
    """The probability (0..1) that ``text`` is written in ``lang``."""
    return language_scores(text, model).get(lang, 0.0)


def language_score_langid(text: str, lang: str = "en") -> float:
    """The production alternative: langid.py's model (97 languages, ships inside the
    ``py3langid`` package, no download), its normalised probability for ``lang``."""
    if "langid" not in _MODEL_CACHE:
        import py3langid.langid as L

        _MODEL_CACHE["langid"] = L.LanguageIdentifier.from_modelpath(L.MODEL_DIR / L.MODEL_FILE,
                                                                     norm_probs=True)
    ident = _MODEL_CACHE["langid"]
    return dict(ident.rank(text)).get(lang, 0.0)


# --------------------------------------------------------------------------------------------
# 4. Quality filters (each returns None to keep, or the reason to remove)
# --------------------------------------------------------------------------------------------

STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}


def gopher_quality(text: str, min_words: int = 50, max_words: int = 100_000) -> str | None:
    """DeepMind Gopher's quality rules (Rae et al. 2021, appendix A)."""
    words = text.split()
    n = len(words)
    if n < min_words:
        return f"too few words ({n} < {min_words})"
    if n > max_words:
        return f"too many words ({n} > {max_words})"
    mean_len = sum(len(w) for w in words) / n
    if not 3 <= mean_len <= 10:
        return f"mean word length {mean_len:.1f} outside 3..10"
    symbols = text.count("#") + text.count("...") + text.count("\u2026")
    if symbols / n > 0.1:
        return f"symbol-to-word ratio {symbols / n:.2f} > 0.1"
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if lines and sum(ln.lstrip().startswith(("-", "*", "\u2022")) for ln in lines) / len(lines) > 0.9:
        return "more than 90% of lines are bullet points"
    if lines and sum(ln.rstrip().endswith(("...", "\u2026")) for ln in lines) / len(lines) > 0.3:
        return "more than 30% of lines end with an ellipsis"
    alpha = sum(any(ch.isalpha() for ch in w) for w in words) / n
    if alpha < 0.8:
        return f"only {alpha:.0%} of words contain a letter (< 80%)"
    lowered = {w.lower().strip(".,;:!?\"'()") for w in words}
    if len(lowered & STOP_WORDS) < 2:
        return "fewer than 2 English stop words"
    return None


def _top_ngram_share(words: list[str], n: int) -> float:
    grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    if not grams:
        return 0.0
    gram, count = grams.most_common(1)[0]
    if count < 2:
        return 0.0
    return count * sum(len(w) for w in gram) / max(1, sum(len(w) for w in words))


def gopher_repetition(text: str) -> str | None:
    """Gopher's repetition rules: repeated lines and paragraphs, and one n-gram taking a large
    share of the characters (keyword spam)."""
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    if lines:
        dup = len(lines) - len(set(lines))
        if dup / len(lines) > 0.3:
            return f"{dup / len(lines):.0%} of lines are repeated (> 30%)"
        counts = Counter(lines)
        dup_chars = sum(len(ln) * (c - 1) for ln, c in counts.items() if c > 1)
        if dup_chars / sum(len(ln) for ln in lines) > 0.2:
            return "repeated lines hold more than 20% of the characters"
    words = text.lower().split()
    for n, limit in ((2, 0.2), (3, 0.18), (4, 0.16)):
        share = _top_ngram_share(words, n)
        if share > limit:
            return f"the most common {n}-gram covers {share:.0%} of characters (> {limit:.0%})"
    return None


_C4_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
              "use cookies")


def c4_filter(text: str) -> tuple[str | None, str]:
    """C4's rules (Raffel et al. 2020): drop the page for "lorem ipsum" or a curly bracket
    (code); drop lines about JavaScript or cookies. Returns ``(reason or None, text)``."""
    low = text.lower()
    if "lorem ipsum" in low:
        return "contains 'lorem ipsum'", text
    if "{" in text:
        return "contains a curly bracket (code)", text
    kept = [ln for ln in text.split("\n")
            if "javascript" not in ln.lower() and not any(p in ln.lower() for p in _C4_POLICY)]
    return None, "\n".join(kept)


def fineweb_filter(text: str) -> str | None:
    """FineWeb's own rules (Penedo et al. 2024): enough lines end in punctuation, few characters
    in duplicated lines, not mostly short lines."""
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    if not lines:
        return "no text"
    punct = sum(ln.endswith((".", "!", "?", '"', ":")) for ln in lines) / len(lines)
    if punct < 0.12:
        return f"only {punct:.0%} of lines end with punctuation (< 12%)"
    short = sum(len(ln) < 30 for ln in lines) / len(lines)
    if short > 0.67:
        return f"{short:.0%} of lines are shorter than 30 characters (> 67%)"
    return None


# --------------------------------------------------------------------------------------------
# 5. Deduplication
# --------------------------------------------------------------------------------------------


def normalize_text(text: str) -> str:
    """Lowercase, collapse whitespace: two copies that differ only in these are the same."""
    return " ".join(text.lower().split())


def exact_hash(text: str) -> str:
    """A fingerprint of the normalised text (SHA-1, as hex)."""
    return hashlib.sha1(normalize_text(text).encode("utf-8")).hexdigest()


def shingles(text: str, ngram: int = 5) -> set[tuple]:
    """The set of ``ngram`` consecutive lowercased words (all words when there are fewer)."""
    words = text.lower().split()
    if len(words) < ngram:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + ngram]) for i in range(len(words) - ngram + 1)}


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b| (1.0 for two empty sets)."""
    return len(a & b) / len(a | b) if a or b else 1.0


MERSENNE_PRIME = (1 << 31) - 1  # hashes are numbers below this prime


def _shingle_hash(shingle: tuple) -> int:
    # CRC-32 is the same in every process (Python's hash() of a str is not)
    return zlib.crc32(" ".join(shingle).encode("utf-8")) % MERSENNE_PRIME


def _hash_params(num_perm: int, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randrange(1, MERSENNE_PRIME), rng.randrange(0, MERSENNE_PRIME))
            for _ in range(num_perm)]


def minhash_signature(text: str, num_perm: int = 128, ngram: int = 5, seed: int = 0) -> list[int]:
    """MinHash: for each of ``num_perm`` random hash functions ``h(x) = (a*x + b) mod p`` (a, b
    drawn with ``seed``, p = 2^31 - 1, x the CRC-32 of a shingle), the smallest hash over the
    text's shingles. Two texts agree at a
    position with probability equal to their Jaccard similarity."""
    params = _hash_params(num_perm, seed)
    xs = [_shingle_hash(s) for s in shingles(text, ngram)]
    if not xs:
        return [MERSENNE_PRIME] * num_perm
    return [min((a * x + b) % MERSENNE_PRIME for x in xs) for a, b in params]


def minhash_signatures(texts: list[str], num_perm: int = 128, ngram: int = 5, seed: int = 0):
    """``minhash_signature`` for many texts at once, vectorised with NumPy (same values):
    an array of shape ``(len(texts), num_perm)``."""
    import numpy as np

    params = _hash_params(num_perm, seed)
    a = np.array([p[0] for p in params], dtype=np.uint64)
    b = np.array([p[1] for p in params], dtype=np.uint64)
    out = np.full((len(texts), num_perm), MERSENNE_PRIME, dtype=np.uint64)
    for i, t in enumerate(texts):
        xs = np.array([_shingle_hash(s) for s in shingles(t, ngram)], dtype=np.uint64)
        if len(xs):  # a, b, x < 2^31, so a*x + b < 2^63: exact in 64 bits
            out[i] = ((xs[:, None] * a[None, :] + b[None, :]) % MERSENNE_PRIME).min(axis=0)
    return out


def estimated_jaccard(sig_a: list[int], sig_b: list[int]) -> float:
    """The share of positions where two MinHash signatures agree."""
    if len(sig_a) != len(sig_b) or not len(sig_a):
        raise ValueError(f"signatures must have the same non-zero length, got {len(sig_a)} and "
                         f"{len(sig_b)}; make both with the same num_perm")
    return sum(x == y for x, y in zip(sig_a, sig_b)) / len(sig_a)


def lsh_params(threshold: float, num_perm: int, recall: float = 0.99) -> tuple[int, int]:
    """Bands and rows (bands * rows <= num_perm) for LSH: two documents become candidates
    when they agree on all ``rows`` values of at least one band, which happens with probability
    ``1 - (1 - s**rows)**bands`` for Jaccard similarity ``s``. The most rows (fewest false
    candidates) that still find a pair at ``threshold`` with probability ``recall``."""
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if 1 - (1 - threshold ** rows) ** bands >= recall:
            best = (bands, rows)
    return best


def lsh_candidates(signatures, bands: int, rows: int) -> set[tuple[int, int]]:
    """Locality-sensitive hashing: documents whose signatures agree on every row of at least
    one band land in the same bucket; every pair sharing a bucket is a candidate."""
    pairs = set()
    for band in range(bands):
        buckets: dict = {}
        for i, sig in enumerate(signatures):
            key = tuple(int(v) for v in sig[band * rows:(band + 1) * rows])
            buckets.setdefault(key, []).append(i)
        for ids in buckets.values():
            for x in range(len(ids)):
                for y in range(x + 1, len(ids)):
                    pairs.add((ids[x], ids[y]))
    return pairs


def near_duplicate_pairs(docs: list[str], threshold: float = 0.8, num_perm: int = 128,
                         ngram: int = 5, seed: int = 0) -> set[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of documents whose estimated Jaccard similarity of word
    5-gram shingles is at least ``threshold``: MinHash signatures, LSH candidates, then each
    candidate checked with its signatures."""
    sigs = minhash_signatures(docs, num_perm, ngram, seed)
    bands, rows = lsh_params(threshold, num_perm)
    return {(i, j) for i, j in lsh_candidates(sigs, bands, rows)
            if (sigs[i] == sigs[j]).mean() >= threshold}


def near_duplicate_pairs_datasketch(docs: list[str], threshold: float = 0.8,
                                    num_perm: int = 128, ngram: int = 5, seed: int = 0
                                    ) -> set[tuple[int, int]]:
    """The production alternative: ``datasketch``'s MinHash and MinHashLSH, the same idea."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    hashes = []
    for i, d in enumerate(docs):
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch([" ".join(s).encode("utf-8") for s in sorted(shingles(d, ngram))])
        hashes.append(m)
        lsh.insert(str(i), m)
    pairs = set()
    for i, m in enumerate(hashes):
        for key in lsh.query(m):
            j = int(key)
            if j != i and m.jaccard(hashes[j]) >= threshold:
                pairs.add((min(i, j), max(i, j)))
    return pairs


def duplicate_clusters(n: int, pairs) -> list[int]:
    """Union-find over ``pairs``: for each document the index of the first document of its
    cluster (a document is a duplicate when that index is not its own)."""
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(n)]


# --------------------------------------------------------------------------------------------
# 6. PII removal
# --------------------------------------------------------------------------------------------

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4_RE = re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)")
PHONE_RE = re.compile(r"(?<![\w+(])(?:\+1[ -])?(?:\(\d{3}\) |\d{3}[-. ])\d{3}[-. ]\d{4}(?!\d)")


def redact_pii(text: str) -> str:
    """Replace e-mail addresses with ``<EMAIL>``, IPv4 addresses with ``<IP>`` and
    North American phone numbers (``555-123-4567``, ``555.123.4567``, ``555 123 4567``,
    ``(555) 123-4567``, each optionally after ``+1 `` or ``+1-``) with ``<PHONE>``."""
    text = EMAIL_RE.sub("<EMAIL>", text)
    text = IPV4_RE.sub("<IP>", text)
    return PHONE_RE.sub("<PHONE>", text)


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------

STAGES = ("decode", "url_filter", "extract", "language", "gopher_quality", "gopher_repetition",
          "c4", "fineweb", "exact_dedup", "near_dedup", "pii")
STAGE_TITLES = {"decode": "read the record", "url_filter": "URL filter",
                "extract": "HTML to text", "language": "language ID", "gopher_quality":
                "Gopher quality", "gopher_repetition": "Gopher repetition", "c4": "C4 rules",
                "fineweb": "FineWeb rules", "exact_dedup": "exact dedup",
                "near_dedup": "MinHash dedup", "pii": "PII removal"}


def decode_record(record: dict) -> tuple[str | None, str]:
    """``(reason or None, html)``: a record must have a url and html bytes that are UTF-8."""
    for key in ("id", "url", "html"):
        if record.get(key) is None:
            return f"missing field '{key}'", ""
    raw = record["html"]
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if not raw.strip():
        return "empty page", ""
    try:
        return None, raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"bytes are not UTF-8 ({e.reason} at byte {e.start})", ""


@dataclass
class PipelineOptions:
    """Which implementation each stage uses, and its thresholds."""

    extractor: str = "teaching"      # or "trafilatura"
    language_id: str = "teaching"    # or "langid"
    near_dedup: str = "teaching"     # or "datasketch"
    language: str = "en"
    language_threshold: float = LANGUAGE_THRESHOLD
    min_words: int = 50
    dedup_threshold: float = 0.8
    num_perm: int = 128


# FineWeb's choices: trafilatura for extraction, a trained language-ID model, datasketch-style
# MinHash LSH. The teaching stages above are what the chapter explains and students write.
PRODUCTION = PipelineOptions(extractor="trafilatura", language_id="langid", near_dedup="datasketch")


def _process_page(rec: dict, opts: PipelineOptions) -> dict:
    """Stages 1-4 on one record: the text and, if it was removed, which stage and why."""
    out = {"text": "", "language_score": 0.0, "removed_stage": "", "removed_reason": ""}

    def removed(stage, reason):
        out.update(removed_stage=stage, removed_reason=reason)
        return out

    try:
        reason, html = decode_record(rec)
        if reason:
            return removed("decode", reason)
        reason = url_filter(rec["url"])
        if reason:
            return removed("url_filter", reason)
        text = (extract_text_trafilatura(html) if opts.extractor == "trafilatura"
                else extract_text(html))
        out["text"] = text
        if not text.strip():
            return removed("extract", "no text left after extraction")
        score = (language_score_langid(text, opts.language) if opts.language_id == "langid"
                 else language_score(text, opts.language))
        out["language_score"] = round(float(score), 4)
        if score < opts.language_threshold:
            return removed("language", f"{opts.language} score {score:.2f} < "
                                       f"{opts.language_threshold}")
        reason, text = c4_filter(text)  # its line removal runs before the other filters
        out["text"] = text
        for stage, check in (("gopher_quality", lambda t: gopher_quality(t, opts.min_words)),
                             ("gopher_repetition", gopher_repetition),
                             ("c4", lambda t: reason), ("fineweb", fineweb_filter)):
            r = check(text)
            if r:
                return removed(stage, r)
    except Exception as e:  # never let one page stop the crawl: remove it with the reason
        return removed("decode", f"could not be processed: {type(e).__name__}: {e}")
    return out


@dataclass
class PipelineResult:
    """The cleaned corpus and the story of every page."""

    corpus: object                  # datasets.Dataset in FineWeb's schema
    pages: object                   # datasets.Dataset: every record with removed_stage/reason
    stage_counts: list = field(default_factory=list)   # (stage, pages left, bytes left)
    seconds: dict = field(default_factory=dict)        # stage -> seconds

    def removed(self, stage: str) -> list[dict]:
        return [r for r in self.pages if r["removed_stage"] == stage]


def run_pipeline(records, options: PipelineOptions | None = None, num_proc: int = 1,
                 progress: bool = True) -> PipelineResult:
    """Run every stage over crawl records (a list of dicts or a ``datasets.Dataset`` with
    ``id, url, fetch_date, html``). Returns the corpus and, for each page, the stage that
    removed it and why. Deterministic: the same records give the same corpus."""
    import datasets

    opts = options or PipelineOptions()
    if opts.language_id == "teaching":
        language_model()  # train once here, so that forked workers inherit it
    bars_were_on = datasets.is_progress_bar_enabled()
    if not progress:
        datasets.disable_progress_bars()
    try:
        ds = records if isinstance(records, datasets.Dataset) else datasets.Dataset.from_list(
            [_complete(r) for r in records])
        seconds = {}
        t0 = time.perf_counter()
        ds = ds.map(_process_page, fn_kwargs={"opts": opts}, num_proc=num_proc if num_proc > 1
                    else None, desc="decode, URL, extract, language, quality")
        seconds["per-page stages"] = time.perf_counter() - t0

        # exact dedup: the first page with each fingerprint stays
        t0 = time.perf_counter()
        alive = [i for i, s in enumerate(ds["removed_stage"]) if not s]
        texts = ds["text"]
        first: dict = {}
        stage, reason = list(ds["removed_stage"]), list(ds["removed_reason"])
        ids = ds["id"]
        for i in alive:
            h = exact_hash(texts[i])
            if h in first:
                stage[i], reason[i] = "exact_dedup", f"same text as {ids[first[h]]}"
            else:
                first[h] = i
        seconds["exact_dedup"] = time.perf_counter() - t0

        # near dedup over the survivors
        t0 = time.perf_counter()
        alive = [i for i in alive if not stage[i]]
        docs = [texts[i] for i in alive]
        finder = (near_duplicate_pairs_datasketch if opts.near_dedup == "datasketch"
                  else near_duplicate_pairs)
        pairs = finder(docs, opts.dedup_threshold, opts.num_perm)
        roots = duplicate_clusters(len(docs), pairs)
        for k, root in enumerate(roots):
            if root != k:
                i = alive[k]
                stage[i], reason[i] = "near_dedup", f"near duplicate of {ids[alive[root]]}"
        seconds["near_dedup"] = time.perf_counter() - t0

        ds = ds.remove_columns(["removed_stage", "removed_reason"])
        ds = ds.add_column("removed_stage", stage).add_column("removed_reason", reason)

        t0 = time.perf_counter()
        ds = ds.map(_redact_row, num_proc=num_proc if num_proc > 1 else None,
                    desc="PII removal")
        seconds["pii"] = time.perf_counter() - t0
        counts = _stage_counts(ds)
        kept = ds.filter(lambda s: not s, input_columns="removed_stage")
        corpus = kept.map(_fineweb_row, remove_columns=kept.column_names, desc="FineWeb schema",
                          fn_kwargs={"lang": opts.language})
        return PipelineResult(corpus, ds, counts, seconds)
    finally:
        if not progress and bars_were_on:  # leave the switch as it was found
            datasets.enable_progress_bars()


def _complete(r: dict) -> dict:
    """The record with every column present (a missing field becomes None, removed later)."""
    html = r.get("html")
    if isinstance(html, str):
        html = html.encode("utf-8")
    return {"id": r.get("id"), "url": r.get("url"), "fetch_date": r.get("fetch_date"),
            "html": html, "truth": r.get("truth")}


def _redact_row(row):
    if row["removed_stage"]:
        return {"text": row["text"], "pii_redacted": 0}
    new = redact_pii(row["text"])
    n = sum(new.count(p) - row["text"].count(p) for p in ("<EMAIL>", "<PHONE>", "<IP>"))
    return {"text": new, "pii_redacted": n}


def _fineweb_row(row, lang):
    return {"text": row["text"], "id": row["id"], "dump": "COURSE-CRAWL-2026", "url": row["url"],
            "date": row["fetch_date"], "file_path": "course_lib/crawl.py", "language": lang,
            "language_score": row["language_score"],
            "token_count": len(row["text"].encode("utf-8"))}


def _stage_counts(ds) -> list[tuple[str, int, int]]:
    """Pages and HTML bytes left after each stage (the survival chart)."""
    stages = ds["removed_stage"]
    sizes = [len(h) if h else 0 for h in ds["html"]]
    out = [("crawl", len(stages), sum(sizes))]
    removed_so_far = set()
    for st in STAGES:
        removed_so_far.add(st)
        left = [i for i, s in enumerate(stages) if s not in removed_so_far]
        out.append((st, len(left), sum(sizes[i] for i in left)))
    return out


FINEWEB_COLUMNS = ("text", "id", "dump", "url", "date", "file_path", "language",
                   "language_score", "token_count")


def count_tokens(corpus, encoding=None) -> object:
    """Replace ``token_count`` (UTF-8 bytes until then) with GPT-4 token counts (``cl100k_base``,
    built offline by ``course_lib.tokenizer``), as FineWeb counts with GPT-2's tokenizer."""
    from course_lib.tokenizer import GPT4Tokenizer

    enc = encoding or GPT4Tokenizer().to_tiktoken()
    counts = [len(x) for x in enc.encode_ordinary_batch(corpus["text"])]
    return corpus.remove_columns(["token_count"]).add_column("token_count", counts)


def write_corpus(corpus, path: str | Path, progress: bool = False) -> Path:
    """Save the corpus as parquet (FineWeb's columns); ``progress``: datasets' bar."""
    import datasets

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bars_were_on = datasets.is_progress_bar_enabled()
    if not progress:
        datasets.disable_progress_bars()
    try:
        corpus.select_columns(list(FINEWEB_COLUMNS)).to_parquet(str(path))
    finally:
        if not progress and bars_were_on:
            datasets.enable_progress_bars()
    return path


CORPUS_PATH = assets.path("corpus.parquet", must_exist=False)
load_corpus = assets.load_corpus  # where chapter 1's pages look for it


def corpus_texts(corpus=None) -> list[str]:
    """The documents of the cleaned corpus (the shipped one by default)."""
    return list((corpus if corpus is not None else load_corpus())["text"])


def entity_mentions(world, texts: list[str]) -> dict[str, int]:
    """How many documents of ``texts`` name each entity of the world (its full name)."""
    counts = {}
    for e in world.entities:
        counts[e.name] = sum(e.name in t for t in texts)
    return counts


def training_mentions(world=None, texts: list[str] | None = None) -> tuple:
    """``world`` (the course world by default) and how many of ``texts`` name each entity;
    ``texts`` default to the shipped corpus's training documents (validation split left out)."""
    from course_lib.world import make_world

    world = world or make_world()
    if texts is None:
        texts = [t for i, t in enumerate(corpus_texts()) if i % assets.VAL_EVERY]
    return world, entity_mentions(world, texts)



FINEWEB_NAME = "HuggingFaceFW/fineweb"


def load_fineweb(data_files: str | list | None = None, name: str = "sample-10BT",
                 streaming: bool = True, split: str = "train"):
    """FineWeb itself. With ``data_files=None`` this is the real loader,
    ``load_dataset("HuggingFaceFW/fineweb", name="sample-10BT", streaming=True)`` (it downloads:
    never called by the book or tests); with local parquet ``data_files`` of the same schema
    (such as the course corpus) it reads those, the same way, offline."""
    import datasets

    if data_files is None:
        return datasets.load_dataset(FINEWEB_NAME, name=name, split=split, streaming=streaming)
    ds = datasets.load_dataset("parquet", data_files=data_files, split=split,
                               streaming=streaming)
    missing = set(FINEWEB_COLUMNS) - set(ds.column_names or FINEWEB_COLUMNS)
    if missing:
        raise ValueError(f"{data_files} lacks FineWeb's column(s) {sorted(missing)}; "
                         f"FineWeb rows have {list(FINEWEB_COLUMNS)}")
    return ds


def build_corpus(out: str | Path = CORPUS_PATH, num_proc: int = 2, seed: int = 0,
                 progress: bool = True) -> tuple[PipelineResult, Path]:
    """World -> crawl -> cleaned corpus, written to ``out``, with the production stages
    (``PRODUCTION``: trafilatura, langid.py, datasketch) as FineWeb does; the command
    ``python -m course_lib.data`` runs this."""
    from course_lib import crawl, world

    w = world.make_world(seed)
    records = crawl.render_crawl(w, seed=seed, progress=progress)
    result = run_pipeline(records, PRODUCTION, num_proc=num_proc, progress=progress)
    result.corpus = count_tokens(result.corpus)
    return result, write_corpus(result.corpus, out)


def _main(argv=None):
    import argparse

    p = argparse.ArgumentParser(prog="python -m course_lib.data",
                                description="Render the course crawl and clean it into the "
                                            "pretraining corpus (parquet, FineWeb's schema).")
    p.add_argument("--out", default=str(CORPUS_PATH), help="where to write the parquet file")
    p.add_argument("--num-proc", type=int, default=2, help="worker processes for datasets.map")
    p.add_argument("--seed", type=int, default=0, help="the world's seed")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    result, path = build_corpus(args.out, args.num_proc, args.seed)
    print(f"{'stage':<20}{'pages':>8}{'MB':>9}")
    for st, n, b in result.stage_counts:
        print(f"{st:<20}{n:>8}{b / 1e6:>9.2f}")
    tokens = sum(result.corpus["token_count"])
    print(f"wrote {path}: {len(result.corpus)} documents, {tokens:,} GPT-4 tokens, "
          f"{time.perf_counter() - t0:.0f} s")
    print(json.dumps({k: round(v, 2) for k, v in result.seconds.items()}))


if __name__ == "__main__":
    _main()
