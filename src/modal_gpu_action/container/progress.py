"""pytest plugin: the crash record, written as each test goes (loaded by `run.py` as
`-p _modal_gpu_action_container.progress`; standard library only, pytest not imported).

It appends one JSON line per event (configure, session start, the modules that failed or were
skipped at collection, the tests collected (in batches), test start, the phases' reports, session
end) to the file PROGRESS_ENV names, one unbuffered `write` each, so the record survives a
segfault, `os._exit`, the OOM killer or our own kill; record.py reads it back. Two lines for a
test that passes (its start, its teardown report): a passed setup or call report with nothing
else to tell is not written, its duration is added to the test's next report that is. The
common lines are formatted by hand (json's C string encoder): the plugin runs once per test. A subtest's report
(unittest `subTest`, the `subtests` fixture) is marked `subtest`. On SIGTERM (our timeout or
cancel) faulthandler prints where every thread of pytest was stuck before pytest dies as it
would have. Under pytest-xdist only the controller records.

It also gives pytest's own JUnit report what the host reads from it (junit_reader.py): each test
case's node id (a `nodeid` attribute: xunit1 keeps the attributes a plugin adds) and, when the
run had subtests, their counts (the suite's properties `modal-gpu-action.subtests-passed`,
`-failed` and `-skipped`). Both go through pytest's junitxml plugin, found by name; where that
plugin is off or not as expected, the report is written without them.

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
from json.encoder import encode_basestring_ascii as _quoted  # a JSON string, in C
from typing import Any, Callable

from .record import MAX_REPORT_TEXT, SUBTESTS_PROPERTY


def _hookimpl_tryfirst() -> Callable[[Any], Any]:
    """pytest.hookimpl(tryfirst=True) when pytest loaded this module; a no-op where the runner
    imports it only for its names (pytest is then not imported: it may not be installed)."""
    pytest = sys.modules.get("pytest")
    hookimpl = getattr(pytest, "hookimpl", None)
    return hookimpl(tryfirst=True) if hookimpl is not None else (lambda function: function)


_tryfirst = _hookimpl_tryfirst()

PROGRESS_ENV = "MODAL_GPU_ACTION_PROGRESS_FILE"
RUNNER_PID_ENV = "MODAL_GPU_ACTION_RUNNER_PID"
_RECORDER = "modal-gpu-action-progress"
_PR_SET_PDEATHSIG = 1
# Of node ids per `collected` line: small lines, as relay.py sends each in a frame of its own.
COLLECTED_BATCH_CHARS = 4000


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
        config.pluginmanager.register(_Recorder(path, _junit_prefix(config), config), _RECORDER)


class _Recorder:
    """The record's file and the hooks that write to it."""

    def __init__(self, path: str, junit_prefix: str, config: Any = None) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.junit_prefix = junit_prefix
        self.config = config
        self.subtests = {"passed": 0, "failed": 0, "skipped": 0}
        self.unwritten: dict[str, float] = {}  # seconds of passed phases not written, by test
        self.xml: Any = False  # pytest's junitxml plugin object, looked up once (None: off)
        self.dump_fd: int | None = None
        try:  # on our SIGTERM (timeout, cancel), print where every thread is, then die as before
            import faulthandler

            self.dump_fd = os.dup(2)
            faulthandler.register(signal.SIGTERM, file=self.dump_fd, all_threads=True, chain=True)
        except (AttributeError, OSError, ValueError, RuntimeError):
            pass
        self.record({"e": "configure", "junit_prefix": junit_prefix, "pid": os.getpid()})

    def record(self, entry: dict[str, Any]) -> None:
        self.write(json.dumps(entry, default=str))

    def write(self, line: str) -> None:
        with contextlib.suppress(OSError):  # one write per line: a kill loses at most that line
            os.write(self.fd, (line + "\n").encode("utf-8"))

    def junit_xml(self) -> Any:
        if self.xml is False:
            self.xml = _junit_xml(self.config)
        return self.xml

    def pytest_sessionstart(self, session: Any) -> None:
        self.record({"e": "sessionstart"})

    def pytest_collectreport(self, report: Any) -> None:
        if report.passed:
            return
        entry: dict[str, Any] = {"nodeid": report.nodeid}
        location = _location(report)
        if location:
            entry["location"] = location
        if report.failed:
            entry.update(e="collecterror", text=_clip(report.longreprtext))
        else:  # as pytest's junitxml writes it: ('path', line, 'Skipped: reason')
            entry.update(e="collectskip", text=_clip(str(report.longrepr)))
        self.record(entry)
        _junit_nodeid(self.junit_xml(), report)

    def pytest_collection_finish(self, session: Any) -> None:
        """The tests this run will run (after -k, -m and sharding): the ones a crash leaves
        without a report are `not run`. Under xdist the controller has none: nothing."""
        batch: list[list[Any]] = []
        size = 0
        for item in getattr(session, "items", None) or ():
            location = list(getattr(item, "location", None) or ())
            batch.append([item.nodeid, *location[:2]])
            size += len(item.nodeid) + len(str(location[:1])) + 16
            if size >= COLLECTED_BATCH_CHARS:
                self.record({"e": "collected", "items": batch})
                batch, size = [], 0
        if batch:
            self.record({"e": "collected", "items": batch})

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        # Written before the test runs: after a crash, the test that was running. Its JUnit
        # names come from the node id and the configure line's prefix (record.py).
        path, line = [*location, None, None][:2]
        if isinstance(nodeid, str) and isinstance(path, str) and _is_line(line):
            self.write(
                f'{{"e":"start","nodeid":{_quoted(nodeid)},'
                f'"location":[{_quoted(path)},{"null" if line is None else int(line)}]}}'
            )
        else:
            self.record({"e": "start", "nodeid": nodeid, "location": list(location)})

    def pytest_runtest_logreport(self, report: Any) -> None:
        nodeid, when, outcome = report.nodeid, report.when, report.outcome
        seconds = float(getattr(report, "duration", 0.0) or 0.0)
        subtest = _subtest(report)
        plain = (
            outcome == "passed"
            and subtest is None
            and not report.user_properties
            and not hasattr(report, "wasxfail")
        )
        if plain and when != "teardown":  # nothing to tell but its time: it goes with the next
            self.unwritten[nodeid] = self.unwritten.get(nodeid, 0.0) + seconds
            if when == "setup":
                _junit_nodeid(self.junit_xml(), report)
            return
        seconds += self.unwritten.pop(nodeid, 0.0)
        if plain and isinstance(nodeid, str):  # a teardown: the test ended
            self.write(
                f'{{"e":"report","nodeid":{_quoted(nodeid)},"when":"teardown",'
                f'"outcome":"passed","duration":{seconds!r}}}'
            )
            return
        entry: dict[str, Any] = {
            "e": "report",
            "nodeid": nodeid,
            "when": when,
            "outcome": outcome,
            "duration": seconds,
        }
        if outcome != "passed":
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
        if subtest is not None:
            entry["subtest"] = subtest
            if outcome in self.subtests:
                self.subtests[outcome] += 1
        self.record(entry)
        if when == "setup":  # before junitxml can have closed the test's case
            _junit_nodeid(self.junit_xml(), report)

    @_tryfirst  # junitxml writes its file in its own sessionfinish: the subtest counts go in before
    def pytest_sessionfinish(self, session: Any, exitstatus: Any) -> None:
        self.record({"e": "sessionfinish", "exitstatus": int(exitstatus)})
        xml = self.junit_xml() if any(self.subtests.values()) else None
        if xml is not None:
            with contextlib.suppress(Exception):
                for kind, count in self.subtests.items():
                    xml.add_global_property(SUBTESTS_PROPERTY + kind, str(count))

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


