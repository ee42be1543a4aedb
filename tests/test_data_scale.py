"""The chapter 1 stages on datatrove (``course_lib.data_scale``), on a hand-made mini crawl.

Thirty Common-Crawl-like records, each made to be kept or to be removed by one known stage: good
articles inside realistic HTML (menus, a cookie banner, a sidebar, a footer), a block-listed
domain, a page with no text, keyword spam, a page too short to be an article, a list of links,
a lorem-ipsum placeholder, a page of code, a list of headlines, an exact mirror copy and a near
copy of kept articles, and broken records: an empty page, bytes that are not UTF-8, a string that
cannot be written as UTF-8, a record without a URL.

Slow: every datatrove task is a process that loads FineWeb's 4.5-million-domain URL block list
and spaCy's English tokenizer (5 to 20 s on two cores), and each run starts five executors.
"""

from __future__ import annotations

import itertools
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("datatrove", reason="datatrove is not installed (pip install -e '.[scale]')")

from course_lib.data_scale import MINHASH_STAGE, STAGES, run_datatrove

# ---------------------------------------------------------------------------------------------
# The mini crawl
# ---------------------------------------------------------------------------------------------

ARTICLES = {
    "lighthouse": (
        "The Old Lighthouse on Kestrel Point",
        [
            "The lighthouse on Kestrel Point was built in 1847, after three fishing boats were lost on "
            "the rocks below the cliff in a single winter storm. The harbour board paid for the tower, "
            "and the keepers' cottages were added ten years later.",
            "For more than a century a keeper climbed the spiral stairs every evening to light the lamp. "
            "The last keeper, Margaret Hale, kept a diary of the weather and of every ship that passed, "
            "and her notebooks are now held by the county archive.",
            "The light was automated in 1968 and the cottages stood empty for many years. A local trust "
            "bought them in 2004 and restored the roof, the windows and the old oil store.",
            "Today visitors can climb the tower on summer weekends. On a clear day the view reaches the "
            "islands to the north, and seals can often be seen resting on the rocks at low tide.",
        ],
    ),
    "sourdough": (
        "How to Keep a Sourdough Starter Alive",
        [
            "A sourdough starter is a mixture of flour and water in which wild yeast and bacteria live "
            "together. It needs regular feeding, and it rewards a baker who is patient with it.",
            "Most bakers keep their starter in a glass jar on the kitchen counter. Every day they throw "
            "away half of it and add fresh flour and water, which keeps the culture lively and sour.",
            "If you bake only once a week, the starter can live in the fridge instead. Take it out the "
            "night before you bake, feed it twice, and wait until it has doubled in size.",
            "A layer of grey liquid on top simply means that the starter is hungry. Pour it off, feed "
            "the starter, and it will usually recover within a day or two.",
        ],
    ),
    "bees": (
        "Why Honey Bees Dance",
        [
            "When a forager bee finds a rich patch of flowers, she returns to the hive and performs a "
            "dance on the honeycomb. The other workers follow her movements closely.",
            "The direction of the waggle run tells them the angle between the sun and the food source. "
            "The length of the run tells them how far they will have to fly.",
            "Karl von Frisch spent decades studying this behaviour with marked bees and glass hives. "
            "He shared the Nobel Prize in Physiology or Medicine in 1973 for this work.",
            "Later experiments with robotic bees confirmed that the dance alone is enough to send "
            "recruits in the right direction, although smell also helps them find the exact flowers.",
        ],
    ),
    "railway": (
        "The Railway That Climbed the Mountain",
        [
            "The rack railway up the mountain opened in 1896 and still carries passengers from the "
            "village to the summit station every summer. The climb takes just under an hour.",
            "Ordinary wheels cannot grip rails on such a steep slope, so a toothed wheel under each "
            "locomotive engages a toothed rail laid between the running rails.",
            "The original steam engines were built in Switzerland and shipped in pieces. Two of them "
            "have been restored by volunteers and run on special days in September.",
            "At the top there is a small cafe and a path along the ridge. Walkers who prefer to go "
            "down on foot should allow three hours and carry warm clothing, even in August.",
        ],
    ),
    "chess": (
        "Learning Chess as an Adult",
        [
            "Many people believe that chess must be learned in childhood, but adults often improve "
            "quickly once they study in an organised way. The key is to play slow games and review them.",
            "Beginners lose most of their games by leaving pieces where they can be taken for free. "
            "Before every move, check what your opponent's last move threatens.",
            "Tactics puzzles are a good daily habit. Ten or fifteen minutes of puzzles trains the eye "
            "to notice forks, pins and skewers during real games.",
            "Openings matter much less than most beginners think. It is enough to develop the knights "
            "and bishops, castle early, and fight for the centre of the board.",
        ],
    ),
    "river": (
        "Cleaning Up the River Alder",
        [
            "Twenty years ago the River Alder was one of the most polluted rivers in the region. "
            "Factories upstream discharged their waste directly into the water.",
            "A group of anglers and teachers started to measure the water quality every month and "
            "published the results in the local newspaper, which put pressure on the council.",
            "New treatment plants were built, and farmers along the banks agreed to plant hedges that "
            "stop fertiliser from washing into the river after heavy rain.",
            "Salmon returned to the river in 2019 for the first time in living memory. Volunteers "
            "still count them each autumn as they jump the weir below the old mill.",
        ],
    ),
    "telescope": (
        "Choosing a First Telescope",
        [
            "A first telescope does not need to be expensive, but it should have a steady mount. "
            "A shaky tripod makes even a good instrument frustrating to use.",
            "The aperture, the width of the main lens or mirror, matters more than magnification. "
            "A wider aperture gathers more light and shows fainter objects.",
            "Small reflecting telescopes on a simple wooden base are popular with beginners because "
            "they are cheap, robust and easy to point at the moon and the planets.",
            "Before buying, it is worth visiting a local astronomy club. Members are usually happy to "
            "let newcomers look through several kinds of telescope on an observing night.",
        ],
    ),
    "library": (
        "The Village Library That Refused to Close",
        [
            "When the county announced that the village library would close, the residents decided to "
            "run it themselves. Within a month more than forty volunteers had signed up.",
            "The building was repainted by a team of retired builders, and a local carpenter made new "
            "shelves for the children's corner from wood donated by the sawmill.",
            "The library now opens six days a week. Besides books, it lends tools, board games and "
            "even a sewing machine, and it hosts a reading group every Thursday evening.",
            "Other villages have visited to learn how the project works. The volunteers say that the "
            "most important thing is a rota that nobody finds too heavy. Anyone who would like to help "
            "can write to the organisers at friends.of.the.library@villagemail.org.",
        ],
    ),
    "glacier": (
        "Measuring a Shrinking Glacier",
        [
            "Every August a small team of researchers walks up to the glacier with stakes, drills and "
            "a satellite receiver. They have measured the same ice for thirty years.",
            "The stakes are drilled into the ice at fixed points. A year later the team measures how "
            "much of each stake is exposed, which shows how much ice has melted.",
            "The front of the glacier has retreated by almost a kilometre since the measurements began. "
            "Old photographs from the valley show how much larger it was a century ago.",
            "The data are shared with an international service that collects measurements from "
            "glaciers around the world, so that scientists can compare regions and decades.",
        ],
    ),
    "cycling": (
        "Commuting by Bicycle Through the Winter",
        [
            "Cycling to work is easy in June, but winter asks for some preparation. Good lights are "
            "the first thing to buy, because the ride home is often in the dark.",
            "Mudguards keep the rider and the bicycle much cleaner on wet roads. Many commuters also "
            "keep a spare set of clothes at the office.",
            "On icy mornings, studded tyres make a remarkable difference. They are noisy on dry "
            "asphalt, but they grip where ordinary tyres would slide.",
            "Salt from the roads damages the chain and the gears. A quick rinse and a drop of oil once "
            "a week will keep the bicycle running smoothly until spring.",
        ],
    ),
    "orchard": (
        "Saving the Old Apple Varieties",
        [
            "Hundreds of apple varieties were once grown in the valley, each with its own taste and "
            "season. Most of them disappeared when the old orchards were cleared.",
            "A retired schoolteacher began collecting cuttings from the last old trees in farmyards "
            "and hedges. She grafted them onto young rootstock in her own garden.",
            "Her collection now has more than two hundred varieties, some of which were thought to be "
            "lost. Each tree is labelled with the farm where the cutting was found.",
            "Every October the orchard holds an apple day. Visitors taste the fruit, learn to graft, "
            "and can take a young tree home to plant in their own garden.",
        ],
    ),
    "printing": (
        "A Short History of the Printing Press",
        [
            "Before printing, every book had to be copied by hand, which made books rare and costly. "
            "A single Bible could take a scribe more than a year to copy.",
            "Around 1450 Johannes Gutenberg combined movable metal type, an oil-based ink and a press "
            "adapted from those used to make wine. Together they made printing fast and cheap.",
            "Within fifty years printing shops had opened in more than two hundred European towns, and "
            "millions of books had been printed.",
            "Historians still debate how much the press changed society, but it certainly helped ideas "
            "spread faster than ever before, from science to religious reform.",
        ],
    ),
    "ferry": (
        "The Last Ferry Across the Estuary",
        [
            "For almost two hundred years a ferry has crossed the estuary between the fishing town and "
            "the farms on the southern shore. The crossing takes twelve minutes.",
            "The first boats were rowed by the ferryman and his sons. A steam launch replaced them in "
            "1905, and the present boat, a small diesel vessel, has run since 1982.",
            "When the council proposed to stop the service, hundreds of people wrote letters, because "
            "the road around the estuary is more than thirty miles long.",
            "The ferry is now run by a cooperative of its passengers. It carries schoolchildren in the "
            "morning, farm workers at midday and tourists with bicycles in the summer.",
        ],
    ),
    "choir": (
        "A Choir for People Who Cannot Sing",
        [
            "The choir at the community centre has one rule: nobody is turned away for singing badly. "
            "It was started by a music teacher who was tired of auditions.",
            "Rehearsals begin with breathing exercises and simple rounds, so that newcomers can join in "
            "without reading music. Harder pieces are learned slowly over many weeks.",
            "Members say that singing together helps them forget the worries of the week. Several of "
            "them had not sung in public since they left school.",
            "Last winter the choir gave its first concert in the parish church. Every seat was taken, "
            "and the collection raised enough money to buy a second-hand piano.",
        ],
    ),
}

