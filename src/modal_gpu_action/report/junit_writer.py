"""The merged report as one JUnit XML file (pytest's xunit2 shape), for artifacts and other tools.

Written from `TestReport`, not by splicing the shards' files, so what the engine adds is in the
file too, read back the same way by `parse_junit` (junit_reader.py):
- the tests in one `<testsuite>`, each case with every failure and error it had (a unittest
  `subTest` can fail several times in one test), its `file`, `line` and, when known, pytest's
  `nodeid`; a test that never started (the run crashed, timed out or was cancelled) is
  `<skipped type="modal-gpu-action.not-run">`; pytest's subtest counts are the suite's
  properties; a re-run test's other runs are `<flakyFailure>` (it passed on a re-run) or
  `<rerunFailure>` (it kept failing) children, as Maven Surefire writes them;
- the run's problems (a crash, a timeout, a report cut short) in a second suite of their own,
  one error case each with class name `modal-gpu-action`: other tools show them as errors, and
  the tests' suite keeps the tests' counts.
The file is written as it is made, 512 cases at a time (`write_junit_xml`), so that a report of a
million cases never stands in memory as a tree or a string; `to_junit_xml` gives the same bytes
as text. The layout is ElementTree's with `ET.indent` (what this module wrote before), so files
stay the same byte for byte. after_tests.py writes it through output_files.stream_output.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from modal_gpu_action.report.junit_case import NOT_RUN_TYPE, PROBLEM_CLASSNAME, SUBTESTS_PROPERTY
from modal_gpu_action.report.results import (
    CaseOutcome,
    CaseResult,
    NodePrefix,
    TestCase,
    TestReport,
    stored_nodeid,
)

# XML 1.0 cannot hold most control characters, which test output can contain: what its Char
# production leaves out, spelt as the few it leaves out (the same set as the negation of the
# ranges it allows, and a tenth of the time to compile on every start).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NOT_XML_ASCII = tuple(map(chr, [*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)]))
# What an attribute's value cannot hold as it is: control characters, DEL and `"&<>`.
_NOT_PLAIN_ASCII = (*map(chr, range(0x20)), "\x7f", '"', "&", "<", ">")

_RESULT_TAG = {
    CaseOutcome.FAILED: "failure",
    CaseOutcome.ERROR: "error",
    CaseOutcome.SKIPPED: "skipped",
    CaseOutcome.XFAILED: "skipped",
    CaseOutcome.NOT_RUN: "skipped",
}
_RESULT_TYPE = {CaseOutcome.XFAILED: "pytest.xfail", CaseOutcome.NOT_RUN: NOT_RUN_TYPE}
PROBLEMS_SUITE = "modal-gpu-action: problems with the run"
_PASSED = CaseOutcome.PASSED

# Cases written at once: about a hundred kilobytes of text for passed tests.
_BATCH = 512


def to_junit_xml(report: TestReport, *, suite_name: str = "modal-gpu-action") -> str:
    """The merged JUnit XML as text (`write_junit_xml`'s bytes)."""
    out = io.BytesIO()
    write_junit_xml(report, out, suite_name=suite_name)
    return out.getvalue().decode("utf-8")


def write_junit_xml(
    report: TestReport, out: BinaryIO, *, suite_name: str = "modal-gpu-action"
) -> None:
    """Write the merged JUnit XML (UTF-8) to the binary file `out`, a batch of cases at a time."""
    for text in _document(report, suite_name):
        out.write(text.encode("utf-8"))


def _document(report: TestReport, suite_name: str) -> Iterator[str]:
    """The document's text, a piece (a case, mostly) at a time."""
    totals = report.totals
    yield '<?xml version="1.0" encoding="utf-8"?>\n<testsuites>\n'
    suite = _start(
        "testsuite",
        name=suite_name,
        tests=str(totals.tests),
        failures=str(totals.failed),
        errors=str(totals.errors),
        skipped=str(totals.skipped + totals.xfailed + totals.not_run),
        time=f"{report.wall_time:.3f}",
    )
    subtests = report.subtests
    if not report.cases and not subtests.total:
        yield f"  {suite} />\n"
    else:
        yield f"  {suite}>\n"
        if subtests.total:
            yield "    <properties>\n"
            for kind, number in (
                ("passed", subtests.passed),
                ("failed", subtests.failed),
                ("skipped", subtests.skipped),
            ):
                yield f"      {_start('property', name=SUBTESTS_PROPERTY + kind, value=str(number))} />\n"
            yield "    </properties>\n"
        yield from _cases(report.cases)
        yield "  </testsuite>\n"
    if report.problems:
        count = str(len(report.problems))
        yield "  " + _start(
            "testsuite",
            name=PROBLEMS_SUITE,
            tests=count,
            failures="0",
            errors=count,
            skipped="0",
            time="0.000",
        )
        yield ">\n"
        for problem in report.problems:
            start = "    " + _start(
                "testcase", classname=PROBLEM_CLASSNAME, name=problem.where, time="0.000"
            )
            yield _case(start, (CaseResult(CaseOutcome.ERROR, problem.message, problem.detail),))
        yield "  </testsuite>\n"
    yield "</testsuites>\n"


def _cases(cases: Sequence[TestCase]) -> Iterator[str]:
    """The `<testcase>` elements, `_BATCH` cases' text at a time.

    What repeats from case to case (a class's start tag up to the name, a time, a file, a line,
    the node id's `path::classes`) is escaped and formatted once and looked up after, and the
    names are checked a batch at a time: per case there is one string to make. The same bytes
    as formatting and checking every attribute of every case, in about half the instructions."""
    heads: dict[str, str] = {}
    times: dict[float, str] = {}
    files: dict[str | None, str] = {}
    lines: dict[int | None, str] = {}
    prefixes: dict[str, str] = {}
    for first in range(0, len(cases), _BATCH):
        chunk = cases[first : first + _BATCH]
        # One check for the batch's names (nearly always plain), not one a case.
        names_plain = _plain(" ".join([case.name for case in chunk]))
        batch: list[str] = []
        add = batch.append
        for case in chunk:
            name, stored = case.name, stored_nodeid(case)
            if not names_plain and not _plain(name):
                name = _attribute(name)
            try:
                head = heads[case.classname]
            except KeyError:
                head = heads[case.classname] = (
                    f'    <testcase classname="{_attribute(case.classname)}" name="'
                )
            try:
                time = times[case.duration]
            except KeyError:
                time = times[case.duration] = f'" time="{case.duration:.3f}"'
            try:
                file = files[case.file]
            except KeyError:
                file = files[case.file] = f' file="{_attribute(case.file)}"' if case.file else ""
            try:
                line = lines[case.line]
            except KeyError:
                line = lines[case.line] = "" if case.line is None else f' line="{case.line}"'
            empty = case.outcome is _PASSED and not case.more and not case.reruns
            if type(stored) is NodePrefix:  # the node id is `path::classes::name`
                try:
                    prefix = prefixes[stored]
                except KeyError:
                    prefix = prefixes[stored] = f' nodeid="{_attribute(stored)}::'
                if empty:  # most cases: a passed test with a node id, made in one go
                    add(f'{head}{name}{time}{file}{line}{prefix}{name}" />\n')
                    continue
                start = f'{head}{name}{time}{file}{line}{prefix}{name}"'
            elif stored:
                start = f'{head}{name}{time}{file}{line} nodeid="{_attribute(stored)}"'
            else:
                start = f"{head}{name}{time}{file}{line}"
            if empty:
                add(start + " />\n")
            else:
                results = case.results
                if not results and case.outcome in _RESULT_TAG:
                    results = (CaseResult(case.outcome, case.message, case.detail),)
                add(_case(start, results, _reruns(case) if case.reruns else ""))
        yield "".join(batch)


def _case(start: str, results: tuple[CaseResult, ...], reruns: str = "") -> str:
    """One `<testcase>` (`start`: its start tag, unclosed) and its result elements, indented,
    each on its own line, then its re-runs' elements (`_reruns`)."""
    if not results and not reruns:
        return start + " />\n"
    lines = [start, ">\n"]
    for result_of in results:
        outcome = result_of.outcome
        result = _start(_RESULT_TAG[outcome], message=result_of.message)
        if outcome in _RESULT_TYPE:
            result += f' type="{_RESULT_TYPE[outcome]}"'
        text = _escape_text(_clean(result_of.detail))
        end = f">{text}</{_RESULT_TAG[outcome]}>\n" if text else " />\n"
        lines += ("      ", result, end)
    lines += (reruns, "    </testcase>\n")
    return "".join(lines)


def _reruns(case: TestCase) -> str:
    """A re-run test's other runs as Maven Surefire writes them: a flaky test's failed runs as
    `<flakyFailure>`/`<flakyError>`, the re-runs of one that kept failing as `<rerunFailure>`/
    `<rerunError>`, each with its traceback in a `<stackTrace>` child."""
    kind = "flaky" if case.flaky else "rerun"
    lines = []
    for result in case.reruns:
        tag = kind + ("Error" if result.outcome is CaseOutcome.ERROR else "Failure")
        text = _escape_text(_clean(result.detail))
        trace = f"<stackTrace>{text}</stackTrace>" if text else "<stackTrace />"
        lines.append(
            f"      {_start(tag, message=result.message, type='')}>\n"
            f"        {trace}\n      </{tag}>\n"
        )
    return "".join(lines)


def _start(tag: str, **attributes: str) -> str:
    """`<tag name="value" ...`, unclosed, each value cleaned and escaped."""
    return f"<{tag}" + "".join(
        f' {name}="{_attribute(value)}"' for name, value in attributes.items()
    )


def _clean(text: str) -> str:
    """`text` with each character XML cannot hold replaced by U+FFFD."""
    if text.isascii() and _none_of(text, _NOT_XML_ASCII):  # most text: told at C speed
        return text
    return _NOT_XML.sub("\ufffd", text)


def _none_of(ascii_text: str, characters: tuple[str, ...]) -> bool:
    """Whether `ascii_text` holds none of `characters`: a search for each (memchr, many bytes
    at a time), a few times quicker than looking each character up, as a regular expression,
    `str.isprintable` or `bytes.translate` do."""
    return not any(map(ascii_text.__contains__, characters))


def _escape_text(text: str) -> str:
    """As ElementTree escapes an element's text."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


# As ElementTree escapes an attribute's value: line ends and tabs as character references, so
# that they survive a parser's attribute normalisation.
_ATTRIBUTE_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\r": "&#13;",
        "\n": "&#10;",
        "\t": "&#09;",
    }
)


def _plain(value: str) -> bool:
    """Printable ASCII but for `"&<>`: what most values are made of, written as they are."""
    return value.isascii() and _none_of(value, _NOT_PLAIN_ASCII)


def _attribute(value: str) -> str:
    """`value` cleaned and escaped for an attribute."""
    if _plain(value):
        return value
    return _clean(value).translate(_ATTRIBUTE_ESCAPES)
