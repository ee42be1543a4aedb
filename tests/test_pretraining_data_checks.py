"""The Pretraining data checks on their own (in-process): right in both directions, hard to fool.

Most of chapter 1's tasks have many right answers, so their checks judge properties (the words
a reader sees, the side of FineWeb's 0.65 threshold, signatures that estimate Jaccard similarity
and change with the seed, pairs outside a 0.1 margin around the threshold). Every check must pass
the reference-like answer and one written differently, on the visible inputs and on other
(hidden-style) ones, and fail each wrong answer with a message that names the function and
gives a hint. The answers are those the grading test submits
(tests/submissions/pretraining_data_answers.py).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from course_lib import data as D
from course_lib.grading import checks, verify
from course_lib.grading import notebook as nbtools
from course_lib.grading import pretraining_data as P

import pretraining_data_answers as answers

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "solutions" / "pretraining_data" / "pretraining_data.ipynb"
RELEASE = ROOT / "assignments" / "pretraining_data" / "pretraining_data.ipynb"
TASKS = list(P.TASKS)  # the notebook's order: later answers use earlier ones

# another seed and more random inputs than the visible call; near_duplicate_pairs makes a corpus
# of 20+ long documents per random input, so it gets three (seconds each for a pure-Python MinHash)
HIDDEN_STYLE = {task: {"seed": 99, "n_random": 20} for task in TASKS}
HIDDEN_STYLE["near_duplicate_pairs"] = {"seed": 99, "n_random": 3}


@pytest.fixture(scope="module")
def training():
    return D.language_training_texts()


def load(sources: dict, training) -> dict:
    """The answers executed in order in one namespace, as in the notebook (``TRAINING`` set by
    its setup cell); a task missing from ``sources`` gets the correct answer."""
    ns: dict = {"TRAINING": training}
    for name in TASKS:
        exec(sources.get(name, answers.CORRECT[name]), ns)
    return ns


@pytest.fixture(scope="module")
def namespaces(training):
    return {"correct": load(answers.CORRECT, training),
            "alternative": load(answers.ALTERNATIVE, training)}


def with_answer(ns: dict, task: str, source: str) -> dict:
    """A copy of a correct namespace with one task's answer replaced (the others stay right)."""
    ns = dict(ns)
    exec(source, ns)
    return ns


def check(task):
    return getattr(P, f"check_{task}")


# -- right answers pass ----------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("impl", ["correct", "alternative"])
def test_right_answers_pass_visible_and_hidden_style_inputs(namespaces, impl, task):
    fn = namespaces[impl][task]
    check(task)(fn)
    check(task)(fn, **HIDDEN_STYLE[task])


def test_answers_are_what_they_claim():
    # a .replace() that no longer matches would make a "wrong" answer a copy of the right one
    for task, src in answers.WRONG.items():
        assert src != answers.CORRECT[task], task
    for task, srcs in answers.MORE_WRONG.items():
        for src in srcs:
            assert src != answers.CORRECT[task], task
    for task, src in answers.ALTERNATIVE.items():
        assert src != answers.CORRECT[task], task
    assert set(answers.CORRECT) == set(answers.ALTERNATIVE) == set(answers.WRONG) == set(TASKS)


# -- wrong answers fail, with a message --------------------------------------------------------------


WRONG_CASES = [(task, f"wrong[{task}]", src) for task, src in answers.WRONG.items()] + [
    (task, f"more_wrong[{task}][{k}]", src)
    for task, srcs in answers.MORE_WRONG.items() for k, src in enumerate(srcs)]


@pytest.mark.parametrize("task,label,source", WRONG_CASES, ids=[c[1] for c in WRONG_CASES])
def test_wrong_answers_fail_with_the_function_and_a_hint(namespaces, task, label, source):
    ns = with_answer(namespaces["correct"], task, source)
    with pytest.raises(AssertionError) as e:
        check(task)(ns[task])
    msg = str(e.value)
    assert task in msg and "hint:" in msg, msg
    assert "expected:" in msg or f"{task}: " in msg, msg  # one input, or all results judged together