SPAM = "\n".join(["<p>BUY CHEAP WATCHES NOW best price cheap watches free shipping</p>"] * 40)
LINK_LIST = "\n".join(f'<p><a href="/p/{i}">Item {i}</a></p>' for i in range(60))
LOREM = (
    "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit. Sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco.</p>"
    "<p>Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore. Excepteur sint "
    "occaecat cupidatat non proident. Sunt in culpa qui officia deserunt mollit anim id est laborum.</p>"
    "<p>This page is a template that was never filled in. The editor will add the real text soon. "
    "Please come back later to read the article. Thank you for your patience.</p>"
)
HEADLINES = [
    "Council approves the new budget for the repair of the harbour wall",
    "Local school wins a regional prize for its work with the community garden",
    "Heavy rain closes the coast road between the two villages for the weekend",
    "New bus timetable brings an extra service to the hospital in the evenings",
    "Volunteers plant two thousand trees on the hill above the old quarry",
    "Football club appoints a former player as the manager of the youth team",
    "Farmers market returns to the town square with more stalls than last year",
    "Museum opens an exhibition of photographs taken by the last lighthouse keeper",
    "Police ask drivers to take care on the narrow lanes during the harvest",
    "Swimming pool reopens after a long refurbishment of the changing rooms",
]

CODE = """<p>To change the colour of the header, add this rule to the style sheet of the theme:</p>
<p>header .title { color: #224466; font-weight: bold; margin: 0 auto; }</p>
<p>Then reload the page. If the colour does not change, clear the cache of the browser and try
again. The same rule works for the footer if you replace the name of the element in the rule.</p>
<p>Older versions of the theme use a different class name for the title, so check the source of
the page first. You can open it with the developer tools of any modern browser.</p>
<p>More tips about themes and style sheets will follow in the next part of this series.</p>"""

