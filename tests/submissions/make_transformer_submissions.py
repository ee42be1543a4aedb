"""The Transformer (chapter 3) notebooks that are broken in ways of their own, for
tests/test_assignment_grading.py: the written answer, and per broken notebook the answer cells
that differ from the solution's (``BROKEN``).
``make_submissions.chapter_cases("transformer")`` makes every notebook of the assignment from the current
release, these, and the right and wrong answers of ``transformer_answers.py``; the generic broken
notebooks (not JSON, empty, ``os._exit``) are those of the tokenization assignment, graded once for
the course in tests/test_grading.py. To look at the notebooks::

    python tests/submissions/make_submissions.py transformer /tmp/transformer
"""

from __future__ import annotations

import transformer_answers as answers

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


# the solution's answers with these answer cells replaced (by grade id)
BROKEN = {
    "infinite_loop_function": {"count_parameters": LOOPING_COUNT},
    "syntax_error_cell": {"block_forward": SYNTAX_ERROR_BLOCK},
    "calls_reference": {"attention": CALLS_REFERENCE_ATTENTION},
}
