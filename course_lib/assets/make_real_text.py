"""Remake ``real_text.jsonl.gz``: real documents in eleven languages, cut from Debian packages.

Why: the course's "mini Common Crawl" is rendered from a seeded world, but a cleaning pipeline is
only worth studying on text that people wrote. This file supplies that text, offline:

* English prose pages that a FineWeb-like pipeline should keep (sections of the Debian Reference
  and the Debian Installation Guide, the Debian project history, King James Bible chapters,
  fortune-cookie quotations);
* pages in German, French, Spanish, Italian, Portuguese, Russian, Greek, Japanese, Chinese and
  Korean, which the language-identification stage must drop;
* labelled samples on which the course's small character n-gram language identifier is trained
  and evaluated.

Every line of the gzipped file is one JSON document::

    {"id": "<package>/<n>", "lang": "en", "package": "...", "version": "...",
     "licence": "GPL-2.0-or-later", "title": "...", "text": "para one\\n\\npara two"}

``text`` is plain prose: paragraphs separated by one blank line, whitespace normalised, no HTML,
no code listings, command lines, tables or navigation. Word-spaced languages aim at 80-600 words
a document, Japanese and Chinese at 200-1500 characters.

How: in a temporary directory, ``apt-get download`` fetches the binary packages listed in
PACKAGES below (the Debian package registry must be reachable), ``dpkg-deb -x`` unpacks each into
its own folder, and one extractor per kind of file turns them into documents:

* DocBook HTML manuals (debian-reference-*, debian-history, installation-guide-amd64) are parsed
  with lxml; navigation, tables, figures, ``<pre>`` blocks and footnotes are removed, and only
  ``<p>`` paragraphs that read as prose are kept (mostly letters, little inline code, ending
  like a sentence). Consecutive sections of a chapter are packed into documents of a plausible
  size, titled by their first section heading.
* The KJV text (bible-kjv-text) is stored in the package's own compressed format: a table of
  64 KiB windows, each an LZW stream as written by Unix ``compress -b16``. It is decoded here in
  pure Python; each chapter becomes one document ("Genesis 1"), verses grouped into paragraphs.
* Fortune files (entries separated by a line holding only ``%``) become one paragraph per entry,
  attribution kept ("... — Mark Twain"), several entries to a document. Only chosen, inoffensive
  files are read (never anything under ``off/``).

Translated manuals leave some paragraphs untranslated, so every paragraph also passes a small
language check (stop-word counts for Latin-script languages, the share of the expected script
otherwise); English left inside a German page would teach the language identifier the wrong
lesson. Paragraphs with e-mail or IP addresses are left out too: the crawl records real pages as
free of personal data.

CAPS caps the documents taken from each package and language (an evenly spaced subset), so that
there are about 600 English documents and 100-130 in each other language.

The output is deterministic: files, entries and documents are processed in sorted order, the
only randomness is a ``random.Random`` seeded with a fixed string, JSON keys are written in a
fixed order and the gzip header carries a fixed name and mtime 0. The same package versions give the same bytes;
SOURCES.md beside this file records the versions and licences. Run from the repository root::

    python course_lib/assets/make_real_text.py

``--debs DIR`` keeps the downloaded ``.deb`` files in DIR and reuses them on the next run.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import io
import json
import pathlib
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import unicodedata
from collections import defaultdict

try:
    import lxml.html
except ImportError:  # pragma: no cover - the course venv has lxml
    sys.exit("make_real_text.py needs lxml (pip install lxml)")

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    def tqdm(iterable, **_):
        return iterable

OUT = pathlib.Path(__file__).with_name("real_text.jsonl.gz")
SEED = "course_lib real_text v1"

# Document sizes: word-spaced languages count words, Chinese and Japanese count characters.
MIN_WORDS, SOFT_WORDS, MAX_WORDS = 80, 150, 600
MIN_CHARS, SOFT_CHARS, MAX_CHARS = 200, 450, 1500
CJK_LANGS = {"ja", "zh"}

# ------------------------------------------------------------------------------------------------
# What is read: PACKAGES (built from the tables below) is downloaded, extractor() picks the
# reader for each package, and CAPS says how many documents each (package, language) keeps.
# ------------------------------------------------------------------------------------------------

LICENCES = {
    "debian-reference": "GPL-2.0-or-later",
    "debian-history": "GPL-2.0-or-later",
    "installation-guide-amd64": "GPL-2.0-only",
    "bible-kjv-text": "public-domain",
    "fortunes": "BSD-3-Clause",
    "fortunes-min": "BSD-3-Clause",
    "fortunes-de": "GPL-2.0-or-later",
    "fortunes-es": "GPL-2.0-or-later",
    "fortunes-it": "public-domain",
    "fortunes-br": "GPL-2.0-or-later",
    "fortunes-ru": "GPL-2.0-only",
    "fortunes-zh": "GPL-3.0-or-later",
}

REFERENCE_LANGS = {"en": "en", "de": "de", "fr": "fr", "es": "es", "it": "it", "pt": "pt",
                   "ja": "ja", "zh-cn": "zh"}

# Fortune files read, per package (paths relative to /usr/share/games/fortunes). Chosen for
# prose-like, inoffensive content: no off/ sets, no ASCII art, no recipes, no IRC logs, no
# files whose every entry starts with the same words (de/kinderzitate, de/wusstensie).
FORTUNE_FILES = {
    "fortunes": ["art", "education", "food", "goedel", "humorists", "kids", "law", "love",
                 "magic", "medicine", "people", "pets", "platitudes", "science", "sports",
                 "wisdom", "work"],
    "fortunes-min": ["fortunes", "literature", "riddles"],
    "fortunes-de": ["de/anekdoten", "de/gedichte", "de/letzteworte", "de/mathematiker",
                    "de/murphy", "de/regeln", "de/sprichworte", "de/sprueche", "de/zitate"],
    "fortunes-es": ["es/amistad.fortunes", "es/arte.fortunes", "es/asimov.fortunes",
                    "es/ciencia.fortunes", "es/familia.fortunes", "es/famosos.fortunes",
                    "es/filosofia.fortunes", "es/humanos.fortunes", "es/lao-tse.fortunes",
                    "es/libertad.fortunes", "es/nietzsche.fortunes", "es/poder.fortunes",
                    "es/proverbios.fortunes", "es/refranes.fortunes", "es/sabiduria.fortunes",
                    "es/schopenhauer.fortunes", "es/sentimientos.fortunes",
                    "es/verdad.fortunes", "es/vida.fortunes"],
    "fortunes-it": ["it/adams", "it/definizioni", "it/formiche", "it/leggi"],
    "fortunes-br": ["brasil"],
    "fortunes-ru": ["ru/art", "ru/book", "ru/citates", "ru/conscience", "ru/education",
                    "ru/freewill", "ru/friendship", "ru/future", "ru/genious", "ru/happy",
                    "ru/human_being", "ru/knowledge", "ru/life", "ru/success", "ru/sympathy",
                    "ru/time", "ru/truth", "ru/war", "ru/wealth", "ru/work"],
    "fortunes-zh": ["tang300", "song100"],
}
FORTUNE_LANG = {"fortunes": "en", "fortunes-min": "en", "fortunes-de": "de", "fortunes-es": "es",
                "fortunes-it": "it", "fortunes-br": "pt", "fortunes-ru": "ru",
                "fortunes-zh": "zh"}
FORTUNE_TITLES = {"tang300": "唐诗三百首", "song100": "宋词一百首", "brasil": "Frases",
                  "fortunes": "Fortunes"}

# (package, lang) -> most documents kept. Aims: ~600 English, 100-130 per other language.
CAPS = {
    ("debian-reference-en", "en"): 110,
    ("debian-history", "en"): 30,
    ("bible-kjv-text", "en"): 200,
    ("installation-guide-amd64", "en"): 90,
    ("fortunes", "en"): 120,
    ("fortunes-min", "en"): 60,
    ("debian-reference-de", "de"): 80,
    ("fortunes-de", "de"): 50,
    ("debian-reference-fr", "fr"): 110,
    ("debian-history", "fr"): 20,
    ("debian-reference-es", "es"): 80,
    ("fortunes-es", "es"): 50,
    ("debian-reference-it", "it"): 80,
    ("fortunes-it", "it"): 50,
    ("debian-reference-pt", "pt"): 90,
    ("fortunes-br", "pt"): 40,
    ("fortunes-ru", "ru"): 60,
    ("debian-history", "ru"): 20,
    ("installation-guide-amd64", "ru"): 50,
    ("debian-reference-ja", "ja"): 110,
    ("debian-history", "ja"): 20,
    ("debian-reference-zh-cn", "zh"): 100,
    ("fortunes-zh", "zh"): 30,
    ("installation-guide-amd64", "zh"): 35,
    ("installation-guide-amd64", "ko"): 90,
    ("debian-history", "ko"): 25,
    ("installation-guide-amd64", "el"): 110,
}

# debian-history: docs/<name>.<lang>.html; installation-guide-amd64: <lang>/<file>.html
HISTORY_LANGS = ["en", "fr", "ja", "ko", "ru"]
INSTALL_GUIDE_LANGS = {"el": "el", "en": "en", "ko": "ko", "ru": "ru", "zh_CN": "zh"}
# Not prose, or not in the page's language: the GPL appendix (English legal text in every
# translation), tables of contents, indexes.
SKIP_HTML = re.compile(r"^(index|ix\d+|apf|go\d+)(\.|$)")

PACKAGES = sorted(
    {f"debian-reference-{code}" for code in REFERENCE_LANGS}
    | {"debian-history", "installation-guide-amd64", "bible-kjv-text"}
    | set(FORTUNE_FILES)
)


@dataclasses.dataclass
class Doc:
    lang: str
    package: str
    title: str
    paragraphs: list[str]
    key: tuple = ()  # sort key inside the package, for stable ids

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs)


# ------------------------------------------------------------------------------------------------
# Download and unpack
# ------------------------------------------------------------------------------------------------

def download(packages: list[str], debs: pathlib.Path) -> dict[str, pathlib.Path]:
    """``apt-get download`` each package not already in ``debs``; return package -> .deb path."""
    found = {}
    for pkg in packages:
        have = sorted(debs.glob(f"{pkg}_*.deb"))
        if have:
            found[pkg] = have[-1]
    missing = [p for p in packages if p not in found]
    with tempfile.TemporaryDirectory(prefix="apt_download_") as staging:
        # run as root, apt downloads as the user _apt, who must be able to write there
        pathlib.Path(staging).chmod(0o777)
        for pkg in tqdm(missing, desc="apt-get download", unit="pkg"):
            proc = subprocess.run(["apt-get", "download", pkg], cwd=staging,
                                  capture_output=True, text=True, check=False)
            have = sorted(pathlib.Path(staging).glob(f"{pkg}_*.deb"))
            if proc.returncode != 0 or not have:
                sys.exit(
                    f"apt-get download {pkg} failed (exit {proc.returncode}).\n"
                    f"The Debian package registry must be reachable and know '{pkg}' "
                    f"(run 'apt-get update' first; these sources were chosen on Debian 12).\n"
                    f"apt said:\n{proc.stderr.strip() or proc.stdout.strip()}"
                )
            found[pkg] = pathlib.Path(shutil.move(have[-1], debs / have[-1].name))
    return found


def unpack(deb: pathlib.Path, dest: pathlib.Path) -> str:
    """Unpack ``deb`` into ``dest``; return the package version."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    return subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                          capture_output=True, text=True).stdout.strip()


