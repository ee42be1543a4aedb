"""Answers to the Pretraining data assignment (chapter 1): right ones written two ways, and
wrong ones, each with the mistake the issue names. Used by tests/test_pretraining_data_checks.py
(in-process) and by make_pretraining_data_submissions.py (notebooks for the grading test).

Every answer is source code as a student would type it in the notebook, where ``TRAINING``
(real text by language, made by the notebook's setup cell) is defined.
"""

# -- correct, close to the reference ------------------------------------------------------------

EXTRACT = '''from html.parser import HTMLParser

SKIP = {"script", "style", "noscript", "head", "nav", "header", "footer", "aside", "form"}
BLOCKS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol", "tr", "table", "br",
          "article", "main", "section", "blockquote", "pre", "body", "title"}

class _Extractor(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.lines, self.current, self.skip, self.open = [], [], 0, []
    def flush(self):
        line = " ".join("".join(self.current).split())
        if line:
            self.lines.append(line)
        self.current = []
    def handle_starttag(self, tag, attrs):
        if tag in ("br", "hr", "img", "meta", "link", "input"):
            self.flush()
            return
        self.open.append(tag)
        if tag in SKIP:
            self.skip += 1
        elif tag in BLOCKS:
            self.flush()
    def handle_endtag(self, tag):
        if tag not in self.open:
            return
        while self.open:
            t = self.open.pop()
            if t in SKIP:
                self.skip -= 1
            if t == tag:
                break
        if tag in BLOCKS:
            self.flush()
    def handle_data(self, data):
        if not self.skip:
            self.current.append(data)

def extract_text(html):
    p = _Extractor()
    p.feed(html)
    p.close()
    p.flush()
    return "\\n".join(p.lines)'''

LANGUAGE = '''import math, re
from collections import Counter

def trigrams(text):
    text = " " + " ".join(re.sub(r"[\\d\\W_]+", " ", text.lower()).split()) + " "
    return [text[i:i + 3] for i in range(len(text) - 2)] if text.strip() else []

PROFILES = {lang: Counter(g for t in texts for g in trigrams(t)) for lang, texts in TRAINING.items()}
TOTALS = {lang: sum(c.values()) for lang, c in PROFILES.items()}
V = len(set().union(*PROFILES.values())) + 1

def language_score(text, lang="en"):
    grams = trigrams(text)[:2000]
    logp = {l: sum(math.log(PROFILES[l][g] + 1) - math.log(TOTALS[l] + V) for g in grams)
            for l in PROFILES}
    top = max(logp.values())
    z = sum(math.exp(v - top) for v in logp.values())
    return math.exp(logp.get(lang, -math.inf) - top) / z if lang in logp else 0.0'''

MINHASH = '''import random, zlib

def shingles(text, ngram):
    words = text.lower().split()
    if len(words) < ngram:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + ngram]) for i in range(len(words) - ngram + 1)}

def minhash_signature(text, num_perm=128, ngram=5, seed=0):
    p = (1 << 31) - 1
    rng = random.Random(seed)
    params = [(rng.randrange(1, p), rng.randrange(p)) for _ in range(num_perm)]
    xs = [zlib.crc32(" ".join(s).encode()) % p for s in shingles(text, ngram)] or [0]
    return [min((a * x + b) % p for x in xs) for a, b in params]'''

JACCARD = '''def estimated_jaccard(sig_a, sig_b):
    return sum(x == y for x, y in zip(sig_a, sig_b)) / len(sig_a)'''

NEAR = '''def near_duplicate_pairs(docs, threshold):
    sigs = [minhash_signature(d) for d in docs]
    return {(i, j) for i in range(len(docs)) for j in range(i + 1, len(docs))
            if estimated_jaccard(sigs[i], sigs[j]) >= threshold}'''

