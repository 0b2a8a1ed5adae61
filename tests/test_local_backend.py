"""backends/local.py: devices, shard plans, and real parallel runs on this machine."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from processes import processes_with, wait_for_file

from modal_gpu_action.backends.base import BackendResult, InfrastructureError, shard_requests
from modal_gpu_action.backends.local import (
    LocalBackend,
    default_python,
    plan,
    plan_requests,
    resolve_devices,
)
from modal_gpu_action.container.protocol import RunRequest, RunResult
from modal_gpu_action.outcome import outcome_from
from modal_gpu_action.report.junit_reader import parse_junit
from modal_gpu_action.settings import Settings, load_settings

PROJECTS = Path(__file__).parent / "fixtures" / "projects"
BASE = RunRequest(".", "tests", [], 60.0, {})


FAKE_NVIDIA_SMI = """#!/bin/sh
case "$1" in
  --query-gpu=index) printf '0\\n1\\n' ;;
  --query-gpu=index,uuid*)
    echo "0, GPU-aaaa, NVIDIA H100 80GB HBM3, 81559, 580.159.04"
    echo "1, GPU-bbbb, NVIDIA H100 80GB HBM3, 81559, 580.159.04" ;;
  "") echo "| NVIDIA-SMI 580.159.04   Driver Version: 580.159.04   CUDA Version: 13.0 |" ;;
esac
"""


def fake_nvidia_smi(folder: Path) -> str:
    """A two-H100 nvidia-smi, as a folder to put first on PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(FAKE_NVIDIA_SMI)
    script.chmod(0o755)
    return str(folder)


def settings_for(tmp_path: Path, name: str, **inputs: str) -> Settings:
    path = shutil.copytree(PROJECTS / name, tmp_path / name)
    flags = {
        "backend": "local",
        "working-directory": str(path),
        "test-path": "tests",
        "pytest-args": "-p no:cacheprovider",
        "timeout-minutes": "1",
        **inputs,
    }
    return load_settings(flags, {}, workspace=tmp_path)


def environ(**changes: str) -> dict[str, str]:
    """This environment, running pytest with this interpreter whatever PATH holds."""
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    return {**env, "MODAL_GPU_ACTION_PYTHON": sys.executable, **changes}


# --- devices and plans --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "devices"),
    [("0,1", ["0", "1"]), (" 2 , 3 ", ["2", "3"]), ("", []), ("-1", []), ("0,-1,1", ["0"])],
)
def test_devices_come_from_cuda_visible_devices_when_set(value: str, devices: list[str]) -> None:
    assert resolve_devices({"CUDA_VISIBLE_DEVICES": value, "PATH": ""}) == devices


def test_devices_come_from_nvidia_smi_otherwise(tmp_path: Path) -> None:
    assert resolve_devices({"PATH": fake_nvidia_smi(tmp_path)}) == ["0", "1"]


def test_no_nvidia_smi_means_no_devices(tmp_path: Path) -> None:
    assert resolve_devices({"PATH": str(tmp_path)}) == []


def test_auto_is_one_shard_per_device_each_with_its_own() -> None:
    requests = plan_requests(BASE, None, ["0", "1"])
    assert [(r.shard_index, r.shard_count, r.visible_devices) for r in requests] == [
        (0, 2, "0"),
        (1, 2, "1"),
    ]
    assert [r.label for r in requests] == ["shard 1/2, GPU 0", "shard 2/2, GPU 1"]


def test_more_shards_than_devices_share_them_round_robin() -> None:
    requests = plan_requests(BASE, 3, ["0", "1"])
    assert [r.visible_devices for r in requests] == ["0", "1", "0"]


def test_one_shard_sees_every_gpu_and_no_gpu_means_one_cpu_shard() -> None:
    assert [r.visible_devices for r in plan_requests(BASE, 1, ["0", "1"])] == [None]
    assert [(r.shard_count, r.visible_devices) for r in plan_requests(BASE, None, [])] == [
        (1, None)
    ]
    assert [r.visible_devices for r in plan_requests(BASE, 2, [])] == [None, None]


