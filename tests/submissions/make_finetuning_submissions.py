"""Make the Finetuning (chapter 6) submissions that tests/test_finetuning_grading.py grades: right
ones, one wrong answer per entry of ``finetuning_answers.WRONG``, the untouched release and a few
broken ones.

Each case starts from the released notebook (``assignments/finetuning``), as a student would,
and fills in answer cells with the source strings of ``finetuning_answers.py`` (the answers
``tests/test_finetuning_checks.py`` checks in-process). The helpers are those of
``make_submissions.py``. Run after ``course release finetuning`` changes the release, or after
the answers change, and commit the notebooks::

    python tests/submissions/make_finetuning_submissions.py
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
answers = importlib.import_module("finetuning_answers")
base = importlib.import_module("make_submissions")

ROOT = HERE.parents[1]
OUT = HERE / "finetuning"
ASSIGNMENT = "finetuning"

WRITTEN = ("Nothing in the network knows its own name: the finetuning data holds a few identity "
           "conversations (\"Who are you?\" answered with \"I am Pebble, ...\"), and the model "
           "imitates the assistant turns it was trained on. Without them it would answer with "
           "whatever its pretraining and the other conversations make likely, a made-up name or "
           "the most famous assistant of its data, with the same confidence. The user's words are "
           "left out of the loss because the model never has to write them: training on them "
           "would teach it to write the user's next question instead of answering.")

# a render_conversation that never returns: its loop forgets to advance; its test cell and its
# first graded call run to their time limits, the other task is unaffected
LOOPING_RENDER = answers.RENDER.replace(
    "    for message in conversation:\n", '''    i = 0
    while i < len(conversation):  # walk the messages by hand... and never move on
        pass
    for message in conversation:
''')
assert LOOPING_RENDER != answers.RENDER

# a syntax error in the masked_cross_entropy cell: the cell fails, masked_cross_entropy is never
# defined (and the ungraded "Try it" cell, which calls it, fails too)
SYNTAX_ERROR_LOSS = answers.LOSS.replace(
    "def masked_cross_entropy(logits, targets, mask):",
    "def masked_cross_entropy(logits, targets, mask)")
assert SYNTAX_ERROR_LOSS != answers.LOSS

# the course's references under the student's names
CALLS_REFERENCE = {"render_conversation": "from course_lib.chat import render_conversation",
                   "masked_cross_entropy": '''import torch
import course_lib.chat


def masked_cross_entropy(logits, targets, mask):
    return course_lib.chat.masked_cross_entropy(logits, targets, mask)'''}

# the loss over every token, with the locked cell that calls it edited to report the reference's
# loss and gradient instead: the grader restores the locked cell, so the edit is useless
EDITED_LOCKED_HELPER = '''from course_lib.grading import finetuning as checks


def masked_cross_entropy_with_grad(logits, targets, mask):
    return checks.reference_masked_cross_entropy_with_grad(logits, targets, mask)'''


def release_nb():
    return base.release_nb(ASSIGNMENT)


def fill(answer_sources=None, written=WRITTEN):
    """The release with the given answer cells (by grade id) and the written answer filled in."""
    return base.fill(answer_sources, written=written, nb=release_nb())


def cases() -> dict:
    c = base.answer_cases(release_nb(), fill, answers)
    # -- broken ------------------------------------------------------------------------------
    c["infinite_loop_function"] = fill({**answers.CORRECT, "render_conversation": LOOPING_RENDER})
    c["syntax_error_cell"] = fill({**answers.CORRECT, "masked_cross_entropy": SYNTAX_ERROR_LOSS})
    c["calls_reference"] = fill({**answers.CORRECT, **CALLS_REFERENCE})
    c["edited_locked_cell"] = base.edit_cell(
        fill({**answers.CORRECT,
              "masked_cross_entropy": answers.WRONG["loss_ignores_mask"][1]}),
        "masked_cross_entropy_with_grad", EDITED_LOCKED_HELPER)
    c["os_exit_cell"] = base.insert_after(fill(answers.CORRECT), "render_conversation",
                                          "import os\nos._exit(0)")
    return c


def main():
    base.write_folder(OUT, cases(), extra_files=("invalid_json.ipynb", "empty.ipynb"))


if __name__ == "__main__":
    main()
