"""Run pytest once on this machine and bring back its JUnit XML and the facts of the run.

This is what runs inside the GPU container (the Modal backend ships this file, with sharding.py
beside it) and on a self-hosted runner (the local backend imports it). It uses the standard library
only, and nothing else of this package, because the user's image has pytest and nothing of ours:
copied alone with sharding.py into any directory, it works. It keeps to Python 3.9 syntax.

    python runner.py --request request.json --result result.json

reads a `RunRequest` (its `to_dict()` as JSON), streams pytest's output, and writes the
`RunResult` as JSON; `python -m modal_gpu_action.runner` is the same. Exit status: 0 the tests
passed, 1 they did not (failures, crash, timeout, cancelled, nothing collected with
`fail_on_empty`), 3 pytest could not be started or the request could not be read.

How a run goes (`run_tests`):
- `probe_gpu` asks `nvidia-smi` what GPUs this pytest will see (never raises).
- pytest runs as `python -m pytest TEST_PATH ARGS --junitxml=TMP -o junit_family=xunit1
  -p _modal_gpu_action_progress [-p _modal_gpu_action_sharding --shard-index I ...]` in a new
  session (its own process group), with stdout and stderr merged, streamed line by line
  (prefixed with the request's label) and the last lines kept. xunit1 is asked for because it
  keeps each case's `file` and `line` (pytest's `line` is 0-based).
- The two `-p` plugins are copies of this file and of sharding.py in a temporary folder that
  goes first on the subprocess's PYTHONPATH: copies under private names, so that no site-packages
  of ours and no module of the user's is shadowed.
- Crash record: in the pytest process this file is a plugin too (the hooks at the bottom). It
  appends one JSON line per event (session start, test start, each phase's report, collection
  errors, session end) to a file named by MODAL_GPU_ACTION_PROGRESS_FILE, one unbuffered
  `write` each, so the record survives a segfault, `os._exit`, the OOM killer or our own kill.
  When pytest leaves no readable XML (it writes it only at the very end), the JUnit is
  synthesised from that record in pytest's own shape: finished tests keep their outcome, the test
  that was running is an error saying why it did not finish. The same plugin registers a
  faulthandler dump on SIGTERM, so a timeout shows where every thread of pytest was stuck.
- Timeout and cancellation: SIGTERM to the whole process group, SIGKILL after a grace period.
  When pytest ends by itself, whatever it left running in its group is SIGKILLed too (a test's
  stray server would otherwise hold the output pipe open). The group is signalled while pytest
  is still an unreaped zombie, so its id cannot have been reused. Processes that start their
  own session escape this, as they escape any process-group kill.
- Exit code 5 (nothing collected) is `no_tests`; deciding whether that fails the run is the
  caller's (`fail_on_empty`), because one empty shard of several is not a failure.

POSIX only (process groups, signals).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import errno
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Literal, TextIO, Union
from xml.parsers import expat

TAIL_LINES = 50
DEFAULT_KILL_GRACE_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 10.0
PROGRESS_ENV = "MODAL_GPU_ACTION_PROGRESS_FILE"
PROGRESS_PLUGIN = "_modal_gpu_action_progress"
SHARDING_PLUGIN = "_modal_gpu_action_sharding"
MAX_LINE_CHARS = 4000  # of one streamed line kept in the tail
MAX_REPORT_TEXT = 20000  # of one failure's text kept in the crash record
# What is read back of the files the tests could rewrite or fill (a conftest can): past the cap,
# pytest's JUnit file is replaced by the report synthesised from the progress record; of a
# larger progress record, its first and last halves are read. Both say so in an error case.
MAX_JUNIT_BYTES = 64 * 1024 * 1024
MAX_PROGRESS_BYTES = 64 * 1024 * 1024
MAX_JUNIT_BYTES_ENV = "MODAL_GPU_ACTION_MAX_JUNIT_BYTES"  # a lower cap, in bytes (tests use it)

PYTEST_EXIT_MEANINGS = {
    0: "all tests passed",
    1: "tests failed",
    2: "interrupted",
    3: "internal error",
    4: "usage error",
    5: "no tests collected",
}

Stream = Union[TextIO, None, Literal["stdout"]]  # noqa: UP007 (runs on Python 3.9)


class RunnerError(Exception):
    """pytest could not be started at all (no interpreter, no working directory, a missing
    sharding.py): not the tests' fault."""