def test_wrong_answers_say_what_is_wrong(namespaces):
    """The message points at the mistake each wrong answer makes."""
    def message(task, source):
        ns = with_answer(namespaces["correct"], task, source)
        with pytest.raises(AssertionError) as e:
            check(task)(ns[task])
        return str(e.value)

    assert "inside <script>" in message("extract_text", answers.WRONG["extract_text"])
    assert "is not in 'en'" in message("language_score", answers.WRONG["language_score"])
    assert "the seed must choose" in message("minhash_signature", answers.WRONG["minhash_signature"])
    assert "0.4 instead of 0.5" in message("estimated_jaccard", answers.WRONG["estimated_jaccard"])
    assert "missed" in message("near_duplicate_pairs", answers.WRONG["near_duplicate_pairs"])
    assert "(555) 987-6543" in message("redact_pii", answers.WRONG["redact_pii"])


# -- the reference may not be called ------------------------------------------------------------------


REFERENCE_CALLERS = {
    "itself": lambda ref: ref,
    "alias": lambda ref: getattr(D, ref.__name__),
    "lambda": lambda ref: (lambda *args: ref(*args)),
    "partial": lambda ref: functools.partial(ref),
}


@pytest.mark.parametrize("how", list(REFERENCE_CALLERS))
@pytest.mark.parametrize("task", TASKS)
def test_calling_the_reference_is_caught(task, how):
    fn = REFERENCE_CALLERS[how](getattr(D, task))
    with pytest.raises(AssertionError, match="reference"):
        check(task)(fn)


def test_a_reference_helper_inside_the_answer_is_caught():
    def minhash_signature(text, num_perm=128, ngram=5, seed=0):  # uses course_lib's shingles
        shingles = D.shingles(text, ngram)
        return [min(hash((seed, k, s)) & 0xFFFFFFFF for s in shingles) for k in range(num_perm)]

    with pytest.raises(AssertionError, match="reference"):
        P.check_minhash_signature(minhash_signature)


def test_poisoning_is_undone_after_a_check():
    code = D.extract_text.__code__
    with pytest.raises(AssertionError):
        P.check_extract_text(lambda html: D.extract_text(html))
    assert D.extract_text.__code__ is code
    assert D.extract_text("<p>still works</p>") == "still works"


# -- hidden tests ---------------------------------------------------------------------------------


def test_hidden_tests_use_other_inputs_than_the_visible_ones():
    src, rel = nbtools.read_json(SOURCE), nbtools.read_json(RELEASE)
    visible = {c.grade_id: c.calls for c in verify.graded_cells(rel)}
    graded = verify.graded_cells(src)
    assert sorted(c.grade_id for c in graded) == sorted(f"test_{t}" for t in TASKS)
    for cell in graded:
        hidden = [c for c in cell.calls if c not in visible[cell.grade_id]]
        assert hidden, f"{cell.grade_id} has no hidden test"
        seen = {repr(a) for call in visible[cell.grade_id] for a in verify.resolve(call)[2]}
        new = {repr(a) for call in hidden for a in verify.resolve(call)[2]}
        assert new - seen, f"{cell.grade_id}: hidden tests repeat the visible inputs"


def test_points_are_as_announced():
    src = nbtools.read_json(SOURCE)
    points = {c.grade_id: c.points for c in verify.graded_cells(src)}
    assert points == {"test_extract_text": 3, "test_language_score": 3,
                      "test_minhash_signature": 3, "test_estimated_jaccard": 1,
                      "test_near_duplicate_pairs": 3, "test_redact_pii": 2}


