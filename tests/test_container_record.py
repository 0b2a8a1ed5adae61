"""container/record.py and names.py: the crash record read back, the JUnit made from it, and
pytest's own JUnit file checked before it is used (records and files written here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_container_run import cases, outcome

from modal_gpu_action.container import pytest_junit
from modal_gpu_action.container.names import junit_names, mangle_test_address
from modal_gpu_action.container.progress import PROGRESS_ENV
from modal_gpu_action.container.protocol import RunRequest
from modal_gpu_action.container.pytest_junit import MAX_JUNIT_BYTES_ENV, choose_junit
from modal_gpu_action.container.record import (
    NOT_RUN_TYPE,
    PROBLEM_CLASSNAME,
    STATE_HEAD_BYTES,
    STATE_TAIL_BYTES,
    STATE_TAIL_MAX_BYTES,
    SUBTESTS_PROPERTY,
    RecordState,
    read_progress,
    read_state,
    running_test,
    synthesize_junit,
)
from modal_gpu_action.container.run import run_tests
from modal_gpu_action.report import junit_reader
from modal_gpu_action.report.junit_reader import parse_junit
from modal_gpu_action.report.results import CaseOutcome, Problem, Subtests

# --- the crash record, turned into JUnit ---------------------------------------------------------


def test_junit_names_are_pytests_own_inside_pytest_and_its_copy_elsewhere() -> None:
    from _pytest.junitxml import mangle_test_address as pytests_own

    for nodeid in (
        "tests/test_a.py::test_x",
        "tests/sub/test_b.py::TestC::TestD::test_y[1-a::b]",
        "tests/test_c.py::test_z[c[d]]",
        "tests/test_d.py::test_w[x/y.py]",
        "tests/test_broken.py",
        "test_top.py::test_v",
    ):
        names = pytests_own(nodeid)
        assert mangle_test_address(nodeid) == names  # the copy used where pytest is not
        assert junit_names(nodeid) == (".".join(names[:-1]), names[-1])
    assert junit_names("t/test_a.py::T::test_x", prefix="gpu") == ("gpu.t.test_a.T", "test_x")


def test_synthesised_junit_keeps_each_outcome_as_pytest_writes_it() -> None:
    def report(nodeid: str, when: str, outcome: str, **more: object) -> dict[str, object]:
        return {"e": "report", "nodeid": nodeid, "when": when, "outcome": outcome, **more}

    records: list[dict[str, object]] = [
        {"e": "configure", "junit_prefix": ""},
        {"e": "sessionstart"},
        {"e": "collecterror", "nodeid": "tests/test_bad.py", "text": "ImportError: nope"},
        {"e": "start", "nodeid": "tests/t.py::test_ok", "location": ["tests/t.py", 3, "test_ok"]},
        report("tests/t.py::test_ok", "setup", "passed", duration=0.25),
        report("tests/t.py::test_ok", "call", "passed", duration=1.0, properties=[["k", "v"]]),
        report("tests/t.py::test_ok", "teardown", "passed", duration=0.25),
        {"e": "start", "nodeid": "tests/t.py::test_fail"},
        report("tests/t.py::test_fail", "call", "failed", message="assert 1 == 2", text="E  \x1b"),
        report("tests/t.py::test_fail", "teardown", "passed"),
        {"e": "start", "nodeid": "tests/t.py::test_setup"},
        report("tests/t.py::test_setup", "setup", "failed", message="boom", text="boom"),
        report("tests/t.py::test_setup", "teardown", "passed"),
        {"e": "start", "nodeid": "tests/t.py::test_skip"},
        report(
            "tests/t.py::test_skip", "setup", "skipped", message="no GPU", text="t.py:1: no GPU"
        ),
        report("tests/t.py::test_skip", "teardown", "passed"),
        {"e": "start", "nodeid": "tests/t.py::test_xfail"},
        report("tests/t.py::test_xfail", "call", "skipped", wasxfail="bug 12"),
        report("tests/t.py::test_xfail", "teardown", "passed"),
        {"e": "start", "nodeid": "tests/t.py::test_dies"},
        report("tests/t.py::test_dies", "setup", "passed"),
    ]
    xml = synthesize_junit(records, unfinished_reason="killed by signal 9", output_tail="last")

    found = cases(xml)
    assert {k: outcome(c) for k, c in found.items()} == {
        "::tests.test_bad": "error",
        "tests.t::test_ok": "passed",
        "tests.t::test_fail": "failure",
        "tests.t::test_setup": "error",
        "tests.t::test_skip": "skipped",
        "tests.t::test_xfail": "skipped",
        "tests.t::test_dies": "error",
    }
    ok = found["tests.t::test_ok"]
    assert (ok.get("time"), ok.get("file"), ok.get("line")) == ("1.500", "tests/t.py", "3")
    assert found["tests.t::test_fail"].find("failure").text == "E  \\x1b"  # type: ignore[union-attr]
    assert (
        found["tests.t::test_setup"].find("error").get("message") == 'failed on setup with "boom"'
    )  # type: ignore[union-attr]
    assert found["tests.t::test_xfail"].find("skipped").get("type") == "pytest.xfail"  # type: ignore[union-attr]
    dies = found["tests.t::test_dies"].find("error")
    assert dies is not None and dies.get("message") == "test did not finish: killed by signal 9"
    assert (dies.text or "").endswith("Last lines of output:\nlast")
    suite = ET.fromstring(xml).find("testsuite")
    assert suite is not None
    assert {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "7",
        "failures": "1",
        "errors": "3",
        "skipped": "2",
    }


def test_synthesised_junit_reads_back_as_pytest_counts_a_crashed_run() -> None:
    records: list[dict[str, object]] = [
        {"e": "configure", "junit_prefix": ""},
        {"e": "sessionstart"},
        {
            "e": "collectskip",
            "nodeid": "tests/test_gpu.py",
            "location": ["tests/test_gpu.py", None],
            "text": "('/w/tests/test_gpu.py', 7, 'Skipped: CuPy is not installed')",
        },
        {
            "e": "collected",
            "items": [
                ["tests/t.py::TestK::test_sizes", "tests/t.py", 3],
                ["tests/t.py::test_dies", "tests/t.py", 9],
                ["tests/t.py::test_later", "tests/t.py", 12],
            ],
        },
        {"e": "start", "nodeid": "tests/t.py::TestK::test_sizes"},
        *(
            {
                "e": "report",
                "nodeid": "tests/t.py::TestK::test_sizes",
                "when": "call",
                "outcome": outcome,
                "message": f"size {n}" if outcome == "failed" else "",
                "subtest": f"(size={n})",
            }
            for n, outcome in enumerate(["passed", "passed", "failed", "failed"])
        ),
        {"e": "report", "nodeid": "tests/t.py::TestK::test_sizes", "when": "call", "outcome": "passed"},
        {"e": "report", "nodeid": "tests/t.py::TestK::test_sizes", "when": "teardown", "outcome": "passed"},
        {"e": "start", "nodeid": "tests/t.py::test_dies"},
        {"e": "note", "name": "record of the run", "message": "cut", "detail": ""},
    ]  # fmt: skip
    xml = synthesize_junit(records, unfinished_reason="pytest was killed by signal 9")
    for case in ET.fromstring(xml).iter("testcase"):
        assert case.get("classname") == PROBLEM_CLASSNAME or case.get("nodeid")
    report = parse_junit(xml)
    assert [(case.id, case.outcome) for case in report.cases] == [
        ("tests/test_gpu.py", CaseOutcome.SKIPPED),
        ("tests/t.py::TestK::test_sizes", CaseOutcome.FAILED),
        ("tests/t.py::test_dies", CaseOutcome.ERROR),
        ("tests/t.py::test_later", CaseOutcome.NOT_RUN),
    ]
    assert report.cases[0].message == "CuPy is not installed" and report.cases[0].collection
    assert [r.message for r in report.cases[1].results] == ["size 2", "size 3"]
    assert report.cases[3].message == "not run: pytest was killed by signal 9"
    assert report.subtests == Subtests(passed=2, failed=2)
    assert report.problems == (Problem("record of the run", "cut"),)


def test_the_names_the_host_reads_are_the_ones_the_runner_writes() -> None:
    assert (PROBLEM_CLASSNAME, NOT_RUN_TYPE, SUBTESTS_PROPERTY) == (
        junit_reader.PROBLEM_CLASSNAME,
        junit_reader.NOT_RUN_TYPE,
        junit_reader.SUBTESTS_PROPERTY,
    )


def test_pytests_own_junit_gets_node_ids_and_subtest_counts_from_the_plugin(
    tmp_path: Path,
) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "base.py").write_text("class Shared:\n    def test_inherited(self):\n        pass\n")
    (tests / "test_k.py").write_text(
        "import unittest\nfrom base import Shared\n\n\n"
        "class TestHere(Shared):\n    pass\n\n\n"
        "class TestK(unittest.TestCase):\n    def test_sizes(self):\n"
        "        for n in range(4):\n            with self.subTest(n=n):\n"
        "                self.assertLess(n, 3)\n"
    )
    result = run_tests(
        RunRequest(str(tmp_path), "tests", ["-p", "no:cacheprovider"], 60.0, {}), stream=None
    )
    assert isinstance(result.junit_xml, bytes)  # pytest's own file, as read
    report = parse_junit(result.junit_xml)
    assert sorted(case.id for case in report.cases) == [
        "tests/test_k.py::TestHere::test_inherited",  # its file is base.py: only the id says
        "tests/test_k.py::TestK::test_sizes",
    ]
    assert report.subtests == Subtests(passed=3, failed=1)


# --- hostile files: read back capped, and never fatally -----------------------------------------


def chosen(junit: Path, progress: Path, reason: str, *, open_file: bool) -> bytes:
    """choose_junit's report as bytes, however it came: with `open_file` (the local backend's
    way) a whole file of pytest's comes back open, which is read here and closed."""
    found = choose_junit(junit, progress, reason, "", open_file=open_file)
    if isinstance(found, bytes):
        return found
    with found:
        return found.read()