PII = '''import re

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}")
OCTET = r"(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)"
IP = re.compile(rf"(?<![\\d.]){OCTET}(?:\\.{OCTET}){{3}}(?!\\.?\\d)")
PHONE = re.compile(r"(?<![\\w+(])(?:\\+1[ -])?(?:\\(\\d{3}\\) |\\d{3}[-. ])\\d{3}[-. ]\\d{4}(?!\\d)")

def redact_pii(text):
    text = EMAIL.sub("<EMAIL>", text)
    text = IP.sub("<IP>", text)
    return PHONE.sub("<PHONE>", text)'''

CORRECT = {"extract_text": EXTRACT, "language_score": LANGUAGE, "minhash_signature": MINHASH,
           "estimated_jaccard": JACCARD, "near_duplicate_pairs": NEAR, "redact_pii": PII}

# -- correct, written differently ------------------------------------------------------------------

ALTERNATIVE = {
    # a regex-and-stack extractor without html.parser
    "extract_text": '''import re, html as htmllib

def extract_text(page):
    page = re.sub(r"(?is)<(script|style|noscript|head|nav|header|footer|aside|form)\\b.*?</\\1\\s*>", " ", page)
    page = re.sub(r"(?is)<(script|style|noscript|head|nav|header|footer|aside|form)\\b.*$", " ", page)
    page = re.sub(r"(?i)</?(p|div|h[1-6]|li|ul|ol|tr|table|br|article|main|section|blockquote|pre|body|title)\\b[^>]*>", "\\n", page)
    page = re.sub(r"<[^>]*>", "", page)
    lines = [" ".join(htmllib.unescape(l).split()) for l in page.split("\\n")]
    return "\\n".join(l for l in lines if l)''',
    # a stop-word profile with a logistic squash instead of naive Bayes
    "language_score": '''from collections import Counter

TOP = {lang: {w for w, _ in Counter(w for t in texts for w in t.lower().split()).most_common(150)}
       for lang, texts in TRAINING.items()}
BIGRAMS = {lang: Counter(t[i:i + 2] for t in map(str.lower, texts) for i in range(len(t) - 1))
           for lang, texts in TRAINING.items()}

def language_score(text, lang="en"):
    words = text.lower().split()
    pairs = Counter(text.lower()[i:i + 2] for i in range(len(text) - 1))
    def fit(l):
        hits = sum(w in TOP[l] for w in words) / max(1, len(words))
        total = sum(BIGRAMS[l].values())
        cover = sum(c for p, c in pairs.items() if BIGRAMS[l][p] > 0) / max(1, sum(pairs.values()))
        return hits + cover
    fits = {l: fit(l) for l in TOP}
    if lang not in fits:
        return 0.0
    best_other = max(v for l, v in fits.items() if l != lang)
    margin = fits[lang] - best_other
    return 1.0 if margin > 0.05 else (0.0 if margin < -0.05 else 0.5 + margin * 5)''',
    # hashlib with a salted key per permutation, numpy-free
    "minhash_signature": '''import hashlib

def minhash_signature(text, num_perm=128, ngram=5, seed=0):
    words = text.lower().split()
    grams = {" ".join(words[i:i + ngram]) for i in range(max(1, len(words) - ngram + 1))}
    sig = []
    for k in range(num_perm):
        salt = f"{seed}:{k}:".encode()
        sig.append(min(int.from_bytes(hashlib.blake2b(salt + g.encode(), digest_size=8).digest(), "big")
                       for g in grams))
    return sig''',
    "estimated_jaccard": '''import numpy as np

def estimated_jaccard(sig_a, sig_b):
    return float(np.mean(np.array(sig_a) == np.array(sig_b)))''',
    # LSH banding instead of all pairs, bands chosen for the threshold
    "near_duplicate_pairs": '''from collections import defaultdict

def near_duplicate_pairs(docs, threshold, num_perm=128):
    rows = max(r for r in range(1, 33) if 1 - (1 - threshold ** r) ** (num_perm // r) > 0.999)
    bands = num_perm // rows
    sigs = [minhash_signature(d, num_perm=num_perm) for d in docs]
    candidates = set()
    for b in range(bands):
        buckets = defaultdict(list)
        for i, s in enumerate(sigs):
            buckets[tuple(s[b * rows:(b + 1) * rows])].append(i)
        for ids in buckets.values():
            candidates |= {(x, y) for x in ids for y in ids if x < y}
    return {p for p in candidates if estimated_jaccard(sigs[p[0]], sigs[p[1]]) >= threshold}''',
    # one combined pattern and a replacement function
    "redact_pii": '''import re

PATTERN = re.compile(
    r"(?P<EMAIL>[\\w.%+-]+@[\\w-]+(?:\\.[\\w-]+)*\\.[A-Za-z]{2,})"
    r"|(?P<IP>(?<![\\d.])(?:(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)(?!\\.?\\d))"
    r"|(?P<PHONE>(?<![\\w+(])(?:\\+1[ -])?(?:\\(\\d{3}\\) |\\d{3}[-. ])\\d{3}[-. ]\\d{4}(?!\\d))")

def redact_pii(text):
    return PATTERN.sub(lambda m: "<" + m.lastgroup + ">", text)''',
}

