"""Make the Pretraining data (chapter 1) submissions that tests/test_pretraining_data_grading.py
grades: right ones, one wrong answer per task, the untouched release and a few broken ones.

Each case starts from the released notebook (``assignments/pretraining_data``), as a student
would, and fills in answer cells with the source strings of ``pretraining_data_answers.py``.
The helpers (``fill``, ``insert_after``, ``not_notebooks``) are the tokenization ones of
``make_submissions.py``. Run after ``course release pretraining_data`` changes the release, or
after the answers change, and commit the notebooks::

    python tests/submissions/make_pretraining_data_submissions.py
"""

from __future__ import annotations

import sys
from pathlib import Path


HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import make_submissions as base  # noqa: E402
import pretraining_data_answers as answers  # noqa: E402

ROOT = HERE.parents[1]
OUT = HERE / "pretraining_data"
ASSIGNMENT = "pretraining_data"

WRITTEN = ("Pages between 0.3 and 0.65 mix languages or have little running text: an English "
           "article with a German menu, lists of names and numbers, very short pages. At 0.99 "
           "the filter would also drop many English pages that are only partly clean, so the "
           "corpus shrinks and narrows, and a model trained on it handles mixed text, names and "
           "numbers worse.")

# redact_pii that never returns on a text with an "@": its test cell and its graded calls time
# out; the other tasks, and the "Try it" cell (whose first page has no "@"), are unaffected
LOOPING_PII = answers.PII.replace('''    text = EMAIL.sub("<EMAIL>", text)
''', '''    at = text.find("@")
    while at != -1:  # e-mails by hand; forgets to search past the "@" it just handled
        start = at
        while start > 0 and not text[start - 1].isspace():
            start -= 1
        at = text.find("@", start)
    text = EMAIL.sub("<EMAIL>", text)
''')
assert LOOPING_PII != answers.PII

# a syntax error in the language_score cell: the cell fails, language_score is never defined
SYNTAX_ERROR_LANGUAGE = answers.LANGUAGE.replace('def language_score(text, lang="en"):',
                                                'def language_score(text, lang="en")')
assert SYNTAX_ERROR_LANGUAGE != answers.LANGUAGE

# the course's reference under the student's name
CALLS_REFERENCE_EXTRACT = "from course_lib.data import extract_text"


def release_nb():
    return base.release_nb(ASSIGNMENT)


def fill(answer_sources=None, written=WRITTEN):
    """The release with the given answer cells (by grade id) and the written answer filled in."""
    return base.fill(answer_sources, written=written, nb=release_nb())


def cases() -> dict:
    c = base.answer_cases(release_nb(), fill, answers)
    # -- broken ------------------------------------------------------------------------------
    c["infinite_loop_function"] = fill({**answers.CORRECT, "redact_pii": LOOPING_PII})
    c["syntax_error_cell"] = fill({**answers.CORRECT, "language_score": SYNTAX_ERROR_LANGUAGE})
    c["calls_reference"] = fill({**answers.CORRECT, "extract_text": CALLS_REFERENCE_EXTRACT})
    c["os_exit_cell"] = base.insert_after(fill(answers.CORRECT), "near_duplicate_pairs",
                                          "import os\nos._exit(0)")
    return c


def main():
    base.write_folder(OUT, cases(), extra_files=("invalid_json.ipynb", "empty.ipynb"))


if __name__ == "__main__":
    main()
