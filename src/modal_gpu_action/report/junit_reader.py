"""JUnit XML (pytest's and other producers') parsed into a TestReport (results.py).

Contract (other modules rely on it; keep the names):
- `parse_junit(source: str | Path | bytes, *, name: str = "") -> TestReport`: one file or XML text.
  Never raises for what the source is or holds (the tests wrote it): a truncated/empty document
  keeps every complete case and adds one problem saying the report was cut short; a source
  that cannot be used at all is a report with one problem saying why: missing, not a regular
  file (a directory, a pipe, a device), entities declared (refused before any is expanded:
  XML bombs, external entities), a root other than <testsuites>/<testsuite>.
- `read_junit(...)`: the same, but a source that cannot be used at all raises `JUnitFileError`
  naming it (the `report` command's exit 2 for a file that is no JUnit report).

Size: at most `max_bytes` (MAX_JUNIT_BYTES, 64 MiB) of a report are read; a longer one keeps the
complete cases of its first 64 MiB and adds one ERROR case giving its size and the cap.

Parsing: defusedxml's expat parser (which refuses entity declarations before expanding any)
feeds ElementTree's C TreeBuilder, and each `<testcase>` is read as it closes, junitparser reading
its result elements; memory stays flat and a truncated document keeps every complete case.

How a `<testcase>` becomes a `TestCase`:
- The outcome by its worst result element: error, then failure, then skipped (as the corpus counts
  them); no result element is a pass, or a skip when the producer marks it `status="disabled"`.
- Several failures or errors in one case (unittest `subTest`, a teardown error after a failed
  call) are all kept: the worst gives the outcome, message and detail, the others are `more`.
- The runner's own entries (container/record.py, junit_writer.py): an error case of class name
  `modal-gpu-action` is a `Problem`; `<skipped type="modal-gpu-action.not-run">` a test that was
  collected but never started (NOT_RUN); suite properties `modal-gpu-action.subtests-passed`
  (`-failed`, `-skipped`) pytest's subtest counts.
- Re-runs (Maven Surefire's shape, which the runner writes too): a case with no failure or
  error but `<flakyFailure>`/`<flakyError>` children is a flaky pass; `<rerunFailure>`/
  `<rerunError>` beside its `<failure>` are the re-runs of a test that kept failing. Both are
  the case's `reruns` (`_with_reruns`).
- The node id (`TestCase.nodeid`, what `pytest` takes to run the test again): the `nodeid`
  attribute the runner's pytest plugin adds, else, in pytest's xunit1 reports, worked out from
  `file` and the names (`pytest_node_id`); other producers' cases keep their names.
- pytest writes an xfail as `<skipped type="pytest.xfail">`: XFAILED. It writes a non-strict
  xpass as a plain pass, so that one cannot be told apart and stays PASSED; only the legacy
  `<skipped message="xfail-marked test passes unexpectedly">` becomes XPASSED. A strict xpass is
  a `<failure message="[XPASS(strict)] ...">` and stays FAILED: it fails the run.
- file/line: for a failure or error, the last `path.py:N: ` location in pytest's traceback that
  lies in the test's file (or, when the producer gives no file, as with pytest's default xunit2,
  the last one with a relative path), because that is the line that failed. Otherwise the `file`
  and `line` attributes; pytest writes `line` 0-based, so it is shifted for pytest's reports
  (recognised by their suite names, "pytest tests" and "pytest").
- wall_time: the largest `time` of the `<testsuites>`/`<testsuite>` elements (the enclosing
  element's time covers the nested ones), or the sum of the case durations when none has one
  (nor one that was cut off before its end).
  Merged shards ran in parallel, so `merge` (merging.py) keeps the longest wall time rather than the sum.
"""

from __future__ import annotations

import functools
import math
import os
import re
import stat
from dataclasses import fields, replace
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder
from xml.parsers.expat import errors as expat_errors

import defusedxml
import defusedxml.ElementTree as safe_etree
from junitparser import Error, Failure
from junitparser import TestCase as JUnitCase