# -- wrong: each loses its task's marks ----------------------------------------------------------

WRONG = {
    # keeps the text of <script> and <style>
    "extract_text": EXTRACT.replace(
        'SKIP = {"script", "style", "noscript", "head", "nav", "header", "footer", "aside", "form"}',
        'SKIP = {"noscript", "nav", "header", "footer", "aside", "form"}'),
    # says "English" for everything with Latin letters
    "language_score": '''def language_score(text, lang="en"):
    latin = sum(c.isascii() and c.isalpha() for c in text) / max(1, sum(c.isalpha() for c in text))
    return latin if lang == "en" else 1 - latin''',
    # ignores the seed: the same hash functions for every seed
    "minhash_signature": MINHASH.replace("rng = random.Random(seed)", "rng = random.Random(0)"),
    # divides by the number of distinct values instead of the length
    "estimated_jaccard": '''def estimated_jaccard(sig_a, sig_b):
    return sum(x == y for x, y in zip(sig_a, sig_b)) / len(set(sig_a) | set(sig_b))''',
    # exact duplicates only
    "near_duplicate_pairs": '''def near_duplicate_pairs(docs, threshold):
    return {(i, j) for i in range(len(docs)) for j in range(i + 1, len(docs)) if docs[i] == docs[j]}''',
    # misses the (555) 123-4567 format
    "redact_pii": PII.replace(r"(?:\(\d{3}\) |\d{3}[-. ])", r"\d{3}[-. ]"),
}

# further wrong answers the tests also check
MORE_WRONG = {
    "minhash_signature": [
        # character shingles instead of word shingles
        MINHASH.replace("words = text.lower().split()", "words = list(text.lower())"),
        # Python's hash(): differs between processes, and the test sees two equal inputs differ
        # only if it is salted per call; this one ignores num_perm
        MINHASH.replace("for _ in range(num_perm)]", "for _ in range(64)]"),
    ],
    "redact_pii": [
        PII.replace('text = IP.sub("<IP>", text)', 'pass'),      # no IPs
        PII.replace('"<EMAIL>"', '"[email]"'),                    # wrong placeholder
    ],
    "near_duplicate_pairs": [
        NEAR.replace("for j in range(i + 1, len(docs))",        # neighbours only
                     "for j in range(i + 1, min(i + 2, len(docs)))"),
        NEAR.replace("{(i, j) for i", "{(i + 1, j + 1) for i"),  # counts documents from 1
    ],
    "extract_text": [
        EXTRACT.replace('"nav", "header", "footer", ', ""),      # keeps menus and footers
    ],
}

