"""Every chapter's assignment graded end to end, with nbgrader's real CLI and gradebook: one round
trip, parametrised over the assignments of ``CHAPTERS``, whose rows hold each assignment's facts
(points, wrong answers and what they are told, broken notebooks of its own). Tokenization, with
every adversarial and generic broken case (not JSON, empty, ``os._exit``, tampering, ...), is
graded once for the whole course in tests/test_grading.py.

The notebooks are made into ``tmp_path`` from the current release by
``make_submissions.chapter_cases`` (answers of ``<assignment>_answers.py``, broken ones of
``make_<assignment>_submissions.py``). Running a notebook through the grader costs two torch
imports and its every cell, so the grader gets the smallest set that covers every kind of
outcome: the solution's answers (full marks), the untouched release (zero: every task's
failure crosses to the grader), the wrong answers of ``graded_wrong`` (each loses exactly its
task; one per kind of wrong result that crosses to the grader), a syntax error, the course's reference called, a locked cell edited (and, in one
assignment, an endless function). Two of them are graded again into the same folder, and their
rows must not change. The other notebooks (the alternative answers and every wrong answer) are
graded in-process by ``grade_in_process``: the notebook's cells run here as in the sandbox
(locked cells restored, hidden tests included), and each must lose exactly the points of its
task (for inference and finetuning, whose checks tests show that already, the alternative
only). The in-process verdict must equal the grader's on notebooks graded both ways.

A new chapter's round trip is a row of ``CHAPTERS`` plus its answers module and its
``make_<assignment>_submissions.py`` (the written answer and ``BROKEN``).
"""

from __future__ import annotations

import importlib
import shutil
from dataclasses import dataclass, field

import nbformat
import pytest

import make_submissions
from course_lib.grading import grader
from course_lib.grading import notebook as nbtools

# the cells take under a second (torch is preloaded before the first cell); the limits only bite
# for the endless loop, whose test cell and one graded call run to their limit
LIMITS = {"cell_seconds": 10.0, "call_seconds": 3.0, "notebook_seconds": 120.0,
          "memory_bytes": 3 << 30}


@dataclass
class Chapter:
    points: dict                  # grade id of each test cell -> its points
    graded_wrong: list            # wrong answers (keys of answers.WRONG) the grader grades
    said: dict                    # wrong answer -> what its reason must say (all in-process)
    broken: list                  # (student, lost test cell, reason) of broken functions
    references: tuple             # (lost test cells, reference names) of calls_reference
    feedback: tuple               # (student, points of the lost task, points kept) on its page
    gradebook: dict               # student -> code score in the gradebook
    secrets: tuple                # what no feedback page may show (hidden tests' inputs)
    edited_locked: tuple | None = None  # (locked cell, lost test cell, reason)
    limits: dict = field(default_factory=lambda: LIMITS)
    written: int = 2              # points of the written question, graded by hand
    check_wrong: tuple | None = None  # (notebook, lines of `course check`'s output)
    # every wrong answer graded in-process here; False where the assignment's checks test shows
    # each one failing its own check only, with its message (test_*_checks.py)
    wrong_in_process: bool = True

    @property
    def full(self) -> float:
        return float(sum(self.points.values()))


