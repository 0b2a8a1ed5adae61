"""JUnit XML (pytest's and other producers') parsed into a TestReport (results.py).

Contract (other modules rely on it; keep the names):
- `parse_junit(source: str | Path | bytes | BinaryIO, *, name: str = "") -> TestReport`: one file
  (a path, or open), or XML text.
  Never raises for what the source is or holds (the tests wrote it): a truncated/empty document
  keeps every complete case and adds one problem saying the report was cut short; a source
  that cannot be used at all is a report with one problem saying why: missing, not a regular
  file (a directory, a pipe, a device), entities declared (refused before any is expanded:
  XML bombs, external entities), a root other than <testsuites>/<testsuite>.
- `read_junit(...)`: the same, but a source that cannot be used at all raises `JUnitFileError`
  naming it (the `report` command's exit 2 for a file that is no JUnit report).

Size: at most `max_bytes` (MAX_JUNIT_BYTES, 256 MiB) of a report are read; a longer one keeps the
complete cases of its first 256 MiB and adds one problem giving its size and the cap. Memory
holds the cases, not the file: about 240 bytes a case, 1.6 times the file for pytest's reports,
so the cap bounds memory too (pytest's report of 1.6 million cases fits, or of 1.2 million with
the node ids a run's plugin adds). The runner uses a shard's pytest file up to the same cap
(container/pytest_junit.py).

Parsing: the file is streamed, a chunk at a time, through the standard library's expat parser
with handlers of our own, which refuse an entity declaration (or an external entity reference)
before anything is expanded, as defusedxml does, and never load a DTD. No tree is built: each
`<testcase>`'s attributes and result elements are kept until it closes, then made a `TestCase`
(junit_case.py, `CaseReader.read`). So memory holds the report, not the file, and a truncated
document keeps every complete case. The cyclic garbage collector is paused while a report is
read: the parse makes no cycles, and its collections over the growing report were a third of
the time at a million cases; the cases read then join the oldest generation at once, sparing
them the young collections' visits.

What the suites give:
- the subtest counts, from a suite's `<properties>`: `modal-gpu-action.subtests-passed`
  (`-failed`, `-skipped`), pytest's subtest counts;
- wall_time: the largest `time` of the `<testsuites>`/`<testsuite>` elements (the enclosing
  element's time covers the nested ones), or the sum of the case durations when none has one
  (nor one that was cut off before its end).
  Merged shards ran in parallel, so `merge` (merging.py) keeps the longest wall time rather than the sum.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO
from xml.parsers import expat
from xml.parsers.expat import errors as expat_errors

from modal_gpu_action.report.junit_case import (
    NOT_RUN_TYPE,
    PROBLEM_CLASSNAME,
    RERUN_TAGS,
    RESULT_TAGS,
    SUBTESTS_PROPERTY,
    CaseReader,
    Result,
    pytest_node_id,
    seconds,
)
from modal_gpu_action.report.results import Problem, Subtests, TestCase, TestReport

# The runner's names and the node-id rule live in junit_case.py; they are read from here too.
__all__ = [
    "MAX_JUNIT_BYTES",
    "NOT_RUN_TYPE",
    "PROBLEM_CLASSNAME",
    "SUBTESTS_PROPERTY",
    "JUnitError",
    "JUnitFileError",
    "parse_junit",
    "pytest_node_id",
    "read_junit",
]


class JUnitError(Exception):
    """A JUnit report that cannot be used."""


class JUnitFileError(JUnitError):
    """A JUnit file that is missing, unreadable or refused; the message names it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


MAX_JUNIT_BYTES = 256 * 1024 * 1024

# How much of a file is read and parsed at a time.
_CHUNK = 1024 * 1024


def parse_junit(
    source: str | Path | bytes | BinaryIO, *, name: str = "", max_bytes: int = MAX_JUNIT_BYTES
) -> TestReport:
    """One JUnit document: a path (str or Path), the XML itself (bytes) or a binary file open at
    its start (read from there, not closed). Never raises for what it is or holds: a source that
    cannot be used is a report with one problem saying why."""
    try:
        return read_junit(source, name=name, max_bytes=max_bytes)
    except JUnitFileError as error:
        return TestReport(sources=(error.path,)).with_problem(
            f"JUnit report {error.path}", f"The JUnit report was not used: {error.reason}"
        )


