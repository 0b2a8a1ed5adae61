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

from modal_gpu_action.render.annotations import annotation_commands
from modal_gpu_action.report.junit_reader import parse_junit

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
    assert "FAILED tests/test_mixed.py::test_fails: assert (1 + 1) == 3" in result.stdout
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
    # the run's wall time, not the time of the tests that finished before the timeout
    assert re.search(r" in [3-9]\.\d\ds$", result.stdout, re.M), result.stdout
    assert "timed out after 3 s" in (directory / "out.xml").read_text()
    assert process_gone(int(pid_file.read_text()))


def test_no_tests_fails_unless_fail_on_empty_is_false_and_says_why(tmp_path: Path) -> None:
    directory = project(tmp_path, "empty")
    summary = tmp_path / "s.md"
    failed = run(directory, "--summary-file", str(summary))
    assert failed.returncode == 1
    assert "GPU tests: NO TESTS" in failed.stdout
    because = "which fails the run because 'fail-on-empty' is true"
    assert because in failed.stdout
    assert because.replace("-", "\\-") in summary.read_text()
    passed = run(directory, "--fail-on-empty", "false", "--summary-file", str(summary))
    assert passed.returncode == 0
    assert "the run passes because 'fail-on-empty' is false" in passed.stdout


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


@pytest.mark.parametrize("shards", ["2", "3"])
def test_a_previous_runs_junit_balances_the_shards_and_every_test_runs_once(
    tmp_path: Path, shards: str
) -> None:
    directory = project(tmp_path, "many")
    assert run(directory).returncode == 0
    whole = case_ids(directory / "out.xml")
    shutil.copy(directory / "out.xml", directory / "previous.xml")  # the merged file, as kept
    result = run(directory, "--shards", shards, "--shard-durations", "previous.xml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert case_ids(directory / "out.xml") == whole  # each once, none missing
    headers = re.findall(
        r"shard \d/\d: (\d+) of (\d+) tests, balanced by durations \((\d+) of", result.stdout
    )
    assert len(headers) == int(shards)
    assert sum(int(kept) for kept, _, _ in headers) == len(whole)
    assert all(int(total) == int(known) == len(whole) for _, total, known in headers)


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


# --- counts as pytest's own, whatever the sharding ----------------------------------------------

# pytest's last line: "6 passed, 3 skipped, 2 errors in 0.19s", "2 subtests passed"
PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|subtests passed)")
# ours: "  11 tests: 6 passed, 0 failed, 2 errors, 3 skipped in 0.21s"
OUR_COUNTS = re.compile(
    r"^  (?P<tests>\d+) tests?: (?P<passed>\d+) passed, (?P<failed>\d+) failed,"
    r" (?P<errors>\d+) errors?, (?P<skipped>\d+) skipped(?:, (?P<not_run>\d+) not run)? in ",
    re.M,
)


