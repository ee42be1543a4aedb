"""The Hallucinations and tools (chapter 7) notebooks that are broken in ways of their own, for
tests/test_assignment_grading.py: the written answer, and per broken notebook the answer cells
that differ from the solution's (``BROKEN``) and a locked cell edited around a wrong answer
(``EDITED_LOCKED``).
``make_submissions.chapter_cases("tools")`` makes every notebook of the assignment from the current
release, these, and the right and wrong answers of ``tools_answers.py``; the generic broken
notebooks (not JSON, empty, ``os._exit``) are those of the tokenization assignment, graded once for
the course in tests/test_grading.py. To look at the notebooks::

    python tests/submissions/make_submissions.py tools /tmp/tools
"""

from __future__ import annotations

import tools_answers as answers

WRITTEN = ("What the weights hold is a blurry recollection, reconstructed token by token, and the "
           "finetuning taught the model to sound sure either way; after a search the fact stands "
           "in the context window, and copying from the window is exact. Every token gets the "
           "same fixed amount of computation, so a four-digit product written as the next token "
           "must be found in one forward pass, which is too little; many small steps, or a "
           "calculator whose exact output is pasted, spread the work out. The results are pasted "
           "by the program: training on them would teach the model to write tool outputs itself, "
           "that is to make up search results.")

# a run_tool_loop that hangs at a malformed call without calling the model again (so the
# scripted model cannot stop it): its test cell and its first graded call run to their time
# limits (the "Try it" cell makes no malformed call); the other tasks are unaffected
LOOPING_LOOP = answers.LOOP.replace(
    '''            except ValueError as e:
                result = f"error: {e}"''', '''            except ValueError as e:
                k = len(ids) - 1
                while k >= 0:  # look for where the call went wrong... and never move on
                    pass
                result = f"error: {e}"''')
assert LOOPING_LOOP != answers.LOOP

# a syntax error in the run_tool_loop cell: the cell fails, run_tool_loop is never defined (and
# the ungraded "Try it" cell, which calls it, fails too)
SYNTAX_ERROR_LOOP = answers.LOOP.replace(
    "def run_tool_loop(model, tokenizer, prompt, tools, max_calls, max_new_tokens=64):",
    "def run_tool_loop(model, tokenizer, prompt, tools, max_calls, max_new_tokens=64)")
assert SYNTAX_ERROR_LOOP != answers.LOOP

# the course's references under the student's names; run_tool_loop calls the imported
# parse_tool_call and keeps its points (while it is graded that name is the course's anyway)
CALLS_REFERENCE = {"parse_tool_call": "from course_lib.tools import parse_tool_call",
                   "build_refusal_data": '''import course_lib.hallucination as h


def build_refusal_data(probe_results, threshold):
    return h.build_refusal_data(probe_results, threshold)'''}

# a loop that trains on the tool's output, with the locked cell that calls it edited to report
# the reference's ids and mask instead: the grader restores the locked cell, so the edit is useless
EDITED_LOCKED_HELPER = '''from course_lib.grading import tools as checks


def run_tool_loop_on_script(prompt, script, repeat, tools, max_calls, max_new_tokens):
    return checks.reference_run_tool_loop_on_script(prompt, script, repeat, tools, max_calls,
                                                    max_new_tokens)'''


# the solution's answers with these answer cells replaced (by grade id)
BROKEN = {
    "infinite_loop_function": {"run_tool_loop": LOOPING_LOOP},
    "syntax_error_cell": {"run_tool_loop": SYNTAX_ERROR_LOOP},
    "calls_reference": CALLS_REFERENCE,
}

# (locked cell, the source it was edited to, the answers around it)
EDITED_LOCKED = ("run_tool_loop_on_script", EDITED_LOCKED_HELPER,
                 {"run_tool_loop": answers.WRONG["loop_trains_on_results"][1]})