CHAPTERS = {
    "pretraining_data": Chapter(
        points={"test_extract_text": 3, "test_language_score": 3, "test_minhash_signature": 3,
                "test_estimated_jaccard": 1, "test_near_duplicate_pairs": 3,
                "test_redact_pii": 2},
        # the language cell counts trigram tables of the training text (seconds; more while
        # another notebook runs beside it); a near-duplicate test case hashes 20+ pages
        limits={"cell_seconds": 30.0, "call_seconds": 10.0, "notebook_seconds": 240.0,
                "memory_bytes": 3 << 30},
        graded_wrong=["redact_pii", "language_score"],
        said={"extract_text": "inside <script>", "minhash_signature": "the seed must choose",
              "estimated_jaccard": "expected: 0.5", "redact_pii": "(555) 987-6543"},
        broken=[("syntax-error-cell", "test_language_score", "language_score is not defined")],
        references=(["test_extract_text"], ["course_lib.data.extract_text"]),
        feedback=("wrong-redact-pii", 2, 3),
        gradebook={"wrong-language-score": 15.0 - 3},
        secrets=("seed=4242", "seed=2718"),
        check_wrong=("wrong_near_duplicate_pairs", [
            "test_near_duplicate_pairs: 0 / 3", "missed 2 near-duplicate pair(s)", "hint:",
            "test_redact_pii: 2 / 2", "visible tests: 12 / 15 points"]),
    ),
    "transformer": Chapter(
        points={"test_attention": 4, "test_block_forward": 5, "test_count_parameters": 3},
        # one per task; unstable_softmax is wrong only for large scores, which block_forward's
        # inputs also have: block_forward, checked with a trusted attention, keeps its points
        graded_wrong=["unstable_softmax", "post_ln", "tied_counted_twice"],
        said={"unstable_softmax": "exp of large scores", "mask_hides_diagonal": "inf or nan",
              "no_scaling": "values differ by up to", "post_ln": "values differ by up to",
              "exact_gelu": "values differ by up to",
              "tied_counted_twice": "163037184 instead of 124439808",
              "no_position_embeddings": "123653376 instead of 124439808"},
        # the endless function, graded for this chapter only (the time limits are the
        # sandbox's, the same for every assignment)
        broken=[("infinite-loop-function", "test_count_parameters", "did not finish"),
                ("syntax-error-cell", "test_block_forward", "block_forward is not defined")],
        # attention calls the reference; the student's own (right) block_forward is checked
        # with a trusted attention in place of that name, so it keeps its points
        references=(["test_attention"], ["course_lib.model.attention"]),
        feedback=("wrong-tied-counted-twice", 3, 5),
        gradebook={"wrong-post-ln": 12.0 - 5, "wrong-unstable-softmax": 12.0 - 4},
        secrets=("seed=271", "seed=1618", "seed=42"),
    ),
    "pretraining": Chapter(
        points={"test_cross_entropy": 3, "test_lr_at": 3, "test_accumulate_gradients": 4,
                "test_flops_per_token": 1, "test_mfu": 1},
        graded_wrong=["loss_not_divided", "unstable_softmax"],
        said={"unstable_softmax": "the loss is nan (an exp of large logits overflows",
              "off_by_one_warmup": "so step 0 already gets max_lr / warmup_steps",
              "no_warmup_guard": "ZeroDivisionError",
              "loss_not_divided": "as if each micro-batch's loss were not divided by the "
                                  "number of micro-batches",
              "no_backward": ".grad is None",
              "returns_sum_of_losses": "2 times too large",
              "flops_6n_only": "746638848 instead of 859885056",
              "mfu_upside_down": "upside down"},
        broken=[("syntax-error-cell", "test_mfu", "mfu is not defined")],
        # accumulate_gradients is called through the locked cell, and caught all the same
        references=(["test_cross_entropy", "test_accumulate_gradients"],
                    ["course_lib.train.cross_entropy", "course_lib.train.accumulate_gradients"]),
        # the locked cell was edited to compute the gradients itself around an
        # accumulate_gradients without backward; graded with the released cell, that loses
        edited_locked=("accumulate_gradients_on_gpt", "test_accumulate_gradients",
                       ".grad is None"),
        feedback=("wrong-loss-not-divided", 4, 3),
        gradebook={"wrong-loss-not-divided": 12.0 - 4, "wrong-unstable-softmax": 12.0 - 3},
        secrets=("seed=2718", "seed=1729", "seed=1618", "seed=31", "seed=577"),
    ),
    "inference": Chapter(
        points={"test_apply_temperature": 1, "test_top_k_filter": 2, "test_top_p_filter": 3,
                "test_sample": 3, "test_generate_with_cache": 4},
        graded_wrong=["top_p_drops_crossing", "no_cache_recomputes"],
        said={"temperature_after_softmax":
              "does the temperature divide the logits before the softmax?",
              "top_k_off_by_one": "keeps 3 tokens instead of 2",
              "top_p_drops_crossing": "(it should stay)",
              "ignores_generator": "drew different tokens",
              "filters_in_wrong_order": "but the filters remove it",
              "cache_positions_off_by_one": "are the later steps at the right position",
              "no_cache_recomputes": "the tokens are right, but the model read"},
        broken=[("syntax-error-cell", "test_generate_with_cache",
                 "name 'generate_with_cache' is not defined")],
        # generate_with_cache is decorated and called through the locked cell, caught the same
        references=(["test_top_p_filter", "test_generate_with_cache"],
                    ["course_lib.generate.top_p_filter", "course_lib.generate.generate_with_cache"]),
        # the locked cell was edited to report a cached loop's count around a loop without a
        # cache; graded with the released cell, the loop loses its task
        edited_locked=("generate_with_cache_on_gpt", "test_generate_with_cache",
                       "the model read"),
        feedback=("wrong-top-p-drops-crossing", 3, 4),
        gradebook={"wrong-top-p-drops-crossing": 13.0 - 3, "wrong-no-cache-recomputes": 13.0 - 4},
        secrets=("seed=2718", "seed=1729", "seed=1618", "seed=31", "seed=577"),
        wrong_in_process=False,  # test_inference_checks.py
    ),
    "finetuning": Chapter(
        points={"test_render_conversation": 5, "test_masked_cross_entropy": 4},
        # one of each kind of result that crosses to the grader: ids and mask, a conversation
        # that should have raised, a loss value, a loss without a gradient, a nan loss
        graded_wrong=["mask_shifted", "no_validation", "loss_ignores_mask", "loss_detached",
                      "loss_empty_mask_nan"],
        said={"mask_covers_user": "message 0 (user)'s content",
              "mask_shifted": "shifted by one position",
              "end_token_not_in_mask": "(assistant)'s <|im_end|>",
              "loss_ignores_mask": "the mean over every position",
              "loss_unstable_softmax": "exp overflows",
              "no_validation": "returned instead of raising ValueError",
              "loss_detached": "no gradient reached the logits",
              "loss_empty_mask_nan": "raise ValueError (got tensor(nan)"},
        broken=[("syntax-error-cell", "test_masked_cross_entropy",
                 "name 'masked_cross_entropy' is not defined")],
        # the notebook may still use course_lib.chat's chat_tokenizer and check_conversation
        references=(["test_render_conversation", "test_masked_cross_entropy"],
                    ["course_lib.chat.render_conversation", "course_lib.chat.masked_cross_entropy"]),
        # the locked cell was edited to report the reference's loss and gradient instead of
        # those of a loss that ignores the mask; graded with the released cell, that loses
        edited_locked=("masked_cross_entropy_with_grad", "test_masked_cross_entropy",
                       "the mean over every position"),
        feedback=("wrong-mask-shifted", 5, 4),
        gradebook={"wrong-mask-shifted": 9.0 - 5, "wrong-loss-ignores-mask": 9.0 - 4},
        secrets=("seed=4242", "seed=8128", "Sé breve", "Anyone?"),
        wrong_in_process=False,  # test_finetuning_checks.py
    ),
    "tools": Chapter(
        points={"test_hallucination_rate": 2, "test_build_refusal_data": 2,
                "test_parse_tool_call": 3, "test_run_tool_loop": 5},
        # conversations, a parsed call, a loop the scripted model reports as runaway (a rate
        # crosses in the untouched release, a loop's ids and mask in the edited locked cell)
        graded_wrong=["refusal_strict", "parse_token_by_token", "loop_never_stops"],
        said={"rate_counts_refusals": "a refusal never counts",
              "rate_substring": "it must stand as whole words",
              "rate_case_sensitive": "compare in any case",
              "refusal_strict": "at least 0.5 of them, so the data answers it",
              "parse_token_by_token": "decode the call's ids together",
              "parse_first_call": "take the last <|tool_start|>",
              "loop_trains_on_results": "the model must not learn to write tool outputs",
              "loop_never_stops": "the loop did not stop"},
        # a loop that hangs without calling the model (the scripted model stops one that calls
        # it: loop_never_stops); its test cell and first graded call time out
        broken=[("syntax-error-cell", "test_run_tool_loop", "name 'run_tool_loop' is not defined"),
                ("infinite-loop-function", "test_run_tool_loop", "did not finish")],
        # run_tool_loop calls the imported reference parse_tool_call and keeps its points
        references=(["test_build_refusal_data", "test_parse_tool_call"],
                    ["course_lib.hallucination.build_refusal_data",
                     "course_lib.tools.parse_tool_call"]),
        # the locked cell was edited to report the reference's ids and mask around a loop that
        # trains on the results; graded with the released cell, the loop loses its task
        edited_locked=("run_tool_loop_on_script", "test_run_tool_loop",
                       "the model must not learn to write tool outputs"),
        feedback=("wrong-parse-token-by-token", 3, 5),
        gradebook={"wrong-refusal-strict": 12.0 - 2, "wrong-loop-never-stops": 12.0 - 5},
        secrets=("seed=1729", "seed=2718", "seed=3141", "seed=1618", "maps: Kessel",
                 "file_1790", "Time: 12:30"),
        wrong_in_process=False,  # test_tools_checks.py
    ),
    "rl": Chapter(
        points={"test_extract_answer": 2, "test_reward": 1, "test_group_advantages": 3,
                "test_policy_loss": 4},
        # a reward, advantages with nan (an all-equal group without eps), a loss whose value is
        # right and whose gradient is not (an int, a ValueError and a loss without a gradient
        # cross in the untouched release)
        graded_wrong=["reward_pays_format", "advantages_no_eps", "loss_gradient_through_clip"],
        said={"extract_first_answer_line": "is not the last line is no answer",
              "extract_no_cut": "the reply ends at its first special token",
              "reward_pays_format": "a well-formatted wrong answer earns what no answer earns",
              "advantages_whole_batch": "the mean (and std) of the whole batch",
              "advantages_no_eps": "a group whose rewards are all equal",
              "loss_unclipped": "the ratio is not clipped",
              "loss_per_sequence_mean": "the mean of each solution's mean",
              "loss_gradient_through_clip": "the clip binds there"},
        broken=[("syntax-error-cell", "test_policy_loss", "name 'policy_loss' is not defined")],
        # reward calls the imported reference extract_answer and keeps its point
        references=(["test_extract_answer", "test_group_advantages"],
                    ["course_lib.rl.extract_answer", "course_lib.rl.group_advantages"]),
        # the locked cell was edited to report the reference's loss and gradient around an
        # unclipped loss; graded with the released cell, the loss loses its task
        edited_locked=("policy_loss_with_grad", "test_policy_loss", "the ratio is not clipped"),
        feedback=("wrong-reward-pays-format", 1, 4),
        gradebook={"wrong-reward-pays-format": 10.0 - 1,
                   "wrong-loss-gradient-through-clip": 10.0 - 4},
        secrets=("seed=1729", "seed=2718", "seed=3141", "seed=1618", "Hmm, again.",
                 "Tom has 8 coins", "ANSWER:8"),
        wrong_in_process=False,  # test_rl_checks.py
    ),
    "rlhf": Chapter(
        points={"test_bradley_terry_loss": 2, "test_dpo_loss": 3, "test_sequence_logprob": 4},
        # a loss that is inf (log of an underflowed sigmoid), a loss whose gradient reaches the
        # reference, log-probabilities off by one position (a loss without a gradient and log
        # -probabilities of zeros cross in the untouched release)
        graded_wrong=["bt_unstable", "dpo_no_detach", "seq_off_by_one"],
        said={"bt_swapped": "chosen and rejected swapped",
              "bt_unstable": "use F.logsigmoid(x)",
              "dpo_no_beta": "beta left out",
              "dpo_beta_outside": "beta outside the log-sigmoid",
              "dpo_no_detach": "a gradient reached ref_chosen_logps",
              "seq_off_by_one": "the logits at t - 1 predict ids[t]",
              "seq_mean": "the SUM of its tokens'",
              "seq_mask_not_shifted": "the mask not shifted"},
        broken=[("syntax-error-cell", "test_sequence_logprob",
                 "name 'sequence_logprob' is not defined")],
        # course_lib.rl (chapter 8's token_logprobs) is off limits as well as course_lib.rlhf
        references=(["test_bradley_terry_loss", "test_sequence_logprob"],
                    ["course_lib.rlhf.bradley_terry_loss", "course_lib.rl.token_logprobs"]),
        # the locked cell was edited to report the reference's loss and gradients around a DPO
        # loss that does not detach the reference; graded with the released cell, that loses
        edited_locked=("dpo_loss_with_grad", "test_dpo_loss",
                       "a gradient reached ref_chosen_logps"),
        feedback=("wrong-bt-unstable", 2, 4),
        gradebook={"wrong-bt-unstable": 9.0 - 2, "wrong-dpo-no-detach": 9.0 - 3},
        secrets=("seed=1729", "seed=2718", "seed=3141", "-1200.0", "-610.0",
                 "2, 9, 4, 4, 1, 7"),
        wrong_in_process=False,  # test_rlhf_checks.py
    ),
}

