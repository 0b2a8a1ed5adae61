"""The local backend: pytest on this machine (a self-hosted GPU runner, a workstation).

Shards run in parallel, one thread each calling `container.run.run_tests` (one pytest process
each); the engine's cancel event stops them all. `shards: auto` (Settings.shards None) is one
shard per visible GPU, each with its own CUDA_VISIBLE_DEVICES; the GPUs are
CUDA_VISIBLE_DEVICES's entries when it is set, else `nvidia-smi --query-gpu=index`'s, else none:
one shard on the CPU. A number of shards spreads them over the GPUs round-robin (two shards can
share one). One shard sees every GPU (so tests that need several GPUs can use them): no
CUDA_VISIBLE_DEVICES of ours then.

pytest runs with the first `python` (then `python3`) on PATH: on a self-hosted runner that is
the interpreter the workflow prepared (a venv it activated, setup-python's), not the one this tool
is installed in, which has neither pytest nor the project's dependencies.
MODAL_GPU_ACTION_PYTHON overrides it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modal_gpu_action.backends.base import (
    BackendResult,
    InfrastructureError,
    base_request,
    shard_requests,
)
from modal_gpu_action.container.probe import parse_visible_devices
from modal_gpu_action.container.process import DEFAULT_KILL_GRACE_SECONDS, Stream
from modal_gpu_action.container.protocol import RunnerError, RunRequest, RunResult
from modal_gpu_action.container.run import run_tests
from modal_gpu_action.github_actions.workflow import commands_stopped, in_github_actions
from modal_gpu_action.settings import Settings

PYTHON_ENV = "MODAL_GPU_ACTION_PYTHON"

# Never handed to the tests: the action's credentials, and the files through which a step talks
# to the runner (a test that wrote to them could set the step's outputs or the job's env and
# PATH). The `env` input adds to what is left.
WITHHELD_VARIABLES = frozenset(
    {
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "MODAL_TOKEN_ID",
        "MODAL_TOKEN_SECRET",
        "GITHUB_OUTPUT",
        "GITHUB_ENV",
        "GITHUB_PATH",
        "GITHUB_STATE",
        "GITHUB_STEP_SUMMARY",
        "ACTIONS_RUNTIME_TOKEN",
        "ACTIONS_RUNTIME_URL",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "ACTIONS_CACHE_URL",
        "ACTIONS_RESULTS_URL",
    }
)
# The step's inputs (the GitHub token among them) and its saved state.
WITHHELD_PREFIXES = ("INPUT_", "STATE_")


def test_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment pytest starts from: this one without WITHHELD_VARIABLES/_PREFIXES."""
    return {
        key: value
        for key, value in environ.items()
        if key not in WITHHELD_VARIABLES and not key.startswith(WITHHELD_PREFIXES)
    }