def read_junit(
    source: str | Path | bytes | BinaryIO, *, name: str = "", max_bytes: int = MAX_JUNIT_BYTES
) -> TestReport:
    """`parse_junit`, except that a source that cannot be used at all (missing, unreadable, not
    a regular file, entities declared, not a JUnit report) raises JUnitFileError naming it."""
    if isinstance(source, bytes):
        chunks = _Chunks(len(source), (source[:max_bytes],))
        return _parse(chunks, name or "<JUnit XML>", max_bytes)
    if not isinstance(source, str | os.PathLike):  # open already (the local backend's shards)
        label = name or "<JUnit XML>"
        try:
            return _parse(_Chunks.of_file(source, max_bytes), label, max_bytes)
        except OSError as exc:
            raise JUnitFileError(label, f"cannot be read: {exc.strerror or exc}") from None
    with _open(source) as handle:
        return _parse(_Chunks.of_file(handle, max_bytes), name or str(source), max_bytes)


@contextlib.contextmanager
def _open(path: str | Path) -> Iterator[BinaryIO]:
    """The file, for reading. A link is followed (shards come as artifacts), but only to a
    regular file: a pipe or a device could block or never end."""
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
        handle = open(fd, "rb", closefd=False)  # noqa: SIM115 (closed below, with the descriptor)
    except OSError as exc:
        os.close(fd)
        raise JUnitFileError(path, f"cannot be read: {exc.strerror or exc}") from None
    except BaseException:
        os.close(fd)
        raise
    try:
        yield handle
    except OSError as exc:
        raise JUnitFileError(path, f"cannot be read: {exc.strerror or exc}") from None
    finally:
        handle.close()
        os.close(fd)


class _Chunks:
    """A source's first `cap` bytes, a chunk at a time, and the source's `size` (known once
    they are all read: a file may grow while it is read)."""

    def __init__(self, size: int, chunks: Iterable[bytes]) -> None:
        self.size = size
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    @classmethod
    def of_file(cls, handle: BinaryIO, cap: int) -> _Chunks:
        source = cls(os.fstat(handle.fileno()).st_size, ())
        source._chunks = source._read(handle, cap)
        return source

    def _read(self, handle: BinaryIO, cap: int) -> Iterator[bytes]:
        left = cap
        while left > 0:
            chunk = handle.read(min(_CHUNK, left))
            if not chunk:
                self.size = max(self.size, cap - left)
                return
            left -= len(chunk)
            yield chunk
        if handle.read(1):  # a byte past the cap: the file is over it, whatever fstat said
            self.size = max(self.size, cap + 1)


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

# pytest names its suites so (a report is pytest's when a suite so named opens before the first
# case); its `line` attributes are 0-based.
_PYTEST_SUITES = frozenset({"pytest tests", "pytest"})
_SUITES = frozenset({"testsuites", "testsuite"})
# The results of a case that has none (most): one shared list, never added to.
_NO_RESULTS: list[Result] = []


class _EntitiesRefused(Exception):
    """An entity declaration or external reference: refused before anything is expanded."""


def _refuse_entity(name: str, *_: object) -> None:
    raise _EntitiesRefused(f"entity {name[:100]!r}")


def _refuse_unparsed_entity(name: str, *_: object) -> None:
    raise _EntitiesRefused(f"unparsed entity {name[:100]!r}")


def _refuse_external_entity(*_: object) -> int:
    raise _EntitiesRefused("an external entity")


# What was frozen when this module was imported, which the move below releases with the cases
# (into the oldest generation, where they would be without it): the interpreter's own (none on
# 3.11 and 3.13, 375 on 3.12.1 from its start, where a guard of "nothing frozen" skipped the move
# and the first two young collections after a parse of 100,000 cases took 23 ms), and whatever
# was frozen before the action's modules were imported, which nothing of the action does. What
# the process freezes later is never released.
_FROZEN_BEFORE_US = gc.get_freeze_count()