def _reference_verdict(task_name, **kw):
    """What the checks say about the reference's own results (as if a student returned them)."""
    task = P.TASKS[task_name]
    cases = checks.task_cases(task, **kw)
    values = []
    for args in cases:
        exp = checks.expected_data(task, args)
        msg = checks.judge(task, args, exp, {"ok": True, "value": exp})
        if msg:
            return msg
        values.append(exp)
    return checks.judge_all(task, cases, values)


def _notebook_calls():
    src = nbtools.read_json(SOURCE)
    return [(cell.grade_id, call) for cell in verify.graded_cells(src) for call in cell.calls]


@pytest.mark.parametrize("grade_id,call", _notebook_calls(),
                         ids=[f"{g}-{c.kwargs or 'visible'}" for g, c in _notebook_calls()])
def test_the_reference_passes_every_check_of_the_notebook(grade_id, call):
    """A property-based check must accept the reference on the inputs the grade uses."""
    assert _reference_verdict(call.check.removeprefix("check_"), **call.kwargs) is None


def test_the_reference_passes_near_duplicates_on_many_random_corpora():
    assert _reference_verdict("near_duplicate_pairs", seed=99, n_random=20) is None


# -- values as data ---------------------------------------------------------------------------------


def test_sets_of_pairs_round_trip_as_data():
    pairs = {(3, 7), (0, 1), (2, 11)}
    data = checks.to_data(pairs)
    assert data["$set"] and all("$tuple" in x for x in data["$set"])
    assert checks.from_data(data) == pairs
    assert checks.from_data(checks.to_data(frozenset(pairs))) == pairs
    assert checks.from_data(checks.to_data(set())) == set()
    # the same set built in another order is the same data (identical grades on a regrade)
    assert checks.to_data(set(sorted(pairs, reverse=True))) == data

    class Sneaky(set):
        def __eq__(self, other):
            return True

    assert checks.from_data(checks.to_data(Sneaky({(1, 2)}))) == {(1, 2)}


def test_a_list_of_pairs_is_accepted_like_a_set(namespaces):
    ns = namespaces["correct"]

    def near_duplicate_pairs(docs, threshold):
        # lists instead of tuples, in a list; still (i, j) with i < j, as the task says
        return sorted([i, j] for i, j in ns["near_duplicate_pairs"](docs, threshold))

    P.check_near_duplicate_pairs(near_duplicate_pairs)


# -- gaps found while writing these tests, closed in the checks --------------------------------


def test_a_minhash_ignoring_ngram_fails():
    ns: dict = {}
    exec(answers.MINHASH.replace("    p = (1 << 31) - 1\n", "    p = (1 << 31) - 1\n    ngram = 5\n"),
         ns)
    with pytest.raises(AssertionError):
        P.check_minhash_signature(ns["minhash_signature"])


def test_pairs_that_are_not_document_indices_fail(namespaces):
    ns = with_answer(namespaces["correct"], "near_duplicate_pairs",
                     answers.NEAR.replace("return {", "return {(5, 5), (0, 10**6), (-3, 2)} | {"))
    with pytest.raises(AssertionError):
        P.check_near_duplicate_pairs(ns["near_duplicate_pairs"])


def test_a_language_score_may_load_the_training_text_itself():
    """The loader is not a stage: calling it inside the function is not calling the reference."""
    src = answers.LANGUAGE.replace(
        "PROFILES = {", "from course_lib.data import language_training_texts\n"
        "TRAINING = language_training_texts()\nPROFILES = {")
    ns: dict = {}
    exec(src, ns)
    inner = ns["language_score"]

    def language_score(text, lang="en"):
        from course_lib.data import language_training_texts
        language_training_texts()  # lazily, inside the graded call
        return inner(text, lang)

    P.check_language_score(language_score)


def test_an_extractor_that_joins_all_lines_fails(namespaces):
    ns = with_answer(namespaces["correct"], "extract_text", answers.EXTRACT.replace(
        'return "\\n".join(p.lines)', 'return " ".join(p.lines)'))
    with pytest.raises(AssertionError, match="line"):
        P.check_extract_text(ns["extract_text"])
