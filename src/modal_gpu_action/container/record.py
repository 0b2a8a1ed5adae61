"""The crash record read back, and the JUnit report synthesised from it.

The progress plugin (progress.py) appends one JSON line per event to the record as pytest goes.
pytest writes its JUnit file only at the very end, so when it leaves none that is whole (it
crashed, was stopped, or never started), the report is synthesised from the record in pytest's
own shape: finished tests keep their outcome, the test that was running is an error saying why it
did not finish. Only then is the whole record read: how the session went (`RecordState`: did it
start, did it finish, which test was running) comes from its first and last lines, and whether
pytest's file is whole from its first and last bytes (the host parses it, once).

The record can be filled by the tests (a conftest can), so it is read capped and never through
a link, a pipe or a device (pytest_junit.py reads pytest's own file the same way).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import stat
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .names import junit_names

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

# What the host reads besides pytest's own results (report/junit_reader.py keeps the same names): an
# error case of this class name is a problem of the run, not a test; a skipped case of this type
# a test collected but never started; these suite properties pytest's subtest counts.
PROBLEM_CLASSNAME = "modal-gpu-action"
NOT_RUN_TYPE = "modal-gpu-action.not-run"
SUBTESTS_PROPERTY = "modal-gpu-action.subtests-"

MAX_REPORT_TEXT = 20000  # of one failure's text kept in the record (progress.py)
# What is read back of the record, which the tests could fill: of a larger one, its first and
# last halves are read, and an error case says so.
MAX_PROGRESS_BYTES = 64 * 1024 * 1024


def read_progress(path: Path, max_bytes: int = MAX_PROGRESS_BYTES) -> list[dict[str, Any]]:
    """The records the progress plugin wrote; a line cut short by a kill is skipped. Of a file
    larger than `max_bytes`, its first and last halves are read (the session's start, its end
    and the test that was running), with a `note` record between them saying what is missing;
    a link, a directory or a pipe in its place (the tests can put one there) is one `note`."""
    try:
        with _open_plain_file(path) as handle:
            data = handle.read(max_bytes + 1)
            if len(data) <= max_bytes:
                return _records(data)
            half = max_bytes // 2
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(size - half, half))
            end = handle.read(half)
    except FileNotFoundError:
        return []
    except OSError as error:
        return [_note(_RECORD, f"The action's record of the run was not read: {_why(error)}.")]
    start = data[:half]
    start = start[: start.rfind(b"\n") + 1]  # whole lines only
    end = end[end.find(b"\n") + 1 :] if b"\n" in end else b""
    missing = size - len(start) - len(end)
    note = _note(
        _RECORD,
        f"The action's record of the run is {size:,} bytes, more than the {max_bytes:,} that"
        f" are read: the tests recorded in the {missing:,} bytes between its first and its last"
        " part are missing from this report when it comes from the record.",
    )
    return [*_records(start), note, *_records(end)]


STATE_HEAD_BYTES = 64 * 1024  # of the record read for the session's start (its second line)
# Of the record read for its end and the test that was running: the last 64 KB, then four times
# as much while that holds no test's start, up to 1 MB (a 1 MB tail is thousands of records).
STATE_TAIL_BYTES = 64 * 1024
STATE_TAIL_MAX_BYTES = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class RecordState:
    """What the run needs of the record when pytest's own report stands: whether the session
    started and finished, which test was running (None: none)."""

    started: bool = False
    finished: bool = False
    running: str | None = None


def read_state(path: Path) -> RecordState:
    """The record's state from its first STATE_HEAD_BYTES and its last part: the plugin writes
    the session's start second and its end last, and a test's start just before its reports,
    so the tail is read back from the end until it holds a test's start (at most
    STATE_TAIL_MAX_BYTES). Only when no test starts in that much (one test with more reports
    than fit, subtests) is the whole record read. A record that cannot be read is an empty
    state."""
    try:
        with _open_plain_file(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(STATE_HEAD_BYTES)
            tail_bytes = STATE_TAIL_BYTES
            while size > len(head) + tail_bytes:
                handle.seek(size - tail_bytes)
                tail = handle.read(tail_bytes)
                last = _records(tail[tail.find(b"\n") + 1 :])
                if any(r.get("e") == "start" for r in last):
                    return _state(_records(head[: head.rfind(b"\n") + 1]), last)
                if tail_bytes >= STATE_TAIL_MAX_BYTES:
                    break  # no test starts in the last 1 MB: read it all, below
                tail_bytes *= 4
            else:  # the tail reached the head: the record is small, read whole
                handle.seek(0)
                records = _records(handle.read())
                return _state(records, records)
    except OSError:
        return RecordState()
    records = read_progress(path)
    return _state(records, records)


def _state(first: list[dict[str, Any]], last: list[dict[str, Any]]) -> RecordState:
    return RecordState(
        started=any(r.get("e") == "sessionstart" for r in first),
        finished=any(r.get("e") == "sessionfinish" for r in last),
        running=running_test(last),
    )


def _records(data: bytes) -> list[dict[str, Any]]:
    records = []
    for line in data.decode("utf-8", "replace").split("\n"):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # cut short by a kill; or written by the tests
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _note(name: str, message: str, detail: str = "") -> dict[str, Any]:
    """A record of ours, not the plugin's: synthesize_junit turns it into an error case."""
    return {"e": "note", "name": name, "message": message, "detail": detail}


