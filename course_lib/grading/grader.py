"""Grading a class: submissions in, gradebook + grades.csv + feedback out.

``grade(assignment, submissions, out)`` does, for every student (in parallel across cores):

1. read the file (a clear reason when it is not a gradable notebook);
2. restore the released test cells (``notebook.restore``);
3. run the notebook and the graded calls in a sandbox (``sandbox``; the harness only reports);
4. decide the scores in a fresh verifier process (``verify``), from data.

Then, in one process: the scores go into nbgrader's gradebook (its Python API), the executed
notebooks into nbgrader's ``autograded/`` folder, nbgrader's real ``generate_feedback`` writes
the feedback HTML, and ``grades.csv`` gets one row per student with a status. The nbgrader
workspace lives in ``out/course``, so ``nbgrader formgrader`` (manual grading of the written
answers) and ``nbgrader export`` work there as usual; grading again keeps manual scores.
"""

from __future__ import annotations

import csv
import html
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course_lib.grading import lms, sandbox, verify
from course_lib.grading import notebook as nbtools

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    """What grading decided for one student."""

    student_id: str
    name: str
    file: str = ""
    status: str = ""
    cells: dict = field(default_factory=dict)   # grade_id -> {"score", "max", "message"}
    notes: list = field(default_factory=list)
    tampering: list = field(default_factory=list)
    notebook: object = None                      # the executed, restored notebook
    manual: dict = field(default_factory=dict)   # grade_id -> "unanswered" | "answered"

    @property
    def score(self) -> float:
        return sum(c["score"] for c in self.cells.values())


class GradingAborted(RuntimeError):
    """Something that makes every score untrustworthy (course_lib changed during grading)."""


class Course:
    """Where an assignment's source, release and release manifest are."""

    def __init__(self, root: Path = REPO, source="solutions", release="assignments"):
        self.root = Path(root)
        self.source_dir = self.root / source
        self.release_dir = self.root / release

    def notebook_name(self, assignment: str) -> str:
        nbs = sorted((self.source_dir / assignment).glob("*.ipynb"))
        if not nbs:
            known = sorted(p.name for p in self.source_dir.iterdir() if p.is_dir())
            raise ValueError(f"no assignment {assignment!r} in {self.source_dir} "
                             f"(there are: {', '.join(known) or 'none'})")
        if len(nbs) > 1:
            raise ValueError(f"{assignment} has several notebooks; one notebook per assignment")
        return nbs[0].name

    def source(self, assignment):
        return self.source_dir / assignment / self.notebook_name(assignment)

    def release(self, assignment):
        return self.release_dir / assignment / self.notebook_name(assignment)

    def manifest_path(self, assignment):
        return self.source_dir / assignment / "release.json"


# --------------------------------------------------------------------------------------------
# release
# --------------------------------------------------------------------------------------------


def tool_env() -> dict:
    """The environment for nbgrader's commands: this Python's scripts first on PATH (nbgrader
    runs ``alembic`` by name, which fails when the virtual environment is not activated)."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}


def nbgrader(args: list, cwd: Path) -> subprocess.CompletedProcess:
    """Run nbgrader's real command line; raise with its output when it fails."""
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd,
                          capture_output=True, text=True, env=tool_env())
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def release(course: Course, assignments: list[str] | None = None) -> list[str]:
    """Regenerate ``assignments/`` from ``solutions/`` with ``nbgrader generate_assignment`` and
    write each assignment's release record (what its grading depends on, ``record``)."""
    from concurrent.futures import ThreadPoolExecutor

    names = assignments or sorted(p.name for p in course.source_dir.iterdir()
                                  if p.is_dir() and list(p.glob("*.ipynb")))
    for a in names:
        verify.graded_cells(nbformat.read(course.source(a), as_version=4))  # must be gradable
    # the records are traced in processes of their own, meanwhile
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        records = {a: pool.submit(manifest, course.source(a)) for a in names}
        for a in names:
            with tempfile.TemporaryDirectory() as tmp:
                # a throwaway gradebook: releasing must not touch the instructor's grades
                nbgrader(["generate_assignment", a, "--force",
                          f"--CourseDirectory.db_url=sqlite:///{tmp}/gradebook.db"],
                         cwd=course.root)
        for a in names:
            course.manifest_path(a).write_text(json.dumps(records[a].result(), indent=1) + "\n")
    return names


