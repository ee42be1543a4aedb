"""Cleaning the course crawl (chapter 1): pipeline time with 1 and 2 worker processes, pages/s
of every stage, and the teaching stages against the production libraries (speed and agreement).

    python bench/bench_data.py [--documents 4000] [--repeats 1]

What is measured, all in one run on the same crawl (``render_crawl``, defaults: ~5,090 pages):

1. ``run_pipeline`` with the teaching stages, ``num_proc=1`` then ``num_proc=2``: wall time and
   the speed-up (the corpus must be identical);
2. each stage alone, in this process, on the pages that reach it: pages/s;
3. teaching vs production, on the same pages: ``extract_text`` vs trafilatura (speed; agreement =
   mean word-level F1 of the two texts), the naive Bayes ``language_score`` vs langid.py (speed;
   agreement = same side of 0.65), the teaching MinHash LSH vs datasketch (speed; agreement =
   Jaccard of the two sets of duplicate pairs).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter

from course_lib import crawl, data, world


def timed(fn, items):
    t0 = time.perf_counter()
    out = [fn(x) for x in items]
    return out, time.perf_counter() - t0


def f1(a: str, b: str) -> float:
    ca, cb = Counter(a.split()), Counter(b.split())
    common = sum((ca & cb).values())
    if not ca and not cb:
        return 1.0
    if not common:
        return 0.0
    p, r = common / sum(cb.values()), common / sum(ca.values())
    return 2 * p * r / (p + r)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--documents", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=1, help="best of this many pipeline runs")
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    w = world.make_world(0)
    t0 = time.perf_counter()
    records = crawl.render_crawl(w, config=crawl.CrawlConfig(n_documents=args.documents))
    print(f"rendered {len(records)} pages in {time.perf_counter() - t0:.1f} s")
    data.language_model()  # trained once, outside the timings

    # 1. the whole pipeline, 1 and 2 processes
    runs = {}
    for n in (1, 2):
        best = None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = data.run_pipeline(records, num_proc=n, progress=False)
            dt = time.perf_counter() - t0
            best = dt if best is None or dt < best else best
        runs[n] = (best, res)
        print(f"run_pipeline num_proc={n}: {best:6.1f} s  ({len(records) / best:6.0f} pages/s), "
              f"{len(res.corpus)} documents kept")
    same = runs[1][1].corpus["text"] == runs[2][1].corpus["text"]
    print(f"speed-up with 2 processes: {runs[1][0] / runs[2][0]:.2f}x; identical corpus: {same}")

    # 2. stage by stage, on the pages that reach each stage
    pages = runs[1][1].pages
    stage_of = dict(zip(pages["id"], pages["removed_stage"]))
    order = list(data.STAGES)

    def reaching(stage):
        k = order.index(stage)
        return [r for r in records
                if r["id"] not in stage_of or stage_of[r["id"]] == "" or
                order.index(stage_of[r["id"]]) >= k]

    rows = []
    decoded, dt = timed(data.decode_record, records)
    rows.append(("decode", len(records), dt))
    _, dt = timed(data.url_filter, [r["url"] for r in reaching("url_filter")])
    rows.append(("url_filter", len(reaching("url_filter")), dt))
    html = [data.decode_record(r)[1] for r in reaching("extract")]
    texts, dt_ex = timed(data.extract_text, html)
    rows.append(("extract (teaching)", len(html), dt_ex))
    texts_tr, dt_tr = timed(data.extract_text_trafilatura, html)
    rows.append(("extract (trafilatura)", len(html), dt_tr))
    scores, dt_lang = timed(data.language_score, texts)
    rows.append(("language (teaching NB)", len(texts), dt_lang))
    scores_li, dt_li = timed(data.language_score_langid, texts)
    rows.append(("language (langid.py)", len(texts), dt_li))
    english = [t for t, s in zip(texts, scores) if s >= data.LANGUAGE_THRESHOLD]
    for name, fn in (("gopher_quality", data.gopher_quality),
                     ("gopher_repetition", data.gopher_repetition),
                     ("c4", data.c4_filter), ("fineweb", data.fineweb_filter),
                     ("exact hash", data.exact_hash), ("pii", data.redact_pii)):
        _, dt = timed(fn, english)
        rows.append((name, len(english), dt))
    survivors = runs[1][1].pages.filter(
        lambda s: s in ("", "near_dedup", "exact_dedup"), input_columns="removed_stage")["text"]
    t0 = time.perf_counter()
    ours = data.near_duplicate_pairs(survivors, 0.8)
    dt_ours = time.perf_counter() - t0
    rows.append(("near dedup (teaching LSH)", len(survivors), dt_ours))
    t0 = time.perf_counter()
    theirs = data.near_duplicate_pairs_datasketch(survivors, 0.8)
    dt_theirs = time.perf_counter() - t0
    rows.append(("near dedup (datasketch)", len(survivors), dt_theirs))

    print(f"\n{'stage':<28}{'pages':>7}{'seconds':>9}{'pages/s':>10}")
    for name, n, dt in rows:
        print(f"{name:<28}{n:>7}{dt:>9.2f}{n / dt:>10.0f}")

    # 3. teaching vs production
    agree_ex = sum(f1(a, b) for a, b in zip(texts, texts_tr)) / len(texts)
    t = data.LANGUAGE_THRESHOLD
    agree_lang = sum((a >= t) == (b >= t) for a, b in zip(scores, scores_li)) / len(texts)
    agree_dup = len(ours & theirs) / max(1, len(ours | theirs))
    print("\nteaching vs production (time ratio = production / teaching; agreement)")
    print(f"extraction:   trafilatura takes {dt_tr / dt_ex:5.2f}x the time; mean word F1 "
          f"{agree_ex:.3f}")
    print(f"language ID:  langid.py takes {dt_li / dt_lang:5.2f}x the time; same decision on "
          f"{agree_lang:.1%} of {len(texts)} pages")
    print(f"near dedup:   datasketch takes {dt_theirs / dt_ours:5.2f}x the time; pair sets "
          f"agree {agree_dup:.1%} ({len(ours)} vs {len(theirs)} pairs)")


if __name__ == "__main__":
    main()
