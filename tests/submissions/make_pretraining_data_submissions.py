"""The Pretraining data (chapter 1) notebooks that are broken in ways of their own, for
tests/test_assignment_grading.py: the written answer, and per broken notebook the answer cells
that differ from the solution's (``BROKEN``).
``make_submissions.chapter_cases("pretraining_data")`` makes every notebook of the assignment from the current
release, these, and the right and wrong answers of ``pretraining_data_answers.py``; the generic broken
notebooks (not JSON, empty, ``os._exit``) are those of the tokenization assignment, graded once for
the course in tests/test_grading.py. To look at the notebooks::

    python tests/submissions/make_submissions.py pretraining_data /tmp/pretraining_data
"""

from __future__ import annotations

import pretraining_data_answers as answers

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


# the solution's answers with these answer cells replaced (by grade id)
BROKEN = {
    "infinite_loop_function": {"redact_pii": LOOPING_PII},
    "syntax_error_cell": {"language_score": SYNTAX_ERROR_LANGUAGE},
    "calls_reference": {"extract_text": CALLS_REFERENCE_EXTRACT},
}