def manifest(source_path: Path) -> dict:
    """The release record: what grading ``source_path`` depends on (``record.release_record``)."""
    from course_lib.grading import record

    return record.release_record(source_path)


# --------------------------------------------------------------------------------------------
# grading one submission
# --------------------------------------------------------------------------------------------


def grade_one(sub: lms.Submission, ctx: dict) -> Result:
    res = Result(sub.student_id, sub.name, sub.path.name if sub.path else "", notes=list(sub.notes))
    if sub.path is None:
        res.status = "not submitted"
        res.cells = {c.grade_id: {"score": 0.0, "max": c.points, "message": "not submitted"}
                     for c in ctx["cells"]}
        return res
    try:
        submitted = nbtools.read_submission(sub.path)
    except nbtools.SubmissionError as e:
        return _failed(res, ctx, str(e))
    release = ctx["release"]
    nb, notes = nbtools.restore(submitted, release)
    res.notes.extend(notes)
    cells = [{"index": i, "source": c.source} for i, c in enumerate(nb.cells)
             if c.cell_type == "code"]
    call_limit = {**sandbox.DEFAULT_LIMITS, **(ctx["limits"] or {})}["call_seconds"]
    calls = [{**c, "timeout": min(c["timeout"], call_limit)} for c in ctx["calls"]]
    plan = {"cells": cells, "calls": calls, "preload": ctx["modules"],
            "watch": ["course_lib"]}
    run = sandbox.run_notebook(plan, hide=ctx["hide"], limits=ctx["limits"],
                               base_dir=ctx["sandbox_base"])
    if not any(e.get("event") == "start" for e in run.events):
        raise RuntimeError("the sandbox did not start: " + run.stderr_tail.strip()[-500:])
    died = run.died()
    ran = [e["index"] for e in run.events if e.get("event") == "cell" and isinstance(e.get("index"), int)]
    if died and not any(e.get("event") == "tampering" for e in run.events):
        code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        nxt = [i for i in code_cells if not ran or i > max(ran)]
        if nxt:
            died += f" while running cell {nxt[0] + 1}"
    for e in run.events:
        if e.get("event") == "cell" and isinstance(e.get("index"), int) \
                and 0 <= e["index"] < len(nb.cells):
            outputs = []
            for o in e.get("outputs", []):
                try:
                    outputs.append(nbformat.from_dict(o))
                except Exception:
                    pass
            nb.cells[e["index"]].outputs = outputs
            if e.get("timed_out"):
                res.notes.append(f"cell {e['index'] + 1} ran past the time limit and was stopped")
    proc = subprocess.run([sys.executable, "-I", "-m", "course_lib.grading.verify"],
                          input=json.dumps({"source": str(ctx["source"]),
                                            "release": str(ctx["release_path"]),
                                            "manifest": ctx["manifest"],
                                            "events": run.events, "died": died}),
                          capture_output=True, text=True, timeout=600, cwd=ctx["sandbox_base"])
    if proc.returncode == 3:  # course_lib changed under us: no score can be trusted
        raise GradingAborted(proc.stderr.strip())
    if proc.returncode != 0:
        raise RuntimeError(f"the verifier failed on {sub.path.name}: "
                           f"{proc.stderr.strip().splitlines()[-1:]}")
    verdict = json.loads(proc.stdout)
    res.cells = verdict["cells"]
    res.tampering = verdict["tampering"]
    res.notebook = _annotate(nb, res.cells)
    for cell in nb.cells:
        m = nbtools.nbmeta(cell)
        if m.get("grade") and m.get("solution"):
            stub = ctx["release_answers"].get(m.get("grade_id"), "")
            res.manual[m["grade_id"]] = ("unanswered" if cell.source.strip() in ("", stub.strip())
                                         else "answered")
    answers_changed = any(
        c.source != ctx["release_answers"].get(nbtools.grade_id(c))
        for c in nb.cells if nbtools.is_answer(c) and nbtools.grade_id(c) in ctx["release_answers"])
    if res.tampering:
        res.status = "failed: tampering: " + "; ".join(res.tampering)
    elif died:
        res.status = f"failed: {died}"
    elif not answers_changed:
        res.status = "failed: no answer (every answer cell is unchanged from the release)"
    elif "answered" in res.manual.values():
        res.status = "needs manual grading"
    else:
        res.status = "graded"
    if run.report_truncated:
        res.notes.append("the notebook wrote too much to the grader's channel; the rest was ignored")
    return res


