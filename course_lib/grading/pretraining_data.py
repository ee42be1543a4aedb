"""Checks for the Pretraining data assignment (chapter 1).

The student writes the stages of a FineWeb-like cleaning pipeline:

- ``extract_text(html) -> str``: the visible text, without scripts, styles, menus, footers;
- ``language_score(text, lang="en") -> float``: the probability that ``text`` is in ``lang``;
- ``minhash_signature(text, num_perm=128, ngram=5, seed=0) -> list[int]``;
- ``estimated_jaccard(sig_a, sig_b) -> float``;
- ``near_duplicate_pairs(docs, threshold) -> set[(i, j)]``;
- ``redact_pii(text) -> str``: e-mails, phone numbers and IPv4 addresses to placeholders.

Most of these have many right answers (any hash family makes a MinHash; any decent model makes
a language score), so the checks judge what the function must achieve rather than equality
with the reference: the extracted words match the page's visible words, scores fall on the right
side of FineWeb's 0.65 threshold, signatures estimate Jaccard similarity and change with the
seed, near-duplicate pairs include every clear duplicate and no clearly different pair.
``estimated_jaccard`` and ``redact_pii`` have one right answer and are compared exactly.

A mistake costs the marks of its own task only: while ``near_duplicate_pairs`` is checked, the
student's ``minhash_signature`` and ``estimated_jaccard`` are replaced by the course's
(``Task.substitute``).
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from html.parser import HTMLParser

from course_lib import crawl as _crawl
from course_lib import data as _data
from course_lib import world as _world
from course_lib.grading.checks import Assignment, Task, as_args

REFERENCES = ("course_lib.data", "course_lib.grading.pretraining_data")
# not a stage of the pipeline: the real text the notebook trains its language model on
ALLOWED = ("course_lib.data:language_training_texts",)
DEPENDS = ("course_lib.crawl", "course_lib.world")  # the test inputs are made with these

_CACHE: dict = {}


def _world_docs():
    if "docs" not in _CACHE:
        w = _world.make_world(0)
        _CACHE["world"] = w
        _CACHE["docs"] = _world.make_documents(w, 400, seed=7)
    return _CACHE["world"], _CACHE["docs"]


# -- extract_text -----------------------------------------------------------------------------

_HAND_PAGES = [
    "<html><head><title>Hi</title><style>p { color: red; }</style></head><body>"
    "<nav><a href='/'>Home</a> <a href='/about'>About</a></nav>"
    "<p>Hello &amp; welcome to the page about otters.</p><script>var tracker = 1;</script>"
    "<footer>Copyright 2026 Otters Inc.</footer></body></html>",
    "<html><body><header><h2>Site name</h2></header><div><h1>Rivers of Velmora</h1>"
    "<p>The Ashwater runs <b>north</b> through three towns.</p><ul><li>Greyrun is short.</li>"
    "<li>Mallow is wide.</li></ul></div><aside>Popular: cheap flights</aside></body></html>",
    "<html><body><p>An unclosed paragraph about lanterns<p>and another one<div>with a "
    "stray</span> end tag</div></body></html>",
    "<html><body><noscript>Please enable scripts</noscript><form><input name='q'>Search this "
    "site</form><article><p>Bakers in Kandor rise before dawn.</p><p>They sell spiced bread "
    "&lt;fresh&gt; every morning.</p></article></body></html>",
    "<p>No html or body tags at all, just a paragraph.</p><style>.x{}</style>",
    "",
    # runs of whitespace and empty blocks (one space, no empty lines), many entities
    "<html><body><div>\n\n   Fish   &amp;   chips\t\tand  peas  </div><div></div><p>   </p>"
    "<p>Caf&eacute; &lt;open&gt; &quot;daily&quot; &#8212; 9&nbsp;to&nbsp;5 &amp; later</p>"
    "</body></html>",
]


def _page_cases(seed, n):
    world, docs = _world_docs()
    rng = random.Random(f"extract-{seed}")
    out = []
    for _ in range(n):
        d = rng.choice(docs)
        kind = d.kind if d.kind in _crawl.SITES else "encyclopedia"
        site = rng.choice(_crawl.SITES[kind])
        body = _crawl._body_html(d.title, d.text, d.kind)
        out.append((_crawl.render_page(site, d.title, body, rng,
                                       sidebar=[e.name for e in world.entities[:4]]),))
    return out


def _extract_cases(seed=0, n_random=6, extra=None):
    return [(p,) for p in _HAND_PAGES] + _page_cases(seed, n_random) + as_args(extra)


class _HiddenText(HTMLParser):
    """Collects the text inside elements a reader never sees as the article."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth, self.words = 0, []

    def handle_starttag(self, tag, attrs):
        if tag in _data.SKIP_TAGS and tag not in _data._VOID_TAGS:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in _data.SKIP_TAGS and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.words += data.split()


