"""The real `modal-gpu-action run --backend local` on fixture projects: exit codes, reports and
outputs as a user (or the action) sees them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from processes import process_gone, wait_for_file

PROJECTS = Path(__file__).parent / "fixtures" / "projects"


def project(tmp_path: Path, name: str) -> Path:
    """A copy of a fixture project, outside this repository's own pytest configuration."""
    target = tmp_path / name
    shutil.copytree(PROJECTS / name, target)
    return target


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env["MODAL_GPU_ACTION_PYTHON"] = sys.executable  # has pytest, like a job's set-up Python
    return {**env, **extra}


def run(
    directory: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "modal_gpu_action", "run", "--backend", "local"]
    command += ["--working-directory", str(directory), "--junit-xml", str(directory / "out.xml")]
    return subprocess.run(
        [*command, *args],
        cwd=directory,
        env=env or environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def case_ids(junit: Path) -> list[str]:
    root = ET.parse(junit).getroot()
    return sorted(f"{c.get('classname')}.{c.get('name')}" for c in root.iter("testcase"))


def test_a_passing_suite_exits_0_and_writes_junit_and_summary(tmp_path: Path) -> None:
    directory = project(tmp_path, "passing")
    summary = tmp_path / "summary.md"
    result = run(directory, "--summary-file", str(summary))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "GPU tests: PASSED" in result.stdout
    assert case_ids(directory / "out.xml")
    assert "## ✅" in summary.read_text()
    assert "no GPU visible" in summary.read_text()


def test_failing_tests_exit_1_with_the_failure_in_the_report(tmp_path: Path) -> None:
    directory = project(tmp_path, "failing")
    result = run(directory, "--summary-file", str(tmp_path / "s.md"))
    assert result.returncode == 1
    assert "FAILED tests.test_mixed.test_fails" in result.stdout
    assert "E       assert (1 + 1) == 3" in (tmp_path / "s.md").read_text()  # the traceback


def test_a_crash_mid_run_keeps_the_finished_tests_and_names_the_signal(tmp_path: Path) -> None:
    directory = project(tmp_path, "crash")
    result = run(directory)
    assert result.returncode == 1
    junit = (directory / "out.xml").read_text()
    assert "signal 11 (SIGSEGV)" in junit
    root = ET.fromstring(junit)
    passed = [c for c in root.iter("testcase") if not list(c)]
    assert len(passed) >= 2  # the tests that finished before the crash


def test_a_hang_past_the_timeout_is_stopped_and_reported_with_its_children_gone(
    tmp_path: Path,
) -> None:
    directory = project(tmp_path, "hang")
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    result = run(
        directory, "--timeout-minutes", "0.05", env=environment(HANG_PID_FILE=str(pid_file))
    )
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert "GPU tests: TIMED OUT" in result.stdout
    assert "timed out after 3 s" in (directory / "out.xml").read_text()
    assert process_gone(int(pid_file.read_text()))


def test_no_tests_fails_unless_fail_on_empty_is_false(tmp_path: Path) -> None:
    directory = project(tmp_path, "empty")
    failed = run(directory)
    assert failed.returncode == 1
    assert "GPU tests: NO TESTS" in failed.stdout
    assert run(directory, "--fail-on-empty", "false").returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpu", "X100"], "invalid value 'X100' for input 'gpu'"),
        (["--shards", "0"], "invalid value '0' for input 'shards'"),
        (["--pytest-args", "-k 'open"], "for input 'pytest-args'"),
        (["--test-path", "../../etc"], "for input 'test-path': it must be inside"),
        (["--timeout-minutes", "-1"], "for input 'timeout-minutes'"),
        (["--env", "no equals sign"], "line 1 of input 'env'"),
    ],
)
def test_bad_inputs_exit_2_with_one_line_naming_the_input(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run(project(tmp_path, "passing"), *args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ") and message in result.stderr


@pytest.mark.parametrize("shards", ["2", "3"])
def test_shards_merge_to_exactly_the_unsharded_set(tmp_path: Path, shards: str) -> None:
    directory = project(tmp_path, "many")
    assert run(directory).returncode == 0
    whole = case_ids(directory / "out.xml")
    result = run(directory, "--shards", shards)
    assert result.returncode == 0, result.stdout + result.stderr
    assert case_ids(directory / "out.xml") == whole
    assert len(whole) == len(set(whole)) > 10


def test_auto_shards_start_one_shard_per_device_each_seeing_only_its_own(tmp_path: Path) -> None:
    directory = project(tmp_path, "devices")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = environment(CUDA_VISIBLE_DEVICES="0,1")
    tests_env = f"BARRIER_DIR={barrier}\nBARRIER_COUNT=2"  # through the `env` input
    result = run(directory, "--shards", "auto", "--env", tests_env, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    # Both shards were running at once (the fixture's barrier waits for both), and each
    # shard's pytest saw only its own device (the barrier files hold its CUDA_VISIBLE_DEVICES).
    assert sorted(p.read_text() for p in barrier.iterdir()) == ["0", "1"]
    assert len(case_ids(directory / "out.xml")) == 8


def test_sigint_then_sigterm_cancels_and_keeps_what_finished(tmp_path: Path) -> None:
    directory = project(tmp_path, "hang")
    pid_file = tmp_path / "child.pid"
    command = [sys.executable, "-m", "modal_gpu_action", "run", "--backend", "local"]
    command += ["--working-directory", str(directory), "--junit-xml", str(directory / "out.xml")]
    process = subprocess.Popen(
        command,
        cwd=directory,
        env=environment(HANG_PID_FILE=str(pid_file)),
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_for_file(pid_file)
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)  # a second one (`uv run` passes each on) changes nothing
    try:
        out, _ = process.communicate(timeout=7.5)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=10)
        pytest.fail("the run did not stop within 7.5 s of SIGINT")
    assert process.returncode == 3
    assert "GPU tests: CANCELLED" in out
    junit = (directory / "out.xml").read_text()
    assert 'name="test_quick"' in junit and "cancelled" in junit
    assert process_gone(int(pid_file.read_text()))


def test_github_mode_writes_outputs_summary_and_annotations(tmp_path: Path) -> None:
    directory = project(tmp_path, "failing")
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs.txt"
    env = environment(
        GITHUB_ACTIONS="true",
        GITHUB_STEP_SUMMARY=str(summary),
        GITHUB_OUTPUT=str(outputs),
        GITHUB_WORKSPACE=str(directory),
        INPUT_BACKEND="local",
        INPUT_COMMENT="off",
        INPUT_ENV="SECRET_FOR_TESTS=hunter2-not-in-logs",
    )
    result = subprocess.run(
        [sys.executable, "-m", "modal_gpu_action"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "::add-mask::hunter2-not-in-logs" in result.stdout
    assert result.stdout.count("hunter2-not-in-logs") == 1  # only in the mask command
    assert re.search(r"^::error file=tests/test_mixed\.py,line=\d+,title=", result.stdout, re.M)
    assert "conclusion<<" in outputs.read_text() and "\nfailed\n" in outputs.read_text()
    # No GPU here, and the local backend does not pretend the `gpu` spec ran the tests.
    assert re.search(r"^gpu<<(\S+)\n\n\1$", outputs.read_text(), re.M)
    assert "test\\_fails" in summary.read_text() or "test_fails" in summary.read_text()
