"""TestReport from real pytest runs (both JUnit families), other producers' JUnit, and damage."""

from __future__ import annotations

import csv
import gc
import os
import pickle
import runpy
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from modal_gpu_action.report import junit_case, junit_reader
from modal_gpu_action.report.junit_reader import (
    JUnitError,
    JUnitFileError,
    parse_junit,
    pytest_node_id,
    read_junit,
)
from modal_gpu_action.report.junit_writer import to_junit_xml
from modal_gpu_action.report.merging import load_reports, merge
from modal_gpu_action.report.results import (
    CaseOutcome,
    CaseResult,
    NodePrefix,
    Problem,
    Subtests,
    TestCase,
    TestReport,
    stored_nodeid,
)

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "junit-xml"
MIXED = REPO / "tests" / "fixtures" / "reports" / "mixed"

# What happened in tests/fixtures/reports/mixed, test by test.
MIXED_OUTCOMES = {
    "test_passes": CaseOutcome.PASSED,
    "test_fails": CaseOutcome.FAILED,
    "test_slow_pass": CaseOutcome.PASSED,
    "test_error_in_fixture": CaseOutcome.ERROR,
    "test_error_in_teardown": CaseOutcome.ERROR,
    "test_skip_two_gpus_a": CaseOutcome.SKIPPED,
    "test_skip_two_gpus_b": CaseOutcome.SKIPPED,
    "test_skip_imperative": CaseOutcome.SKIPPED,
    "test_xfail": CaseOutcome.XFAILED,
    "test_xpass": CaseOutcome.PASSED,  # pytest writes a non-strict xpass as a plain pass
    "test_xpass_strict": CaseOutcome.FAILED,
}
HOSTILE_IDS = runpy.run_path(str(MIXED / "check_hostile.py"))["HOSTILE"]  # one list for both


