"""container/run.py and process.py: real pytest subprocesses on the fixture projects in
tests/fixtures/projects/."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from processes import process_gone, wait_for_file
from test_container_probe import fake_nvidia_smi

from modal_gpu_action import container
from modal_gpu_action.container import process
from modal_gpu_action.container.process import MAX_LINE_CHARS, TAIL_LINES, summarise_tail
from modal_gpu_action.container.protocol import (
    Ending,
    Gpu,
    GpuFacts,
    RunnerError,
    RunRequest,
    RunResult,
)
from modal_gpu_action.container.pytest_junit import MAX_JUNIT_BYTES_ENV
from modal_gpu_action.container.run import run_tests
from modal_gpu_action.report.junit_reader import parse_junit
from modal_gpu_action.report.results import NodePrefix, stored_nodeid

PROJECTS = Path(__file__).parent / "fixtures" / "projects"
PACKAGE = Path(container.__file__).parent


def project(tmp_path: Path, name: str) -> Path:
    """A fresh copy of a fixture project (pytest's cache and our files stay out of the repo)."""
    return Path(shutil.copytree(PROJECTS / name, tmp_path / name))


def request_for(path: Path, **changes: object) -> RunRequest:
    values: dict[str, object] = {
        "working_directory": str(path),
        "test_path": "tests",
        "pytest_args": ["-p", "no:cacheprovider"],
        "timeout_seconds": 60.0,
        "env": {},
    }
    values.update(changes)
    return RunRequest.from_dict(values)


def cases(junit_xml: str) -> dict[str, ET.Element]:
    """Each testcase by `classname::name`."""
    root = ET.fromstring(junit_xml)
    return {f"{c.get('classname')}::{c.get('name')}": c for c in root.iter("testcase")}


def outcome(case: ET.Element) -> str:
    for tag in ("failure", "error", "skipped"):
        if case.find(tag) is not None:
            return tag
    return "passed"


def quiet(request: RunRequest, **kwargs: object) -> RunResult:
    return run_tests(request, stream=None, **kwargs)  # type: ignore[arg-type]


# --- normal ends --------------------------------------------------------------------------------


def test_passing_suite_returns_pytests_own_junit_with_file_and_line(tmp_path: Path) -> None:
    result = quiet(request_for(project(tmp_path, "passing")))

    assert (result.exit_code, result.ending, result.problem) == (0, Ending.FINISHED, None)
    assert not result.no_tests
    assert isinstance(result.junit_xml, bytes)  # pytest's own file, as read: not synthesised
    found = cases(result.junit_xml)
    assert {k: outcome(c) for k, c in found.items()} == {
        "tests.test_ok::test_adds": "passed",
        "tests.test_ok::test_records_a_property": "passed",
        "tests.test_ok::test_skipped": "skipped",
        "tests.test_ok::test_known_bug": "skipped",
    }
    adds = found["tests.test_ok::test_adds"]
    assert (adds.get("file"), adds.get("line")) == ("tests/test_ok.py", "3")  # 0-based, as pytest
    prop = found["tests.test_ok::test_records_a_property"].find("properties/property")
    assert prop is not None and (prop.get("name"), prop.get("value")) == ("answer", "42")
    assert result.duration_seconds > 0


def test_the_node_ids_pytest_writes_read_back_as_their_class_prefix_not_as_copies(
    tmp_path: Path,
) -> None:
    # pytest writes each case's node id in a run (the plugin's `nodeid` attribute). Read back,
    # a case whose id is its class's `path::classes` and its name holds that prefix, shared by
    # the class's cases (a million ids held whole are a third of a report's memory), and the
    # merged file is then written the quick way: the same ids either way.
    result = quiet(request_for(project(tmp_path, "ids")))
    written = [case.get("nodeid") for case in ET.fromstring(result.junit_xml).iter("testcase")]
    report = parse_junit(result.junit_xml)
    assert [case.nodeid for case in report.cases] == written and len(written) == 8
    whole = [case.nodeid for case in report.cases if type(stored_nodeid(case)) is not NodePrefix]
    # A test inherited from a class in another file has that file: no prefix tells its id.
    assert whole == ["tests/test_ids.py::TestInheritedHere::test_inherited"]


def test_failing_test_gives_exit_1_and_a_failure_case(tmp_path: Path) -> None:
    result = quiet(request_for(project(tmp_path, "failing")))

    assert (result.exit_code, result.ending, result.problem) == (1, Ending.FINISHED, None)
    failure = cases(result.junit_xml)["tests.test_mixed::test_fails"].find("failure")
    assert failure is not None and "== 3" in (failure.get("message") or "")


def test_no_tests_collected_is_exit_5_and_no_tests(tmp_path: Path) -> None:
    result = quiet(request_for(project(tmp_path, "empty")))

    assert (result.exit_code, result.ending, result.problem) == (5, Ending.FINISHED, None)
    assert result.no_tests
    assert cases(result.junit_xml) == {}


def test_a_pytest_usage_error_means_pytest_could_not_run_the_tests(tmp_path: Path) -> None:
    path = project(tmp_path, "passing")
    result = quiet(request_for(path, pytest_args=["--no-such-option"]))

    assert (result.exit_code, result.ending) == (4, Ending.COULD_NOT_RUN)
    assert result.problem == "pytest exited with code 4 (usage error)"
    assert "--no-such-option" in result.output_tail
    ET.fromstring(result.junit_xml)  # still a readable (empty) report


def test_streams_every_line_live_with_the_label(tmp_path: Path) -> None:
    out = io.StringIO()
    result = run_tests(request_for(project(tmp_path, "failing"), label="shard 2/3"), stream=out)

    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith("[shard 2/3] ") for line in lines)
    assert any("1 failed, 1 passed" in line for line in lines)
    assert "1 failed, 1 passed" in result.output_tail
    assert result.label == "shard 2/3"


