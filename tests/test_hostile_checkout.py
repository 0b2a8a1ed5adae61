"""A pull request's checkout and tests acting as an attacker would, against the real command and
action.yml's step as written: the action's own code cannot be replaced, its tokens and the
runner's files stay out of the tests' reach, the tests' output issues no workflow command, and no
write follows a link the checkout provides."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_action_run import STEP, read_outputs, step_environment
from workflow_log import processed_commands

from modal_gpu_action.backends.local import WITHHELD_PREFIXES, WITHHELD_VARIABLES

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = Path(__file__).parent / "fixtures" / "projects" / "hostile"
TOKEN = "ghs_the-action-token-0123456789"
MODAL_SECRET = "as-the-modal-token-secret-9876"
# What a module committed at the workspace root does when the action imports it: record the
# token it could steal, then stop the action.
SHADOW = (
    "import os, pathlib\n"
    "pathlib.Path(os.environ['SHADOW_MARKER']).write_text(os.environ.get('INPUT_GITHUB_TOKEN', ''))\n"
    "raise SystemExit(97)\n"
)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A checkout: the hostile project in `project/`, modules that shadow the action's own at the
    root (`modal_gpu_action/`, `uuid.py`, `json.py`, `argparse.py`)."""
    root = tmp_path / "workspace"
    shutil.copytree(HOSTILE, root / "project")
    (root / "modal_gpu_action").mkdir()
    for module in ("modal_gpu_action/__init__.py", "modal_gpu_action/__main__.py", "uuid.py"):
        (root / module).write_text(SHADOW)
    for module in ("json.py", "argparse.py", "secrets.py"):
        (root / module).write_text(SHADOW)
    return root


def github_environment(root: Path, tmp_path: Path, **inputs: str) -> dict[str, str]:
    runner = tmp_path / "runner"
    runner.mkdir(exist_ok=True)
    event = runner / "event.json"
    event.write_text(json.dumps({"ref": "refs/heads/main"}))
    for name in ("summary.md", "output.txt", "env.txt", "path.txt", "state.txt"):
        (runner / name).touch()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "workflow_dispatch",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_WORKSPACE": str(root),
        "GITHUB_REPOSITORY": "octo/sample",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "42",
        "GITHUB_STEP_SUMMARY": str(runner / "summary.md"),
        "GITHUB_OUTPUT": str(runner / "output.txt"),
        "GITHUB_ENV": str(runner / "env.txt"),
        "GITHUB_PATH": str(runner / "path.txt"),
        "GITHUB_STATE": str(runner / "state.txt"),
        "ACTIONS_RUNTIME_TOKEN": "runtime-token-abcdef",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc-token-abcdef",
        "MODAL_TOKEN_ID": "ak-the-modal-token-id",
        "MODAL_TOKEN_SECRET": MODAL_SECRET,
        "SHADOW_MARKER": str(tmp_path / "shadowed"),
        "MODAL_GPU_ACTION_PYTHON": sys.executable,
        "INPUT_GITHUB_TOKEN": TOKEN,
        "INPUT_BACKEND": "local",
        "INPUT_COMMENT": "off",
        "INPUT_WORKING_DIRECTORY": "project",
    }
    env.update({"INPUT_" + k.upper().replace("-", "_"): v for k, v in inputs.items()})
    return env


