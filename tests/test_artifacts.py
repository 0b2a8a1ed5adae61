"""`artifacts`: the files the tests write (coverage.xml, reports/) come back from every shard into
`artifacts-path`, however pytest ended, within the size cap; links, odd names and globs that
leave the project are refused, and what was left out is said.

Through the real command: the local backend (a crash, a segfault, a timeout, two shards, GitHub
mode's outputs), the Modal backend through ../shared/modal-mock (a crash, a timeout, two
shards, and one run on a built image), bad inputs (exit 2 before anything runs). Then each side
alone: collecting in the project (container/artifacts.py) and writing on the host from an
answer that hostile tests may have forged (backends/artifacts.py).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modal_mock_server import (
    ModalMock,
    Run,
    clean_environ,
    run_cli,
    serving,
    serving_built_images,
    why_unavailable,
)

from modal_gpu_action.backends.artifacts import save
from modal_gpu_action.container import artifacts
from modal_gpu_action.container.artifacts import collect, glob_problem
from modal_gpu_action.container.protocol import Ending, GpuFacts, RunResult
from modal_gpu_action.settings import load_settings

PROJECT = Path(__file__).parent / "fixtures" / "modal_projects" / "artifacts_project"
GLOBS = "coverage.xml\nreports, big.bin"
# What the fixture's tests leave, besides big.bin (sized by BIG_BYTES)
KEPT = {"coverage.xml", "reports/junit-extra.xml", "reports/sub/data.bin"}
ALL_CASES = {f"<case n='{n}'/>" for n in range(6)}


def project(tmp_path: Path) -> Path:
    target = tmp_path / "project"
    shutil.copytree(PROJECT, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def files_in(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}


def local(
    folder: Path, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    environ.pop("CUDA_VISIBLE_DEVICES", None)
    environ["MODAL_GPU_ACTION_PYTHON"] = sys.executable
    command = [sys.executable, "-m", "modal_gpu_action", "run", "--backend", "local"]
    command += ["--working-directory", str(folder), "--junit-xml", str(folder.parent / "j.xml")]
    return subprocess.run(
        [*command, *args],
        cwd=folder,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fact(output: str, label: str) -> str:
    """A fact's value from the one-screen result at the end of the log."""
    return next(
        line.split(": ", 1)[1] for line in output.splitlines() if line.startswith(f"  {label}: ")
    )


# -- the local backend, through the real command ---------------------------------------------


@pytest.mark.parametrize(
    ("then", "ending"),
    [("os-exit-7", "pytest exited with code 7"), ("segv-now", "killed by signal 11 (SIGSEGV)")],
)
def test_a_crash_still_brings_back_the_files_written_before_it(
    tmp_path: Path, then: str, ending: str
) -> None:
    folder = project(tmp_path)
    arts = tmp_path / "arts"
    result = local(folder, "--artifacts", GLOBS, "--artifacts-path", str(arts), THEN=then)

    assert result.returncode == 1, result.stdout + result.stderr
    assert ending in result.stdout
    assert files_in(arts) == KEPT | {"big.bin"}
    # Copied, not moved: the project keeps its own (the local backend runs in it).
    assert (arts / "coverage.xml").read_text() == (folder / "coverage.xml").read_text()
    assert set((arts / "coverage.xml").read_text().splitlines()) >= ALL_CASES
    assert (arts / "reports" / "sub" / "data.bin").read_bytes() == bytes(range(256)) * 4
    assert fact(result.stdout, "Artifacts") == f"4 files (1.2 kB) in {arts}/"
    left_out = fact(result.stdout, "Artifacts left out")
    assert "reports/link.xml: a symbolic link, not followed" in left_out
    assert "reports/linkdir: a symbolic link, not followed" in left_out
    assert "'reports/odd\\nname.xml': an odd or long name" in left_out
    assert not (arts / "reports" / "linkdir").exists()