# ------------------------------------------------------------------------------------------------
# Text checks shared by all extractors
# ------------------------------------------------------------------------------------------------

STOPWORDS = {
    "en": "the of and to is that for it with as be on are this by or not you can which from at "
          "have your if use was were will has they their there been would should when what",
    "de": "der die das und ist nicht ein eine zu den von mit sich des auf für im dem auch als "
          "werden aus er hat dass daß sie nach wird bei einer um sind noch wie einem über einen "
          "zum war haben nur oder aber vor zur bis mehr durch man kann sein wenn ich",
    "fr": "le la les de des et est un une du en que qui dans pour pas sur au avec ce il vous "
          "sont par plus ou se ne aux cette être peut fait elle mais nous leur",
    "es": "el la los las de del y que en un una es por con para no se su al lo como más pero "
          "sus le ya este esta son ser muy también hay está cuando",
    "it": "il la le di e che un una è per non del della dei con si da al sono come più ma "
          "anche gli lo nel questo questa essere alla delle può ha",
    "pt": "o a os as de do da dos das e que em um uma é para não com por se no na mais como "
          "mas ao ou você pode são foi ser está isso ele",
}
# Words that are also English words (Portuguese "a", "do", "no"; German "war") are no evidence.
HOMOGRAPHS = {"a", "o", "e", "as", "do", "no", "me", "on", "an", "in", "so", "man", "war", "am",
              "hat", "come", "con", "lo", "se", "da", "ha", "si"}