pytestmark = pytest.mark.slow


def student(stem: str) -> str:
    return stem.replace("_", "-")


def answers_of(assignment: str):
    return importlib.import_module(f"{assignment}_answers")


def wrong_answers(assignment: str) -> dict:
    """``{name: task}`` of every wrong answer of the assignment (``WRONG`` is ``{task: source}``
    or ``{name: (task, source)}``)."""
    return {name: (w[0] if isinstance(w, tuple) else name)
            for name, w in answers_of(assignment).WRONG.items()}


def graded_stems(assignment: str) -> list[str]:
    """The notebooks the grader grades (the rest are graded in-process)."""
    ch = CHAPTERS[assignment]
    stems = ["solution_like", "untouched", "calls_reference"]
    stems += [who.replace("-", "_") for who, _, _ in ch.broken]
    stems += ["edited_locked_cell"] if ch.edited_locked else []
    return stems + [f"wrong_{w}" for w in ch.graded_wrong]


def regraded_stems(assignment: str) -> list[str]:
    return ["solution_like", CHAPTERS[assignment].feedback[0].replace("-", "_")]


def grade_in_process(assignment: str, nb) -> dict:
    """``{test cell: ""}`` if it passed, else its error: the notebook's cells run in this process
    as the sandbox runs them (locked cells restored as released, hidden tests included), up to the
    last test cell (the "Try it" cells after it are not graded)."""
    release = make_submissions.release_nb(assignment)
    source = nbformat.read(make_submissions.ROOT / "solutions" / assignment /
                           f"{assignment}.ipynb", as_version=4)
    tests = {nbtools.grade_id(c): c.source for c in source.cells if nbtools.is_test(c)}
    nb, _ = nbtools.restore(nb, release)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    last = max(i for i, c in enumerate(cells) if nbtools.grade_id(c) in tests)
    ns: dict = {"__name__": "__main__"}
    verdict = {}
    for cell in cells[:last + 1]:
        gid = nbtools.grade_id(cell)
        try:
            exec(compile(tests.get(gid, cell.source), gid or "<cell>", "exec"), ns)  # noqa: S102
            if gid in tests:
                verdict[gid] = ""
        except Exception as e:  # noqa: BLE001 (a student's cell may raise anything)
            if gid in tests:
                verdict[gid] = f"{type(e).__name__}: {e}"
    return verdict


