"""The book is a test: it builds with the command `make book` runs, every page executes, and a
cell that raises fails the build.

The fast tests check the configuration (what must hold for the build to be a test at all). The
slow ones build: the real book, offline where the machine allows it, and a throwaway book with
our ``_config.yml`` whose page raises.

The real book is built exactly as `make book` builds it, into the repository's ``_build`` with
its execution cache (and the Makefile's rule that drops the cache when ``course_lib`` changed):
each page executes once per CI run, whichever of `make book` and this test comes first, instead
of once for the book and again here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# The exact flags of `make book` (README): warnings are errors, nitpicky, report all of them, and
# re-read every page (--all), so that a warning in an unchanged page is not hidden by Sphinx's
# incremental build.
BUILD_FLAGS = ["-W", "-n", "--keep-going", "--all"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def jupyter_book() -> str:
    """The jupyter-book script of the running interpreter's environment."""
    candidate = Path(sys.executable).parent / "jupyter-book"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("jupyter-book")
    if found is None:
        pytest.skip("jupyter-book is not installed (pip install -e '.[book]')")
    return found


def offline_prefix() -> list[str]:
    """A command prefix that runs the build with no network (a fresh network namespace with only
    loopback up, which the Jupyter kernel needs), or [] where that is not possible."""
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return []
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"],
                           capture_output=True, timeout=30)
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"] if probe.returncode == 0 else []


def build(source: Path, output: Path, offline: bool = False) -> subprocess.CompletedProcess:
    cmd = [jupyter_book(), "build", str(source), "--path-output", str(output), *BUILD_FLAGS]
    if offline:
        cmd = offline_prefix() + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def build_like_make_book() -> subprocess.CompletedProcess:
    """`make book`'s build, offline where possible: into ROOT/_build, reusing its execution cache
    (dropped first, by the Makefile's own rule, when course_lib changed since the cache was
    made)."""
    if shutil.which("make"):
        subprocess.run(["make", "-C", str(ROOT), "_build/.course_lib.stamp"], check=True,
                       capture_output=True, timeout=60)
    cmd = offline_prefix() + [jupyter_book(), "build", str(ROOT), *BUILD_FLAGS]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=3000, cwd=ROOT,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


# where a built page may load scripts, stylesheets, fonts and images from: itself
REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.I)


def remote_loads(html: str) -> list[str]:
    """Every address outside the book that a page loads: <script src>, <link href> (stylesheets,
    preloads, fonts, icons), <img src>, CSS url(...) and @import, and the RequireJS/widget
    loaders that ipywidgets outputs pull from CDNs. Links a reader clicks (<a href>) are fine."""
    # sphinx-thebe (part of jupyter-book) names its CDN in a constant it reads only when a launch
    # button is pressed; _config.yml has none (thebe: false, tested above), so nothing loads it
    html = re.sub(r'const THEBE_JS_URL = "[^"]*";', "", html)
    found = []
    for tag, attr in [("script", "src"), ("link", "href"), ("img", "src"), ("iframe", "src"),
                      ("source", "src"), ("embed", "src")]:
        for match in re.finditer(rf"<{tag}\b[^>]*?\b{attr}\s*=\s*[\"']([^\"']+)", html, re.I):
            url = match.group(1)
            if tag == "link" and re.search(r'rel\s*=\s*["\'](?:canonical|alternate|author|'
                                           r'license|next|prev|search|index)["\']',
                                           match.group(0), re.I):
                continue
            if REMOTE.match(url):
                found.append(f"<{tag} {attr}={url}>")
    for url in re.findall(r"url\(\s*[\"']?((?:https?:)?//[^)\"']+)", html, re.I):
        found.append(f"url({url})")
    for url in re.findall(r"@import\s+[\"']((?:https?:)?//[^\"']+)", html, re.I):
        found.append(f"@import {url}")
    for marker in ["require.min.js", "require.js", "@jupyter-widgets/html-manager",
                   "embed-amd.js", "cdn.jsdelivr.net", "unpkg.com", "cdnjs.cloudflare.com"]:
        if marker in html and not any(marker in f for f in found):
            found.append(f"mentions {marker}")
    return found