_STOP = {lang: set(words.split()) for lang, words in STOPWORDS.items()}
_STOP_ONLY = {lang: words - _STOP["en"] - HOMOGRAPHS for lang, words in _STOP.items()
              if lang != "en"}
_EN_ONLY = {lang: _STOP["en"] - words for lang, words in _STOP.items() if lang != "en"}
WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")

SCRIPTS = {  # expected script for languages not written in Latin letters
    "ru": lambda c: "CYRILLIC" in unicodedata.name(c, ""),
    "el": lambda c: "GREEK" in unicodedata.name(c, ""),
    "ko": lambda c: "HANGUL" in unicodedata.name(c, ""),
    "ja": lambda c: any(s in unicodedata.name(c, "") for s in ("HIRAGANA", "KATAKANA", "CJK")),
    "zh": lambda c: "CJK" in unicodedata.name(c, ""),
}


def normalise(text: str, lang: str) -> str:
    """Collapse whitespace; in Chinese and Japanese drop line breaks between characters."""
    text = unicodedata.normalize("NFC", text).replace("\u00a0", " ").replace("\u200b", "")
    if lang in CJK_LANGS:
        text = re.sub(r"(?<=[^\x00-\x7f])\s*\n\s*(?=[^\x00-\x7f])", "", text)
    return re.sub(r"\s+", " ", text).strip()