def pytest_counts(directory: Path, *args: str) -> dict[str, int]:
    """What pytest itself says, run plainly in the project (the reference)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=directory,
        env=environment(PYTHONDONTWRITEBYTECODE="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    last = done.stdout.strip().splitlines()[-1]
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    for number, word in PYTEST_COUNT.findall(last):
        counts["errors" if word.startswith("error") else word] = int(number)
    return counts


def our_counts(stdout: str) -> dict[str, int]:
    match = OUR_COUNTS.search(stdout)
    assert match, stdout
    return {key: int(value or 0) for key, value in match.groupdict().items()}


@pytest.mark.parametrize("shards", ["1", "2", "3"])
@pytest.mark.parametrize(
    ("test_path", "pytest_args"),
    [
        ("tests", ""),  # two modules skipped at collection
        (".", ""),  # and two that fail to import: pytest stops before any test
        (".", "--continue-on-collection-errors"),  # ... or runs the rest
    ],
)
def test_collection_skips_and_errors_count_once_as_pytest_counts_them(
    tmp_path: Path, shards: str, test_path: str, pytest_args: str
) -> None:
    directory = project(tmp_path, "collection")
    reference = pytest_counts(directory, *pytest_args.split(), test_path)
    args = ["--shards", shards, "--test-path", test_path]
    args += ["--pytest-args", pytest_args] if pytest_args else []
    result = run(directory, *args)
    assert result.returncode == (1 if reference["errors"] else 0), result.stdout + result.stderr
    ours = our_counts(result.stdout)
    assert {key: ours[key] for key in reference} == reference
    assert ours["tests"] == sum(reference.values())  # "pytest exited with code 2" is no test
    problems = re.findall(r"^  PROBLEM (.*)$", result.stdout, re.M)
    if pytest_args or not reference["errors"]:
        assert problems == []
    else:  # each shard stopped at the collection errors: said apart from the tests
        assert len(problems) == int(shards)
        assert all("stopped after 2 collection errors and ran no test" in p for p in problems)


def test_the_sample_project_counts_as_pytest_does_with_two_shards(tmp_path: Path) -> None:
    sample = Path(__file__).parents[1] / "examples" / "sample-project"
    directory = Path(shutil.copytree(sample, tmp_path / "sample", ignore=IGNORED))
    reference = pytest_counts(directory)
    ours = our_counts(run(directory, "--shards", "2").stdout)
    assert {key: ours[key] for key in reference} == reference  # 12 tests / 2 skipped here
    assert ours["tests"] == sum(reference.values())


IGNORED = shutil.ignore_patterns("__pycache__", ".pytest_cache")


def test_tests_a_crash_left_unstarted_are_counted_as_not_run(tmp_path: Path) -> None:
    directory = project(tmp_path, "crash")
    summary = tmp_path / "s.md"
    result = run(directory, "--summary-file", str(summary))
    assert result.returncode == 1
    assert our_counts(result.stdout) == {
        "tests": 4,  # as collected
        "passed": 2,
        "failed": 0,
        "errors": 1,  # the test that was running
        "skipped": 0,
        "not_run": 1,  # the one after it
    }
    assert "  PROBLEM run: pytest was killed by signal 11 (SIGSEGV)" in result.stdout
    text = summary.read_text()
    assert "### Not run (1)" in text and "`tests/test_crash.py::test_never_reached`" in text
    assert "### Problems with the run (1)" in text


def test_every_subtest_failure_is_kept_and_the_subtests_counted_as_pytest_does(
    tmp_path: Path,
) -> None:
    directory = project(tmp_path, "subtests")
    reference = pytest_counts(directory)
    summary = tmp_path / "s.md"
    result = run(directory, "--summary-file", str(summary))
    assert result.returncode == 1
    root = ET.parse(directory / "out.xml").getroot()
    [case] = [c for c in root.iter("testcase") if c.get("name") == "test_sizes"]
    expected = [f"AssertionError: {n} not less than 2 : size {n} is too large" for n in (2, 3, 4)]
    assert [f.get("message") for f in case.findall("failure")] == expected
    assert f"5 subtests: {reference['subtests passed']} passed, 3 failed" in result.stdout
    text = summary.read_text().replace("\u2060", "").replace("\\", "")
    for number, message in enumerate(expected, start=1):
        assert f"Failure {number} of 3: {message}" in text
    assert f"Subtests: {reference['subtests passed']} passed, 3 failed." in text


# --- what the reader needs first ----------------------------------------------------------------


def test_a_failures_reported_id_reruns_exactly_that_test(tmp_path: Path) -> None:
    directory = project(tmp_path, "ids")
    summary, comment = tmp_path / "s.md", tmp_path / "c.md"
    result = run(
        directory, "--shards", "2", "--summary-file", str(summary), "--comment-file", str(comment)
    )
    assert result.returncode == 1
    ids = re.findall(r"^  FAILED (.+?): ", result.stdout, re.M)
    assert len(ids) == 7
    assert "tests/test_ids.py::TestOuter::TestInner::test_param[a b]" in ids
    assert "tests/test_ids.py::TestInheritedHere::test_inherited" in ids  # defined in checks.py
    # the same ids, exactly, in the summary's headings, the comment and the annotations
    assert sorted(re.findall(r"^#### ❌ `([^`]+)`", summary.read_text(), re.M)) == sorted(ids)
    assert sorted(re.findall(r"^- ❌ `([^`]+)`", comment.read_text(), re.M)) == sorted(ids)
    report = parse_junit(directory / "out.xml")
    titles = [
        re.search(r"title=(.*?) failed::", line) for line in annotation_commands(report, limit=20)
    ]
    assert sorted(t.group(1).replace("%3A", ":") for t in titles if t) == sorted(ids)
    for nodeid in ids:
        again = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", nodeid],
            cwd=directory,
            env=environment(PYTHONDONTWRITEBYTECODE="1"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.stdout.strip().splitlines()[-1].startswith("1 failed in "), again.stdout


def test_an_errors_cause_comes_first_then_its_traceback(tmp_path: Path) -> None:
    directory = project(tmp_path, "headlines")
    summary, comment = tmp_path / "s.md", tmp_path / "c.md"
    result = run(directory, "--summary-file", str(summary), "--comment-file", str(comment))
    assert result.returncode == 1
    causes = {
        "tests/test_broken_import.py": "Collection error: ModuleNotFoundError: No module named"
        " 'gpu_library_that_is_not_installed'",
        "tests/test_fixtures.py::test_missing_fixture": "Error in setup: fixture 'gpu_handle'"
        " not found",
        "tests/test_fixtures.py::test_exploding_fixture": "Error in setup: RuntimeError: the GPU"
        " is gone",
    }
    for nodeid, cause in causes.items():
        assert f"  ERROR {nodeid}: {cause}" in result.stdout
    text = summary.read_text().replace("\u2060", "").replace("\\", "")
    for nodeid, cause in causes.items():
        entry = text.split(f"#### 💥 `{nodeid}`", 1)[1]
        # the line under the heading, before the folded traceback
        assert entry.split("\n\n")[1] == cause, entry[:300]
    items = comment.read_text().replace("\u2060", "").replace("\\", "")
    for nodeid, cause in causes.items():
        assert f"- 💥 `{nodeid}` — {cause}" in items


def test_one_test_is_one_test(tmp_path: Path) -> None:
    directory = project(tmp_path, "passing")
    result = run(directory, "--test-path", "tests/test_ok.py::test_adds")
    assert result.returncode == 0
    assert "  1 test: 1 passed, 0 failed, 0 errors, 0 skipped in " in result.stdout


# --- the command line -----------------------------------------------------------------------------


def test_pytest_args_take_a_word_that_starts_with_a_dash(tmp_path: Path) -> None:
    directory = project(tmp_path, "ids")
    result = run(directory, "--pytest-args", "-x")  # as people type it
    assert result.returncode == 1, result.stderr
    assert len(re.findall(r"^  FAILED ", result.stdout, re.M)) == 1  # -x: stopped at the first


@pytest.mark.parametrize(
    "args",
    [
        "-p no:junitxml",
        "-pno:junitxml",
        "-v -p no:_modal_gpu_action_container.progress",
    ],
)
def test_pytest_args_that_turn_off_the_report_are_refused_before_any_test(
    tmp_path: Path, args: str
) -> None:
    directory = project(tmp_path, "passing")
    result = run(directory, "--pytest-args", args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid value ") and "for input 'pytest-args'" in (
        result.stderr
    )
    assert "turns off" in result.stderr
    assert "-m pytest" not in result.stdout and not (directory / "out.xml").exists()


def test_an_interpreter_without_pytest_is_an_infrastructure_error_naming_it(
    tmp_path: Path,
) -> None:
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    directory = project(tmp_path, "passing")
    result = run(directory, env=environment(MODAL_GPU_ACTION_PYTHON=python))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "GPU tests: INFRASTRUCTURE ERROR" in result.stdout
    assert f"error: the Python interpreter {python} has no pytest" in result.stdout
    assert "MODAL_GPU_ACTION_PYTHON" in result.stdout
    assert "::error" not in result.stdout  # workflow commands only in GitHub mode
    assert "  0 tests: " in result.stdout


def test_output_paths_are_checked_before_any_test_runs(tmp_path: Path) -> None:
    directory = project(tmp_path, "passing")
    (tmp_path / "a-file").write_text("")
    for args, name in (
        (["--junit-xml", str(tmp_path)], "junit-xml"),  # a folder
        (["--summary-file", str(tmp_path / "a-file" / "s.md")], "summary-file"),
        (["--comment-file", str(tmp_path)], "comment-file"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "modal_gpu_action", "run", "--backend", "local",
             "--working-directory", str(directory), *args],
            cwd=directory, env=environment(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert f"for input '{name}'" in result.stderr
        assert "-m pytest" not in result.stdout  # refused before pytest started
    # A folder that does not exist yet is made, as for the JUnit file.
    summary = tmp_path / "reports" / "gpu" / "summary.md"
    assert run(directory, "--summary-file", str(summary)).returncode == 0
    assert summary.read_text().startswith("## ✅")


def test_plan_has_one_key_style_and_ends_quietly_when_its_reader_leaves(tmp_path: Path) -> None:
    directory = project(tmp_path, "passing")
    command = [sys.executable, "-m", "modal_gpu_action", "plan", "--backend", "local"]
    command += ["--working-directory", str(directory), "--shards", "2"]
    done = subprocess.run(
        command, cwd=directory, env=environment(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    keys = re.findall(r'^\s*"([^"]+)":', done.stdout, re.M)
    assert "shard-index" in keys and "test-path" in keys
    assert not [key for key in keys if "_" in key]
    # `plan | head -1`: the reader is gone before the plan is written
    reader, writer = os.pipe()
    os.close(reader)
    with os.fdopen(writer, "w") as closed:
        piped = subprocess.run(
            command, cwd=directory, env=environment(), stdout=closed, stderr=subprocess.PIPE,
            text=True, timeout=60,
        )  # fmt: skip
    assert piped.returncode == 0
    assert "Traceback" not in piped.stderr and "BrokenPipeError" not in piped.stderr


def test_in_github_mode_a_bad_input_is_said_before_the_label_is_tried(tmp_path: Path) -> None:
    directory = project(tmp_path, "passing")
    event = tmp_path / "event.json"
    event.write_text(
        '{"number": 7, "pull_request": {"number": 7, "head": {"sha": "' + "a" * 40 + '"}}}'
    )
    env = environment(
        GITHUB_ACTIONS="true",
        GITHUB_EVENT_NAME="pull_request",
        GITHUB_EVENT_PATH=str(event),
        GITHUB_REPOSITORY="octo/gpu-project",
        GITHUB_API_URL="http://127.0.0.1:9",  # nothing listens: every request fails
        GITHUB_WORKSPACE=str(directory),
        MODAL_GPU_ACTION_PUBLISH_SECONDS="4",
        INPUT_BACKEND="local",
        INPUT_GPU="X100",
        INPUT_GITHUB_TOKEN="token-for-tests",
        INPUT_REMOVE_LABEL="gpu-tests",
    )
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "modal_gpu_action"],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    said_after = time.monotonic() - started
    rest = process.stdout.read()
    assert process.wait(timeout=60) == 2
    assert first.startswith("::error title=modal-gpu-action::invalid value 'X100' for input 'gpu'")
    assert said_after < 3.5, said_after  # before the label's retries, not after them
    assert "label" in rest  # the label was still tried, and its trouble said after


def test_a_durations_file_that_is_not_junit_is_a_warning_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    directory = project(tmp_path, "many")
    coverage = directory / "coverage.xml"
    coverage.write_text("<coverage><packages/></coverage>")
    result = run(directory, "--shards", "2", "--shard-durations", "coverage.xml")
    assert result.returncode == 0, result.stdout + result.stderr
    [warning] = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    assert "input 'shard-durations'" in warning and "its root is <coverage>" in warning
    assert warning.endswith("balancing fell back to test ids")
    assert "::warning" not in result.stdout  # a workflow command only in GitHub mode
    # said once, by the host, which read the file; each shard's header says how it split
    assert result.stdout.count("balancing fell back to test ids") == 1
    assert result.stdout.count("tests, assigned by test id") == 2