def test_remote_loads_are_found():
    """The check below can fail: it sees each kind of remote load, and not local ones."""
    page = ('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>'
            '<link rel="stylesheet" href="//fonts.googleapis.com/css?family=Lato">'
            '<img src="http://example.org/x.png"><style>@font-face{src:url(https://x.org/f.woff)}'
            '</style><script src="_static/mathjax/tex-chtml.js"></script>'
            '<a href="https://huggingface.co/datasets/HuggingFaceFW/fineweb">FineWeb</a>')
    found = remote_loads(page)
    assert len(found) == 4, found
    assert not any("_static" in f or "huggingface" in f for f in found)
    assert remote_loads('<script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/'
                        'require.min.js"></script>')
    assert remote_loads('<script>window.require(["@jupyter-widgets/html-manager"])</script>')


def tail(proc: subprocess.CompletedProcess, n: int = 6000) -> str:
    return (proc.stdout + proc.stderr)[-n:]


# ------------------------------------------------------------------------------------------
# Fast: the configuration
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def toc() -> dict:
    return yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))


def test_execution_is_cached_and_errors_fail_the_build(config):
    execute = config["execute"]
    assert execute["execute_notebooks"] == "cache"
    assert execute["allow_errors"] is False
    assert execute["raise_on_error"] is True
    assert execute["timeout"] >= 60


def test_only_toc_pages_are_built(config):
    assert config["only_build_toc_files"] is True
    # hidden folders (.pytest_cache holds a README.md) are invisible to only_build_toc_files
    for pattern in ["_build", ".venv", "solutions", "assignments", "tests", "**.ipynb_checkpoints",
                    ".*", "**/.*"]:
        assert pattern in config["exclude_patterns"], f"{pattern!r} missing from exclude_patterns"


def test_nothing_reaches_the_network_at_build(config):
    assert config["sphinx"]["config"]["intersphinx_mapping"] == {}
    buttons = config.get("launch_buttons", {})
    assert not buttons.get("thebe")
    for key in ["binderhub_url", "jupyterhub_url", "colab_url", "deepnote_url"]:
        assert not buttons.get(key), f"launch_buttons.{key} must be empty"
    assert "sphinx_exercise" in config["sphinx"]["extra_extensions"]
    assert {"colon_fence", "dollarmath"} <= set(config["parse"]["myst_enable_extensions"])


def toc_files(toc: dict) -> list[str]:
    files = [toc["root"]]
    stack = list(toc.get("chapters", [])) + [c for p in toc.get("parts", []) for c in p["chapters"]]
    while stack:
        entry = stack.pop(0)
        if "file" in entry:
            files.append(entry["file"])
        stack.extend(entry.get("sections", []))
    return files


def test_toc_lists_existing_pages_only(toc):
    assert toc["format"] == "jb-book"
    assert toc["root"] == "book/intro"
    files = toc_files(toc)
    assert "book/02_tokenization" in files
    for name in files:
        matches = [p for p in (ROOT / f"{name}.md", ROOT / f"{name}.ipynb") if p.exists()]
        assert matches, f"_toc.yml lists {name}, which has no .md or .ipynb file"


def test_chapter_pages_are_myst_notebooks_with_one_lexer(toc):
    for name in toc_files(toc)[1:]:
        page = ROOT / f"{name}.md"
        if not page.exists():
            continue
        text = page.read_text(encoding="utf-8")
        header = yaml.safe_load(text.split("---", 2)[1])
        assert header["jupytext"]["text_representation"]["format_name"] == "myst", page
        assert header["kernelspec"]["name"] == "python3", page
        lexers = set(re.findall(r"```\{code-cell\}\s*(\S*)", text))
        assert lexers == {"ipython3"}, f"{page}: code cells must use ipython3, found {lexers}"
        assert "!pip" not in text, f"{page}: no !pip cells"