# one wrong answer per rule of the task text that the wrong answers above leave unbroken, each
# breaking that rule only (tests/rule_audit.py names them): name -> (task, source)
RULE_WRONG = {
    # -- extract_text -----------------------------------------------------------------------------
    # one flag instead of a depth: the first end tag inside <nav> ends the skipping
    "extract_skip_not_nested": ("extract_text", EXTRACT.replace(
        "        while self.open:\n", "        self.skip = 0\n        while self.open:\n")
        .replace("            if t in SKIP:\n                self.skip -= 1\n", "")),
    # everything on one line
    "extract_one_line": ("extract_text", EXTRACT.replace('return "\\n".join(p.lines)',
                                                        'return " ".join(p.lines)')),
    # entities not decoded (no convert_charrefs): "&amp;" is lost
    "extract_entities_lost": ("extract_text", EXTRACT.replace("convert_charrefs=True",
                                                             "convert_charrefs=False")),
    # whitespace inside a line not collapsed, empty lines kept
    "extract_whitespace_kept": ("extract_text", EXTRACT.replace(
        '''        line = " ".join("".join(self.current).split())
        if line:
            self.lines.append(line)''', '''        self.lines.append("".join(self.current))''')),
    # an empty page is "nothing", not ""
    "extract_empty_none": ("extract_text", EXTRACT.replace(
        "def extract_text(html):\n", "def extract_text(html):\n    if not html.strip():\n        return None\n")),
    # -- language_score ---------------------------------------------------------------------------
    # a language the model does not know raises KeyError instead of scoring 0.0
    "language_unknown_raises": ("language_score", LANGUAGE.replace(
        "logp.get(lang, -math.inf)", "logp[lang]").replace(" if lang in logp else 0.0", "")),
    # the log-probability, not a probability
    "language_log_score": ("language_score", LANGUAGE.replace(
        "return math.exp(logp.get(lang, -math.inf) - top) / z if lang in logp else 0.0",
        "return logp[lang] - top - math.log(z) if lang in logp else 0.0")),
    # -- minhash_signature ------------------------------------------------------------------------
    "minhash_no_lowercase": ("minhash_signature", MINHASH.replace("text.lower().split()",
                                                                 "text.split()")),
    # a text shorter than ngram words has no shingle: min() of nothing raises
    "minhash_short_text_raises": ("minhash_signature", MINHASH.replace(
        "{tuple(words)} if words else set()", "set()").replace(" or [0]", "")),
    # -- estimated_jaccard ------------------------------------------------------------------------
    "jaccard_count_not_share": ("estimated_jaccard", '''def estimated_jaccard(sig_a, sig_b):
    return float(sum(x == y for x, y in zip(sig_a, sig_b)))'''),
    # -- near_duplicate_pairs ---------------------------------------------------------------------
    "near_pairs_reversed": ("near_duplicate_pairs", NEAR.replace("{(i, j) for i", "{(j, i) for i")),
    "near_skips_exact_copies": ("near_duplicate_pairs", NEAR.replace(
        "if estimated_jaccard(", "if docs[i] != docs[j] and estimated_jaccard(")),
    # -- redact_pii -------------------------------------------------------------------------------
    "pii_email_no_plus": ("redact_pii", PII.replace("[A-Za-z0-9._%+-]+@", "[A-Za-z0-9._]+@")),
    "pii_email_eats_full_stop": ("redact_pii", PII.replace(
        "@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}", "@[A-Za-z0-9.-]+")),
    "pii_ip_any_octet": ("redact_pii", PII.replace(
        'OCTET = r"(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)"', 'OCTET = r"\\d{1,3}"')),
    "pii_ip_in_longer_run": ("redact_pii", PII.replace('(?<![\\d.])', '(?<!\\d)').replace(
        '(?!\\.?\\d)', '(?!\\d)')),
    "pii_ip_before_full_stop": ("redact_pii", PII.replace('(?!\\.?\\d)', '(?![\\d.])')),
    "pii_phone_no_prefix": ("redact_pii", PII.replace("(?:\\+1[ -])?", "")),
    "pii_phone_no_dots": ("redact_pii", PII.replace("\\d{3}[-. ])\\d{3}[-. ]\\d{4}",
                                                   "\\d{3}[- ])\\d{3}[- ]\\d{4}")),
    "pii_phone_bare_digits": ("redact_pii", PII.replace("\\d{3}[-. ])\\d{3}[-. ]\\d{4}",
                                                       "\\d{3}[-. ]?)\\d{3}[-. ]?\\d{4}")),
}

for _name, (_task, _src) in RULE_WRONG.items():
    assert _src != CORRECT[_task], f"{_name}: the replacement did not apply"