from modal_gpu_action.report.results import (
    CaseOutcome,
    CaseResult,
    Problem,
    Subtests,
    TestCase,
    TestReport,
)


class JUnitError(Exception):
    """A JUnit report that cannot be used."""


class JUnitFileError(JUnitError):
    """A JUnit file that is missing, unreadable or refused; the message names it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


MAX_JUNIT_BYTES = 64 * 1024 * 1024


def parse_junit(
    source: str | Path | bytes, *, name: str = "", max_bytes: int = MAX_JUNIT_BYTES
) -> TestReport:
    """One JUnit document: a path (str or Path) or the XML itself (bytes). Never raises for what
    it is or holds: a source that cannot be used is a report with one problem saying why."""
    try:
        return read_junit(source, name=name, max_bytes=max_bytes)
    except JUnitFileError as error:
        return TestReport(sources=(error.path,)).with_problem(
            f"JUnit report {error.path}", f"The JUnit report was not used: {error.reason}"
        )


def read_junit(
    source: str | Path | bytes, *, name: str = "", max_bytes: int = MAX_JUNIT_BYTES
) -> TestReport:
    """`parse_junit`, except that a source that cannot be used at all (missing, unreadable, not
    a regular file, entities declared, not a JUnit report) raises JUnitFileError naming it."""
    if isinstance(source, bytes):
        data = source if len(source) <= max_bytes else source[:max_bytes]
        return _parse(data, name or "<JUnit XML>", len(source), max_bytes)
    data, size = _read(source, max_bytes)
    return _parse(data, name or str(source), size, max_bytes)


def _read(path: str | Path, max_bytes: int) -> tuple[bytes, int]:
    """At most `max_bytes` of the file, and its size. A link is followed (shards come as
    artifacts), but only to a regular file: a pipe or a device could block or never end."""
    try:
        # O_NONBLOCK: opening a pipe that nobody writes to returns at once (and is refused).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise JUnitFileError(path, "no such file") from None
    except OSError as exc:
        raise JUnitFileError(path, f"cannot be read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise JUnitFileError(path, "is a directory, not a JUnit XML file")
        if not stat.S_ISREG(mode):
            raise JUnitFileError(path, "is not a regular file (a pipe, a socket or a device)")
        with open(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
        size = max(os.fstat(fd).st_size, len(data))
    except OSError as exc:
        raise JUnitFileError(path, f"cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return (data if len(data) <= max_bytes else data[:max_bytes]), size


# Where expat stops when the document simply ends early (pytest or the machine killed mid-write).
_CUT_SHORT_CODES = frozenset(
    expat_errors.codes[message]
    for message in (
        expat_errors.XML_ERROR_NO_ELEMENTS,
        expat_errors.XML_ERROR_UNCLOSED_TOKEN,
        expat_errors.XML_ERROR_PARTIAL_CHAR,
        expat_errors.XML_ERROR_UNCLOSED_CDATA_SECTION,
    )
)


# pytest names its suites so; its `line` attributes are 0-based.
_PYTEST_SUITE = re.compile(rb'<testsuites?\s[^>]*name="pytest(?: tests)?"')


def _parse(data: bytes, label: str, size: int, cap: int) -> TestReport:
    """The report in `data`: the first `cap` bytes of a source of `size` bytes."""
    cases: list[TestCase] = []
    problems: list[Problem] = []
    subtests: list[Subtests] = []
    suite_times: list[float] = []
    from_pytest = _PYTEST_SUITE.search(data, 0, 4096) is not None
    builder = TreeBuilder()

    def end(tag: str) -> None:
        elem = builder.end(tag)
        if tag == "testcase":
            case = _case(elem, from_pytest)
            if len(elem):  # a re-run's runs are children: most cases have none
                case = _with_reruns(case, elem)
            (cases if isinstance(case, TestCase) else problems).append(case)  # type: ignore[arg-type]
            elem.clear()  # keeps memory flat on large reports
        elif tag == "testsuite" or tag == "testsuites":
            suite_times.append(_seconds(elem.get("time")))
            counts = _subtests(elem)
            if counts is not None:
                subtests.append(counts)

    # defusedxml's parser refuses entity declarations (XML bombs, external entities) before
    # anything is expanded. Its elements go straight to the C TreeBuilder: JUnit uses no XML
    # namespaces, so ElementTree's Python-level name fixing (half the parse time) is skipped.
    # Cases are taken as they close, so a truncated document keeps every complete one.
    parser = safe_etree.DefusedXMLParser(target=builder)
    parser.parser.ordered_attributes = False
    parser.parser.StartElementHandler = builder.start
    parser.parser.EndElementHandler = end

    def report() -> TestReport:
        return TestReport(
            tuple(cases),
            _wall_time(suite_times, cases),
            (label,),
            tuple(problems),
            sum(subtests, Subtests()),
        )

    try:
        parser.feed(data)
        root = parser.close()
    except defusedxml.DefusedXmlException as exc:
        raise JUnitFileError(
            label,
            f"refused: the XML declares entities ({exc}); an entity can expand into a huge "
            "document or read local files, and JUnit XML never needs one",
        ) from None
    except (LookupError, ValueError) as exc:  # the declared encoding: unknown, or multi-byte
        raise JUnitFileError(label, f"cannot be decoded: {exc}") from None
    except ParseError as exc:
        # An unclosed suite's time was never read: the wall time falls back to the cases' sum.
        damage = _too_big(size, cap, cases) if size > cap else _damage(data, exc, cases)
        return report().with_problem(f"JUnit report {label}", *damage)
    if root.tag not in ("testsuites", "testsuite"):
        raise JUnitFileError(label, f"not a JUnit XML report: its root is <{root.tag[:100]}>")
    if size > cap:  # the cap fell after the root's end: whatever followed was not read either
        return report().with_problem(f"JUnit report {label}", *_too_big(size, cap, cases))
    return report()


def _subtests(suite: Element) -> Subtests | None:
    """The subtest counts a suite's own properties give (`modal-gpu-action.subtests-passed`...)."""
    properties = suite.find("properties")
    if properties is None:
        return None
    counts: dict[str, int] = {}
    for prop in properties.iter("property"):
        name, value = prop.get("name") or "", prop.get("value") or ""
        if name.startswith(SUBTESTS_PROPERTY) and value.isdecimal() and len(value) < 10:
            counts[name[len(SUBTESTS_PROPERTY) :]] = int(value)
    if not counts:
        return None
    return Subtests(counts.get("passed", 0), counts.get("failed", 0), counts.get("skipped", 0))


