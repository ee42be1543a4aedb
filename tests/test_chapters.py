"""A chapter is added whole or not at all (``docs/adding_a_chapter.md`` lists the places).

``CHAPTERS`` is the one table of what each chapter consists of. These tests fail when a chapter
is half added: a page in the toc that is not in the table (or the other way round), an
assignment without its grading module, answers, checks test or release record, a shipped model
without its loader entry, its files or its row in the README, a library module without a layer.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

from course_lib import assets
from course_lib.grading.checks import Assignment
from test_layers import layer

ROOT = Path(__file__).resolve().parents[1]


# number: (page in book/, library module, assignment or None, shipped models)
CHAPTERS = {
    1: ("01_pretraining_data", "data", "pretraining_data", []),
    2: ("02_tokenization", "tokenizer", "tokenization", []),
    3: ("03_transformer", "model", "transformer", []),
    4: ("04_pretraining", "train", "pretraining", ["base"]),
    5: ("05_inference", "generate", "inference", []),
    6: ("06_finetuning", "chat", "finetuning", ["sft"]),
    7: ("07_hallucinations_tools", "tools", "tools", ["idk", "tools"]),
    8: ("08_reinforcement_learning", "rl", "rl", ["rl"]),
    9: ("09_rlhf", "rlhf", "rlhf", ["rlhf", "dpo"]),
    10: ("10_epilogue", "report", None, []),   # reading only: no assignment, no new model
}


def toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    return [Path(c["file"]).name for c in toc["chapters"]]


def readme_status() -> dict[int, str]:
    rows = re.findall(r"^\| (\d+) \| [^|]+ \| ([^|]+) \|$", (ROOT / "README.md").read_text(),
                      re.M)
    return {int(n): status.strip() for n, status in rows}


def test_the_toc_lists_exactly_the_chapters_of_the_table():
    assert toc_pages() == [page for page, *_ in CHAPTERS.values()], (
        "a page in _toc.yml must have its row in CHAPTERS (tests/test_chapters.py), and a row "
        "its page in _toc.yml")


def test_the_readme_says_which_chapters_are_available():
    status = readme_status()
    assert sorted(status) == list(range(1, 11)), "README's chapter table has rows 1 to 10"
    for n, s in status.items():
        if n in CHAPTERS:
            assert s.startswith("**available**"), f"README: chapter {n} is available"
        else:
            assert "available" not in s, f"README: chapter {n} has no page yet"


@pytest.mark.parametrize("n", sorted(CHAPTERS))
def test_a_chapter_has_its_page_module_and_assignment(n):
    page, module, assignment, _ = CHAPTERS[n]
    assert (ROOT / "book" / f"{page}.md").exists()
    assert (ROOT / "course_lib" / f"{module}.py").exists()
    layer(f"course_lib.{module}")  # a library module has its place in tests/test_layers.py
    if assignment is None:
        return
    for rel in (f"solutions/{assignment}/{assignment}.ipynb",
                f"solutions/{assignment}/release.json",
                f"assignments/{assignment}/{assignment}.ipynb",
                f"course_lib/grading/{assignment}.py",
                f"tests/submissions/{assignment}_answers.py",
                f"tests/test_{assignment}_checks.py"):
        assert (ROOT / rel).exists(), f"chapter {n}'s assignment lacks {rel}"
    grading = importlib.import_module(f"course_lib.grading.{assignment}")
    assert isinstance(getattr(grading, "ASSIGNMENT", None), Assignment), (
        f"course_lib/grading/{assignment}.py declares ASSIGNMENT = checks.Assignment(TASKS, ...)")
    if assignment != "tokenization":  # graded with the adversarial cases in test_grading.py
        from test_assignment_grading import CHAPTERS as ROUND_TRIP

        assert assignment in ROUND_TRIP, (
            f"chapter {n}'s assignment has no row in the grading round trip (CHAPTERS in "
            "tests/test_assignment_grading.py)")
        assert (ROOT / f"tests/submissions/make_{assignment}_submissions.py").exists()


def test_every_assignment_belongs_to_a_chapter():
    named = {a for _, _, a, _ in CHAPTERS.values() if a}
    for folder in ("solutions", "assignments"):
        found = {p.name for p in (ROOT / folder).iterdir() if p.is_dir()}
        assert found == named, f"{folder}/ holds {sorted(found - named)} that no chapter names"
    modules = {p.stem for p in (ROOT / "course_lib/grading").glob("*.py")} - {
        "__init__", "checks", "cli", "grader", "harness", "lms", "notebook", "record", "sandbox",
        "verify"}
    assert modules == named, f"grading modules {sorted(modules - named)} belong to no chapter"


def test_every_shipped_model_is_registered_loadable_and_remade():
    named = {m for *_, models in CHAPTERS.values() for m in models}
    assert set(assets.MODELS) == named, "a chapter's model must be in assets.MODELS and v.v."
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name, spec in assets.MODELS.items():
        for f in (spec.weights, spec.log):
            assert f in assets.FILES, f"{f} must be in assets.FILES with the command remaking it"
            assert assets.path(f).exists()
        assert f"course_lib/assets/{spec.weights}" in readme, (
            f"README's stage table must list {spec.weights}")
        assert CHAPTERS[spec.chapter][3].count(name) == 1
    model = assets.load_model("base")
    assert model.config.vocab_size == assets.VOCAB_SIZE


def test_the_special_token_registry_fits_the_model():
    ids = sorted(assets.SPECIAL_TOKENS.values())
    assert ids[0] == assets.ORDINARY_VOCAB and ids[-1] < assets.VOCAB_SIZE
    assert len(set(ids)) == len(ids)
    tok = assets.course_tokenizer(tools=True)
    assert tok.special_tokens == assets.SPECIAL_TOKENS
    assert max(tok.vocab) < assets.VOCAB_SIZE


def test_the_round_trip_is_shared_between_workers_by_assignment():
    """conftest's scheduler sends each assignment of the round trip to a worker as one unit, and
    every other file whole."""
    from conftest import scope_of

    rt = "tests/test_assignment_grading.py"
    assert scope_of(f"{rt}::test_gradebook_holds_the_scores[pretraining_data]") == f"{rt}::pretraining_data"
    assert scope_of(f"{rt}::test_each_wrong_answer_loses_exactly_its_task[pretraining-wrong_x]") == f"{rt}::pretraining"
    assert scope_of("tests/test_book.py::test_x[ch1]") == "tests/test_book.py"
    assert scope_of("tests/test_model.py::test_y") == "tests/test_model.py"