# --- data crossing the process (or Modal) boundary -------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """One pytest run (one shard). JSON-able through `to_dict`/`from_dict`."""

    working_directory: str
    test_path: str  # relative to working_directory; "" lets pytest use its testpaths
    pytest_args: list[str]
    timeout_seconds: float | None
    env: dict[str, str]  # added to the environment the runner starts from
    shard_index: int = 0  # 0-based
    shard_count: int = 1
    durations_junit: str | None = None  # text of a previous JUnit file, to balance shards
    fail_on_empty: bool = True
    visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES for pytest; None: inherit
    label: str = ""  # e.g. "shard 1/2": prefixes streamed lines
    python: str | None = None  # interpreter that runs pytest; None: the runner's own

    def __post_init__(self) -> None:
        if self.shard_count < 1 or not 0 <= self.shard_index < self.shard_count:
            raise ValueError(
                f"invalid shard {self.shard_index} of {self.shard_count}: "
                "expected 0 <= shard_index < shard_count"
            )
        if self.timeout_seconds is not None and not self.timeout_seconds > 0:
            raise ValueError(f"invalid timeout_seconds {self.timeout_seconds!r}: expected > 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRequest:
        values = _known_fields(cls, data)
        values["pytest_args"] = [str(arg) for arg in values.get("pytest_args", [])]
        values["env"] = {str(k): str(v) for k, v in dict(values.get("env", {})).items()}
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class GpuFacts:
    """What `nvidia-smi` says this process can see. `gpus`: one dict per visible GPU with
    `index` (nvidia-smi's), `name`, `memory_total_mib` (int or None) and `driver_version`."""

    visible: bool
    gpus: list[dict[str, Any]]
    cuda_version: str | None
    note: str  # one line for people: "1 GPU visible: ..." or "no GPU visible: <why>"

    def describe(self) -> str:
        """`2x NVIDIA H100 80GB HBM3 (driver 580.159.04, CUDA 13.0)`, or the note."""
        if not self.visible:
            return self.note
        return describe_gpu_list(self.gpus, self.cuda_version)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GpuFacts:
        values = _known_fields(cls, data)
        values["gpus"] = [dict(gpu) for gpu in values.get("gpus", [])]
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What one pytest run left. `junit_xml` is pytest's file, or the one synthesised from the
    crash record when pytest did not write a readable one (may be "" when nothing ran).
    `exit_code` is pytest's exit status, None when it died by a signal (ours or not)."""

    junit_xml: str
    exit_code: int | None
    duration_seconds: float
    gpu: GpuFacts
    timed_out: bool
    crashed: str | None  # why pytest did not finish on its own, when we did not stop it
    no_tests: bool  # pytest exit code 5
    output_tail: str  # the last TAIL_LINES lines of pytest's output
    shard_index: int = 0
    shard_count: int = 1
    cancelled: bool = False
    label: str = ""
    # One line for whatever the caller must report besides the cases themselves: a timeout, a
    # cancel, a crash, or pytest's own exit codes 2, 3 and 4. None for a normal end (0, 1, 5).
    # An empty shard (5) is not a problem here: whether it fails the run is the caller's call
    # (`fail_on_empty`, over all shards).
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        values = _known_fields(cls, data)
        values["gpu"] = GpuFacts.from_dict(values["gpu"])
        return cls(**values)


def _known_fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
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


# --- the GPU probe ------------------------------------------------------------------------------


def describe_gpu_list(gpus: list[dict[str, Any]], cuda_version: str | None) -> str:
    """`2x NVIDIA H100 80GB HBM3 (driver 580.159.04, CUDA 13.0)`; mixed models joined by ` + `."""
    counts: dict[str, int] = {}
    for gpu in gpus:
        name = str(gpu.get("name") or "unknown GPU")
        counts[name] = counts.get(name, 0) + 1
    names = " + ".join(f"{n}x {name}" if n > 1 else name for name, n in counts.items())
    details = []
    drivers = sorted({str(g.get("driver_version")) for g in gpus if g.get("driver_version")})
    if drivers:
        details.append("driver " + "/".join(drivers))
    if cuda_version:
        details.append(f"CUDA {cuda_version}")
    return f"{names} ({', '.join(details)})" if details else names


def parse_visible_devices(value: str) -> list[str]:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: entries up to the first invalid one (so "", "-1"
    and "NoDevFiles" hide every GPU). Entries are indices, or GPU-/MIG- UUIDs (or prefixes)."""
    devices = []
    for raw in value.split(","):
        entry = raw.strip()
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break
        devices.append(entry)
    return devices


def probe_gpu(env: Mapping[str, str] | None = None) -> GpuFacts:
    """Ask nvidia-smi (found on env's PATH) which GPUs a process with `env` sees. Honours
    CUDA_VISIBLE_DEVICES (indices or UUIDs). Short timeouts; never raises."""
    environ = dict(os.environ if env is None else env)
    try:
        return _probe_gpu(environ)
    except Exception as error:  # the probe must never be why a run fails
        return GpuFacts(False, [], None, f"no GPU visible: probing failed: {error}")


def _probe_gpu(environ: dict[str, str]) -> GpuFacts:
    selectors: list[str] | None = None
    if "CUDA_VISIBLE_DEVICES" in environ:
        selectors = parse_visible_devices(environ["CUDA_VISIBLE_DEVICES"])
        if not selectors:
            value = environ["CUDA_VISIBLE_DEVICES"]
            return GpuFacts(
                False, [], None, f"no GPU visible: CUDA_VISIBLE_DEVICES={value!r} hides every GPU"
            )
    exe = shutil.which("nvidia-smi", path=environ.get("PATH", os.defpath))
    if exe is None:
        return GpuFacts(False, [], None, "no GPU visible: nvidia-smi not found")

    header: list[str] = []  # plain nvidia-smi, run beside the query: it can take a moment
    header_thread = threading.Thread(target=lambda: header.append(_nvidia_smi([exe], environ)[1]))
    header_thread.start()
    query = "--query-gpu=index,uuid,name,memory.total,driver_version"
    code, text = _nvidia_smi([exe, query, "--format=csv,noheader,nounits"], environ)
    header_thread.join(PROBE_TIMEOUT_SECONDS + 1)
    match = re.search(r"CUDA Version:\s*([0-9][0-9.]*)", header[0] if header else "")
    cuda_version = match.group(1) if match else None
    if code != 0:
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        why = (
            f"nvidia-smi failed (exit {code})" if code is not None else "nvidia-smi did not answer"
        )
        return GpuFacts(False, [], cuda_version, f"no GPU visible: {why}: {first}".rstrip(": "))

    listed = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 5:
            continue
        index, uuid, name, memory, driver = parts
        listed.append(
            (
                uuid,
                {
                    "index": int(index) if index.isdigit() else index,
                    "name": name,
                    "memory_total_mib": int(memory) if memory.isdigit() else None,
                    "driver_version": driver,
                },
            )
        )
    if selectors is None:
        gpus = [gpu for _, gpu in listed]
    else:  # CUDA numbers the visible GPUs in the order CUDA_VISIBLE_DEVICES lists them
        gpus = []
        for selector in selectors:
            for uuid, gpu in listed:
                if str(gpu["index"]) == selector or uuid.startswith(selector):
                    if gpu not in gpus:
                        gpus.append(gpu)
                    break
    if not gpus:
        why = "nvidia-smi lists no GPU"
        if selectors is not None and listed:
            value = environ["CUDA_VISIBLE_DEVICES"]
            why = f"CUDA_VISIBLE_DEVICES={value!r} matches none of the {len(listed)} GPUs listed"
        return GpuFacts(False, [], cuda_version, f"no GPU visible: {why}")
    count = f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''} visible"
    return GpuFacts(True, gpus, cuda_version, f"{count}: {describe_gpu_list(gpus, cuda_version)}")


def _nvidia_smi(argv: list[str], environ: dict[str, str]) -> tuple[int | None, str]:
    try:
        done = subprocess.run(
            argv,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"no answer within {PROBE_TIMEOUT_SECONDS:g} s"
    except OSError as error:
        return None, str(error)
    return done.returncode, done.stdout.decode("utf-8", "replace")


# --- running pytest -----------------------------------------------------------------------------

_STREAM_LOCK = threading.Lock()  # shards running in threads share one stream: whole lines only


def run_tests(
    request: RunRequest,
    *,
    stream: Stream = "stdout",
    cancel_event: threading.Event | None = None,
    base_env: Mapping[str, str] | None = None,
    kill_grace_seconds: float = DEFAULT_KILL_GRACE_SECONDS,
) -> RunResult:
    """Run pytest for `request` and return what it left; see the module's docstring.

    stream: where pytest's output goes live ("stdout": the current sys.stdout; None: nowhere).
    cancel_event: when set (from any thread), pytest is stopped as a timeout stops it and the
      result says `cancelled`.
    base_env: the environment to start from (default os.environ); request.env is added to it.
    Raises RunnerError when pytest cannot be started at all.
    """
    out = sys.stdout if stream == "stdout" else stream
    env = dict(os.environ if base_env is None else base_env)
    env.update(request.env)
    if request.visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = request.visible_devices
    gpu = probe_gpu(env)
    if not os.path.isdir(request.working_directory):
        raise RunnerError(f"working directory not found: {request.working_directory}")
    scratch = Path(tempfile.mkdtemp(prefix="modal-gpu-action-"))
    try:
        command = _pytest_command(request, scratch)
        plugins = str(scratch / "plugins")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (plugins, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"  # live output through the pipe
        env[PROGRESS_ENV] = str(scratch / "progress.jsonl")
        prefix = f"[{request.label}] " if request.label else ""
        _write_line(out, f"{prefix}modal-gpu-action: {gpu.describe()}")
        _write_line(out, f"{prefix}$ {' '.join(command)}")
        return _execute(request, command, env, scratch, gpu, out, cancel_event, kill_grace_seconds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _pytest_command(request: RunRequest, scratch: Path) -> list[str]:
    plugins = scratch / "plugins"
    plugins.mkdir()
    shutil.copyfile(__file__, plugins / f"{PROGRESS_PLUGIN}.py")
    command = [request.python or sys.executable, "-m", "pytest"]
    if request.test_path:
        command.append(request.test_path)
    command += list(request.pytest_args)
    command += [
        f"--junitxml={scratch / 'junit.xml'}",
        "-o",
        "junit_family=xunit1",
        "-p",
        PROGRESS_PLUGIN,
    ]
    if request.shard_count > 1:
        sharding = Path(__file__).with_name("sharding.py")
        if not sharding.is_file():
            raise RunnerError(f"sharding needs {sharding.name} beside {Path(__file__).name}")
        shutil.copyfile(sharding, plugins / f"{SHARDING_PLUGIN}.py")
        command += ["-p", SHARDING_PLUGIN]
        command += ["--shard-index", str(request.shard_index)]
        command += ["--shard-count", str(request.shard_count)]
        if request.durations_junit:
            durations = scratch / "durations.xml"
            durations.write_text(request.durations_junit, encoding="utf-8")
            command += ["--shard-durations", str(durations)]
    return command


def _execute(
    request: RunRequest,
    command: list[str],
    env: dict[str, str],
    scratch: Path,
    gpu: GpuFacts,
    out: TextIO | None,
    cancel_event: threading.Event | None,
    kill_grace_seconds: float,
) -> RunResult:
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            command,
            cwd=request.working_directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we stop it and all it started
        )
    except OSError as error:
        raise RunnerError(f"could not start pytest with {command[0]}: {error}") from error
    assert process.stdout is not None
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES * 4)
    prefix = f"[{request.label}] " if request.label else ""
    pump = threading.Thread(target=_pump, args=(process.stdout, out, prefix, tail), daemon=True)
    pump.start()

    stopped = _wait_unreaped(process.pid, started, request.timeout_seconds, cancel_event)
    if stopped:
        _signal_group(process.pid, signal.SIGTERM)
        _wait_unreaped(process.pid, time.monotonic(), kill_grace_seconds, None)
    # pytest has exited (or is past its grace) but is not reaped yet: its group id is still
    # ours, so this cannot reach an unrelated group. Leftover children go with it.
    _signal_group(process.pid, signal.SIGKILL)
    returncode = process.wait()
    duration = time.monotonic() - started
    pump.join(timeout=2.0)  # a process that left the group may hold the pipe: don't wait on it

    records = read_progress(scratch / "progress.jsonl")
    in_flight = _in_flight(records)
    during = f" while running {in_flight}" if in_flight else ""
    finished = any(r.get("e") == "sessionfinish" for r in records)
    started_session = any(r.get("e") == "sessionstart" for r in records)
    crashed = None
    if stopped is None:
        if returncode < 0:
            crashed = f"pytest was killed by signal {-returncode} ({_signal_name(-returncode)})"
        elif returncode not in PYTEST_EXIT_MEANINGS:
            crashed = f"pytest exited with code {returncode}"
            crashed += "" if finished else " without finishing its report"
        elif not started_session and returncode != 4:
            crashed = f"pytest exited with code {returncode} before starting the test session"
        elif started_session and not finished:
            crashed = f"pytest exited with code {returncode} without finishing its report"
        if crashed:
            crashed += during
    if stopped == "timeout":
        reason = f"pytest timed out after {request.timeout_seconds:g} s and was stopped{during}"
    elif stopped == "cancel":
        reason = f"the run was cancelled{during}"
    else:
        reason = crashed or ""
    if not reason and returncode in (2, 3, 4):
        reason = f"pytest exited with code {returncode} ({PYTEST_EXIT_MEANINGS[returncode]})"
    tail_text = summarise_tail(list(tail))
    junit = _choose_junit(scratch / "junit.xml", records, reason, tail_text)
    return RunResult(
        junit_xml=junit,
        exit_code=returncode if returncode >= 0 else None,
        duration_seconds=round(duration, 3),
        gpu=gpu,
        timed_out=stopped == "timeout",
        crashed=crashed,
        no_tests=returncode == 5,
        output_tail=tail_text,
        shard_index=request.shard_index,
        shard_count=request.shard_count,
        cancelled=stopped == "cancel",
        label=request.label,
        problem=reason or None,
    )


def _wait_unreaped(
    pid: int, started: float, timeout: float | None, cancel_event: threading.Event | None
) -> Literal["timeout", "cancel"] | None:
    """Wait until `pid` exits, leaving it unreaped (WNOWAIT); "timeout" or "cancel" when either
    comes first. Polls (10 ms growing to 50 ms) only when a timeout or a cancel can interrupt."""
    if timeout is None and cancel_event is None:
        _waitid(pid, 0)
        return None
    deadline = None if timeout is None else started + timeout
    pause = 0.01
    while True:
        if _waitid(pid, os.WNOHANG):
            return None
        if cancel_event is not None and cancel_event.is_set():
            return "cancel"
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return "timeout"
        wait = pause if deadline is None else min(pause, deadline - now)
        if cancel_event is not None:
            cancel_event.wait(wait)
        else:
            time.sleep(wait)
        pause = min(pause * 1.5, 0.05)


def _waitid(pid: int, flags: int) -> bool:
    """True once `pid` has exited (it stays a zombie until Popen.wait reaps it)."""
    while True:
        try:
            return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | flags) is not None
        except InterruptedError:
            continue
        except ChildProcessError:
            return True


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "unknown signal"


def _pump(pipe: IO[bytes], out: TextIO | None, prefix: str, tail: collections.deque[str]) -> None:
    """Copy pytest's output line by line to `out` and the tail; never stop draining the pipe."""
    for raw in iter(lambda: pipe.readline(65536), b""):
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        tail.append(line[:MAX_LINE_CHARS])
        if out is not None and not _write_line(out, prefix + line):
            out = None
    pipe.close()


# A faulthandler frame inside pytest's or pluggy's machinery: noise under a crash or timeout dump.
_MACHINERY_FRAME = re.compile(
    r'^\s+File "(?:[^"]*/(?:_pytest|pluggy)/[^"]*|[^"]*/pytest/__main__\.py|<frozen runpy>)", '
    r"line \d+ in "
)


def summarise_tail(lines: list[str], keep: int = TAIL_LINES) -> str:
    """The last `keep` lines, after dropping the frames of pytest's own machinery from
    faulthandler dumps (a segfault's or our timeout's): what is left is the test's frames."""
    kept: list[str] = []
    dropped = 0
    for line in lines:
        if _MACHINERY_FRAME.match(line):
            dropped += 1
            continue
        if dropped:
            kept.append(f"  [{dropped} frames of pytest and pluggy left out]")
            dropped = 0
        kept.append(line)
    if dropped:
        kept.append(f"  [{dropped} frames of pytest and pluggy left out]")
    return "\n".join(kept[-keep:])


def _write_line(out: TextIO | None, line: str) -> bool:
    """Write one whole line; False when the stream is unusable (then we stop writing to it)."""
    if out is None:
        return True
    try:
        with _STREAM_LOCK:
            try:
                out.write(line + "\n")
            except UnicodeEncodeError:
                out.write(line.encode("ascii", "backslashreplace").decode("ascii") + "\n")
            out.flush()
    except (OSError, ValueError):
        return False
    return True


# --- the crash record, read back and turned into JUnit ------------------------------------------


def read_progress(path: Path, max_bytes: int = MAX_PROGRESS_BYTES) -> list[dict[str, Any]]:
    """The records the progress plugin wrote; a line cut short by a kill is skipped. Of a file
    larger than `max_bytes`, its first and last halves are read (the session's start, its end
    and the test that was running), with a `note` record between them saying what is missing;
    a link, a directory or a pipe in its place (the tests can put one there) is one `note`."""
    try:
        with _open_plain_file(path) as handle:
            data = handle.read(max_bytes + 1)
            if len(data) <= max_bytes:
                return _records(data)
            half = max_bytes // 2
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(size - half, half))
            end = handle.read(half)
    except FileNotFoundError:
        return []
    except OSError as error:
        return [_note(_RECORD, f"The action's record of the run was not read: {_why(error)}.")]
    start = data[:half]
    start = start[: start.rfind(b"\n") + 1]  # whole lines only
    end = end[end.find(b"\n") + 1 :] if b"\n" in end else b""
    missing = size - len(start) - len(end)
    note = _note(
        _RECORD,
        f"The action's record of the run is {size:,} bytes, more than the {max_bytes:,} that"
        f" are read: the tests recorded in the {missing:,} bytes between its first and its last"
        " part are missing from this report when it comes from the record.",
    )
    return [*_records(start), note, *_records(end)]


def _records(data: bytes) -> list[dict[str, Any]]:
    records = []
    for line in data.decode("utf-8", "replace").split("\n"):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # cut short by a kill; or written by the tests
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _note(name: str, message: str, detail: str = "") -> dict[str, Any]:
    """A record of ours, not the plugin's: synthesize_junit turns it into an error case."""
    return {"e": "note", "name": name, "message": message, "detail": detail}


_RECORD = "record of the run"


class _Refused(OSError):
    """A file the tests replaced or filled: what it is, for people."""


def _open_plain_file(path: Path) -> IO[bytes]:
    """`path` opened for reading when it is a regular file. The tests can put anything there:
    a link could stand for any file of this machine, and a pipe or a device blocks or never
    ends, so those are _Refused. FileNotFoundError when there is nothing."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _Refused(error.errno, "it is a symbolic link") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a pipe, a socket or a device"
            raise _Refused(errno.EINVAL, f"it is {kind}, not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _why(error: OSError) -> str:
    if isinstance(error, _Refused):
        return str(error.strerror)
    return f"it cannot be read ({error.strerror or error})"


def _in_flight(records: list[dict[str, Any]]) -> str | None:
    """The test that started and has no teardown report: the one pytest was running."""
    running = None
    for record in records:
        if record.get("e") == "start":
            running = record.get("nodeid")
        elif (
            record.get("e") == "report"
            and record.get("when") == "teardown"
            and record.get("nodeid") == running
        ):
            running = None
    return running


def _choose_junit(path: Path, records: list[dict[str, Any]], reason: str, tail: str) -> str:
    """pytest's XML when it is a whole JUnit report; else the one synthesised from the crash
    record; else whatever pytest left (possibly half a file, possibly "").

    The tests can rewrite pytest's file. One that is no regular file, is larger than the cap
    (`_junit_cap`), declares a document type (entities), has another root element or cannot be
    decoded is not used: the record stands in, with an error case saying why and what it was.
    """
    cap = _junit_cap()
    text = ""
    try:
        with _open_plain_file(path) as handle:
            data = handle.read(cap + 1)
            if len(data) > cap:
                size = max(os.fstat(handle.fileno()).st_size, len(data))
                raise _Refused(errno.EFBIG, f"it is {size:,} bytes, more than the {cap:,} read")
        if data.strip() and _whole_junit(data):
            return data.decode("utf-8", "replace")
        text = data.decode("utf-8", "replace")
    except FileNotFoundError:
        pass  # pytest wrote none: it crashed, was stopped or never started
    except OSError as error:
        note = _note(
            "pytest's JUnit report",
            f"pytest's JUnit report was not used: {_why(error)}. The results come from the"
            " action's record of the run instead.",
            "A conftest or a test can rewrite the file pytest writes; the action's pytest plugin"
            " records each test's outcome as it ends, and that record stands in for the file.",
        )
        return synthesize_junit([*records, note], unfinished_reason=reason, output_tail=tail)
    if any(record.get("e") != "note" for record in records) or not text.strip():
        return synthesize_junit(records, unfinished_reason=reason, output_tail=tail)
    return text


def _junit_cap() -> int:
    """MAX_JUNIT_BYTES, or the lower cap that MODAL_GPU_ACTION_MAX_JUNIT_BYTES asks for."""
    text = os.environ.get(MAX_JUNIT_BYTES_ENV, "").strip()
    if text.isdigit() and 0 < int(text) < MAX_JUNIT_BYTES:
        return int(text)
    return MAX_JUNIT_BYTES


def _whole_junit(data: bytes) -> bool:
    """True for a well-formed JUnit document, False for one cut short or damaged (pytest killed
    while writing it). _Refused for what pytest never writes: a document type declaration (its
    entities could expand into gigabytes or read local files), another root element, an
    encoding that cannot be decoded. Nothing is built or expanded: expat only checks."""
    parser = expat.ParserCreate()
    roots: list[str] = []

    def doctype(*_: object) -> None:
        raise _Refused(errno.EINVAL, "it declares a document type (entities), as pytest never does")

    def start(name: str, attributes: object) -> None:
        if not roots:
            roots.append(name)
            if name not in ("testsuites", "testsuite"):
                raise _Refused(
                    errno.EINVAL, f"its root element is <{name[:100]}>, not <testsuites>"
                )

    parser.StartDoctypeDeclHandler = doctype
    parser.StartElementHandler = start
    try:
        parser.Parse(data, True)
    except expat.ExpatError:
        return False
    except (LookupError, ValueError) as error:  # the declared encoding: unknown, or multi-byte
        raise _Refused(errno.EINVAL, f"its encoding cannot be decoded ({error})") from None
    return True


_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(value: Any) -> str:
    return _XML_ILLEGAL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def junit_names(nodeid: str, prefix: str = "") -> tuple[str, str]:
    """(classname, name) of a node id as pytest's junitxml writes them: the file path becomes a
    dotted module path without ".py", "::" segments become dots, the last segment (with its
    "[params]", kept whole) is the name. `tests/x/test_a.py::TestC::test_y[1]` ->
    (`tests.x.test_a.TestC`, `test_y[1]`). The same as pytest 9.2's mangle_test_address."""
    path, sep, rest = nodeid.partition("::")
    names = [re.sub(r"\.py$", "", path.replace("/", "."))]
    if sep:
        head, bracket, params = rest.partition("[")
        names += head.split("::")
        names[-1] += bracket + params
    classnames = ([prefix] if prefix else []) + names[:-1]
    return ".".join(classnames), names[-1]


def synthesize_junit(
    records: list[dict[str, Any]], *, unfinished_reason: str = "", output_tail: str = ""
) -> str:
    """JUnit XML (pytest's xunit1 shape) from the crash record. Finished tests keep their
    outcome; the test still running when pytest died is an error carrying `unfinished_reason`
    and the output tail. Collection errors are errors, as pytest writes them. Each `note`
    record (`_note`: a file of the run that was not used) is an error case of its own.
    The tests can write to the record too: a field of the wrong type is left out, never fatal."""
    cases: dict[str, dict[str, Any]] = {}
    for record in records:
        event, nodeid = record.get("e"), record.get("nodeid")
        if event not in ("start", "report", "collecterror") or not isinstance(nodeid, str):
            continue
        case = cases.setdefault(nodeid, {"reports": [], "record": record, "collect": None})
        if event == "report":
            case["reports"].append(record)
        elif event == "collecterror":
            case["collect"] = record
    prefix = next((r.get("junit_prefix") for r in records if r.get("e") == "configure"), "")
    prefix = prefix if isinstance(prefix, str) else ""

    suite = ET.Element("testsuite", name="pytest")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for nodeid, case in cases.items():
        names = case["record"].get("junit")
        if not (_is_list_of(names, str) and len(names) == 2):
            names = junit_names(nodeid, prefix)
        element = ET.SubElement(
            suite, "testcase", classname=_xml_text(names[0]), name=_xml_text(names[1])
        )
        location = next(
            (
                r["location"]
                for r in (case["record"], *case["reports"])
                if _is_list_of(r.get("location"), (str, int, type(None)))
                and r["location"]
                and isinstance(r["location"][0], str)
            ),
            None,
        )
        if location:
            element.set("file", _xml_text(location[0]))
            if len(location) > 1 and isinstance(location[1], int):
                element.set("line", str(location[1]))
        duration = sum(_seconds(r.get("duration")) for r in case["reports"])
        total_time += duration
        element.set("time", f"{duration:.3f}")
        kinds = []
        if case["collect"] is not None:
            kinds.append(
                _child(element, "error", "collection failure", case["collect"].get("text"))
            )
        for report in case["reports"]:
            kinds += _report_children(element, report)
        properties: Any = next(
            (r["properties"] for r in reversed(case["reports"]) if r.get("properties")), []
        )
        if properties and _is_list_of(properties, list) and all(len(p) == 2 for p in properties):
            holder = ET.Element("properties")
            for key, value in properties:
                ET.SubElement(holder, "property", name=_xml_text(key), value=_xml_text(value))
            element.insert(0, holder)
        finished = case["collect"] is not None or any(
            r.get("when") == "teardown" for r in case["reports"]
        )
        if not finished and unfinished_reason:
            detail = unfinished_reason + (
                "\n\nLast lines of output:\n" + output_tail if output_tail else ""
            )
            kinds.append(
                _child(element, "error", f"test did not finish: {unfinished_reason}", detail)
            )
        totals["tests"] += 1
        totals["failures"] += "failure" in kinds
        totals["errors"] += "error" in kinds
        totals["skipped"] += "skipped" in kinds and "failure" not in kinds and "error" not in kinds
    for note in records:
        if note.get("e") == "note":
            element = ET.SubElement(
                suite, "testcase", classname="modal-gpu-action", name=_xml_text(note.get("name"))
            )
            _child(element, "error", str(note.get("message")), note.get("detail"))
            totals["tests"] += 1
            totals["errors"] += 1
    for key, value in totals.items():
        suite.set(key, str(value))
    suite.set("time", f"{total_time:.3f}")
    suite.set("timestamp", time.strftime("%Y-%m-%dT%H:%M:%S"))
    suite.set("hostname", socket.gethostname())
    root = ET.Element("testsuites", name="pytest tests")
    root.append(
        ET.Comment(
            " synthesised by modal-gpu-action from its progress record: pytest did not write this report "
        )
    )
    root.append(suite)
    return '<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root, encoding="unicode")


def _is_list_of(value: Any, kind: type | tuple[type, ...]) -> bool:
    return isinstance(value, list) and all(isinstance(item, kind) for item in value)


def _seconds(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e9:
        return float(value)
    return 0.0


def _report_children(element: ET.Element, report: dict[str, Any]) -> list[str]:
    when, outcome = report.get("when"), report.get("outcome")
    message, text = str(report.get("message") or ""), report.get("text")
    wasxfail = report.get("wasxfail")
    if outcome == "failed":
        if when == "call" and wasxfail is not None:
            return [_child(element, "failure", f"[XPASS(strict)] {wasxfail}", text)]
        if when == "call":
            return [_child(element, "failure", message, text)]
        return [_child(element, "error", f'failed on {when} with "{message}"', text)]
    if outcome == "skipped":
        if wasxfail is not None:
            return [_child(element, "skipped", str(wasxfail), text, kind="pytest.xfail")]
        return [_child(element, "skipped", message, text, kind="pytest.skip")]
    return []


def _child(parent: ET.Element, tag: str, message: str, text: Any, kind: str = "") -> str:
    child = ET.SubElement(parent, tag, message=_xml_text(message))
    if kind:
        child.set("type", kind)
    if text:
        child.text = _xml_text(text)
    return tag


# --- script entry -------------------------------------------------------------------------------


def exit_status(result: RunResult, fail_on_empty: bool = True) -> int:
    """0 the tests passed, 1 they did not (see the module's docstring)."""
    if result.problem:
        return 1
    if result.exit_code == 0 or (result.no_tests and not fail_on_empty):
        return 0
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="runner.py", description="Run pytest once and write its JUnit XML and run facts."
    )
    parser.add_argument("--request", required=True, help="a RunRequest as JSON (a file)")
    parser.add_argument("--result", required=True, help="where to write the RunResult as JSON")
    parser.add_argument("--quiet", action="store_true", help="do not stream pytest's output")
    args = parser.parse_args(argv)
    try:
        request = RunRequest.from_dict(json.loads(Path(args.request).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as error:
        print(f"error: cannot read the request {args.request}: {error}", file=sys.stderr)
        return 3
    cancel = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # pytest has its own session: pass them on
        signal.signal(signum, lambda *_: cancel.set())
    try:
        result = run_tests(request, stream=None if args.quiet else "stdout", cancel_event=cancel)
    except RunnerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    target = Path(args.result)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(result.to_dict()), encoding="utf-8")
    os.replace(partial, target)
    return exit_status(result, request.fail_on_empty)


# --- in the pytest process: the progress plugin (loaded as `-p _modal_gpu_action_progress`) ----
# These hooks run only where pytest imports this file as a plugin; nothing above calls them.

_progress_fd: int | None = None
_dump_fd: int | None = None


def _record(entry: dict[str, Any]) -> None:
    if _progress_fd is None:
        return
    with contextlib.suppress(OSError):  # one write per line: a kill loses at most that line
        os.write(_progress_fd, (json.dumps(entry, default=str) + "\n").encode("utf-8"))


def _junit_names_in_pytest(nodeid: str, prefix: str) -> tuple[str, str]:
    try:  # the running pytest's own rule, so the synthesised names match its XML exactly
        from _pytest.junitxml import mangle_test_address

        names = list(mangle_test_address(nodeid))
        return ".".join(([prefix] if prefix else []) + names[:-1]), names[-1]
    except Exception:
        return junit_names(nodeid, prefix)


_junit_prefix = ""


def pytest_configure(config: Any) -> None:
    global _progress_fd, _dump_fd, _junit_prefix
    path = os.environ.get(PROGRESS_ENV)
    if not path or hasattr(config, "workerinput"):  # xdist workers: the controller records
        return
    _progress_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        _junit_prefix = str(config.getini("junit_prefix") or "")
    except Exception:
        _junit_prefix = ""
    try:  # on our SIGTERM (timeout, cancel), print where every thread is, then die as before
        import faulthandler

        _dump_fd = os.dup(2)
        faulthandler.register(signal.SIGTERM, file=_dump_fd, all_threads=True, chain=True)
    except (AttributeError, OSError, ValueError, RuntimeError):
        pass
    _record({"e": "configure", "junit_prefix": _junit_prefix, "pid": os.getpid()})


def pytest_sessionstart(session: Any) -> None:
    _record({"e": "sessionstart"})


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        _record({"e": "collecterror", "nodeid": report.nodeid, "text": _clip(report.longreprtext)})


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    _record(
        {
            "e": "start",
            "nodeid": nodeid,
            "location": list(location),
            "junit": _junit_names_in_pytest(nodeid, _junit_prefix),
        }
    )


def pytest_runtest_logreport(report: Any) -> None:
    entry: dict[str, Any] = {
        "e": "report",
        "nodeid": report.nodeid,
        "when": report.when,
        "outcome": report.outcome,
        "duration": float(getattr(report, "duration", 0.0) or 0.0),
    }
    if report.outcome != "passed":
        longrepr = report.longrepr
        if report.skipped and isinstance(longrepr, tuple) and len(longrepr) == 3:
            reason = str(longrepr[2])
            entry["message"] = (
                reason[len("Skipped: ") :] if reason.startswith("Skipped: ") else reason
            )
            entry["text"] = f"{longrepr[0]}:{longrepr[1]}: {entry['message']}"
        else:
            crash = getattr(longrepr, "reprcrash", None)
            entry["message"] = str(getattr(crash, "message", "") or "")
            entry["text"] = _clip(report.longreprtext)
    if hasattr(report, "wasxfail"):
        entry["wasxfail"] = str(report.wasxfail)
    if report.user_properties:
        entry["properties"] = [[str(k), str(v)] for k, v in report.user_properties]
    _record(entry)


def pytest_sessionfinish(session: Any, exitstatus: Any) -> None:
    _record({"e": "sessionfinish", "exitstatus": int(exitstatus)})


def pytest_unconfigure(config: Any) -> None:
    global _progress_fd, _dump_fd
    if _dump_fd is not None:
        try:
            import faulthandler

            faulthandler.unregister(signal.SIGTERM)
            os.close(_dump_fd)
        except (OSError, ValueError):
            pass
        _dump_fd = None
    if _progress_fd is not None:
        os.close(_progress_fd)
        _progress_fd = None


def _clip(text: str) -> str:
    if len(text) <= MAX_REPORT_TEXT:
        return text
    return text[:MAX_REPORT_TEXT] + f"\n[... {len(text) - MAX_REPORT_TEXT} more characters cut]"


if __name__ == "__main__":
    raise SystemExit(main())