def test_a_timeout_brings_back_the_files_once_pytest_is_stopped(tmp_path: Path) -> None:
    folder = project(tmp_path)
    arts = tmp_path / "arts"
    result = local(
        folder, "--artifacts", GLOBS, "--artifacts-path", str(arts), "--timeout-minutes", "0.05",
        THEN="hang-60s",
    )  # fmt: skip

    assert result.returncode == 1, result.stdout + result.stderr
    assert "GPU tests: TIMED OUT" in result.stdout
    assert files_in(arts) == KEPT | {"big.bin"}


def test_files_over_the_size_cap_are_left_out_and_listed(tmp_path: Path) -> None:
    folder = project(tmp_path)
    arts = tmp_path / "arts"
    result = local(
        folder, "--artifacts", GLOBS, "--artifacts-path", str(arts), "--artifacts-max-mb", "1",
        BIG_BYTES="1500000",
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert files_in(arts) == KEPT
    assert "big.bin: over the size cap (1.5 MB, " in fact(result.stdout, "Artifacts left out")


def test_two_shards_each_bring_back_their_own_files_into_their_own_folder(tmp_path: Path) -> None:
    folder = project(tmp_path)
    arts = tmp_path / "arts"
    result = local(
        folder, "--artifacts", "coverage.xml", "--artifacts-path", str(arts), "--shards", "2"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert files_in(arts) == {"shard-1/coverage.xml", "shard-2/coverage.xml"}
    # Here both shards ran in the one project folder, so their coverage.xml was one file: each
    # shard's copy is what it held when that shard's pytest ended (on Modal each has its own).
    for shard in ("shard-1", "shard-2"):
        assert (arts / shard / "coverage.xml").read_text().startswith("<coverage shard=")


def test_github_mode_writes_the_artifacts_path_output_and_a_summary_row(
    github_api_server: Any, tmp_path: Path
) -> None:
    workspace = tmp_path / "workspace"
    folder = project(workspace)
    (tmp_path / "event.json").write_text("{}")
    (tmp_path / "summary.md").touch()
    (tmp_path / "output.txt").touch()
    env = {
        "PATH": "/usr/bin:/bin",
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_EVENT_PATH": str(tmp_path / "event.json"),
        "GITHUB_REPOSITORY": github_api_server.full_name,
        "GITHUB_API_URL": github_api_server.api_url,
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
        "MODAL_GPU_ACTION_PYTHON": sys.executable,
        "INPUT_BACKEND": "local",
        "INPUT_COMMENT": "off",
        "INPUT_WORKING_DIRECTORY": "project",
        "INPUT_ARTIFACTS": "coverage.xml\nreports/**/*.xml",
    }
    result = subprocess.run(
        [sys.executable, "-m", "modal_gpu_action"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    arts = workspace / "gpu-test-artifacts"
    assert files_in(arts) == {"coverage.xml", "reports/junit-extra.xml"}
    assert "artifacts-path<<" in (tmp_path / "output.txt").read_text()
    assert str(arts) in (tmp_path / "output.txt").read_text()
    summary = (tmp_path / "summary.md").read_text()
    assert "| Artifacts |" in summary and "2 files" in summary
    # What was left out is named in the summary, escaped.
    assert "reports/link\\.xml:⁠ a symbolic link" in summary
    # The odd name (a newline in it) is escaped onto the one line, in the log as in the summary.
    assert "'reports/odd\\nname.xml': an odd or long name" in result.stdout
    assert "\nname.xml" not in result.stdout


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (["--artifacts", "/etc/passwd"], "input 'artifacts': expected globs inside the project"),
        (["--artifacts", "coverage.xml\n../../x.xml"], "this one climbs out with '..'"),
        (["--artifacts", "reports/../../x"], "this one climbs out with '..'"),
        (["--artifacts", ".git/config"], "this one names .git"),
        (["--artifacts", "a.xml", "--artifacts-max-mb", "0"], "'artifacts-max-mb': expected a"),
        (["--artifacts", "a.xml", "--artifacts-max-mb", "2000"], "from 1 to 1024"),
        (["--artifacts", "a.xml", "--artifacts-path", "."], "'artifacts-path': expected a folder of its own"),
        (["--artifacts", "a.xml", "--artifacts-path", "pytest.ini"], "it is a file, not a folder"),
    ],
)  # fmt: skip
def test_bad_artifact_inputs_exit_2_before_anything_runs(
    tmp_path: Path, inputs: list[str], message: str
) -> None:
    folder = project(tmp_path)
    result = local(folder, *inputs)

    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (folder / "coverage.xml").exists()  # no test ran


def test_an_artifacts_path_that_is_a_link_exits_2(tmp_path: Path) -> None:
    folder = project(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (folder / "arts").symlink_to(tmp_path / "elsewhere")
    result = local(folder, "--artifacts", "coverage.xml", "--artifacts-path", "arts")

    assert result.returncode == 2
    assert "input 'artifacts-path': it is a symbolic link" in result.stderr


# -- the Modal backend, through the real command and ../shared/modal-mock --------------------

_UNAVAILABLE = why_unavailable()
needs_mock = pytest.mark.skipif(
    _UNAVAILABLE is not None, reason=f"MODAL E2E NOT RUN: {_UNAVAILABLE}"
)


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModalMock]:
    with serving(tmp_path_factory.mktemp("modal-mock")) as server:
        yield server


def on_modal(mock: ModalMock, folder: Path, *args: str, timeout: float = 120.0) -> Run:
    return run_cli(
        ["run", "--backend", "modal", "--junit-xml", str(folder.parent / "j.xml"),
         "--comment", "off", "--artifacts-path", str(folder.parent / "arts"), *args],
        env=clean_environ(**mock.env()),
        cwd=folder,
        timeout=timeout,
    )  # fmt: skip


@needs_mock
def test_modal_a_crash_in_the_suite_still_brings_back_the_files(
    mock: ModalMock, tmp_path: Path
) -> None:
    folder = project(tmp_path)
    result = on_modal(
        mock, folder, "--artifacts", GLOBS, "--artifacts-max-mb", "1",
        "--env", "THEN=os-exit-7\nBIG_BYTES=1500000",
    )  # fmt: skip

    assert result.returncode == 1, result.output
    assert "pytest exited with code 7" in result.output
    arts = tmp_path / "arts"
    assert files_in(arts) == KEPT
    # Written in the container, not here: the uploaded project has none of them.
    assert not (folder / "coverage.xml").exists()
    assert set((arts / "coverage.xml").read_text().splitlines()) >= ALL_CASES
    left_out = fact(result.output, "Artifacts left out")
    assert "big.bin: over the size cap (1.5 MB" in left_out
    assert "reports/link.xml: a symbolic link, not followed" in left_out
    assert "'reports/odd\\nname.xml': an odd or long name" in left_out


@needs_mock
def test_modal_a_timeout_still_brings_back_the_files(mock: ModalMock, tmp_path: Path) -> None:
    folder = project(tmp_path)
    result = on_modal(
        mock, folder, "--artifacts", GLOBS, "--timeout-minutes", "0.05", "--env", "THEN=hang-60s"
    )

    assert result.returncode == 1, result.output
    assert "GPU tests: TIMED OUT" in result.output
    assert files_in(tmp_path / "arts") == KEPT | {"big.bin"}


@needs_mock
def test_modal_two_shards_bring_back_their_files_into_shard_folders(
    mock: ModalMock, tmp_path: Path
) -> None:
    folder = project(tmp_path)
    result = on_modal(mock, folder, "--artifacts", "coverage.xml", "--shards", "2")

    assert result.returncode == 0, result.output
    arts = tmp_path / "arts"
    assert files_in(arts) == {"shard-1/coverage.xml", "shard-2/coverage.xml"}
    lines = [(arts / f"shard-{n}" / "coverage.xml").read_text().splitlines() for n in (1, 2)]
    assert [text[0].split("pid")[0] for text in lines] == [
        "<coverage shard='0' ",
        "<coverage shard='1' ",
    ]
    assert set(lines[0][1:]) | set(lines[1][1:]) == ALL_CASES


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModalMock]:
    with serving_built_images(tmp_path_factory.mktemp("modal-mock-built")) as server:
        yield server


@needs_mock
def test_modal_built_image_a_segfault_still_brings_back_the_files(
    built: ModalMock, tmp_path: Path
) -> None:
    """On a built image the container side runs in the image's own Python (3.12 here, stdlib
    only), as on Modal."""
    folder = project(tmp_path)
    result = on_modal(built, folder, "--artifacts", GLOBS, "--env", "THEN=segv-now", timeout=300)

    assert result.returncode == 1, result.output
    assert "killed by signal 11 (SIGSEGV)" in result.output
    assert files_in(tmp_path / "arts") == KEPT | {"big.bin"}


# -- collecting in the project (container/artifacts.py) -------------------------------------


def unzip(data: str) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(data)))
    return {name: archive.read(name) for name in archive.namelist()}