def qualified_names(tree) -> set[str]:
    """Every function and class of a module as `:pyobject:` names them: `f`, `Class`,
    `Class.method`."""
    import ast

    names = set()

    def visit(body, prefix):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(prefix + node.name)
                visit(node.body, f"{prefix}{node.name}.")

    visit(tree.body, "")
    return names


def test_literalincludes_point_at_real_library_code():
    """The chapter shows library code with literalinclude + pyobject: the file and the objects
    must exist, or Sphinx warns (and -W fails the build, but this says which one)."""
    import ast

    chapters = sorted((ROOT / "book").glob("[0-9][0-9]_*.md"))
    assert chapters
    for chapter in chapters:
        page = chapter.read_text(encoding="utf-8")
        includes = re.findall(r"```\{literalinclude\} (\S+)\n(?::[^\n]*\n)*?:pyobject: (\S+)", page)
        assert includes, f"{chapter.name} should show library code with literalinclude"
        for rel, obj in includes:
            source = (ROOT / "book" / rel).resolve()
            assert source.exists(), f"{chapter.name}: literalinclude of missing file {rel}"
            names = qualified_names(ast.parse(source.read_text(encoding="utf-8")))
            assert obj in names, f"{chapter.name}: {rel} has no function or class {obj!r}"


def test_intro_names_every_chapter_file():
    intro = (ROOT / "book" / "intro.md").read_text(encoding="utf-8")
    # available chapters are linked by file name, the others named by path
    available = {"01": "01_pretraining_data.md", "02": "02_tokenization.md",
                 "03": "03_transformer.md", "04": "04_pretraining.md",
                 "05": "05_inference.md", "06": "06_finetuning.md",
                 "07": "07_hallucinations_tools.md", "08": "08_reinforcement_learning.md",
                 "09": "09_rlhf.md", "10": "10_epilogue.md"}
    for page in available.values():
        assert f"]({page})" in intro, f"the intro should link {page}"
    assert "assignments/pretraining_data/pretraining_data.ipynb" in intro
    assert "assignments/tokenization/tokenization.ipynb" in intro
    assert "assignments/transformer/transformer.ipynb" in intro
    assert "assignments/pretraining/pretraining.ipynb" in intro
    assert "assignments/inference/inference.ipynb" in intro
    assert "assignments/finetuning/finetuning.ipynb" in intro
    assert "assignments/tools/tools.ipynb" in intro
    assert "assignments/rl/rl.ipynb" in intro
    assert "assignments/rlhf/rlhf.ipynb" in intro
    assert len(available) == 10 and "book/10_epilogue.md" not in intro