# --- crashes, timeouts, cancellation -------------------------------------------------------------


def test_segfault_mid_run_keeps_the_finished_tests_and_names_the_crash(tmp_path: Path) -> None:
    result = quiet(request_for(project(tmp_path, "crash")))

    assert (result.exit_code, result.ending) == (None, Ending.CRASHED)
    assert result.problem == (
        "pytest was killed by signal 11 (SIGSEGV) while running tests/test_crash.py::test_dies"
    )
    assert b"synthesised" in result.junit_xml
    found = {k: outcome(c) for k, c in cases(result.junit_xml).items()}
    assert found == {
        "tests.test_crash::test_first": "passed",
        "tests.test_crash::test_second": "passed",
        "tests.test_crash::test_dies": "error",
        "tests.test_crash::test_never_reached": "skipped",  # collected, never started
    }
    not_run = cases(result.junit_xml)["tests.test_crash::test_never_reached"].find("skipped")
    assert not_run is not None and not_run.get("type") == "modal-gpu-action.not-run"
    assert not_run.get("message") == f"not run: {result.problem}"
    error = cases(result.junit_xml)["tests.test_crash::test_dies"].find("error")
    assert error is not None and "Fatal Python error: Segmentation fault" in (error.text or "")
    assert "Fatal Python error: Segmentation fault" in result.output_tail
    assert 'test_crash.py", line 17 in test_dies' in result.output_tail
    assert "frames of pytest and pluggy left out" in result.output_tail
    assert "/_pytest/" not in result.output_tail


def test_os_exit_mid_run_is_a_crash_with_its_exit_code(tmp_path: Path) -> None:
    result = quiet(request_for(project(tmp_path, "crash"), env={"CRASH_MODE": "exit"}))

    assert (result.exit_code, result.ending) == (1, Ending.CRASHED)
    assert result.problem == (
        "pytest exited with code 1 without finishing its report"
        " while running tests/test_crash.py::test_dies"
    )
    found = {k: outcome(c) for k, c in cases(result.junit_xml).items()}
    assert found["tests.test_crash::test_second"] == "passed"
    assert found["tests.test_crash::test_dies"] == "error"