def _failed(res: Result, ctx: dict, reason: str) -> Result:
    res.status = f"failed: {reason}"
    res.cells = {c.grade_id: {"score": 0.0, "max": c.points, "message": reason}
                 for c in ctx["cells"]}
    return res


def _annotate(nb, cells: dict):
    """Put the verifier's verdict under each test cell (student-safe: no hidden inputs)."""
    for cell in nb.cells:
        gid = nbtools.grade_id(cell)
        if gid in cells and nbtools.is_test(cell):
            v = cells[gid]
            text = f"[grader] {v['score']:g} / {v['max']:g} points"
            if v.get("feedback"):
                text += "\n" + v["feedback"]
            cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=text + "\n"))
    return nb


# --------------------------------------------------------------------------------------------
# a student's check before submitting
# --------------------------------------------------------------------------------------------


def check(path: Path, assignment: str | None = None, course: Course | None = None,
          limits: dict | None = None) -> Result:
    """Run one notebook through the same sandbox and verifier as ``grade``, against the visible
    tests only (the released test cells: students have no hidden tests). Needs no gradebook."""
    course = course or Course()
    path = Path(path).resolve()
    if assignment is None:
        known = {p.name for p in course.release_dir.iterdir() if p.is_dir()}
        guess = [n for n in (path.parent.name, path.stem) if n in known]
        if not guess:
            raise ValueError(f"cannot tell which assignment {path.name} is; pass --assignment "
                             f"(one of: {', '.join(sorted(known))})")
        assignment = guess[0]
    release_path = course.release(assignment)
    release_nb = nbformat.read(release_path, as_version=4)
    calls, modules = verify.sandbox_calls(release_nb)
    files = verify.manifest_files(modules)
    tmp = Path(tempfile.mkdtemp(prefix="course-check-"))
    os.chmod(tmp, 0o711)
    ctx = {"source": release_path, "release_path": release_path, "release": release_nb,
           "cells": verify.graded_cells(release_nb), "calls": calls, "modules": modules,
           "manifest": verify.hash_files(files, files[0].parents[1]), "limits": limits,
           "sandbox_base": str(tmp), "hide": [],
           "release_answers": {nbtools.grade_id(c): c.source for c in release_nb.cells
                               if nbtools.is_answer(c)}}
    try:
        return grade_one(lms.Submission("you", path.stem, path), ctx)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# grading a class
# --------------------------------------------------------------------------------------------


CSV_COLUMNS = ["student_id", "name", "status", "score", "max_score"]


