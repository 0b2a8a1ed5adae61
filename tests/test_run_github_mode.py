"""The whole action in GitHub mode (`python -m modal_gpu_action` with INPUT_* variables) against the
fake GitHub API: the comment, the label removed whatever happened, and faults that never hide the
tests' result."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from processes import wait_for_file

PROJECTS = Path(__file__).parent / "fixtures" / "projects"
PR, HEAD, LABEL = 7, "a" * 40, "gpu-tests"


@pytest.fixture
def fake(github_api_server: Any) -> Any:
    github_api_server.add_pull(PR, HEAD, labels=(LABEL, "bug"))
    return github_api_server


def workspace(tmp_path: Path, name: str) -> Path:
    target = tmp_path / "workspace"
    shutil.copytree(PROJECTS / name, target)
    return target


def environment(fake: Any, tmp_path: Path, directory: Path, **inputs: str) -> dict[str, str]:
    event = tmp_path / "event.json"
    event_name = inputs.pop("event", "pull_request")
    payload = {
        "action": "labeled",
        "number": PR,
        "pull_request": {"number": PR, "head": {"sha": HEAD}},
    }
    event.write_text(json.dumps(payload))
    (tmp_path / "summary.md").touch()
    (tmp_path / "output.txt").touch()
    env = {
        "PATH": "/usr/bin:/bin",
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event_name,
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": fake.full_name,
        "GITHUB_API_URL": fake.api_url,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "99",
        "GITHUB_WORKFLOW": "GPU tests",
        "GITHUB_JOB": "gpu",
        "GITHUB_WORKSPACE": str(directory),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
        "MODAL_GPU_ACTION_PYTHON": sys.executable,
        "INPUT_BACKEND": "local",
        "INPUT_GITHUB_TOKEN": fake.state.token,
        "INPUT_REMOVE_LABEL": LABEL,
    }
    env.update({"INPUT_" + k.upper(): v for k, v in inputs.items()})
    return env


def action(env: dict[str, str], directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modal_gpu_action"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def outputs(tmp_path: Path) -> str:
    return (tmp_path / "output.txt").read_text()


def test_passing_run_comments_once_removes_the_label_and_reports_the_url(
    fake: Any, tmp_path: Path
) -> None:
    directory = workspace(tmp_path, "passing")
    env = environment(fake, tmp_path, directory)
    first = action(env, directory)
    assert first.returncode == 0, first.stdout + first.stderr
    assert fake.labels_on(PR) == ["bug"]
    [comment] = fake.comments_on(PR)
    assert "passed" in comment.body
    assert "comment-url<<" in outputs(tmp_path)
    # A re-run (label added again) updates the same comment.
    fake.add_pull(PR, HEAD, labels=(LABEL,))
    second = action(env, directory)
    assert second.returncode == 0
    assert len(fake.comments_on(PR)) == 1
    assert fake.labels_on(PR) == []


def test_failing_tests_still_remove_the_label_and_exit_1(fake: Any, tmp_path: Path) -> None:
    directory = workspace(tmp_path, "failing")
    result = action(environment(fake, tmp_path, directory), directory)
    assert result.returncode == 1
    assert fake.labels_on(PR) == ["bug"]
    assert "failed" in fake.comments_on(PR)[0].body


def test_an_infrastructure_error_removes_the_label_and_exits_3(fake: Any, tmp_path: Path) -> None:
    directory = workspace(tmp_path, "passing")
    env = environment(fake, tmp_path, directory)
    env["MODAL_GPU_ACTION_PYTHON"] = str(tmp_path / "no-such-python")
    result = action(env, directory)
    assert result.returncode == 3, result.stdout + result.stderr
    assert fake.labels_on(PR) == ["bug"]
    assert "infrastructure error" in outputs(tmp_path)


def test_bad_input_after_the_event_was_read_removes_the_label(fake: Any, tmp_path: Path) -> None:
    directory = workspace(tmp_path, "passing")
    result = action(environment(fake, tmp_path, directory, gpu="X100"), directory)
    assert result.returncode == 2
    assert "invalid value 'X100' for input 'gpu'" in result.stderr
    assert fake.labels_on(PR) == ["bug"]


def test_pull_request_target_is_refused_and_the_label_still_goes(fake: Any, tmp_path: Path) -> None:
    directory = workspace(tmp_path, "passing")
    env = environment(fake, tmp_path, directory, event="pull_request_target")
    result = action(env, directory)
    assert result.returncode == 2
    assert "pull_request_target" in result.stderr and "allow-pull-request-target" in result.stderr
    assert fake.labels_on(PR) == ["bug"]
    assert fake.comments_on(PR) == []


def test_cancelled_run_removes_the_label(fake: Any, tmp_path: Path) -> None:
    directory = workspace(tmp_path, "hang")
    env = environment(fake, tmp_path, directory)
    env["HANG_PID_FILE"] = str(tmp_path / "child.pid")
    process = subprocess.Popen(
        [sys.executable, "-m", "modal_gpu_action"],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_for_file(tmp_path / "child.pid")
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 3, out
    assert fake.labels_on(PR) == ["bug"]
    assert "cancelled" in fake.comments_on(PR)[0].body


def test_a_read_only_token_is_a_warning_and_the_tests_decide_the_exit_code(
    fake: Any, tmp_path: Path
) -> None:
    fake.state.read_only = True  # a pull request from a fork
    directory = workspace(tmp_path, "passing")
    result = action(environment(fake, tmp_path, directory), directory)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "::warning" in result.stdout
    assert "conclusion<<" in outputs(tmp_path)  # outputs written all the same
    assert "passed" in (tmp_path / "summary.md").read_text()
    # The token appears once: in the command that masks it.
    assert (result.stdout + result.stderr).count(fake.state.token) == 1
    assert f"::add-mask::{fake.state.token}" in result.stdout