# -- fixtures: one folder and one grading per assignment ---------------------------------------------
# Each test takes the assignment as its own parameter; what is made for an assignment is kept for
# the session, so it is made once however pytest orders the tests.

EVERY = pytest.mark.parametrize("assignment", list(CHAPTERS))


@pytest.fixture
def chapter(assignment):
    return CHAPTERS[assignment]


@pytest.fixture(scope="session")
def _made():
    return {}


@pytest.fixture
def notebooks(assignment, _made):
    """Every notebook of the assignment, made from its current release."""
    key = ("notebooks", assignment)
    if key not in _made:
        _made[key] = make_submissions.chapter_cases(assignment)
    return _made[key]


@pytest.fixture
def folder(assignment, notebooks, _made, tmp_path_factory):
    """The notebooks the grader grades, in a folder named after the assignment (as students'
    notebooks are, so that ``course check`` can tell the assignment from the folder)."""
    key = ("folder", assignment)
    if key not in _made:
        d = tmp_path_factory.mktemp("submissions") / assignment
        d.mkdir()
        for stem in graded_stems(assignment):
            nbformat.write(notebooks[stem], d / f"{stem}.ipynb")
        _made[key] = d
    return _made[key]


@pytest.fixture
def runs(assignment, chapter, folder, _made, tmp_path_factory):
    """The folder graded once; then two of its notebooks graded again into the same output
    folder. Returns (the first run's grades.csv and feedback, the output folder)."""
    key = ("runs", assignment)
    if key in _made:
        return _made[key]
    out = tmp_path_factory.mktemp("graded")
    grader.grade(assignment, folder, out, limits=chapter.limits, progress=False)
    first = tmp_path_factory.mktemp("first")  # what the regrade below overwrites
    shutil.copy(out / "grades.csv", first / "grades.csv")
    shutil.copytree(out / "feedback", first / "feedback")
    again = tmp_path_factory.mktemp("again")
    for stem in regraded_stems(assignment):
        shutil.copy(folder / f"{stem}.ipynb", again)
    grader.grade(assignment, again, out, limits=chapter.limits, progress=False)
    _made[key] = first, out
    return _made[key]


