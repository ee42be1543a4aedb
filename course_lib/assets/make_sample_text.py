"""Remake ``sample_text.txt.gz``: about 1 MB of real English prose that ships with the course.

The text is the Python Language Reference as bundled in CPython (``pydoc_data.topics``) followed
by the docstrings of standard-library modules, both under the PSF licence. It is English written
by people, with code and punctuation mixed in: a fair stand-in for a slice of the web on which to
train a tokenizer offline. Run with Python 3.11 to get the shipped bytes::

    python course_lib/assets/make_sample_text.py
"""

import gzip
import importlib
import inspect
import pathlib
import sys
import warnings

TARGET_BYTES = 1_000_000
MODULES = [
    "argparse", "asyncio", "collections", "csv", "dataclasses", "datetime", "decimal", "email",
    "enum", "fractions", "functools", "heapq", "http.client", "inspect", "itertools", "json",
    "logging", "os", "pathlib", "pickle", "random", "re", "shutil", "socket", "sqlite3",
    "statistics", "string", "subprocess", "tarfile", "threading", "typing", "unittest",
    "urllib.request", "zipfile",
]


def docstrings(name):
    module = importlib.import_module(name)
    seen = set()
    for obj in [module, *(getattr(module, n, None) for n in sorted(dir(module)))]:
        doc = inspect.getdoc(obj) if obj is not None else None
        if doc and len(doc) > 200 and doc not in seen:
            seen.add(doc)
            yield doc


def main():
    from pydoc_data.topics import topics

    parts = [topics[key] for key in sorted(topics)]
    warnings.simplefilter("ignore")
    for name in MODULES:
        parts.extend(docstrings(name))
    text = "\n\n".join(parts)
    text = text.encode("utf-8")[:TARGET_BYTES].decode("utf-8", errors="ignore")
    out = pathlib.Path(__file__).with_name("sample_text.txt.gz")
    # mtime=0 so the same text always gives the same file
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(text.encode("utf-8"))
    print(f"wrote {out} ({len(text):,} characters, Python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