def size(text: str, lang: str) -> int:
    """Words, or for Chinese and Japanese non-space characters."""
    if lang in CJK_LANGS:
        return sum(1 for c in text if not c.isspace())
    return len(text.split())


def letters_share(text: str) -> float:
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) / max(1, len(chars))


def in_language(text: str, lang: str) -> bool:
    """Is ``text`` (a paragraph) in ``lang`` and not, say, untranslated English?"""
    if lang in SCRIPTS:
        letters = [c for c in text if c.isalpha()]
        if not letters:
            return False
        share = sum(map(SCRIPTS[lang], letters)) / len(letters)
        if lang == "ja" and not re.search(r"[\u3040-\u30ff]", text):
            return False  # no kana: Chinese, or a quotation
        if lang == "zh" and re.search(r"[\u3040-\u30ff]", text):
            return False
        return share >= (0.5 if lang in CJK_LANGS else 0.6)
    words = [w.lower() for w in WORD.findall(text)]
    if lang == "en":
        en = sum(w in _STOP["en"] for w in words)
        other = max(sum(w in s for w in words) for s in _STOP_ONLY.values())
        non_latin = sum(1 for c in text if c.isalpha() and ord(c) > 0x24f)
        return en >= 1 and en > 2 * other and non_latin == 0
    own = sum(w in _STOP_ONLY[lang] for w in words)
    en = sum(w in _EN_ONLY[lang] for w in words)
    return own >= 1 and own > 2 * en


# The crawl's truth records real pages as free of personal data, so paragraphs that a PII
# filter would touch (e-mail addresses, spelled-out ones, IP addresses) are left out.
PII = re.compile(r"\S+@\S+|_AT_|\bchez \S+ point\b|\b\d{1,3}(?:\.\d{1,3}){3}\b")
SENTENCE_END = re.compile(r"[.!?。！？…»”\"')）」』]$")


def prose(text: str, lang: str, code_share: float = 0.0) -> bool:
    """Does a paragraph read as prose in ``lang``?"""
    if code_share > 0.12:
        return False
    if lang in CJK_LANGS:
        if size(text, lang) < 25:
            return False
    elif len(text.split()) < 8:
        return False
    if letters_share(text) < 0.75 or not SENTENCE_END.search(text):
        return False
    if re.search(r"https?://|www\.|[{}<>|\\$#=@]|\.\.\.\.|__", text) or PII.search(text):
        return False  # URLs, shell or markup left in the line, e-mail or IP addresses
    return in_language(text, lang)