@pytest.fixture
def rows(runs, read_grades):
    return read_grades(runs[0] / "grades.csv")


# -- what the assignment's folder holds -------------------------------------------------------------


@EVERY
def test_the_rows_match_the_answers(assignment, chapter, notebooks):
    """Every name in a row is a notebook the makers make. (Every task's failure crosses to the
    grader in the untouched release; ``graded_wrong`` adds the wrong results of their own.)"""
    wrong = wrong_answers(assignment)
    assert chapter.graded_wrong and set(chapter.graded_wrong) <= set(wrong)
    assert set(chapter.said) <= set(wrong)
    assert set(graded_stems(assignment)) <= set(notebooks)
    assert {"alternative", *(f"wrong_{w}" for w in wrong)} <= set(notebooks)


@EVERY
def test_every_graded_notebook_has_a_row(assignment, rows):
    assert set(rows) == {student(s) for s in graded_stems(assignment)}


@EVERY
def test_regrades_are_identical(assignment, runs, csv_rows):
    first, out = runs
    rows1, rows2 = csv_rows(first / "grades.csv"), csv_rows(out / "grades.csv")
    regraded = {student(s) for s in regraded_stems(assignment)}
    assert rows2[0] == rows1[0]
    assert [r[0] for r in rows2[1:]] == sorted(regraded)
    assert rows2[1:] == [r for r in rows1[1:] if r[0] in regraded], \
        "grading the same notebooks again changed their rows of grades.csv"


