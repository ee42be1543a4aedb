"""Chapter 1: the course world, the mini crawl and the cleaning pipeline (course_lib.world,
course_lib.crawl, course_lib.data)."""

from __future__ import annotations

import hashlib
import json
import random
import re
import statistics
from collections import Counter

import pytest

from course_lib import crawl, data, world

SMALL = crawl.CrawlConfig(n_documents=150, n_real_en=12, n_foreign=20, n_junk=21, n_broken=6,
                          exact_dup_rate=0.1, near_dup_rate=0.1, pii_rate=0.5)


@pytest.fixture(scope="module")
def w():
    return world.make_world(0)


@pytest.fixture(scope="module")
def small_crawl(w):
    return crawl.render_crawl(w, seed=3, config=SMALL)


@pytest.fixture(scope="module")
def small_result(small_crawl):
    return data.run_pipeline(small_crawl, progress=False)


# -- the world -----------------------------------------------------------------------------------


def test_same_seed_same_world_and_documents():
    a, b = world.make_world(5, n_entities=100), world.make_world(5, n_entities=100)
    assert a.entities == b.entities
    da, db = world.make_documents(a, 60, seed=1), world.make_documents(b, 60, seed=1)
    assert [d.text for d in da] == [d.text for d in db]
    assert world.make_world(6, n_entities=100).entities != a.entities


def test_entities_are_unique_ranked_and_have_their_facts(w):
    names = [e.name for e in w.entities]
    assert len(set(names)) == len(names) == 1000
    assert [e.rank for e in w.entities] == list(range(1, 1001))
    assert {e.kind for e in w.entities} == set(world.KINDS)
    for e in w.entities[:50]:
        for f in e.all_facts():
            assert f.sentence.startswith(f.prompt) and f.sentence.endswith(f"{f.value}.")
    # references point at entities that exist
    for e in w.of_kind("person"):
        assert w.by_name(e.facts["city"]).kind == "city"
    for e in w.of_kind("invention"):
        assert w.by_name(e.facts["inventor"]).kind == "person"


def test_mentions_follow_popularity_head_and_long_tail(w):
    docs = world.make_documents(w, 4000)
    counts = world.mention_counts(w, docs)
    values = [counts[e.name] for e in w.entities]
    deciles = [statistics.median(values[k * 100:(k + 1) * 100]) for k in range(10)]
    assert deciles[0] >= 10, deciles            # the head is seen many times
    assert deciles[-1] <= 2, deciles            # the tail once or twice
    assert deciles[0] >= 5 * max(deciles[-1], 1)
    assert sum(v == 0 for v in values) > 20     # some entities are never mentioned


def test_documents_state_their_facts(w):
    for d in world.make_documents(w, 300, seed=2):
        assert d.kind in world.DOCUMENT_KINDS and d.text.strip() and d.title
        for f in d.facts:
            assert f.subject in d.text and f.value in d.text, (d.kind, f, d.text)


def test_problems_are_right(w):
    for p in world.verifiable_problems(300, seed=1, world=w):
        nums = [int(x) for x in re.findall(r"\d+", p.question)]
        if p.kind == "addition":
            assert p.answer == nums[0] + nums[1]
        elif p.kind == "subtraction":
            assert p.answer == nums[0] - nums[1]
        elif p.kind == "multiplication":
            assert p.answer == nums[0] * nums[1]
        else:
            letter, word = re.findall(r'"(\w+)"', p.question)
            assert p.answer == word.count(letter)
        assert p.solution().endswith(f"Answer: {p.answer}")


def test_column_addition_steps_carry():
    p = world.Problem("addition", "", 0, world._column_addition_steps(958, 67))
    assert "carry the 1" in p.steps[0] and "The last carry" in p.steps[-1]


def test_fact_questions_cover_head_and_tail(w):
    qs = world.fact_questions(w)
    assert len(qs) == len(w.facts())
    some = world.fact_questions(w, 200, seed=1)
    assert min(q.rank for q in some) < 100 < 900 < max(q.rank for q in some)
    for q in some:
        e = w.by_name(q.subject)
        assert e.facts[q.relation] == q.answer and q.question.endswith("?")


