"""runner.py: real pytest subprocesses on the fixture projects in tests/fixtures/projects/."""

from __future__ import annotations

import ast
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

from modal_gpu_action import runner
from modal_gpu_action.runner import (
    GpuFacts,
    RunnerError,
    RunRequest,
    RunResult,
    junit_names,
    probe_gpu,
    run_tests,
    summarise_tail,
    synthesize_junit,
)

PROJECTS = Path(__file__).parent / "fixtures" / "projects"
SOURCE = Path(runner.__file__).parent


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

    assert result.exit_code == 0
    assert (result.crashed, result.problem, result.timed_out, result.no_tests) == (
        None,
        None,
        False,
        False,
    )
    assert "synthesised" not in result.junit_xml
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


def test_failing_test_gives_exit_1_and_a_failure_case(tmp_path: Path) -> None:
    result = quiet(request_for(project(tmp_path, "failing")))

    assert result.exit_code == 1
    assert result.problem is None and result.crashed is None
    failure = cases(result.junit_xml)["tests.test_mixed::test_fails"].find("failure")
    assert failure is not None and "== 3" in (failure.get("message") or "")


def test_no_tests_collected_is_exit_5_and_no_tests(tmp_path: Path) -> None:
    result = quiet(request_for(project(tmp_path, "empty")))

    assert (result.exit_code, result.no_tests, result.crashed, result.problem) == (
        5,
        True,
        None,
        None,
    )
    assert cases(result.junit_xml) == {}


def test_a_pytest_usage_error_is_a_problem_but_not_a_crash(tmp_path: Path) -> None:
    path = project(tmp_path, "passing")
    result = quiet(request_for(path, pytest_args=["--no-such-option"]))

    assert result.exit_code == 4
    assert result.crashed is None
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

    assert result.exit_code is None
    assert result.crashed == (
        "pytest was killed by signal 11 (SIGSEGV) while running tests/test_crash.py::test_dies"
    )
    assert result.problem == result.crashed
    assert "synthesised" in result.junit_xml
    found = {k: outcome(c) for k, c in cases(result.junit_xml).items()}
    assert found == {
        "tests.test_crash::test_first": "passed",
        "tests.test_crash::test_second": "passed",
        "tests.test_crash::test_dies": "error",
    }
    error = cases(result.junit_xml)["tests.test_crash::test_dies"].find("error")
    assert error is not None and "Fatal Python error: Segmentation fault" in (error.text or "")
    assert "Fatal Python error: Segmentation fault" in result.output_tail
    assert 'test_crash.py", line 17 in test_dies' in result.output_tail
    assert "frames of pytest and pluggy left out" in result.output_tail
    assert "/_pytest/" not in result.output_tail