def grade(assignment: str, submissions: Path, out: Path, course: Course | None = None,
          roster: Path | None = None, jobs: int | None = None, progress: bool = True,
          limits: dict | None = None) -> list[Result]:
    """Grade every submission in ``submissions`` (folder or zip); write ``out/grades.csv``,
    ``out/feedback/<student>.html`` and the nbgrader workspace ``out/course``."""
    course = course or Course()
    out = Path(out).resolve()
    submissions = Path(submissions).resolve()
    src_path = course.source(assignment)
    nb_name = src_path.name
    recorded = course.manifest_path(assignment)
    if not recorded.exists():
        raise RuntimeError(f"{assignment} has no release record ({recorded}); run "
                           "`course release` first")
    man = json.loads(recorded.read_text())["course_lib"]
    verify.check_manifest(man)

    # the nbgrader workspace: source + gradebook, made by nbgrader's real generate_assignment
    ws = out / "course"
    (ws / "source").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(ws / "source" / assignment, ignore_errors=True)
    shutil.copytree(course.source_dir / assignment, ws / "source" / assignment,
                    ignore=shutil.ignore_patterns("release.json", ".ipynb_checkpoints"))
    (ws / "nbgrader_config.py").write_text(_workspace_config(course))
    jobs = jobs or os.cpu_count() or 1
    shipped = course.release(assignment)
    made_path = ws / "release" / assignment / nb_name
    gen = None
    if jobs > 1 and shipped.exists():
        # the gradebook is needed only after the notebooks ran: make it meanwhile
        gen = subprocess.Popen([sys.executable, "-m", "nbgrader", "generate_assignment",
                                assignment, "--force"], cwd=ws, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=tool_env())
        release_path = shipped
    else:
        nbgrader(["generate_assignment", assignment, "--force"], cwd=ws)
        release_path = made_path
    release_nb = nbformat.read(release_path, as_version=4)

    source_nb = nbformat.read(src_path, as_version=4)
    cells = verify.graded_cells(source_nb)
    calls, modules = verify.sandbox_calls(source_nb)
    tmp = Path(tempfile.mkdtemp(prefix="course-grade-"))
    os.chmod(tmp, 0o711)  # sandboxes can enter their own folder but not list the others
    ctx = {
        "source": src_path, "release": release_nb, "cells": cells, "calls": calls,
        "modules": modules, "manifest": man, "limits": limits, "sandbox_base": str(tmp),
        "release_path": release_path,
        "release_answers": {nbtools.grade_id(c): c.source for c in release_nb.cells
                            if nbtools.is_answer(c)},
        "hide": [course.source_dir, course.root / "tests", course.root / ".git",
                 course.root / "gradebook.db", out, submissions, tmp / "unpacked"],
    }
    subs, folder_notes = lms.collect(submissions, lms.read_roster(roster) if roster else None,
                                     tmp / "unpacked")
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(subs), desc=f"grading {assignment}", unit="notebook")

    def work(sub):
        try:
            r = grade_one(sub, ctx)
        except GradingAborted:
            raise
        except Exception as e:  # a grader bug must not lose the rest of the class
            import traceback
            traceback.print_exc()
            r = _failed(Result(sub.student_id, sub.name, sub.path.name if sub.path else ""),
                        ctx, f"internal grader error: {e}")
        if bar is not None:
            bar.update(1)
        return r

    try:
        if jobs == 1:
            results = [work(s) for s in subs]
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                results = list(pool.map(work, subs))
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(tmp, ignore_errors=True)

    if gen is not None:
        stdout, stderr = gen.communicate()
        if gen.returncode != 0:
            raise RuntimeError(f"nbgrader generate_assignment failed:\n{stdout}\n{stderr}")
    made = nbformat.read(made_path, as_version=4)
    if [c.source for c in made.cells] != [c.source for c in release_nb.cells]:
        print(f"warning: {shipped} differs from what {course.source_dir / assignment} makes; "
              "run `course release`", file=sys.stderr)
    _record(ws, assignment, nb_name, results)
    _feedback(ws, out, assignment, nb_name, results, jobs)
    _write_csv(out / "grades.csv", results, cells, source_nb)
    notes_file = out / "import-notes.txt"
    notes_file.unlink(missing_ok=True)
    if folder_notes:  # ambiguities about the folder as a whole, not about one student
        notes_file.write_text("\n".join(folder_notes) + "\n", encoding="utf-8")
        for n in folder_notes:
            print(f"note: {n}", file=sys.stderr)
    return results


def _workspace_config(course: Course) -> str:
    return (
        "c = get_config()  # noqa: F821\n"
        "import os\n"
        "c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))\n"
        "c.CourseDirectory.ignore = ['.ipynb_checkpoints', '*.pyc', '__pycache__', 'feedback']\n"
        "c.ClearSolutions.code_stub = {'python': '# YOUR CODE HERE'}\n"
        "c.ClearSolutions.text_stub = 'YOUR ANSWER HERE'\n")


