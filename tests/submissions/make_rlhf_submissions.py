"""The RLHF (chapter 9) notebooks that are broken in ways of their own, for
tests/test_assignment_grading.py: the written answer, and per broken notebook the answer cells
that differ from the solution's (``BROKEN``) and a locked cell edited around a wrong answer
(``EDITED_LOCKED``).
``make_submissions.chapter_cases("rlhf")`` makes every notebook of the assignment from the current
release, these, and the right and wrong answers of ``rlhf_answers.py``; the generic broken
notebooks (not JSON, empty, ``os._exit``) are those of the tokenization assignment, graded once for
the course in tests/test_grading.py. To look at the notebooks::

    python tests/submissions/make_submissions.py rlhf /tmp/rlhf
"""

from __future__ import annotations

import rlhf_answers as answers

WRITTEN = ("The reward model only imitates the labeller on answers like the pairs it was trained "
           "on; elsewhere its scores are guesses, and some are too high. RL searches for what "
           "the reward model scores highest, so as the policy drifts from its start it finds "
           "exactly those errors (a phrase or a length the model over-values) instead of better "
           "answers: the proxy rises while the true score falls, and the reward model never sees "
           "the labeller's verdict on the new answers. A KL penalty towards the reference keeps "
           "the policy near the answers the reward model knows, and stopping early on a few "
           "held-out human labels stops before the fall; new pairs on the policy's own answers "
           "would retrain the reward model where it is wrong.")

# a syntax error in the sequence_logprob cell: the cell fails, sequence_logprob is never defined
# (and the ungraded "Try it" cell, which calls it, fails too)
SYNTAX_ERROR_SEQUENCE = answers.SEQUENCE.replace("def sequence_logprob(model, ids, mask):",
                                                 "def sequence_logprob(model, ids, mask)")
assert SYNTAX_ERROR_SEQUENCE != answers.SEQUENCE

# the course's references under the student's names: chapter 9's own Bradley-Terry loss, and
# chapter 8's per-token log-probabilities (course_lib.rl is off limits too)
CALLS_REFERENCE = {"bradley_terry_loss": "from course_lib.rlhf import bradley_terry_loss",
                   "sequence_logprob": '''from course_lib.rl import token_logprobs


def sequence_logprob(model, ids, mask):
    prompts, responses = [], []
    for row, m in zip(ids.tolist(), mask.tolist()):
        start = max(m.index(1.0), 1)
        end = max(i for i, v in enumerate(m) if v) + 1
        prompts.append(row[:start])
        responses.append(row[start:end])
    logp, _ = token_logprobs(model, prompts, responses)
    return logp.sum(dim=1)'''}

# a DPO loss whose reference is not detached, with the locked cell that calls it edited to report
# the reference's loss and gradients instead: the grader restores the locked cell
EDITED_LOCKED_HELPER = '''from course_lib.grading import rlhf as checks


def dpo_loss_with_grad(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    return checks.reference_dpo_loss_with_grad(policy_chosen, policy_rejected, ref_chosen,
                                               ref_rejected, beta)'''


# the solution's answers with these answer cells replaced (by grade id)
BROKEN = {
    "syntax_error_cell": {"sequence_logprob": SYNTAX_ERROR_SEQUENCE},
    "calls_reference": CALLS_REFERENCE,
}

# (locked cell, the source it was edited to, the answers around it)
EDITED_LOCKED = ("dpo_loss_with_grad", EDITED_LOCKED_HELPER,
                 {"dpo_loss": answers.WRONG["dpo_no_detach"][1]})
