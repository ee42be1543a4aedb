"""The Pretraining (chapter 4) notebooks that are broken in ways of their own, for
tests/test_assignment_grading.py: the written answer, and per broken notebook the answer cells
that differ from the solution's (``BROKEN``) and a locked cell edited around a wrong answer
(``EDITED_LOCKED``).
``make_submissions.chapter_cases("pretraining")`` makes every notebook of the assignment from the current
release, these, and the right and wrong answers of ``pretraining_answers.py``; the generic broken
notebooks (not JSON, empty, ``os._exit``) are those of the tokenization assignment, graded once for
the course in tests/test_grading.py. To look at the notebooks::

    python tests/submissions/make_submissions.py pretraining /tmp/pretraining
"""

from __future__ import annotations

import pretraining_answers as answers

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


# the solution's answers with these answer cells replaced (by grade id)
BROKEN = {
    "infinite_loop_function": {"cross_entropy": LOOPING_CROSS_ENTROPY},
    "syntax_error_cell": {"mfu": SYNTAX_ERROR_MFU},
    "calls_reference": CALLS_REFERENCE,
}

# (locked cell, the source it was edited to, the answers around it)
EDITED_LOCKED = ("accumulate_gradients_on_gpt", EDITED_LOCKED_HELPER,
                 {"accumulate_gradients": answers.WRONG["no_backward"][1]})
