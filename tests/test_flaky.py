"""Flaky tests: `rerun-failures` re-runs the failed tests where the suite ran, a test that passes
on a re-run is flaky (counted as passed, its own section, the `flaky` output), `flaky: fail` fails
the run, and the JUnit file keeps every run as Maven Surefire does (flakyFailure, rerunFailure).

Through the real command (`python -m modal_gpu_action run --backend local`, and `--backend modal`
against the Modal mock) on projects written here; the re-run logic (container/reruns.py) and the
reader/writer directly where a run cannot reach a case (a timeout, a cancel, other tools' files).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from modal_mock_server import clean_environ, run_cli, serving, serving_built_images, why_unavailable

from modal_gpu_action.container.protocol import Ending, GpuFacts, RunRequest, RunResult
from modal_gpu_action.container.reruns import failed_node_ids, rerun_failures
from modal_gpu_action.render.escaping import escape_inline
from modal_gpu_action.report.junit_reader import parse_junit
from modal_gpu_action.report.junit_writer import to_junit_xml
from modal_gpu_action.report.results import CaseOutcome
from modal_gpu_action.settings import SettingsError, load_settings

# Fails the first time it runs (its marker file is absent) and creates the marker: passes after.
FLAKY_TEST = """
import os
from pathlib import Path

MARKER = Path(os.environ.get("FLAKY_MARKER_DIR", Path(__file__).parent)) / ".{name}.ran"


def test_{name}():
    first_time = not MARKER.exists()
    MARKER.write_text("ran")
    assert not first_time, "{name} fails the first time"
"""
ALWAYS_FAILS = """
def test_always_fails():
    assert 1 + 1 == 3, "arithmetic is off"
"""
PASSES = """
import pytest


@pytest.mark.parametrize("n", range(4))
def test_passes(n):
    assert n >= 0