def _parse(chunks: _Chunks, label: str, cap: int) -> TestReport:
    """The report in `chunks`: the first `cap` bytes of a source."""
    collecting = gc.isenabled()
    gc.disable()  # the parse makes no cycles: collecting over the growing report is waste
    try:
        return _Reader(label).read(chunks, cap)
    finally:
        if gc.get_freeze_count() <= _FROZEN_BEFORE_US:
            # The cases go straight to the oldest generation (two list splices, nothing
            # visited): they live as long as the report, and the young collections that the
            # next allocations start would otherwise visit every one of them (a twentieth of
            # the `report` command's time at 100,000 cases). A full collection still sees them.
            # Not where code of the process froze objects of its own (gc.freeze() keeps pages
            # shared before a fork), which `unfreeze` would release.
            gc.freeze()
            gc.unfreeze()
        if collecting:
            gc.enable()


class _Reader:
    """expat's handlers for one report, and what they gathered."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.cases: list[TestCase] = []
        self.problems: list[Problem] = []
        self.subtests: list[Subtests] = []
        self.suite_times: list[float] = []

    def read(self, source: _Chunks, cap: int) -> TestReport:
        parser = expat.ParserCreate()
        # Entities: refused where declared (XML bombs, external entities); an external DTD or
        # parameter entity is never loaded.
        parser.EntityDeclHandler = _refuse_entity
        parser.UnparsedEntityDeclHandler = _refuse_unparsed_entity
        parser.ExternalEntityRefHandler = _refuse_external_entity
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.buffer_text = True
        parser.buffer_size = 64 * 1024
        parser.StartElementHandler = self._root(parser)
        blank = True  # nothing but white space read so far
        try:
            for chunk in source:
                if blank and chunk.strip():
                    blank = False
                parser.Parse(chunk, False)
            parser.Parse(b"", True)
        except _EntitiesRefused as exc:
            raise JUnitFileError(
                self.label,
                f"refused: the XML declares entities ({exc}); an entity can expand into a huge "
                "document or read local files, and JUnit XML never needs one",
            ) from None
        except (LookupError, ValueError) as exc:  # the declared encoding: unknown, or multi-byte
            raise JUnitFileError(self.label, f"cannot be decoded: {exc}") from None
        except expat.ExpatError as exc:
            # An unclosed suite's time was never read: the wall time falls back to the cases' sum.
            size = source.size
            damage = (
                _too_big(size, cap, self.cases) if size > cap else _damage(blank, exc, self.cases)
            )
            return self._report().with_problem(f"JUnit report {self.label}", *damage)
        finally:
            # The handlers refer to the parser: without them, no cycle is left for the collector.
            parser.StartElementHandler = parser.EndElementHandler = None
            parser.CharacterDataHandler = None
        if source.size > cap:  # the cap fell after the root's end: what followed was not read
            damage = _too_big(source.size, cap, self.cases)
            return self._report().with_problem(f"JUnit report {self.label}", *damage)
        return self._report()

    def _root(self, parser: expat.XMLParserType) -> Callable[[str, dict[str, str]], None]:
        """The first element's handler: refuses a root other than a suite, then hands over."""

        def root(tag: str, attributes: dict[str, str]) -> None:
            if tag not in _SUITES:
                raise JUnitFileError(
                    self.label, f"not a JUnit XML report: its root is <{tag[:100]}>"
                )
            self._handlers(parser)(tag, attributes)

        return root

    def _handlers(self, parser: expat.XMLParserType) -> Callable[[str, dict[str, str]], None]:
        """The handlers that read the document: closures over the parse's state (the fastest
        way for expat to reach it, once per element)."""
        read_case = CaseReader(from_pytest=False).read
        cases, problems = self.cases, self.problems
        suite_times, subtests = self.suite_times, self.subtests
        # The open <testcase>: its attributes and result elements; outer ones when nested.
        case: dict[str, str] | None = None
        results = _NO_RESULTS
        outer_cases: list[tuple[dict[str, str] | None, list[Result]]] = []
        # The open suites: their depth, `time`, and the subtest counts their <properties> gave.
        suites: list[tuple[int, str | None, dict[str, int] | None]] = []
        properties_depth = 0  # of a suite's open <properties>, whose <property> are read
        counts: dict[str, int] = {}
        depth = 0
        in_text = False  # a result element's text is being read (until its first child)

        def start(tag: str, attributes: dict[str, str]) -> None:
            nonlocal case, results, depth, in_text, properties_depth, counts, read_case
            depth += 1
            if in_text:
                parser.CharacterDataHandler = None
                in_text = False
            if tag == "testcase":
                if case is not None:
                    outer_cases.append((case, results))
                case, results = attributes, _NO_RESULTS
            elif tag in RESULT_TAGS:
                if case is not None:
                    if results is _NO_RESULTS:
                        results = []
                    text: list[str] = []
                    results.append((tag, attributes, text))
                    parser.CharacterDataHandler = text.append
                    in_text = True
            elif tag in RERUN_TAGS or (
                tag == "stackTrace" and results and results[-1][0] in RERUN_TAGS
            ):
                # A re-run's text: its <stackTrace> child's, else its own.
                if case is not None:
                    if tag == "stackTrace":
                        text = results[-1][2]
                        text.clear()
                    else:
                        if results is _NO_RESULTS:
                            results = []
                        text = []
                        results.append((tag, attributes, text))
                    parser.CharacterDataHandler = text.append
                    in_text = True
            elif tag in _SUITES:
                suites.append((depth, attributes.get("time"), None))
                if attributes.get("name") in _PYTEST_SUITES and not cases and not problems:
                    read_case = CaseReader(from_pytest=True).read
            elif tag == "properties":
                # a suite's own first <properties>
                if suites and suites[-1][0] == depth - 1 and suites[-1][2] is None:
                    counts = {}
                    suites[-1] = (*suites[-1][:2], counts)
                    properties_depth = depth
            elif tag == "property" and properties_depth:
                name, value = attributes.get("name") or "", attributes.get("value") or ""
                if name.startswith(SUBTESTS_PROPERTY) and value.isdecimal() and len(value) < 10:
                    counts[name[len(SUBTESTS_PROPERTY) :]] = int(value)

        def end(tag: str) -> None:
            nonlocal case, results, depth, in_text, properties_depth
            depth -= 1
            if in_text:
                parser.CharacterDataHandler = None
                in_text = False
            if tag == "testcase":
                read = read_case(case, results)  # type: ignore[arg-type]
                (cases if type(read) is TestCase else problems).append(read)  # type: ignore[arg-type]
                if outer_cases:
                    case, results = outer_cases.pop()
                else:
                    case, results = None, _NO_RESULTS
            elif tag in _SUITES:
                _, time, suite_counts = suites.pop()
                suite_times.append(seconds(time))
                if suite_counts:
                    subtests.append(_subtests(suite_counts))
            elif tag == "properties" and depth < properties_depth:
                properties_depth = 0

        parser.StartElementHandler = start
        parser.EndElementHandler = end
        return start

    def _report(self) -> TestReport:
        return TestReport(
            tuple(self.cases),
            _wall_time(self.suite_times, self.cases),
            (self.label,),
            tuple(self.problems),
            sum(self.subtests, Subtests()),
        )


