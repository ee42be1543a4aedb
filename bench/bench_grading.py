"""Grading a class: 40 submissions graded one at a time and in parallel, in one run.

    python bench/bench_grading.py [--students 40] [--jobs N]

Prints the wall time of each, the speed-up (target: at least 1.8x on 2 cores) and checks that
both runs wrote the same grades.csv. The class is a realistic mix made from the test
submissions: correct ones, one written differently, one wrong answer per task, a few broken.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "submissions"))

import make_submissions as subs  # noqa: E402

from course_lib.grading import grader  # noqa: E402

MIX = ["solution_like", "alternative", "warns", "wrong_get_stats", "wrong_merge",
       "wrong_train_bpe", "wrong_encode", "wrong_decode", "calls_reference", "edits_tests",
       "moves_tests", "untouched", "always_equal", "rebinds_check", "huge_output",
       "sys_exit_cell"]


def make_class(folder: Path, n: int) -> None:
    cases = subs.cases()
    for i in range(n):
        name = MIX[i % len(MIX)]
        nbformat.write(cases[name], folder / f"Student {i:02d} {name}.ipynb")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=40)
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "class").mkdir()
        make_class(tmp / "class", args.students)
        times = {}
        for label, jobs in (("serial", 1), (f"parallel ({args.jobs} jobs)", args.jobs)):
            t0 = time.perf_counter()
            grader.grade("tokenization", tmp / "class", tmp / label, jobs=jobs, progress=False)
            times[label] = time.perf_counter() - t0
            print(f"{label:22s} {times[label]:7.1f} s  ({args.students / times[label]:.2f} "
                  "notebooks/s)")
        csvs = [(tmp / label / "grades.csv").read_text() for label in times]
        serial, parallel = times.values()
        print(f"speed-up: {serial / parallel:.2f}x on {os.cpu_count()} cores (target >= 1.8x); "
              f"grades.csv identical: {csvs[0] == csvs[1]}")
        if csvs[0] != csvs[1]:
            sys.exit(1)


if __name__ == "__main__":
    main()