def test_shard_requests_number_and_label_the_shards() -> None:
    assert shard_requests(BASE, 1) == [BASE]
    assert [(r.shard_index, r.label) for r in shard_requests(BASE, 2)] == [
        (0, "shard 1/2"),
        (1, "shard 2/2"),
    ]
    with pytest.raises(ValueError, match="at least 1"):
        shard_requests(BASE, 0)


def test_pytest_runs_with_the_python_on_path_unless_told(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    assert default_python({"PATH": str(bin_dir)}) == str(bin_dir / "python3")
    assert default_python({"PATH": str(bin_dir), "MODAL_GPU_ACTION_PYTHON": "/x/py"}) == "/x/py"
    assert default_python({"PATH": str(tmp_path / "empty")}) == sys.executable


def test_plan_is_json_and_keeps_env_values_out(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "passing", shards="auto", env="TOKEN=s3cret")
    planned = plan(settings, environ(CUDA_VISIBLE_DEVICES="0,1"))
    text = json.dumps(planned)
    assert "s3cret" not in text
    assert planned["devices"] == ["0", "1"]
    assert [s["visible_devices"] for s in planned["shards"]] == ["0", "1"]
    assert planned["shards"][0]["env_keys"] == ["TOKEN"]


# --- real runs ----------------------------------------------------------------------------------


def closed(result: BackendResult) -> BackendResult:
    """`result` with pytest's files (handed over open) closed: what the host does once it has
    parsed them (outcome.py), for tests that only look at the shards."""
    for shard in result.shards:
        if shard.junit_file is not None:
            shard.junit_file.close()
    return result


def properties(junit_xml: bytes) -> list[str]:
    root = ET.fromstring(junit_xml)
    return [p.get("value") or "" for p in root.iter("property")]


@pytest.mark.parametrize("source", ["CUDA_VISIBLE_DEVICES", "nvidia-smi"])
def test_auto_runs_one_shard_per_gpu_at_the_same_time_each_seeing_only_its_own(
    tmp_path: Path, source: str
) -> None:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    settings = settings_for(
        tmp_path, "devices", shards="auto", env=f"BARRIER_DIR={barrier}\nBARRIER_COUNT=2"
    )
    if source == "CUDA_VISIBLE_DEVICES":  # no nvidia-smi on PATH: the variable alone names them
        env = environ(CUDA_VISIBLE_DEVICES="0,1", PATH=str(tmp_path / "no-bin"))
    else:
        env = environ(PATH=fake_nvidia_smi(tmp_path / "bin") + os.pathsep + os.environ["PATH"])
    backend = LocalBackend(settings, environ=env, stream=None)

    result = backend.run(backend.requests())

    assert result.backend == "local" and len(result.shards) == 2
    for shard, device in zip(result.shards, ["0", "1"], strict=True):
        # the conftest's barrier passed: both pytest processes were up at the same time
        assert shard.exit_code == 0, shard.output_tail
        seen = properties(shard.junit_bytes())
        assert seen and set(seen) == {device}
    assert sum(len(properties(s.junit_bytes())) for s in result.shards) == 8
    assert sorted(p.read_text() for p in barrier.iterdir()) == ["0", "1"]
    assert not closed(result).cancelled and result.infrastructure_error is None
    if source == "nvidia-smi":
        assert [[g.index for g in s.gpu.gpus] for s in result.shards] == [[0], [1]]
        assert {s.gpu.describe() for s in result.shards} == {
            "NVIDIA H100 80GB HBM3 (driver 580.159.04, CUDA 13.0)"
        }
        assert result.gpu_seconds == pytest.approx(sum(s.duration_seconds for s in result.shards))
    else:
        assert result.gpu_seconds == 0
        assert {s.gpu.note for s in result.shards} == {"no GPU visible: nvidia-smi not found"}


def hanging(tmp_path: Path) -> tuple[LocalBackend, Path, threading.Event]:
    """A backend running the `hang` project, the file its test writes once it hangs, and the
    event that cancels it."""
    pid_file = tmp_path / "child.pid"
    settings = settings_for(tmp_path, "hang", env=f"HANG_PID_FILE={pid_file}")
    cancel = threading.Event()
    backend = LocalBackend(
        settings, cancel_event=cancel, environ=environ(), stream=None, kill_grace_seconds=1.0
    )
    return backend, pid_file, cancel


def test_cancel_stops_every_shard_and_says_so(tmp_path: Path) -> None:
    backend, pid_file, cancel = hanging(tmp_path)

    def cancel_once_hanging() -> None:
        wait_for_file(pid_file)
        cancel.set()

    threading.Thread(target=cancel_once_hanging, daemon=True).start()
    result = closed(backend.run(backend.requests()))

    assert result.cancelled and not any(s.timed_out for s in result.shards)
    assert [s.cancelled for s in result.shards] == [True]


def test_an_interpreter_that_cannot_start_is_an_infrastructure_error(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "passing", shards="2")
    env = environ(MODAL_GPU_ACTION_PYTHON=str(tmp_path / "missing-python"))
    backend = LocalBackend(settings, environ=env, stream=None)
    # ", GPU 0" in the label where an nvidia-smi lists GPUs
    with pytest.raises(InfrastructureError, match=r"^shard 1/2(, GPU \d)?: could not start pytest"):
        backend.run(backend.requests())


# --- pytest's JUnit file, handed to the host open ------------------------------------------------


def test_pytests_file_reaches_the_host_open_and_its_folder_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The host reads a shard's whole report a chunk at a time from the file pytest wrote, as
    # `report` reads one (never held whole in memory), and the run's folder goes once it is read.
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(runs))
    settings = settings_for(tmp_path, "passing")
    backend = LocalBackend(settings, environ=environ(), stream=None)

    result = backend.run(backend.requests())

    [shard] = result.shards
    assert shard.junit_xml == b"" and shard.junit_file is not None
    data = shard.junit_bytes()
    assert data.startswith(b"<?xml") and b'name="test_adds"' in data
    assert shard.to_dict()["junit_xml"] == data  # what Modal's answer would carry: the bytes
    for thread in threading.enumerate():
        if thread.name == "remove-run":
            thread.join()
    assert list(runs.iterdir()) == []  # pytest's folder is gone; its open file still reads
    assert shard.junit_bytes() == data

    outcome = outcome_from(result, settings, cancelled=False)

    assert shard.junit_file.closed
    assert outcome.report.cases == parse_junit(data, name="run").cases
    assert [c.name for c in outcome.report.cases][:2] == ["test_adds", "test_records_a_property"]