def test_globs_match_files_folders_and_any_depth(tmp_path: Path) -> None:
    for name in ("coverage.xml", "htmlcov/index.html", "htmlcov/d/x.js", "a/b/junit-1.xml",
                 "junit-2.xml", "other.txt", ".git/junit-3.xml"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    data, left_out = collect(
        str(tmp_path), ["coverage.xml", "htmlcov/", "**/junit-*.xml", "none/*.xml"], 10**6
    )

    assert set(unzip(data)) == {
        "coverage.xml", "htmlcov/index.html", "htmlcov/d/x.js", "a/b/junit-1.xml", "junit-2.xml",
    }  # fmt: skip
    assert unzip(data)["htmlcov/d/x.js"] == b"htmlcov/d/x.js"
    assert left_out == ["'none/*.xml': no file matched"]


def test_links_and_special_files_are_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.xml").write_text("secret")
    project_dir = tmp_path / "p"
    (project_dir / "reports").mkdir(parents=True)
    (project_dir / "reports" / "ok.xml").write_text("ok")
    (project_dir / "reports" / "secret.xml").symlink_to(outside / "secret.xml")
    (project_dir / "reports" / "dir").symlink_to(outside)
    (project_dir / "linked").symlink_to(outside)
    os.mkfifo(project_dir / "reports" / "pipe.xml")
    data, left_out = collect(str(project_dir), ["reports", "linked/secret.xml", "**/*.xml"], 10**6)

    assert unzip(data) == {"reports/ok.xml": b"ok"}
    assert sorted(left_out) == [
        "linked: a symbolic link, not followed",
        "reports/dir: a symbolic link, not followed",
        "reports/pipe.xml: not a regular file",
        "reports/secret.xml: a symbolic link, not followed",
    ]


def test_a_folder_swapped_for_a_link_after_the_walk_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f.xml").write_text("secret")
    project_dir = tmp_path / "p"
    (project_dir / "d").mkdir(parents=True)
    (project_dir / "d" / "f.xml").write_text("mine")
    found = artifacts._Collected()
    shutil.rmtree(project_dir / "d")
    (project_dir / "d").symlink_to(tmp_path / "outside")

    why = artifacts._read(str(project_dir), "d/f.xml", 10**6, found)
    assert why == "a symbolic link on its way, not followed"
    assert found.files == 0 and found.packed() == ""


def test_the_caps_on_bytes_and_files_hold_while_collecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(5):
        (tmp_path / f"f{n}.txt").write_bytes(b"x" * 400)
    data, left_out = collect(str(tmp_path), ["*.txt"], 1000)
    assert set(unzip(data)) == {"f0.txt", "f1.txt"}
    assert left_out[0] == "f2.txt: over the size cap (400 bytes, 200 bytes left of 1,000 bytes)"

    monkeypatch.setattr(artifacts, "MAX_FILES", 3)
    data, left_out = collect(str(tmp_path), ["*.txt"], 10**6)
    assert set(unzip(data)) == {"f0.txt", "f1.txt", "f2.txt"}
    assert left_out == ["f3.txt: over the cap of 3 files", "f4.txt: over the cap of 3 files"]


def test_a_file_bigger_than_the_cap_is_never_read_into_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "huge.bin").open("wb") as out:
        out.truncate(50 * 10**9)  # sparse: 50 GB that take no disk
    reads: list[int] = []
    real_fdopen = os.fdopen

    def counting_fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        stream = real_fdopen(fd, *args, **kwargs)
        original = stream.read
        stream.read = lambda n=-1: reads.append(n) or original(n)  # type: ignore[method-assign]
        return stream

    monkeypatch.setattr(artifacts.os, "fdopen", counting_fdopen)
    data, left_out = collect(str(tmp_path), ["huge.bin"], 10**6)
    assert data == "" and reads == []
    assert left_out == ["huge.bin: over the size cap (50000.0 MB, 1.0 MB left of 1.0 MB)"]