def test_timeout_kills_pytest_and_the_children_it_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    request = request_for(
        project(tmp_path, "hang"), timeout_seconds=2.5, env={"HANG_PID_FILE": str(pid_file)}
    )
    started = time.monotonic()
    result = quiet(request, kill_grace_seconds=1.0)

    assert time.monotonic() - started < 6
    assert result.timed_out and not result.cancelled
    assert (result.exit_code, result.ending) == (None, Ending.TIMED_OUT)
    assert result.problem == (
        "pytest timed out after 2.5 s and was stopped while running tests/test_hang.py::test_hangs"
    )
    assert process_gone(int(pid_file.read_text()))  # the `sleep 60` the test started
    found = {k: outcome(c) for k, c in cases(result.junit_xml).items()}
    assert found == {
        "tests.test_hang::test_quick": "passed",
        "tests.test_hang::test_hangs": "error",
    }
    # the dump pytest prints on our SIGTERM says where the test was stuck
    assert 'test_hang.py", line 15 in test_hangs' in result.output_tail


def test_cancel_event_stops_the_run_from_another_thread(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    request = request_for(
        project(tmp_path, "hang"), timeout_seconds=None, env={"HANG_PID_FILE": str(pid_file)}
    )
    cancel = threading.Event()

    def cancel_once_hanging() -> None:
        wait_for_file(pid_file)
        cancel.set()

    threading.Thread(target=cancel_once_hanging, daemon=True).start()
    result = quiet(request, cancel_event=cancel, kill_grace_seconds=1.0)

    assert result.cancelled and not result.timed_out
    assert result.ending is Ending.CANCELLED
    assert result.problem == "the run was cancelled while running tests/test_hang.py::test_hangs"
    assert process_gone(int(pid_file.read_text()))
    assert outcome(cases(result.junit_xml)["tests.test_hang::test_quick"]) == "passed"


def test_an_exit_is_seen_when_it_happens_not_at_the_next_cancel_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A wait that can be cancelled used to poll for the exit (up to 50 ms late every run); with
    the cancel check pushed to a minute, a command of a moment must still return at once."""
    monkeypatch.setattr(process, "CANCEL_CHECK_SECONDS", 60.0)
    started = time.monotonic()
    exited = process.run_in_own_group(
        [sys.executable, "-c", "import time; time.sleep(0.2)"],
        env=dict(os.environ),
        timeout=120.0,
        cancel_event=threading.Event(),
    )
    assert (exited.returncode, exited.stopped) == (0, None)
    assert time.monotonic() - started < 30  # a minute when the exit waits for the check


# --- failures that are not the tests' ------------------------------------------------------------


def test_a_missing_working_directory_is_a_runner_error(tmp_path: Path) -> None:
    with pytest.raises(RunnerError, match="working directory not found"):
        quiet(request_for(tmp_path / "nowhere"))


def test_a_missing_interpreter_is_a_runner_error(tmp_path: Path) -> None:
    request = request_for(project(tmp_path, "passing"), python=str(tmp_path / "no-python"))
    with pytest.raises(RunnerError, match="could not start pytest"):
        quiet(request)


def test_an_interpreter_without_pytest_could_not_run_the_tests(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text('#!/bin/sh\necho "$0: No module named pytest" >&2\nexit 1\n')
    python.chmod(0o755)
    result = quiet(request_for(project(tmp_path, "passing"), python=str(python)))

    assert (result.exit_code, result.ending) == (1, Ending.COULD_NOT_RUN)
    assert result.problem == "pytest exited with code 1 before starting the test session"
    assert "No module named pytest" in result.output_tail


# --- the data crossing the boundary --------------------------------------------------------------


def test_request_and_result_survive_a_json_round_trip(tmp_path: Path) -> None:
    request = request_for(tmp_path, shard_index=1, shard_count=3, label="shard 2/3")
    assert RunRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request

    result = RunResult(
        junit_xml=b'<testsuites><testcase name="caf\xc3\xa9"/>\xff</testsuites>',
        exit_code=None,
        duration_seconds=1.5,
        gpu=GpuFacts(True, [Gpu(0, "L4", 23034, "580")], "12.4", "1 GPU visible: L4"),
        ending=Ending.TIMED_OUT,
        output_tail="...",
        shard_index=1,
        shard_count=3,
        problem="pytest timed out",
    )
    assert RunResult.from_dict(result.to_dict()) == result  # Modal's answer: bytes as they are
    # The script's JSON answer: the file as text, what is not UTF-8 replaced
    travelled = RunResult.from_dict(json.loads(result.to_json()))
    assert travelled == dataclasses.replace(
        result, junit_xml=b'<testsuites><testcase name="caf\xc3\xa9"/>\xef\xbf\xbd</testsuites>'
    )
    assert result.to_dict()["ending"] == "timed out"


def test_a_request_names_what_it_lacks() -> None:
    with pytest.raises(ValueError, match="RunRequest: missing test_path"):
        RunRequest.from_dict(
            {"working_directory": ".", "pytest_args": [], "timeout_seconds": 1, "env": {}}
        )
    with pytest.raises(ValueError, match="invalid shard 2 of 2"):
        RunRequest(".", "", [], None, {}, shard_index=2, shard_count=2)


def test_script_mode_works_from_a_copy_of_the_package_under_another_name(tmp_path: Path) -> None:
    """The container package alone, in a folder of its own, named otherwise: nothing in it
    needs the rest of modal_gpu_action or its own name."""
    shipped = tmp_path / "shipped"
    shutil.copytree(PACKAGE, shipped / "elsewhere", ignore=shutil.ignore_patterns("__pycache__"))
    request = request_for(project(tmp_path, "many"), shard_index=0, shard_count=2)
    (tmp_path / "request.json").write_text(json.dumps(request.to_dict()))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "elsewhere",
            "--request",
            "../request.json",
            "--result",
            "../result.json",
        ],
        cwd=shipped,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    result = RunResult.from_dict(json.loads((tmp_path / "result.json").read_text()))
    assert result.exit_code == 0 and result.shard_count == 2
    assert "shard 1/2:" in done.stdout  # the sharding plugin's header line
    assert 0 < len(cases(result.junit_xml)) < 27


def test_script_mode_passes_sigterm_on_and_still_writes_the_result(tmp_path: Path) -> None:
    """pytest has a session of its own, so a signal to the runner must be passed on by it."""
    pid_file = tmp_path / "child.pid"
    request = request_for(project(tmp_path, "hang"), env={"HANG_PID_FILE": str(pid_file)})
    (tmp_path / "request.json").write_text(json.dumps(request.to_dict()))
    command = [sys.executable, "-m", "modal_gpu_action.container", "--quiet"]
    script = subprocess.Popen(
        [*command, "--request", "request.json", "--result", "result.json"], cwd=tmp_path
    )
    wait_for_file(pid_file)
    script.send_signal(signal.SIGTERM)

    assert script.wait(timeout=20) == 1
    result = RunResult.from_dict(json.loads((tmp_path / "result.json").read_text()))
    assert result.cancelled
    assert process_gone(int(pid_file.read_text()))


# --- the GPU its pytest sees, and its output ---------------------------------------------------


def test_a_run_reports_the_gpu_its_pytest_sees(tmp_path: Path) -> None:
    path = project(tmp_path, "passing")
    fake = fake_nvidia_smi(tmp_path / "bin")
    base_env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    result = run_tests(request_for(path, visible_devices="1"), stream=None, base_env=base_env)
    assert [gpu.index for gpu in result.gpu.gpus] == [1]


def test_pytest_starts_without_waiting_for_the_gpu_probe(tmp_path: Path) -> None:
    # An nvidia-smi that answers only once a test has run: found only when the probe runs
    # beside pytest. A probe before pytest would give up after its timeout, with no GPU.
    (tmp_path / "suite" / "tests").mkdir(parents=True)
    (tmp_path / "suite" / "tests" / "test_mark.py").write_text(
        "import os, pathlib\n\ndef test_mark():\n"
        "    pathlib.Path(os.environ['TEST_RAN']).write_text('yes')\n"
    )
    fake = fake_nvidia_smi(tmp_path / "fake")
    waiting = tmp_path / "bin" / "nvidia-smi"
    waiting.parent.mkdir()
    waiting.write_text(
        "#!/bin/sh\n"
        f'for _ in $(seq 300); do [ -e "$TEST_RAN" ] && exec "{fake}/nvidia-smi" "$@"; sleep 0.1; done\n'
        "exit 9\n"
    )
    waiting.chmod(0o755)
    base_env = {**os.environ, "PATH": f"{waiting.parent}{os.pathsep}{os.environ['PATH']}"}
    request = request_for(tmp_path / "suite", env={"TEST_RAN": str(tmp_path / "ran")})

    result = run_tests(request, stream=None, base_env=base_env)

    assert result.exit_code == 0, result.output_tail
    assert result.gpu.visible, result.gpu.note
    assert [gpu.index for gpu in result.gpu.gpus] == [0, 1]


def test_a_cancel_does_not_wait_for_an_nvidia_smi_that_has_not_answered(tmp_path: Path) -> None:
    # GitHub sends SIGTERM 7.5 s after SIGINT; the probe's own timeouts are 10 s. A cancel
    # ends the run with what the probe found so far, and no memory sampler starts after it.
    hung = tmp_path / "bin" / "nvidia-smi"
    hung.parent.mkdir()
    hung.write_text("#!/bin/sh\nexec sleep 30\n")
    hung.chmod(0o755)
    base_env = {**os.environ, "PATH": f"{hung.parent}{os.pathsep}{os.environ['PATH']}"}
    pid_file = tmp_path / "child.pid"
    request = request_for(
        project(tmp_path, "hang"), timeout_seconds=None, env={"HANG_PID_FILE": str(pid_file)}
    )
    cancel = threading.Event()
    cancelled_at: list[float] = []

    def cancel_once_hanging() -> None:
        wait_for_file(pid_file)
        cancelled_at.append(time.monotonic())
        cancel.set()

    threading.Thread(target=cancel_once_hanging, daemon=True).start()
    result = run_tests(
        request, stream=None, base_env=base_env, cancel_event=cancel, kill_grace_seconds=1.0
    )
    ended = time.monotonic()

    assert result.ending is Ending.CANCELLED
    assert ended - cancelled_at[0] < 5.0  # not the probe's 10 s
    assert not result.gpu.visible and "had not answered" in (result.gpu.note or "")
    assert result.gpu_memory == []


def test_the_tail_leaves_out_pytests_own_frames() -> None:
    lines = [
        "Fatal Python error: Segmentation fault",
        "Current thread 0x1 (most recent call first):",
        '  File "/p/tests/test_x.py", line 3 in test_x',
        '  File "/venv/site-packages/_pytest/python.py", line 187 in pytest_pyfunc_call',
        '  File "/venv/site-packages/pluggy/_callers.py", line 103 in _multicall',
        '  File "<frozen runpy>", line 88 in _run_code',
    ]
    assert summarise_tail(lines).splitlines() == [
        *lines[:3],
        "  [3 frames of pytest and pluggy left out]",
    ]
    assert summarise_tail([str(n) for n in range(100)]).splitlines() == [
        str(n) for n in range(50, 100)
    ]


def test_the_output_kept_in_memory_stays_bounded(tmp_path: Path) -> None:
    # 20,000 lines, then one of 4 MB: only the last lines are kept, each cut short.
    result = quiet(request_for(project(tmp_path, "hostile_junit"), env={"HOSTILE_JUNIT": "flood"}))
    lines = result.output_tail.split("\n")
    assert len(lines) == TAIL_LINES
    assert max(map(len, lines)) == MAX_LINE_CHARS
    assert outcome(cases(result.junit_xml)["tests.test_hostile::test_three"]) == "failure"


# --- hostile reports: a rewritten JUnit file gives way to the record -------------------------

REWRITES = {
    # mode of tests/fixtures/projects/hostile_junit/conftest.py: why pytest's file is not used
    "entity": "it declares a document type (entities), as pytest never does",
    "html": "its root element is <html>, not <testsuites>",
    "big": "it is 20",  # 0,863 bytes (or so), more than the 50,000 read
    "directory": "it is a directory, not a regular file",
    "devzero": "it is a symbolic link",
}


@pytest.mark.parametrize("mode", REWRITES)
def test_a_rewritten_junit_file_gives_way_to_the_record_with_an_error_saying_why(
    tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MAX_JUNIT_BYTES_ENV, "50000")  # "big" pads the file to 200 kB
    started = time.monotonic()
    result = quiet(request_for(project(tmp_path, "hostile_junit"), env={"HOSTILE_JUNIT": mode}))
    assert time.monotonic() - started < 30  # /dev/zero was not read to its end
    assert (result.exit_code, result.problem) == (1, None)
    found = cases(result.junit_xml)
    assert {key: outcome(case) for key, case in found.items()} == {
        "tests.test_hostile::test_one": "passed",
        "tests.test_hostile::test_two": "passed",
        "tests.test_hostile::test_three": "failure",
        "modal-gpu-action::pytest's JUnit report": "error",
    }
    error = found["modal-gpu-action::pytest's JUnit report"].find("error")
    assert error is not None
    assert error.get("message", "").startswith(
        f"pytest's JUnit report was not used: {REWRITES[mode]}"
    )
    assert b"the conftest" not in result.junit_xml  # the entity was never expanded


# --- the same, end to end through the real `run` command --------------------------------------


@pytest.mark.parametrize("mode", ["entity", "html", "big", "directory"])
def test_a_run_whose_junit_file_was_rewritten_still_writes_every_report(
    tmp_path: Path, mode: str
) -> None:
    directory = project(tmp_path, "hostile_junit")
    summary, comment, junit = (directory / name for name in ("s.md", "c.md", "out.xml"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    env |= {"MODAL_GPU_ACTION_PYTHON": sys.executable, MAX_JUNIT_BYTES_ENV: "50000"}
    command = [sys.executable, "-m", "modal_gpu_action", "run", "--backend", "local"]
    command += ["--working-directory", str(directory), "--env", f"HOSTILE_JUNIT={mode}"]
    command += ["--summary-file", str(summary), "--comment-file", str(comment)]
    command += ["--junit-xml", str(junit)]
    done = subprocess.run(
        command, cwd=directory, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "3 tests: 2 passed, 1 failed, 0 errors" in done.stdout  # the problem is no test
    assert "PROBLEM pytest's JUnit report: pytest's JUnit report was not used" in done.stdout
    for markdown in (summary.read_text(encoding="utf-8"), comment.read_text(encoding="utf-8")):
        assert "pytest's JUnit report was not used" in markdown.replace("\\", "")
        assert "Problems with the run (1)" in markdown
    written = ET.fromstring(junit.read_text(encoding="utf-8"))
    suites = {suite.get("name"): len(suite.findall("testcase")) for suite in written}
    assert suites == {"modal-gpu-action": 3, "modal-gpu-action: problems with the run": 1}
