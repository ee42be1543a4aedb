"""Make the Transformer (chapter 3) submissions that tests/test_transformer_grading.py grades:
right ones, one wrong answer per entry of ``transformer_answers.WRONG``, the untouched release
and a few broken ones.

Each case starts from the released notebook (``assignments/transformer``), as a student would,
and fills in answer cells with the source strings of ``transformer_answers.py`` (the answers
``tests/test_transformer_checks.py`` checks in-process). The helpers (``fill``,
``insert_after``, ``not_notebooks``) are the tokenization ones of ``make_submissions.py``. Run
after ``course release transformer`` changes the release, or after the answers change, and
commit the notebooks::

    python tests/submissions/make_transformer_submissions.py
"""

from __future__ import annotations

import sys
from pathlib import Path


HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import make_submissions as base  # noqa: E402
import transformer_answers as answers  # noqa: E402

ROOT = HERE.parents[1]
OUT = HERE / "transformer"
ASSIGNMENT = "transformer"

WRITTEN = ("Masking after the softmax zeroes some weights but leaves the rest normalised over "
           "all positions, so the row no longer sums to 1 and the future still shaped the "
           "weights through the denominator; a -inf score before the softmax gives exactly "
           "weight 0 and renormalises over the allowed positions. Without the mask, position i "
           "could read token i+1 in its training text and would learn to copy it, reaching a "
           "tiny training loss. When generating, the next token does not exist yet, so that "
           "shortcut is gone and the model has not learned to predict.")

# count_parameters that never returns when the output matrix is not tied: its test cell and its
# graded calls time out; the other tasks, and the "Try it" cell (tied models only), are unaffected
LOOPING_COUNT = answers.COUNT.replace(
    "    return total if tied else total + vocab_size * C", '''    if not tied:
        rows = vocab_size
        while rows > 0:  # the output matrix row by row; forgets to count rows down
            total += C
    return total''')
assert LOOPING_COUNT != answers.COUNT

# a syntax error in the block_forward cell: the cell fails, block_forward is never defined
SYNTAX_ERROR_BLOCK = answers.BLOCK.replace("def block_forward(x, params):",
                                           "def block_forward(x, params)")
assert SYNTAX_ERROR_BLOCK != answers.BLOCK

# the course's reference under the student's name; the (right) block_forward then calls it too
CALLS_REFERENCE_ATTENTION = "from course_lib.model import attention"


def release_nb():
    return base.release_nb(ASSIGNMENT)


def fill(answer_sources=None, written=WRITTEN):
    """The release with the given answer cells (by grade id) and the written answer filled in."""
    return base.fill(answer_sources, written=written, nb=release_nb())


def cases() -> dict:
    c = base.answer_cases(release_nb(), fill, answers)
    # -- broken ------------------------------------------------------------------------------
    c["infinite_loop_function"] = fill({**answers.CORRECT, "count_parameters": LOOPING_COUNT})
    c["syntax_error_cell"] = fill({**answers.CORRECT, "block_forward": SYNTAX_ERROR_BLOCK})
    c["calls_reference"] = fill({**answers.CORRECT, "attention": CALLS_REFERENCE_ATTENTION})
    c["os_exit_cell"] = base.insert_after(fill(answers.CORRECT), "block_forward",
                                          "import os\nos._exit(0)")
    return c


def main():
    base.write_folder(OUT, cases(), extra_files=("invalid_json.ipynb", "empty.ipynb"))


if __name__ == "__main__":
    main()