# ------------------------------------------------------------------------------------------
# Slow: real builds
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_book_builds_and_renders_its_chapters():
    proc = build_like_make_book()
    assert proc.returncode == 0, f"`jupyter-book build . {' '.join(BUILD_FLAGS)}` failed:\n{tail(proc)}"

    html_dir = ROOT / "_build" / "html"
    page = html_dir / "book" / "02_tokenization.html"
    assert page.exists(), f"no {page}; built: {sorted(p.name for p in html_dir.rglob('*.html'))}"
    assert (html_dir / "book" / "intro.html").exists()
    html = page.read_text(encoding="utf-8")

    # the colour-coded token view, for our tokenizer and for GPT-4's
    assert html.count('class="token-view"') >= 2
    assert re.search(r'<span title="id \d+" style="background:#', html)
    # at least one figure, embedded as a PNG file that exists
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', html)
    assert images, "the chapter has no PNG figure"
    for src in images:
        image = (page.parent / src).resolve()
        assert image.exists(), f"figure {src} is missing from the build"
        assert image.read_bytes()[:8] == PNG_MAGIC, f"{src} is not a PNG"
    assert re.search(r'caption-number">Fig\. \d+', html), "the figure has no numbered caption"
    # executed outputs that are claims of the chapter
    assert "identical ids: True" in html
    assert "same merges: True" in html
    # the reader exercises, with their solutions folded away
    assert html.count('class="exercise admonition"') >= 2
    assert html.count('class="solution dropdown admonition"') == html.count('class="exercise admonition"')
    # chapter 1: the pipeline's figures (world, survival, LSH S-curve, language scores), its
    # measured claims, and no ipywidgets output (a widget renders only with JavaScript from a CDN)
    page1 = html_dir / "book" / "01_pretraining_data.html"
    assert page1.exists(), "chapter 1 was not built"
    html1 = page1.read_text(encoding="utf-8")
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', html1)
    assert len(images) >= 4, f"chapter 1 should have at least 4 figures, has {len(images)}"
    for src in images:
        image = (page1.parent / src).resolve()
        assert image.exists() and image.read_bytes()[:8] == PNG_MAGIC, f"figure {src} is missing"
    assert len(re.findall(r'caption-number">Fig\. \d+', html1)) >= 4, \
        "chapter 1's figures should have numbered captions"
    assert "What survives each stage" in html1
    assert "still in the text: 0" in html1
    assert "application/vnd.jupyter.widget" not in html1
    assert html1.count('class="exercise admonition"') >= 1
    assert html1.count('class="solution dropdown admonition"') == html1.count('class="exercise admonition"')
    # pages outside the toc are never built
    for excluded in ["README.html", "solutions", "assignments", "tests"]:
        assert not (html_dir / excluded).exists(), f"{excluded} should not be built"
    # a reader with no network sees every page whole: nothing loads from another host, and the
    # math is typeset by the MathJax the build copied in (with its licence)
    for built in sorted(html_dir.rglob("*.html")):
        found = remote_loads(built.read_text(encoding="utf-8"))
        assert not found, f"{built.relative_to(html_dir)} loads from another host: {found}"
    mathjax = html_dir / "_static" / "mathjax"
    assert (mathjax / "tex-chtml.js").stat().st_size > 100_000 and (mathjax / "LICENSE").exists()
    assert list((mathjax / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    page3 = (html_dir / "book" / "03_transformer.html").read_text(encoding="utf-8")
    assert 'src="../_static/mathjax/tex-chtml.js' in page3 and r"\(" in page3
    # figures and exercises are numbered per chapter: chapter 2's first exercise is 2.1
    assert re.search(r"Exercise 2\.1\b", html), "exercises should be numbered per chapter"
    assert re.search(r'caption-number">Fig\. 2\.\d+', html), "figures should be numbered per chapter"


def tiny_book(root: Path, cell: str) -> Path:
    """A one-chapter book with the course's real _config.yml (and its static files and local
    Sphinx extensions)."""
    root.mkdir()
    shutil.copy(ROOT / "_config.yml", root / "_config.yml")
    for folder in ["_static", "_ext"]:
        if (ROOT / "book" / folder).exists():
            shutil.copytree(ROOT / "book" / folder, root / "book" / folder,
                            ignore=shutil.ignore_patterns("__pycache__"))
    (root / "book").mkdir(exist_ok=True)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/page\n")
    (root / "book" / "intro.md").write_text("# Intro\n\nA throwaway book.\n")
    (root / "book" / "page.md").write_text(
        "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n"
        "    format_version: 0.13\nkernelspec:\n  display_name: Python 3\n  language: python\n"
        "  name: python3\n---\n\n# Page\n\n```{code-cell} ipython3\nx = 1 + 1\n```\n\n"
        f"```{{code-cell}} ipython3\n{cell}\n```\n")
    return root


@pytest.mark.slow
def test_a_cell_that_raises_fails_the_build(tmp_path):
    # control: the same book with a harmless cell builds, so the failure below is the raise
    good = build(tiny_book(tmp_path / "good", "print(x)"), tmp_path / "good_out")
    assert good.returncode == 0, f"the control book should build:\n{tail(good)}"

    bad = build(tiny_book(tmp_path / "bad", 'raise RuntimeError("a cell that raises")'),
                tmp_path / "bad_out")
    assert bad.returncode != 0, "a page whose cell raises must fail the build"
    assert "a cell that raises" in bad.stdout + bad.stderr, "the log should show the cell's error"
