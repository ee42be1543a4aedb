"""nbgrader configuration: ``solutions/`` is the instructor's source, ``assignments/`` the release.

Regenerate every assignment with ``course release`` (it runs ``nbgrader generate_assignment``);
grade a folder of submissions with ``course grade ASSIGNMENT FOLDER --out DIR``. See README.md.
"""

import os

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.course_id = "llm-deep-dive"
# release.json records the hashes of the course_lib files an assignment was released with;
# it stays with the instructor.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback",
                            "release.json"]
# Stubs that run and return the wrong thing: the function's own `return` stays below the stub.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