"""


def write_project(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "project"
    (folder / "tests").mkdir(parents=True)
    (folder / "pytest.ini").write_text("[pytest]\ntestpaths = tests\n")
    for name, text in files.items():
        (folder / "tests" / name).write_text(text)
    return folder


def flaky_project(tmp_path: Path, *, always: bool = False) -> Path:
    files = {"test_flaky.py": FLAKY_TEST.format(name="flaky"), "test_passes.py": PASSES}
    if always:
        files["test_always.py"] = ALWAYS_FAILS
    return write_project(tmp_path, files)


def github_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """GitHub mode on a workflow_dispatch run (no PR, no comment): outputs and summary files."""
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"ref": "refs/heads/main"}))
    for name in ("summary.md", "output.txt"):
        (tmp_path / name).touch()
    return {
        "PATH": "/usr/bin:/bin",
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "workflow_dispatch",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
        "GITHUB_WORKSPACE": str(tmp_path),
        "GITHUB_REPOSITORY": "octo/sample",
        "MODAL_GPU_ACTION_PYTHON": sys.executable,
        "INPUT_COMMENT": "off",
        **extra,
    }


def run_local(
    tmp_path: Path, folder: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "modal_gpu_action", "run", "--backend", "local"]
    command += ["--working-directory", str(folder), "--junit-xml", str(tmp_path / "out.xml")]
    command += ["--summary-file", str(tmp_path / "s.md"), "--comment-file", str(tmp_path / "c.md")]
    return subprocess.run(
        [*command, *args],
        cwd=tmp_path,
        env=github_environment(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=180,
    )


def read_outputs(path: Path) -> dict[str, str]:
    pairs = re.findall(
        r"^([\w-]+)<<(ghadelimiter_[\w-]+)\n(.*?)\n\2$", path.read_text(), re.S | re.M
    )
    return {name: value for name, _, value in pairs}


def case_named(junit: Path, name: str) -> ET.Element:
    found = [
        case for case in ET.parse(junit).getroot().iter("testcase") if case.get("name") == name
    ]
    assert len(found) == 1, [ET.tostring(case) for case in found]
    return found[0]


# Through the real command, local backend.


def test_a_test_that_passes_on_a_rerun_is_flaky_and_the_run_passes(tmp_path: Path) -> None:
    folder = flaky_project(tmp_path)
    result = run_local(tmp_path, folder, "--rerun-failures", "2")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "re-run 1 of 2: 1 failed test" in result.stdout
    assert "re-run 2 of 2" not in result.stdout  # nothing was still failing
    outputs = read_outputs(tmp_path / "output.txt")
    assert outputs["conclusion"] == "passed"
    assert (outputs["tests"], outputs["passed"], outputs["failed"]) == ("5", "5", "0")
    assert outputs["flaky"] == "1"
    # The JUnit file keeps the first failure as Surefire does: flakyFailure, no failure.
    case = case_named(tmp_path / "out.xml", "test_flaky")
    assert [child.tag for child in case] == ["flakyFailure"]
    assert "flaky fails the first time" in case[0].get("message", "")
    assert "flaky fails the first time" in case[0].findtext("stackTrace", "")
    # The summary's and the comment's Flaky sections name it with its first failure's line.
    for rendered in (tmp_path / "s.md", tmp_path / "c.md"):
        text = rendered.read_text()
        assert "Flaky (1)" in text
        assert re.search(r"`tests/test_flaky\.py::test_flaky` — failed 1 time, then passed: "
                         r"AssertionError:\S* flaky fails the first time", text), text  # fmt: skip
    flaky_section = (tmp_path / "s.md").read_text().split("### Flaky (1)")[1]
    assert "<summary>Traceback</summary>" in flaky_section  # of the first failure
    assert 'assert not first_time, "flaky fails the first time"' in flaky_section
    assert "| Flaky |" in (tmp_path / "summary.md").read_text()  # the job summary too


def test_flaky_fail_fails_the_run_and_says_why(tmp_path: Path) -> None:
    folder = flaky_project(tmp_path)
    result = run_local(tmp_path, folder, "--rerun-failures", "1", "--flaky", "fail")

    assert result.returncode == 1, result.stdout + result.stderr
    outputs = read_outputs(tmp_path / "output.txt")
    assert (outputs["conclusion"], outputs["failed"], outputs["flaky"]) == ("failed", "0", "1")
    assert "fails the run because 'flaky' is fail" in result.stdout
    assert "Flaky (1)" in (tmp_path / "s.md").read_text()


def test_flaky_fail_beside_a_real_failure_does_not_blame_the_flaky_test(tmp_path: Path) -> None:
    folder = flaky_project(tmp_path, always=True)
    result = run_local(tmp_path, folder, "--rerun-failures", "1", "--flaky", "fail")

    assert result.returncode == 1, result.stdout + result.stderr
    outputs = read_outputs(tmp_path / "output.txt")
    assert (outputs["failed"], outputs["flaky"]) == ("1", "1")
    assert "because 'flaky' is fail" not in result.stdout  # the failure fails it anyway


def test_without_reruns_the_flaky_test_fails_the_run(tmp_path: Path) -> None:
    folder = flaky_project(tmp_path)
    result = run_local(tmp_path, folder)

    assert result.returncode == 1
    assert "re-run" not in result.stdout
    assert read_outputs(tmp_path / "output.txt")["flaky"] == "0"
    assert [c.tag for c in case_named(tmp_path / "out.xml", "test_flaky")] == ["failure"]


def test_a_test_failing_every_rerun_stays_failed_with_each_rerun_kept(tmp_path: Path) -> None:
    folder = flaky_project(tmp_path, always=True)
    result = run_local(tmp_path, folder, "--rerun-failures", "2")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "re-run 2 of 2: 1 failed test\n" in result.stdout  # only the one still failing
    outputs = read_outputs(tmp_path / "output.txt")
    assert (outputs["failed"], outputs["flaky"], outputs["passed"]) == ("1", "1", "5")
    case = case_named(tmp_path / "out.xml", "test_always_fails")
    assert [child.tag for child in case] == ["failure", "rerunFailure", "rerunFailure"]
    assert all("arithmetic is off" in child.get("message", "") for child in case)
    assert "(failed 2 re-runs too)" in (tmp_path / "s.md").read_text().replace("\\", "")
    assert [c.tag for c in case_named(tmp_path / "out.xml", "test_flaky")] == ["flakyFailure"]


def test_each_shard_reruns_its_own_failures(tmp_path: Path) -> None:
    files = {f"test_flaky_{n}.py": FLAKY_TEST.format(name=f"flaky_{n}") for n in range(4)}
    folder = write_project(tmp_path, {**files, "test_passes.py": PASSES})
    result = run_local(tmp_path, folder, "--rerun-failures", "1", "--shards", "2")

    assert result.returncode == 0, result.stdout + result.stderr
    reruns = re.findall(r"^\[shard (\d)/2\] modal-gpu-action: re-run 1 of 1", result.stdout, re.M)
    assert sorted(reruns) == ["1", "2"]  # the flaky tests fell in both shards; each re-ran its own
    outputs = read_outputs(tmp_path / "output.txt")
    assert (outputs["tests"], outputs["passed"], outputs["flaky"]) == ("8", "8", "4")
    for n in range(4):
        assert [c.tag for c in case_named(tmp_path / "out.xml", f"test_flaky_{n}")] == [
            "flakyFailure"
        ]


def test_a_shard_that_crashed_is_not_rerun(tmp_path: Path) -> None:
    crash = "import ctypes\n\n\ndef test_zz_crash():\n    ctypes.string_at(0)\n"
    folder = write_project(
        tmp_path, {"test_flaky.py": FLAKY_TEST.format(name="flaky"), "test_zz.py": crash}
    )
    result = run_local(tmp_path, folder, "--rerun-failures", "2")

    assert result.returncode == 1
    assert "re-run" not in result.stdout
    assert [c.tag for c in case_named(tmp_path / "out.xml", "test_flaky")] == ["failure"]
    assert "signal 11" in (tmp_path / "out.xml").read_text()


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--rerun-failures", "-1", "a whole number from 0 to 10"),
        ("--rerun-failures", "11", "a whole number from 0 to 10"),
        ("--rerun-failures", "two", "a whole number from 0 to 10"),
        ("--flaky", "ignore", "one of pass, fail"),
    ],
)
def test_bad_rerun_inputs_exit_2_before_anything_runs(
    tmp_path: Path, flag: str, value: str, expected: str
) -> None:
    folder = flaky_project(tmp_path)
    result = run_local(tmp_path, folder, f"{flag}={value}")

    assert result.returncode == 2
    name = flag.removeprefix("--")
    assert f"invalid value {value!r} for input '{name}': expected {expected}" in result.stderr
    assert not (folder / "tests" / ".flaky.ran").exists()  # nothing ran


def test_the_inputs_read_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    local = {"INPUT_BACKEND": "local"}
    settings = load_settings(
        {}, {**local, "INPUT_RERUN_FAILURES": "3", "INPUT_FLAKY": "FAIL"}, workspace=tmp_path
    )
    assert (settings.rerun_failures, settings.flaky_fails) == (3, True)
    defaults = load_settings({}, local, workspace=tmp_path)
    assert (defaults.rerun_failures, defaults.flaky_fails) == (0, False)
    with pytest.raises(SettingsError, match="input 'rerun-failures'"):
        load_settings({"rerun-failures": "1.5"}, local, workspace=tmp_path)


# Through the Modal mock.

_UNAVAILABLE = why_unavailable()


# The durations of an earlier run of flaky_project(always=True): the shards get a plan from it.
DURATIONS = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="6">
<testcase classname="tests.test_always" name="test_always_fails" file="tests/test_always.py" time="3.0" />
<testcase classname="tests.test_flaky" name="test_flaky" file="tests/test_flaky.py" time="2.0" />
<testcase classname="tests.test_passes" name="test_passes[0]" file="tests/test_passes.py" time="1.0" />
</testsuite></testsuites>
"""