GALLERY = """<!DOCTYPE html><html><head><title>Photos</title>
<script src="/js/gallery.js"></script></head><body>
<div class="gallery"><img src="/img/1.jpg" alt=""><img src="/img/2.jpg" alt=""><img src="/img/3.jpg" alt=""></div>
<script>startSlideshow();</script></body></html>"""


def page(title: str, paragraphs: list[str], site: str = "Example News") -> str:
    """An article inside the boilerplate of a real site: menus, a cookie banner, a sidebar, a footer."""
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} | {site}</title>
<script>window.dataLayer = window.dataLayer || [];</script></head>
<body>
<div class="cookie-banner">We use cookies to improve your experience. <button>Accept all</button></div>
<header><a class="logo" href="/">{site}</a>
<nav><ul><li><a href="/">Home</a></li><li><a href="/news">News</a></li><li><a href="/sport">Sport</a></li>
<li><a href="/about">About us</a></li><li><a href="/contact">Contact</a></li></ul></nav></header>
<main><article><h1>{title}</h1><p class="byline">By Staff Writer, 3 March 2024</p>
{body}
</article>
<aside><h3>Most read</h3><ul><li><a href="/a">Ten tips for spring</a></li><li><a href="/b">Local elections</a></li></ul></aside>
</main>
<footer><p>Copyright 2024 {site}. All rights reserved.</p>
<a href="/privacy">Privacy policy</a> | <a href="/terms">Terms of use</a> | <a href="/subscribe">Subscribe</a></footer>
</body></html>"""


def blocklisted_domain() -> str:
    """A domain from datatrove's own block list (read at run time, not written in the course)."""
    import datatrove.utils._import_utils as dt

    with tarfile.open(Path(dt.ASSETS_PATH) / "url_filterblacklistsv0_3_0.tar.gz") as tar:
        domains = tar.extractfile("domains")
        for line in domains:
            domain = line.decode().strip()
            if domain and not domain.startswith("#") and domain.count(".") == 1:
                return domain
    raise AssertionError("datatrove's block list is empty")


