"""One JUnit `<testcase>` (its attributes and result elements, as junit_reader.py streams them)
made into a `TestCase`, or a `Problem` for the runner's own entries.

- The outcome by its worst result element: error, then failure, then skipped (as the corpus counts
  them); no result element is a pass, or a skip when the producer marks it `status="disabled"`.
  A result element is any `<error>`, `<failure>` or `<skipped>` inside the case (as junitparser
  counted them); its text is the text before its first child element.
- Several failures or errors in one case (unittest `subTest`, a teardown error after a failed
  call) are all kept: the worst gives the outcome, message and detail, the others are `more`.
- Re-runs (Maven Surefire's shape, which the runner writes too): a case with no failure or
  error but `<flakyFailure>`/`<flakyError>` children is a flaky pass; `<rerunFailure>`/
  `<rerunError>` beside its `<failure>` are the re-runs of a test that kept failing. Both are
  the case's `reruns`.
- The runner's own entries (container/record.py, junit_writer.py): an error case of class name
  `modal-gpu-action` is a `Problem`; `<skipped type="modal-gpu-action.not-run">` a test that was
  collected but never started (NOT_RUN).
- The node id (`TestCase.nodeid`, what `pytest` takes to run the test again): the `nodeid`
  attribute the runner's pytest plugin adds, else, in pytest's xunit1 reports, worked out from
  `file` and the names (`pytest_node_id`); other producers' cases keep their names. One that is
  the class's `path::classes`, `::` and the name (worked out, or given so, as a run's pytest
  report and the merged report give nearly every test's) is stored as that prefix, shared by
  the class's cases (a `NodePrefix`, results.py), which `TestCase.nodeid` completes with the
  name when read.
- pytest writes an xfail as `<skipped type="pytest.xfail">`: XFAILED. It writes a non-strict
  xpass as a plain pass, so that one cannot be told apart and stays PASSED; only the legacy
  `<skipped message="xfail-marked test passes unexpectedly">` becomes XPASSED. A strict xpass is
  a `<failure message="[XPASS(strict)] ...">` and stays FAILED: it fails the run.
- file/line: for a failure or error, the last `path.py:N: ` location in pytest's traceback that
  lies in the test's file (or, when the producer gives no file, as with pytest's default xunit2,
  the last one with a relative path), because that is the line that failed. Otherwise the `file`
  and `line` attributes; pytest writes `line` 0-based, so it is shifted for pytest's reports.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import fields
from typing import TypeVar

from modal_gpu_action.report.results import (
    CaseOutcome,
    CaseResult,
    NodePrefix,
    Problem,
    TestCase,
)

# What the runner writes besides pytest's results (container/record.py and progress.py write
# them; a test checks the names agree): an error case of this class name is a problem of the run;
# a skipped case of this type a test collected but never started; these suite properties
# pytest's subtest counts.
PROBLEM_CLASSNAME = "modal-gpu-action"
NOT_RUN_TYPE = "modal-gpu-action.not-run"
SUBTESTS_PROPERTY = "modal-gpu-action.subtests-"

# A result element as read: its tag, its attributes, the pieces of its text.
Result = tuple[str, dict[str, str], list[str]]
RESULT_TAGS = frozenset({"error", "failure", "skipped"})
# A case's runs besides the one its outcome comes from, as Maven Surefire (and the runner,
# container/reruns.py) writes them; pytest-rerunfailures' JUnit support (its pull request 380)
# writes the earlier attempts of a test that kept failing as flakyFailure beside its <failure>.
# Their text is a <stackTrace> child (junit_reader.py reads it as the element's text).
RERUN_TAGS = {
    "flakyFailure": CaseOutcome.FAILED,
    "flakyError": CaseOutcome.ERROR,
    "rerunFailure": CaseOutcome.FAILED,
    "rerunError": CaseOutcome.ERROR,
}
_SEVERITY = {"error": 3, "failure": 2, "skipped": 1}

# pytest's messages for a module (or class) that failed or was skipped at collection.
_COLLECTION_MESSAGES = frozenset({"collection failure", "collection skipped"})

# Values that repeat across cases (class names, files, times, lines, the node id's prefix) are
# worked out once and shared, not stored once per case (about 150 bytes a case less). Bounded,
# for hostile reports.
_SHARED_VALUES = 65_536
# A case's class name and file as shared, its class's node id prefix and that prefix with `::`.
_Where = tuple[str, str | None, str, str]
_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


class CaseReader:
    """Makes each `<testcase>` of one report a TestCase (or Problem); `read` is the one place a
    case's attributes and result elements are interpreted."""

    __slots__ = ("_from_pytest", "_lines", "_seconds", "_where")

    def __init__(self, from_pytest: bool) -> None:
        # pytest's reports (recognised by their suite names) write `line` 0-based and, in
        # xunit1, give the file a node id is worked out from.
        self._from_pytest = from_pytest
        # (classname, file) attributes -> the shared class name and file, node id prefixes
        self._where: dict[tuple[str | None, str | None], _Where] = {}
        self._seconds: dict[str | None, float] = {}
        self._lines: dict[str | None, int | None] = {}

    def read(self, attributes: dict[str, str], results: list[Result]) -> TestCase | Problem:
        get = attributes.get
        name = get("name", "")
        # (Subscripts rather than .get, keys as the attributes come: a million times, it shows.)
        try:
            classname, file, prefix, head = self._where[get("classname"), get("file")]
        except KeyError:
            classname, file, prefix, head = self._where_of(get("classname"), get("file"))
        time = get("time")
        try:
            duration = self._seconds[time]
        except KeyError:
            duration = self._share(time, self._seconds, seconds(time))
        line_text = get("line")
        try:
            line = self._lines[line_text]
        except KeyError:
            line = self._share(line_text, self._lines, _line(line_text, self._from_pytest))
        # The node id: the `nodeid` attribute (the runner's plugin adds it to pytest's report,
        # and the merged report keeps it), held as the class's shared prefix (a NodePrefix: the
        # case's `nodeid` adds `::name` when read) when it is that prefix and the name; without
        # one, in pytest's reports, the prefix or, when the name decides, worked out.
        nodeid: str = get("nodeid") or ""
        if nodeid:
            if nodeid == head + name:
                nodeid = prefix
        elif self._from_pytest:
            nodeid = prefix or pytest_node_id(classname, name, file)
        if not results:
            disabled = "status" in attributes and attributes["status"] == "disabled"
            # _NewCase(classname, name, outcome, duration, "", "", file, line, nodeid), written
            # out: most cases take this path, and the call is a tenth of a case's time.
            case = _new_object(_NewCase)
            case.classname = classname
            case.name = name
            case.outcome = _SKIPPED if disabled else _PASSED
            case.duration = duration
            case.message = case.detail = ""
            case.file = file
            case.line = line
            case.nodeid = nodeid
            case.collection = False
            case.more = case.reruns = ()
            case.__class__ = TestCase  # type: ignore[assignment]
            return case  # type: ignore[return-value]

        reruns: tuple[CaseResult, ...] = ()
        if any(result[0] in RERUN_TAGS for result in results):  # only a re-run test's
            reruns = tuple(
                CaseResult(RERUN_TAGS[tag], attrs.get("message") or "", "".join(text))
                for tag, attrs, text in results
                if tag in RERUN_TAGS
            )
            results = [result for result in results if result[0] not in RERUN_TAGS]
            if not results:  # passed on a re-run: flaky
                return _NewCase(  # type: ignore[return-value]
                    classname, name, CaseOutcome.PASSED, duration, "", "", file, line, nodeid,
                    reruns=reruns,
                )  # fmt: skip
        worst = max(results, key=_severity)  # max keeps the first of equals
        tag, worst_attributes, text = worst
        message = worst_attributes.get("message") or ""
        detail = "".join(text)
        kind = worst_attributes.get("type")
        collection = message in _COLLECTION_MESSAGES
        more: tuple[CaseResult, ...] = ()
        if tag != "skipped":
            if classname == PROBLEM_CLASSNAME and tag == "error":
                return Problem(name, message, detail)
            outcome = CaseOutcome.ERROR if tag == "error" else CaseOutcome.FAILED
            file, line = _crash_location(detail, file, line)
            if len(results) > 1:
                more = tuple(
                    CaseResult(
                        CaseOutcome.ERROR if other[0] == "error" else CaseOutcome.FAILED,
                        other[1].get("message") or "",
                        "".join(other[2]),
                    )
                    for other in results
                    if other is not worst and other[0] != "skipped"
                )
        elif kind == "pytest.xfail":
            outcome = CaseOutcome.XFAILED
        elif kind == NOT_RUN_TYPE:
            outcome = CaseOutcome.NOT_RUN
        elif message == "xfail-marked test passes unexpectedly":
            outcome = CaseOutcome.XPASSED
        else:
            outcome = CaseOutcome.SKIPPED
            message = _collection_skip_reason(message, detail) or message
        return _NewCase(  # type: ignore[return-value]
            classname,
            name,
            outcome,
            duration,
            message,
            detail,
            file,
            line,
            nodeid,
            collection,
            more,
            reruns,
        )

    def _where_of(self, classname: str | None, file: str | None) -> _Where:
        """For a case's `classname` and `file` attributes as given: the class name and file to
        share; the class's node id prefix, `path::classes` (a NodePrefix, the common case) or ""
        when the name decides it; and that prefix with `::`, what a whole node id of the class
        starts with ("\0", which none starts with, when there is no prefix). Kept while there
        is room."""
        where = classname or "", file or None
        prefix = _node_prefix(*where)
        head = f"{prefix}::" if prefix else "\0"
        return self._share((classname, file), self._where, (*where, prefix, head))

    @staticmethod
    def _share(key: _Key, values: dict[_Key, _Value], value: _Value) -> _Value:
        """`value`, kept for `key` while there is room."""
        if len(values) < _SHARED_VALUES:
            values[key] = value
        return value