def resolve_devices(environ: Mapping[str, str]) -> list[str]:
    """The GPUs shards can be given, as CUDA_VISIBLE_DEVICES entries: that variable's entries
    when it is set (even to nothing), else nvidia-smi's indices, else [] (no GPU: CPU)."""
    if "CUDA_VISIBLE_DEVICES" in environ:
        return parse_visible_devices(environ["CUDA_VISIBLE_DEVICES"])
    exe = shutil.which("nvidia-smi", path=environ.get("PATH", os.defpath))
    if exe is None:
        return []
    try:
        done = subprocess.run(
            [exe, "--query-gpu=index", "--format=csv,noheader"],
            env=dict(environ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        return []
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    return [line.strip() for line in lines if line.strip().isdigit()]


def hide_this_process_from_the_tests() -> None:
    """The tests run as our user, who could read the tokens from /proc/<our pid>/environ (the
    environment we were started with, whatever we remove from it since). A process that is not
    "dumpable" has its /proc files owned by root and cannot be traced by its user's processes.
    Linux only; a user who can become root (sudo) still can: see README.md."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_dumpable = 4
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_dumpable, 0, 0, 0, 0)


def plan_requests(
    base: RunRequest,
    shards: int | None,
    devices: Sequence[str],
    durations: Path | None = None,
) -> list[RunRequest]:
    """One request per shard. `shards` None is auto: one per device (one when there is none).
    With several shards and some devices, shard i gets devices[i % len(devices)]."""
    count = max(1, len(devices)) if shards is None else shards
    requests = shard_requests(base, count, durations)
    if count == 1 or not devices:
        return requests
    return [_with_device(request, devices[i % len(devices)]) for i, request in enumerate(requests)]


def _with_device(request: RunRequest, device: str) -> RunRequest:
    label = f"{request.label}, GPU {device}" if request.label else f"GPU {device}"
    return dataclasses.replace(request, visible_devices=device, label=label)


def default_python(environ: Mapping[str, str]) -> str:
    """MODAL_GPU_ACTION_PYTHON, else `python` or `python3` on PATH, else this interpreter."""
    if environ.get(PYTHON_ENV):
        return environ[PYTHON_ENV]
    path = environ.get("PATH", os.defpath)
    return shutil.which("python", path=path) or shutil.which("python3", path=path) or sys.executable


def plan(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What a local run would do, as JSON-able data; runs nothing but `nvidia-smi` (to count
    the GPUs). Environment values are left out: they may be secret."""
    env = os.environ if environ is None else environ
    devices = resolve_devices(env)
    requests = LocalBackend(settings, environ=env).requests()
    return {
        "backend": "local",
        "python": requests[0].python,
        "devices": devices,
        "cost-cap": settings.cost_cap_plan(len(requests)),
        "shards": [
            {
                "label": r.label,
                "shard_index": r.shard_index,
                "shard_count": r.shard_count,
                "visible_devices": r.visible_devices,
                "working_directory": r.working_directory,
                "test_path": r.test_path,
                "pytest_args": r.pytest_args,
                "timeout_seconds": r.timeout_seconds,
                "env_keys": sorted(r.env),
                "balanced_by_durations": r.shard_plan is not None,
                "artifacts": r.artifacts,
                "artifacts_max_bytes": r.artifacts_max_bytes,
            }
            for r in requests
        ],
    }


class LocalBackend:
    """Runs the shards on this machine. Setting `cancel_event` (the engine does on SIGINT and
    SIGTERM) stops every shard's pytest and its children; `run` then returns what finished."""

    name = "local"

    def __init__(
        self,
        settings: Settings,
        *,
        cancel_event: threading.Event | None = None,
        environ: Mapping[str, str] | None = None,
        stream: Stream = "stdout",
        kill_grace_seconds: float = DEFAULT_KILL_GRACE_SECONDS,
    ) -> None:
        self.settings = settings
        self.cancel_event = cancel_event or threading.Event()
        self.environ = dict(os.environ if environ is None else environ)
        self.stream = stream
        self.kill_grace_seconds = kill_grace_seconds

    def requests(self) -> list[RunRequest]:
        base = base_request(self.settings)
        base = dataclasses.replace(base, python=default_python(self.environ))
        devices = resolve_devices(self.environ)
        requests = plan_requests(base, self.settings.shards, devices, self.settings.shard_durations)
        count = len(requests)  # max-cost-usd may lower the time limit
        timeout = self.settings.test_timeout_seconds(count)
        cause = self.settings.timeout_cause(count)
        return [
            dataclasses.replace(r, timeout_seconds=timeout, timeout_cause=cause) for r in requests
        ]

    def run(
        self, requests: Sequence[RunRequest], *, meanwhile: Callable[[], object] | None = None
    ) -> BackendResult:
        if not requests:
            raise InfrastructureError("nothing to run: no shard requests")
        hide_this_process_from_the_tests()
        out = sys.stdout if self.stream == "stdout" else self.stream
        # One thread a shard (plain threads: concurrent.futures would import logging, which
        # nothing else of a run needs).
        outcomes: list[RunResult | InfrastructureError] = [
            InfrastructureError(f"{r.label or 'the run'}: the local runner gave no result")
            for r in requests
        ]

        # Set once each shard's pytest runs, or its thread is over (pytest never started).
        started = [threading.Event() for _ in requests]

        def run_shard(index: int) -> None:
            try:
                outcomes[index] = self._run_one(requests[index], started[index].set)
            finally:
                started[index].set()

        shards_running = [
            threading.Thread(target=run_shard, args=(index,), name=f"shard-{index}")
            for index in range(len(requests))
        ]
        with commands_stopped(
            in_github_actions(self.environ) and out is not None, out or sys.stdout
        ):
            for thread in shards_running:
                thread.start()
            try:
                if meanwhile is not None:
                    # Not before: the shards' own start (the plugins' copy, pytest's spawn)
                    # would wait for the GIL behind it.
                    for event in started:
                        event.wait()
                    meanwhile()
            except BaseException:
                for thread in shards_running:
                    thread.join()
                for result in outcomes:  # nobody will read pytest's files now
                    if isinstance(result, RunResult) and result.junit_file is not None:
                        result.junit_file.close()
                raise
            for thread in shards_running:
                thread.join()
        shards = [o for o in outcomes if isinstance(o, RunResult)]
        failures = [o for o in outcomes if isinstance(o, InfrastructureError)]
        if not shards:
            raise failures[0]
        problem = "; ".join(str(f) for f in failures) or None
        return BackendResult(
            backend=self.name,
            shards=shards,
            gpu_seconds=round(sum(s.duration_seconds * len(s.gpu.gpus) for s in shards), 3),
            cancelled=self.cancel_event.is_set() or any(s.cancelled for s in shards),
            infrastructure_error=problem,
        )

    def _run_one(
        self, request: RunRequest, on_started: Callable[[], object]
    ) -> RunResult | InfrastructureError:
        try:
            return run_tests(
                request,
                stream=self.stream,
                cancel_event=self.cancel_event,
                base_env=test_environment(self.environ),
                kill_grace_seconds=self.kill_grace_seconds,
                junit_open=True,  # the host reads it from here: outcome.py
                on_started=on_started,
            )
        except RunnerError as error:
            where = f"{request.label}: " if request.label else ""
            return InfrastructureError(f"{where}{error}")
        except Exception as error:  # a bug of ours: still exit 3 with the traceback
            import traceback

            return InfrastructureError(
                f"the local runner failed: {error!r}", detail=traceback.format_exc()
            )