def test_conversations_alternate_and_include_identity(w):
    convos = world.chat_conversations(w, 300, seed=0, max_rank=100)
    for c in convos:
        roles = [m["role"] for m in c if m["role"] != "system"]
        assert roles[0] == "user" and roles[-1] == "assistant"
        assert all(a != b for a, b in zip(roles, roles[1:]))
        assert all(m["content"].strip() for m in c)
    text = json.dumps(convos)
    assert world.ASSISTANT_NAME in text
    assert any("Who are you?" in m["content"] for c in world.identity_conversations() for m in c)


def test_preference_pairs_follow_the_hidden_rule(w):
    facts = {q.question: q for q in world.fact_questions(w)}
    pairs = world.preference_pairs(w, 100, seed=0)
    for p in pairs:
        q = facts[p.prompt]
        assert p.chosen_score > p.rejected_score
        assert world.hidden_preference_score(p.prompt, p.chosen, q.answer, q.subject) == \
            p.chosen_score
        assert world.hidden_preference_score(p.prompt, p.rejected, q.answer, q.subject) == \
            p.rejected_score
    # every kind of candidate turns up: right and wrong answers, closings, misspelt names
    assert any(q.answer not in p.rejected for p in pairs for q in [facts[p.prompt]])
    assert any(p.chosen.endswith(world.CLOSINGS) for p in pairs)
    assert any(facts[p.prompt].subject not in p.rejected for p in pairs)


# The hidden labeller of chapter 9, one case per rule of its docstring (on "Where does Tova Lind
# live?", answer "Mora"): each text differs from the plain "She lives there." (score 0) by one rule.
def _words(n):
    return " ".join(f"word{i}" for i in range(n)) + "."


@pytest.mark.parametrize("response, want", [
    ("She lives there.", 0.0),
    # the right answer as a whole word, any case: +2
    ("She lives in Mora.", 2.0),
    ("She lives in mora.", 2.0),
    ("She lives in Moraby.", 0.0),
    # the subject spelt exactly as the question does: +0.5; misspelt or recased: nothing
    ("Tova Lind lives there.", 0.5),
    ("Tva Lind lives there.", 0.0),
    ("Tova Lindh lives there.", 0.0),
    ("tova lind lives there.", 0.0),
    # one closing at the very end: +0.5; each closing after the first: -0.5; none at the end: 0
    ("She lives there. Hope that helps!", 0.5),
    ("She lives there. Happy to help! Hope that helps!", 0.0),
    ("Happy to help! She lives there. Hope that helps!", 0.0),
    ("Hope that helps! She lives there.", 0.0),
    # an unfinished sentence: -0.5
    ("She lives there", -0.5),
    ("She lives there?", 0.0),
    # a word said twice in a row, or a run of three words said again: -0.5 each
    ("She lives lives there.", -0.5),
    ("She lives in the the town.", -0.5),
    ("She lives there, yes, she lives there.", -0.5),
    ("She she lives there, she lives there.", -1.0),
    # every word past twenty: -0.05
    (_words(20), 0.0),
    (_words(21), -0.05),
    (_words(25), -0.25),
    # all of it at once
    ("Tova Lind lives in Mora. Hope that helps!", 3.0),
])
def test_hidden_preference_score_rules(response, want):
    got = world.hidden_preference_score("Where does Tova Lind live?", response, "Mora", "Tova Lind")
    assert got == pytest.approx(want)


def test_hidden_preference_score_without_answer_or_subject():
    """Without ``answer`` and ``subject`` only the form counts."""
    assert world.hidden_preference_score("Where?", "Tova Lind lives in Mora.") == 0.0
    assert world.hidden_preference_score("Where?", "Mora Mora") == -1.0


def test_world_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_entities"):
        world.make_world(n_entities=3)
    with pytest.raises(ValueError, match="unknown document kind"):
        world.make_documents(world.make_world(n_entities=50), 5, kind_weights={"poem": 1.0})


# -- the crawl ---------------------------------------------------------------------------------


