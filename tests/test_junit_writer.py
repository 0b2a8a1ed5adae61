"""The merged JUnit file: written case by case (write_junit_xml), through output_files'
stream_output (temporary file, then rename; never through a link), read back the same."""

from __future__ import annotations

import io
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from modal_gpu_action.github_actions.output_files import stream_output, write_output
from modal_gpu_action.report.junit_reader import parse_junit
from modal_gpu_action.report.junit_writer import to_junit_xml, write_junit_xml
from modal_gpu_action.report.results import (
    CaseOutcome,
    CaseResult,
    Problem,
    Subtests,
    TestCase,
    TestReport,
)

SMALL = TestReport(
    cases=(
        TestCase(
            "tests.test_a", "test_ok", CaseOutcome.PASSED, 0.5, file="tests/test_a.py", line=3
        ),
        TestCase(
            "tests.test_a",
            'test_bad["q"&<x>]',
            CaseOutcome.FAILED,
            1.25,
            "assert 1 == 2\nsecond line\tand a tab",
            "tests/test_a.py:9: AssertionError <&>",
            "tests/test_a.py",
            9,
            "tests/test_a.py::test_bad",
            more=(CaseResult(CaseOutcome.FAILED, "size 3", ""),),
        ),
        TestCase("tests.test_a", "test_later", CaseOutcome.NOT_RUN, message="not run"),
    ),
    wall_time=12.0,
    sources=("junit.xml",),
    problems=(Problem("shard 1/2", "pytest was killed", "core \x00 dumped"),),
    subtests=Subtests(passed=4, failed=1),
)

# The file's layout, pinned: ElementTree's with ET.indent, as the writer wrote before it streamed.
SMALL_XML = """\
<?xml version="1.0" encoding="utf-8"?>
<testsuites>
  <testsuite name="modal-gpu-action" tests="3" failures="1" errors="0" skipped="1" time="12.000">
    <properties>
      <property name="modal-gpu-action.subtests-passed" value="4" />
      <property name="modal-gpu-action.subtests-failed" value="1" />
      <property name="modal-gpu-action.subtests-skipped" value="0" />
    </properties>
    <testcase classname="tests.test_a" name="test_ok" time="0.500" file="tests/test_a.py" line="3" />
    <testcase classname="tests.test_a" name="test_bad[&quot;q&quot;&amp;&lt;x&gt;]" time="1.250" \
file="tests/test_a.py" line="9" nodeid="tests/test_a.py::test_bad">
      <failure message="assert 1 == 2&#10;second line&#09;and a tab">tests/test_a.py:9: \
AssertionError &lt;&amp;&gt;</failure>
      <failure message="size 3" />
    </testcase>
    <testcase classname="tests.test_a" name="test_later" time="0.000">
      <skipped message="not run" type="modal-gpu-action.not-run" />
    </testcase>
  </testsuite>
  <testsuite name="modal-gpu-action: problems with the run" tests="1" failures="0" errors="1" \
skipped="0" time="0.000">
    <testcase classname="modal-gpu-action" name="shard 1/2" time="0.000">
      <error message="pytest was killed">core \ufffd dumped</error>
    </testcase>
  </testsuite>
</testsuites>
"""


def test_the_merged_junit_keeps_its_layout_and_escapes_every_value() -> None:
    assert to_junit_xml(SMALL) == SMALL_XML
    out = io.BytesIO()
    write_junit_xml(SMALL, out)
    assert out.getvalue() == SMALL_XML.encode("utf-8")


def test_the_merged_junit_reads_back_as_the_report_it_was_written_from() -> None:
    again = parse_junit(to_junit_xml(SMALL).encode())
    assert again.cases == SMALL.cases
    assert again.subtests == SMALL.subtests
    assert again.problems == (Problem("shard 1/2", "pytest was killed", "core \ufffd dumped"),)


def test_text_xml_cannot_hold_is_replaced_and_the_file_stays_well_formed() -> None:
    hostile = "a\x00b\x1bc\ud800d\ufffee]]><!--&amp;\r\n"
    report = TestReport(
        cases=(
            TestCase(
                hostile, hostile, CaseOutcome.FAILED, 0.0, hostile, hostile, hostile, 1, hostile
            ),
        )
    )
    [case] = parse_junit(to_junit_xml(report).encode()).cases
    cleaned = "a\ufffdb\ufffdc\ufffdd\ufffde]]><!--&amp;\r\n"
    assert (case.classname, case.name, case.message, case.file, case.nodeid) == (cleaned,) * 5
    assert case.detail == cleaned.replace("\r\n", "\n")  # XML reads a line end in text as \n
    assert case.outcome == CaseOutcome.FAILED


