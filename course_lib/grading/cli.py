"""``course``: the instructor's command.

    course release [ASSIGNMENT ...]
    course grade ASSIGNMENT FOLDER_OR_ZIP --out DIR [--roster roster.csv] [--jobs N]
    course check NOTEBOOK            (students: the visible tests, graded as the grader does)
    course chain [--quick] [--resume] [--out DIR] ...   (the whole pipeline: python -m
                                                          course_lib.pipeline's options)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

GRADE_HELP = """\
Grade a folder (or zip) of submitted notebooks, one file per student, named as the LMS exported
them (Canvas, Moodle or plain "Student Name.ipynb"). Each notebook runs in a sandbox; a separate
verifier process decides the scores from the values the student's functions returned.

Writes:
  DIR/grades.csv        one row per student (every roster student, when --roster is given):
                          student_id, name, status, score, max_score, one column per graded
                          cell, reasons (why points were lost), notes (restored cells,
                          duplicate uploads, ...), file.
                        status is one of: graded | needs manual grading | not submitted |
                          failed: <reason> (not a notebook, crashed, timed out, tampering, no
                          answer). A 0 always comes with its reason.
  DIR/feedback/ID.html  per-student feedback (nbgrader generate_feedback; no hidden tests).
  DIR/course/           the nbgrader workspace (gradebook.db, autograded/, feedback/): run
                          `nbgrader formgrader` there to grade written answers by hand, then
                          grade again (manual scores are kept) or `nbgrader export`.
Grading the same folder twice gives the same result.
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="course", description="Release and grade the course's nbgrader assignments.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("release", help="regenerate assignments/ from solutions/",
                       description="Regenerate assignments/ from solutions/ with nbgrader "
                       "generate_assignment (solutions removed, hidden tests stripped) and "
                       "record the hashes of the course_lib files grading will use.")
    p.add_argument("assignments", nargs="*", help="assignment names (default: all)")
    p.add_argument("--root", type=Path, default=None, help="course root (default: this repo)")

    g = sub.add_parser("grade", help="grade a folder of submissions",
                       description=GRADE_HELP, formatter_class=argparse.RawTextHelpFormatter)
    g.add_argument("assignment", help="assignment name, e.g. tokenization")
    g.add_argument("submissions", type=Path, help="folder or zip of submitted notebooks")
    g.add_argument("--out", type=Path, required=True, help="output folder")
    g.add_argument("--roster", type=Path, help="CSV with columns id,name: every student gets a "
                   "row, 'not submitted' included")
    g.add_argument("--jobs", type=int, default=None, help="parallel notebooks (default: cores)")
    g.add_argument("--root", type=Path, default=None, help="course root (default: this repo)")
    g.add_argument("--cell-timeout", type=float, default=None, help="seconds per cell (60)")
    g.add_argument("--notebook-timeout", type=float, default=None,
                   help="seconds per notebook (300)")
    g.add_argument("--memory", type=float, default=None, help="GiB of memory per notebook (4)")

    c = sub.add_parser("check", help="check your notebook before submitting",
                       description="Run your notebook the way the grader will (a fresh process, "
                       "the same sandbox and verifier) against the visible tests, and print "
                       "what each test cell would score. Hidden tests are not included: a full "
                       "score here is necessary, not sufficient.")
    c.add_argument("notebook", type=Path, help="your notebook, e.g. "
                   "assignments/tokenization/tokenization.ipynb")
    c.add_argument("--assignment", help="assignment name (default: from the notebook's path)")
    c.add_argument("--root", type=Path, default=None, help="course root (default: this repo)")

    sub.add_parser("chain", add_help=False,
                   help="run the course pipeline, world to DPO (python -m course_lib.pipeline; "
                        "`course chain --help` lists its options)")

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["chain"]:
        from course_lib import pipeline

        pipeline._main(argv[1:], prog="course chain")
        return 0
    args = parser.parse_args(argv)
    from course_lib.grading import grader, sandbox

    course = grader.Course(args.root) if args.root else grader.Course()
    try:
        if args.command == "release":
            names = grader.release(course, args.assignments or None)
            print(f"released {', '.join(names)} into {course.release_dir}")
            return 0
        if args.command == "check":
            return _check(grader.check(args.notebook, args.assignment, course=course))
        limits = {}
        if args.cell_timeout:
            limits["cell_seconds"] = args.cell_timeout
        if args.notebook_timeout:
            limits["notebook_seconds"] = args.notebook_timeout
        if args.memory:
            limits["memory_bytes"] = int(args.memory * (1 << 30))
        iso = sandbox.isolation()
        if iso["missing"]:
            print("note: not isolated on this machine: " + "; ".join(iso["missing"]),
                  file=sys.stderr)
        results = grader.grade(args.assignment, args.submissions, args.out, course=course,
                               roster=args.roster, jobs=args.jobs, limits=limits)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"course {args.command}: {e}", file=sys.stderr)
        return 2
    counts = {}
    for r in results:
        key = r.status.split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    print(f"graded {len(results)} students ({', '.join(f'{v} {k}' for k, v in counts.items())}); "
          f"wrote {args.out / 'grades.csv'} and {args.out / 'feedback'}/")
    return 0


def _check(r) -> int:
    for gid, v in r.cells.items():
        print(f"{gid}: {v['score']:g} / {v['max']:g}")
        if v.get("feedback"):
            print("    " + v["feedback"].replace("\n", "\n    "))
    for note in r.notes:
        print(f"note: {note}")
    total = sum(v["max"] for v in r.cells.values())
    print(f"visible tests: {r.score:g} / {total:g} points ({r.status}); hidden tests and "
          "written answers are graded after you submit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