def pack(sections: list[tuple[str, list[str]]], lang: str) -> list[tuple[str, list[str]]]:
    """Pack consecutive (title, paragraphs) sections into documents of a plausible size.

    A new document starts at a section heading once the current one has SOFT_WORDS, and at any
    paragraph that would take it past MAX_WORDS. A short tail joins the previous document when
    it fits, and is dropped otherwise. Paragraphs longer than MAX alone are dropped.
    """
    lo, soft, hi = ((MIN_CHARS, SOFT_CHARS, MAX_CHARS) if lang in CJK_LANGS
                    else (MIN_WORDS, SOFT_WORDS, MAX_WORDS))
    docs: list[tuple[str, list[str]]] = []
    title, paras, n = "", [], 0

    def flush():
        nonlocal title, paras, n
        if paras:
            if n >= lo:
                docs.append((title, paras))
            elif docs and size(" ".join(docs[-1][1]), lang) + n <= hi:
                docs[-1][1].extend(paras)
        title, paras, n = "", [], 0

    for sec_title, sec_paras in sections:
        if n >= soft:
            flush()
        for p in sec_paras:
            k = size(p, lang)
            if k > hi:
                continue
            if n + k > hi:
                flush()
            if not paras:
                title = sec_title
            paras.append(p)
            n += k
    flush()
    return docs


# ------------------------------------------------------------------------------------------------
# DocBook HTML manuals
# ------------------------------------------------------------------------------------------------

DROP_CLASSES = {
    "navheader", "navfooter", "toc", "list-of-tables", "list-of-figures", "list-of-examples",
    "table", "informaltable", "figure", "informalfigure", "example", "informalexample",
    "mediaobject", "inlinemediaobject", "footnotes", "footnote", "screen", "programlisting",
    "literallayout", "synopsis", "cmdsynopsis", "funcsynopsis", "revhistory", "legalnotice",
    "segmentedlist", "calloutlist", "authorgroup", "author", "copyright", "abstract", "qandaset",
    "bibliography", "index", "glossary",
}
DROP_TAGS = {"table", "pre", "script", "style", "sup", "img", "head"}
CODE_TAGS = {"code", "tt", "kbd", "samp", "var"}
CODE_CLASSES = {"literal", "command", "filename", "option", "replaceable", "userinput",
                "computeroutput", "systemitem", "envar", "parameter", "function", "varname",
                "type", "prompt", "uri", "email", "keycap", "package", "constant", "code"}
HEADING = re.compile(r"^h[1-5]$")
FULL_STOP = re.compile(r"[.!?。！？]$")
LEADS_TO_CODE = re.compile(r"\b(?:following|as follows)\b|\bbelow\.$", re.IGNORECASE)
SECTION_NUMBER = re.compile(r"^(?:[A-Z]|\d+)(?:\.\d+)*\.\s+")


def _code_chars(p) -> int:
    n = 0
    for el in p.iter():
        if not isinstance(el.tag, str):
            continue
        classes = set((el.get("class") or "").split())
        if el.tag in CODE_TAGS or classes & CODE_CLASSES:
            n += len(normalise(el.text_content(), "en"))
    return n


def docbook_sections(path: pathlib.Path, lang: str) -> list[tuple[str, list[str]]]:
    """(heading, prose paragraphs) for each heading of a DocBook HTML page, in page order."""
    root = lxml.html.fromstring(path.read_bytes())
    for el in list(root.iter()):
        if not isinstance(el.tag, str) or el.getparent() is None:
            continue
        classes = set((el.get("class") or "").split())
        if el.tag in DROP_TAGS or classes & DROP_CLASSES:
            el.drop_tree()
    sections: list[tuple[str, list[str]]] = []
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        if HEADING.match(el.tag) and "title" in (el.get("class") or "").split():
            heading = SECTION_NUMBER.sub("", normalise(el.text_content(), lang))
            sections.append((heading, []))
        elif el.tag == "p" and "title" not in (el.get("class") or "").split():
            text = normalise(el.text_content(), lang)
            if not text or not sections:
                continue
            if not prose(text, lang, _code_chars(el) / max(1, len(text))):
                continue
            if any(a.tag in ("li", "dd") for a in el.iterancestors()) and \
                    not FULL_STOP.search(text):
                continue  # list items that are fragments ("Debian Tutorial by ...")
            if lang == "en" and len(text.split()) <= 25 and LEADS_TO_CODE.search(text):
                continue  # "... with the following command." introduced a removed listing
            sections[-1][1].append(text)
    return [s for s in sections if s[1]]