def line_of(path: Path, text: str) -> int:
    """1-based number of the first line of `path` that contains `text`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


@pytest.fixture(scope="module", params=["xunit1", "xunit2"])
def mixed(
    request: pytest.FixtureRequest, junit_from_pytest: Callable[[str, str], Path]
) -> TestReport:
    return parse_junit(junit_from_pytest("mixed", request.param))


def by_name(report: TestReport) -> dict[str, TestCase]:
    return {case.name: case for case in report.cases}


def test_pytest_outcomes_are_read_as_they_happened(mixed: TestReport) -> None:
    cases = by_name(mixed)
    assert {name: cases[name].outcome for name in MIXED_OUTCOMES} == MIXED_OUTCOMES
    hostile = [case for case in mixed.cases if case.name.startswith("test_hostile[")]
    assert [case.name for case in hostile] == [f"test_hostile[{text}]" for text in HOSTILE_IDS]
    assert {case.outcome for case in hostile} == {CaseOutcome.FAILED}
    assert {case.classname for case in hostile} == {"check_hostile"}


def test_totals_count_every_outcome(mixed: TestReport) -> None:
    totals = mixed.totals
    assert (totals.tests, totals.passed, totals.failed, totals.errors) == (21, 3, 12, 2)
    assert (totals.skipped, totals.xfailed, totals.xpassed) == (3, 1, 0)
    assert totals.duration >= 0.05  # test_slow_pass sleeps 0.05 s
    assert mixed.wall_time >= totals.duration
    assert mixed.conclusion == "failed"


def test_failures_are_failed_and_errored_cases_in_order(mixed: TestReport) -> None:
    names = [case.name for case in mixed.failures]
    assert names[:10] == [f"test_hostile[{text}]" for text in HOSTILE_IDS]
    assert names[10:] == [
        "test_fails",
        "test_error_in_fixture",
        "test_error_in_teardown",
        "test_xpass_strict",
    ]


def test_messages_details_and_reasons_are_kept(mixed: TestReport) -> None:
    cases = by_name(mixed)
    assert cases["test_fails"].message.startswith("AssertionError: arithmetic is off")
    assert "assert (1 + 1) == (2 + 1)" in cases["test_fails"].detail
    assert cases["test_error_in_fixture"].message == (
        'failed on setup with "RuntimeError: fixture exploded"'
    )
    assert "teardown exploded" in cases["test_error_in_teardown"].message
    assert cases["test_skip_two_gpus_a"].message == "needs two GPUs"
    assert cases["test_skip_imperative"].message == "CUDA 12 only"
    assert cases["test_xfail"].message == "known bug #42"
    assert cases["test_xpass_strict"].message == "[XPASS(strict)] must fail"
    hostile = cases["test_hostile[<script>alert(1)</script>]"]
    assert hostile.message.startswith("AssertionError: <script>alert(1)</script> @octocat")
    assert "</details>" in hostile.detail


def test_a_failure_points_at_the_line_that_failed(mixed: TestReport) -> None:
    # xunit1 has file attributes and xunit2 has none: both read the traceback's location.
    cases = by_name(mixed)
    source = MIXED / "check_outcomes.py"
    assert (cases["test_fails"].file, cases["test_fails"].line) == (
        "check_outcomes.py",
        line_of(source, "assert 1 + 1 == expected + 1"),
    )
    error = cases["test_error_in_fixture"]
    assert (error.file, error.line) == ("check_outcomes.py", line_of(source, "fixture exploded"))
    hostile = cases["test_hostile[@here]"]
    assert (hostile.file, hostile.line) == (
        "check_hostile.py",
        line_of(MIXED / "check_hostile.py", "raise AssertionError"),
    )


def test_xunit1_locations_of_other_tests_are_one_based(
    junit_from_pytest: Callable[[str, str], Path],
) -> None:
    # pytest writes a 0-based line attribute; a passing test points at its def line.
    cases = by_name(parse_junit(junit_from_pytest("mixed", "xunit1")))
    source = MIXED / "check_outcomes.py"
    assert (cases["test_passes"].file, cases["test_passes"].line) == (
        "check_outcomes.py",
        line_of(source, "def test_passes"),
    )


def test_a_collection_error_is_an_error_case(
    junit_from_pytest: Callable[[str, str], Path],
) -> None:
    report = parse_junit(junit_from_pytest("collection_error", "xunit2"))
    [case] = report.cases
    assert case.outcome is CaseOutcome.ERROR
    assert case.id == "check_broken_import"
    assert case.message == "collection failure"
    assert "No module named 'module_that_does_not_exist'" in case.detail
    assert (case.file, case.line) == ("check_broken_import.py", 1)
    assert report.conclusion == "failed"


def corpus_rows() -> list[dict[str, str]]:
    expected = CORPUS / "expected.tsv"
    assert expected.is_file(), f"the shared corpus is missing: {expected}"
    with expected.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.mark.parametrize("row", corpus_rows(), ids=lambda row: row["file"])
def test_other_producers_count_as_the_corpus_expects(row: dict[str, str]) -> None:
    totals = parse_junit(CORPUS / row["file"]).totals
    assert totals.tests == int(row["tests"])
    assert totals.passed == int(row["passed"])
    assert totals.failed == int(row["failed"])
    assert totals.errors == int(row["errors"])
    assert totals.skipped == int(row["skipped"]) + int(row["disabled"])  # disabled is skipped
    assert totals.xfailed == totals.xpassed == 0


def test_every_corpus_file_is_in_the_expected_counts() -> None:
    listed = {row["file"] for row in corpus_rows()}
    present = {path.relative_to(CORPUS).as_posix() for path in CORPUS.rglob("*.xml")}
    assert present == listed


def test_a_bare_testsuite_root_with_nested_suites_keeps_every_case() -> None:
    report = parse_junit(CORPUS / "testsuite-root.xml")
    assert [case.name for case in report.cases] == [f"TestCase{n}" for n in range(1, 6)]
    assert report.wall_time == pytest.approx(4.807419)  # the enclosing suite's time
    first = report.cases[0]
    assert (first.classname, first.file, first.line) == ("someName", "/somepath", 34)
    assert first.duration == pytest.approx(1.32159)


def test_a_parsed_case_equals_one_built_by_hand() -> None:
    # parse builds cases without the dataclass __init__ (speed); they must be the same values.
    document = b"""<testsuite><testcase classname="m.C" name="t[1]" file="m.py" line="3"
        time="0.5"><failure message="boom">m.py:7: AssertionError</failure></testcase></testsuite>"""
    [case] = parse_junit(document).cases
    expected = TestCase(
        "m.C", "t[1]", CaseOutcome.FAILED, 0.5, "boom", "m.py:7: AssertionError", "m.py", 7
    )
    assert case == expected
    assert hash(case) == hash(expected)
    assert repr(case) == repr(expected)


def test_cases_without_attributes_read_as_empty() -> None:
    report = parse_junit(CORPUS / "no-attributes.xml")
    assert [case.id for case in report.cases] == ["", "", "", ""]
    assert {case.duration for case in report.cases} == {0.0}
    assert report.wall_time == 0.0


def test_a_case_with_several_results_counts_by_its_worst() -> None:
    cases = by_name(parse_junit(CORPUS / "junit.multiresult.xml"))
    errored = cases["test that errors"]
    assert (errored.outcome, errored.message, errored.detail) == (
        CaseOutcome.ERROR,
        "test teardown failure",
        "stdout",
    )
    assert cases["test that fails"].outcome is CaseOutcome.FAILED
    assert cases["test that is skipped"].outcome is CaseOutcome.SKIPPED
    assert cases["test that succeeds"].id == "test class.test that succeeds"


def test_shards_merge_in_order_with_the_longest_wall_time() -> None:
    first = parse_junit(CORPUS / "jest" / "jest-junit.xml")
    second = parse_junit(CORPUS / "testsuite-root.xml")
    merged = merge([first, second])
    assert merged.cases == first.cases + second.cases
    assert merged.wall_time == max(first.wall_time, second.wall_time)  # shards run in parallel
    assert merged.sources == (
        str(CORPUS / "jest" / "jest-junit.xml"),
        str(CORPUS / "testsuite-root.xml"),
    )
    assert merge([]) == TestReport()


def test_load_reports_merges_files(junit_from_pytest: Callable[[str, str], Path]) -> None:
    paths = [
        junit_from_pytest("mixed", "xunit2"),
        str(junit_from_pytest("collection_error", "xunit2")),
    ]
    report = load_reports(paths)
    assert report.totals.tests == 22
    assert report.totals.errors == 3


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "shard-3.xml"
    with pytest.raises(JUnitFileError) as raised:
        load_reports([CORPUS / "no-cases.xml", missing])
    assert raised.value.path == str(missing)
    assert str(raised.value) == f"{missing}: no such file"
    assert isinstance(raised.value, JUnitError)


def only_error(report: TestReport) -> Problem:
    """The one problem of a report that could not be used, saying why: no test case."""
    assert report.cases == ()
    [problem] = report.problems
    assert report.conclusion == "failed"
    assert report.totals.tests == report.totals.errors == 0  # a problem is not a test
    return problem


def test_a_directory_is_one_problem_and_read_junit_refuses_it(tmp_path: Path) -> None:
    case = only_error(parse_junit(tmp_path))
    assert case.where == f"JUnit report {tmp_path}"
    assert case.message == "The JUnit report was not used: is a directory, not a JUnit XML file"
    with pytest.raises(JUnitFileError, match="is a directory"):
        read_junit(tmp_path)


def test_a_document_that_is_not_junit_is_one_problem_and_read_junit_refuses_it() -> None:
    page = b"<html><body><testcase name='x'/></body></html>"
    case = only_error(parse_junit(page, name="page.xml"))
    assert case.where == "JUnit report page.xml"
    assert case.message == (
        "The JUnit report was not used: not a JUnit XML report: its root is <html>"
    )
    with pytest.raises(JUnitFileError, match=r"not a JUnit XML report: its root is <html>"):
        read_junit(page, name="page.xml")


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<testsuite><testcase classname="bomb" name="&lol9;"/></testsuite>
"""


