"""The whole action in GitHub mode (`python -m modal_gpu_action` with INPUT_* variables) against the
fake GitHub API: the comment, the label removed whatever happened, faults that never hide the
tests' result, an API that never answers, a cancel while publishing, comments that are not ours
and events that would hand the secrets to a pull request."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from github_api.server import BOT, MAINTAINER, OTHER_BOT, STRANGER
from processes import wait_for_file

from modal_gpu_action.render.comment_sections import Section, compose_comment, parse_comment
from modal_gpu_action.report.conclusion import Conclusion

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


PULL_REQUEST_PAYLOAD = {
    "action": "labeled",
    "number": PR,
    "pull_request": {"number": PR, "head": {"sha": HEAD}},
}


def environment(
    fake: Any,
    tmp_path: Path,
    directory: Path,
    *,
    payload: dict[str, Any] | None = None,
    **inputs: str,
) -> dict[str, str]:
    event = tmp_path / "event.json"
    event_name = inputs.pop("event", "pull_request")
    event.write_text(json.dumps(PULL_REQUEST_PAYLOAD if payload is None else payload))
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
    before = len(fake.exchanges)
    second = action(env, directory)
    assert second.returncode == 0
    assert len(fake.comments_on(PR)) == 1
    assert fake.labels_on(PR) == []
    # The run reads the previous comment, writes and reads it back, each through an Api of its
    # own: who the token is is asked once (GET /user refuses GITHUB_TOKEN; GraphQL answers).
    asked = [e.operation_id for e in fake.exchanges[before:]]
    assert asked.count("users/get-authenticated") == 1
    assert asked.count("graphql") == 1


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


def test_bad_label_inputs_leave_nothing_to_remove_the_label_with(fake: Any, tmp_path: Path) -> None:
    directory = workspace(tmp_path, "passing")
    result = action(environment(fake, tmp_path, directory, pr_number="seven"), directory)
    assert result.returncode == 2
    assert "invalid value 'seven' for input 'pr-number'" in result.stderr
    assert fake.labels_on(PR) == [LABEL, "bug"]
    assert fake.exchanges == []  # nothing reached the API


PRIVILEGED = {
    "pull_request_target": PULL_REQUEST_PAYLOAD,
    # A fork's pull request: GitHub lists no pull request in the payload, only the commit.
    "workflow_run": {
        "action": "completed",
        "workflow_run": {
            "event": "pull_request",
            "head_sha": HEAD,
            "head_repository": {"full_name": "fork-owner/gpu-project"},
            "pull_requests": [],
        },
    },
    "issue_comment": {
        "action": "created",
        "issue": {"number": PR, "pull_request": {"url": "https://api.github.com/pulls/7"}},
        "comment": {"body": "/run-gpu-tests"},
    },
}


@pytest.mark.parametrize("event", sorted(PRIVILEGED))
def test_events_that_hand_the_secrets_to_a_pull_request_are_refused_and_the_label_still_goes(
    fake: Any, tmp_path: Path, event: str
) -> None:
    directory = workspace(tmp_path, "passing")
    env = environment(fake, tmp_path, directory, event=event, payload=PRIVILEGED[event])
    result = action(env, directory)
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: refusing to run on '{event}'")
    assert "input 'allow-pull-request-target: true'" in line
    assert fake.labels_on(PR) == ["bug"]
    assert fake.comments_on(PR) == []
    assert outputs(tmp_path) == ""  # no test ran


@pytest.mark.parametrize("event", sorted(PRIVILEGED))
def test_events_that_hand_the_secrets_to_a_pull_request_run_when_opted_in(
    fake: Any, tmp_path: Path, event: str
) -> None:
    directory = workspace(tmp_path, "passing")
    env = environment(
        fake,
        tmp_path,
        directory,
        event=event,
        payload=PRIVILEGED[event],
        allow_pull_request_target="true",
    )
    result = action(env, directory)
    assert result.returncode == 0, result.stdout + result.stderr
    assert fake.labels_on(PR) == ["bug"]
    assert "passed" in fake.comments_on(PR)[0].body


def test_a_workflow_run_after_a_push_and_a_comment_on_an_issue_need_no_opt_in(
    fake: Any, tmp_path: Path
) -> None:
    directory = workspace(tmp_path, "passing")
    after_push = {
        "action": "completed",
        "workflow_run": {
            "event": "push",
            "head_sha": HEAD,
            "head_repository": {"full_name": fake.full_name},
            "pull_requests": [],
        },
    }
    on_issue = {"action": "created", "issue": {"number": 3}, "comment": {"body": "/run"}}

    pushed = action(
        environment(fake, tmp_path, directory, event="workflow_run", payload=after_push),
        directory,
    )
    commented = action(
        environment(fake, tmp_path, directory, event="issue_comment", payload=on_issue),
        directory,
    )

    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert commented.returncode == 0, commented.stdout + commented.stderr
    assert "No pull request for this run" in commented.stdout
    assert len(fake.comments_on(PR)) == 1  # the pushed commit's pull request, found by its sha
    assert fake.labels_on(PR) == ["bug"]


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
    # No comment: the label must go before GitHub's SIGKILL, 10 s after its SIGINT.
    assert fake.comments_on(PR) == []
    assert "the run was cancelled: the PR comment was skipped" in out
    assert "cancelled" in outputs(tmp_path)


def test_sigint_while_publishing_skips_the_comment_and_exits_within_seconds(
    fake: Any, tmp_path: Path
) -> None:
    fake.stall("silent", "issues/list-comments")  # the comment's first request never ends
    directory = workspace(tmp_path, "passing")
    process = subprocess.Popen(
        [sys.executable, "-m", "modal_gpu_action"],
        cwd=directory,
        env=environment(fake, tmp_path, directory, compare_previous="false"),
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not fake.calls("issues/list-comments"):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)

    process.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    out, _ = process.communicate(timeout=30)

    assert time.monotonic() - signalled < 3.5  # GitHub's SIGKILL comes 10 s after SIGINT
    assert process.returncode == 0, out  # the tests had passed: their exit code stands
    assert "the run was cancelled: the PR comment was left as it was" in out
    assert fake.comments_on(PR) == []
    assert fake.labels_on(PR) == ["bug"]
    assert "conclusion<<" in outputs(tmp_path)
    assert "passed" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize("stall", ["silent", "trickle"])
def test_an_api_that_never_answers_cannot_hold_the_job_past_the_deadline(
    fake: Any, tmp_path: Path, stall: str
) -> None:
    # Trickled header lines come faster than any read of the socket times out.
    fake.stall(stall, interval=1.0)
    directory = workspace(tmp_path, "failing")
    env = environment(fake, tmp_path, directory)
    env["MODAL_GPU_ACTION_PUBLISH_SECONDS"] = "3"
    started = time.monotonic()

    result = action(env, directory)

    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr  # the tests' exit code
    assert elapsed < 3 + 12, elapsed  # the deadline, plus starting Python and pytest
    assert "conclusion<<" in outputs(tmp_path) and "failed" in outputs(tmp_path)
    assert "failed" in (tmp_path / "summary.md").read_text()
    assert "::warning title=PR comment::could not write the PR comment" in result.stdout
    assert "did not answer within" in result.stdout
    assert fake.calls("issues/remove-label")  # attempted, in the label's share of the time
    assert fake.comments_on(PR) == []


def test_marker_comments_of_others_are_never_touched_and_ours_is_updated(
    fake: Any, tmp_path: Path
) -> None:
    key = "GPU tests/gpu"  # the default comment key: workflow/job
    part = Section(key="T4", conclusion=Conclusion.FAILED, tests=1, failed=1, body="### T4: failed")
    forged = compose_comment(key, {"this machine": part})
    others = [
        fake.add_comment(PR, forged, user=STRANGER),
        fake.add_comment(PR, forged, user=MAINTAINER, association="MEMBER"),
        fake.add_comment(PR, forged, user=OTHER_BOT),
    ]
    ours = fake.add_comment(PR, compose_comment(key, {"T4": part}), user=BOT)
    directory = workspace(tmp_path, "passing")

    result = action(environment(fake, tmp_path, directory), directory)

    assert result.returncode == 0, result.stdout + result.stderr
    comments = {c.id: c for c in fake.comments_on(PR)}
    assert [comments[c.id].body for c in others] == [forged] * 3
    assert set(parse_comment(comments[ours.id].body)) == {"T4", "this machine"}
    assert len(comments) == 4
    assert fake.calls("issues/delete-comment") == []
    assert f"issuecomment-{ours.id}" in outputs(tmp_path)


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