@pytest.mark.skipif(_UNAVAILABLE is not None, reason=f"MODAL E2E NOT RUN: {_UNAVAILABLE}")
@pytest.mark.parametrize("images", ["plain", "built"])
def test_reruns_happen_in_the_modal_container(tmp_path: Path, images: str) -> None:
    """On the plain mock (the host's Python runs the call) and with the images built (the
    image's own Python: the re-run and sharding plugins load there by name, the shard plan made
    from `shard-durations` on the runner)."""
    folder = flaky_project(tmp_path, always=True)
    (folder / "durations.xml").write_text(DURATIONS)
    junit = tmp_path / "junit.xml"
    args = ["--rerun-failures", "2", "--shards", "2", "--shard-durations", "durations.xml"]
    serve = serving if images == "plain" else serving_built_images
    markers = Path(tempfile.mkdtemp(prefix="flaky-"))  # outside the project: not uploaded
    env = f"FLAKY_MARKER_DIR={markers}" if images == "plain" else "FLAKY=1"
    (tmp_path / "modal-mock").mkdir()
    with serve(tmp_path / "modal-mock") as server:
        result = run_cli(
            ["run", "--backend", "modal", "--junit-xml", str(junit), "--comment", "off",
             *args, "--env", env],
            env=clean_environ(**server.env()),
            cwd=folder,
            timeout=300,
        )  # fmt: skip

    assert result.returncode == 1, result.output  # test_always_fails
    assert "modal-gpu-action: re-run 2 of 2: 1 failed test" in result.output
    assert "balanced by durations" in result.output
    assert [c.tag for c in case_named(junit, "test_flaky")] == ["flakyFailure"]
    assert [c.tag for c in case_named(junit, "test_always_fails")] == [
        "failure",
        "rerunFailure",
        "rerunFailure",
    ]
    assert "1 of the passed flaky" in result.output
    assert "6 tests: 5 passed, 1 failed" in result.output  # each test in one shard, once


