"""The chapter 1 cleaning stages on datatrove, the engine FineWeb was built with.

What datatrove is
-----------------
`datatrove <https://github.com/huggingface/datatrove>`_ is Hugging Face's library for processing
web-scale text; FineWeb (15 trillion tokens from 96 Common Crawl dumps) was made with it. A
datatrove *pipeline* is a plain Python list of blocks (a reader, filters, an extractor, formatters,
writers) through which documents stream one at a time. An *executor* runs that list many times in
parallel, each copy (a *task*, numbered by its ``rank``) on its own share of the input files, and
writes per-task logs, statistics and "completed" markers into a ``logging_dir``, so that a crashed
run restarts only the tasks that did not finish. Filters can write what they remove with an
*exclusion writer*, which is how :func:`run_datatrove` knows which stage removed which record.

The same pipeline on a cluster
------------------------------
Here the pipeline runs on one machine with ``LocalPipelineExecutor``: a pool of ``workers``
processes works through ``tasks`` tasks. FineWeb ran the same list of blocks on a Slurm cluster;
only the executor changes, and the paths point to shared storage (S3) instead of a local folder.
For example (documentation only, not run here)::

    from datatrove.executor.slurm import SlurmPipelineExecutor

    filtering = SlurmPipelineExecutor(
        job_name="cc_CC-MAIN-2023-50",
        pipeline=[
            WarcReader("s3://commoncrawl/crawl-data/CC-MAIN-2023-50/segments/", glob_pattern="*/warc/*"),
            URLFilter(exclusion_writer=JsonlWriter("s3://bucket/removed/url")),
            Trafilatura(favour_precision=True),
            LanguageFilter(...), GopherRepetitionFilter(...), GopherQualityFilter(...),
            C4QualityFilter(filter_no_terminal_punct=False), FineWebQualityFilter(...),
            JsonlWriter("s3://bucket/filtered"),
        ],
        tasks=8000,                # a Slurm job array of 8000 tasks, one CPU each
        time="10:00:00", mem_per_cpu_gb=2, partition="cpu",
        logging_dir="s3://bucket/logs/filtering",
    )
    signatures = SlurmPipelineExecutor(
        job_name="mh1", pipeline=[JsonlReader("s3://bucket/filtered"), MinhashDedupSignature(...)],
        tasks=1000, depends=filtering, ...)   # starts when every filtering task has finished
    ...                            # buckets (tasks = buckets x workers), cluster (1 task), filter
    dedup_filter.run()             # submits the whole chain of jobs to Slurm

Here the executors simply run one after the other.

What is the same as FineWeb, and what is not
--------------------------------------------
:func:`run_datatrove` runs FineWeb's blocks in FineWeb's order with FineWeb's settings (including
MinHash: 5-grams, 14 buckets of 8 hashes of 64 bits, and personal data replaced by
``PIIFormatter`` after deduplication), except:

* **No WARC files.** FineWeb read Common Crawl's WARC files with ``WarcReader`` (it needs
  ``warcio``, ``cchardet`` and ``python-magic``). The course's mini crawl is a list of records, so
  they are written to ``.jsonl.gz`` and read back with ``JsonlReader``. A record whose page is
  empty, whose bytes are not UTF-8, or that has no URL becomes a document without text, which the
  reader drops (stage ``"reader"``); the WARC reader likewise drops pages it cannot decode, after
  trying the charset it detects.
* **No language identification.** ``LanguageFilter`` needs the ``fasttext`` package and downloads
  fastText's ``lid.176.bin`` model (126 MB) the first time it runs, and nothing may be downloaded
  here. The course's own pipeline (``course_lib.data``) identifies languages without a download.
* **Trafilatura's own deduplication is off** (``deduplicate=False``; FineWeb left it on). It keeps a
  cache of paragraphs in each process, so what it cuts from a page depends on which pages the same
  task saw before, and the result would change with the number of tasks. The MinHash stages
  remove the copies instead.
* **30 s for the extractor, not 1 s per page.** The first page of each task also pays for starting
  the extractor's process, which can take over a second on a busy two-core machine; a page skipped
  for time would make the result depend on the load of the machine.
* **The public-suffix list is tldextract's snapshot.** ``URLFilter`` uses datatrove's own block list
  (4.5 million domains, shipped inside the package and unpacked once into the Hugging Face assets
  cache, ``~/.cache/huggingface/assets``). To find a URL's domain it uses ``tldextract``, which by
  default fetches the newest public-suffix list from the internet; here it uses the copy shipped
  with ``tldextract``.
* **MinHash hashes with sha1**, as when FineWeb was made. datatrove's default is now xxhash, which
  it calls on ``str``; that needs ``xxhash<4``, and the course has xxhash 4 (bytes only).

Each task is a process that first loads the block list (about 5 s) and spaCy's English tokenizer
(used by the Gopher, C4 and FineWeb filters to split words and sentences, and by MinHash): datatrove
is made for tasks of hours, not for thirty pages.

Run it by hand on a JSONL file of records (``html`` a string)::

    python -m course_lib.data_scale records.jsonl --workdir /tmp/dt --tasks 2 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

STAGES = (
    "reader",
    "URLFilter",
    "Trafilatura",
    "GopherRepetitionFilter",
    "GopherQualityFilter",
    "C4QualityFilter",
    "FineWebQualityFilter",
)
MINHASH_STAGE = "MinhashDedup"

# Imported once by the fork server that starts the worker processes (see run_datatrove).
_PRELOAD = (
    "datatrove.pipeline.readers",
    "datatrove.pipeline.filters",
    "datatrove.pipeline.extractors",
    "datatrove.pipeline.dedup",
    "datatrove.pipeline.writers",
    "spacy",
    "trafilatura",
    "tldextract",
)

# Sub-folders of ``workdir`` that run_datatrove owns: they are emptied at the start of each run.
_OWN_DIRS = ("input", "output", "removed", "minhash", "deduped", "logs")


class _Discard:
    """A write-only file that throws everything away (datatrove's console log when quiet)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


try:  # datatrove is an optional dependency of the course
    from datatrove.executor import LocalPipelineExecutor
except ImportError:  # pragma: no cover
    LocalPipelineExecutor = None

if LocalPipelineExecutor is not None:

    class QuietLocalExecutor(LocalPipelineExecutor):
        """``LocalPipelineExecutor`` whose tasks log to their log file only, not to the console.

        (Defined at module level: the worker processes unpickle it by name.)"""

        def __init__(self, *args, quiet: bool = True, **kwargs):
            super().__init__(*args, **kwargs)
            self.quiet = quiet

        def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
            # At the start of every task datatrove logs to the sys.stderr of that moment (in the
            # worker process); while quiet, that is a file that discards it.
            stderr = contextlib.redirect_stderr(_Discard()) if self.quiet else contextlib.nullcontext()
            with stderr, warnings.catch_warnings():
                # URLFilter uses tldextract's `registered_domain`, deprecated in tldextract 5.3
                warnings.filterwarnings("ignore", message=".*registered_domain.*", category=DeprecationWarning)
                return super()._run_for_rank(rank, local_rank, node_rank)

else:  # pragma: no cover
    QuietLocalExecutor = None


def _page_text(rec: dict) -> tuple[str, str]:
    """The page as text for the reader, and why it is '' when it is: the reader drops documents
    without text, as FineWeb's WARC reader drops pages it cannot decode."""
    html = rec.get("html")
    if not rec.get("url"):
        return "", "no URL"
    if not html:
        return "", "empty page"
    if isinstance(html, (bytes, bytearray)):
        try:
            return bytes(html).decode("utf-8"), ""
        except UnicodeDecodeError:
            return "", "not UTF-8"
    html = str(html)
    try:
        html.encode("utf-8")  # a str can hold lone surrogates, which no file can
    except UnicodeEncodeError:
        return "", "not UTF-8"
    return html, ""


def _write_input(records: list[dict], folder: Path, tasks: int) -> dict[str, str]:
    """Write the records as ``tasks`` .jsonl.gz files, contiguous slices in record order.

    Returns {id: why its text is empty} for the records the reader will drop."""
    folder.mkdir(parents=True)
    dropped = {}
    n = len(records)
    for i in range(tasks):
        part = records[i * n // tasks : (i + 1) * n // tasks]
        with gzip.open(folder / f"{i:05d}.jsonl.gz", "wt", encoding="utf-8") as f:
            for rec in part:
                text, why = _page_text(rec)
                if why:
                    dropped[str(rec["id"])] = why
                row = {"id": str(rec["id"]), "text": text, "url": rec.get("url") or "",
                       "fetch_date": rec.get("fetch_date") or ""}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return dropped


def _read_jsonl_folder(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.rglob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            rows.extend(json.loads(line) for line in f if line.strip())
    return rows


def _url_filter(exclusion_writer):
    from datatrove.pipeline.filters import URLFilter
    from tldextract import TLDExtract

    url_filter = URLFilter(exclusion_writer=exclusion_writer)
    # The default TLDExtract() fetches the newest public-suffix list from the internet at its first
    # use; the snapshot shipped with tldextract keeps the run offline and reproducible.
    url_filter.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)
    return url_filter


def run_datatrove(
    records: list[dict],
    workdir: str | Path,
    tasks: int = 2,
    workers: int = 2,
    with_minhash: bool = True,
    *,
    quiet: bool = True,
    extract_timeout: float = 30.0,
    start_method: str = "forkserver",
) -> dict[str, Any]:
    """Run FineWeb's filtering stages, then (``with_minhash``) its MinHash deduplication, on
    ``records`` with datatrove's ``LocalPipelineExecutor``.

    ``records`` are dicts shaped like Common Crawl records: ``{"id": str, "url": str,
    "fetch_date": str, "html": bytes | str}``, with unique ids. A page that is empty, bytes that
    are not UTF-8 or a record without a URL is dropped by the reader (stage ``"reader"``), never an
    error.

    Everything goes under ``workdir``; its sub-folders ``input``, ``output``, ``removed``,
    ``minhash``, ``deduped`` and ``logs`` are emptied first (datatrove would otherwise skip the
    tasks it finds completed). There: the input files, what each filter removed
    (``removed/<stage>``), the filtered documents (``output``), the deduplicated ones
    (``deduped``), and each executor's per-task logs and ``stats.json`` (``logs/<step>``).
    ``tasks`` is how many shares the input is cut into, ``workers`` how many of them run at the
    same time (each a process; the MinHash bucket step always has 14 tasks, one per bucket).
    ``quiet=False`` shows datatrove's console log. The worker processes start from a fork server
    (``start_method``), so a script that calls this needs the ``if __name__ == "__main__":`` guard.

    Returns ``{"kept": [{"id", "url", "text"}, ...] in record order, "stage_counts": [(stage,
    documents left after it), ...] from ("input", len(records)) to the last stage, "removed":
    {id: stage}, "reasons": {id: why, as the filter says}, "seconds": wall time}``. The counts are
    datatrove's statistics; ``removed`` comes from the exclusion writers, except for the extractor,
    which has none: a document that passed the URL filter but reached neither a later filter nor
    the output is one it returned no text for. The two are checked against each other.
    """
    if QuietLocalExecutor is None:
        raise ImportError("run_datatrove needs datatrove: pip install datatrove")
    from datatrove.pipeline.dedup import (
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.logging import setup_default_logger

    if any("id" not in r for r in records):
        raise ValueError("every record needs an id")
    ids = [str(r["id"]) for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError("record ids must be unique")
    if tasks < 1 or workers < 1:
        raise ValueError("tasks and workers must be at least 1")

    work = Path(workdir)
    for name in _OWN_DIRS:
        shutil.rmtree(work / name, ignore_errors=True)
    removed_dir = work / "removed"
    start = time.perf_counter()
    dropped = _write_input(records, work / "input", tasks)

    def executor(pipeline, step, n_tasks):
        return QuietLocalExecutor(
            pipeline,
            tasks=n_tasks,
            workers=min(workers, n_tasks),
            logging_dir=str(work / "logs" / step),
            skip_completed=False,
            start_method=start_method,
            quiet=quiet,
        )

    def excluded(stage):
        return JsonlWriter(str(removed_dir / stage))

    filtering = executor(
        [
            JsonlReader(str(work / "input"), glob_pattern="*.jsonl.gz"),
            _url_filter(excluded("URLFilter")),
            Trafilatura(favour_precision=True, deduplicate=False, timeout=extract_timeout),
            GopherRepetitionFilter(exclusion_writer=excluded("GopherRepetitionFilter")),
            GopherQualityFilter(exclusion_writer=excluded("GopherQualityFilter")),
            C4QualityFilter(filter_no_terminal_punct=False, exclusion_writer=excluded("C4QualityFilter")),
            FineWebQualityFilter(exclusion_writer=excluded("FineWebQualityFilter")),
            # As in FineWeb, personal data is replaced last, after deduplication: the replacements
            # cycle through a list, so the text would otherwise depend on the order within a task.
            *([] if with_minhash else [PIIFormatter()]),
            JsonlWriter(str(work / "output")),
        ],
        "filtering",
        tasks,
    )
    steps = [filtering]
    if with_minhash:
        # sha1, as when FineWeb was made: datatrove's default hash is now xxhash, whose calls on str
        # need xxhash<4 (the course has xxhash 4, which only hashes bytes).
        hash_config = HashConfig(precision=64, hash_fc="sha1")
        config = MinhashConfig(hash_config=hash_config, num_buckets=14, hashes_per_bucket=8, n_grams=5)
        minhash = work / "minhash"
        steps += [
            executor(
                [
                    JsonlReader(str(work / "output"), glob_pattern="*.jsonl.gz"),
                    MinhashDedupSignature(output_folder=str(minhash / "signatures"), config=config),
                ],
                "minhash_signatures",
                tasks,
            ),
            executor(
                [
                    MinhashDedupBuckets(
                        input_folder=str(minhash / "signatures"), output_folder=str(minhash / "buckets"), config=config
                    )
                ],
                "minhash_buckets",
                config.num_buckets,
            ),
            executor(
                [
                    MinhashDedupCluster(
                        input_folder=str(minhash / "buckets"), output_folder=str(minhash / "remove_ids"), config=config
                    )
                ],
                "minhash_cluster",
                1,
            ),
            executor(
                [
                    JsonlReader(str(work / "output"), glob_pattern="*.jsonl.gz"),
                    MinhashDedupFilter(
                        input_folder=str(minhash / "remove_ids"), exclusion_writer=excluded(MINHASH_STAGE)
                    ),
                    PIIFormatter(),
                    JsonlWriter(str(work / "deduped")),
                ],
                "minhash_filter",
                tasks,
            ),
        ]

    if start_method == "forkserver":
        import multiprocess

        # Worker processes are forked from a "fork server" process. Importing the heavy modules
        # there once spares each worker importing them again (spaCy alone takes seconds); it only
        # takes effect if this Python process has not started its fork server yet.
        multiprocess.get_context("forkserver").set_forkserver_preload(list(_PRELOAD))

    console = contextlib.redirect_stderr(_Discard()) if quiet else contextlib.nullcontext()
    try:
        with console:
            setup_default_logger()  # datatrove's console log (main process) now goes to `console`
            for step in steps:
                if step is not filtering and not any((work / "output").glob("*.jsonl.gz")):
                    break  # every document was removed: nothing to deduplicate
                # One after the other, as `depends=` would chain them (on Slurm, as dependent jobs).
                step.run()
    finally:
        setup_default_logger()  # back to the real sys.stderr
    seconds = time.perf_counter() - start

    return _collect(records, dropped, work, with_minhash, seconds)


def _collect(records: list[dict], dropped: dict[str, str], work: Path, with_minhash: bool, seconds: float):
    order = {str(r["id"]): i for i, r in enumerate(records)}
    removed = {rid: "reader" for rid in dropped}
    reasons = dict(dropped)
    for stage in [*STAGES[1:], MINHASH_STAGE]:
        for row in _read_jsonl_folder(work / "removed" / stage):
            removed[row["id"]] = stage
            reason = row.get("metadata", {}).get("filter_reason")
            reasons[row["id"]] = reason or ("near duplicate" if stage == MINHASH_STAGE else stage)

    filtered = _read_jsonl_folder(work / "output")
    # The extractor keeps no record of what it drops: a document that got past the URL filter but
    # reached neither a later filter's exclusions nor the output is one it returned no text for.
    reached_later = {row["id"] for row in filtered}
    reached_later |= {i for i, s in removed.items() if s not in ("reader", "URLFilter")}
    for rid in order:
        if rid not in removed and rid not in reached_later:
            removed[rid] = "Trafilatura"
            reasons[rid] = "no text extracted (or extraction failed)"

    final = _read_jsonl_folder(work / "deduped") if with_minhash else filtered
    kept = sorted(
        ({"id": row["id"], "url": row.get("metadata", {}).get("url", ""), "text": row["text"]} for row in final),
        key=lambda d: order[d["id"]],
    )

    # Documents left after each stage, from datatrove's stats.json (a list, one entry per block
    # in pipeline order: the reader, the six stages, then PII when without MinHash, the writer).
    blocks = _block_stats(work / "logs" / "filtering" / "stats.json")
    counts = [("input", len(records)), ("reader", blocks[0].get("documents", 0))]
    counts += [(stage, blocks[i].get("forwarded", 0)) for i, stage in enumerate(STAGES[1:], start=1)]
    if with_minhash:
        dedup_stats = work / "logs" / "minhash_filter" / "stats.json"
        counts.append((MINHASH_STAGE, _block_stats(dedup_stats)[1].get("forwarded", 0) if dedup_stats.exists() else 0))

    # datatrove's counts and its outputs must tell the same story.
    left = len(records)
    for stage, count in counts[1:]:
        left -= sum(1 for s in removed.values() if s == stage)
        if count != left:
            raise RuntimeError(f"datatrove counted {count} documents after {stage}, its outputs say {left}")
    if len(kept) != counts[-1][1]:
        raise RuntimeError(f"datatrove wrote {len(kept)} documents but counted {counts[-1][1]}")

    removed = dict(sorted(removed.items(), key=lambda kv: order[kv[0]]))
    return {"kept": kept, "stage_counts": counts, "removed": removed, "reasons": reasons, "seconds": seconds}


def _block_stats(stats_file: Path) -> list[dict]:
    """datatrove's merged stats.json: for each block in pipeline order, {stat: total}."""
    return [
        {k: v["total"] if isinstance(v, dict) else v for k, v in block["stats"].items()}
        for block in json.loads(stats_file.read_text())
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", help="JSONL file, one record a line: id, url, fetch_date, html")
    parser.add_argument("--workdir", required=True, help="folder for datatrove's inputs, outputs and logs")
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-minhash", action="store_true", help="skip the MinHash deduplication")
    parser.add_argument("--verbose", action="store_true", help="show datatrove's console log")
    args = parser.parse_args(argv)

    with open(args.records, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    result = run_datatrove(
        records,
        args.workdir,
        tasks=args.tasks,
        workers=args.workers,
        with_minhash=not args.no_minhash,
        quiet=not args.verbose,
    )
    for stage, left in result["stage_counts"]:
        print(f"{stage:>24}  {left:>7}")
    print(f"kept {len(result['kept'])} of {len(records)} in {result['seconds']:.1f} s; "
          f"kept documents in {Path(args.workdir) / ('deduped' if not args.no_minhash else 'output')}")
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy's: the worker processes then find the
    # executor class under its own name, course_lib.data_scale.
    from course_lib.data_scale import main as _main

    sys.exit(_main())