def docbook_docs(package: str, lang: str, pages: list[pathlib.Path]) -> list[Doc]:
    docs = []
    for page in sorted(pages):
        if SKIP_HTML.match(page.name):
            continue
        for i, (title, paras) in enumerate(pack(docbook_sections(page, lang), lang)):
            docs.append(Doc(lang, package, title, paras, key=(page.name, i)))
    return docs


def reference_docs(root: pathlib.Path, package: str) -> list[Doc]:
    code = package.removeprefix("debian-reference-")
    pages = list((root / "usr/share/debian-reference").glob(f"*.{code}.html"))
    return docbook_docs(package, REFERENCE_LANGS[code], pages)


def history_docs(root: pathlib.Path, package: str) -> list[Doc]:
    docs = []
    for lang in HISTORY_LANGS:
        pages = list((root / "usr/share/doc/debian-history/docs").glob(f"*.{lang}.html"))
        docs += docbook_docs(package, lang, pages)
    return docs


def install_guide_docs(root: pathlib.Path, package: str) -> list[Doc]:
    docs = []
    for folder, lang in sorted(INSTALL_GUIDE_LANGS.items()):
        pages = list((root / "usr/share/doc/installation-guide-amd64" / folder).glob("*.html"))
        docs += docbook_docs(package, lang, pages)
    return docs


# ------------------------------------------------------------------------------------------------
# King James Bible (bible-kjv-text): decode the package's compressed text
# ------------------------------------------------------------------------------------------------

KJV_BOOKS = [
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth",
    "1 Samuel", "2 Samuel", "1 Kings", "2 Kings", "1 Chronicles", "2 Chronicles", "Ezra",
    "Nehemiah", "Esther", "Job", "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon",
    "Isaiah", "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel", "Amos",
    "Obadiah", "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah",
    "Malachi", "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "1 Corinthians",
    "2 Corinthians", "Galatians", "Ephesians", "Philippians", "Colossians", "1 Thessalonians",
    "2 Thessalonians", "1 Timothy", "2 Timothy", "Titus", "Philemon", "Hebrews", "James",
    "1 Peter", "2 Peter", "1 John", "2 John", "3 John", "Jude", "Revelation",
]


def unlzw(data: bytes, maxbits: int = 16) -> bytes:
    """Decode an LZW code stream as written by Unix ``compress`` in block mode (no header)."""
    total_bits = len(data) * 8
    bits = int.from_bytes(data, "little")
    n_bits, maxmaxcode = 9, 1 << maxbits
    maxcode = (1 << n_bits) - 1
    prefix: dict[int, int] = {}
    suffix: dict[int, int] = {}
    free_ent, pos, base, oldcode, finchar = 257, 0, 0, -1, 0
    out = bytearray()

    def group_end(pos: int, base: int, n_bits: int) -> int:
        # compress writes codes in groups of n_bits bytes; a width change skips to the next group
        g = n_bits * 8
        return pos + (-(pos - base)) % g

    while True:
        if free_ent > maxcode and n_bits < maxbits:
            pos = base = group_end(pos, base, n_bits)
            n_bits += 1
            maxcode = maxmaxcode if n_bits == maxbits else (1 << n_bits) - 1
        if pos + n_bits > total_bits:
            break
        code = (bits >> pos) & ((1 << n_bits) - 1)
        pos += n_bits
        if oldcode == -1:
            if code >= 256:
                raise ValueError("LZW stream starts with a non-literal code")
            finchar = oldcode = code
            out.append(code)
            continue
        if code == 256:  # CLEAR
            prefix.clear()
            suffix.clear()
            free_ent = 256
            pos = base = group_end(pos, base, n_bits)
            n_bits, maxcode = 9, (1 << 9) - 1
            continue
        incode = code
        stack = bytearray()
        if code >= free_ent:
            if code > free_ent:
                raise ValueError(f"corrupt LZW stream: code {code} > {free_ent}")
            stack.append(finchar)
            code = oldcode
        while code >= 256:
            stack.append(suffix[code])
            code = prefix[code]
        finchar = code
        stack.append(code)
        stack.reverse()
        out += stack
        if free_ent < maxmaxcode:
            prefix[free_ent], suffix[free_ent] = oldcode, finchar
            free_ent += 1
        oldcode = incode
    return bytes(out)