@EVERY
def test_a_regrade_of_a_few_leaves_the_others_alone(assignment, runs):
    """Regrading a few students into a folder that holds a whole class makes feedback for those
    few only: nbgrader must not be asked (twice, by two processes at once) for the others'."""
    _, out = runs
    regraded = {student(s) for s in regraded_stems(assignment)}
    assert {p.name for p in (out / "course" / "feedback").iterdir()} <= regraded
    assert {p.stem for p in (out / "feedback").iterdir()} == regraded


# -- outcomes through the grader ----------------------------------------------------------------------


@EVERY
def test_right_answers_get_every_autograded_point(chapter, rows):
    r = rows["solution-like"]
    assert float(r["score"]) == chapter.full, r["reasons"]
    assert r["max_score"] == f"{chapter.full + chapter.written:g}"
    assert r["status"] == "needs manual grading", r["status"]  # the written answer
    assert r["written_question"] == "answered"
    assert r["reasons"] == "" and r["notes"] == "", (r["reasons"], r["notes"])
    for gid, points in chapter.points.items():
        assert float(r[gid]) == points, (gid, r["reasons"])


@EVERY
def test_untouched_release_scores_zero(chapter, rows):
    r = rows["untouched"]
    assert float(r["score"]) == 0, r["reasons"]
    assert r["status"].startswith("failed: no answer"), r["status"]
    assert r["written_question"] == "unanswered"
    for gid in chapter.points:
        assert float(r[gid]) == 0 and f"{gid}: test 1 of " in r["reasons"], gid