def _compare_extract(args, expected, actual):
    if not isinstance(actual, str):
        return f"a {type(actual).__name__} instead of a str"
    exp, act = Counter(expected.split()), Counter(actual.split())
    p = _HiddenText()
    p.feed(args[0])
    hidden = {w for w in p.words if w not in exp}
    leaked = [w for w in act if w in hidden]
    if leaked:
        return (f"kept text that readers do not see as the page's content (inside <script>, "
                f"<style>, <nav>, <footer>, ...): {leaked[:6]}")
    missing, extra = exp - act, act - exp
    n_exp, n_act = sum(exp.values()), sum(act.values())
    if n_exp and sum(missing.values()) / n_exp > 0.05:
        return (f"{sum(missing.values())} of the page's {n_exp} words are missing, e.g. "
                f"{list(missing)[:6]}")
    if n_act and sum(extra.values()) / n_act > 0.05:
        return f"{sum(extra.values())} extra words, e.g. {list(extra)[:6]}"
    if not n_exp and n_act:
        return f"the page has no visible text, but got {actual[:80]!r}"
    lines_exp = [ln for ln in expected.split("\n") if ln.strip()]
    lines_act = [ln for ln in actual.split("\n") if ln.strip()]
    if len(lines_exp) >= 3 and len(lines_act) < len(lines_exp) / 2:
        return (f"{len(lines_act)} line(s) instead of about {len(lines_exp)}: start a new line "
                "at each block element (p, div, h1, li, br, ...)")
    for k, line in enumerate(actual.strip("\n").split("\n") if actual else []):
        if line != " ".join(line.split()):
            what = "is empty" if not line.strip() else "has runs of whitespace or spaces at its ends"
            return (f"line {k + 1} {what} ({line[:60]!r}): collapse runs of whitespace inside a "
                    "line to one space and drop empty lines")
    return None


# -- language_score ---------------------------------------------------------------------------

def _snippet(text, rng, n_chars=500):
    start = rng.randrange(max(1, len(text) - n_chars)) if len(text) > n_chars else 0
    return text[start:start + n_chars]


def _language_cases(seed=0, n_random=16, extra=None):
    test = _data.language_training_texts("test")
    _, docs = _world_docs()
    rng = random.Random(f"lang-{seed}")
    fixed = [("The baker rises before dawn and sells fresh bread to the whole town every "
              "morning, and the children love the smell of it.", "en"),
             ("Der Bäcker steht vor dem Morgengrauen auf und verkauft jeden Morgen frisches Brot "
              "an die ganze Stadt.", "en"),
             ("Der Bäcker steht vor dem Morgengrauen auf und verkauft jeden Morgen frisches Brot "
              "an die ganze Stadt.", "de"),
             ("Le boulanger se lève avant l'aube et vend du pain frais à toute la ville chaque "
              "matin.", "en"),
             # a language no model knows (Klingon): 0.0, not an error
             ("The baker rises before dawn and sells fresh bread to the whole town.", "tlh")]
    out = []
    langs = sorted(test)
    while len(out) < n_random:
        r = rng.random()
        if r < 0.35:
            text, lang = rng.choice(docs).text, "en"
        else:
            lang_of_text = rng.choice(langs)
            text = _snippet(rng.choice(test[lang_of_text]), rng)
            lang = "en" if rng.random() < 0.7 else rng.choice(langs)
        # keep only inputs the reference is sure about: the right side of 0.65 is unambiguous
        s = _data.language_score(text, lang)
        if s > 0.95 or s < 0.05:
            out.append((text, lang))
    return fixed + out + as_args(extra)


def _compare_language(args, expected, actual):
    if isinstance(actual, bool) or not isinstance(actual, (int, float)):
        return f"a {type(actual).__name__} instead of a float"
    if not 0.0 <= actual <= 1.0:
        return f"{actual} is not a probability (0..1)"
    t = _data.LANGUAGE_THRESHOLD
    if (expected >= t) != (actual >= t):
        side = "at least" if expected >= t else "below"
        return (f"the text {'is' if expected >= t else 'is not'} in {args[1]!r}, so its score "
                f"must be {side} {t}; got {actual:.3f}")
    return None


