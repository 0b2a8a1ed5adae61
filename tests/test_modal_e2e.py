"""`modal-gpu-action run --backend modal`, end to end, against the local Modal server.

The real CLI runs as a subprocess with the real `modal` client (1.5.4, the mock's version) against
../shared/modal-mock, whose emulated containers run our in-container entry and runner for real:
the suite runs in the container and streams back, JUnit comes back, shards run at once, and the
server's record shows what the client asked for. The tests of what a run keeps when it ends
without an answer (cancel, Modal's time limit, a lost container) use a server that builds the
images (`built`): there the calls run in the image's own Python. What the mock does not do
(schedule GPUs, retry preempted containers) is listed in README.md, "What has been exercised".
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from modal_mock_server import (
    ModalMock,
    Run,
    clean_environ,
    client_command,
    run_cli,
    serving,
    serving_built_images,
    since,
    why_unavailable,
)
from processes import processes_with
from test_project_files import TOKEN, hostile_project

PROJECTS = Path(__file__).parent / "fixtures" / "modal_projects"
SECRET = "s3cr3t-VALUE"  # 12 characters: tests/fixtures/modal_projects/uv_project checks the length

_UNAVAILABLE = why_unavailable()
pytestmark = pytest.mark.skipif(
    _UNAVAILABLE is not None, reason=f"MODAL E2E NOT RUN: {_UNAVAILABLE}"
)


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModalMock]:
    with serving(tmp_path_factory.mktemp("modal-mock")) as server:
        yield server


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModalMock]:
    """A server that builds the images for real: the calls run in the image's own Python (the
    partial results travel from there), with no `modal` in it."""
    with serving_built_images(tmp_path_factory.mktemp("modal-mock-built")) as server:
        yield server


def project(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(PROJECTS / name, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def run(
    mock: ModalMock, folder: Path, *args: str, timeout: float = 120.0, **env: str
) -> tuple[Run, Path]:
    junit = folder.parent / f"{folder.name}-junit.xml"
    result = run_cli(
        ["run", "--backend", "modal", "--junit-xml", str(junit), "--comment", "off", *args],
        env=clean_environ(**mock.env(), **env),
        cwd=folder,
        timeout=timeout,
    )
    return result, junit


def cases(junit: Path) -> dict[str, str]:
    """Test id -> outcome (passed, failure, error, skipped) from a JUnit file."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        out[f"{case.get('classname')}.{case.get('name')}"] = kinds[0] if kinds else "passed"
    return out


def test_uv_project_runs_in_the_container_from_declarations_only(
    mock: ModalMock, tmp_path: Path
) -> None:
    folder = project(tmp_path, "uv_project")
    before = mock.state()
    result, junit = run(
        mock, folder, "--gpu", "h100:2", "--timeout-minutes", "2", "--retries", "2",
        "--env", f"UVPROJ_TOKEN={SECRET}",
    )  # fmt: skip
    record = since(before, mock.state())

    # The tests ran in the container (the package imports from the mounted source after the
    # install at start), one fails on purpose, and the exit code follows the tests.
    assert result.returncode == 1, result.output
    assert cases(junit) == {
        "tests.test_uvproj.test_package_is_installed_from_the_mounted_source": "passed",
        "tests.test_uvproj.test_env_input_reaches_the_tests_as_a_secret": "passed",
        "tests.test_uvproj.test_fails_on_purpose": "failure",
    }
    assert "installing the project" in result.output
    # What the client asked for: the GPU with its count, the timeout, the retries, one secret.
    assert record.function["gpu"] == ["H100:2"]
    assert record.function["timeout_secs"] == 2 * 60 + 120
    assert record.function["retries"] == 2
    assert len(record.function["secret_ids"]) == 1
    # The layers hold the dependency declarations only: never the project's source.
    context = {name for image in record.images for name in image["context_files"]}
    assert context == {"/.pyproject.toml", "/.uv.lock"}
    commands = [c for image in record.images for c in image["dockerfile_commands"]]
    assert any(c.startswith("RUN /.uv/uv sync") and "--frozen" in c for c in commands)
    assert not [c for c in commands if "uvproj" in c or "/root/project" in c]
    # The env input's value is never printed nor recorded.
    assert SECRET not in result.output
    assert SECRET not in mock.state_path.read_text()