def test_a_run_with_re_runs_keeps_pytests_file_as_bytes(tmp_path: Path) -> None:
    # Re-runs merge the first run's report with theirs (container/reruns.py): bytes, not a file.
    settings = settings_for(tmp_path, "failing", **{"rerun-failures": "1"})
    backend = LocalBackend(settings, environ=environ(), stream=None)

    [shard] = backend.run(backend.requests()).shards

    assert shard.junit_file is None and b"<testcase" in shard.junit_xml


# --- what the engine does while the tests run -----------------------------------------------------


def test_meanwhile_runs_once_in_the_calling_thread_while_the_tests_run(tmp_path: Path) -> None:
    # The engine loads what it needs after the tests (after_tests.py) in this call: the hanging
    # test has started when it runs, and the run only ends because it cancels it.
    backend, pid_file, cancel = hanging(tmp_path)
    calls: list[bool] = []

    def meanwhile() -> None:
        wait_for_file(pid_file)  # written by the test once it hangs
        calls.append(threading.current_thread() is threading.main_thread())
        cancel.set()

    result = closed(backend.run(backend.requests(), meanwhile=meanwhile))

    assert calls == [True]
    assert result.cancelled and [s.cancelled for s in result.shards] == [True]


def test_a_failing_meanwhile_still_waits_for_every_shard(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "passing", shards="2")
    backend = LocalBackend(settings, environ=environ(), stream=None)

    def meanwhile() -> None:
        raise RuntimeError("a bug of ours")

    with pytest.raises(RuntimeError, match="a bug of ours"):
        backend.run(backend.requests(), meanwhile=meanwhile)
    assert not [t for t in threading.enumerate() if t.name.startswith("shard-")]


