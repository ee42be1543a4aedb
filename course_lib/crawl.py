"""The course's mini Common Crawl: the world's documents rendered as a few thousand web pages.

Introduced in chapter 1 (Pretraining data). Common Crawl stores what its crawler fetched as WARC
records: a URL, a fetch date and the raw bytes of the HTML. A real crawl is mostly not good
text: navigation menus, cookie banners and footers around every article, spam and adult pages,
pages in other languages, the same article on many mirrors, e-mail addresses and phone numbers.
``render_crawl`` makes a small crawl with all of these, from

- the documents of ``course_lib.world`` (what the corpus should keep), each on a site with its
  own page template and boilerplate;
- real text that ships with the course (``assets/real_text.jsonl.gz``, from Debian packages:
  English prose, and pages in German, French, Spanish, Russian, Japanese, Chinese, ...);
- generated junk: keyword spam, adult and gambling pages, link farms, error pages, cookie walls;
- exact copies on mirror sites, near copies with small edits, personal data in the text, and
  broken records (empty pages, bytes that are not UTF-8, truncated HTML, a missing field).

Every record carries a ``truth`` column (JSON) saying what it really is. The cleaning pipeline
(``course_lib.data``) never reads it; the chapter uses it to show what each stage removed and
how often it was right. Same seed, same crawl, byte for byte.
"""

from __future__ import annotations

import gzip
import html as _html
import json
import random
import re
from dataclasses import dataclass

from course_lib import assets
from course_lib import world as _world

# --------------------------------------------------------------------------------------------
# Real text
# --------------------------------------------------------------------------------------------


def load_real_text(lang: str | None = None) -> list[dict]:
    """The real documents that ship with the course (see ``assets/SOURCES.md``): dicts with
    ``id, lang, package, version, licence, title, text``; only ``lang`` ones when given."""
    raw = assets.path("real_text.jsonl.gz").read_bytes()  # needs the Debian package registry
    docs = [json.loads(line) for line in gzip.decompress(raw).decode("utf-8").splitlines()
            if line.strip()]
    return [d for d in docs if lang is None or d["lang"] == lang]


# --------------------------------------------------------------------------------------------
# Sites: each has a domain, a URL pattern and its own boilerplate
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    domain: str
    path: str            # URL path pattern with {slug} and {n}
    nav: tuple           # menu entries
    tag: str             # the element the article sits in
    wrap_nav: bool       # menu inside <nav> (True) or in a plain <div class="menu"> (False)
    footer: str


SITES = {
    "encyclopedia": [
        Site("worldpedia.org", "/wiki/{slug}", ("Main page", "Random article", "Recent changes",
             "Help", "Donate"), "article", True,
             "This page was last edited in 2026. Text is available under a free licence."),
        Site("everyfact.net", "/entry/{n}/{slug}", ("Home", "Browse", "Top entries", "Log in"),
             "div", False, "Copyright 2026 EveryFact. All rights reserved. Privacy | Terms"),
    ],
    "story": [
        Site("tales-of-the-valley.net", "/stories/{n}-{slug}", ("Stories", "Authors", "Submit",
             "Newsletter"), "article", True, "Stories are shared by their authors. Contact us."),
    ],
    "forum": [
        Site("askaround.com", "/t/{slug}/{n}", ("Latest", "Top", "Categories", "Sign up",
             "Log in"), "main", True, "Powered by open source forum software. Rules | FAQ"),
        Site("villageboard.org", "/thread{n}.html", ("Board index", "Search", "Members"),
             "div", False, "All times are UTC. Board software 3.2. Delete cookies"),
    ],
    "list": [
        Site("top-tens.info", "/lists/{slug}", ("Home", "Lists", "Quizzes", "About"), "article",
             True, "Copyright 2026 TopTens. Share this list with your friends!"),
    ],
    "table": [
        Site("quick-facts.info", "/sheet/{n}", ("Home", "Sheets", "Search", "About"), "main",
             True, "Quick Facts: reference sheets shared by readers."),
    ],
    "news": [
        Site("daily-notes.news", "/2026/{n}/{slug}", ("Front page", "Local", "Weather", "Sport",
             "Opinion"), "article", True, "Daily Notes. Subscribe for more local news."),
        Site("town-crier.org", "/news/{n}", ("News", "Events", "Letters", "Archive"), "div",
             False, "Town Crier is an independent local paper. Contact the editor."),
    ],
    "arithmetic": [
        Site("mathpractice.org", "/worksheets/{n}", ("Worksheets", "Topics", "Teachers",
             "Help"), "main", True, "Free worksheets for every classroom."),
    ],
    "counting": [
        Site("mathpractice.org", "/letters/{n}", ("Worksheets", "Topics", "Teachers", "Help"),
             "main", True, "Free worksheets for every classroom."),
    ],
    "real": [
        Site("www.debian.org", "/doc/manuals/{slug}.{lang}.html", ("Home", "About Debian",
             "Getting Debian", "Support", "Developers' Corner"), "div", False,
             "Debian is a registered trademark of Software in the Public Interest, Inc."),
        Site("library-of-texts.org", "/read/{n}/{slug}", ("Catalogue", "Authors", "Random text",
             "About"), "article", True, "Texts in the public domain or under free licences."),
    ],
}
MIRRORS = ["mirror-one.net", "copycat-content.com", "archive-copy.org", "newsfeed-reposts.com"]

