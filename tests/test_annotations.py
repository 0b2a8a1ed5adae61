"""`::error` workflow commands for failed tests."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from modal_gpu_action.render.annotations import annotation_commands
from modal_gpu_action.report.junit_reader import parse_junit
from modal_gpu_action.report.results import CaseOutcome, CaseResult, TestCase, TestReport

ERROR = re.compile(r"::error file=([^,:\r\n]*),line=(\d+),title=([^,:\r\n]*)::([^\r\n]*)")


def unescape(value: str) -> str:
    for escaped, char in (("%2C", ","), ("%3A", ":"), ("%0A", "\n"), ("%0D", "\r"), ("%25", "%")):
        value = value.replace(escaped, char)
    return value


@pytest.mark.parametrize("family", ["xunit1", "xunit2"])
def test_the_first_ten_failures_are_annotated_and_the_rest_counted(
    junit_from_pytest: Callable[[str, str], Path], family: str
) -> None:
    report = parse_junit(junit_from_pytest("mixed", family))
    lines = annotation_commands(report)
    located = [case for case in report.failures if case.file]
    # xunit2 has no file attributes: a strict xpass has no traceback to take one from either.
    assert len(located) == {"xunit1": 14, "xunit2": 13}[family]
    assert len(lines) == 11
    for line, case in zip(lines[:10], located, strict=False):
        match = ERROR.fullmatch(line)
        assert match, line
        file, number, title, message = (unescape(group) for group in match.groups())
        verb = "errored" if case.outcome is CaseOutcome.ERROR else "failed"
        assert (file, int(number), title, message) == (
            case.file,
            case.line,
            f"{case.id} {verb}",
            case.message,
        )
    assert lines[10] == (
        f"::notice::{len(located) - 10} more failed tests not annotated (GitHub shows 10 error "
        "annotations per step): see the job summary."
    )


def test_values_are_escaped_so_a_message_cannot_start_another_command() -> None:
    case = TestCase(
        "tests.odd",
        "test_x[a,b:c]",
        CaseOutcome.FAILED,
        message="100% wrong\r\n::set-output name=pwned::1\nnext",
        file="dir,with:odd%name.py",
        line=7,
    )
    [line] = annotation_commands(TestReport((case,)))
    assert line == (
        "::error file=dir%2Cwith%3Aodd%25name.py,line=7,title=tests.odd.test_x[a%2Cb%3Ac] failed"
        "::100%25 wrong%0D%0A::set-output name=pwned::1%0Anext"
    )
    assert "\n" not in line and "\r" not in line


def test_only_failures_with_a_file_are_annotated() -> None:
    cases = (
        TestCase("m", "passed", CaseOutcome.PASSED, file="m.py", line=1),
        TestCase("m", "skipped", CaseOutcome.SKIPPED, file="m.py", line=2),
        TestCase("m", "nowhere", CaseOutcome.FAILED, message="lost"),
        TestCase(
            "m", "crashed", CaseOutcome.ERROR, detail="Traceback\nRuntimeError: boom\n", file="m.py"
        ),
    )
    assert annotation_commands(TestReport(cases)) == [
        "::error file=m.py,title=m.crashed errored::RuntimeError: boom"
    ]
    assert annotation_commands(TestReport()) == []


def test_the_limit_is_a_parameter() -> None:
    cases = tuple(
        TestCase("m", f"t{n}", CaseOutcome.FAILED, file="m.py", line=n) for n in range(1, 5)
    )
    lines = annotation_commands(TestReport(cases), limit=3)
    assert [line.split(",")[1] for line in lines[:3]] == ["line=1", "line=2", "line=3"]
    assert lines[3].startswith("::notice::1 more failed test not annotated")


def test_a_long_message_is_shortened() -> None:
    case = TestCase("m", "t", CaseOutcome.FAILED, message="x" * 100_000, file="m.py", line=1)
    [line] = annotation_commands(TestReport((case,)))
    assert len(line) < 4_200
    assert line.endswith("x…")


def test_an_annotation_names_the_test_by_its_node_id_and_says_the_cause() -> None:
    case = TestCase(
        "tests.test_x",
        "test_m",
        CaseOutcome.ERROR,
        message='failed on setup with "file /w/tests/test_x.py, line 3',
        detail="E       fixture 'gpu' not found",
        file="tests/test_x.py",
        line=3,
        nodeid="tests/test_x.py::test_m",
        more=(CaseResult(CaseOutcome.ERROR, "teardown"),),
    )
    [line] = annotation_commands(TestReport((case,)))
    match = ERROR.fullmatch(line)
    assert match, line
    title, message = unescape(match.group(3)), unescape(match.group(4))
    assert title == "tests/test_x.py::test_m errored"
    assert message == "Error in setup: fixture 'gpu' not found (and 1 more failure of this test)"
