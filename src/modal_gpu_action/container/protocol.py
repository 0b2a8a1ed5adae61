"""The contract between the host and where the tests run: a `RunRequest` goes in, a `RunResult`
comes back, each JSON-able (`to_dict`/`from_dict`) because it crosses a process or Modal.

How the run ended is an `Ending`, so no reader has to interpret a message: the messages
(`RunResult.problem`) are for people. The GPUs pytest could see are `GpuFacts`, one `Gpu` each.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

# pytest's exit codes, as its documentation names them
PYTEST_EXIT_MEANINGS = {
    0: "all tests passed",
    1: "tests failed",
    2: "interrupted",
    3: "internal error",
    4: "usage error",
    5: "no tests collected",
}


class RunnerError(Exception):
    """pytest could not be started at all (no interpreter, no working directory): not the tests'
    fault."""


class Ending(str, enum.Enum):
    """How a pytest run ended."""

    # pytest ended on its own and finished its report: exit code 0, 1, 2 (interrupted, e.g. by
    # a collection error) or 5 (nothing collected)
    FINISHED = "finished"
    # pytest could not run the suite: a usage error (4: a conftest that does not import, an
    # unknown option), an internal error (3), or it exited before its test session began (no
    # pytest in that Python)
    COULD_NOT_RUN = "could not run"
    # pytest died during the session: a signal (segfault, OOM killer), os._exit, an unknown code
    CRASHED = "crashed"
    TIMED_OUT = "timed out"  # stopped at the request's timeout
    CANCELLED = "cancelled"  # stopped on request


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """One pytest run (one shard)."""

    working_directory: str
    test_path: str  # relative to working_directory; "" lets pytest use its testpaths
    pytest_args: list[str]
    timeout_seconds: float | None
    env: dict[str, str]  # added to the environment the run starts from
    shard_index: int = 0  # 0-based
    shard_count: int = 1
    # the shards balanced by a previous run's durations (balance.ShardPlan.to_dict(), the same
    # for every shard); None: by test id
    shard_plan: dict[str, Any] | None = None
    fail_on_empty: bool = True
    visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES for pytest; None: inherit
    label: str = ""  # e.g. "shard 1/2": prefixes streamed lines
    python: str | None = None  # interpreter that runs pytest; None: the one running this
    gpu_memory: bool = True  # sample the GPUs' memory while pytest runs (gpu_memory.py)
    # What set timeout_seconds when it is not the plain time limit, for the timeout's message
    # ("pytest reached the cost cap (...) after 12 s"); "": a plain timeout ("timed out").
    timeout_cause: str = ""
    rerun_failures: int = 0  # re-runs of the failed tests after the suite (reruns.py); 0: none
    # Files to bring back once pytest is over (artifacts.py): globs relative to
    # working_directory, this shard's cap on their bytes, and folders never looked into.
    artifacts: list[str] = dataclasses.field(default_factory=list)
    artifacts_max_bytes: int = 0
    artifacts_skip: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.shard_count < 1 or not 0 <= self.shard_index < self.shard_count:
            raise ValueError(
                f"invalid shard {self.shard_index} of {self.shard_count}: "
                "expected 0 <= shard_index < shard_count"
            )
        if self.rerun_failures < 0:
            raise ValueError(f"invalid rerun_failures {self.rerun_failures!r}: expected >= 0")
        if self.timeout_seconds is not None and not self.timeout_seconds > 0:
            raise ValueError(f"invalid timeout_seconds {self.timeout_seconds!r}: expected > 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRequest:
        values = known_fields(cls, data)
        values["pytest_args"] = [str(arg) for arg in values.get("pytest_args", [])]
        values["env"] = {str(k): str(v) for k, v in dict(values.get("env", {})).items()}
        for key in ("artifacts", "artifacts_skip"):
            values[key] = [str(item) for item in values.get(key, [])]
        values["artifacts_max_bytes"] = int(values.get("artifacts_max_bytes", 0))
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Gpu:
    """One GPU as nvidia-smi lists it."""

    index: int | str  # nvidia-smi's index; a string if it printed no number
    name: str
    memory_total_mib: int | None = None
    driver_version: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Gpu:
        return cls(**known_fields(cls, data))


@dataclasses.dataclass(frozen=True)
class GpuFacts:
    """What nvidia-smi says a process can see: the GPUs in CUDA's order, and one line for
    people ("1 GPU visible: ..." or "no GPU visible: <why>")."""

    visible: bool
    gpus: list[Gpu]
    cuda_version: str | None
    note: str

    def describe(self) -> str:
        """`2x NVIDIA H100 80GB HBM3 (driver 580.159.04, CUDA 13.0)`, or the note."""
        if not self.visible:
            return self.note
        return describe_gpu_list(self.gpus, self.cuda_version)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GpuFacts:
        values = known_fields(cls, data)
        values["gpus"] = [Gpu.from_dict(gpu) for gpu in values.get("gpus", [])]
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class GpuMemoryPeak:
    """The most memory one GPU had in use while pytest ran, above what it had in use just
    before (`baseline_mib`), from `samples` polls of nvidia-smi (container/gpu_memory.py)."""

    index: int | str  # nvidia-smi's index, as in Gpu
    peak_mib: int
    baseline_mib: int = 0
    samples: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GpuMemoryPeak:
        return cls(**known_fields(cls, data))


def describe_gpu_list(gpus: Sequence[Gpu], cuda_version: str | None) -> str:
    """`2x NVIDIA H100 80GB HBM3 (driver 580.159.04, CUDA 13.0)`; mixed models joined by ` + `."""
    counts: dict[str, int] = {}
    for gpu in gpus:
        name = gpu.name or "unknown GPU"
        counts[name] = counts.get(name, 0) + 1
    names = " + ".join(f"{n}x {name}" if n > 1 else name for name, n in counts.items())
    details = []
    drivers = sorted({gpu.driver_version for gpu in gpus if gpu.driver_version})
    if drivers:
        details.append("driver " + "/".join(drivers))
    if cuda_version:
        details.append(f"CUDA {cuda_version}")
    return f"{names} ({', '.join(details)})" if details else names


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What one pytest run left. `junit_xml` is pytest's file (its bytes as read), or the one
    synthesised from the crash record when pytest did not write a usable one (may be empty
    when nothing ran).
    `exit_code` is pytest's exit status, None when it died by a signal (ours or not); 0 when
    every failed test passed on a re-run (reruns.py)."""

    junit_xml: bytes
    exit_code: int | None
    duration_seconds: float
    gpu: GpuFacts
    ending: Ending
    output_tail: str  # the last lines of pytest's output
    shard_index: int = 0
    shard_count: int = 1
    label: str = ""
    # One line for whatever the caller must report besides the cases themselves: a timeout, a
    # cancel, a crash, or pytest's own exit codes 2, 3 and 4. None for a normal end (0, 1, 5).
    # An empty shard (5) is not a problem here: whether it fails the run is the caller's call
    # (`fail_on_empty`, over all shards).
    problem: str | None = None
    # Each visible GPU's memory peak while pytest ran; empty when not sampled (no GPU, no
    # nvidia-smi, or turned off with the request's `gpu_memory`).
    gpu_memory: list[GpuMemoryPeak] = dataclasses.field(default_factory=list)
    # The files `RunRequest.artifacts` matched, as a base64 zip ("" when none), and one line for
    # each file left out and why (artifacts.py). Written by hostile tests: the host checks again.
    artifacts: str = ""
    artifacts_left_out: list[str] = dataclasses.field(default_factory=list)
    # pytest's whole file, open at its start, in place of its bytes (`junit_xml` is then empty):
    # what the local backend's host, in this process, reads a chunk at a time (run_tests'
    # `junit_open`). Never sent anywhere: `to_dict` holds its bytes instead.
    junit_file: BinaryIO | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def timed_out(self) -> bool:
        return self.ending is Ending.TIMED_OUT

    @property
    def cancelled(self) -> bool:
        return self.ending is Ending.CANCELLED

    @property
    def no_tests(self) -> bool:
        """pytest collected nothing (exit code 5)."""
        return self.exit_code == 5

    def junit_bytes(self) -> bytes:
        """The JUnit XML's bytes, however it came (`junit_file` read from its start)."""
        if self.junit_file is None:
            return self.junit_xml
        self.junit_file.seek(0)
        data = self.junit_file.read()
        self.junit_file.seek(0)
        return data

    def to_dict(self) -> dict[str, Any]:
        """Plain data (Modal's answer, pickled): pytest's file stays bytes, so that a shard's
        report is parsed alike on either backend."""
        whole = self
        if self.junit_file is not None:
            whole = dataclasses.replace(self, junit_xml=self.junit_bytes(), junit_file=None)
        data = dataclasses.asdict(whole)
        del data["junit_file"]
        data["ending"] = whole.ending.value
        return data

    def to_json(self) -> str:
        """`to_dict` as JSON (the container script's answer), which holds pytest's file as
        text: bytes that are not UTF-8 become U+FFFD there."""
        data = self.to_dict()
        data["junit_xml"] = data["junit_xml"].decode("utf-8", "replace")
        return json.dumps(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        values = known_fields(cls, data)
        values.pop("junit_file", None)  # only ever this process's own, never read from an answer
        values["gpu"] = GpuFacts.from_dict(values["gpu"])
        values["ending"] = Ending(values["ending"])
        if isinstance(values["junit_xml"], str):  # from `to_json`
            values["junit_xml"] = values["junit_xml"].encode("utf-8", "replace")
        values["gpu_memory"] = [GpuMemoryPeak.from_dict(p) for p in values.get("gpu_memory", [])]
        values["artifacts"] = str(values.get("artifacts") or "")
        values["artifacts_left_out"] = [
            str(line) for line in values.get("artifacts_left_out") or []
        ]
        return cls(**values)


def known_fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The dataclass's own keys from `data` (unknown keys ignored); ValueError if one is missing."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    fields = dataclasses.fields(cls)
    required = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in data]
    if missing:
        raise ValueError(f"{cls.__name__}: missing {', '.join(missing)}")
    return {f.name: data[f.name] for f in fields if f.name in data}