def _too_big(size: int, cap: int, cases: list[TestCase]) -> tuple[str, str]:
    message = (
        f"The JUnit report is {size:,} bytes, more than the {cap:,} bytes that are read: kept the"
        f" {_kept(cases)} in its first {cap:,} bytes; whatever came after was not read."
    )
    return (
        message,
        f"At most {cap:,} bytes of a JUnit report are read, so that no report can exhaust memory.",
    )


def _damage(data: bytes, exc: ParseError, cases: list[TestCase]) -> tuple[str, str]:
    """Message and detail for a report that ends early or is not well-formed."""
    kept = _kept(cases)
    if not data.strip():
        message = "The JUnit report was cut short: the file is empty."
    elif exc.code in _CUT_SHORT_CODES:
        message = f"The JUnit report was cut short after {kept}; later results are missing."
    else:
        message = f"The JUnit report is not well-formed XML; kept the {kept} before the damage."
    return message, f"XML parse error: {exc}"


def _kept(cases: list[TestCase]) -> str:
    return f"{len(cases):,} complete test case{'' if len(cases) == 1 else 's'}"


def _wall_time(suite_times: list[float], cases: list[TestCase]) -> float:
    return max(suite_times, default=0.0) or math.fsum(case.duration for case in cases)


def _seconds(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:  # e.g. a locale-formatted "1,5" from some producer
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


# A case's runs besides the one its outcome comes from, as Maven Surefire (and the runner,
# container/reruns.py) writes them; pytest-rerunfailures' JUnit support (its pull request 380)
# writes the earlier attempts of a test that kept failing as flakyFailure beside its <failure>.
# The text is a <stackTrace> child, or the element's own text.
_RERUN_TAGS = {
    "flakyFailure": CaseOutcome.FAILED,
    "flakyError": CaseOutcome.ERROR,
    "rerunFailure": CaseOutcome.FAILED,
    "rerunError": CaseOutcome.ERROR,
}


def _with_reruns(case: TestCase | Problem, elem: Element) -> TestCase | Problem:
    """`case` with the failed runs of a re-run test that its outcome does not come from."""
    if not isinstance(case, TestCase):
        return case
    reruns = tuple(
        CaseResult(
            _RERUN_TAGS[child.tag],
            child.get("message") or "",
            child.findtext("stackTrace") or child.text or "",
        )
        for child in elem
        if child.tag in _RERUN_TAGS
    )
    return replace(case, reruns=reruns) if reruns else case


def _case(elem: Element, from_pytest: bool) -> TestCase | Problem:
    get = elem.attrib.get
    classname, name, file = get("classname", ""), get("name", ""), get("file") or None
    duration = _seconds(get("time"))
    line = _line(get("line"), from_pytest)
    nodeid = get("nodeid") or (pytest_node_id(classname, name, file) if from_pytest else "")
    # Most cases have no child at all: skip junitparser's wrapper objects for them (speed).
    # (junitparser's fromelem carries no annotations.)
    results: list[Any] = JUnitCase.fromelem(elem).result if len(elem) else []  # type: ignore[no-untyped-call]
    if not results:
        outcome = CaseOutcome.SKIPPED if get("status") == "disabled" else CaseOutcome.PASSED
        return _new_case(classname, name, outcome, duration, "", "", file, line, nodeid)

    worst = max(results, key=_severity)  # max keeps the first of equals
    message = worst.message or ""
    detail = worst.text or ""
    collection = message in _COLLECTION_MESSAGES
    more: tuple[CaseResult, ...] = ()
    if isinstance(worst, Error | Failure):
        if classname == PROBLEM_CLASSNAME and isinstance(worst, Error):
            return Problem(name, message, detail)
        outcome = CaseOutcome.ERROR if isinstance(worst, Error) else CaseOutcome.FAILED
        file, line = _crash_location(detail, file, line)
        if len(results) > 1:
            more = tuple(
                CaseResult(
                    CaseOutcome.ERROR if isinstance(result, Error) else CaseOutcome.FAILED,
                    result.message or "",
                    result.text or "",
                )
                for result in results
                if result is not worst and isinstance(result, Error | Failure)
            )
    elif worst.type == "pytest.xfail":
        outcome = CaseOutcome.XFAILED
    elif worst.type == NOT_RUN_TYPE:
        outcome = CaseOutcome.NOT_RUN
    elif message == "xfail-marked test passes unexpectedly":
        outcome = CaseOutcome.XPASSED
    else:
        outcome = CaseOutcome.SKIPPED
        message = _collection_skip_reason(message, detail) or message
    return _new_case(
        classname, name, outcome, duration, message, detail, file, line, nodeid, collection, more
    )


# What the runner writes besides pytest's results (container/record.py and progress.py write
# them; a test checks the names agree): an error case of this class name is a problem of the run;
# a skipped case of this type a test collected but never started; these suite properties
# pytest's subtest counts.
PROBLEM_CLASSNAME = "modal-gpu-action"
NOT_RUN_TYPE = "modal-gpu-action.not-run"
SUBTESTS_PROPERTY = "modal-gpu-action.subtests-"

# pytest's messages for a module (or class) that failed or was skipped at collection.
_COLLECTION_MESSAGES = frozenset({"collection failure", "collection skipped"})


def pytest_node_id(classname: str, name: str, file: str | None) -> str:
    """The node id of a case of pytest's xunit1 report, from its names and `file`, "" when they
    do not tell it: `tests.test_x.TestC`, `test_m[p]`, `tests/test_x.py` ->
    `tests/test_x.py::TestC::test_m[p]` (names.py's rule, reversed where the file is known: the
    module's part of the class name is the file's path, the rest are classes, and a class name
    holds no dot). A test inherited from a class in another file has that file: ""."""
    if not file or not file.endswith(".py"):
        return ""
    path, module = _module_of(file)
    size = len(module)
    if classname.startswith(module) and (len(classname) == size or classname[size] == "."):
        start = 0  # the common case, first: no junit_prefix
    else:
        dotted = f"{classname}.{name}" if classname else name
        if dotted == module or dotted.endswith("." + module):  # a module that failed to collect
            return path
        start = classname.find("." + module + ".") + 1 or classname.find("." + module) + 1
        if not start or (classname[start + size : start + size + 1] not in ("", ".")):
            return ""
    classes = classname[start + size + 1 :].replace(".", "::")
    return f"{path}::{classes}::{name}" if classes else f"{path}::{name}"


# pytest (xunit1) reports a module skipped at collection as message "collection skipped" and the
# reason inside a tuple's repr: ('path', 7, 'Skipped: CuPy is not installed').
_COLLECTION_SKIP = re.compile(r"""^\(.*, \d+, (['"])(?:Skipped: )?(?P<reason>.*)\1\)$""", re.S)


def _collection_skip_reason(message: str, detail: str) -> str | None:
    if message != "collection skipped":
        return None
    match = _COLLECTION_SKIP.match(detail.strip())
    return match.group("reason") if match else None


@functools.lru_cache(maxsize=4096)
def _module_of(file: str) -> tuple[str, str]:
    """(the path with "/", its dotted module path): `tests\\x.py` -> `tests/x.py`, `tests.x`."""
    path = file.replace("\\", "/")
    return path, path[:-3].replace("/", ".")


# A frozen dataclass's __init__ stores each field through object.__setattr__; storing into the
# slots directly builds the same object 2.5 times faster, which counts at 100,000 cases.
_SLOT_SETTERS = tuple(getattr(TestCase, spec.name).__set__ for spec in fields(TestCase))


def _new_case(
    classname: str,
    name: str,
    outcome: CaseOutcome,
    duration: float,
    message: str,
    detail: str,
    file: str | None,
    line: int | None,
    nodeid: str = "",
    collection: bool = False,
    more: tuple[CaseResult, ...] = (),
) -> TestCase:
    """TestCase(classname, name, ...), only faster."""
    case = object.__new__(TestCase)
    (set0, set1, set2, set3, set4, set5, set6, set7, set8, set9, set10, set11) = (
        _SLOT_SETTERS  # fails if a field is added
    )
    set0(case, classname)
    set1(case, name)
    set2(case, outcome)
    set3(case, duration)
    set4(case, message)
    set5(case, detail)
    set6(case, file)
    set7(case, line)
    set8(case, nodeid)
    set9(case, collection)
    set10(case, more)
    set11(case, ())  # reruns: _case adds them
    return case


def _line(text: str | None, zero_based: bool) -> int | None:
    if not text or not text.isdecimal() or len(text) > 9:
        return None
    return int(text) + zero_based


def _severity(result: object) -> int:
    return 3 if isinstance(result, Error) else 2 if isinstance(result, Failure) else 1


# pytest's traceback locations: "tests/test_gpu.py:42: AssertionError" or "...:42: in helper".
_LOCATION = re.compile(r"^([^\s:][^:\n]*\.py):([0-9]{1,9}): ", re.MULTILINE)


def _crash_location(
    detail: str, file: str | None, line: int | None
) -> tuple[str | None, int | None]:
    for path, number in reversed(_LOCATION.findall(detail)):
        if path == file or (file is None and not path.startswith(("/", ".."))):
            return path, int(number)
    return file, line
