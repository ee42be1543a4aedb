"""Run a student's notebook in a sandbox and collect what it reports, as data.

What is isolated, when the grader runs as root on Linux with util-linux (``unshare``,
``setpriv``), as on the course's machines and CI:

- its own network namespace: no network at all (a connect fails with "network unreachable");
- its own mount namespace, in which the instructor's paths (``solutions/``, ``tests/``, ``.git``,
  the gradebook, the grading workspace, the other submissions) are covered by empty read-only
  mounts: they cannot be read or listed;
- its own PID namespace: when the notebook's process ends, everything it started is killed;
- an unprivileged user (``nobody``), so course files cannot be written;
- resource limits: address space, processes, open files, file size, CPU time; a wall-clock limit
  per cell and per graded call (in the harness) and per notebook (here).

Without root (a student's laptop, say), the same code runs with resource limits and its own
process group only; ``isolation()`` says which parts are missing and the grader reports it.
"""

from __future__ import annotations

import json
import os
import pwd
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_LIMITS = {
    "cell_seconds": 60.0,
    "call_seconds": 10.0,  # at most, per graded call (a task may set less)
    "notebook_seconds": 300.0,
    "memory_bytes": 4 << 30,
    "processes": 256,
    "file_bytes": 64 << 20,
    "open_files": 256,
    "output_chars": 200_000,
    "cell_output_chars": 20_000,
    "report_bytes": 64 << 20,
}


def isolation() -> dict:
    """Which isolation this machine allows: ``{"namespaces": bool, "user": name or None,
    "missing": [what is not isolated]}``."""
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    have = root and sys.platform.startswith("linux") and all(
        shutil.which(t) for t in ("unshare", "setpriv", "mount"))
    user = None
    if have:
        try:
            pwd.getpwnam("nobody")
            user = "nobody"
        except KeyError:
            user = None
    missing = []
    if not have:
        missing = ["network", "filesystem (instructor files are readable)",
                   "processes started in the background may outlive the notebook"]
    if user is None:
        missing.append("user (student code runs as the grader's own user)")
    return {"namespaces": have, "user": user, "missing": missing}


@dataclass
class SandboxResult:
    events: list = field(default_factory=list)
    returncode: int | None = None
    timed_out: bool = False
    seconds: float = 0.0
    stderr_tail: str = ""
    report_truncated: bool = False

    def died(self) -> str | None:
        """Why the notebook's process ended early, or None if it finished."""
        if any(e.get("event") == "done" for e in self.events):
            return None
        if self.timed_out:
            return "the notebook ran past its time limit"
        rc = self.returncode
        if rc is not None and rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = str(-rc)
            why = {"SIGSEGV": "crashed (segmentation fault)", "SIGKILL": "was killed",
                   "SIGXCPU": "used up its CPU time"}.get(name, f"was stopped by {name}")
            return f"the notebook's process {why}"
        if rc is not None and rc >= 128:  # a shell or unshare reporting a signal
            return self.__class__(returncode=128 - rc).died()
        return f"the notebook's process ended early (exit status {rc})"


def _set_limits(limits):
    def apply():
        for res, value in ((resource.RLIMIT_AS, limits["memory_bytes"]),
                           (resource.RLIMIT_NPROC, limits["processes"]),
                           (resource.RLIMIT_FSIZE, limits["file_bytes"]),
                           (resource.RLIMIT_NOFILE, limits["open_files"]),
                           (resource.RLIMIT_CORE, 0),
                           (resource.RLIMIT_CPU, int(limits["notebook_seconds"] * 2) + 10)):
            try:
                resource.setrlimit(res, (value, value))
            except (ValueError, OSError):
                pass
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writing past the limit fails, not kills
    return apply