_RECORD = "record of the run"


class _Refused(OSError):
    """A file the tests replaced or filled: what it is, for people."""


def _open_plain_file(path: Path) -> IO[bytes]:
    """`path` opened for reading when it is a regular file. The tests can put anything there:
    a link could stand for any file of this machine, and a pipe or a device blocks or never
    ends, so those are _Refused. FileNotFoundError when there is nothing."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _Refused(error.errno, "it is a symbolic link") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a pipe, a socket or a device"
            raise _Refused(errno.EINVAL, f"it is {kind}, not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _why(error: OSError) -> str:
    if isinstance(error, _Refused):
        return str(error.strerror)
    return f"it cannot be read ({error.strerror or error})"


def running_test(records: list[dict[str, Any]]) -> str | None:
    """The test that started and has no teardown report: the one pytest was running."""
    running = None
    for record in records:
        if record.get("e") == "start":
            running = record.get("nodeid")
        elif (
            record.get("e") == "report"
            and record.get("when") == "teardown"
            and record.get("nodeid") == running
        ):
            running = None
    return running


# What XML 1.0's Char production leaves out (quicker to compile than the ranges it allows).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(value: Any) -> str:
    return _XML_ILLEGAL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def synthesize_junit(
    records: list[dict[str, Any]], *, unfinished_reason: str = "", output_tail: str = ""
) -> bytes:
    """JUnit XML (pytest's xunit1 shape) from the crash record. Finished tests keep their
    outcome; the test still running when pytest died is an error carrying `unfinished_reason`
    and the output tail, and the tests collected after it that never started are skipped as
    `not run` (type NOT_RUN_TYPE). Modules that failed or were skipped at collection are
    written as pytest writes them. Each case carries its node id (a `nodeid` attribute); the
    subtest counts are the suite's properties. Each `note` record (`_note`: a file of the run
    that was not used) is an error case of class name `modal-gpu-action`: a problem of the run,
    not a test. The tests can write to the record too: a field of the wrong type is left out,
    never fatal."""
    # Imported here: most runs never synthesise a report (pytest's own is whole).
    import socket
    import xml.etree.ElementTree as ET

    cases: dict[str, dict[str, Any]] = {}
    collected: list[list[Any]] = []
    subtests = {"passed": 0, "failed": 0, "skipped": 0}
    for record in records:
        event, nodeid = record.get("e"), record.get("nodeid")
        if event == "collected" and _is_list_of(record.get("items"), list):
            collected += [item for item in record["items"] if item and isinstance(item[0], str)]
            continue
        if event not in ("start", "report", "collecterror", "collectskip"):
            continue
        if not isinstance(nodeid, str):
            continue
        case = cases.setdefault(nodeid, {"reports": [], "record": record, "collect": None})
        if event == "report":
            case["reports"].append(record)
            outcome = record.get("outcome")
            if "subtest" in record and isinstance(outcome, str) and outcome in subtests:
                subtests[outcome] += 1
        elif event in ("collecterror", "collectskip"):
            case["collect"] = record
    prefix = next((r.get("junit_prefix") for r in records if r.get("e") == "configure"), "")
    prefix = prefix if isinstance(prefix, str) else ""
    if unfinished_reason:
        for item in collected:
            if item[0] not in cases:
                cases[item[0]] = {
                    "reports": [],
                    "record": {"location": list(item[1:3])},
                    "collect": None,
                    "not_run": True,
                }

    suite = ET.Element("testsuite", name="pytest")
    if any(subtests.values()):
        holder = ET.SubElement(suite, "properties")
        for kind, count in subtests.items():
            ET.SubElement(holder, "property", name=SUBTESTS_PROPERTY + kind, value=str(count))
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for nodeid, case in cases.items():
        names = case["record"].get("junit")
        if not (_is_list_of(names, str) and len(names) == 2):
            names = junit_names(nodeid, prefix)
        element = ET.SubElement(
            suite, "testcase", classname=_xml_text(names[0]), name=_xml_text(names[1])
        )
        location = next(
            (
                r["location"]
                for r in (case["record"], *case["reports"])
                if _is_list_of(r.get("location"), (str, int, type(None)))
                and r["location"]
                and isinstance(r["location"][0], str)
            ),
            None,
        )
        if location:
            element.set("file", _xml_text(location[0]))
            if len(location) > 1 and isinstance(location[1], int):
                element.set("line", str(location[1]))
        element.set("nodeid", _xml_text(nodeid))
        duration = sum(_seconds(r.get("duration")) for r in case["reports"])
        total_time += duration
        element.set("time", f"{duration:.3f}")
        kinds = []
        collect = case["collect"]
        if collect is not None and collect.get("e") == "collectskip":
            kinds.append(_child(element, "skipped", "collection skipped", collect.get("text")))
        elif collect is not None:
            kinds.append(_child(element, "error", "collection failure", collect.get("text")))
        for report in case["reports"]:
            kinds += _report_children(element, report)
        properties: Any = next(
            (r["properties"] for r in reversed(case["reports"]) if r.get("properties")), []
        )
        if properties and _is_list_of(properties, list) and all(len(p) == 2 for p in properties):
            holder = ET.Element("properties")
            for key, value in properties:
                ET.SubElement(holder, "property", name=_xml_text(key), value=_xml_text(value))
            element.insert(0, holder)
        finished = collect is not None or any(r.get("when") == "teardown" for r in case["reports"])
        if case.get("not_run"):
            message = f"not run: {unfinished_reason}"
            kinds.append(_child(element, "skipped", message, "", kind=NOT_RUN_TYPE))
        elif not finished and unfinished_reason:
            detail = unfinished_reason + (
                "\n\nLast lines of output:\n" + output_tail if output_tail else ""
            )
            kinds.append(
                _child(element, "error", f"test did not finish: {unfinished_reason}", detail)
            )
        totals["tests"] += 1
        totals["failures"] += "failure" in kinds
        totals["errors"] += "error" in kinds
        totals["skipped"] += "skipped" in kinds and "failure" not in kinds and "error" not in kinds
    for note in records:
        if note.get("e") == "note":
            element = ET.SubElement(
                suite, "testcase", classname=PROBLEM_CLASSNAME, name=_xml_text(note.get("name"))
            )
            _child(element, "error", str(note.get("message")), note.get("detail"))
    for key, value in totals.items():
        suite.set(key, str(value))
    suite.set("time", f"{total_time:.3f}")
    suite.set("timestamp", time.strftime("%Y-%m-%dT%H:%M:%S"))
    suite.set("hostname", socket.gethostname())
    root = ET.Element("testsuites", name="pytest tests")
    root.append(
        ET.Comment(
            " synthesised by modal-gpu-action from its progress record: pytest did not write this report "
        )
    )
    root.append(suite)
    body: bytes = ET.tostring(root, encoding="utf-8")  # no declaration of its own for UTF-8
    return b'<?xml version="1.0" encoding="utf-8"?>' + body


def _is_list_of(value: Any, kind: type | tuple[type, ...]) -> bool:
    return isinstance(value, list) and all(isinstance(item, kind) for item in value)


def _seconds(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e9:
        return float(value)
    return 0.0


def _report_children(element: ET.Element, report: dict[str, Any]) -> list[str]:
    when, outcome = report.get("when"), report.get("outcome")
    message, text = str(report.get("message") or ""), report.get("text")
    wasxfail = report.get("wasxfail")
    if outcome == "failed":
        if when == "call" and wasxfail is not None:
            return [_child(element, "failure", f"[XPASS(strict)] {wasxfail}", text)]
        if when == "call":
            return [_child(element, "failure", message, text)]
        return [_child(element, "error", f'failed on {when} with "{message}"', text)]
    if outcome == "skipped":
        if wasxfail is not None:
            return [_child(element, "skipped", str(wasxfail), text, kind="pytest.xfail")]
        return [_child(element, "skipped", message, text, kind="pytest.skip")]
    return []


def _child(parent: ET.Element, tag: str, message: str, text: Any, kind: str = "") -> str:
    child = parent.makeelement(tag, {"message": _xml_text(message)})
    parent.append(child)
    if kind:
        child.set("type", kind)
    if text:
        child.text = _xml_text(text)
    return tag