@pytest.mark.parametrize("server", ["mock", "built"])
def test_the_container_holds_the_project_and_nothing_else(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """On the emulated container and on a built image (the image's own Python): a pull
    request's links to .git/config (the checkout's token), to the runner's files and folders, a
    dangling one and one to an ignored .env: none is in the container, nor .git or the ignored
    files; the links inside the project are there as links, the tracked build outputs
    too; of the action, only its container package. The project's own tests
    (upload_project/tests/test_upload.py) look from inside."""
    mock: ModalMock = request.getfixturevalue(server)
    folder = hostile_project(project(tmp_path, "upload_project"), tmp_path / "outside")
    result, junit = run(mock, folder)

    assert result.returncode == 0, result.output
    outcome = cases(junit)
    assert len(outcome) == 6 and set(outcome.values()) == {"passed"}, outcome
    assert "modal-gpu-action: uploading 7 files" in result.output
    assert "modal-gpu-action: refused 'leak_config': link into .git" in result.output
    assert "modal-gpu-action: refused 'leak_passwd': link to a path outside the project" in (
        result.output
    )
    assert TOKEN not in result.output and "API_KEY=from-dotenv" not in result.output


def test_requirements_project_with_a_fallback_gpu_list(mock: ModalMock, tmp_path: Path) -> None:
    folder = project(tmp_path, "requirements_project")
    before = mock.state()
    result, junit = run(mock, folder, "--gpu", "H100, A100-80GB, L40S")
    record = since(before, mock.state())

    assert result.returncode == 0, result.output
    assert set(cases(junit).values()) == {"passed"}
    assert record.function["gpu"] == ["H100", "A100-80GB", "L40S"]
    commands = [c for image in record.images for c in image["dockerfile_commands"]]
    assert "COPY . /.requirements" in commands
    install = next(c for c in commands if "pip install" in c and "/.requirements/" in c)
    assert install.endswith("-r /.requirements/requirements.txt")
    assert not [c for c in commands if "calc" in c or "/root/project" in c]
    assert not [c for c in commands if c.endswith(" pytest")], "pytest is declared: not added"


def test_registry_image_without_python_gets_one_and_pyproject_dependencies(
    mock: ModalMock, tmp_path: Path
) -> None:
    folder = project(tmp_path, "pyproject_project")
    before = mock.state()
    result, _ = run(
        mock, folder, "--image", "nvidia/cuda:12.4.1-runtime-ubuntu22.04",
        "--python-version", "3.11", "--extras", "test",
    )  # fmt: skip
    record = since(before, mock.state())

    assert result.returncode == 0, result.output
    commands = [c for image in record.images for c in image["dockerfile_commands"]]
    assert "FROM nvidia/cuda:12.4.1-runtime-ubuntu22.04" in commands
    assert "COPY /python/. /usr/local" in commands  # Modal's standalone Python
    install = next(c for c in commands if "uv pip install" in c)
    assert install.endswith("'iniconfig>=2' packaging 'pytest>=8'")
    assert not [c for image in record.images for c in image["context_files"]]


@dataclass
class Unsharded:
    result: Run
    junit: Path
    outputs: Path


@pytest.fixture(scope="module")
def unsharded(mock: ModalMock, tmp_path_factory: pytest.TempPathFactory) -> Unsharded:
    """slow_project once, unsharded, in GitHub mode with -v: test_zz_waits sleeps 4 s."""
    tmp_path = tmp_path_factory.mktemp("unsharded")
    folder = project(tmp_path, "slow_project")
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs"
    # As on GitHub: the project and the JUnit file inside the workspace.
    result, junit = run(
        mock, folder, "--pytest-args=-v", "--env", "SLEEP_SECONDS=4",
        "--working-directory", folder.name, GITHUB_WORKSPACE=str(tmp_path),
        GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary), GITHUB_OUTPUT=str(outputs),
    )  # fmt: skip
    return Unsharded(result, junit, outputs)