def run_notebook(plan: dict, hide: list, limits: dict | None = None,
                 base_dir: str | None = None) -> SandboxResult:
    """Run ``plan`` (see ``harness``) in a fresh sandbox; ``hide`` are paths the student's code
    must not see. Returns the harness's events, however the process ended."""
    limits = {**DEFAULT_LIMITS, **(limits or {})}
    iso = isolation()
    workdir = Path(tempfile.mkdtemp(prefix="sandbox-", dir=base_dir))
    for sub in ("tmp", ".ipython", ".mpl"):
        (workdir / sub).mkdir()
    if iso["user"]:
        pw = pwd.getpwnam(iso["user"])
        for p in [workdir, *workdir.iterdir()]:
            os.chown(p, pw.pw_uid, pw.pw_gid)
    read_fd, write_fd = os.pipe()
    plan = {**plan, "out_fd": write_fd, "limits": limits}
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
           "HOME": str(workdir), "LANG": "C.UTF-8",
           "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg", "IPYTHONDIR": str(workdir / ".ipython"),
           "MPLCONFIGDIR": str(workdir / ".mpl"), "TMPDIR": str(workdir / "tmp"),
           "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
           "TQDM_DISABLE": "1"}
    harness = [sys.executable, "-m", "course_lib.grading.harness"]
    if iso["namespaces"]:
        jail = {"hide": [str(p) for p in hide if Path(p).exists()], "user": iso["user"],
                "limits": limits, "fd": write_fd, "cmd": harness}
        cmd = ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
               "--propagation", "private", "--",
               sys.executable, "-m", "course_lib.grading.sandbox", json.dumps(jail)]
        preexec = None
    else:
        cmd = harness
        preexec = _set_limits(limits)
    stderr_path = workdir / "stderr.txt"
    t0 = time.monotonic()
    result = SandboxResult()
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=err, cwd=workdir, env=env, pass_fds=(write_fd,),
                                start_new_session=True, preexec_fn=preexec)
    os.close(write_fd)
    chunks, size = [], [0]

    def reader():
        with os.fdopen(read_fd, "rb") as f:
            while True:
                block = f.read(65536)
                if not block:
                    return
                if size[0] < limits["report_bytes"]:
                    chunks.append(block)
                size[0] += len(block)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        proc.stdin.write(json.dumps(plan).encode("utf-8"))
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass
    try:
        proc.wait(timeout=limits["notebook_seconds"])
    except subprocess.TimeoutExpired:
        result.timed_out = True
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the student started goes too
        except ProcessLookupError:
            pass
        proc.wait()
    t.join(timeout=5)  # without namespaces a background child may keep the pipe open
    result.returncode = proc.returncode
    result.seconds = time.monotonic() - t0
    result.report_truncated = size[0] > limits["report_bytes"]
    data = b"".join(chunks)
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a torn line, or something the student wrote to the pipe
        if isinstance(event, dict):
            result.events.append(event)
    try:
        result.stderr_tail = stderr_path.read_bytes()[-2000:].decode("utf-8", "replace")
    except OSError:
        pass
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def _jail(spec: dict) -> None:
    """Inside the new namespaces, still root: cover the instructor's paths, set limits, drop to
    the unprivileged user, and become the harness."""
    hidden = []
    for path in sorted(spec["hide"], key=len):
        if any(path == h or path.startswith(h.rstrip("/") + "/") for h in hidden):
            continue  # already under a covered folder
        hidden.append(path)
        if os.path.isdir(path):
            args = ["mount", "-t", "tmpfs", "-o", "ro,size=4k,mode=000", "tmpfs", path]
        else:
            args = ["mount", "--bind", "-o", "ro", "/dev/null", path]
        if subprocess.run(args).returncode != 0:
            print(f"sandbox: could not cover {path}", file=sys.stderr)
            sys.exit(70)
    _set_limits(spec["limits"])()
    os.set_inheritable(spec["fd"], True)
    cmd = spec["cmd"]
    if spec["user"]:
        cmd = ["setpriv", "--reuid=" + spec["user"], "--regid=nogroup", "--clear-groups",
               "--inh-caps=-all", "--", *cmd]
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    _jail(json.loads(sys.argv[1]))