# Domains of junk. The first ones are on the URL blocklist of course_lib.data; the others are
# not, so the later stages must catch their pages.
BAD_DOMAINS = {
    "adult": ["hot-singles-xxx.com", "xxx-videos-free.net", "adult-dating-now.biz"],
    "gambling": ["casino-bonanza.biz", "mega-slots-win.com", "lucky-bets-24.net"],
    "spam": ["best-deals-online.shop", "cheap-pills-store.biz", "seo-traffic-boost.xyz",
             "free-gift-cards.click", "top-loans-fast.com"],
}

_SCRIPTS = [
    "window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);} "
    "gtag('js', new Date()); gtag('config', 'UA-000000-1');",
    "document.addEventListener('DOMContentLoaded', function () { var menu = "
    "document.querySelector('.menu'); menu.classList.toggle('open'); });",
    "var trackingPixel = new Image(); trackingPixel.src = '/pixel.gif?page=' + "
    "encodeURIComponent(location.pathname);",
]
_STYLES = ["body { font-family: Georgia, serif; margin: 0 auto; max-width: 52em; }",
           ".menu a { color: #334; padding: 0 0.5em; } .cookie { position: fixed; bottom: 0; }"]
_COOKIE = ("We use cookies to improve your experience. By continuing to browse you agree to "
           "our use of cookies.")

LANG_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
              "pt": "Portuguese", "ru": "Russian", "ja": "Japanese", "zh": "Chinese"}


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "page"


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _body_html(title: str, text: str, kind: str) -> str:
    """The article as HTML: a heading, then paragraphs (lists and worked steps keep lines)."""
    out = [f"<h1>{_html.escape(title)}</h1>"]
    for p in _paragraphs(text):
        lines = p.split("\n")
        if kind == "list" and len(lines) == 1 and re.match(r"\d+\. ", p):
            out.append(f"<ol><li>{_html.escape(p[p.index(' ') + 1:])}</li></ol>")
        elif len(lines) > 1 and all(re.match(r"\d+\. ", ln) for ln in lines):
            items = "".join(f"<li>{_html.escape(ln[ln.index(' ') + 1:])}</li>" for ln in lines)
            out.append(f"<ol>{items}</ol>")
        else:
            out.append("<p>" + "<br>\n".join(_html.escape(ln) for ln in lines) + "</p>")
    return "\n".join(out)


def render_page(site: Site, title: str, body_html: str, rng: random.Random,
                lang: str = "en", sidebar: list[str] | None = None) -> str:
    """A whole HTML page: head with style and scripts, menu, cookie banner, the article in
    ``site.tag``, a sidebar and a footer."""
    nav_links = " ".join(f'<a href="/{slugify(x)}">{_html.escape(x)}</a>' for x in site.nav)
    nav = (f'<nav class="menu">{nav_links}</nav>' if site.wrap_nav
           else f'<div class="menu">{nav_links}</div>')
    scripts = "".join(f"<script>{s}</script>" for s in rng.sample(_SCRIPTS, rng.randrange(1, 3)))
    side = ""
    if sidebar:
        items = "".join(f'<li><a href="/{slugify(s)}">{_html.escape(s)}</a></li>' for s in sidebar)
        side = f'<aside class="sidebar"><h3>Popular</h3><ul>{items}</ul></aside>'
    cookie = f'<div class="cookie">{_COOKIE}</div>' if rng.random() < 0.5 else ""
    cls = rng.choice(["content", "post-body", "entry", "main-text"])
    article = (f'<{site.tag} class="{cls}">\n{body_html}\n</{site.tag}>')
    # a <nav> sits in the <header>; a plain menu <div> after it, where tag-based extractors
    # (unlike trafilatura) cannot tell it from the article
    header = (f'<header><a class="logo" href="/">{site.domain}</a>{nav}</header>' if site.wrap_nav
              else f'<header><a class="logo" href="/">{site.domain}</a></header>\n{nav}')
    return (f'<!DOCTYPE html>\n<html lang="{lang}">\n<head><meta charset="utf-8">'
            f"<title>{_html.escape(title)} | {site.domain}</title>"
            f"<style>{rng.choice(_STYLES)}</style>{scripts}</head>\n<body>\n{header}\n{cookie}\n"
            f"{article}\n{side}\n<footer><p>{_html.escape(site.footer)}</p></footer>\n"
            f"</body>\n</html>\n")