def test_an_xml_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    bomb = tmp_path / "junit.xml"
    bomb.write_bytes(BILLION_LAUGHS)
    started = time.perf_counter()
    with pytest.raises(JUnitFileError, match="refused: the XML declares entities") as raised:
        load_reports([bomb])
    assert time.perf_counter() - started < 1
    assert raised.value.path == str(bomb)


def test_an_external_entity_is_refused_and_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOKEN-1234", encoding="utf-8")
    document = f"""<?xml version="1.0"?>
<!DOCTYPE testsuite [<!ENTITY leak SYSTEM "{secret.as_uri()}">]>
<testsuite><testcase name="x"><failure message="&leak;"/></testcase></testsuite>"""
    case = only_error(parse_junit(document.encode()))
    assert case.message.startswith("The JUnit report was not used: refused: the XML declares")
    assert "TOKEN" not in repr(case)
    with pytest.raises(JUnitFileError, match="refused"):
        read_junit(document.encode())


def test_an_entity_declaration_is_one_problem_without_expanding_anything() -> None:
    started = time.perf_counter()
    case = only_error(parse_junit(BILLION_LAUGHS, name="bomb.xml"))
    assert time.perf_counter() - started < 1
    assert case.where == "JUnit report bomb.xml"
    assert "refused: the XML declares entities" in case.message
    assert "lol" not in case.message.split("(", 1)[0]


def test_a_missing_file_is_one_problem(tmp_path: Path) -> None:
    case = only_error(parse_junit(tmp_path / "junit.xml"))
    assert case.message == "The JUnit report was not used: no such file"


def test_a_pipe_or_a_device_is_refused_without_waiting_on_it(tmp_path: Path) -> None:
    pipe = tmp_path / "junit.xml"
    os.mkfifo(pipe)  # nobody ever writes to it: reading it would block forever
    link = tmp_path / "zero.xml"
    link.symlink_to("/dev/zero")  # reading it would never end
    started = time.perf_counter()
    for path in (pipe, link):
        case = only_error(parse_junit(path))
        assert case.message == (
            "The JUnit report was not used: is not a regular file (a pipe, a socket or a device)"
        )
    assert time.perf_counter() - started < 1


def test_a_link_to_a_report_is_read(tmp_path: Path) -> None:
    link = tmp_path / "shard.xml"
    link.symlink_to(CORPUS / "jest" / "jest-junit.xml")  # artifacts come as links at times
    assert (
        parse_junit(link).totals.tests
        == parse_junit(CORPUS / "jest" / "jest-junit.xml").totals.tests
    )


@pytest.mark.parametrize("encoding", ["bogus", "shift_jis", "utf-7", "rot13", "idna", "undefined"])
def test_an_encoding_that_cannot_be_decoded_is_one_problem(encoding: str) -> None:
    document = f'<?xml version="1.0" encoding="{encoding}"?><testsuite><testcase name="a"/>'
    case = only_error(parse_junit(f"{document}</testsuite>".encode()))
    assert case.message.startswith("The JUnit report was not used: cannot be decoded: ")


def test_a_report_past_the_size_cap_keeps_the_cases_within_it_and_says_so(
    junit_from_pytest: Callable[[str, str], Path], tmp_path: Path
) -> None:
    data = junit_from_pytest("mixed", "xunit1").read_bytes()
    ends = complete_case_ends(data)
    cap = ends[5] + 10  # within the seventh case
    full = parse_junit(data)
    for source in (data, junit_from_pytest("mixed", "xunit1")):
        report = parse_junit(source, max_bytes=cap)
        assert report.cases == full.cases[:6]
        [damage] = report.problems
        assert damage.message == (
            f"The JUnit report is {len(data):,} bytes, more than the {cap:,} bytes that are read:"
            f" kept the 6 complete test cases in its first {cap:,} bytes; whatever came after was"
            " not read."
        )
    # A whole report padded past the cap after its end: the cases are all there, and the cap
    # is still said.
    padded = data + b" " * 1000
    report = parse_junit(padded, max_bytes=len(data) + 10)
    assert report.cases == full.cases
    assert report.problems[-1].message.startswith(f"The JUnit report is {len(padded):,} bytes")
    assert parse_junit(data, max_bytes=len(data)) == full