def _too_big(size: int, cap: int, cases: list[TestCase]) -> tuple[str, str]:
    message = (
        f"The JUnit report is {size:,} bytes, more than the {cap:,} bytes that are read: kept the"
        f" {_kept(cases)} in its first {cap:,} bytes; whatever came after was not read."
    )
    return (
        message,
        f"At most {cap:,} bytes of a JUnit report are read, so that no report can exhaust memory.",
    )


def _damage(blank: bool, exc: expat.ExpatError, cases: list[TestCase]) -> tuple[str, str]:
    """Message and detail for a report that ends early or is not well-formed."""
    kept = _kept(cases)
    if blank:
        message = "The JUnit report was cut short: the file is empty."
    elif exc.code in _CUT_SHORT_CODES:
        message = f"The JUnit report was cut short after {kept}; later results are missing."
    else:
        message = f"The JUnit report is not well-formed XML; kept the {kept} before the damage."
    return message, f"XML parse error: {exc}"


def _subtests(counts: dict[str, int]) -> Subtests:
    return Subtests(counts.get("passed", 0), counts.get("failed", 0), counts.get("skipped", 0))


def _kept(cases: list[TestCase]) -> str:
    return f"{len(cases):,} complete test case{'' if len(cases) == 1 else 's'}"


def _wall_time(suite_times: list[float], cases: list[TestCase]) -> float:
    return max(suite_times, default=0.0) or math.fsum(case.duration for case in cases)