@pytest.mark.parametrize(
    "pattern", ["/etc/passwd", "../x", "a/../../b", "~/x", "C:/x", "a\\b", ".git", "x/.git/c", ""]
)
def test_globs_that_could_leave_the_project_are_refused(pattern: str) -> None:
    assert glob_problem(pattern)
    data, left_out = collect("/", [pattern], 10**6)
    assert data == "" and "glob refused" in left_out[0]


def test_a_run_that_asked_for_no_artifacts_carries_none(tmp_path: Path) -> None:
    result = result_with("", [])
    assert save([result], settings_for(tmp_path, artifacts="")) is None


# -- writing on the host (backends/artifacts.py), from answers hostile tests may forge --------


def settings_for(workspace: Path, **inputs: str) -> Any:
    inputs.setdefault("artifacts", "*")
    inputs.setdefault("test-path", ".")
    return load_settings({"backend": "local", **inputs}, {}, workspace=workspace)


def result_with(data: str, left_out: list[str], index: int = 0, count: int = 1) -> RunResult:
    return RunResult(
        junit_xml=b"", exit_code=0, duration_seconds=1.0, gpu=GpuFacts(False, [], None, "none"),
        ending=Ending.FINISHED, output_tail="", shard_index=index, shard_count=count,
        artifacts=data, artifacts_left_out=left_out,
    )  # fmt: skip