def test_crawl_is_deterministic(w, small_crawl):
    again = crawl.render_crawl(w, seed=3, config=SMALL)
    digest = lambda rs: hashlib.sha256(json.dumps(  # noqa: E731
        [[r["id"], r["url"], r["fetch_date"], (r["html"] or b"").hex(), r["truth"]] for r in rs]
    ).encode()).hexdigest()
    assert digest(again) == digest(small_crawl)


def test_crawl_has_what_real_crawls_have(small_crawl):
    truth = [json.loads(r["truth"]) for r in small_crawl]
    sources = Counter(t["source"] for t in truth)
    assert set(sources) == {"world", "real", "junk", "broken"}
    assert {t["kind"] for t in truth if t["source"] == "junk"} >= {"keyword_spam", "adult",
                                                                  "gambling", "lorem"}
    assert {t.get("duplicate") for t in truth} >= {"exact", "near"}
    assert len({t["lang"] for t in truth if t["source"] == "real"}) >= 4
    assert any(t["pii"] for t in truth)
    assert any(r["html"] is None for r in small_crawl) and any(r["url"] is None
                                                               for r in small_crawl)
    page = next(r for r, t in zip(small_crawl, truth) if t["source"] == "world")
    html = page["html"].decode()
    for part in ("<script>", "<style>", "<footer>", "</html>"):
        assert part in html


def test_real_text_ships_with_its_sources():
    docs = crawl.load_real_text()
    langs = Counter(d["lang"] for d in docs)
    assert langs["en"] >= 200 and len(langs) >= 7
    assert all(d["licence"] and d["package"] and d["text"].strip() for d in docs)


# -- the stages --------------------------------------------------------------------------------


@pytest.mark.parametrize("url,blocked", [
    ("https://worldpedia.org/wiki/x", None),
    ("https://casino-bonanza.biz/win", "blocklisted"),
    ("https://sub.hot-singles-xxx.com/a", "blocklisted"),
    ("https://my-homepage.net/free-xxx-videos", "banned word"),
    ("https://my-homepage.net/cheap-loans", "soft-banned"),
    ("https://my-homepage.net/cheap-bread", None),
    (None, "missing"),
])
def test_url_filter(url, blocked):
    r = data.url_filter(url)
    assert (r is None) if blocked is None else (blocked in r)


def test_extract_text_drops_boilerplate_and_survives_garbage():
    html = ("<html><head><title>T</title><style>p{}</style></head><body><nav>Home</nav>"
            "<header>Logo</header><p>One &amp; two.</p><div>Three<br>four</div>"
            "<script>var x = 1;</script><footer>Copyright</footer></body></html>")
    assert data.extract_text(html) == "One & two.\nThree\nfour"
    rng = random.Random(0)
    for _ in range(50):
        junk = bytes(rng.randrange(256) for _ in range(300)).decode("latin-1")
        assert isinstance(data.extract_text(junk), str)
    assert data.extract_text("") == ""
    assert data.extract_text("<p>unclosed <b>bold<div>next</span></p>") == "unclosed bold\nnext"


def test_language_scores():
    en = "The baker rises before dawn and sells fresh bread to the whole town every morning."
    de = "Der Bäcker steht vor dem Morgengrauen auf und verkauft frisches Brot an die Stadt."
    assert data.language_score(en) > 0.9 and data.language_score(de) < 0.1
    assert data.language_score(de, "de") > 0.9
    assert data.language_score("", "en") < 0.65
    assert data.language_score(en, "xx") == 0.0
    assert data.language_score_langid(en) > 0.9 and data.language_score_langid(de) < 0.1


def test_language_id_accuracy_on_held_out_text():
    test = data.language_training_texts("test")
    right = total = 0
    for lang, texts in test.items():
        for t in texts[:20]:
            snippet = t[:400]
            right += (data.language_score(snippet, "en") >= 0.65) == (lang == "en")
            total += 1
    assert right / total > 0.97, (right, total)