# --------------------------------------------------------------------------------------------
# Junk generators
# --------------------------------------------------------------------------------------------

_SPAM_PHRASES = ["best cheap deals", "buy now and save", "limited offer click here",
                 "free gift cards", "fast loans no credit check", "top seo traffic boost",
                 "win big today", "cheap pills online"]
_ADULT_WORDS = ["xxx", "hot singles", "adult dating", "sexy", "porn"]
_GAMBLING = ["casino bonus", "free spins", "online slots", "poker jackpot", "sports betting odds"]


def _spam_text(rng: random.Random, kind: str) -> tuple[str, str]:
    if kind == "keyword_spam":
        phrase = rng.choice(_SPAM_PHRASES)
        lines = [f"{phrase} {phrase} {rng.choice(_SPAM_PHRASES)}!!!" for _ in range(rng.randrange(8,
                 20))]
        return phrase.title(), "\n\n".join(lines)
    if kind == "adult":
        w = rng.choice(_ADULT_WORDS)
        lines = [f"{w} {rng.choice(_ADULT_WORDS)} click here to meet {w} tonight" for _ in
                 range(rng.randrange(5, 12))]
        return f"{w.title()} tonight", "\n\n".join(lines)
    if kind == "gambling":
        w = rng.choice(_GAMBLING)
        lines = [f"Get your {w} now! {rng.choice(_GAMBLING)} {rng.randrange(100, 999)}% bonus "
                 f"$$$ >>> sign up <<<" for _ in range(rng.randrange(5, 12))]
        return w.title(), "\n\n".join(lines)
    if kind == "link_farm":
        words = [_world._word(rng, 2) for _ in range(60)]
        return "Links", "\n\n".join(" | ".join(words[i:i + 6]) for i in range(0, 60, 6))
    if kind == "error_page":
        return rng.choice(["404 Not Found", "Access denied", "Page moved"]), rng.choice(
            ["The page you requested could not be found.", "You do not have permission.",
             "This page has moved. Click here."])
    if kind == "cookie_wall":
        return "Please enable JavaScript", ("This site requires JavaScript to work. Please "
                                            "enable JavaScript in your browser settings and "
                                            "reload the page. {loading...}")
    if kind == "lorem":
        base = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
                "incididunt ut labore et dolore magna aliqua. ")
        return "Coming soon", "\n\n".join(base * rng.randrange(1, 4) for _ in range(4))
    raise ValueError(kind)


# --------------------------------------------------------------------------------------------
# Personal data
# --------------------------------------------------------------------------------------------


def fake_email(rng: random.Random) -> str:
    user = _world._word(rng, 2) + rng.choice(["", ".", "_"]) + _world._word(rng, 1)
    if rng.random() < 0.3:
        user += str(rng.randrange(1, 99))
    return f"{user}@{rng.choice(['mailbox.org', 'post.example', 'villagemail.net', 'uni.edu'])}"


def fake_phone(rng: random.Random) -> str:
    a, b, c = rng.randrange(200, 999), rng.randrange(200, 999), rng.randrange(0, 10000)
    fmt = rng.choice(["{a}-{b}-{c:04d}", "({a}) {b}-{c:04d}", "{a}.{b}.{c:04d}",
                      "+1 {a} {b} {c:04d}", "+1-{a}-{b}-{c:04d}", "{a} {b} {c:04d}"])
    return fmt.format(a=a, b=b, c=c)


def fake_ipv4(rng: random.Random) -> str:
    return ".".join(str(rng.randrange(0, 256)) for _ in range(4))