def make_records() -> tuple[list[dict], dict[str, str | None]]:
    """The mini crawl, and for each record the stage expected to remove it (None: kept)."""
    records, expected = [], {}

    def add(rid, url, html, stage=None):
        records.append({"id": rid, "url": url, "fetch_date": "2024-03-03T10:00:00Z", "html": html})
        expected[rid] = stage

    sites = ["dailyharbour.co.uk", "valleytimes.com", "northernpost.org", "greenfieldgazette.net"]
    for i, (key, (title, paras)) in enumerate(ARTICLES.items()):
        site = sites[i % len(sites)]
        html = page(title, paras, site=site.split(".")[0].title())
        # bytes, as they come from the crawler, for half of them
        add(f"good-{key}", f"https://www.{site}/{key}", html.encode("utf-8") if i % 2 else html)

    add("blocked-domain", f"http://www.{blocklisted_domain()}/free-article", page(*ARTICLES["chess"]), "URLFilter")
    add("no-text", "https://www.valleytimes.com/gallery", GALLERY, "Trafilatura")
    add("spam", "https://cheap-watches-outlet.com/", f"<html><body><main>{SPAM}</main></body></html>",
        "GopherRepetitionFilter")
    brief = ["The council meeting planned for Tuesday evening has been postponed until further notice, "
             "because the roof of the village hall is being repaired."]
    add("too-short", "https://www.northernpost.org/brief", page("In brief", brief), "GopherQualityFilter")
    add("lorem", "https://www.northernpost.org/draft", page("Draft", [LOREM[3:-4]]), "C4QualityFilter")
    add("link-list", "https://www.valleytimes.com/archive",
        f"<html><body><main><h1>Archive</h1>{LINK_LIST}</main></body></html>", "GopherQualityFilter")
    title, paras = ARTICLES["lighthouse"]
    add("mirror-copy", "http://mirror.example-archive.net/lighthouse", page(title, paras, site="Mirror"),
        MINHASH_STAGE)
    title, paras = ARTICLES["river"]
    near = [paras[0], paras[1].replace("every month", "every single month"), paras[2], paras[3]]
    add("near-copy", "https://www.riverwatch.org/alder", page(title, near, site="River Watch"), MINHASH_STAGE)
    add("headlines", "https://www.dailyharbour.co.uk/latest", page("Latest news", HEADLINES), "FineWebQualityFilter")
    add("code", "https://www.northernpost.org/howto/css", page("Changing the header colour", [CODE[3:-4]]),
        "C4QualityFilter")
    add("empty", "https://www.valleytimes.com/empty", b"", "reader")
    latin1 = page("Caf\u00e9 cr\u00e8me in M\u00fcnchen", ARTICLES["sourdough"][1]).encode("latin-1")
    add("not-utf8", "https://www.cafe-muenchen.de/", latin1, "reader")
    add("not-encodable", "https://www.valleytimes.com/broken", "<p>\ud800 half of a character</p>", "reader")
    add("no-url", "", page(*ARTICLES["choir"]), "reader")
    return records, expected


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crawl():
    return make_records()


@pytest.fixture(scope="module")
def result(crawl, tmp_path_factory):
    records, _ = crawl
    return run_datatrove(records, tmp_path_factory.mktemp("datatrove"), tasks=2, workers=2)


@pytest.mark.slow
def test_each_record_is_kept_or_removed_by_the_expected_stage(crawl, result):
    _, expected = crawl
    got = {rid: result["removed"].get(rid) for rid in expected}
    assert got == expected
    assert {d["id"] for d in result["kept"]} == {rid for rid, stage in expected.items() if stage is None}