def _record(ws: Path, assignment: str, nb_name: str, results: list[Result]) -> None:
    """Scores into nbgrader's gradebook; executed notebooks into ``autograded/``."""
    import warnings

    from nbgrader.api import Gradebook, MissingEntry

    warnings.filterwarnings("ignore", module="nbgrader")  # SQLAlchemy chatter inside nbgrader
    warnings.filterwarnings("ignore", message=".*not in session.*")
    stem = Path(nb_name).stem
    with Gradebook(f"sqlite:///{ws / 'gradebook.db'}") as gb:
        for r in results:
            first, _, last = r.name.rpartition(" ")
            gb.update_or_create_student(r.student_id, first_name=first or last,
                                        last_name=last if first else "")
            if r.status == "not submitted":
                continue
            try:
                gb.find_submission(assignment, r.student_id)
            except MissingEntry:
                gb.add_submission(assignment, r.student_id)
            for gid, v in r.cells.items():
                g = gb.find_grade(gid, stem, assignment, r.student_id)
                g.auto_score = v["score"]
                g.needs_manual_grade = False
            for gid, state in r.manual.items():
                g = gb.find_grade(gid, stem, assignment, r.student_id)
                if state == "unanswered":
                    g.auto_score, g.needs_manual_grade = 0.0, False
                else:
                    g.auto_score = None
                    g.needs_manual_grade = g.manual_score is None
                    if g.manual_score is not None and r.status == "needs manual grading":
                        r.status = "graded"
            if r.notebook is None and r.status.startswith("failed"):
                for g in gb.find_submission_notebook(stem, assignment, r.student_id).grades:
                    if g.manual_score is None:
                        g.auto_score, g.needs_manual_grade = 0.0, False
            gb.db.commit()
            target = ws / "autograded" / r.student_id / assignment
            shutil.rmtree(target, ignore_errors=True)
            if r.notebook is not None:
                target.mkdir(parents=True)
                nbformat.write(r.notebook, target / nb_name)


def _feedback(ws: Path, out: Path, assignment: str, nb_name: str, results: list[Result],
              jobs: int = 1):
    """Feedback HTML per student, made by nbgrader's generate_feedback (``jobs`` processes, each
    given a share of the students)."""
    fb = out / "feedback"
    shutil.rmtree(fb, ignore_errors=True)
    fb.mkdir(parents=True)
    shutil.rmtree(ws / "feedback", ignore_errors=True)
    ids = sorted(r.student_id for r in results if r.notebook is not None)
    # students graded earlier into this workspace but not in this run (a regrade of a few) keep
    # their autograded notebooks there: every process must skip them, or two would write the same
    # feedback file at once
    earlier = {p.name for p in (ws / "autograded").iterdir() if p.is_dir()} \
        if (ws / "autograded").is_dir() else set()
    procs = []
    for share in (ids[k::jobs] for k in range(min(jobs, len(ids)))):
        exclude = ",".join(sorted((earlier | set(ids)) - set(share)))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "nbgrader", "generate_feedback", assignment, "--force",
             f"--CourseDirectory.student_id_exclude={exclude}"],
            cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=tool_env()))
    for p in procs:
        log = p.communicate()[0]
        if p.returncode != 0:
            raise RuntimeError(f"nbgrader generate_feedback failed:\n{log[-3000:]}")
    for r in results:
        made = ws / "feedback" / r.student_id / assignment / (Path(nb_name).stem + ".html")
        if r.notebook is not None and made.exists():
            shutil.copy(made, fb / f"{r.student_id}.html")
        elif r.status != "not submitted":
            body = (f"<h1>{html.escape(assignment)}: {html.escape(r.name)}</h1>"
                    f"<p>Your submission <code>{html.escape(r.file)}</code> could not be graded: "
                    f"{html.escape(r.status.removeprefix('failed: '))}.</p>")
            (fb / f"{r.student_id}.html").write_text(
                f"<!DOCTYPE html><html><meta charset='utf-8'><body>{body}</body></html>",
                encoding="utf-8")


def _write_csv(path: Path, results: list[Result], cells, source_nb) -> None:
    manual = [nbtools.grade_id(c) for c in source_nb.cells
              if nbtools.nbmeta(c).get("grade") and nbtools.nbmeta(c).get("solution")]
    total = sum(c.points for c in cells) + sum(
        float(nbtools.nbmeta(c).get("points", 0)) for c in source_nb.cells
        if nbtools.grade_id(c) in manual)
    cols = CSV_COLUMNS + [c.grade_id for c in cells] + manual + ["reasons", "notes", "file"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in sorted(results, key=lambda r: r.student_id):
            # when nothing ran (not submitted, not a notebook) the status is the reason
            reasons = [] if r.notebook is None else [
                f"{gid}: {v['message']}" for gid, v in r.cells.items() if v["message"]]
            w.writerow([r.student_id, r.name, r.status, f"{r.score:g}", f"{total:g}",
                        *(f"{r.cells.get(c.grade_id, {}).get('score', 0):g}" for c in cells),
                        *(r.manual.get(m, "") for m in manual),
                        " | ".join(reasons), " | ".join(r.notes), r.file])