def _pii_sentence(rng: random.Random) -> tuple[str, dict]:
    kind = rng.choice(["email", "phone", "ip"])
    if kind == "email":
        v = fake_email(rng)
        s = rng.choice([f"You can write to me at {v} if you have questions.",
                        f"Contact the author: {v}.", f"Send corrections to {v} please."])
    elif kind == "phone":
        v = fake_phone(rng)
        s = rng.choice([f"Call me on {v} any evening.", f"The office number is {v}.",
                        f"For tickets ring {v} before noon."])
    else:
        v = fake_ipv4(rng)
        s = rng.choice([f"The old server at {v} still hosts the archive.",
                        f"My router at {v} keeps dropping the connection.",
                        f"Requests came from {v} all night."])
    return s, {"kind": kind, "value": v}


# --------------------------------------------------------------------------------------------
# The crawl
# --------------------------------------------------------------------------------------------


@dataclass
class CrawlConfig:
    """How many pages of each sort ``render_crawl`` makes."""

    n_documents: int = 4000     # world documents (each becomes one page)
    n_real_en: int = 150        # real English pages
    n_foreign: int = 240        # real pages in other languages
    n_junk: int = 260           # spam, adult, gambling, link farms, error pages, ...
    exact_dup_rate: float = 0.06    # share of world pages copied verbatim to a mirror
    near_dup_rate: float = 0.05     # share copied with a small edit
    pii_rate: float = 0.12          # share of forum and news pages with personal data
    n_broken: int = 12          # empty, not UTF-8, truncated, missing field