# -- minhash_signature --------------------------------------------------------------------------

def _edited(text, rng, n_edits):
    words = text.split()
    for _ in range(n_edits):
        i = rng.randrange(len(words))
        if rng.random() < 0.5:
            words[i] = rng.choice(["river", "stone", "yellow", "quietly", "seven"])
        else:
            words.insert(i, rng.choice(["very", "old", "small", "famous"]))
    return " ".join(words)


def _minhash_texts(seed):
    _, docs = _world_docs()
    rng = random.Random(f"minhash-{seed}")
    base = " ".join(d.text for d in rng.sample(docs, 2))
    other = rng.choice(docs).text
    return [base, _edited(base, rng, 1), _edited(base, rng, 4), _edited(base, rng, 12), other,
            base.upper()]


def _minhash_cases(seed=0, n_random=None, extra=None):
    texts = _minhash_texts(seed)
    cases = [(t, 128, 5, seed) for t in texts]
    cases.append((texts[0], 128, 5, seed))            # the same input twice: the same result
    cases += [(t, 128, 5, seed + 1) for t in texts[:3]]  # another seed: another signature
    cases += [(t, 96, 3, seed) for t in texts[:4]]    # other shingle size and length
    cases.append((texts[0], 128, 3, seed))            # other shingles: another signature
    cases.append(("too short", 16, 5, seed))
    return cases + as_args(extra)


def _compare_signature(args, expected, actual):
    if not isinstance(actual, (list, tuple)) and not hasattr(actual, "shape"):
        return f"a {type(actual).__name__} instead of a list of ints"
    values = list(actual.tolist() if hasattr(actual, "tolist") else actual)
    if len(values) != args[1]:
        return f"{len(values)} values instead of num_perm = {args[1]}"
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "every value of a signature must be an int"
    return None


def _compare_signatures(cases, actuals):
    sigs = [list(a.tolist() if hasattr(a, "tolist") else a) for a in actuals]
    for i in range(len(cases)):
        for j in range(i + 1, len(cases)):
            if cases[i] == cases[j] and sigs[i] != sigs[j]:
                return ("the same text and arguments gave two different signatures; a signature "
                        "must be a function of its input (do not use an unseeded random "
                        "generator or Python's hash(), which changes between runs)")
    errors = []
    for i in range(len(cases)):
        for j in range(len(cases)):
            ti, pi, ni, si = cases[i]
            tj, pj, nj, sj = cases[j]
            if i < j and ti == tj and (pi, si) == (pj, sj) and ni != nj:
                same = sum(x == y for x, y in zip(sigs[i], sigs[j])) / pi
                if same > 0.5:
                    return (f"ngram={ni} and ngram={nj} gave signatures that agree on {same:.0%} "
                            "of positions; the shingles must be ngram words long")
            if i < j and ti == tj and (pi, ni) == (pj, nj) and si != sj:
                same = sum(x == y for x, y in zip(sigs[i], sigs[j])) / pi
                if same > 0.5:
                    return (f"seeds {si} and {sj} gave signatures that agree on {same:.0%} of "
                            "positions; the seed must choose the hash functions")
            if i < j and ti != tj and (pi, ni, si) == (pj, nj, sj) and pi >= 64:
                true = _data.jaccard(_data.shingles(ti, ni), _data.shingles(tj, nj))
                est = sum(x == y for x, y in zip(sigs[i], sigs[j])) / pi
                errors.append((abs(est - true), est, true, ni))
    if errors:
        worst = max(errors)
        mean = sum(e[0] for e in errors) / len(errors)
        if worst[0] > 0.25 or mean > 0.1:
            return (f"signatures do not estimate Jaccard similarity: for one pair the share of "
                    f"equal positions is {worst[1]:.2f} but the Jaccard similarity of the "
                    f"{worst[3]}-word shingles is {worst[2]:.2f} (mean error {mean:.2f} over "
                    f"{len(errors)} pairs)")
    return None


# -- estimated_jaccard ----------------------------------------------------------------------------