def kjv_text(path: pathlib.Path) -> str:
    """The plain text of ``bible.data``: header, window size, window count, window offsets."""
    data = path.read_bytes()
    if not data.startswith(b"EC02"):
        raise ValueError(f"{path}: not a bible-kjv compressed data file")
    window, n = struct.unpack(">II", data[0x54:0x5C])
    offsets = struct.unpack(f">{n + 1}I", data[0x5C:0x5C + 4 * (n + 1)])
    parts = []
    for k in range(n):
        part = unlzw(data[offsets[k]:offsets[k + 1]])
        if len(part) != window and k != n - 1:
            raise ValueError(f"{path}: window {k} decoded to {len(part)} bytes, not {window}")
        parts.append(part)
    return b"".join(parts).decode("ascii")


def bible_docs(root: pathlib.Path, package: str) -> list[Doc]:
    text = kjv_text(root / "usr/lib/bible.data")
    chapters: dict[tuple[int, int], list[str]] = defaultdict(list)
    books: list[str] = []
    for line in text.splitlines():
        m = re.match(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$", line)
        if not m:
            continue  # the title line
        if m[1] not in books:
            books.append(m[1])
        chapters[(len(books) - 1, int(m[2]))].append(m[4].strip())
    if len(books) != len(KJV_BOOKS):
        raise ValueError(f"expected {len(KJV_BOOKS)} books in the KJV text, found {len(books)}")
    rng = random.Random(SEED + package)
    docs = []
    for (book, chapter), verses in sorted(chapters.items()):
        # verses into paragraphs of 3 to 6, stopping before MAX_WORDS
        paras, words = [], 0
        i = 0
        while i < len(verses):
            k = rng.randint(3, 6)
            chunk = verses[i:i + k]
            w = sum(len(v.split()) for v in chunk)
            if words + w > MAX_WORDS:
                break
            paras.append(" ".join(chunk))
            words += w
            i += k
        if words >= MIN_WORDS:
            docs.append(Doc("en", package, f"{KJV_BOOKS[book]} {chapter}", paras,
                            key=(book, chapter)))
    return docs


# ------------------------------------------------------------------------------------------------
# Fortune files
# ------------------------------------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
OVERSTRIKE = re.compile(r".\x08")
ATTRIBUTION = re.compile(r"^\s*(?:--|—|―)\s*(.+?)\s*$")


def fortune_entry(entry: str, lang: str) -> str | None:
    """One fortune as one paragraph ("quote -- author"), or None when it is not prose."""
    lines = [ln.rstrip() for ln in entry.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    author = None
    if lines and ATTRIBUTION.match(lines[-1]) and lines[-1].startswith(("\t", " ")):
        author = ATTRIBUTION.match(lines.pop())[1]
    body = [ln.strip() for ln in lines if ln.strip()]
    if not body:
        return None
    head = ""
    if lang == "zh":
        # a poem: "题目:《title》" / "作者:name" / verse lines
        if body[0].startswith(("题目", "《")):
            head = re.sub(r"^题目\s*[:：]\s*", "", body.pop(0))
        if body and body[0].startswith("作者"):
            head += " " + re.sub(r"^作者\s*[:：]\s*", "作者：", body.pop(0))
    for ln in body:
        if letters_share(ln) < 0.6 or re.match(r"^([A-Za-z]\)|\d+[.)]|[-*>#$:|]) ", ln):
            return None  # ASCII art, lists, quoted mail, shell lines, dialogue scripts
    if lang == "zh":
        text = (head + " " + "".join(body)).strip()
    else:
        text = " ".join(body)
    text = normalise(text, lang)
    if author:
        text += " — " + normalise(author, lang)
    n = size(text, lang)
    if lang == "zh":
        if not 20 <= n <= 600:
            return None
    elif not 6 <= n <= 200:
        return None
    body_text = text.rsplit(" — ", 1)[0]
    if letters_share(body_text) < 0.7 or not in_language(body_text, lang):
        return None
    if re.search(r"https?://|www\.|[{}<>|\\$#=_]", text) or PII.search(text):
        return None
    return text


def fortune_docs(root: pathlib.Path, package: str) -> list[Doc]:
    lang = FORTUNE_LANG[package]
    lo, hi = ((MIN_CHARS, 900) if lang in CJK_LANGS else (MIN_WORDS, 320))
    rng = random.Random(SEED + package)
    docs = []
    for rel in sorted(FORTUNE_FILES[package]):
        path = root / "usr/share/games/fortunes" / rel
        raw = path.read_text(encoding="utf-8", errors="replace")
        raw = OVERSTRIKE.sub("", ANSI.sub("", raw)).replace("\r", "")
        entries = [fortune_entry(e, lang) for e in re.split(r"(?m)^%\s*$", raw)]
        entries = [e for e in entries if e]
        name = rel.split("/")[-1].removesuffix(".fortunes")
        label = FORTUNE_TITLES.get(name, name.replace("_", " ").replace("-", " ").capitalize())
        paras, n, target, part = [], 0, rng.randint(lo + 20, hi), 1
        for e in entries:
            paras.append(e)
            n += size(e, lang)
            if n >= target:
                docs.append(Doc(lang, package, f"{label} {part}", paras, key=(rel, part)))
                paras, n, target, part = [], 0, rng.randint(lo + 20, hi), part + 1
    return docs


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------

def extractor(package: str):
    if package.startswith("debian-reference-"):
        return reference_docs
    if package.startswith("fortunes"):
        return fortune_docs
    return {"debian-history": history_docs, "installation-guide-amd64": install_guide_docs,
            "bible-kjv-text": bible_docs}[package]


def spread(items: list, k: int) -> list:
    """``k`` evenly spaced items of ``items`` (all of them when there are no more than ``k``)."""
    if len(items) <= k:
        return items
    return [items[(2 * i + 1) * len(items) // (2 * k)] for i in range(k)]


def build(work: pathlib.Path, debs: pathlib.Path) -> list[dict]:
    paths = download(PACKAGES, debs)
    versions, docs = {}, []
    for pkg in tqdm(PACKAGES, desc="extracting", unit="pkg"):
        root = work / pkg
        versions[pkg] = unpack(paths[pkg], root)
        docs += extractor(pkg)(root, pkg)
    by_source = defaultdict(list)
    for d in docs:
        by_source[(d.package, d.lang)].append(d)
    rows = []
    for pkg in PACKAGES:
        kept = []
        for (p, lang), ds in sorted(by_source.items()):
            if p != pkg:
                continue
            if (p, lang) not in CAPS:
                continue
            kept += spread(sorted(ds, key=lambda d: d.key), CAPS[(p, lang)])
        kept.sort(key=lambda d: (d.lang, d.key))
        licence = LICENCES["debian-reference" if pkg.startswith("debian-reference-") else pkg]
        for i, d in enumerate(kept):
            rows.append({"id": f"{pkg}/{i}", "lang": d.lang, "package": pkg,
                         "version": versions[pkg], "licence": licence, "title": d.title,
                         "text": d.text})
    return rows


def write(rows: list[dict], out: pathlib.Path) -> bytes:
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    buf = io.BytesIO()
    # filename and mtime fixed so that the same rows always give the same bytes
    with gzip.GzipFile(filename="real_text.jsonl", fileobj=buf, mode="wb", mtime=0,
                       compresslevel=9) as f:
        f.write(body)
    out.write_bytes(buf.getvalue())
    return buf.getvalue()


def summary(rows: list[dict]) -> str:
    table = defaultdict(lambda: [0, 0])
    for r in rows:
        for key in ((r["lang"], r["package"]), (r["lang"], "(all)")):
            table[key][0] += 1
            table[key][1] += size(r["text"], r["lang"])
    lines = [f"{'lang':<5} {'package':<26} {'docs':>5} {'words/chars':>12} {'mean':>6}"]
    for (lang, pkg), (n, s) in sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1] != "(all)",
                                                                      kv[0][1])):
        unit = "chars" if lang in CJK_LANGS else "words"
        lines.append(f"{lang:<5} {pkg:<26} {n:>5} {s:>8} {unit:<5} {s // n:>4}")
    lines.append(f"total {'':<26} {len(rows):>5}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=pathlib.Path, default=OUT, help=f"output (default {OUT})")
    ap.add_argument("--debs", type=pathlib.Path, default=None,
                    help="folder to keep the downloaded .deb files in and reuse them from")
    args = ap.parse_args(argv)
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: run this on Debian (or a derivative) that can reach "
                     "the Debian package registry.")
    with tempfile.TemporaryDirectory(prefix="real_text_") as tmp:
        work = pathlib.Path(tmp)
        debs = args.debs or work / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        rows = build(work / "unpacked", debs)
    data = write(rows, args.out)
    print(summary(rows))
    print(f"wrote {args.out} ({len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()})")


if __name__ == "__main__":
    main()
