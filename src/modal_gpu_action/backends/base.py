"""What every backend takes and gives back: the contract between the engine and a backend.

    backend = LocalBackend(settings, cancel_event=cancel)    # or ModalBackend(...)
    result = backend.run(backend.requests())                 # -> BackendResult

A backend turns Settings into one `RunRequest` per shard (`requests()`), runs each through the
container side (container.run.run_tests, here or in a container) and returns every shard's `RunResult` with the
facts of the run. It never judges the tests: merging the JUnit, deciding passed/failed and the
exit code are the engine's. Failures that are not the tests' fault are `InfrastructureError`
(exit 3) when nothing usable came back, or `BackendResult.infrastructure_error` beside the shards
that did come back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modal_gpu_action.backends.artifacts import shard_budget
from modal_gpu_action.container.protocol import RunRequest, RunResult
from modal_gpu_action.settings import Settings


class InfrastructureError(Exception):
    """The run failed for a reason that is not the tests' (no interpreter, Modal refused the app,
    the container died before the runner answered): the engine reports it and exits 3.
    `detail` is optional longer text (a log tail) shown under the one-line message."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class BackendResult:
    """Every shard's result, in shard order, plus what the backend knows about the run."""

    backend: str  # "local" or "modal"
    shards: list[RunResult]  # each says its GPUs, its time and how it ended
    gpu_seconds: float  # shard wall time x GPUs that shard saw, summed
    cost_usd: float | None = None  # the Modal backend's estimate; None where unknown or free
    cancelled: bool = False  # the run was stopped on request (SIGINT/SIGTERM, job cancelled)
    infrastructure_error: str | None = None  # a shard lost for a reason not the tests'


class Backend(Protocol):
    """What the engine needs from a backend. Constructors take the Settings and a
    `cancel_event: threading.Event` that the engine sets on SIGINT/SIGTERM: `run` must then stop
    the tests (the runner does it for its pytest) and return what finished, `cancelled=True`."""

    name: str

    def requests(self) -> list[RunRequest]:
        """One RunRequest per shard, in shard order (shard_index 0..n-1, shard_count n)."""
        ...

    def run(
        self, requests: Sequence[RunRequest], *, meanwhile: Callable[[], object] | None = None
    ) -> BackendResult:
        """Run the shards (in parallel where the backend can) and return them all; call
        `meanwhile` once, in this thread, once the tests are under way (local: every shard's
        pytest spawned; Modal: the containers spawned), not at all when they never start: the
        engine loads what it needs after them. Raises InfrastructureError when no shard result
        can be had."""
        ...


def base_request(settings: Settings, *, working_directory: str | None = None) -> RunRequest:
    """The unsharded request for `settings`. `working_directory` overrides where the project is
    (a container's path)."""
    return RunRequest(
        working_directory=working_directory or str(settings.working_directory),
        test_path=settings.test_path,
        pytest_args=list(settings.pytest_args),
        timeout_seconds=settings.timeout_seconds,
        env=dict(settings.env),
        fail_on_empty=settings.fail_on_empty,
        gpu_memory=settings.gpu_memory,
        rerun_failures=settings.rerun_failures,
        artifacts=list(settings.artifacts),
        artifacts_max_bytes=settings.artifacts_max_bytes,
        artifacts_skip=_inside_project(settings.artifacts_path, settings.working_directory),
    )


def _inside_project(folder: Path, project: Path) -> list[str]:
    """The artifacts folder, relative to the project when it lies inside: never collected, or
    each run would bring back the last one's files (the local backend's tests run there)."""
    return [folder.relative_to(project).as_posix()] if folder.is_relative_to(project) else []


def shard_requests(base: RunRequest, count: int, durations: Path | None = None) -> list[RunRequest]:
    """`count` copies of `base`, shard i of count each, labelled "shard i+1/count" (no label
    and no sharding plugin when count is 1), each with its share of the artifacts' cap. With a
    `durations` file (`shard-durations`, read only for several shards, once: shard_durations.py),
    every shard gets the same plan of its known tests dealt out over `count`, computed here once;
    an unusable file gives none."""
    if count < 1:
        raise ValueError(f"shard count must be at least 1, got {count}")
    if count == 1:
        return [dataclasses.replace(base, shard_index=0, shard_count=1)]
    budget = shard_budget(base.artifacts_max_bytes, count)  # the run's cap, split evenly
    plan = None
    if durations is not None:
        # here, not at the top: the report's reader is needed only for a durations file
        from modal_gpu_action.backends.shard_durations import read_durations

        plan = read_durations(durations).plan(count)
    shard_plan = plan.to_dict() if plan is not None else None
    return [
        dataclasses.replace(
            base,
            shard_index=i,
            shard_count=count,
            label=f"shard {i + 1}/{count}",
            artifacts_max_bytes=budget,
            shard_plan=shard_plan,
        )
        for i in range(count)
    ]
