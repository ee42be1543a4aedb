"""The Finetuning (chapter 6) notebooks that are broken in ways of their own, for
tests/test_assignment_grading.py: the written answer, and per broken notebook the answer cells
that differ from the solution's (``BROKEN``) and a locked cell edited around a wrong answer
(``EDITED_LOCKED``).
``make_submissions.chapter_cases("finetuning")`` makes every notebook of the assignment from the current
release, these, and the right and wrong answers of ``finetuning_answers.py``; the generic broken
notebooks (not JSON, empty, ``os._exit``) are those of the tokenization assignment, graded once for
the course in tests/test_grading.py. To look at the notebooks::

    python tests/submissions/make_submissions.py finetuning /tmp/finetuning
"""

from __future__ import annotations

import finetuning_answers as answers

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


# the solution's answers with these answer cells replaced (by grade id)
BROKEN = {
    "infinite_loop_function": {"render_conversation": LOOPING_RENDER},
    "syntax_error_cell": {"masked_cross_entropy": SYNTAX_ERROR_LOSS},
    "calls_reference": CALLS_REFERENCE,
}

# (locked cell, the source it was edited to, the answers around it)
EDITED_LOCKED = ("masked_cross_entropy_with_grad", EDITED_LOCKED_HELPER,
                 {"masked_cross_entropy": answers.WRONG["loss_ignores_mask"][1]})