def test_quality_filters():
    good = ("The council of the town met on Monday to talk about the new bridge. " * 3 +
            "Everyone agreed that it should be built with stone, and that the work should "
            "start in the spring when the river is low and the roads are dry again.")
    assert data.gopher_quality(good, min_words=30) is None
    assert "too few words" in data.gopher_quality("a short page", 50)
    assert "stop words" in data.gopher_quality(" ".join(["zebra"] * 60), 50)
    spam = "\n".join(["buy now and save big today"] * 10)
    assert "repeated" in data.gopher_repetition(spam)
    assert data.c4_filter("Lorem ipsum dolor sit amet")[0]
    assert data.c4_filter("function f() { return 1; }")[0]
    reason, text = data.c4_filter("Keep this line.\nPlease enable JavaScript to continue.")
    assert reason is None and text == "Keep this line."
    assert data.fineweb_filter("a\nb\nc\nd") is not None


def test_exact_hash_ignores_case_and_spacing():
    assert data.exact_hash("Hello   World\n") == data.exact_hash("hello world")
    assert data.exact_hash("hello world") != data.exact_hash("hello world!")


def test_minhash_vectorised_equals_readable_and_estimates_jaccard(w):
    docs = [d.text for d in world.make_documents(w, 30, seed=4)]
    sigs = data.minhash_signatures(docs)
    for t, s in zip(docs, sigs):
        assert data.minhash_signature(t) == [int(v) for v in s]
    errors = [abs(data.estimated_jaccard(sigs[i].tolist(), sigs[j].tolist())
                  - data.jaccard(data.shingles(docs[i]), data.shingles(docs[j])))
              for i in range(30) for j in range(i + 1, 30)]
    assert max(errors) < 0.25 and statistics.mean(errors) < 0.05
    assert data.minhash_signature(docs[0], seed=1) != data.minhash_signature(docs[0], seed=0)
    with pytest.raises(ValueError, match="same non-zero length"):
        data.estimated_jaccard([1, 2], [1])


def test_lsh_params_find_pairs_at_the_threshold():
    for t in (0.5, 0.7, 0.8, 0.9):
        bands, rows = data.lsh_params(t, 128)
        assert bands * rows <= 128 and 1 - (1 - t ** rows) ** bands >= 0.99


def test_near_duplicates_teaching_and_datasketch_agree(w):
    docs = [d.text for d in world.make_documents(w, 120, seed=5)]
    rng = random.Random(1)
    for i in range(20):
        words = docs[i].split()
        words.insert(rng.randrange(len(words)), "indeed")
        docs.append(" ".join(words))
    ours = data.near_duplicate_pairs(docs, 0.8)
    theirs = data.near_duplicate_pairs_datasketch(docs, 0.8)
    assert {(i, 120 + i) for i in range(20)} <= ours
    for i, j in ours ^ theirs:  # they may disagree only near the threshold
        assert abs(data.jaccard(data.shingles(docs[i]), data.shingles(docs[j])) - 0.8) < 0.15


@pytest.mark.parametrize("text,expected", [
    ("Write to ada.l@mailbox.org.", "Write to <EMAIL>."),
    ("Call (555) 123-4567, +1 555 123 4567 or 555.123.4567!", "Call <PHONE>, <PHONE> or <PHONE>!"),
    ("From 192.168.0.1 and 8.8.8.8.", "From <IP> and <IP>."),
    ("Not PII: 1.2.3.4.5, 256.1.1.1, 10.5%, 1999, v2.4.1", "Not PII: 1.2.3.4.5, 256.1.1.1, 10.5%, "
                                                            "1999, v2.4.1"),
])
def test_redact_pii(text, expected):
    assert data.redact_pii(text) == expected


# -- the pipeline --------------------------------------------------------------------------------


def test_every_page_is_kept_or_removed_with_a_reason(small_crawl, small_result):
    pages = small_result.pages
    assert len(pages) == len(small_crawl)
    kept = [r for r in pages if not r["removed_stage"]]
    assert len(kept) == len(small_result.corpus)
    for r in pages:
        if r["removed_stage"]:
            assert r["removed_stage"] in data.STAGES and r["removed_reason"]
    counts = small_result.stage_counts
    assert counts[0] == ("crawl", len(small_crawl), counts[0][2])
    assert [n for _, n, _ in counts] == sorted([n for _, n, _ in counts], reverse=True)
    assert counts[-1][1] == len(kept)