HOSTILE_DOCUMENTS = [
    b"",
    b"\x00\x00\x00",
    b"\xff\xfe<\x00t\x00",
    b"<testsuite>" + b"<a>" * 50_000 + b"</a>" * 50_000 + b"</testsuite>",
    b'<testsuite><testcase name="x">' + b"<failure>" * 5_000 + b"</testcase></testsuite>",
    b'<testsuite><testcase><testcase name="inner"/></testcase></testsuite>',
    b'<testsuite><testcase line="99999999999999999999" time="1e999"/></testsuite>',
    b'<x:testsuite xmlns:x="urn:x"><x:testcase name="a"/></x:testsuite>',
    b'<!DOCTYPE testsuite [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><testsuite/>',
    b'<!DOCTYPE testsuite [<!ATTLIST testcase name CDATA "dflt">]><testsuite><testcase/></testsuite>',
    b'<?xml version="1.0" encoding="utf-32"?><testsuite/>',
    b"<html><body><p>Nothing to see</p></body></html>",
    b"<testsuites>" + b"<testcase name='x'/>" * 10 + b"junk after",
]


@pytest.mark.parametrize("document", HOSTILE_DOCUMENTS, ids=range(len(HOSTILE_DOCUMENTS)))
def test_parse_junit_never_raises_for_what_a_report_holds(document: bytes) -> None:
    report = parse_junit(document, name="junit.xml")
    assert all(isinstance(case, TestCase) for case in report.cases)


def test_an_external_dtd_is_not_fetched(tmp_path: Path) -> None:
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY leak "TOKEN-1234">', encoding="utf-8")
    document = f"""<?xml version="1.0"?>
<!DOCTYPE testsuite SYSTEM "{dtd.as_uri()}">
<testsuite><testcase name="x&leak;"><failure message="m&leak;"/></testcase></testsuite>"""
    report = parse_junit(document.encode())
    assert "TOKEN" not in repr(report)


def complete_case_ends(data: bytes) -> list[int]:
    """Byte offsets where each <testcase> element of a pytest report ends."""
    ends, position = [], 0
    while (start := data.find(b"<testcase ", position)) != -1:
        tag_end = data.index(b">", start)
        position = (
            tag_end + 1
            if data[tag_end - 1 : tag_end] == b"/"
            else (data.index(b"</testcase>", tag_end) + len(b"</testcase>"))
        )
        ends.append(position)
    return ends


def test_a_truncated_report_keeps_every_complete_case(
    junit_from_pytest: Callable[[str, str], Path],
) -> None:
    data = junit_from_pytest("mixed", "xunit1").read_bytes()
    full = parse_junit(data)
    ends = complete_case_ends(data)
    assert len(ends) == len(full.cases) == 21
    for cut in [*range(0, len(data) - 1, 53), *(end for end in ends[:-1]), *(e - 1 for e in ends)]:
        report = parse_junit(data[:cut], name="junit.xml")
        kept = sum(1 for end in ends if end <= cut)
        assert report.cases == full.cases[:kept], cut
        [damage] = report.problems
        assert damage.where == "JUnit report junit.xml"
        assert "cut short" in damage.message, (cut, damage)
        assert report.conclusion == "failed"


def test_a_cut_short_report_says_how_many_cases_it_kept(
    junit_from_pytest: Callable[[str, str], Path],
) -> None:
    data = junit_from_pytest("mixed", "xunit2").read_bytes()
    cut = complete_case_ends(data)[6] + 10
    report = parse_junit(data[:cut])
    assert report.totals.tests == 7
    assert report.problems[-1].message == (
        "The JUnit report was cut short after 7 complete test cases; later results are missing."
    )
    # The suite never closed, so its time is unknown: the kept cases' durations stand in.
    assert report.wall_time == pytest.approx(sum(case.duration for case in report.cases))