def test_output_streams_while_the_tests_run_in_log_groups(
    mock: ModalMock, unsharded: Unsharded
) -> None:
    result = unsharded.result
    assert result.returncode == 0, result.output
    # A finished test's line arrived while the suite was still running (test_zz_waits sleeps 4 s).
    seen = result.first("test_case[0] PASSED")
    assert result.first("test_zz_waits PASSED") - seen > 3
    assert result.seconds - seen > 3
    # Image build and tests in their own folded groups; the tokens masked before anything else.
    lines = [line for _, line in result.lines]
    build = lines.index(next(x for x in lines if x.startswith("::group::Modal: image and app")))
    tests = lines.index(next(x for x in lines if x.startswith("::group::Tests on Modal")))
    assert lines[build:tests].count("::endgroup::") == 1
    assert build < lines.index(next(x for x in lines if "Created objects" in x)) < tests
    assert tests < lines.index(next(x for x in lines if "test_case[0] PASSED" in x))
    assert lines.index("::add-mask::" + mock.env()["MODAL_TOKEN_SECRET"]) < build
    assert len(cases(unsharded.junit)) == 9
    assert "conclusion<<" in unsharded.outputs.read_text()
    assert "cost-usd<<" in unsharded.outputs.read_text()


def test_three_shards_run_at_once_and_merge_to_the_unsharded_set(
    mock: ModalMock, unsharded: Unsharded, tmp_path: Path
) -> None:
    folder = project(tmp_path, "slow_project")
    before = mock.state()
    result, junit = run(mock, folder, "--shards", "3", "--env", "SLEEP_SECONDS=1")
    record = since(before, mock.state())

    assert result.returncode == 0, result.output
    assert sorted(cases(junit)) == sorted(cases(unsharded.junit))
    assert len(cases(junit)) == 9
    # Three containers, all started before the first one finished.
    events = [
        ("start" if c.get("started") else "end")
        for c in record.calls
        if "rc" in c or c.get("started")
    ]
    assert events[:3] == ["start", "start", "start"] and events.count("end") == 3
    for label in ("shard 1/3", "shard 2/3", "shard 3/3"):
        assert f"[{label}]" in result.output


def test_a_module_the_image_lacks_is_an_infrastructure_error(
    mock: ModalMock, tmp_path: Path
) -> None:
    result, _ = run(mock, project(tmp_path, "broken_project"))

    assert result.returncode == 3, result.output
    assert "pytest could not run the tests" in result.output
    assert "No module named 'cuda_kernels_the_image_lacks'" in result.output


def test_a_crashed_container_is_an_infrastructure_error(mock: ModalMock, tmp_path: Path) -> None:
    mark = f"crash-{uuid.uuid4().hex}"
    result, _ = run(mock, project(tmp_path, "crash_project"), "--env", f"MARK={mark}")

    assert result.returncode == 3, result.output
    assert "failed on Modal" in result.output
    assert "exited with -9" in result.output  # the cause, as Modal (here: the emulator) gave it
    assert processes_with(mark) == [], "pytest outlived its container"


def test_a_run_past_timeout_minutes_is_reported_as_timed_out(
    mock: ModalMock, tmp_path: Path
) -> None:
    folder = project(tmp_path, "slow_project")
    result, junit = run(
        mock, folder, "--timeout-minutes", "0.05", "--env", "SLEEP_SECONDS=60", timeout=60
    )

    assert result.returncode == 1, result.output
    assert "GPU tests: TIMED OUT" in result.output
    assert result.seconds < 30
    outcome = cases(junit)
    assert [k for k, v in outcome.items() if v == "passed"] == [
        f"tests.test_many.test_case[{n}]" for n in range(8)
    ]
    assert outcome["tests.test_many.test_zz_waits"] == "error"