def run_action(env: dict[str, str], root: Path) -> subprocess.CompletedProcess[str]:
    """The action in GitHub mode, started as action.yml starts it (isolated mode)."""
    return subprocess.run(
        [sys.executable, "-I", "-m", "modal_gpu_action"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_modules_committed_at_the_workspace_root_never_run_as_the_action(
    workspace: Path, tmp_path: Path
) -> None:
    env = github_environment(workspace, tmp_path)
    inputs = {"backend": "local", "working-directory": "project", "comment": "off"}
    env.update(step_environment(inputs, {"action_path": str(ROOT)}))
    env["INPUT_GITHUB_TOKEN"] = TOKEN
    step = subprocess.run(
        ["bash", "-e", "-c", STEP["run"]],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert not (tmp_path / "shadowed").exists(), step.stdout + step.stderr
    assert step.returncode == 1, step.stdout + step.stderr  # the fixture has one failing test
    assert read_outputs(Path(env["GITHUB_OUTPUT"]))["conclusion"] == "failed"

    # The same command without isolated mode runs the PR's module with the token: the fixture
    # reproduces the attack, and only `-I` stops it.
    plain = STEP["run"].replace("python -I -m", "python -m")
    assert plain != STEP["run"]
    attacked = subprocess.run(
        ["bash", "-e", "-c", plain], cwd=workspace, env=env, capture_output=True, timeout=240
    )
    assert attacked.returncode == 97
    assert (tmp_path / "shadowed").read_text() == TOKEN


def test_the_command_line_and_the_docker_image_ignore_modules_in_the_working_directory(
    workspace: Path, tmp_path: Path
) -> None:
    script = Path(sys.executable).with_name("modal-gpu-action")
    env = {**os.environ, "SHADOW_MARKER": str(tmp_path / "shadowed")}
    done = subprocess.run(
        [str(script), "--version"], cwd=workspace, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and "modal-gpu-action" in done.stdout
    assert not (tmp_path / "shadowed").exists()
    # The image's entry point runs in isolated mode from /workspace, the mounted checkout.
    dockerfile = (ROOT / "Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    assert entry[1:] == ["-I", "-m", "modal_gpu_action"]
    assert "WORKDIR /workspace" in dockerfile


def test_the_tests_see_neither_the_action_tokens_nor_the_runner_files(
    workspace: Path, tmp_path: Path
) -> None:
    record = tmp_path / "environment.json"
    env = github_environment(workspace, tmp_path, env=f"HOSTILE_RECORD={record}")
    done = run_action(env, workspace)
    assert done.returncode == 1, done.stdout + done.stderr
    seen = set(json.loads(record.read_text()))
    assert "HOSTILE_RECORD" in seen  # the env input reaches the tests
    assert "PATH" in seen and "GITHUB_WORKSPACE" in seen  # the rest of the job's environment
    withheld = {k for k in seen if k in WITHHELD_VARIABLES or k.startswith(WITHHELD_PREFIXES)}
    assert withheld == set()
    for name in ("GITHUB_OUTPUT", "GITHUB_ENV", "MODAL_TOKEN_SECRET", "INPUT_GITHUB_TOKEN"):
        assert name not in seen
    outputs = read_outputs(Path(env["GITHUB_OUTPUT"]))
    assert (
        "comment-url" not in outputs
        and "evil.example" not in Path(env["GITHUB_OUTPUT"]).read_text()
    )
    assert Path(env["GITHUB_ENV"]).read_text() == ""


def test_output_from_the_tests_issues_no_workflow_command(workspace: Path, tmp_path: Path) -> None:
    env = github_environment(workspace, tmp_path, pytest_args="-s")  # the prints reach the log
    done = run_action(env, workspace)
    assert done.returncode == 1, done.stdout + done.stderr
    log = done.stdout + done.stderr
    assert "pwned by a test's output" in log  # the output did reach the log
    commands = processed_commands(done.stdout) + processed_commands(done.stderr)
    assert all(
        "evil" not in c.properties and "pwned" not in c.message.split("%0A")[0] for c in commands
    )
    assert not [c for c in commands if c.name == "add-mask" and "hostile" in c.message]
    stops = [c.message for c in commands if c.name == "stop-commands"]
    assert stops and all(re.fullmatch(r"[0-9a-f]{32}", token) for token in stops)
    # Our own commands still work outside the blocks: the failing test's annotation.
    errors = [c for c in commands if c.name == "error"]
    assert any("file=project/tests/test_hostile.py" in c.properties for c in errors), errors


def test_a_report_printed_to_the_log_issues_no_workflow_command(
    workspace: Path, tmp_path: Path
) -> None:
    env = github_environment(workspace, tmp_path)
    assert run_action(env, workspace).returncode == 1
    junit = workspace / "gpu-test-results.xml"
    assert "pwned from a message" in junit.read_text()
    done = subprocess.run(
        [sys.executable, "-I", "-m", "modal_gpu_action", "report", str(junit)],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "pwned from a message" in done.stdout
    names = {c.name for c in processed_commands(done.stdout)}
    assert names == {"stop-commands"}


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "site-packages"
    outside.mkdir(exist_ok=True)
    return outside


@pytest.mark.parametrize(
    ("prepare", "junit_xml", "reason"),
    [
        ("file-link", "gpu-test-results.xml", "is a symbolic link"),
        ("folder-link", "reports/out.xml", "is a symbolic link"),
        ("folder", "gpu-test-results.xml", "is a folder"),
        ("outside", "{outside}/x.pth", "expected a path inside"),
        ("climb", "../x.pth", "expected a path inside"),
    ],
)
def test_a_junit_path_that_would_follow_a_link_or_leave_the_workspace_is_refused_before_the_tests(
    workspace: Path, tmp_path: Path, prepare: str, junit_xml: str, reason: str
) -> None:
    outside = _outside(tmp_path)
    if prepare == "file-link":
        (workspace / "gpu-test-results.xml").symlink_to(outside / "x.pth")
    elif prepare == "folder-link":
        (workspace / "reports").symlink_to(outside, target_is_directory=True)
    elif prepare == "folder":
        (workspace / "gpu-test-results.xml").mkdir()
    record = tmp_path / "environment.json"
    env = github_environment(
        workspace,
        tmp_path,
        env=f"HOSTILE_RECORD={record}",
        junit_xml=junit_xml.format(outside=outside),
    )
    done = run_action(env, workspace)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "for input 'junit-xml'" in errors[0] and reason in errors[0]
    assert not record.exists()  # no test ran
    assert list(outside.iterdir()) == [] and not (tmp_path / "x.pth").exists()


def test_summary_and_comment_files_that_are_links_are_refused(tmp_path: Path) -> None:
    outside = _outside(tmp_path)
    project = tmp_path / "project"
    shutil.copytree(HOSTILE, project)
    (project / "summary.md").symlink_to(outside / "x.pth")
    done = subprocess.run(
        [sys.executable, "-I", "-m", "modal_gpu_action", "run", "--backend", "local",
         "--summary-file", "summary.md"],
        cwd=project, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "for input 'summary-file'" in done.stderr and "symbolic link" in done.stderr
    assert list(outside.iterdir()) == []


def test_a_link_the_tests_put_at_the_junit_path_is_replaced_not_followed(
    workspace: Path, tmp_path: Path
) -> None:
    target = _outside(tmp_path) / "x.pth"
    junit = workspace / "gpu-test-results.xml"
    env = github_environment(
        workspace,
        tmp_path,
        env=f"HOSTILE_SWAP=link:{target}\nHOSTILE_REPORT_PATH={junit}",
    )
    done = run_action(env, workspace)
    assert done.returncode == 1, done.stdout + done.stderr
    assert not target.exists()
    assert not junit.is_symlink() and junit.read_text().startswith("<?xml")


def test_a_folder_the_tests_put_at_the_junit_path_becomes_an_error_in_a_report_still_written(
    workspace: Path, tmp_path: Path
) -> None:
    junit = workspace / "gpu-test-results.xml"
    env = github_environment(
        workspace, tmp_path, env=f"HOSTILE_SWAP=dir\nHOSTILE_REPORT_PATH={junit}"
    )
    done = run_action(env, workspace)
    assert done.returncode == 1, done.stdout + done.stderr
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert "merged JUnit file was not written" in summary and "is a folder" in summary
    assert read_outputs(Path(env["GITHUB_OUTPUT"]))["conclusion"] == "failed"
    assert junit.is_dir()


READ_PARENT_ENVIRON = (
    "import os, subprocess, sys\n"
    "from modal_gpu_action.backends.local import hide_this_process_from_the_tests\n"
    "if sys.argv[1] == 'hide':\n"
    "    hide_this_process_from_the_tests()\n"
    "# What a test would do: read the environment its parent, the action, was started with.\n"
    'steal = \'import os; print(open(f"/proc/{os.getppid()}/environ", "rb").read().count(b"%s"))\'\n'
    "done = subprocess.run([sys.executable, '-c', steal % os.environ['THE_TOKEN']],"
    " capture_output=True, text=True)\n"
    "print(done.returncode, done.stdout.strip())\n"
)


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not Path("/usr/bin/python3").exists(),
    reason="needs root to run the check as an unprivileged user (setpriv) with /usr/bin/python3",
)
@pytest.mark.parametrize(("mode", "stolen"), [("hide", False), ("plain", True)])
def test_a_test_of_the_same_user_cannot_read_the_tokens_the_action_was_started_with(
    mode: str, stolen: bool
) -> None:
    # As `nobody`: root reads every process's files whatever the process does.
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         "/usr/bin/python3", "-c", READ_PARENT_ENVIRON, mode],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"), "THE_TOKEN": TOKEN},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == (["0", "1"] if stolen else ["1"])