def test_what_a_run_needs_after_its_tests_is_not_loaded_before_them() -> None:
    # engine.py loads after_tests.py while the tests run (the backend's `meanwhile`); imported
    # before them again, its modules would be back in the time between the last test and the
    # reports (9-13 ms here).
    after = [
        "modal_gpu_action.after_tests",
        "modal_gpu_action.render.markdown",
        "modal_gpu_action.report.junit_writer",
        "modal_gpu_action.report.comparison",
        "modal_gpu_action.console",
    ]
    code = (
        "import sys, modal_gpu_action.cli, modal_gpu_action.engine,"
        " modal_gpu_action.backends.local, modal_gpu_action.outcome\n"
        f"print([m for m in {after!r} if m in sys.modules])\n"
        "import modal_gpu_action.after_tests\n"
        f"print([m for m in {after!r} if m not in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.splitlines() == ["[]", "[]"]


def test_meanwhile_waits_until_pytest_runs(tmp_path: Path) -> None:
    # Called before, it held the GIL while the shard's own start (the plugins' copy, pytest's
    # spawn) waited behind it: what it loads would delay the tests instead of hiding in them.
    mark = f"meanwhile-{uuid.uuid4().hex}"
    settings = settings_for(tmp_path, "passing", env=f"MARK={mark}")
    backend = LocalBackend(settings, environ=environ(), stream=None)
    running: list[bool] = []

    def meanwhile() -> None:
        running.append(bool(processes_with(mark, wait=0)))

    closed(backend.run(backend.requests(), meanwhile=meanwhile))

    assert running == [True]


def test_a_forged_answer_cannot_hand_the_host_a_file(tmp_path: Path) -> None:
    # `junit_file` is this process's own: an answer (Modal's, the container script's) that
    # names one is read as if it did not.
    settings = settings_for(tmp_path, "passing")
    backend = LocalBackend(settings, environ=environ(), stream=None)
    [shard] = backend.run(backend.requests()).shards
    answer = {**shard.to_dict(), "junit_file": "/etc/passwd"}
    assert shard.junit_file is not None
    shard.junit_file.close()

    forged = RunResult.from_dict(answer)

    assert forged.junit_file is None and forged.junit_xml == answer["junit_xml"]
    report = outcome_from(BackendResult("modal", [forged], 0.0), settings, cancelled=False)
    assert {c.name for c in report.report.cases} >= {"test_adds"}


def test_a_file_that_fails_to_read_is_a_problem_of_the_report_not_a_crash(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text("<testsuites><testsuite/></testsuites>")
    with junit.open("rb") as handle:
        os.close(handle.fileno())  # every read and fstat now fails (EBADF)
        report = parse_junit(handle, name="run")
        with contextlib.suppress(OSError):
            handle.close()
    [problem] = report.problems
    assert problem.where == "JUnit report run" and "cannot be read" in problem.message


def test_the_engine_hands_the_backend_its_loading_of_what_follows_the_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modal_gpu_action import engine

    given: list[object] = []
    real_run = LocalBackend.run

    def spy(self: LocalBackend, requests: object, *, meanwhile: object = None) -> object:
        given.append(meanwhile)
        return real_run(self, requests, meanwhile=meanwhile)  # type: ignore[arg-type]

    monkeypatch.setattr(LocalBackend, "run", spy)
    monkeypatch.setenv("MODAL_GPU_ACTION_PYTHON", sys.executable)
    settings = settings_for(tmp_path, "passing")
    code = engine.run(
        settings, engine.Session(threading.Event()), environ=environ(), stream=io.StringIO()
    )

    assert code == 0 and len(given) == 1 and callable(given[0])