def _location(report: Any) -> list[Any]:
    location = getattr(report, "location", None)
    if isinstance(location, tuple) and location and isinstance(location[0], str):
        return [location[0], location[1] if isinstance(location[1], int) else None]
    return []


def _subtest(report: Any) -> str | None:
    """How pytest names a subtest report (`[msg] (i=3)`), None for any other report: pytest 9's
    SubtestReport, the pytest-subtests plugin's SubTestReport."""
    if "subtest" not in type(report).__name__.lower() or not hasattr(report, "context"):
        return None
    describe = getattr(report, "_sub_test_description", None)
    try:
        return str(describe()) if callable(describe) else ""
    except Exception:
        return ""


def _junit_xml(config: Any) -> Any:
    """pytest's junitxml plugin object for this run (None when it is off): where each pytest
    keeps it (`config.stash`, pytest 7+; `config._store`, pytest 6)."""
    junitxml = sys.modules.get("_pytest.junitxml")
    key = getattr(junitxml, "xml_key", None)
    if config is None or key is None:
        return None
    for store in (getattr(config, "stash", None), getattr(config, "_store", None)):
        try:
            xml = store.get(key, None) if store is not None else None
        except Exception:
            xml = None
        if xml is not None:
            return xml
    return None


def _junit_nodeid(xml: Any, report: Any) -> None:
    """The report's node id as an attribute of its JUnit test case (xunit1 keeps it), `xml`
    being junitxml's plugin object. Only for a report whose case junitxml has not closed yet: a
    setup report, a collection report."""
    if xml is None or getattr(xml, "family", "xunit1") != "xunit1":
        return
    with contextlib.suppress(Exception):
        xml.node_reporter(report).add_attribute("nodeid", report.nodeid)


def _is_line(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _clip(text: str) -> str:
    if len(text) <= MAX_REPORT_TEXT:
        return text
    return text[:MAX_REPORT_TEXT] + f"\n[... {len(text) - MAX_REPORT_TEXT} more characters cut]"
