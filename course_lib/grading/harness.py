"""The student's side of grading: runs inside the sandbox, never decides a score.

``python -m course_lib.grading.harness`` reads a plan (JSON) on stdin: the notebook's code
cells, and the graded calls to make afterwards (function name + argument lists). It executes the
cells with IPython (magics work), capturing each cell's output within limits, then calls the
student's functions on the plan's inputs with the course's reference implementations disabled
and the same seeds before every call. Everything it learns goes out as JSON lines on the file
descriptor the plan names; the verifier (another process) compares values with the reference.

Nothing here needs to be tamper-proof: a student who rewrites this process can only lie about
what their functions returned, and the verifier checks every value against the reference.
What it does report is tampering it notices (rebound checks, patched builtins, input
transformers), so that the instructor sees it.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import signal
import sys
import time
import traceback


class CellTimeout(BaseException):
    """A cell or a graded call ran past its time limit."""


class BoundedStream(io.TextIOBase):
    """A text stream that keeps at most ``limit`` characters and counts the rest."""

    def __init__(self, limit: int):
        self.limit, self.parts, self.kept, self.dropped = limit, [], 0, 0

    def writable(self):
        return True

    def write(self, s):
        s = str(s)
        room = self.limit - self.kept
        if room > 0:
            self.parts.append(s[:room])
            self.kept += min(len(s), room)
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def flush(self):
        pass

    def text(self):
        t = "".join(self.parts)
        if self.dropped:
            t += f"\n[... {self.dropped:,} more characters of output not kept]\n"
        return t


def _snapshot(shell, watch):
    mods = {}
    for name, m in list(sys.modules.items()):
        if m is not None and any(name == w or name.startswith(w + ".") for w in watch):
            d = {}
            for k, v in list(vars(m).items()):
                d[k] = (id(v), id(getattr(v, "__code__", None)))
            mods[name] = (id(m), d)
    return {
        "modules": mods,
        "builtins": {k: id(v) for k, v in vars(builtins).items()},
        "sys_modules": {k: id(sys.modules.get(k)) for k in
                        ("builtins", "sys", "os", "json", "random", "io", "signal", "copy",
                         "numpy", "torch", "IPython") if k in sys.modules},
        "exits": (id(sys.exit), id(os._exit), id(os.kill)),
        "transformers": [id(x) for x in (list(shell.input_transformers_cleanup)
                                         + list(shell.input_transformers_post)
                                         + list(shell.ast_transformers))],
    }


def _tampering(before, after):
    found = []
    for name, (mid, attrs) in before["modules"].items():
        if name not in after["modules"]:
            found.append(("all", f"removed {name} from sys.modules"))
            continue
        mid2, attrs2 = after["modules"][name]
        if mid2 != mid:
            found.append(("all", f"replaced the module {name} in sys.modules"))
            continue
        for k, ident in attrs.items():
            if k.startswith("__"):
                continue
            if k not in attrs2:
                found.append((k, f"deleted {name}.{k}"))
            elif attrs2[k][0] != ident[0]:
                found.append((k, f"rebound {name}.{k}"))
            elif attrs2[k][1] != ident[1]:
                found.append((k, f"replaced the code of {name}.{k}"))
    b1, b2 = before["builtins"], after["builtins"]
    for k in sorted(set(b1) | set(b2)):
        if b1.get(k) != b2.get(k) and k not in ("_", "__", "___"):
            found.append(("all", f"patched builtins.{k}"))
    for k, ident in before["sys_modules"].items():
        if after["sys_modules"].get(k) != ident:
            found.append(("all", f"replaced sys.modules[{k!r}]"))
    if before["exits"] != after["exits"]:
        found.append(("all", "patched sys.exit / os._exit / os.kill"))
    if before["transformers"] != after["transformers"]:
        found.append(("all", "installed an IPython input or AST transformer"))
    return found


def main():
    plan = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    sys.stdin.close()
    os.close(0)
    os.open(os.devnull, os.O_RDONLY)  # fd 0 again, empty

    out_fd = plan["out_fd"]
    # bound now, before any student code: rebinding the module's names later changes nothing
    _write, _dumps, _monotonic = os.write, json.dumps, time.monotonic
    snapshot, tampering = _snapshot, _tampering

    def emit(obj):
        _write(out_fd, (_dumps(obj) + "\n").encode("utf-8"))

    from course_lib.grading import checks

    _to_data, _seed, _poison = checks.to_data, checks.seed_everything, checks.poison_references
    _ReferenceCalled, _Unsupported = checks.ReferenceCalled, checks.UnsupportedResult
    _from_data = checks.from_data
    _substituted = checks.substituted
    limits = plan["limits"]
    for name in plan["preload"]:
        __import__(name)

    from IPython.core.displayhook import CapturingDisplayHook
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance(colors="nocolor")
    shell.history_manager.enabled = False

    def on_alarm(signum, frame):
        raise CellTimeout(f"time limit of {alarm_limit[0]:g} s exceeded")

    alarm_limit = [0.0]
    signal.signal(signal.SIGALRM, on_alarm)

    errors = []

    def showtraceback(etype, evalue, stb):
        errors.append({"output_type": "error", "ename": etype.__name__,
                       "evalue": str(evalue)[:2000], "traceback": [s[:4000] for s in stb[-20:]]})

    shell._showtraceback = showtraceback
    before = snapshot(shell, plan["watch"])
    emit({"event": "start", "pid": os.getpid()})

    # -- run the notebook's code cells -------------------------------------------------------
    budget = limits["output_chars"]
    for cell in plan["cells"]:
        out = BoundedStream(min(limits["cell_output_chars"], max(budget, 0)))
        err = BoundedStream(min(limits["cell_output_chars"], max(budget, 0)))
        pub = CapturingDisplayPublisher()
        shell.display_pub = pub
        saved = sys.stdout, sys.stderr, sys.displayhook
        sys.stdout, sys.stderr = out, err
        sys.displayhook = CapturingDisplayHook(shell=shell, outputs=pub.outputs)
        errors.clear()
        _seed(0)
        t0 = _monotonic()
        timed_out = False
        alarm_limit[0] = limits["cell_seconds"]
        try:
            signal.setitimer(signal.ITIMER_REAL, limits["cell_seconds"])
            shell.run_cell(cell["source"], store_history=False)
        except CellTimeout:
            timed_out = True
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            sys.stdout, sys.stderr, sys.displayhook = saved
        if errors and errors[-1]["ename"] == "CellTimeout":
            timed_out = True
        outputs = []
        if out.kept or out.dropped:
            outputs.append({"output_type": "stream", "name": "stdout", "text": out.text()})
        if err.kept or err.dropped:
            outputs.append({"output_type": "stream", "name": "stderr", "text": err.text()})
        size = 0
        for o in pub.outputs:
            data = {k: v for k, v in (o.get("data") or {}).items() if isinstance(v, str)}
            size += sum(len(v) for v in data.values())
            if size > limits["cell_output_chars"]:
                outputs.append({"output_type": "stream", "name": "stdout",
                                "text": "[display output not kept: too large]\n"})
                break
            outputs.append({"output_type": "display_data", "data": data,
                            "metadata": o.get("metadata") or {}})
        outputs.extend(errors[:1])
        budget -= out.kept + err.kept
        emit({"event": "cell", "index": cell["index"], "outputs": outputs,
              "error": errors[0]["ename"] if errors else None, "timed_out": timed_out,
              "seconds": round(_monotonic() - t0, 3)})

    # -- what the notebook did to the interpreter -----------------------------------------------
    after = snapshot(shell, plan["watch"])
    emit({"event": "tampering", "found": tampering(before, after)})

    # -- the graded calls --------------------------------------------------------------------
    ns = shell.user_ns
    failed = set()  # graded cells already lost: an error or timeout decides them, skip the rest
    for call in plan["calls"]:
        cell_id = call["task"].rsplit(":", 1)[0]
        if cell_id in failed:
            continue
        fn = ns.get(call["function"])
        for k, args_data in enumerate(call["cases"]):
            result = {"event": "call", "task": call["task"], "case": k}
            if fn is None:
                result.update(ok=False, kind="missing",
                              error=f"NameError: {call['function']} is not defined")
            elif not callable(fn):
                result.update(ok=False, kind="error",
                              error=f"{call['function']} is a {type(fn).__name__}, not a function")
            else:
                args = _from_data(args_data)
                _seed(0)
                alarm_limit[0] = call["timeout"]
                try:
                    signal.setitimer(signal.ITIMER_REAL, call["timeout"])
                    with _substituted(fn, call.get("substitute")), _poison(call["references"],
                                                                         call.get("allowed", ())):
                        value = fn(*args)
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    result.update(ok=True, value=_to_data(value))
                except CellTimeout:
                    result.update(ok=False, kind="timeout", error="time limit exceeded")
                except _ReferenceCalled as e:
                    result.update(ok=False, kind="reference", error=str(e))
                except _Unsupported as e:
                    result.update(ok=False, kind="error", error=f"a value that cannot be graded: {e}")
                except BaseException as e:  # SystemExit, KeyboardInterrupt... all reported
                    msg = "".join(traceback.format_exception_only(type(e), e)).strip()
                    result.update(ok=False, kind="error", error=msg[:500])
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            try:
                emit(result)
            except (TypeError, ValueError, OSError) as e:
                result = {"event": "call", "task": call["task"], "case": k, "ok": False,
                          "kind": "error", "error": f"result could not be sent: {e}"}
                emit(result)
            if not result["ok"]:
                failed.add(cell_id)
                break
    emit({"event": "done"})
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown (atexit hooks the notebook may have added)


if __name__ == "__main__":
    main()