def _fetch_date(rng: random.Random) -> str:
    return (f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T"
            f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z")


def _sidebar(world, rng):
    return [e.name for e in rng.sample(world.entities[:50], 4)]


def _near_edit(text: str, rng: random.Random) -> str:
    """A small edit: one word changed, or a short note appended (a near duplicate)."""
    if rng.random() < 0.5:
        return text + "\n\n" + rng.choice(["Updated: a reader sent us a correction.",
                                           "This article was first published last year.",
                                           "Thanks to everyone who shared it."])
    words = text.split(" ")
    i = rng.randrange(len(words))
    words[i] = rng.choice(["really", "truly", "also", "still"]) + " " + words[i]
    return " ".join(words)


def render_crawl(world: _world.World | None = None, documents: list | None = None,
                 seed: int = 0, config: CrawlConfig | None = None, progress: bool = False
                 ) -> list[dict]:
    """The mini crawl: a list of records ``{"id", "url", "fetch_date", "html": bytes,
    "truth": json}``, shuffled as a crawler would return them. Defaults: the course world
    (``make_world()``) and its ``make_documents``; ``CrawlConfig()`` sizes."""
    cfg = config or CrawlConfig()
    world = world or _world.make_world()
    documents = documents if documents is not None else _world.make_documents(world,
                                                                              cfg.n_documents)
    rng = random.Random(f"course-crawl-{world.seed}-{seed}")
    pages = []  # (url, html str or bytes or None, truth)
    seen_urls = set()

    def add(url, html, truth):
        while url in seen_urls:
            url = url + ("?" if "?" not in url else "&") + f"p={rng.randrange(10 ** 6)}"
        seen_urls.add(url)
        pages.append({"url": url, "fetch_date": _fetch_date(rng), "html": html, "truth": truth})
        return url

    iterator = enumerate(documents)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, total=len(documents), desc="rendering world pages")
    for i, doc in iterator:
        site = rng.choice(SITES[doc.kind])
        text = doc.text
        pii = []
        if doc.kind in ("forum", "news") and rng.random() < cfg.pii_rate:
            s, p = _pii_sentence(rng)
            text = text + "\n\n" + s
            pii.append(p)
        url = "https://" + site.domain + site.path.format(slug=slugify(doc.title), n=i + 1,
                                                          lang="en")
        body = _body_html(doc.title, text, doc.kind)
        html = render_page(site, doc.title, body, rng, sidebar=_sidebar(world, rng))
        truth = {"source": "world", "kind": doc.kind, "doc": i, "pii": pii}
        url = add(url, html, truth)
        r = rng.random()
        if r < cfg.exact_dup_rate:
            mirror = Site(rng.choice(MIRRORS), "/copy/{n}", ("Home", "Latest", "Contact"),
                          rng.choice(["div", "article"]), rng.random() < 0.5,
                          "Reposted content. All rights belong to their owners.")
            html2 = render_page(mirror, doc.title, body, rng)
            add(f"https://{mirror.domain}/copy/{i + 1}", html2,
                {"source": "world", "kind": doc.kind, "doc": i, "pii": pii, "duplicate_of": url,
                 "duplicate": "exact"})
        elif r < cfg.exact_dup_rate + cfg.near_dup_rate:
            mirror = Site(rng.choice(MIRRORS), "/copy/{n}", ("Home", "Latest", "Contact"),
                          "article", True, "Reposted content. All rights belong to their owners.")
            edited = _near_edit(text, rng)
            html2 = render_page(mirror, doc.title, _body_html(doc.title, edited, doc.kind), rng)
            add(f"https://{mirror.domain}/copy/{i + 1}", html2,
                {"source": "world", "kind": doc.kind, "doc": i, "pii": pii, "duplicate_of": url,
                 "duplicate": "near"})

    real = load_real_text()
    english = [d for d in real if d["lang"] == "en"]
    foreign = [d for d in real if d["lang"] != "en"]
    for d in rng.sample(english, min(cfg.n_real_en, len(english))):
        site = rng.choice(SITES["real"])
        url = "https://" + site.domain + site.path.format(slug=slugify(d["title"]),
                                                          n=rng.randrange(10 ** 5), lang="en")
        html = render_page(site, d["title"], _body_html(d["title"], d["text"], "real"), rng)
        add(url, html, {"source": "real", "lang": "en", "real_id": d["id"], "pii": []})
    for d in rng.sample(foreign, min(cfg.n_foreign, len(foreign))):
        site = rng.choice(SITES["real"] + SITES["encyclopedia"])
        domain = site.domain if site.domain.startswith("www.") else f"{d['lang']}.{site.domain}"
        url = "https://" + domain + site.path.format(slug=slugify(d["title"]) or "seite",
                                                     n=rng.randrange(10 ** 5), lang=d["lang"])
        html = render_page(site, d["title"], _body_html(d["title"], d["text"], "real"), rng,
                           lang=d["lang"])
        add(url, html, {"source": "real", "lang": d["lang"], "real_id": d["id"], "pii": []})

    junk_kinds = ["keyword_spam", "adult", "gambling", "link_farm", "error_page", "cookie_wall",
                  "lorem"]
    for k in range(cfg.n_junk):
        kind = junk_kinds[k % len(junk_kinds)]
        title, text = _spam_text(rng, kind)
        if kind in ("adult", "gambling", "keyword_spam"):
            category = {"keyword_spam": "spam", "adult": "adult", "gambling": "gambling"}[kind]
            domain = rng.choice(BAD_DOMAINS[category])
        else:
            domain = rng.choice(["free-hosting.site", "my-homepage.net", "parked-domain.com",
                                 "under-construction.org"])
        site = Site(domain, "/{slug}", ("Home", "Offers", "Contact"), "div", False,
                    "All rights reserved.")
        html = render_page(site, title, _body_html(title, text, "junk"), rng)
        add(f"https://{domain}/{slugify(title)}-{k}", html, {"source": "junk", "kind": kind,
                                                            "pii": []})

    # broken records: what a real crawl also returns
    for k in range(cfg.n_broken):
        sort = ["empty", "not_utf8", "truncated", "missing_html", "missing_url", "binary"][k % 6]
        url = f"https://broken-{k}.example.net/page"
        if sort == "empty":
            html = b""
        elif sort == "not_utf8":
            html = render_page(SITES["real"][1], "Übersicht", "<p>Grüße aus Köln, schöne "
                               "Straße.</p>", rng, lang="de").encode("latin-1")
        elif sort == "truncated":
            html = "<html><head><title>Lost</title><script>var x = 1;"
        elif sort == "binary":
            html = bytes(rng.randrange(256) for _ in range(300))
        else:
            html = "<html><body><p>A page whose record lost a field.</p></body></html>"
        rec_html = None if sort == "missing_html" else html
        page_url = None if sort == "missing_url" else url
        pages.append({"url": page_url, "fetch_date": _fetch_date(rng), "html": rec_html,
                      "truth": {"source": "broken", "kind": sort, "pii": []}})

    rng.shuffle(pages)
    records = []
    for n, p in enumerate(pages):
        html = p["html"]
        if isinstance(html, str):
            html = html.encode("utf-8")
        records.append({"id": f"crawl-{n:05d}", "url": p["url"], "fetch_date": p["fetch_date"],
                        "html": html, "truth": json.dumps(p["truth"], sort_keys=True)})
    return records