def _jaccard_cases(seed=0, n_random=8, extra=None):
    fixed = [([1, 2, 3, 4], [1, 2, 3, 4]), ([1, 2, 3, 4], [1, 9, 3, 9]), ([5], [6]),
             ([7, 7, 7], [7, 8, 7])]
    rng = random.Random(f"jaccard-{seed}")
    out = []
    for _ in range(n_random):
        n = rng.choice([8, 16, 64, 128])
        a = [rng.randrange(50) for _ in range(n)]
        b = [x if rng.random() < rng.random() else rng.randrange(50) for x in a]
        out.append((a, b))
    return fixed + out + as_args(extra)


def _compare_float(args, expected, actual):
    if isinstance(actual, bool) or not isinstance(actual, (int, float)):
        return f"a {type(actual).__name__} instead of a float"
    return None if abs(actual - expected) < 1e-9 else f"{actual} instead of {expected}"


# -- near_duplicate_pairs -------------------------------------------------------------------------

def trusted_minhash_signature(text, num_perm=128, ngram=5, seed=0):
    """``course_lib.data.minhash_signature`` in one piece: while ``near_duplicate_pairs`` is
    checked it stands in for the student's own (a substitute may not call the references, which
    are poisoned then, so it calls no other function of the course)."""
    words = text.lower().split()
    if len(words) < ngram:
        shingles = {tuple(words)} if words else set()
    else:
        shingles = {tuple(words[i:i + ngram]) for i in range(len(words) - ngram + 1)}
    p = (1 << 31) - 1
    rng = random.Random(seed)
    params = [(rng.randrange(1, p), rng.randrange(0, p)) for _ in range(num_perm)]
    xs = [zlib.crc32(" ".join(s).encode("utf-8")) % p for s in shingles]
    if not xs:
        return [p] * num_perm
    return [min((a * x + b) % p for x in xs) for a, b in params]


# while near_duplicate_pairs is checked, the student's helpers of tasks 3 and 4 are the course's
NEAR_SUBSTITUTE = {
    "minhash_signature": "course_lib.grading.pretraining_data:trusted_minhash_signature",
    "estimated_jaccard": "course_lib.data:estimated_jaccard"}


def _near_dup_cases(seed=0, n_random=2, extra=None):
    _, docs = _world_docs()
    fixed_docs = ["the cat sat on the mat and looked out of the window at the birds",
                  "the cat sat on the mat and looked out of the window at the birds",
                  "a completely different sentence about rivers and boats and bridges",
                  "the cat sat on the mat and looked out of the window at the small birds"]
    out = [(fixed_docs, 0.5)]
    for k in range(n_random):
        rng = random.Random(f"near-{seed}-{k}")
        base = [" ".join(d.text for d in rng.sample(docs, 2)) for _ in range(rng.randrange(10, 16))]
        corpus = list(base)
        for b in rng.sample(base, 4):
            corpus.append(b)                       # exact copy
        for b in rng.sample(base, 4):
            corpus.append(_edited(b, rng, 1))      # near copy
        rng.shuffle(corpus)
        out.append((corpus, rng.choice([0.7, 0.8])))
    return out + as_args(extra)


def _truth_pairs(docs, threshold, margin=0.15):
    sh = [_data.shingles(d, 5) for d in docs]
    must, must_not = set(), set()
    for i in range(len(docs)):
        for j in range(i + 1, len(docs)):
            jac = _data.jaccard(sh[i], sh[j])
            if jac >= threshold + margin:
                must.add((i, j))
            elif jac < threshold - margin:
                must_not.add((i, j))
    return must, must_not


def _compare_pairs(args, expected, actual):
    if not isinstance(actual, (set, list, tuple)):
        return f"a {type(actual).__name__} instead of a set of (i, j) pairs"
    pairs = set()
    for p in actual:
        if not isinstance(p, (tuple, list)) or len(p) != 2 or not all(
                isinstance(x, int) for x in p):
            return f"{p!r} is not a pair (i, j) of document indices"
        if p[0] > p[1]:
            return f"{tuple(p)!r} is not a pair (i, j) with i < j"
        pairs.add((p[0], p[1]))
    docs, threshold = args
    bad = sorted(p for p in pairs if not 0 <= p[0] < p[1] < len(docs))
    if bad:
        return (f"{bad[0]} is not a pair (i, j) of two different documents with "
                f"0 <= i < j < {len(docs)}")
    must, must_not = _truth_pairs(docs, threshold)
    missed = sorted(must - pairs)
    if missed:
        i, j = missed[0]
        jac = _data.jaccard(_data.shingles(docs[i], 5), _data.shingles(docs[j], 5))
        return (f"missed {len(missed)} near-duplicate pair(s), e.g. ({i}, {j}) whose 5-word "
                f"shingles have Jaccard similarity {jac:.2f} >= threshold {threshold}")
    wrong = sorted(pairs & must_not)
    if wrong:
        i, j = wrong[0]
        jac = _data.jaccard(_data.shingles(docs[i], 5), _data.shingles(docs[j], 5))
        return (f"{len(wrong)} pair(s) are not near duplicates, e.g. ({i}, {j}) with Jaccard "
                f"similarity {jac:.2f} < threshold {threshold}")
    return None