BOTH_WAYS = pytest.mark.parametrize("open_file", [False, True], ids=["bytes", "open-file"])


@BOTH_WAYS
@pytest.mark.parametrize(
    ("cap", "used"), [("", True), ("1000", False), (str(1 << 40), True), ("-5", True)]
)
def test_the_junit_cap_can_be_lowered_but_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cap: str, used: bool, open_file: bool
) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text("<testsuites>" + " " * 2000 + "</testsuites>")
    monkeypatch.setenv(MAX_JUNIT_BYTES_ENV, cap)
    xml = chosen(junit, tmp_path / "no-record.jsonl", "", open_file=open_file)
    if used:
        assert xml == junit.read_bytes()
    else:
        [error] = [case.find("error") for case in cases(xml).values()]
        assert error is not None
        assert error.get("message", "").startswith(
            "pytest's JUnit report was not used: it is 2,025 bytes, more than the 1,000 read"
        )


def test_the_runner_uses_whatever_pytest_report_the_host_reads_whole() -> None:
    # One cap for a shard's report on both sides: below the host's, a run of more than about
    # 280,000 tests lost pytest's report to the record (itself read capped).
    assert pytest_junit.MAX_JUNIT_BYTES == junit_reader.MAX_JUNIT_BYTES


@BOTH_WAYS
def test_a_whole_pytest_report_over_64_mib_is_used_as_it_is(
    tmp_path: Path, open_file: bool
) -> None:
    junit = tmp_path / "junit.xml"
    case = b'<testcase classname="tests.test_m" name="t" file="tests/test_m.py" line="1"/>'
    with junit.open("wb") as out:
        out.write(b'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">')
        out.write(case * (65 * 1024 * 1024 // len(case) + 1))
        out.write(b"</testsuite></testsuites>")
    assert junit.stat().st_size > 65 * 1024 * 1024
    xml = chosen(junit, tmp_path / "no-record.jsonl", "", open_file=open_file)
    assert xml == junit.read_bytes()  # pytest's own, not the record's stand-in


@BOTH_WAYS
def test_a_pipe_in_place_of_pytests_junit_file_is_not_waited_on(
    tmp_path: Path, open_file: bool
) -> None:
    pipe = tmp_path / "junit.xml"
    os.mkfifo(pipe)  # nobody writes to it
    xml = chosen(pipe, tmp_path / "no-record.jsonl", "", open_file=open_file)
    [error] = [case.find("error") for case in cases(xml).values()]
    assert error is not None
    assert error.get("message", "").startswith(
        "pytest's JUnit report was not used: it is a pipe, a socket or a device"
    )


def progress_lines(tests: int) -> list[dict[str, object]]:
    records: list[dict[str, object]] = [
        {"e": "configure", "junit_prefix": ""},
        {"e": "sessionstart"},
    ]
    for n in range(tests):
        nodeid = f"tests/test_a.py::test_{n}"
        records.append({"e": "start", "nodeid": nodeid, "location": ["tests/test_a.py", n, nodeid]})
        records += [
            {"e": "report", "nodeid": nodeid, "when": when, "outcome": "passed", "duration": 0.1}
            for when in ("setup", "call", "teardown")
        ]
    records.append({"e": "start", "nodeid": "tests/test_a.py::test_running"})
    return records


def test_a_progress_record_past_its_cap_keeps_both_ends_and_says_what_is_missing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "progress.jsonl"
    written = progress_lines(1_000)
    path.write_text("".join(json.dumps(record) + "\n" for record in written))
    size = path.stat().st_size
    records = read_progress(path, max_bytes=20_000)
    [note] = [record for record in records if record["e"] == "note"]
    index = records.index(note)
    assert records[:index] == written[:index]  # the first half: whole lines only
    assert records[index + 1 :] == written[len(written) - len(records) + index + 1 :]
    assert records[0]["e"] == "configure" and records[-1]["e"] == "start"
    assert note["message"].startswith(
        f"The action's record of the run is {size:,} bytes, more than the 20,000 that are read"
    )
    assert running_test(records) == "tests/test_a.py::test_running"
    xml = synthesize_junit(records, unfinished_reason="it crashed")
    found = cases(xml)
    assert outcome(found["modal-gpu-action::record of the run"]) == "error"
    assert outcome(found["tests.test_a::test_running"]) == "error"
    assert len(found) < 1_000  # the middle is missing, and the note says so
    assert read_progress(path) == written  # within the default cap: everything


def write_records(path: Path, records: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def test_the_records_state_comes_from_its_ends_and_matches_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    lines = progress_lines(30_000)  # ~6 MB: more than the head and the tail read
    write_records(path, lines)
    assert path.stat().st_size > 2 * (STATE_HEAD_BYTES + STATE_TAIL_BYTES)
    assert read_state(path) == RecordState(
        started=True, finished=False, running="tests/test_a.py::test_running"
    )
    assert read_state(path).running == running_test(read_progress(path))  # as read all along
    write_records(path, [*lines[:-1], {"e": "sessionfinish", "exitstatus": 0}])
    assert read_state(path) == RecordState(True, True, None)
    # the same answer for a small record, read whole
    write_records(path, [*lines[:50], lines[-1]])
    assert read_state(path) == RecordState(True, False, "tests/test_a.py::test_running")
    assert read_state(tmp_path / "missing.jsonl") == RecordState()


def test_a_test_whose_reports_fill_the_tail_is_found_by_reading_the_whole_record(
    tmp_path: Path,
) -> None:
    nodeid = "tests/test_a.py::test_many_subtests"
    subtests = [
        {"e": "report", "nodeid": nodeid, "when": "call", "outcome": "passed", "subtest": "x" * 50}
    ] * 40_000  # ~5 MB of reports after the test's start
    path = tmp_path / "progress.jsonl"
    write_records(path, [*progress_lines(3)[:-1], {"e": "start", "nodeid": nodeid}, *subtests])
    assert read_state(path).running == nodeid


@pytest.mark.parametrize("reports_bytes", [10_000, 200_000, 900_000])
def test_the_tail_is_read_back_until_it_holds_the_running_tests_start(
    tmp_path: Path, reports_bytes: int
) -> None:
    # The tail grows from STATE_TAIL_BYTES while it holds no test's start: a test whose
    # reports fill the first tail, or the next, is still found, as reading it all finds it.
    nodeid = "tests/test_a.py::test_long"
    report = {"e": "report", "nodeid": nodeid, "when": "call", "outcome": "passed", "s": "x" * 50}
    many = [report] * (reports_bytes // len(json.dumps(report)))
    path = tmp_path / "progress.jsonl"
    write_records(path, [*progress_lines(30_000)[:-1], {"e": "start", "nodeid": nodeid}, *many])
    assert path.stat().st_size > STATE_HEAD_BYTES + STATE_TAIL_MAX_BYTES
    assert read_state(path) == RecordState(True, False, nodeid)
    assert read_state(path).running == running_test(read_progress(path))


def pytest_like_junit(cases_count: int) -> bytes:
    body = "".join(
        f'<testcase classname="tests.test_a" name="test_{n}" time="0.001" />'
        for n in range(cases_count)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
        f'<testsuite name="pytest" tests="{cases_count}">{body}</testsuite></testsuites>'
    ).encode()


@BOTH_WAYS
def test_pytests_file_cut_anywhere_gives_way_to_the_record(tmp_path: Path, open_file: bool) -> None:
    junit, progress = tmp_path / "junit.xml", tmp_path / "progress.jsonl"
    write_records(progress, progress_lines(3))
    whole = pytest_like_junit(3)
    for cut in range(len(whole)):
        junit.write_bytes(whole[:cut])
        xml = chosen(junit, progress, "it crashed", open_file=open_file)
        assert b"synthesised by modal-gpu-action" in xml, cut
    junit.write_bytes(whole + b"\n")
    assert chosen(junit, progress, "", open_file=open_file) == whole + b"\n"


@pytest.mark.parametrize(
    ("prolog", "why"),
    [
        ("<!-- a comment --><?pi x?>\n", None),
        ('<?xml version="1.0" encoding="UTF-8"?>', None),
        ('<?xml version="1.0" encoding="utf-16"?>', "it declares the encoding utf-16, not UTF-8"),
        ('<!-- x --><!doctype testsuites [<!ENTITY a "b">]>', "it declares a document type"),
    ],
)
@BOTH_WAYS
def test_pytests_file_is_judged_by_its_prolog_without_being_parsed(
    tmp_path: Path, prolog: str, why: str | None, open_file: bool
) -> None:
    junit, progress = tmp_path / "junit.xml", tmp_path / "progress.jsonl"
    write_records(progress, progress_lines(3))
    text = prolog + pytest_like_junit(2).decode().split("?>", 1)[1]
    junit.write_text(text)
    xml = chosen(junit, progress, "", open_file=open_file)
    if why is None:
        assert xml == text.encode()
    else:
        error = cases(xml)["modal-gpu-action::pytest's JUnit report"].find("error")
        assert error is not None
        assert error.get("message", "").startswith(f"pytest's JUnit report was not used: {why}")


def test_a_whole_file_comes_back_open_at_its_start_and_reads_after_its_removal(
    tmp_path: Path,
) -> None:
    junit, progress = tmp_path / "junit.xml", tmp_path / "progress.jsonl"
    write_records(progress, progress_lines(3))
    whole = pytest_like_junit(3)
    junit.write_bytes(whole)

    found = choose_junit(junit, progress, "", "", open_file=True)

    assert not isinstance(found, bytes)
    with found:
        junit.unlink()  # the run's folder goes beside the host's parse (run.py)
        assert found.read() == whole


def test_a_prolog_longer_than_the_head_judged_is_read_whole_instead(tmp_path: Path) -> None:
    # Judged by its first 64 KB, the file is not whole; read whole, it is: its bytes come back.
    junit, progress = tmp_path / "junit.xml", tmp_path / "progress.jsonl"
    write_records(progress, progress_lines(3))
    text = "<!--" + "x" * 70_000 + "-->" + pytest_like_junit(2).decode().split("?>", 1)[1]
    junit.write_text(text)

    assert choose_junit(junit, progress, "", "", open_file=True) == text.encode()


def test_a_progress_record_that_is_no_file_is_one_note(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link").symlink_to("/dev/zero")
    for name, why in [
        ("dir", "it is a directory, not a regular file"),
        ("pipe", "it is a pipe, a socket or a device, not a regular file"),
        ("link", "it is a symbolic link"),
    ]:
        [note] = read_progress(tmp_path / name)
        assert note["message"] == f"The action's record of the run was not read: {why}."
    assert read_progress(tmp_path / "missing") == []


def test_records_of_the_wrong_shape_are_left_out_never_fatal(tmp_path: Path) -> None:
    nodeid = "tests/t.py::test_x"
    records: list[dict[str, object]] = [
        {"e": "configure", "junit_prefix": ["not", "a", "string"]},
        {"e": "start", "nodeid": nodeid, "junit": "nope", "location": {"a": 1}},
        {"e": "start", "nodeid": 42},
        {"e": "report", "nodeid": nodeid, "when": "call", "outcome": "failed", "duration": "x"},
        {"e": "report", "nodeid": nodeid, "when": "call", "outcome": "passed", "duration": 1e999},
        {"e": "report", "nodeid": nodeid, "when": "x", "outcome": "skipped", "properties": "k=v"},
        {
            "e": "report",
            "nodeid": nodeid,
            "when": "teardown",
            "outcome": "passed",
            "properties": [["k"]],
            "location": [None, "x"],
        },
        {"e": "note", "name": None, "message": ["x"], "detail": 5},
    ]
    path = tmp_path / "progress.jsonl"
    lines = [json.dumps(record) for record in records]
    path.write_text("\n".join(["[" * 100_000, "{", "5", *lines, '{"e": "start"']))
    assert read_progress(path) == records
    found = cases(synthesize_junit(records))
    assert sorted(found) == ["modal-gpu-action::None", "tests.t::test_x"]
    assert found["tests.t::test_x"].get("time") == "0.000"


def test_every_test_after_a_crash_is_not_run_however_many_were_collected(
    tmp_path: Path,
) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_many.py").write_text(
        "import os, pytest\n\n\n"
        "@pytest.mark.parametrize('n', range(300), ids=lambda n: f'a-rather-long-parameter-{n}')\n"
        "def test_n(n):\n    if n == 150:\n        os._exit(9)\n"
    )
    result = run_tests(
        RunRequest(str(tmp_path), "", ["-p", "no:cacheprovider"], 60.0, {}), stream=None
    )
    assert b"synthesised by modal-gpu-action" in result.junit_xml
    report = parse_junit(result.junit_xml)
    totals = report.totals
    assert (totals.tests, totals.passed, totals.errors, totals.not_run) == (300, 150, 1, 149)
    assert report.cases[-1].id == "test_many.py::test_n[a-rather-long-parameter-299]"


def test_a_passing_test_costs_two_lines_of_record_and_keeps_its_time(tmp_path: Path) -> None:
    (tmp_path / "test_two.py").write_text(
        "import time\n\n"
        "def test_plain():\n    time.sleep(0.05)\n\n"
        "def test_with_property(record_property):\n    record_property('k', 1)\n\n"
        "def test_failing():\n    assert False\n"
    )
    record = tmp_path / "progress.jsonl"
    source = str(Path(junit_reader.__file__).parents[2])
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "error",
         "-p", "modal_gpu_action.container.progress", "test_two.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": source, PROGRESS_ENV: str(record)},
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # no warning of ours either
    records = read_progress(record)
    lines = {}
    for entry in records:
        if "nodeid" in entry:
            lines.setdefault(entry["nodeid"].split("::")[1], []).append(entry)
    assert [(r["e"], r.get("when")) for r in lines["test_plain"]] == [
        ("start", None),
        ("report", "teardown"),
    ]
    assert lines["test_plain"][1]["duration"] >= 0.05  # setup + call + teardown
    assert [r.get("when") for r in lines["test_with_property"]] == [None, "call", "teardown"]
    assert [r.get("when") for r in lines["test_failing"]] == [None, "call", "teardown"]
    found = cases(synthesize_junit(records, unfinished_reason="it crashed"))
    assert {name: outcome(case) for name, case in found.items()} == {
        "test_two::test_plain": "passed",
        "test_two::test_with_property": "passed",
        "test_two::test_failing": "failure",
    }
    assert float(found["test_two::test_plain"].get("time", "0")) >= 0.05
