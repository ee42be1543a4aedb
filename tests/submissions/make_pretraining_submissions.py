"""Make the Pretraining (chapter 4) submissions that tests/test_pretraining_grading.py grades:
right ones, one wrong answer per entry of ``pretraining_answers.WRONG``, the untouched release
and a few broken ones.

Each case starts from the released notebook (``assignments/pretraining``), as a student would,
and fills in answer cells with the source strings of ``pretraining_answers.py`` (the answers
``tests/test_pretraining_checks.py`` checks in-process). The helpers are those of
``make_submissions.py``. Run after ``course release pretraining`` changes the release, or after
the answers change, and commit the notebooks::

    python tests/submissions/make_pretraining_submissions.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import make_submissions as base  # noqa: E402
import pretraining_answers as answers  # noqa: E402

ROOT = HERE.parents[1]
OUT = HERE / "pretraining"
ASSIGNMENT = "pretraining"

WRITTEN = ("At the start the weights are random and the gradients are big and noisy, and Adam's "
           "estimates of their size come from very few steps, so a full learning rate can throw "
           "the weights somewhere the loss explodes; warming up lets these settle first. Near "
           "the end the gradient is mostly mini-batch noise, and a high rate keeps jumping "
           "around the minimum, while a small one settles into it. Without warmup I would "
           "expect early loss spikes or nan; with a constant rate a loss that stays noisy and "
           "stops improving, missing the drop that comes with the decay.")

# a cross_entropy that never returns: it counts the kept positions but forgets to advance; its
# test cell and its first graded call run to their time limits, the other tasks are unaffected
LOOPING_CROSS_ENTROPY = answers.CROSS_ENTROPY.replace(
    "    return -log_probs.gather(1, targets[:, None]).mean()", '''    n, i = 0, 0
    while i < len(targets):  # count the positions by hand... and never move on
        n += 1
    return -log_probs.gather(1, targets[:, None]).sum() / n''')
assert LOOPING_CROSS_ENTROPY != answers.CROSS_ENTROPY

# a syntax error in the mfu cell: the cell fails, mfu is never defined (and the ungraded
# "Try it" cell, which calls it, fails too)
SYNTAX_ERROR_MFU = answers.MFU.replace("def mfu(tokens_per_s, flops_per_token, peak_flops):",
                                       "def mfu(tokens_per_s, flops_per_token, peak_flops)")
assert SYNTAX_ERROR_MFU != answers.MFU

# the course's references under the student's names
CALLS_REFERENCE = {"cross_entropy": "from course_lib.train import cross_entropy",
                   "accumulate_gradients": "from course_lib.train import accumulate_gradients"}

# a wrong accumulate_gradients (no backward at all) with the locked cell that calls it edited
# to compute the gradients itself: the grader restores the locked cell, so the edit is useless
EDITED_LOCKED_HELPER = '''from course_lib.grading import pretraining as checks


def _my_right_one(model, batches):
    for x, y in batches:
        (model(x, y)[1] / len(batches)).backward()
    return 0.0


def accumulate_gradients_on_gpt(config, seed, batches):
    out = checks.on_fresh_gpt(_my_right_one, config, seed, batches)
    out["loss"] = checks.on_fresh_gpt(accumulate_gradients, config, seed, batches)["loss"]
    return out'''


def release_nb():
    return base.release_nb(ASSIGNMENT)


def fill(answer_sources=None, written=WRITTEN):
    """The release with the given answer cells (by grade id) and the written answer filled in."""
    return base.fill(answer_sources, written=written, nb=release_nb())


def cases() -> dict:
    c = base.answer_cases(release_nb(), fill, answers)
    # -- broken ------------------------------------------------------------------------------
    c["infinite_loop_function"] = fill({**answers.CORRECT, "cross_entropy": LOOPING_CROSS_ENTROPY})
    c["syntax_error_cell"] = fill({**answers.CORRECT, "mfu": SYNTAX_ERROR_MFU})
    c["calls_reference"] = fill({**answers.CORRECT, **CALLS_REFERENCE})
    c["edited_locked_cell"] = base.edit_cell(
        fill({**answers.CORRECT, "accumulate_gradients": answers.WRONG["no_backward"][1]}),
        "accumulate_gradients_on_gpt", EDITED_LOCKED_HELPER)
    c["os_exit_cell"] = base.insert_after(fill(answers.CORRECT), "lr_at",
                                          "import os\nos._exit(0)")
    return c


def main():
    base.write_folder(OUT, cases(), extra_files=("invalid_json.ipynb", "empty.ipynb"))


if __name__ == "__main__":
    main()