# The `report` command on other tools' files.

SUREFIRE = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xsi:noNamespaceSchemaLocation="https://maven.apache.org/surefire/maven-surefire-plugin/xsd/surefire-test-report-3.0.xsd"
    version="3.0" name="example.ExampleTests" time="0.05" tests="3" errors="0" skipped="0" failures="1">
  <testcase name="passesSecondTime" classname="example.ExampleTests" time="0.01">
    <flakyFailure message="expected: &lt;1&gt; but was: &lt;2&gt;" type="org.opentest4j.AssertionFailedError">
      <stackTrace><![CDATA[org.opentest4j.AssertionFailedError: expected: <1> but was: <2>
	at example.ExampleTests.passesSecondTime(ExampleTests.java:12)]]></stackTrace>
      <system-out><![CDATA[attempt 1]]></system-out>
    </flakyFailure>
    <flakyError message="Connection refused" type="java.net.ConnectException">
      <stackTrace><![CDATA[java.net.ConnectException: Connection refused]]></stackTrace>
    </flakyError>
  </testcase>
  <testcase name="failsAlways" classname="example.ExampleTests" time="0.01">
    <failure message="always" type="java.lang.AssertionError"><![CDATA[java.lang.AssertionError: always]]></failure>
    <rerunFailure message="always again" type="java.lang.AssertionError">
      <stackTrace><![CDATA[java.lang.AssertionError: always again]]></stackTrace>
    </rerunFailure>
  </testcase>
  <testcase name="passes" classname="example.ExampleTests" time="0.01"/>