@EVERY
def test_each_graded_wrong_answer_loses_exactly_its_task(assignment, chapter, rows):
    wrong = wrong_answers(assignment)
    for name in chapter.graded_wrong:
        r = rows[f"wrong-{student(name)}"]
        lost = f"test_{wrong[name]}"
        assert float(r[lost]) == 0, r
        assert f"{lost}: " in r["reasons"] and "hint:" in r["reasons"], r["reasons"]
        for gid, points in chapter.points.items():
            if gid != lost:
                assert float(r[gid]) == points, (name, gid, r["reasons"])
        assert float(r["score"]) == chapter.full - chapter.points[lost], name
        assert r["status"] == "needs manual grading", r["status"]
        if name in chapter.said:
            assert chapter.said[name] in r["reasons"], (name, r["reasons"])


@EVERY
def test_a_broken_function_loses_only_its_task(chapter, rows):
    for who, lost, reason in chapter.broken:
        r = rows[who]
        assert float(r[lost]) == 0 and reason in r["reasons"], (who, r["reasons"])
        assert r["reasons"].count(" | ") == 0, r["reasons"]  # no other cell lost points
        assert float(r["score"]) == chapter.full - chapter.points[lost], r["reasons"]
        assert r["status"] == "needs manual grading", r["status"]
        if "did not finish" in reason:
            assert "ran past the time limit" in r["notes"], r["notes"]


@EVERY
def test_the_references_are_caught(chapter, rows):
    r = rows["calls-reference"]
    lost, names = chapter.references
    for name in names:
        assert f"course's reference implementation ({name})" in r["reasons"], r["reasons"]
    for gid, points in chapter.points.items():
        assert float(r[gid]) == (0 if gid in lost else points), (gid, r["reasons"])
    assert float(r["score"]) == chapter.full - sum(chapter.points[g] for g in lost)


@EVERY
def test_an_edited_locked_cell_is_restored(chapter, rows):
    if chapter.edited_locked is None:
        pytest.skip("this assignment has no locked cell")
    cell, lost, reason = chapter.edited_locked
    r = rows["edited-locked-cell"]
    assert f"locked cell {cell} was edited; restored" in r["notes"], r["notes"]
    assert float(r[lost]) == 0 and reason in r["reasons"], r["reasons"]
    assert float(r["score"]) == chapter.full - chapter.points[lost]


@EVERY
def test_feedback_has_no_hidden_tests(chapter, runs, rows):
    fb = runs[0] / "feedback"
    for who in rows:
        page = (fb / f"{who}.html").read_text(encoding="utf-8")
        for secret in ("BEGIN HIDDEN TESTS", "BEGIN SOLUTION", *chapter.secrets):
            assert secret not in page, (who, secret)
    who, lost, kept = chapter.feedback
    page = (fb / f"{who}.html").read_text(encoding="utf-8")
    assert f"[grader] 0 / {lost} points" in page and f"[grader] {kept} / {kept} points" in page


@EVERY
def test_gradebook_holds_the_scores(assignment, chapter, runs):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{runs[1] / 'course' / 'gradebook.db'}") as gb:
        sub = gb.find_submission(assignment, "solution-like")  # graded twice
        assert sub.code_score == chapter.full and sub.needs_manual_grade
        for who, score in chapter.gradebook.items():
            assert gb.find_submission(assignment, who).code_score == score, who


@EVERY
def test_course_check_on_the_solution(chapter, folder, course):
    proc = course("check", folder / "solution_like.ipynb")  # the assignment: the folder's name
    assert proc.returncode == 0, proc.stderr
    for gid, points in chapter.points.items():
        assert f"{gid}: {points} / {points}" in proc.stdout, proc.stdout
    full = f"{chapter.full:g}"
    assert f"visible tests: {full} / {full} points" in proc.stdout, proc.stdout


@EVERY
def test_course_check_on_a_wrong_answer(assignment, chapter, notebooks, tmp_path, course):
    if chapter.check_wrong is None:
        pytest.skip("course check's report of a lost task is tested on one assignment")
    stem, lines = chapter.check_wrong
    nbformat.write(notebooks[stem], tmp_path / f"{stem}.ipynb")
    proc = course("check", tmp_path / f"{stem}.ipynb", "--assignment", assignment)
    assert proc.returncode == 0, proc.stderr  # a lost point is not an error of the command
    for line in lines:
        assert line in proc.stdout, proc.stdout


