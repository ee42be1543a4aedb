"""Reading a folder (or zip) of submissions as a learning-management system exports it.

One file per student, named by the LMS: Canvas writes ``smithjane_12345_67890_name.ipynb``
(``smithjane_LATE_...`` when late, ``name-1.ipynb`` for a re-upload), Moodle writes
``Jane Smith_12345_assignsubmission_file_name.ipynb`` (or a folder per student), and a plain
folder has ``Jane Smith.ipynb``. Names may have spaces, commas and accents. Nothing here aborts:
whatever is odd (two files from one student, a file matching nobody on the roster, a roster
name matching two files) is kept as a note on that student.
"""

from __future__ import annotations

import csv
import re
import shutil
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

CANVAS = re.compile(r"^(?P<key>[^_]+?)(?:_LATE)?_(?P<uid>\d+)_(?P<sid>\d+)_(?P<rest>.*)$")
MOODLE = re.compile(r"^(?P<key>.+?)_(?P<uid>\d+)_assignsubmission_(?:file|onlinetext)_?(?P<rest>.*)$")
COPY = re.compile(r"^(?P<base>.*?)(?:-(?P<n>\d+)| \((?P<m>\d+)\))$")


@dataclass
class Submission:
    student_id: str          # the id used in nbgrader's gradebook (ASCII, no spaces)
    name: str                # the name as the roster or the file gives it
    path: Path | None        # None: not submitted
    notes: list = field(default_factory=list)


def normalize(s: str) -> str:
    """Lowercase ASCII letters and digits only: ``"García, José"`` -> ``"garciajose"``."""
    s = unicodedata.normalize("NFKD", s)
    return re.sub(r"[^a-z0-9]", "", s.encode("ascii", "ignore").decode().lower())


def slug(s: str) -> str:
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", s).strip("-") or "student"


def parse_name(path: Path) -> tuple[str, int]:
    """The student key of an exported file and its re-upload number (higher is newer)."""
    stem = path.stem if path.suffix else path.name
    m = CANVAS.match(stem) or MOODLE.match(stem)
    key, rest = (m.group("key"), m.group("rest")) if m else (stem, stem)
    copy = COPY.match(rest)
    n = int(copy.group("n") or copy.group("m")) if copy else 0
    if not m and copy:
        key = copy.group("base")
    return key.strip(), n


def read_roster(path: Path) -> list[dict]:
    """A CSV with a column ``id`` and a column ``name`` (``email`` optional)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"id", "name"} <= set(rows[0]):
        raise ValueError(f"{path}: a roster needs the columns id and name (got "
                         f"{', '.join(rows[0]) if rows else 'an empty file'})")
    return [{"id": r["id"].strip(), "name": r["name"].strip()} for r in rows if r["id"].strip()]


def unpack(source: Path, into: Path) -> list[Path]:
    """The submitted files: those in a folder (one level of per-student folders allowed) or in a
    zip (extracted under ``into``, names reduced to safe relative paths)."""
    source = Path(source)
    if source.is_file() and zipfile.is_zipfile(source):
        into.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(source) as z:
            for info in z.infolist():
                parts = [p for p in Path(info.filename).parts if p not in ("", ".", "..", "/")]
                if info.is_dir() or not parts or parts[0] == "__MACOSX":
                    continue
                target = into.joinpath(*parts[-2:])
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        source = into
    if not source.is_dir():
        raise ValueError(f"{source} is neither a folder nor a zip file of submissions")
    files = []
    for p in sorted(source.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            inner = [q for q in sorted(p.iterdir()) if q.is_file() and not q.name.startswith(".")]
            files.extend(inner)
        elif p.is_file():
            files.append(p)
    return files


def collect(source: Path, roster: list[dict] | None, into: Path) -> tuple[list[Submission], list]:
    """Match submitted files to students. Returns the submissions (one per student, roster
    students without a file included with ``path=None``) and notes about the folder itself."""
    files = unpack(source, into)
    by_key: dict[str, list] = {}
    for f in files:
        # a per-student folder names the student; the file inside may be called anything
        owner = f.parent.name if f.parent != Path(source) and f.parent != into else None
        key, n = parse_name(Path(owner)) if owner else parse_name(f)
        by_key.setdefault(key, []).append((n, f.stat().st_mtime, f))
    folder_notes = []
    subs = []
    used_ids = set()

    def new_id(base):
        sid, k = slug(base), 2
        while sid in used_ids:
            sid, k = f"{slug(base)}-{k}", k + 1
        used_ids.add(sid)
        return sid

    def pick(key):
        entries = sorted(by_key[key], key=lambda e: (e[0], e[1], str(e[2])))
        chosen = entries[-1][2]
        notes = []
        if len(entries) > 1:
            others = ", ".join(e[2].name for e in entries[:-1])
            notes.append(f"{len(entries)} files from this student: graded {chosen.name} "
                         f"(the latest upload), ignored {others}")
        return chosen, notes

    if roster:
        index: dict[str, list] = {}
        for r in roster:
            names = {normalize(r["id"]), normalize(r["name"])}
            parts = r["name"].replace(",", " ").split()
            if len(parts) >= 2:  # Canvas writes lastfirst
                names.add(normalize(parts[-1] + "".join(parts[:-1])))
                names.add(normalize("".join(parts[1:]) + parts[0]))
            for nm in names:
                index.setdefault(nm, []).append(r)
        matched = {}
        for key in by_key:
            hits = {r["id"]: r for r in index.get(normalize(key), [])}
            if len(hits) == 1:
                r = next(iter(hits.values()))
                if r["id"] in matched:
                    by_key[matched[r["id"]]].extend(by_key[key])
                    by_key[key] = []
                else:
                    matched[r["id"]] = key
            elif len(hits) > 1:
                folder_notes.append(f"files named {key!r} match several students on the roster "
                                    f"({', '.join(sorted(hits))}); graded under their own name")
        for r in roster:
            used_ids.add(r["id"])
        for r in roster:
            key = matched.get(r["id"])
            if key is None or not by_key.get(key):
                subs.append(Submission(r["id"], r["name"], None))
            else:
                chosen, notes = pick(key)
                subs.append(Submission(r["id"], r["name"], chosen, notes))
        for key, entries in by_key.items():
            if entries and key not in matched.values():
                chosen, notes = pick(key)
                subs.append(Submission(new_id(key), key, chosen,
                                       ["not on the roster: check the file name", *notes]))
    else:
        for key in sorted(by_key):
            chosen, notes = pick(key)
            subs.append(Submission(new_id(key), key, chosen, notes))
    return subs, folder_notes