@pytest.mark.slow
def test_the_kept_text_is_the_article_without_the_boilerplate(result):
    kept = {d["id"]: d for d in result["kept"]}
    for key, (title, paragraphs) in ARTICLES.items():
        doc = kept.get(f"good-{key}")
        if doc is None:
            continue  # removed on purpose (a copy of it came first)
        assert doc["url"].endswith(f"/{key}")
        assert title in doc["text"]
        for paragraph in paragraphs[:3]:
            assert paragraph in doc["text"]
        for boilerplate in ("We use cookies", "Accept all", "About us", "Most read", "Ten tips for spring",
                            "All rights reserved", "Privacy policy", "Subscribe", "dataLayer"):
            assert boilerplate not in doc["text"], (key, boilerplate)


@pytest.mark.slow
def test_email_addresses_are_replaced(result):
    text = next(d["text"] for d in result["kept"] if d["id"] == "good-library")
    assert "friends.of.the.library@villagemail.org" not in text
    assert "write to the organisers at email@example.com" in text


@pytest.mark.slow
def test_stage_counts_follow_the_removals(crawl, result):
    records, _ = crawl
    counts = result["stage_counts"]
    assert [stage for stage, _ in counts] == ["input", *STAGES, MINHASH_STAGE]
    assert counts[0] == ("input", len(records))
    left = len(records)
    for stage, count in counts[1:]:
        left -= sum(1 for s in result["removed"].values() if s == stage)
        assert count == left, stage
        assert 0 < count < len(records)
    assert counts[-1][1] == len(result["kept"])
    # every stage removes something from this crawl
    assert all(after < before for (_, before), (_, after) in itertools.pairwise(counts))
    assert result["reasons"]["blocked-domain"] == "domain"
    assert result["reasons"]["lorem"] == "lorem_ipsum"
    assert result["reasons"]["code"] == "curly_bracket"
    assert result["reasons"]["not-utf8"] == "not UTF-8"
    assert result["seconds"] > 0


@pytest.mark.slow
def test_the_run_is_deterministic_and_does_not_depend_on_the_number_of_tasks(crawl, result, tmp_path):
    records, _ = crawl
    again = run_datatrove(records, tmp_path / "again", tasks=2, workers=2)
    one_task = run_datatrove(records, tmp_path / "one", tasks=1, workers=1)
    for other in (again, one_task):
        for key in ("kept", "stage_counts", "removed", "reasons"):
            assert other[key] == result[key], key


@pytest.mark.slow
def test_datatrove_leaves_its_outputs_logs_and_stats_in_workdir(crawl, tmp_path):
    records, _ = crawl
    broken = [r for r in records if r["id"] in ("empty", "not-utf8", "not-encodable", "no-url")]
    out = run_datatrove(broken, tmp_path, tasks=2, workers=2)  # nothing survives the reader
    assert out["kept"] == []
    assert out["removed"] == dict.fromkeys(["empty", "not-utf8", "not-encodable", "no-url"], "reader")
    assert out["stage_counts"][:2] == [("input", 4), ("reader", 0)]
    assert (tmp_path / "logs" / "filtering" / "stats.json").is_file()
    assert sorted(p.name for p in (tmp_path / "input").iterdir()) == ["00000.jsonl.gz", "00001.jsonl.gz"]
    # a second run in the same folder starts afresh (datatrove would skip "completed" tasks)
    out2 = run_datatrove(records[:3], tmp_path, tasks=1, workers=1, with_minhash=False)
    assert [d["id"] for d in out2["kept"]] == [r["id"] for r in records[:3]]
    assert [stage for stage, _ in out2["stage_counts"]] == ["input", *STAGES]


def test_broken_records_become_documents_without_text():
    from course_lib.data_scale import _page_text

    url = "https://example.org/"
    assert _page_text({"url": url, "html": "<p>x</p>"}) == ("<p>x</p>", "")
    assert _page_text({"url": url, "html": "caf\u00e9".encode()}) == ("caf\u00e9", "")
    assert _page_text({"url": url, "html": "caf\u00e9".encode("latin-1")}) == ("", "not UTF-8")
    assert _page_text({"url": url, "html": "\udc80"}) == ("", "not UTF-8")
    assert _page_text({"url": url, "html": b""}) == ("", "empty page")
    assert _page_text({"url": url, "html": None}) == ("", "empty page")
    assert _page_text({"url": "", "html": "<p>x</p>"}) == ("", "no URL")
    assert _page_text({"html": "<p>x</p>"}) == ("", "no URL")
