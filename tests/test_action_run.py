"""The composite step's command, exactly as action.yml writes it, in a GitHub-like environment."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
STEP = next(s for s in ACTION["runs"]["steps"] if s.get("id") == "run")


def step_environment(inputs: dict[str, str], github: dict[str, str]) -> dict[str, str]:
    """Evaluate the step's `env:` the way the runner does for `inputs.*` and `github.*`."""
    defaults = {name: spec.get("default", "") for name, spec in ACTION["inputs"].items()}
    values = {**defaults, **inputs}
    for name in inputs:
        assert name in ACTION["inputs"], f"{name} is not an input of action.yml"
    env = {}
    for key, expression in STEP["env"].items():
        match = re.fullmatch(r"\$\{\{ (inputs|github)\.([\w-]+) \}\}", expression)
        assert match, expression
        scope, name = match.groups()
        env[key] = values[name] if scope == "inputs" else github[name]
    return env


def read_outputs(path: Path) -> dict[str, str]:
    text = path.read_text()
    pairs = re.findall(r"^([\w-]+)<<(ghadelimiter_[\w-]+)\n(.*?)\n\2$", text, re.S | re.M)
    return {name: value for name, _, value in pairs}


@pytest.fixture
def github_files(tmp_path: Path) -> dict[str, str]:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"ref": "refs/heads/main"}))
    (tmp_path / "summary.md").touch()
    (tmp_path / "output.txt").touch()
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "workflow_dispatch",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
        "GITHUB_WORKSPACE": str(ROOT),
        "GITHUB_REPOSITORY": "octo/sample",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "42",
        "RUNNER_TEMP": str(tmp_path),  # outputs may go here as well as in the workspace
    }


def run_step(
    inputs: dict[str, str], github_files: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        **github_files,
        **step_environment(inputs, {"action_path": str(ROOT)}),
        # The job's Python: the one running these tests has pytest, as a job that set up its
        # project would.
        "MODAL_GPU_ACTION_PYTHON": sys.executable,
    }
    return subprocess.run(
        ["bash", "-e", "-c", STEP["run"]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_the_step_runs_the_sample_project_and_writes_summary_and_outputs(
    github_files: dict[str, str], tmp_path: Path
) -> None:
    junit = tmp_path / "results.xml"
    result = run_step(
        {
            "backend": "local",
            "working-directory": "examples/sample-project",
            "junit-xml": str(junit),
            "comment": "off",
        },
        github_files,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    outputs = read_outputs(Path(github_files["GITHUB_OUTPUT"]))
    assert outputs["conclusion"] == "passed"
    assert int(outputs["tests"]) == int(outputs["passed"]) + int(outputs["skipped"])
    assert int(outputs["passed"]) >= 5
    assert outputs["failed"] == outputs["errors"] == "0"
    assert outputs["junit-xml"] == str(junit)
    assert junit.read_text().startswith("<?xml")
    summary = Path(github_files["GITHUB_STEP_SUMMARY"]).read_text()
    assert "passed" in summary and "| Tests |" in summary
    assert "GPU" in summary  # the GPU facts row, "no GPU visible" here


def test_a_bad_input_fails_the_step_with_one_error_line_naming_it(
    github_files: dict[str, str],
) -> None:
    result = run_step({"backend": "local", "gpu": "X100", "comment": "off"}, github_files)
    assert result.returncode == 2
    assert "::error title=modal-gpu-action::invalid value 'X100' for input 'gpu'" in result.stdout
    assert Path(github_files["GITHUB_OUTPUT"]).read_text() == ""