def test_broken_records_are_removed_with_reasons(small_result):
    by_truth = {}
    for r in small_result.pages:
        t = json.loads(r["truth"])
        if t["source"] == "broken":
            by_truth[t["kind"]] = (r["removed_stage"], r["removed_reason"])
    assert "missing field 'html'" in by_truth["missing_html"][1]
    assert "missing field 'url'" in by_truth["missing_url"][1]
    assert by_truth["empty"][1] == "empty page"
    assert "not UTF-8" in by_truth["not_utf8"][1]
    assert all(stage for stage, _ in by_truth.values())


def test_the_stages_remove_what_they_should(small_result):
    removed = Counter()
    kept_sources = Counter()
    kept_copies = Counter()  # world document -> pages of it kept (original, exact, near copies)
    for r in small_result.pages:
        t = json.loads(r["truth"])
        key = t["source"] if t["source"] != "real" else ("real_en" if t["lang"] == "en"
                                                         else "foreign")
        if r["removed_stage"]:
            removed[(key, r["removed_stage"])] += 1
        else:
            kept_sources[key] += 1
            if key == "world":
                kept_copies[t["doc"]] += 1
    twice = [d for d, n in kept_copies.items() if n > 1]
    assert len(twice) <= 0.03 * len(kept_copies), f"documents that survived twice: {twice}"
    assert kept_sources["junk"] == 0 and kept_sources["foreign"] == 0
    assert kept_sources["broken"] == 0
    world_pages = sum(1 for r in small_result.pages if json.loads(r["truth"])["source"] == "world")
    assert kept_sources["world"] >= 0.75 * 150, (kept_sources, world_pages)
    assert removed[("world", "exact_dedup")] > 0 and removed[("world", "near_dedup")] > 0
    assert sum(v for (k, _), v in removed.items() if k == "foreign") == SMALL.n_foreign


def test_pii_is_gone_from_the_corpus(small_crawl, small_result):
    values = [p["value"] for r in small_crawl for p in json.loads(r["truth"])["pii"]]
    assert values
    text = "\n".join(small_result.corpus["text"])
    assert not any(v in text for v in values)
    assert "<EMAIL>" in text or "<PHONE>" in text or "<IP>" in text


def test_pipeline_is_deterministic_and_the_same_with_two_processes(small_crawl, small_result):
    again = data.run_pipeline(small_crawl, num_proc=2, progress=False)
    assert again.corpus["text"] == small_result.corpus["text"]
    assert again.pages["removed_reason"] == small_result.pages["removed_reason"]


def test_production_stages_run_and_mostly_agree(small_crawl, small_result):
    opts = data.PipelineOptions(extractor="trafilatura", language_id="langid",
                                near_dedup="datasketch")
    prod = data.run_pipeline(small_crawl, opts, progress=False)
    a = set(small_result.corpus["id"])
    b = set(prod.corpus["id"])
    assert len(a & b) / len(a | b) > 0.8


def test_corpus_parquet_reads_back_through_the_fineweb_loader(small_result, tmp_path):
    path = data.write_corpus(small_result.corpus, tmp_path / "corpus.parquet")
    stream = data.load_fineweb(str(path), streaming=True)
    rows = list(stream)
    assert [r["text"] for r in rows] == small_result.corpus["text"]
    assert set(rows[0]) == set(data.FINEWEB_COLUMNS)
    bad = tmp_path / "bad.parquet"
    small_result.corpus.select_columns(["text", "id"]).to_parquet(str(bad))
    with pytest.raises(ValueError, match="FineWeb's column"):
        data.load_fineweb(str(bad), streaming=False)


def test_shipped_corpus_is_there_and_in_fineweb_schema():
    corpus = data.load_corpus()
    assert set(corpus.column_names) == set(data.FINEWEB_COLUMNS)
    assert len(corpus) > 3000
    assert sum(corpus["token_count"]) > 400_000
    text = "\n".join(corpus["text"][:500])
    assert "<script" not in text and "Lorem ipsum" not in text


@pytest.mark.slow
def test_remaking_the_corpus_gives_the_shipped_one(tmp_path):
    result, path = data.build_corpus(tmp_path / "corpus.parquet", num_proc=2, progress=False)
    shipped = data.load_corpus()
    assert result.corpus["text"] == shipped["text"]
    assert result.corpus["token_count"] == shipped["token_count"]
