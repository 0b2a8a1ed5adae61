"""pytest plugin: the crash record, written as each test goes (loaded by `run.py` as
`-p _modal_gpu_action_container.progress`; standard library only, pytest not imported).

It appends one JSON line per event (configure, session start, test start, each phase's report,
collection errors, session end) to the file PROGRESS_ENV names, one unbuffered `write` each, so
the record survives a segfault, `os._exit`, the OOM killer or our own kill; record.py reads it
back. On SIGTERM (our timeout or cancel) faulthandler prints where every thread of pytest was
stuck before pytest dies as it would have. Under pytest-xdist only the controller records.

It also ties pytest's life to the process that started it (RUNNER_PID_ENV): if that process is
killed outright (a container torn down, a SIGKILL), the kernel kills pytest too, which could
otherwise run on, in a process group nobody stops. Linux only (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from typing import Any

from .names import junit_names
from .record import MAX_REPORT_TEXT

PROGRESS_ENV = "MODAL_GPU_ACTION_PROGRESS_FILE"
RUNNER_PID_ENV = "MODAL_GPU_ACTION_RUNNER_PID"
_RECORDER = "modal-gpu-action-progress"
_PR_SET_PDEATHSIG = 1


def pytest_load_initial_conftests(early_config: Any) -> None:
    """The first hook a `-p` plugin gets, before any conftest is imported."""
    runner = os.environ.get(RUNNER_PID_ENV, "")
    if not runner.isdigit() or os.getppid() != int(runner) or not sys.platform.startswith("linux"):
        return  # not started by the runner (an xdist worker's parent is the controller)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(runner):  # it died before the kernel was asked
        os.kill(os.getpid(), signal.SIGKILL)


def pytest_configure(config: Any) -> None:
    path = os.environ.get(PROGRESS_ENV)
    if path and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Recorder(path, _junit_prefix(config)), _RECORDER)


class _Recorder:
    """The record's file and the hooks that write to it."""

    def __init__(self, path: str, junit_prefix: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.junit_prefix = junit_prefix
        self.dump_fd: int | None = None
        try:  # on our SIGTERM (timeout, cancel), print where every thread is, then die as before
            import faulthandler

            self.dump_fd = os.dup(2)
            faulthandler.register(signal.SIGTERM, file=self.dump_fd, all_threads=True, chain=True)
        except (AttributeError, OSError, ValueError, RuntimeError):
            pass
        self.record({"e": "configure", "junit_prefix": junit_prefix, "pid": os.getpid()})

    def record(self, entry: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # one write per line: a kill loses at most that line
            os.write(self.fd, (json.dumps(entry, default=str) + "\n").encode("utf-8"))

    def pytest_sessionstart(self, session: Any) -> None:
        self.record({"e": "sessionstart"})

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            text = _clip(report.longreprtext)
            self.record({"e": "collecterror", "nodeid": report.nodeid, "text": text})

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.record(
            {
                "e": "start",
                "nodeid": nodeid,
                "location": list(location),
                "junit": junit_names(nodeid, self.junit_prefix),
            }
        )

    def pytest_runtest_logreport(self, report: Any) -> None:
        entry: dict[str, Any] = {
            "e": "report",
            "nodeid": report.nodeid,
            "when": report.when,
            "outcome": report.outcome,
            "duration": float(getattr(report, "duration", 0.0) or 0.0),
        }
        if report.outcome != "passed":
            longrepr = report.longrepr
            if report.skipped and isinstance(longrepr, tuple) and len(longrepr) == 3:
                reason = str(longrepr[2])
                message = reason[len("Skipped: ") :] if reason.startswith("Skipped: ") else reason
                entry["message"] = message
                entry["text"] = f"{longrepr[0]}:{longrepr[1]}: {message}"
            else:
                crash = getattr(longrepr, "reprcrash", None)
                entry["message"] = str(getattr(crash, "message", "") or "")
                entry["text"] = _clip(report.longreprtext)
        if hasattr(report, "wasxfail"):
            entry["wasxfail"] = str(report.wasxfail)
        if report.user_properties:
            entry["properties"] = [[str(k), str(v)] for k, v in report.user_properties]
        self.record(entry)

    def pytest_sessionfinish(self, session: Any, exitstatus: Any) -> None:
        self.record({"e": "sessionfinish", "exitstatus": int(exitstatus)})

    def pytest_unconfigure(self, config: Any) -> None:
        if self.dump_fd is not None:
            try:
                import faulthandler

                faulthandler.unregister(signal.SIGTERM)
                os.close(self.dump_fd)
            except (OSError, ValueError):
                pass
            self.dump_fd = None
        os.close(self.fd)


def _junit_prefix(config: Any) -> str:
    try:
        return str(config.getini("junit_prefix") or "")
    except Exception:
        return ""


def _clip(text: str) -> str:
    if len(text) <= MAX_REPORT_TEXT:
        return text
    return text[:MAX_REPORT_TEXT] + f"\n[... {len(text) - MAX_REPORT_TEXT} more characters cut]"