def forged(entries: list[tuple[str, bytes, int]]) -> str:
    """A zip as a hostile container could answer: any name, any mode."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            archive.writestr(info, data)
    return base64.b64encode(buffer.getvalue()).decode()


def test_forged_names_links_and_modes_are_refused_on_the_host(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    data = forged([
        ("ok/coverage.xml", b"<coverage/>", 0o100644),
        ("../escaped.txt", b"x", 0o100644),
        ("/tmp/absolute.txt", b"x", 0o100644),
        ("a/../../b.txt", b"x", 0o100644),
        ("odd\n::error::x.txt", b"x", 0o100644),
        ("link.xml", b"/etc/passwd", 0o120777),
        ("folder/", b"", 0o040755),
    ])  # fmt: skip
    saved = save([result_with(data, ["from the container: left out"])], settings_for(workspace))

    arts = workspace / "gpu-test-artifacts"
    assert saved is not None and saved.files == 1
    assert files_in(arts) == {"ok/coverage.xml"}
    assert files_in(tmp_path) == {"ws/gpu-test-artifacts/ok/coverage.xml"}
    assert saved.left_out[0] == "from the container: left out"
    assert len(saved.left_out) == 7
    assert "'odd\\n::error::x.txt': refused" in saved.left_out[4]
    assert saved.left_out[5] == "link.xml: refused: not a regular file"


def test_a_link_put_in_the_artifacts_folder_is_never_written_through(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / "gpu-test-artifacts").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    settings = settings_for(workspace)
    # A test (the local backend runs them here) puts a link where a folder will be written.
    (workspace / "gpu-test-artifacts" / "reports").symlink_to(tmp_path / "elsewhere")
    data = forged([("reports/a.xml", b"a", 0o100644), ("b.xml", b"b", 0o100644)])
    saved = save([result_with(data, [])], settings)

    assert saved is not None and saved.files == 1
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert "reports/a.xml: not written:" in saved.left_out[0]
    assert "is a symbolic link" in saved.left_out[0]


def test_a_forged_flood_of_left_out_lines_is_cut_on_the_host(tmp_path: Path) -> None:
    flood = [f"line {n}\n::error::x" for n in range(100_000)]
    saved = save([result_with("", flood)], settings_for(tmp_path))

    assert saved is not None and len(saved.left_out) == artifacts.LEFT_OUT_LINES
    assert saved.left_out[0] == "line 0 ::error::x"  # one line each


def test_an_answer_over_the_cap_or_damaged_writes_nothing(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, **{"artifacts-max-mb": "1"})
    big = forged([("a.bin", os.urandom(8 * 10**6), 0o100644)])
    saved = save([result_with(big, [], 0, 2), result_with("not base64!", [], 1, 2)], settings)

    assert saved is not None and saved.files == 0
    assert not (tmp_path / "gpu-test-artifacts").exists()
    assert saved.describe(tmp_path) == "no file came back (nothing written to gpu-test-artifacts/)"
    assert saved.left_out[0].startswith("shard 1/2: every file: the answer (")
    assert saved.left_out[1].startswith("shard 2/2: every file: the answer's archive is damaged")


def test_the_host_holds_each_shard_to_its_share_of_the_cap(tmp_path: Path) -> None:
    """The container may lie about sizes; the host checks what it reads (a 0.6 MB file is over
    each of two shards' 0.5 MB share of 1 MB)."""
    settings = settings_for(tmp_path, **{"artifacts-max-mb": "1"})
    data = forged([("a.bin", b"a" * 600_000, 0o100644), ("b.bin", b"b", 0o100644)])
    saved = save([result_with(data, [], 0, 2)], settings)

    assert saved is not None
    assert files_in(tmp_path / "gpu-test-artifacts") == {"shard-1/b.bin"}
    assert saved.left_out == ("shard 1/2: a.bin: over the size cap",)


def test_a_shard_whose_container_never_answered_says_none_came_back() -> None:
    from modal_gpu_action.backends.modal_answers import Shard, partial_result, stop
    from modal_gpu_action.container.protocol import RunRequest

    shard = Shard(RunRequest("/p", "", [], None, {}, artifacts=["coverage.xml"]))
    stop(shard, Ending.CANCELLED, "the run was cancelled")
    result = partial_result(shard)
    assert result is not None
    assert result.artifacts == ""
    assert result.artifacts_left_out == [
        "every file: its container did not answer, so none came back"
    ]


def test_the_request_carries_the_globs_and_each_shard_its_share(tmp_path: Path) -> None:
    from modal_gpu_action.backends.local import LocalBackend

    settings = settings_for(
        tmp_path, artifacts="coverage.xml, htmlcov", shards="4",
        **{"artifacts-max-mb": "10", "artifacts-path": "out/arts"},
    )  # fmt: skip
    requests = LocalBackend(settings, environ={}).requests()
    assert [r.artifacts for r in requests] == [["coverage.xml", "htmlcov"]] * 4
    assert {r.artifacts_max_bytes for r in requests} == {2_500_000}
    assert requests[0].artifacts_skip == ["out/arts"]  # never collected again
    assert json.loads(json.dumps(requests[0].to_dict()))["artifacts"] == ["coverage.xml", "htmlcov"]


def test_on_github_the_artifacts_folder_must_be_in_the_workspace_or_runner_temp(
    tmp_path: Path,
) -> None:
    from modal_gpu_action.settings import SettingsError

    workspace, temp = tmp_path / "ws", tmp_path / "runner-temp"
    workspace.mkdir()
    temp.mkdir()
    (tmp_path / "event.json").write_text("{}")
    environ = {
        "GITHUB_ACTIONS": "true",
        "RUNNER_TEMP": str(temp),
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_EVENT_PATH": str(tmp_path / "event.json"),
    }
    flags = {"backend": "local", "test-path": ".", "artifacts": "coverage.xml", "comment": "off"}
    with pytest.raises(SettingsError, match="'artifacts-path': expected a path inside"):
        load_settings(
            {**flags, "artifacts-path": str(tmp_path / "x")}, environ, workspace=workspace
        )
    inside = load_settings(
        {**flags, "artifacts-path": str(temp / "a")}, environ, workspace=workspace
    )
    assert inside.artifacts_path == temp / "a"