def test_cancel_stops_the_containers_and_keeps_what_finished(
    mock: ModalMock, tmp_path: Path
) -> None:
    """GitHub cancels a job with SIGINT, then SIGTERM 7.5 s later, to the step's entry process
    (here `uv run`, which passes them on, as it does when action.yml `exec`s it): the process must
    be gone before the SIGTERM, its containers killed, the report "cancelled" with the finished
    shard."""
    folder = project(tmp_path, "slow_project")
    before = mock.state()
    sent: dict[str, float] = {}
    mark = f"cancel-{uuid.uuid4().hex}"

    def cancel_when_one_shard_finished(
        at: float, line: str, process: subprocess.Popen[bytes]
    ) -> None:
        if "shard 1/2 finished" in line and "SIGINT" not in sent:
            sent["SIGINT"] = at
            process.send_signal(signal.SIGINT)

            def sigterm() -> None:
                if process.poll() is None:
                    sent["SIGTERM"] = time.monotonic()
                    process.send_signal(signal.SIGTERM)

            threading.Timer(7.5, sigterm).start()

    junit = tmp_path / "cancelled.xml"
    result = run_cli(
        ["run", "--backend", "modal", "--junit-xml", str(junit), "--comment", "off",
         "--shards", "2", "--env", f"SLOW_SHARD=1\nSLOW_SECONDS=60\nMARK={mark}"],
        env=clean_environ(**mock.env()),
        cwd=folder,
        timeout=90,
        on_line=cancel_when_one_shard_finished,
    )  # fmt: skip
    record = since(before, mock.state())

    assert "SIGINT" in sent, result.output
    assert "SIGTERM" not in sent, "still running 7.5 s after SIGINT"
    assert result.seconds - sent["SIGINT"] < 7, result.output
    assert result.returncode == 3, result.output
    assert "GPU tests: CANCELLED" in result.output
    # One container killed (the mock may record the cancel and the app's disconnect for it)
    killed = {c["call"] for c in record.calls if "killed" in c}
    assert len(killed) == 1, record.calls
    assert not mock.state()["calls"][-1].get("started"), "nothing new started after the cancel"
    assert processes_with(mark) == [], "the cancelled shard's pytest is still running"
    assert "App aborted" in result.output
    kept = cases(junit)  # the finished shard's tests are in the report, all of them passed
    passed = [k for k, v in kept.items() if v == "passed"]
    assert 0 < len(passed) < 9, result.output
    # ... and the test the other shard was running, as an error saying why it did not finish
    # (the tests it had yet to start, when the report knows them, are skipped as not run).
    unfinished = [v for k, v in kept.items() if v != "passed" and k.startswith("tests.")]
    assert unfinished.count("error") == 1 and set(unfinished) <= {"error", "skipped"}, kept
    assert "did not finish: the run was cancelled while running" in result.output


def test_cancel_while_the_app_starts_stops_it_before_any_test(
    mock: ModalMock, tmp_path: Path
) -> None:
    folder = project(tmp_path, "slow_project")
    before = mock.state()
    sent: dict[str, float] = {}

    def cancel_at_once(at: float, line: str, process: subprocess.Popen[bytes]) -> None:
        if line.startswith("== Modal: image and app") and not sent:
            sent["SIGINT"] = at
            process.send_signal(signal.SIGINT)

    result = run_cli(
        ["run", "--backend", "modal", "--junit-xml", str(tmp_path / "early.xml"),
         "--comment", "off", "--env", "SLEEP_SECONDS=60"],
        env=clean_environ(**mock.env()),
        cwd=folder,
        timeout=60,
        on_line=cancel_at_once,
    )  # fmt: skip
    record = since(before, mock.state())

    assert sent, result.output
    assert result.returncode == 3, result.output
    assert "GPU tests: CANCELLED" in result.output
    assert result.seconds - sent["SIGINT"] < 7
    # The signal races the (fast, emulated) app start: either no container started, or the one
    # that did was killed. None is left running.
    started = {c["call"] for c in record.calls if c.get("started")}
    killed = {c["call"] for c in record.calls if "killed" in c}
    assert started <= killed, record.calls
    assert ("cancelled before the tests started" in result.output) == (not started)