# -- outcomes in-process ----------------------------------------------------------------------------


@EVERY
def test_in_process_grading_agrees_with_the_grader(assignment, chapter, notebooks, rows):
    """The in-process verdict (below) is the grader's: all right, all wrong, one task wrong, and
    a locked cell restored."""
    stems = ["solution_like", "untouched", f"wrong_{chapter.graded_wrong[0]}"]
    for stem in stems + (["edited_locked_cell"] if chapter.edited_locked else []):
        verdict = grade_in_process(assignment, notebooks[stem])
        r = rows[student(stem)]
        assert {g: float(r[g]) for g in chapter.points} == \
            {g: (0.0 if verdict[g] else float(p)) for g, p in chapter.points.items()}, \
            (stem, verdict, r["reasons"])


@EVERY
def test_alternative_answers_get_every_point(assignment, notebooks):
    verdict = grade_in_process(assignment, notebooks["alternative"])
    assert not any(verdict.values()), verdict


def _every_wrong_answer():
    return [pytest.param(a, name, id=f"{a}-{name}")
            for a, ch in CHAPTERS.items() if ch.wrong_in_process for name in wrong_answers(a)]


@pytest.mark.parametrize("assignment,name", _every_wrong_answer())
def test_each_wrong_answer_loses_exactly_its_task(assignment, chapter, notebooks, name):
    verdict = grade_in_process(assignment, notebooks[f"wrong_{name}"])
    lost = f"test_{wrong_answers(assignment)[name]}"
    assert {g for g, message in verdict.items() if message} == {lost}, verdict
    assert "hint:" in verdict[lost], verdict[lost]
    if name in chapter.said:
        assert chapter.said[name] in verdict[lost], verdict[lost]


# -- how the rows are run ----------------------------------------------------------------------------


def test_each_row_goes_to_one_worker_and_the_rows_to_both(tmp_path, root):
    """`make test` (``-n 2 --dist loadfile``) with the installed pytest-xdist honours conftest's
    scheduler: each row of this file runs whole on one worker (its grading is made once) and the
    rows are shared between the two workers, other files staying whole. Checked on a toy copy
    of the layout, because the scheduler relies on xdist's ``LoadFileScheduling._split_scope``,
    which is not public (and xdist 3.8 ignored ``--dist loadgroup`` groups before)."""
    import subprocess
    import sys

    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(root / "tests" / "conftest.py", tests)
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    rows = ["a", "b", "c", "d"]
    (tests / "test_assignment_grading.py").write_text(
        "import pytest\n\n"
        f"EVERY = pytest.mark.parametrize('assignment', {rows!r})\n\n"
        "@EVERY\ndef test_one(assignment):\n    pass\n\n"
        "@EVERY\ndef test_two(assignment):\n    pass\n\n"
        "@pytest.mark.parametrize('assignment,name', [('a', 'x'), ('b', 'y')])\n"
        "def test_three(assignment, name):\n    pass\n", encoding="utf-8")
    (tests / "test_other.py").write_text("def test_x():\n    pass\n\ndef test_y():\n    pass\n",
                                         encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadfile", "-v",
                           "-p", "no:cacheprovider", "tests"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = {}  # nodeid -> worker, from "[gw0] [ 10%] PASSED tests/...::test_one[a]"
    for line in proc.stdout.splitlines():
        if line.startswith("[gw") and " PASSED " in line:
            ran[line.split(" PASSED ")[1].strip()] = line[1:line.index("]")]
    assert len(ran) == 4 * 2 + 2 + 2, proc.stdout
    rt = "tests/test_assignment_grading.py"
    worker = {}  # row -> the workers that ran its tests
    for nodeid, w in ran.items():
        if nodeid.startswith(rt):
            row = nodeid[nodeid.rindex("[") + 1:-1].split("-")[0]
            worker.setdefault(row, set()).add(w)
    assert all(len(ws) == 1 for ws in worker.values()), ("a row ran on two workers", worker)
    assert set().union(*worker.values()) == {"gw0", "gw1"}, ("the rows ran on one worker", worker)
    assert len({w for nodeid, w in ran.items() if nodeid.startswith("tests/test_other.py")}) == 1