</testsuite>
"""


def test_report_shows_the_flaky_tests_of_a_surefire_file(tmp_path: Path) -> None:
    junit = tmp_path / "TEST-example.ExampleTests.xml"
    junit.write_text(SUREFIRE)
    summary = tmp_path / "summary.md"
    result = subprocess.run(
        [sys.executable, "-m", "modal_gpu_action", "report", str(junit),
         "--summary-file", str(summary)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 1, result.stderr  # failsAlways
    text = summary.read_text()
    assert "| 3 | 2 | 1 | 0 | 0 | 1 |" in text  # tests, passed, failed, errors, skipped, flaky
    assert "Flaky (1)" in text
    assert "`example.ExampleTests.passesSecondTime` — failed 2 times, then passed:" in text
    assert escape_inline("expected: <1> but was: <2>") in text  # the first failure's message
    assert "(failed 1 re-run too)" in text.replace("\\", "")


def test_the_reader_and_writer_keep_every_run() -> None:
    report = parse_junit(SUREFIRE.encode())
    flaky, always, passes = report.cases
    assert (flaky.outcome, flaky.flaky) == (CaseOutcome.PASSED, True)
    assert [(r.outcome, r.message) for r in flaky.reruns] == [
        (CaseOutcome.FAILED, "expected: <1> but was: <2>"),
        (CaseOutcome.ERROR, "Connection refused"),
    ]
    assert "ExampleTests.java:12" in flaky.reruns[0].detail
    assert (always.outcome, always.flaky, always.message) == (CaseOutcome.FAILED, False, "always")
    assert [r.message for r in always.reruns] == ["always again"]
    assert not passes.reruns and not passes.flaky
    assert report.totals.flaky == 1 and report.totals.passed == 2

    written = to_junit_xml(report)
    root = ET.fromstring(written)
    tags = {case.get("name"): [child.tag for child in case] for case in root.iter("testcase")}
    assert tags == {
        "passesSecondTime": ["flakyFailure", "flakyError"],
        "failsAlways": ["failure", "rerunFailure"],
        "passes": [],
    }
    assert parse_junit(written.encode()).cases == report.cases  # read back the same


def test_pytest_rerunfailures_style_attempts_beside_the_failure_keep_it_failed() -> None:
    xml = (
        '<testsuites><testsuite name="pytest"><testcase classname="t" name="test_x">'
        '<flakyFailure message="first">trace 1</flakyFailure>'
        '<failure message="last">trace 2</failure></testcase></testsuite></testsuites>'
    )
    (case,) = parse_junit(xml.encode()).cases
    assert (case.outcome, case.message, case.flaky) == (CaseOutcome.FAILED, "last", False)
    assert [(r.message, r.detail) for r in case.reruns] == [("first", "trace 1")]


# The re-run rounds (container/reruns.py), with a stand-in for pytest.


def _result(junit: str, *, seconds: float = 1.0, exit_code: int = 1) -> RunResult:
    gpu = GpuFacts(visible=False, gpus=[], cuda_version=None, note="no GPU")
    return RunResult(junit.encode(), exit_code, seconds, gpu, Ending.FINISHED, "")


def _junit(**cases: str) -> str:
    """`name="failure"|"error"|"passed"|"collection"` -> a pytest-like report with node ids."""
    body = ""
    for name, kind in cases.items():
        inner = {
            "failure": f'<failure message="{name} failed">trace of {name}</failure>',
            "error": f'<error message="failed on setup with boom">trace of {name}</error>',
            "collection": '<error message="collection failure">ImportError</error>',
            "passed": "",
        }[kind]
        body += f'<testcase classname="t" name="{name}" nodeid="t.py::{name}">{inner}</testcase>'
    return f'<testsuites><testsuite name="pytest" failures="9" errors="9">{body}</testsuite></testsuites>'


def test_rounds_rerun_only_the_tests_still_failing_and_merge_them() -> None:
    first = _junit(a="failure", b="error", c="passed", d="collection")
    rounds = iter([_junit(a="failure", b="passed"), _junit(a="failure")])
    asked: list[list[str]] = []

    def run_round(request: RunRequest, nodeids: list[str]) -> RunResult:
        asked.append(nodeids)
        assert request.shard_count == 1
        return _result(next(rounds))

    request = RunRequest("/", "tests", [], 100.0, {}, shard_index=1, shard_count=2,
                         rerun_failures=2)  # fmt: skip
    merged = rerun_failures(request, _result(first), run_round)

    assert asked == [["t.py::a", "t.py::b"], ["t.py::a"]]  # d failed at collection: never
    assert merged.exit_code == 1 and merged.duration_seconds == 3.0
    root = ET.fromstring(merged.junit_xml)
    tags = {case.get("name"): [child.tag for child in case] for case in root.iter("testcase")}
    assert tags["a"] == ["failure", "rerunFailure", "rerunFailure"]
    assert tags["b"] == ["flakyError"]
    assert tags["c"] == [] and tags["d"] == ["error"]
    suite = root.find("testsuite")
    assert suite is not None and (suite.get("failures"), suite.get("errors")) == ("1", "1")


def test_a_run_whose_failures_all_pass_again_exits_0() -> None:
    merged = rerun_failures(
        RunRequest("/", "", [], None, {}, rerun_failures=1),
        _result(_junit(a="failure")),
        lambda request, nodeids: _result(_junit(a="passed"), exit_code=0),
    )
    assert merged.exit_code == 0
    assert [r.outcome for r in parse_junit(merged.junit_xml).cases] == [CaseOutcome.PASSED]


def test_rounds_get_what_is_left_of_the_timeout_and_stop_when_none_is() -> None:
    timeouts: list[float] = []

    def run_round(request: RunRequest, nodeids: list[str]) -> RunResult:
        assert request.timeout_seconds is not None
        timeouts.append(request.timeout_seconds)
        time.sleep(0.8)
        return _result(_junit(a="failure"), seconds=0.8)

    request = RunRequest("/", "", [], 60.0, {}, rerun_failures=5)
    rerun_failures(request, _result(_junit(a="failure"), seconds=59.5), run_round)
    assert timeouts == []  # half a second left: no round

    # 3 s for the run, 1 s of it taken by the suite: rounds at 2 s and 1.2 s left, then none
    request = RunRequest("/", "", [], 3.0, {}, rerun_failures=5)
    merged = rerun_failures(request, _result(_junit(a="failure"), seconds=1.0), run_round)
    assert len(timeouts) == 2, timeouts
    assert 1.9 < timeouts[0] <= 2.0 and 1.0 <= timeouts[1] < 1.25
    assert merged.duration_seconds == pytest.approx(2.6)


def test_no_rounds_after_a_cancel_or_for_a_run_that_did_not_finish() -> None:
    cancel = threading.Event()
    cancel.set()
    request = RunRequest("/", "", [], None, {}, rerun_failures=2)

    def never(request: RunRequest, nodeids: list[str]) -> RunResult:
        raise AssertionError("no round should run")

    failing = _result(_junit(a="failure"))
    assert rerun_failures(request, failing, never, cancel_event=cancel) is failing
    stopped = RunResult(
        failing.junit_xml, None, 1.0, failing.gpu, Ending.TIMED_OUT, "", problem="x"
    )
    assert rerun_failures(request, stopped, never) is stopped
    assert failed_node_ids(ET.fromstring(_junit(a="failure", d="collection"))) == ["t.py::a"]


def test_a_secret_in_a_flaky_tests_first_failure_is_redacted() -> None:
    from modal_gpu_action.report.redaction import redact_report

    secret = "s3cr3t-VALUE-123"
    xml = (
        '<testsuite><testcase classname="t" name="test_x">'
        f'<flakyFailure message="token {secret}"><stackTrace>print({secret})</stackTrace>'
        "</flakyFailure></testcase></testsuite>"
    )
    (case,) = redact_report(parse_junit(xml.encode()), [secret]).cases
    assert case.flaky
    assert secret not in case.reruns[0].message + case.reruns[0].detail
    assert "***" in case.reruns[0].message


def test_the_flaky_section_stays_inert_whatever_the_tests_named_or_printed() -> None:
    from test_render import RUN_URL, WJ, assert_inert, render_html

    from modal_gpu_action.render.markdown import render_comment, render_summary
    from modal_gpu_action.report.results import CaseResult, TestCase, TestReport

    hostile = "</details><img src=x> @team #12 ``` https://evil.example"
    report = TestReport(
        tuple(
            TestCase(
                "t",
                f"test_{n}",
                CaseOutcome.PASSED,
                nodeid=f"tests/t.py::test_{n}[{hostile}]",
                reruns=(CaseResult(CaseOutcome.FAILED, f"boom {hostile}", f"E  {hostile}\n```"),),
            )
            for n in range(60)
        )
    )
    summary = render_summary(report)
    comment = render_comment(report, key="k", run_url=RUN_URL)
    for markdown, listed in ((summary, 50), (comment, 20)):
        root, _ = render_html(markdown)
        assert_inert(root, allowed_links=(RUN_URL,))
        text = root.text().replace(WJ, "")
        assert "Flaky (60)" in text
        assert text.count("failed 1 time, then passed: boom </details><img src=x>") == listed
        assert f"… and {60 - listed} more, all in the merged JUnit file" in text
    assert summary.count("<summary>Traceback</summary>") == 50  # the first failure's