@pytest.mark.parametrize("content", [b"", b"  \n"])
def test_an_empty_report_is_one_problem(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junit.xml"
    path.write_bytes(content)
    case = only_error(load_reports([path]))
    assert case.message == "The JUnit report was cut short: the file is empty."
    assert case.where == f"JUnit report {path}"


def test_damage_in_the_middle_keeps_the_cases_before_it() -> None:
    document = b"<testsuite><testcase name='a'/><testcase name='b'/><<oops/></testsuite>"
    report = parse_junit(document)
    assert [case.name for case in report.cases] == ["a", "b"]
    assert report.problems[0].message == (
        "The JUnit report is not well-formed XML; kept the 2 complete test cases before the damage."
    )
    assert report.problems[0].detail.startswith("XML parse error: not well-formed")


def test_a_problem_of_the_run_fails_it_and_is_no_test() -> None:
    report = parse_junit(CORPUS / "jest" / "jest-junit.xml")
    assert report.conclusion == "passed"
    crashed = report.with_problem("shard 1/2", "pytest was killed by signal 11", "core")
    assert crashed.cases == report.cases
    assert crashed.totals == report.totals  # "3 tests: 3 errors" no more
    assert crashed.problems == (Problem("shard 1/2", "pytest was killed by signal 11", "core"),)
    assert crashed.conclusion == "failed"
    assert crashed.failures == ()


def test_conclusion_of_an_empty_or_skipped_run() -> None:
    assert parse_junit(CORPUS / "no-cases.xml").conclusion == "no tests"
    skipped = TestReport(
        (TestCase("c", "n", CaseOutcome.SKIPPED), TestCase("c", "x", CaseOutcome.XFAILED))
    )
    assert skipped.conclusion == "passed"


def test_unusable_times_read_as_zero() -> None:
    document = b"""<testsuite time="1,5"><testcase name="a" time="nan"/>
    <testcase name="b" time="-3"/><testcase name="c" time="0.25"/></testsuite>"""
    report = parse_junit(document)
    assert [case.duration for case in report.cases] == [0.0, 0.0, 0.25]
    assert report.wall_time == 0.25  # no usable suite time: the sum of the cases


def test_a_module_skipped_at_collection_keeps_its_reason() -> None:
    xml = b"""<testsuites><testsuite name="pytest" tests="1"><testcase classname="" name="tests.test_gpu">
    <skipped message="collection skipped">('/w/tests/test_gpu.py', 7, 'Skipped: CuPy is not installed')</skipped>
    </testcase></testsuite></testsuites>"""
    [case] = parse_junit(xml).cases
    assert case.outcome == "skipped"
    assert case.message == "CuPy is not installed"


# --- node ids, several failures in one case, problems, collection entries, subtests --------------


@pytest.mark.parametrize(
    ("classname", "name", "file", "nodeid"),
    [
        ("tests.test_x.TestC", "test_m[p]", "tests/test_x.py", "tests/test_x.py::TestC::test_m[p]"),
        ("tests.test_x", "test_f", "tests/test_x.py", "tests/test_x.py::test_f"),
        ("tests.test_x.A.B", "t[1.5-x/y]", "tests/test_x.py", "tests/test_x.py::A::B::t[1.5-x/y]"),
        ("pre.tests.test_x.C", "t", "tests/test_x.py", "tests/test_x.py::C::t"),  # junit_prefix
        ("", "tests.test_x", "tests/test_x.py", "tests/test_x.py"),  # a module, at collection
        ("tests", "test_x", "tests/test_x.py", "tests/test_x.py"),  # the same, xunit1
        ("mod", "mod.func", "mod.py", "mod.py::mod.func"),  # a doctest
        ("tests.test_x.C", "t", "tests/base.py", ""),  # inherited from another file: unknown
        ("tests.test_x.C", "t", None, ""),  # xunit2 has no file: the names stay
    ],
)
def test_a_pytest_node_id_is_worked_out_from_the_file_and_the_names(
    classname: str, name: str, file: str | None, nodeid: str
) -> None:
    assert pytest_node_id(classname, name, file) == nodeid


def test_pytest_reports_give_node_ids_and_other_producers_keep_their_names(
    junit_from_pytest: Callable[[str, str], Path],
) -> None:
    xunit1 = parse_junit(junit_from_pytest("mixed", "xunit1"))
    assert {case.id for case in xunit1.cases} >= {
        "check_outcomes.py::test_fails",
        "check_hostile.py::test_hostile[pipe|cell]",
    }
    xunit2 = parse_junit(junit_from_pytest("mixed", "xunit2"))
    assert "check_outcomes.test_fails" in {case.id for case in xunit2.cases}
    jest = parse_junit(CORPUS / "jest" / "jest-junit.xml")
    assert all(case.nodeid == "" for case in jest.cases)


def test_a_nodeid_attribute_wins_over_the_names() -> None:
    document = b"""<testsuites name="pytest tests"><testsuite name="pytest">
    <testcase classname="tests.test_x.TestC" name="test_m" file="tests/base.py" line="3"
      nodeid="tests/test_x.py::TestC::test_m"/></testsuite></testsuites>"""
    [case] = parse_junit(document).cases
    assert case.id == "tests/test_x.py::TestC::test_m"


def test_every_failure_of_a_case_is_kept_its_worst_first() -> None:
    document = b"""<testsuite><testcase classname="t" name="test_sizes">
      <failure message="size 2">tb 2</failure><skipped message="skip"/>
      <failure message="size 3">tb 3</failure><error message="teardown">tb e</error>
    </testcase></testsuite>"""
    [case] = parse_junit(document).cases
    assert (case.outcome, case.message) == (CaseOutcome.ERROR, "teardown")
    assert [(r.outcome, r.message, r.detail) for r in case.results] == [
        (CaseOutcome.ERROR, "teardown", "tb e"),
        (CaseOutcome.FAILED, "size 2", "tb 2"),
        (CaseOutcome.FAILED, "size 3", "tb 3"),
    ]
    assert parse_junit(document).totals.tests == 1


def test_the_merged_junit_keeps_every_failure_problem_not_run_test_and_subtest_count() -> None:
    document = b"""<testsuites name="pytest tests"><testsuite name="pytest">
    <properties><property name="modal-gpu-action.subtests-passed" value="21039"/>
      <property name="modal-gpu-action.subtests-failed" value="2"/></properties>
    <testcase classname="tests.test_k.TestK" name="test_sizes" file="tests/test_k.py" line="3">
      <failure message="size 2">tb 2</failure><failure message="size 3">tb 3</failure></testcase>
    <testcase classname="tests.test_k" name="test_later" file="tests/test_k.py" line="9">
      <skipped type="modal-gpu-action.not-run" message="not run: pytest was killed"/></testcase>
    <testcase classname="modal-gpu-action" name="record of the run">
      <error message="The record was cut">detail</error></testcase>
    </testsuite></testsuites>"""
    report = parse_junit(document, name="shard 1/2")
    assert report.subtests == Subtests(passed=21039, failed=2)
    assert report.totals.tests == 2 and report.totals.not_run == 1 and report.totals.failed == 1
    assert report.problems == (Problem("record of the run", "The record was cut", "detail"),)
    assert report.cases[0].nodeid == "tests/test_k.py::TestK::test_sizes"
    again = parse_junit(to_junit_xml(report).encode())
    assert again.cases == report.cases
    assert again.problems == report.problems
    assert again.subtests == report.subtests
    assert again.conclusion == "failed"


def test_shards_count_a_module_skipped_or_broken_at_collection_once() -> None:
    def shard(*names: str) -> TestReport:
        cases = "".join(f'<testcase classname="t" name="{n}"/>' for n in names)
        return parse_junit(
            f"""<testsuites name="pytest tests"><testsuite name="pytest">{cases}
            <testcase classname="" name="tests.test_gpu" file="tests/test_gpu.py">
              <skipped message="collection skipped">('/w/tests/test_gpu.py', 7,
              'Skipped: CuPy is not installed')</skipped></testcase>
            <testcase classname="" name="tests.test_broken" file="tests/test_broken.py">
              <error message="collection failure">E   ModuleNotFoundError: x</error></testcase>
            </testsuite></testsuites>""".encode()
        )

    merged = merge([shard("a", "b"), shard("c"), shard()])
    assert [case.name for case in merged.cases] == [
        "a", "b", "tests.test_gpu", "tests.test_broken", "c",
    ]  # fmt: skip
    assert (merged.totals.tests, merged.totals.skipped, merged.totals.errors) == (5, 1, 1)
    # within one report nothing is left out: only what another shard already reported
    twice = parse_junit(
        b"""<testsuite><testcase name="m"><skipped message="collection skipped"/></testcase>
        <testcase name="m"><skipped message="collection skipped"/></testcase></testsuite>"""
    )
    assert merge([twice]).totals.tests == 2


# --- the streamed parse: chunk boundaries, the collector, the root, the built cases -------------


def every_report(junit_from_pytest: Callable[[str, str], Path]) -> list[Path]:
    return [
        *sorted(CORPUS.rglob("*.xml")),
        junit_from_pytest("mixed", "xunit1"),
        junit_from_pytest("mixed", "xunit2"),
    ]


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_a_file_read_a_chunk_at_a_time_gives_the_report_its_bytes_give(
    junit_from_pytest: Callable[[str, str], Path], chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file is never read whole: any chunk boundary (inside a tag, an entity reference, a
    # multi-byte character, CDATA) must give the same report as the whole document at once.
    monkeypatch.setattr(junit_reader, "_CHUNK", chunk)
    for path in every_report(junit_from_pytest):
        whole = parse_junit(path.read_bytes(), name=str(path))
        assert parse_junit(path) == whole, path


def test_the_collector_is_paused_only_while_a_report_is_read() -> None:
    assert gc.isenabled()
    during: list[bool] = []
    original = junit_case.CaseReader.read

    def spy(self: junit_case.CaseReader, *args: Any) -> Any:
        during.append(gc.isenabled())
        return original(self, *args)

    try:
        junit_case.CaseReader.read = spy  # type: ignore[method-assign]
        parse_junit(b"<testsuite><testcase name='a'/><testcase name='b'/></testsuite>")
        parse_junit(b"<testsuite><testcase name='a'/><oops")
        with pytest.raises(JUnitFileError):
            read_junit(BILLION_LAUGHS)
    finally:
        junit_case.CaseReader.read = original  # type: ignore[method-assign]
    assert during == [False, False, False]
    assert gc.isenabled()
    gc.disable()
    try:
        parse_junit(b"<testsuite><testcase name='a'/></testsuite>")
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()


GENERATIONS_AFTER_A_PARSE = """
import gc, sys
from modal_gpu_action.report.junit_reader import parse_junit
if sys.argv[1] == "frozen-by-the-process":
    gc.freeze()  # the process's own (a server before it forks): never released by a parse
frozen = gc.get_freeze_count()
cases = "".join(f'<testcase classname="t.m" name="t{n}" file="t/m.py" line="1"/>' for n in range(5000))
report = parse_junit(f'<testsuite name="pytest">{cases}</testsuite>'.encode())
young = {id(o) for o in gc.get_objects(0) + gc.get_objects(1)}
print(sum(id(case) in young for case in report.cases), gc.get_freeze_count() >= frozen)
"""


@pytest.mark.parametrize("minor", [11, 12, 13])
@pytest.mark.parametrize("process", ["as-started", "frozen-by-the-process"])
def test_a_parsed_report_joins_the_oldest_generation_on_every_supported_python(
    minor: int, process: str
) -> None:
    # 3.12 starts with objects of its own frozen: a guard of "nothing frozen" skipped the move
    # there, and the next young collections visited every case (23 ms at 100,000 cases).
    from test_container_package import find_python

    python = find_python((3, minor))
    if python is None:
        pytest.skip(f"no Python 3.{minor} on this machine (pyenv, PATH or uv)")
    src = Path(junit_reader.__file__).resolve().parents[2]
    done = subprocess.run(
        [python, "-I", "-c", f"import sys; sys.path.insert(0, {str(src)!r})\n"
         + GENERATIONS_AFTER_A_PARSE, process],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    young, kept_frozen = done.stdout.split()
    if process == "as-started":
        assert young == "0"  # every case in the oldest generation
    else:
        assert kept_frozen == "True"  # what the process froze stays frozen
        assert young == "5000"  # so the cases stay young: nothing of the process is released


def test_a_root_that_is_no_suite_is_refused_at_once_even_before_damage() -> None:
    document = b"<html>" + b"<testcase name='x'/>" * 1000 + b"<<damage"
    with pytest.raises(JUnitFileError, match=r"its root is <html>"):
        read_junit(document, name="page.xml")


def test_a_parsed_case_is_a_plain_test_case_equal_to_one_built_by_hand() -> None:
    document = b"""<testsuites name="pytest tests"><testsuite name="pytest">
    <testcase classname="tests.test_k.TestK" name="test_a[1]" file="tests/test_k.py" line="3"
      time="0.25"><failure message="boom">tests/test_k.py:9: AssertionError</failure>
      <error message="teardown">tb</error></testcase>
    <testcase classname="tests.test_k" name="test_b" file="tests/test_k.py" line="300"/>
    </testsuite></testsuites>"""
    first, second = parse_junit(document).cases
    assert type(first) is TestCase and type(second) is TestCase
    assert first == TestCase(
        "tests.test_k.TestK",
        "test_a[1]",
        CaseOutcome.ERROR,
        0.25,
        "teardown",
        "tb",
        "tests/test_k.py",
        4,
        "tests/test_k.py::TestK::test_a[1]",
        False,
        (CaseResult(CaseOutcome.FAILED, "boom", "tests/test_k.py:9: AssertionError"),),
    )
    assert second == TestCase(
        "tests.test_k", "test_b", CaseOutcome.PASSED, 0.0, "", "", "tests/test_k.py", 301,
        "tests/test_k.py::test_b",
    )  # fmt: skip
    assert hash(first) == hash(first) and first != second
    with pytest.raises(AttributeError):
        first.name = "changed"  # type: ignore[misc]


def test_a_result_element_reads_its_own_text_and_nested_ones_count_too() -> None:
    # As junitparser read them: every result element inside the case, its text the text before
    # its first child; a case inside a case is a case of its own.
    document = b"""<testsuite><testcase name="outer">
      <failure message="one">first<b>bold</b>tail</failure>
      <system-out>out</system-out>
      <testcase name="inner"><error message="inner error">e</error></testcase>
      <error message="two"><![CDATA[<raw> & text]]></error>
    </testcase></testsuite>"""
    inner, outer = parse_junit(document).cases
    assert (inner.name, inner.outcome, inner.message, inner.detail) == (
        "inner", CaseOutcome.ERROR, "inner error", "e",
    )  # fmt: skip
    assert (outer.outcome, outer.message, outer.detail) == (
        CaseOutcome.ERROR, "two", "<raw> & text",
    )  # fmt: skip
    assert outer.more == (CaseResult(CaseOutcome.FAILED, "one", "first"),)


def test_repeated_values_are_shared_between_cases_not_copied() -> None:
    cases = "".join(
        f'<testcase classname="tests.test_m" name="t{n}" file="tests/test_m.py" time="0.5"/>'
        for n in range(3)
    )
    report = parse_junit(f'<testsuite name="pytest">{cases}</testsuite>'.encode())
    first, *others = report.cases
    assert all(case.classname is first.classname and case.file is first.file for case in others)
    assert [case.nodeid for case in report.cases] == [f"tests/test_m.py::t{n}" for n in range(3)]


def test_a_node_id_is_made_from_its_class_prefix_and_behaves_as_a_stored_one() -> None:
    cases = "".join(
        f'<testcase classname="tests.test_m.TestK" name="t[{n}]" file="tests/test_m.py"/>'
        for n in range(2)
    )
    first, second = parse_junit(f'<testsuite name="pytest">{cases}</testsuite>'.encode()).cases
    # What each case holds: the class's `path::classes`, one string for both; no node id of
    # its own (a million of them were a third of a large report's memory).
    held = [value for value in gc.get_referents(first) if isinstance(value, NodePrefix)]
    assert held == ["tests/test_m.py::TestK"]
    assert any(value is held[0] for value in gc.get_referents(second))
    assert "tests/test_m.py::TestK::t[0]" not in gc.get_referents(first)
    # ... but it reads, compares, hashes, prints, pickles and copies as the whole node id.
    built = TestCase(
        "tests.test_m.TestK", "t[0]", CaseOutcome.PASSED, file="tests/test_m.py",
        nodeid="tests/test_m.py::TestK::t[0]",
    )  # fmt: skip
    assert first.nodeid == first.id == built.nodeid == "tests/test_m.py::TestK::t[0]"
    assert type(first.nodeid) is str
    assert first == built and hash(first) == hash(built) and repr(first) == repr(built)
    assert pickle.loads(pickle.dumps(first)) == built
    assert replace(first, outcome=CaseOutcome.FAILED).nodeid == first.nodeid
    assert replace(first, nodeid="other::t").nodeid == "other::t"
    assert first != second and second.nodeid == "tests/test_m.py::TestK::t[1]"
    with pytest.raises(AttributeError):
        first.nodeid = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("suite", "attribute", "shared"),
    [
        # what a run's pytest writes (the runner's plugin adds it): the class's prefix and name
        ("pytest", "tests/test_m.py::TestK::t[0]", True),
        ("pytest", "tests/other.py::TestK::t[0]", False),  # any other id: kept as it is
        ("pytest", "tests/test_m.py::TestK::t[0]x", False),
        ("pytest", "tests/test_m.py::TestK:t[0]", False),
        # the merged report (the action's own suite name) keeps the ids: shared as well
        ("modal-gpu-action", "tests/test_m.py::TestK::t[0]", True),
        ("other", "tests/other.py::TestK::t[0]", False),
    ],
)
def test_a_node_id_attribute_that_is_its_class_prefix_and_name_is_held_as_the_prefix(
    suite: str, attribute: str, shared: bool
) -> None:
    document = (
        f'<testsuite name="{suite}"><testcase classname="tests.test_m.TestK" name="t[0]"'
        f' file="tests/test_m.py" nodeid="{attribute}"/></testsuite>'
    )
    (case,) = parse_junit(document.encode()).cases
    assert case.nodeid == attribute
    assert (type(stored_nodeid(case)) is NodePrefix) is shared


def test_the_merged_report_read_back_holds_its_node_ids_as_class_prefixes() -> None:
    # `--compare-to`, `shard-durations` and `report` read the merged file a run wrote: its node
    # ids (every case has one) are held as their classes' prefixes, as pytest's were.
    cases = "".join(
        f'<testcase classname="tests.test_m.TestK" name="t[{n}]" file="tests/test_m.py"'
        f' nodeid="tests/test_m.py::TestK::t[{n}]"/>'
        for n in range(3)
    )
    report = parse_junit(f'<testsuite name="pytest">{cases}</testsuite>'.encode())
    again = parse_junit(to_junit_xml(report).encode())
    assert [case.nodeid for case in again.cases] == [case.nodeid for case in report.cases]
    assert all(type(stored_nodeid(case)) is NodePrefix for case in again.cases)
    # a report of another tool without node ids still has none
    other = parse_junit(
        b'<testsuite name="x"><testcase classname="a.b" name="c" file="a.py"/></testsuite>'
    )
    assert other.cases[0].nodeid == ""


def test_a_report_works_out_its_counts_once_and_a_changed_copy_anew() -> None:
    document = b"""<testsuite><testcase name="a"><failure message="x"/></testcase>
      <testcase name="b"/></testsuite>"""
    report = parse_junit(document)
    assert report.totals is report.totals and report.failures is report.failures
    assert (report.totals.failed, report.totals.passed) == (1, 1)
    passed_only = replace(report, cases=report.cases[1:])
    assert (passed_only.totals.failed, passed_only.totals.passed) == (0, 1)
    assert passed_only.failures == () and passed_only.conclusion.passing
    assert not report.conclusion.passing
    assert report == replace(report)  # what was worked out is no part of the value


def test_the_cases_read_skip_the_young_generations() -> None:
    # The young collection after a read would visit every case; they join the oldest at once.
    assert gc.isenabled() and not gc.get_freeze_count()
    report = parse_junit(b"<testsuite><testcase name='a'/><testcase name='b'/></testsuite>")
    oldest = gc.get_objects(generation=2)
    assert all(any(case is tracked for tracked in oldest) for case in report.cases)
    assert not gc.get_freeze_count()


def test_a_shards_file_held_as_bytes_reads_as_the_file_does(
    junit_from_pytest: Callable[[str, str], Path], tmp_path: Path
) -> None:
    # A shard hands pytest's file over as the bytes it read: those must read exactly as
    # `report` reads the file (a chunk at a time), whatever the cap, hostile or not.
    from modal_gpu_action.report.junit_reader import _CHUNK

    wide = "".join(f'<testcase classname="t.é" name="test_{n}_ü€😀"/>' for n in range(40_000))
    large = f'<testsuite name="pytest">{wide}</testsuite>'.encode()
    assert len(large) > 2 * _CHUNK
    on_disk = tmp_path / "junit.xml"
    mixed = junit_from_pytest("mixed", "xunit1").read_bytes()
    for data in (mixed, large, *HOSTILE_DOCUMENTS):
        on_disk.write_bytes(data)
        for cap in (len(data), len(data) - 1, len(data) // 2, _CHUNK, 7):
            assert parse_junit(data, name="shard", max_bytes=cap) == parse_junit(
                on_disk, name="shard", max_bytes=cap
            )
