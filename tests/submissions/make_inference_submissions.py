"""The Inference (chapter 5) notebooks that are broken in ways of their own, for
tests/test_assignment_grading.py: the written answer, and per broken notebook the answer cells
that differ from the solution's (``BROKEN``) and a locked cell edited around a wrong answer
(``EDITED_LOCKED``).
``make_submissions.chapter_cases("inference")`` makes every notebook of the assignment from the current
release, these, and the right and wrong answers of ``inference_answers.py``; the generic broken
notebooks (not JSON, empty, ``os._exit``) are those of the tokenization assignment, graded once for
the course in tests/test_grading.py. To look at the notebooks::

    python tests/submissions/make_submissions.py inference /tmp/inference
"""

from __future__ import annotations

import inference_answers as answers

WRITTEN = ("A causal model's earlier positions never attend to later ones, so the keys and values "
           "of the tokens already read are the same whatever comes after them; the cache only "
           "skips recomputing them, and the new token's query sees exactly the same numbers, so "
           "the logits and the chosen tokens are the same. Per token it stores a key and a value "
           "of 1600 numbers in each of 48 layers: 2 x 48 x 1600 x 2 bytes = 307,200 bytes, so "
           "1024 tokens take about 315 MB for one sequence. Every user needs their own cache, so "
           "memory limits how many conversations a GPU can serve at once.")

# a top_k_filter that never returns: its loop forgets to advance; its test cell and its first
# graded call run to their time limits, the other tasks are unaffected
LOOPING_TOP_K = answers.TOP_K.replace(
    "    kth = torch.topk(logits, k, dim=-1).values[..., -1:]", '''    i = 0
    while i < k:  # look for the k-th largest by hand... and never move on
        pass
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]''')
assert LOOPING_TOP_K != answers.TOP_K

# a syntax error in the generate_with_cache cell: the cell fails, generate_with_cache is never
# defined (and the ungraded "Try it" cell, which calls it, fails too)
SYNTAX_ERROR_GENERATE = answers.GENERATE.replace(
    "def generate_with_cache(model, ids, max_new_tokens):",
    "def generate_with_cache(model, ids, max_new_tokens)")
assert SYNTAX_ERROR_GENERATE != answers.GENERATE

# the course's references under the student's names; generate_with_cache is decorated
# (@torch.no_grad()) in course_lib.generate, and caught all the same
CALLS_REFERENCE = {"top_p_filter": "from course_lib.generate import top_p_filter",
                   "generate_with_cache": "import torch\n"
                                          "from course_lib.generate import generate_with_cache"}

# the loop without a cache, with the locked cell that counts positions edited to report a
# cached loop's count: the grader restores the locked cell, so the edit is useless
EDITED_LOCKED_HELPER = '''from course_lib.grading import inference as checks


def generate_with_cache_on_gpt(config, seed, ids, max_new_tokens):
    out = checks.on_seeded_gpt(generate_with_cache, config, seed, ids, max_new_tokens)
    out["positions_read"] = ids.numel()
    return out'''


# the solution's answers with these answer cells replaced (by grade id)
BROKEN = {
    "infinite_loop_function": {"top_k_filter": LOOPING_TOP_K},
    "syntax_error_cell": {"generate_with_cache": SYNTAX_ERROR_GENERATE},
    "calls_reference": CALLS_REFERENCE,
}

# (locked cell, the source it was edited to, the answers around it)
EDITED_LOCKED = ("generate_with_cache_on_gpt", EDITED_LOCKED_HELPER,
                 {"generate_with_cache": answers.WRONG["no_cache_recomputes"][1]})