def test_cancel_while_connecting_to_modal_ends_the_run_at_once(tmp_path: Path) -> None:
    """A server that accepts the connection and never answers: Modal's client would wait and
    retry for a minute. SIGINT once it has connected ends the run as cancelled."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    connected = threading.Event()

    def accept() -> None:
        with contextlib.suppress(OSError):
            held = [server.accept()[0]]  # held open, never answered
            connected.set()
            while True:
                held.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    sent: dict[str, float] = {}

    def cancel_once_connected(process: subprocess.Popen[bytes], started: float) -> None:
        if connected.wait(60):
            sent["SIGINT"] = time.monotonic() - started
            process.send_signal(signal.SIGINT)

    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    env = {"MODAL_SERVER_URL": url, "MODAL_TOKEN_ID": "ak-x", "MODAL_TOKEN_SECRET": "as-x"}
    try:
        result = run_cli(
            ["run", "--backend", "modal", "--junit-xml", str(tmp_path / "x.xml"),
             "--comment", "off"],
            env=clean_environ(**env),
            cwd=project(tmp_path, "pyproject_project"),
            timeout=60,
            on_start=cancel_once_connected,
        )  # fmt: skip
    finally:
        server.close()

    assert sent, result.output
    assert result.returncode == 3, result.output
    assert "GPU tests: CANCELLED" in result.output
    assert result.seconds - sent["SIGINT"] < 7, result.output


def test_credentials_modal_refuses_are_a_configuration_error(
    mock: ModalMock, tmp_path: Path
) -> None:
    env = {**mock.env(), "MODAL_TOKEN_SECRET": "as-not-the-right-one"}
    result = run_cli(
        ["run", "--backend", "modal", "--junit-xml", str(tmp_path / "x.xml"), "--comment", "off"],
        env=clean_environ(**env),
        cwd=project(tmp_path, "pyproject_project"),
    )
    assert result.returncode == 2, result.output
    assert "Modal refused the credentials: AuthError" in result.output
    assert "as-not-the-right-one" not in result.output


def test_a_local_modal_login_is_used_as_modal_itself_would(mock: ModalMock, tmp_path: Path) -> None:
    """`modal token new` on a developer's machine leaves the token in a profile of the Modal
    configuration file, not in the environment. Here the server's address too, so the run only
    reaches the server if Modal's client reads the same profile: MODAL_PROFILE chooses it, and
    the default profile holds a token the server refuses."""
    url, token_id, secret = (mock.credentials[k] for k in ("url", "token_id", "token_secret"))
    path = tmp_path / "modal.toml"
    path.write_text(
        f'[default]\ntoken_id = "ak-refused"\ntoken_secret = "as-refused"\nserver_url = "{url}"\n'
        f'[mock]\ntoken_id = "{token_id}"\ntoken_secret = "{secret}"\nserver_url = "{url}"\n'
    )
    folder = project(tmp_path, "pyproject_project")
    args = ["run", "--backend", "modal", "--junit-xml", str(tmp_path / "x.xml"), "--comment", "off"]

    chosen = run_cli(args, env=clean_environ(MODAL_CONFIG_PATH=str(path), MODAL_PROFILE="mock"),
                     cwd=folder)  # fmt: skip
    assert chosen.returncode == 0, chosen.output
    assert secret not in chosen.output
    # Two profiles, none active and no MODAL_PROFILE: Modal refuses to connect; so does this,
    # before connecting.
    neither = run_cli(args, env=clean_environ(MODAL_CONFIG_PATH=str(path)), cwd=folder)
    assert neither.returncode == 2, neither.output
    assert "no Modal profile is active" in neither.output


def test_missing_credentials_fail_in_a_second_with_the_fix(tmp_path: Path) -> None:
    folder = project(tmp_path, "pyproject_project")
    started = time.monotonic()
    completed = subprocess.run(
        ["uv", "run", "--project", str(Path(__file__).resolve().parents[1]), "--frozen",
         "--quiet", "python", "-m", "modal_gpu_action", "run", "--backend", "modal",
         "--comment", "off"],
        cwd=folder,
        env=clean_environ(MODAL_CONFIG_PATH=str(tmp_path / "no-modal.toml")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started

    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert "MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are empty" in completed.stderr
    assert "no-modal.toml (MODAL_CONFIG_PATH) does not exist" in completed.stderr
    assert "forks" in completed.stderr and "repository secrets" in completed.stderr
    assert elapsed < 3  # uv's start included; the check itself is in test_modal_image.py


# --- what finished is kept, however the run ends ---------------------------------------------------

EXPECTED = {"passes": "passed", "fails": "failure", "skipped": "skipped"}


def finished_and_unfinished(junit: Path) -> tuple[dict[str, str], dict[str, str]]:
    """partial_project's tests: those that finished (outcome as their name says, checked) and
    those that did not (errors), each with its message. The tests that never started (skipped
    as `not run`, when the report knows them) and the action's own entries are left out."""
    finished, unfinished = {}, {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        if not (case.get("classname") or "").startswith("tests."):
            continue
        name, kinds = case.get("name") or "", [c.tag for c in case]
        error = next((c for c in case if c.tag == "error"), None)
        if error is not None and "did not finish" in (error.get("message") or ""):
            unfinished[name] = error.get("message") or ""
            continue
        if any((c.get("message") or "").startswith("not run: ") for c in case):
            continue
        outcome = next((k for k in kinds if k in ("failure", "error", "skipped")), "passed")
        assert outcome == EXPECTED[name.rsplit("_", 1)[-1]], (name, outcome)
        finished[name] = outcome
    return finished, unfinished


def slowest_rows(summary: str) -> dict[str, str]:
    """The summary's "Slowest tests" table: test name (its last part) -> result."""
    section = summary.split("### Slowest tests", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and "test_" in cells[0]:
            rows[re.split(r"::|\.", re.sub(r"[`\\]", "", cells[0]))[-1]] = cells[1]
    return rows


def test_sigint_keeps_every_test_that_finished_in_each_shard(
    built: ModalMock, tmp_path: Path
) -> None:
    """The acceptance test of a cancelled run: two shards, each has run two tests and is in the
    third when GitHub's SIGINT comes. The summary lists the four tests that finished with their
    outcomes, the two that were running say they did not finish, the conclusion is cancelled,
    both containers were killed, and no pytest is left."""
    folder = project(tmp_path, "partial_project")
    before = built.state()
    mark = f"partial-{uuid.uuid4().hex}"
    waiting: set[str] = set()
    sent: dict[str, float] = {}

    def cancel_once_both_wait(at: float, line: str, process: subprocess.Popen[bytes]) -> None:
        if "partial-project: 2 tests finished" in line:
            waiting.add(line.split("]", 1)[0])
        if len(waiting) == 2 and not sent:
            sent["SIGINT"] = at
            process.send_signal(signal.SIGINT)

    summary, junit = tmp_path / "summary.md", tmp_path / "cancelled.xml"
    result = run_cli(
        ["run", "--backend", "modal", "--junit-xml", str(junit), "--comment", "off",
         "--summary-file", str(summary), "--shards", "2",
         "--env", f"FINISH_FIRST=2\nWAIT_SECONDS=60\nMARK={mark}"],
        env=clean_environ(**built.env()),
        cwd=folder,
        timeout=90,
        on_line=cancel_once_both_wait,
    )  # fmt: skip
    record = since(before, built.state())

    assert sent, result.output
    assert result.returncode == 3, result.output
    assert result.seconds - sent["SIGINT"] < 7, result.output  # before GitHub's SIGTERM
    finished, unfinished = finished_and_unfinished(junit)
    assert len(finished) == 4 and len(unfinished) == 2, result.output
    assert all("the run was cancelled while running tests/" in m for m in unfinished.values())
    named = [c for c in ET.parse(junit).getroot().iter("testcase") if c.get("nodeid")]
    assert len(named) == 12  # the six tests that never started are there too, as not run
    text = summary.read_text()
    assert text.startswith("## ") and ": cancelled" in text.splitlines()[0]
    outcome_words = {"passed": "passed", "failure": "failed", "skipped": "skipped"}
    assert slowest_rows(text) == {n: outcome_words[o] for n, o in finished.items()}
    for name in unfinished:
        assert name in text.replace("\\", "")  # among the errors
    # Both containers were killed by the cancel, and nothing of the tests is left running.
    killed = [c for c in record.calls if c.get("killed") == "FunctionCallCancel"]
    assert len(killed) == 2 and len(record.cancelled) == 2, record.calls
    assert processes_with(mark) == [], "a cancelled shard's pytest is still running"
    # The relayed records never reach the log people read.
    assert "modal-gpu-action-records" not in result.output


def test_a_container_stopped_at_modals_time_limit_keeps_what_finished(
    built: ModalMock, tmp_path: Path
) -> None:
    """Modal's own limit (timeout-minutes plus the container's grace) is only a backstop: here it
    is made to come first (8 s), as it does when the install or a kill outlasts the grace."""
    folder = project(tmp_path, "partial_project")
    driver = tmp_path / "short_modal_limit.py"
    driver.write_text(
        "import sys\n"
        "from modal_gpu_action.backends import modal, modal_app\n"
        "modal.container_timeout = modal_app.container_timeout = lambda settings: 8\n"
        "from modal_gpu_action.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    before = built.state()
    junit = tmp_path / "timed-out.xml"
    completed = subprocess.run(
        client_command(str(driver), "run", "--backend", "modal", "--junit-xml", str(junit),
                       "--comment", "off", "--env", "FINISH_FIRST=3\nWAIT_SECONDS=60"),
        cwd=folder, env=clean_environ(**built.env()), capture_output=True, text=True,
        timeout=90, check=False,
    )  # fmt: skip
    output = completed.stdout + completed.stderr
    record = since(before, built.state())

    assert [c for c in record.calls if c.get("timeout")], record.calls
    assert completed.returncode == 1, output
    assert "GPU tests: TIMED OUT" in output
    finished, unfinished = finished_and_unfinished(junit)
    assert sorted(finished) == ["test_01_passes", "test_02_fails", "test_03_skipped"], output
    assert list(unfinished) == ["test_04_passes"], output
    assert (
        "Modal stopped the container at its time limit (8 s) while running"
        in (unfinished["test_04_passes"])
    )


def test_a_crashed_container_keeps_what_finished(built: ModalMock, tmp_path: Path) -> None:
    folder = project(tmp_path, "partial_project")
    mark = f"crash-{uuid.uuid4().hex}"
    result, junit = run(built, folder, "--env", f"FINISH_FIRST=2\nTHEN=crash\nMARK={mark}")

    assert result.returncode == 3, result.output
    assert "GPU tests: INFRASTRUCTURE ERROR" in result.output
    assert "exited with -9" in result.output
    finished, unfinished = finished_and_unfinished(junit)
    assert sorted(finished) == ["test_01_passes", "test_02_fails"], result.output
    assert list(unfinished) == ["test_03_skipped"], result.output
    assert "its container ended before it answered" in unfinished["test_03_skipped"]
    assert cases(junit)["modal-gpu-action.infrastructure"] == "error"
    assert processes_with(mark) == [], "pytest outlived its container"
