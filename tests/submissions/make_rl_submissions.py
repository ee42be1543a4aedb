"""The Reinforcement learning (chapter 8) notebooks that are broken in ways of their own, for
tests/test_assignment_grading.py: the written answer, and per broken notebook the answer cells
that differ from the solution's (``BROKEN``) and a locked cell edited around a wrong answer
(``EDITED_LOCKED``).
``make_submissions.chapter_cases("rl")`` makes every notebook of the assignment from the current
release, these, and the right and wrong answers of ``rl_answers.py``; the generic broken
notebooks (not JSON, empty, ``os._exit``) are those of the tokenization assignment, graded once for
the course in tests/test_grading.py. To look at the notebooks::

    python tests/submissions/make_submissions.py rl /tmp/rl
"""

from __future__ import annotations

import rl_answers as answers

WRITTEN = ("When every solution of a group gets the same reward, the group's mean is that reward, "
           "so every advantage is 0 (and 0 / (0 + eps) with the std), and a token whose advantage "
           "is 0 has an objective of 0 whatever its probability: no gradient. RL can only sharpen "
           "problems the model sometimes solves, where some samples are right and some wrong; "
           "those it always solves have nothing left to teach, and those it never solves give no "
           "signal. With mostly all-wrong groups I would use easier problems first, more samples "
           "per problem, or more finetuning on worked solutions until pass@k is above 0.")

# a syntax error in the policy_loss cell: the cell fails, policy_loss is never defined (and the
# ungraded "Try it" cell, which calls it, fails too)
SYNTAX_ERROR_LOSS = answers.LOSS.replace(
    "def policy_loss(logprobs, old_logprobs, advantages, mask, clip=0.2):",
    "def policy_loss(logprobs, old_logprobs, advantages, mask, clip=0.2)")
assert SYNTAX_ERROR_LOSS != answers.LOSS

# the course's references under the student's names; reward calls the imported extract_answer and
# keeps its points (while it is graded that name is the course's anyway)
CALLS_REFERENCE = {"extract_answer": "from course_lib.rl import extract_answer",
                   "group_advantages": '''import course_lib.rl as rl


def group_advantages(rewards, group_size, normalize_std=True, eps=1e-6):
    return rl.group_advantages(rewards, group_size, normalize_std, eps)'''}

# an unclipped loss, with the locked cell that calls it edited to report the reference's loss and
# gradient instead: the grader restores the locked cell, so the edit is useless
EDITED_LOCKED_HELPER = '''from course_lib.grading import rl as checks


def policy_loss_with_grad(logprobs, old_logprobs, advantages, mask, options):
    return checks.reference_policy_loss_with_grad(logprobs, old_logprobs, advantages, mask,
                                                  options)'''


# the solution's answers with these answer cells replaced (by grade id)
BROKEN = {
    "syntax_error_cell": {"policy_loss": SYNTAX_ERROR_LOSS},
    "calls_reference": CALLS_REFERENCE,
}

# (locked cell, the source it was edited to, the answers around it)
EDITED_LOCKED = ("policy_loss_with_grad", EDITED_LOCKED_HELPER,
                 {"policy_loss": answers.WRONG["loss_unclipped"][1]})