PYTEST_SHAPED = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.test_a.TestK" name="test_one[x]" file="tests/test_a.py" line="4" time="0.5"/>
<testcase classname="tests.test_a.TestK" name="test_two[&quot;&amp;&lt;]" file="tests/test_a.py" line="9" time="0.5"/>
<testcase classname="tests.test_a.TestK" name="test_three[\u00e9&#9;]" file="tests/test_a.py" time="0.25"/>
<testcase classname="tests.te&quot;st_b" name="test_one" file="tests/te&quot;st_b.py" line="0" time="2"/>
<testcase classname="tests.te&quot;st_b" name="test_two" file="tests/te&quot;st_b.py" line="0" time="2"/>
<testcase classname="tests.test_a.TestK" name="test_four" time="0.5" nodeid="given::id&lt;"/>
<testcase classname="" name="test_five" time="0.5"/>
</testsuite></testsuites>"""


def test_each_case_is_written_as_elementtree_writes_it_whatever_it_shares_with_others() -> None:
    # The writer formats what cases share (a class, a file, a line, a time, the node id's
    # prefix) once: each case's element must still be its own, escaped as ElementTree escapes.
    report = parse_junit(PYTEST_SHAPED.encode())
    assert report.cases[0].nodeid == "tests/test_a.py::TestK::test_one[x]"
    written = [line.strip() for line in to_junit_xml(report).splitlines() if "<testcase" in line]
    expected = []
    for case in report.cases:
        attributes = {"classname": case.classname, "name": case.name}
        attributes["time"] = f"{case.duration:.3f}"
        if case.file:
            attributes["file"] = case.file
        if case.line is not None:
            attributes["line"] = str(case.line)
        if case.nodeid:
            attributes["nodeid"] = case.nodeid
        expected.append(ET.tostring(ET.Element("testcase", attributes), encoding="unicode"))
    assert written == expected
    assert parse_junit(to_junit_xml(report).encode()).cases == report.cases


class RecordingFile(io.RawIOBase):
    """A binary file that keeps only the size of each write."""

    def __init__(self) -> None:
        self.writes: list[int] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes.append(len(data))
        return len(data)


def test_a_large_report_is_written_a_batch_of_cases_at_a_time() -> None:
    cases = tuple(
        TestCase("tests.test_big", f"test_{n}", CaseOutcome.PASSED, 0.001, file="tests/big.py")
        for n in range(20_000)
    )
    out = RecordingFile()
    write_junit_xml(TestReport(cases=cases), out)  # type: ignore[arg-type]
    assert sum(out.writes) == len(to_junit_xml(TestReport(cases=cases)).encode())
    assert len(out.writes) > 10 and max(out.writes) < 100_000  # never the whole document


def test_stream_output_writes_through_a_temporary_file_and_replaces_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside.pth"
    outside.write_text("untouched", encoding="utf-8")
    path = tmp_path / "gpu-test-results.xml"
    path.symlink_to(outside)  # put there by the tests: replaced, never followed
    stream_output(path, lambda out: write_junit_xml(SMALL, out), workspace=tmp_path)
    assert not path.is_symlink()
    assert path.read_text(encoding="utf-8") == SMALL_XML
    assert outside.read_text(encoding="utf-8") == "untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-test-results.xml", "outside.pth"]


def test_stream_output_refuses_a_linked_folder_and_leaves_nothing_when_writing_fails(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "reports").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OSError, match="is a symbolic link"):
        stream_output(workspace / "reports" / "x.xml", lambda out: None, workspace=workspace)
    assert list(outside.iterdir()) == []

    def fails(out: object) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        stream_output(workspace / "x.xml", fails, workspace=workspace)
    assert sorted(os.listdir(workspace)) == ["reports"]  # no temporary file left behind
    write_output(workspace / "x.xml", "text \u00e9", workspace=workspace)
    assert (workspace / "x.xml").read_bytes() == "text \u00e9".encode()


def test_a_name_to_escape_is_escaped_wherever_it_falls_among_plain_ones() -> None:
    # Names are checked a batch of cases at a time: one to escape in any batch, first or
    # last case, must still be escaped, and the plain ones around it written as they are.
    for where in (0, 511, 512, 1023, 1100):
        cases = [
            TestCase("tests.test_big", f"test_{n}", CaseOutcome.PASSED, file="tests/big.py")
            for n in range(1101)
        ]
        cases[where] = TestCase("tests.test_big", 'test_["&<>\t]', CaseOutcome.PASSED)
        text = to_junit_xml(TestReport(cases=tuple(cases)))
        assert 'name="test_[&quot;&amp;&lt;&gt;&#09;]"' in text
        assert parse_junit(text.encode()).cases == tuple(cases)


def test_exactly_the_characters_xml_cannot_hold_are_replaced() -> None:
    # XML 1.0's Char production; the writer and the container's record spell its complement.
    from modal_gpu_action.container.record import _XML_ILLEGAL
    from modal_gpu_action.report.junit_writer import _NOT_XML

    def allowed(point: int) -> bool:
        return (
            point in (0x9, 0xA, 0xD)
            or 0x20 <= point <= 0xD7FF
            or 0xE000 <= point <= 0xFFFD
            or 0x10000 <= point <= 0x10FFFF
        )

    text = "".join(map(chr, range(0x110000)))
    expected = "".join("\ufffd" if not allowed(ord(c)) else c for c in text)
    assert _NOT_XML.sub("\ufffd", text) == expected
    assert _XML_ILLEGAL.sub("\ufffd", text) == expected


def test_the_quick_checks_for_plain_text_agree_with_a_character_by_character_one() -> None:
    # _clean and _plain tell common text (printable ASCII) at C speed; every ASCII and Latin-1
    # character in such text must come out as a check of each character would have it.
    import re

    from modal_gpu_action.report.junit_writer import _NOT_XML, _clean, _plain

    plain_by_character = re.compile(r"[ !#-%'-;=?-~]*")
    for point in range(0x100):
        for text in (chr(point), f"tests/test_a.py:9: in helper{chr(point)}\n    x = 1\t\r\n"):
            assert _clean(text) == _NOT_XML.sub("\ufffd", text), repr(text)
            assert _plain(text) == bool(plain_by_character.fullmatch(text)), repr(text)
