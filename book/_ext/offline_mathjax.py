"""Serve MathJax from the built book, so that math renders for a reader with no network.

Sphinx's default ``mathjax_path`` is a CDN address: offline, a reader sees raw TeX. MathJax 3.2.2
(Apache-2.0) comes from the PyPI package ``django-static-mathjax`` (installed by ``make install``
with the ``book`` extra; it vendors MathJax's ``es5`` build and needs no Django to be copied).
This extension copies the files the ``tex-chtml`` component loads, and MathJax's licence, into
``_static/mathjax`` of the HTML build; ``_config.yml`` sets ``mathjax_path: mathjax/tex-chtml.js``
(relative paths are under ``_static``). Nothing is downloaded at build time.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.errors import ExtensionError

# tex-chtml.js and what it may load at run time: TeX extensions, the CHTML fonts, the menu and
# the accessibility components (which use the speech-rule engine, sre).
PARTS = ["tex-chtml.js", "input", "output/chtml", "ui", "a11y", "sre", "adaptors"]


def mathjax_source() -> Path:
    try:
        import mathjax  # the django-static-mathjax package
    except ImportError as error:
        raise ExtensionError(
            "offline_mathjax: the MathJax files are missing; install the book's dependencies "
            "with `make install` (pip install -e '.[book]', which brings django-static-mathjax)"
        ) from error
    source = Path(mathjax.__file__).parent / "static" / "mathjax"
    if not (source / "es5" / "tex-chtml.js").exists():
        raise ExtensionError(f"offline_mathjax: {source}/es5/tex-chtml.js does not exist; "
                             "reinstall django-static-mathjax")
    return source


def copy_mathjax(app, exception=None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source = mathjax_source()
    target = Path(app.outdir) / "_static" / "mathjax"
    for part in PARTS:
        src = source / "es5" / part
        if src.is_dir():
            shutil.copytree(src, target / part, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / part)
    shutil.copy2(source / "LICENSE", target / "LICENSE")


def setup(app):
    app.connect("build-finished", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
