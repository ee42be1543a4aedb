"""Make the Inference (chapter 5) submissions that tests/test_inference_grading.py grades: right
ones, one wrong answer per entry of ``inference_answers.WRONG``, the untouched release and a few
broken ones.

Each case starts from the released notebook (``assignments/inference``), as a student would,
and fills in answer cells with the source strings of ``inference_answers.py`` (the answers
``tests/test_inference_checks.py`` checks in-process). The helpers are those of
``make_submissions.py``. Run after ``course release inference`` changes the release, or after
the answers change, and commit the notebooks::

    python tests/submissions/make_inference_submissions.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import inference_answers as answers  # noqa: E402
import make_submissions as base  # noqa: E402

ROOT = HERE.parents[1]
OUT = HERE / "inference"
ASSIGNMENT = "inference"

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


def release_nb():
    return base.release_nb(ASSIGNMENT)


def fill(answer_sources=None, written=WRITTEN):
    """The release with the given answer cells (by grade id) and the written answer filled in."""
    return base.fill(answer_sources, written=written, nb=release_nb())


def cases() -> dict:
    c = base.answer_cases(release_nb(), fill, answers)
    # -- broken ------------------------------------------------------------------------------
    c["infinite_loop_function"] = fill({**answers.CORRECT, "top_k_filter": LOOPING_TOP_K})
    c["syntax_error_cell"] = fill({**answers.CORRECT,
                                   "generate_with_cache": SYNTAX_ERROR_GENERATE})
    c["calls_reference"] = fill({**answers.CORRECT, **CALLS_REFERENCE})
    c["edited_locked_cell"] = base.edit_cell(
        fill({**answers.CORRECT,
              "generate_with_cache": answers.WRONG["no_cache_recomputes"][1]}),
        "generate_with_cache_on_gpt", EDITED_LOCKED_HELPER)
    c["os_exit_cell"] = base.insert_after(fill(answers.CORRECT), "top_k_filter",
                                          "import os\nos._exit(0)")
    return c


def main():
    base.write_folder(OUT, cases(), extra_files=("invalid_json.ipynb", "empty.ipynb"))


if __name__ == "__main__":
    main()