def test_os_exit_mid_run_is_a_crash_with_its_exit_code(tmp_path: Path) -> None:
    result = quiet(request_for(project(tmp_path, "crash"), env={"CRASH_MODE": "exit"}))

    assert result.exit_code == 1
    assert result.crashed == (
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
    assert result.exit_code is None and result.crashed is None
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
    assert result.problem == "the run was cancelled while running tests/test_hang.py::test_hangs"
    assert process_gone(int(pid_file.read_text()))
    assert outcome(cases(result.junit_xml)["tests.test_hang::test_quick"]) == "passed"


# --- failures that are not the tests' ------------------------------------------------------------


def test_a_missing_working_directory_is_a_runner_error(tmp_path: Path) -> None:
    with pytest.raises(RunnerError, match="working directory not found"):
        quiet(request_for(tmp_path / "nowhere"))


def test_a_missing_interpreter_is_a_runner_error(tmp_path: Path) -> None:
    request = request_for(project(tmp_path, "passing"), python=str(tmp_path / "no-python"))
    with pytest.raises(RunnerError, match="could not start pytest"):
        quiet(request)


def test_an_interpreter_without_pytest_is_a_crash_before_the_session(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text('#!/bin/sh\necho "$0: No module named pytest" >&2\nexit 1\n')
    python.chmod(0o755)
    result = quiet(request_for(project(tmp_path, "passing"), python=str(python)))

    assert result.exit_code == 1
    assert result.crashed == "pytest exited with code 1 before starting the test session"
    assert "No module named pytest" in result.output_tail


# --- the data crossing the boundary --------------------------------------------------------------


def test_request_and_result_survive_a_json_round_trip(tmp_path: Path) -> None:
    request = request_for(tmp_path, shard_index=1, shard_count=3, label="shard 2/3")
    assert RunRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request

    result = RunResult(
        junit_xml="<testsuites/>",
        exit_code=None,
        duration_seconds=1.5,
        gpu=GpuFacts(True, [{"index": 0, "name": "L4"}], "12.4", "1 GPU visible: L4"),
        timed_out=True,
        crashed=None,
        no_tests=False,
        output_tail="...",
        shard_index=1,
        shard_count=3,
        problem="pytest timed out",
    )
    assert RunResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_a_request_names_what_it_lacks() -> None:
    with pytest.raises(ValueError, match="RunRequest: missing test_path"):
        RunRequest.from_dict(
            {"working_directory": ".", "pytest_args": [], "timeout_seconds": 1, "env": {}}
        )
    with pytest.raises(ValueError, match="invalid shard 2 of 2"):
        RunRequest(".", "", [], None, {}, shard_index=2, shard_count=2)


def test_script_mode_works_from_a_copy_of_runner_and_sharding_alone(tmp_path: Path) -> None:
    """What the Modal container does: the two files in a folder of their own, no package."""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for name in ("runner.py", "sharding.py"):
        shutil.copy(SOURCE / name, shipped / name)
    request = request_for(project(tmp_path, "many"), shard_index=0, shard_count=2)
    (tmp_path / "request.json").write_text(json.dumps(request.to_dict()))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    done = subprocess.run(
        [sys.executable, "runner.py", "--request", "../request.json", "--result", "../result.json"],
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
    command = [sys.executable, "-m", "modal_gpu_action.runner", "--quiet"]
    script = subprocess.Popen(
        [*command, "--request", "request.json", "--result", "result.json"], cwd=tmp_path
    )
    wait_for_file(pid_file)
    script.send_signal(signal.SIGTERM)

    assert script.wait(timeout=20) == 1
    result = RunResult.from_dict(json.loads((tmp_path / "result.json").read_text()))
    assert result.cancelled
    assert process_gone(int(pid_file.read_text()))


def imports(node: ast.AST) -> set[str]:
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Import):
            found |= {alias.name.split(".")[0] for alias in child.names}
        elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
            found.add(child.module.split(".")[0])
    return found


def test_runner_and_sharding_import_only_the_standard_library_and_pytest() -> None:
    """And parse as Python 3.9: users' images can be older than our own 3.11."""
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    runner_tree = ast.parse((SOURCE / "runner.py").read_text(), feature_version=(3, 9))
    top_level = set().union(
        *(imports(n) for n in runner_tree.body if not isinstance(n, ast.FunctionDef))
    )
    assert top_level <= stdlib, top_level - stdlib
    # inside functions: pytest's own junit naming, imported only by the hooks that run in pytest
    assert imports(runner_tree) <= stdlib | {"_pytest"}
    sharding = imports(ast.parse((SOURCE / "sharding.py").read_text(), feature_version=(3, 9)))
    assert sharding <= stdlib | {"pytest", "_pytest"}, sharding - stdlib


# --- the GPU probe -------------------------------------------------------------------------------

FAKE_NVIDIA_SMI = """#!{python}
import sys
args = sys.argv[1:]
if {fail!r}:
    print("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
    sys.exit(9)
if any(a.startswith("--query-gpu=index,uuid") for a in args):
    print("0, GPU-aaaa1111-0000, NVIDIA H100 80GB HBM3, 81559, 580.159.04")
    print("1, GPU-bbbb2222-0000, NVIDIA H100 80GB HBM3, 81559, 580.159.04")
elif "--query-gpu=index" in args:
    print("0")
    print("1")
elif not args:
    print("| NVIDIA-SMI 580.159.04     Driver Version: 580.159.04     CUDA Version: 13.0     |")
else:
    sys.exit(2)
"""


def fake_nvidia_smi(folder: Path, *, fail: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(FAKE_NVIDIA_SMI.format(python=sys.executable, fail=fail))
    script.chmod(0o755)
    return folder


def test_probe_reads_an_h100_from_nvidia_smi(tmp_path: Path) -> None:
    facts = probe_gpu({"PATH": str(fake_nvidia_smi(tmp_path))})

    assert facts.visible and facts.cuda_version == "13.0"
    assert facts.gpus[1] == {
        "index": 1,
        "name": "NVIDIA H100 80GB HBM3",
        "memory_total_mib": 81559,
        "driver_version": "580.159.04",
    }
    assert facts.describe() == "2x NVIDIA H100 80GB HBM3 (driver 580.159.04, CUDA 13.0)"
    assert facts.note.startswith("2 GPUs visible: ")


@pytest.mark.parametrize(("visible", "indices"), [("1", [1]), ("GPU-bbbb", [1]), ("1,0", [1, 0])])
def test_probe_honours_cuda_visible_devices(
    tmp_path: Path, visible: str, indices: list[int]
) -> None:
    env = {"PATH": str(fake_nvidia_smi(tmp_path)), "CUDA_VISIBLE_DEVICES": visible}
    facts = probe_gpu(env)
    assert [gpu["index"] for gpu in facts.gpus] == indices


@pytest.mark.parametrize("visible", ["", "-1", "NoDevFiles"])
def test_probe_sees_nothing_when_cuda_visible_devices_hides_every_gpu(
    tmp_path: Path, visible: str
) -> None:
    facts = probe_gpu({"PATH": str(fake_nvidia_smi(tmp_path)), "CUDA_VISIBLE_DEVICES": visible})
    assert not facts.visible and "hides every GPU" in facts.note


def test_probe_without_nvidia_smi_says_so(tmp_path: Path) -> None:
    facts = probe_gpu({"PATH": str(tmp_path)})
    assert facts == GpuFacts(False, [], None, "no GPU visible: nvidia-smi not found")
    assert facts.describe() == "no GPU visible: nvidia-smi not found"


def test_probe_with_a_failing_nvidia_smi_quotes_it(tmp_path: Path) -> None:
    facts = probe_gpu({"PATH": str(fake_nvidia_smi(tmp_path, fail=True))})
    assert not facts.visible
    assert facts.note == (
        "no GPU visible: nvidia-smi failed (exit 9): NVIDIA-SMI has failed because it couldn't"
        " communicate with the NVIDIA driver."
    )


def test_a_run_reports_the_gpu_its_pytest_sees(tmp_path: Path) -> None:
    path = project(tmp_path, "passing")
    fake = fake_nvidia_smi(tmp_path / "bin")
    base_env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    result = run_tests(request_for(path, visible_devices="1"), stream=None, base_env=base_env)
    assert [gpu["index"] for gpu in result.gpu.gpus] == [1]


# --- the crash record, turned into JUnit ---------------------------------------------------------


def test_junit_names_are_pytests_own() -> None:
    from _pytest.junitxml import mangle_test_address

    for nodeid in (
        "tests/test_a.py::test_x",
        "tests/sub/test_b.py::TestC::TestD::test_y[1-a::b]",
        "tests/test_c.py::test_z[c[d]]",
        "tests/test_d.py::test_w[x/y.py]",
        "tests/test_broken.py",
        "test_top.py::test_v",
    ):
        names = mangle_test_address(nodeid)
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


# --- hostile reports: what the tests leave behind is read back capped, and never fatally ---------

REWRITES = {
    # mode of tests/fixtures/projects/hostile_junit/conftest.py: why pytest's file is not used
    "entity": "it declares a document type (entities), as pytest never does",
    "html": "its root element is <html>, not <testsuites>",
    "big": "it is 200,7",  # ...38 bytes, more than the 50,000 read
    "directory": "it is a directory, not a regular file",
    "devzero": "it is a symbolic link",
}


@pytest.mark.parametrize("mode", REWRITES)
def test_a_rewritten_junit_file_gives_way_to_the_record_with_an_error_saying_why(
    tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(runner.MAX_JUNIT_BYTES_ENV, "50000")  # "big" pads the file to 200 kB
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
    assert "the conftest" not in result.junit_xml  # the entity was never expanded


def test_the_junit_cap_can_be_lowered_but_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, cap in [("", 64 << 20), ("1000", 1000), (str(1 << 40), 64 << 20), ("-5", 64 << 20)]:
        monkeypatch.setenv(runner.MAX_JUNIT_BYTES_ENV, value)
        assert runner._junit_cap() == cap


def test_a_pipe_in_place_of_pytests_junit_file_is_not_waited_on(tmp_path: Path) -> None:
    pipe = tmp_path / "junit.xml"
    os.mkfifo(pipe)  # nobody writes to it
    xml = runner._choose_junit(pipe, [], "", "")
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
    records = runner.read_progress(path, max_bytes=20_000)
    [note] = [record for record in records if record["e"] == "note"]
    index = records.index(note)
    assert records[:index] == written[:index]  # the first half: whole lines only
    assert records[index + 1 :] == written[len(written) - len(records) + index + 1 :]
    assert records[0]["e"] == "configure" and records[-1]["e"] == "start"
    assert note["message"].startswith(
        f"The action's record of the run is {size:,} bytes, more than the 20,000 that are read"
    )
    assert runner._in_flight(records) == "tests/test_a.py::test_running"
    xml = synthesize_junit(records, unfinished_reason="it crashed")
    found = cases(xml)
    assert outcome(found["modal-gpu-action::record of the run"]) == "error"
    assert outcome(found["tests.test_a::test_running"]) == "error"
    assert len(found) < 1_000  # the middle is missing, and the note says so
    assert runner.read_progress(path) == written  # within the default cap: everything


def test_a_progress_record_that_is_no_file_is_one_note(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link").symlink_to("/dev/zero")
    for name, why in [
        ("dir", "it is a directory, not a regular file"),
        ("pipe", "it is a pipe, a socket or a device, not a regular file"),
        ("link", "it is a symbolic link"),
    ]:
        [note] = runner.read_progress(tmp_path / name)
        assert note["message"] == f"The action's record of the run was not read: {why}."
    assert runner.read_progress(tmp_path / "missing") == []


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
    assert runner.read_progress(path) == records
    found = cases(synthesize_junit(records))
    assert sorted(found) == ["modal-gpu-action::None", "tests.t::test_x"]
    assert found["tests.t::test_x"].get("time") == "0.000"


def test_the_output_kept_in_memory_stays_bounded(tmp_path: Path) -> None:
    # 20,000 lines, then one of 4 MB: only the last lines are kept, each cut short.
    result = quiet(request_for(project(tmp_path, "hostile_junit"), env={"HOSTILE_JUNIT": "flood"}))
    lines = result.output_tail.split("\n")
    assert len(lines) == runner.TAIL_LINES
    assert max(map(len, lines)) == runner.MAX_LINE_CHARS
    assert outcome(cases(result.junit_xml)["tests.test_hostile::test_three"]) == "failure"


# --- the same, end to end through the real `run` command --------------------------------------


@pytest.mark.parametrize("mode", ["entity", "html", "big", "directory"])
def test_a_run_whose_junit_file_was_rewritten_still_writes_every_report(
    tmp_path: Path, mode: str
) -> None:
    directory = project(tmp_path, "hostile_junit")
    summary, comment, junit = (directory / name for name in ("s.md", "c.md", "out.xml"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    env |= {"MODAL_GPU_ACTION_PYTHON": sys.executable, runner.MAX_JUNIT_BYTES_ENV: "50000"}
    command = [sys.executable, "-m", "modal_gpu_action", "run", "--backend", "local"]
    command += ["--working-directory", str(directory), "--env", f"HOSTILE_JUNIT={mode}"]
    command += ["--summary-file", str(summary), "--comment-file", str(comment)]
    command += ["--junit-xml", str(junit)]
    done = subprocess.run(
        command, cwd=directory, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "4 tests: 2 passed, 1 failed, 1 errors" in done.stdout
    for markdown in (summary.read_text(encoding="utf-8"), comment.read_text(encoding="utf-8")):
        assert "pytest's JUnit report was not used" in markdown.replace("\\", "")
    assert len(cases(junit.read_text(encoding="utf-8"))) == 4