def _severity(result: Result) -> int:
    return _SEVERITY[result[0]]


def seconds(text: str | None) -> float:
    """A `time` attribute in seconds: 0 when missing, negative, not finite or unreadable."""
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:  # e.g. a locale-formatted "1,5" from some producer
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


def _line(text: str | None, zero_based: bool) -> int | None:
    if not text or not text.isdecimal() or len(text) > 9:
        return None
    return int(text) + zero_based


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


def _node_prefix(classname: str, file: str | None) -> str:
    """`path::classes` (a NodePrefix) when `classname` starts with `file`'s module, else "" (the
    name decides)."""
    if not file or not file.endswith(".py"):
        return ""
    path, module = _module_of(file)
    size = len(module)
    if not classname.startswith(module) or (len(classname) != size and classname[size] != "."):
        return ""
    classes = classname[size + 1 :].replace(".", "::")
    return NodePrefix(f"{path}::{classes}" if classes else path)


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


class _NewCase:
    """TestCase(classname, name, ...), only faster: a frozen dataclass's __init__ stores each
    field through object.__setattr__, three times slower than storing into a plain object's
    slots, which counts at a million cases. So the fields are stored into an object of this
    class, which has TestCase's slots in TestCase's order (so Python lets it change class), and
    it then becomes a TestCase, the same as one TestCase() made."""

    __slots__ = TestCase.__slots__

    def __init__(
        self,
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
        reruns: tuple[CaseResult, ...] = (),
    ) -> None:
        self.classname = classname
        self.name = name
        self.outcome = outcome
        self.duration = duration
        self.message = message
        self.detail = detail
        self.file = file
        self.line = line
        self.nodeid = nodeid
        self.collection = collection
        self.more = more
        self.reruns = reruns
        self.__class__ = TestCase  # type: ignore[assignment]


_new_object = object.__new__
_PASSED, _SKIPPED = CaseOutcome.PASSED, CaseOutcome.SKIPPED

# Fails at import when TestCase gains a field that _NewCase does not set.
if _NewCase.__init__.__code__.co_argcount != 1 + len(fields(TestCase)):
    raise TypeError("_NewCase must set every field of TestCase")


# pytest's traceback locations: "tests/test_gpu.py:42: AssertionError" or "...:42: in helper".
_LOCATION = re.compile(r"^([^\s:][^:\n]*\.py):([0-9]{1,9}): ", re.MULTILINE)


def _crash_location(
    detail: str, file: str | None, line: int | None
) -> tuple[str | None, int | None]:
    for path, number in reversed(_LOCATION.findall(detail)):
        if path == file or (file is None and not path.startswith(("/", ".."))):
            return path, int(number)
    return file, line