# -- redact_pii -----------------------------------------------------------------------------------

def _pii_cases(seed=0, n_random=10, extra=None):
    fixed = [("Write to ada.l@mailbox.org or call 555-123-4567.",),
             ("My server at 192.168.0.12 is down; ring (555) 987-6543 or +1 555 987 6543.",),
             ("Nothing here: in 1999 we had 3 cats, version 2.4.1, and a 10.5% rise.",),
             ("Two phones: 555.222.3333 and +1-555-444-5555, one mail: x_y+z@uni.edu.",),
             ("Not an IP: 256.1.1.1 or 1.2.3; an IP at the end: 8.8.8.8",),
             # a longer run of numbers and dots, bare digits, an address before a full stop
             ("Build 1.2.3.4.5 is out; order 5551234567 shipped; the host is 10.0.0.1.",)]
    rng = random.Random(f"pii-{seed}")
    out = []
    for _ in range(n_random):
        parts = []
        for _ in range(rng.randrange(1, 4)):
            s, _ = _crawl._pii_sentence(rng)
            parts.append(s)
        if rng.random() < 0.5:
            parts.insert(rng.randrange(len(parts) + 1), f"It was {rng.randrange(1, 12)}:"
                                                        f"{rng.randrange(10, 60)} in "
                                                        f"{rng.randrange(1700, 2026)}.")
        out.append((" ".join(parts),))
    return fixed + out + as_args(extra)


TASKS = {
    "extract_text": Task(
        "extract_text", _data.extract_text, _extract_cases, references=REFERENCES,
        compare_case=_compare_extract,
        hint="skip everything inside script, style, noscript, head, nav, header, footer, aside "
             "and form; keep all other text, one line per block element, entities decoded"),
    "language_score": Task(
        "language_score", _data.language_score, _language_cases, references=REFERENCES,
        compare_case=_compare_language, timeout=20.0,
        hint="compare the text's character trigrams with each language's trigram counts "
             "(naive Bayes) and turn the log-likelihoods into probabilities with a softmax"),
    "minhash_signature": Task(
        "minhash_signature", _data.minhash_signature, _minhash_cases, references=REFERENCES,
        compare_case=_compare_signature, compare_all=_compare_signatures,
        hint="shingles are the sets of ngram consecutive lowercased words; for each of num_perm "
             "hash functions chosen with the seed keep the minimum hash over the shingles"),
    "estimated_jaccard": Task(
        "estimated_jaccard", _data.estimated_jaccard, _jaccard_cases, references=REFERENCES,
        compare_case=_compare_float,
        hint="the share of positions where the two signatures hold the same value"),
    "near_duplicate_pairs": Task(
        "near_duplicate_pairs", _data.near_duplicate_pairs, _near_dup_cases,
        references=REFERENCES, compare_case=_compare_pairs, timeout=30.0,
        substitute=NEAR_SUBSTITUTE,
        hint="compute a MinHash signature per document and return every pair (i, j), i < j, "
             "whose estimated Jaccard similarity is at least the threshold"),
    "redact_pii": Task(
        "redact_pii", _data.redact_pii, _pii_cases, references=REFERENCES,
        hint="replace e-mails with <EMAIL>, IPv4 addresses (four numbers 0-255) with <IP>, and "
             "phone numbers in every listed format, including (555) 123-4567 and a leading "
             "+1, with <PHONE>"),
}

ASSIGNMENT = Assignment(TASKS, references=REFERENCES, allowed=ALLOWED, depends=DEPENDS)
globals().update(ASSIGNMENT.checks())  # check_extract_text, check_language_score, check_minhash_signature, check_estimated_jaccard, check_near_duplicate_pairs, check_redact_pii

