"""One pytest run: a RunRequest in, a RunResult out. The local backend calls `run_tests` in its
own process, the Modal container's entry calls it there, and it runs as a script:

    python -m modal_gpu_action.container --request request.json --result result.json

reads a RunRequest (its `to_dict()` as JSON), streams pytest's output and writes the RunResult
as JSON. Exit status: 0 the tests passed, 1 they did not (failures, crash, timeout, cancelled,
nothing collected with `fail_on_empty`), 3 pytest could not be started or the request could not
be read. SIGINT and SIGTERM cancel the run as the cancel event does (pytest has a session of its
own: they would not reach it).

How a run goes:
- probe.py asks nvidia-smi what GPUs this pytest will see (never raises); gpu_memory.py polls
  their memory while pytest runs (unless the request's `gpu_memory` is off); both beside
  pytest's start, not before it (GpuBesidePytest);
- pytest runs as `python -m pytest TEST_PATH ARGS --junitxml=TMP -o junit_family=xunit1
  -p _modal_gpu_action_container.progress [-p _modal_gpu_action_container.sharding
  --shard-index I ... --shard-plan=FILE]` in a process group of its own (process.py), the
  plugins loaded from a copy of this package in a temporary folder that goes first on pytest's
  PYTHONPATH. xunit1 because it keeps each case's `file` and `line` (pytest's `line` is
  0-based);
- how it ended (`Ending`) and one line for people (`problem`) come from its exit status, whether
  we stopped it, and the crash record's first and last lines; the report is pytest's JUnit
  (checked by its ends: the host parses it) or, when it is missing or cut short, the one
  synthesised from the whole record (record.py);
- with `on_records` (the Modal container's entry), the crash record is handed on as it grows,
  to be relayed to the client (relay.py): what a container that never answers did is kept;
- with `rerun_failures`, the failed tests run again right after, in the same place, and the
  report keeps their runs (reruns.py);
- exit code 5 (nothing collected) is `no_tests`; whether that fails the run is the caller's call
  (`fail_on_empty`), because one empty shard of several is not a failure.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import artifacts, process, relay
from .gpu_memory import GpuMemorySampler
from .probe import probe_gpu
from .progress import PROGRESS_ENV, RUNNER_PID_ENV
from .protocol import (
    PYTEST_EXIT_MEANINGS,
    Ending,
    GpuFacts,
    GpuMemoryPeak,
    RunnerError,
    RunRequest,
    RunResult,
)
from .pytest_junit import choose_junit
from .record import read_state

PACKAGE = Path(__file__).resolve().parent
PACKAGE_COPY = "_modal_gpu_action_container"  # the name pytest imports the copy by
PROGRESS_PLUGIN = f"{PACKAGE_COPY}.progress"
SHARDING_PLUGIN = f"{PACKAGE_COPY}.sharding"
RERUN_PLUGIN = f"{PACKAGE_COPY}.reruns"


def run_tests(
    request: RunRequest,
    *,
    stream: process.Stream = "stdout",
    cancel_event: threading.Event | None = None,
    base_env: Mapping[str, str] | None = None,
    kill_grace_seconds: float = process.DEFAULT_KILL_GRACE_SECONDS,
    on_records: Callable[[list[dict[str, Any]]], None] | None = None,
    junit_open: bool = False,
    on_started: Callable[[], object] | None = None,
) -> RunResult:
    """Run pytest for `request` and return what it left; see the module's docstring.

    stream: where pytest's output goes live ("stdout": the current sys.stdout; None: nowhere).
    cancel_event: when set (from any thread), pytest is stopped as a timeout stops it and the
      run ends `cancelled`.
    base_env: the environment to start from (default os.environ); request.env is added to it.
    on_records: called from other threads, one at a time, with each batch of the crash
      record's new lines while pytest runs (relay.py) and, once found, the GPU facts
      (`{"e": "gpu", "facts": ...}`).
    junit_open: a whole JUnit file of pytest's comes back open (`RunResult.junit_file`), not as
      bytes, for a caller in this process to read a chunk at a time and close (the local
      backend); not with re-runs, which merge the bytes.
    on_started: called once pytest runs (not again for re-runs), from this thread.
    Raises RunnerError when pytest cannot be started at all.
    """
    out = process.resolve(stream)
    env = dict(os.environ if base_env is None else base_env)
    env.update(request.env)
    if request.visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = request.visible_devices
    if not os.path.isdir(request.working_directory):
        raise RunnerError(f"working directory not found: {request.working_directory}")
    scratch = Path(tempfile.mkdtemp(prefix="modal-gpu-action-"))
    stop_following = threading.Event()
    following: threading.Thread | None = None
    try:
        command = _pytest_command(request, scratch)
        plugins = str(scratch / "plugins")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (plugins, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"  # live output through the pipe
        env[PROGRESS_ENV] = str(scratch / "progress.jsonl")
        env[RUNNER_PID_ENV] = str(os.getpid())
        prefix = f"[{request.label}] " if request.label else ""
        process.write_line(out, f"{prefix}$ {' '.join(command)}")
        if on_records is not None:
            on_records = _one_at_a_time(on_records)  # the probe's thread and the relay's
            following = relay.follow(env[PROGRESS_ENV], on_records, stop_following)

        def announce(found: GpuFacts) -> None:
            process.write_line(out, f"{prefix}modal-gpu-action: {found.describe()}")
            if on_records is not None:
                with contextlib.suppress(Exception):
                    on_records([{"e": "gpu", "facts": found.to_dict()}])

        gpu_side = GpuBesidePytest(env, announce, sample_memory=request.gpu_memory)
        try:
            exited = process.run_in_own_group(
                command,
                env=env,
                cwd=request.working_directory,
                out=out,
                prefix=prefix,
                timeout=request.timeout_seconds,
                cancel_event=cancel_event,
                kill_grace_seconds=kill_grace_seconds,
                on_started=on_started,
            )
        except OSError as error:
            raise RunnerError(f"could not start pytest with {command[0]}: {error}") from error
        finally:
            stop_following.set()
            if following is not None:
                following.join(timeout=5.0)
            # On a cancel, not a moment longer for an nvidia-smi that has not answered: GitHub
            # sends SIGTERM 7.5 s after SIGINT, and the probe's own timeouts are 10 s.
            gpu, peaks = gpu_side.finish(wait=not (cancel_event and cancel_event.is_set()))

        def run_again(again: RunRequest, nodeids: list[str]) -> RunResult:
            """One round of re-runs (reruns.py): the same pytest, keeping `nodeids`."""
            folder = Path(tempfile.mkdtemp(prefix="rerun-", dir=scratch))
            command = [*_pytest_command(again, folder), "-p", RERUN_PLUGIN]
            round_env = {**env, **rerunning.selection_file(str(folder), nodeids)}
            round_env[PROGRESS_ENV] = str(folder / "progress.jsonl")
            exited = process.run_in_own_group(
                command, env=round_env, cwd=request.working_directory, out=out, prefix=prefix,
                timeout=again.timeout_seconds, cancel_event=cancel_event,
                kill_grace_seconds=kill_grace_seconds,
            )  # fmt: skip
            return _result(again, gpu, exited, folder)

        first = _result(request, gpu, exited, scratch, junit_open and request.rerun_failures < 1)
        result = dataclasses.replace(first, gpu_memory=peaks)
        # The files the tests left (coverage.xml...): once the suite is over however it ended,
        # before any re-run of failed tests writes them again for those tests alone.
        result = artifacts.attach(result, request)
        if request.rerun_failures < 1:
            return result
        # Imported only here: re-runs (and ElementTree, which they merge with) are the few runs'.
        from . import reruns as rerunning

        return rerunning.rerun_failures(
            request, result, run_again, cancel_event=cancel_event, out=out
        )
    finally:
        _remove_in_background(scratch)


class GpuBesidePytest:
    """The GPUs pytest sees (probe.py) and, with `sample_memory`, their memory sampler
    (gpu_memory.py), found in a thread of their own while pytest starts: nvidia-smi answers in a
    tenth of a second or more, which pytest's start (Python, its plugins, the project's imports,
    CUDA's context) outlasts, so nothing waits for it (`python -m pytest` on an empty folder
    took 1.8-2.3 s on an H200). The sampler's baseline is read as pytest starts.
    `announce` gets the facts once found."""

    def __init__(
        self,
        env: Mapping[str, str],
        announce: Callable[[GpuFacts], None],
        *,
        sample_memory: bool,
    ) -> None:
        self._gpu: GpuFacts | None = None
        self._memory: GpuMemorySampler | None = None
        self._given_up = False  # finish() stopped waiting: no sampler may start after it
        self._lock = threading.Lock()
        # Not a daemon: an nvidia-smi it started ends (its own timeout) before the process does.
        self._thread = threading.Thread(
            target=self._find, args=(dict(env), announce, sample_memory), name="gpu-probe"
        )
        self._thread.start()

    def _find(
        self, env: dict[str, str], announce: Callable[[GpuFacts], None], sample_memory: bool
    ) -> None:
        self._gpu = probe_gpu(env)
        with contextlib.suppress(Exception):  # a stream that fails loses the line, not the run
            announce(self._gpu)
        if sample_memory:
            memory = GpuMemorySampler.start(env, self._gpu)
            with self._lock:
                if not self._given_up:
                    self._memory = memory
                    return
            if memory is not None:
                memory.stop()  # finish() has given up on it: it must not outlive the run

    def finish(self, *, wait: bool = True) -> tuple[GpuFacts, list[GpuMemoryPeak]]:
        """The facts, and each GPU's memory peak (none when not sampled), once pytest is over.
        With `wait`, waits for the probe when pytest ended first (nvidia-smi's own timeouts
        bound it); without, takes what it has found (a cancel)."""
        self._thread.join(None if wait else 0)
        with self._lock:
            self._given_up = True
            gpu, memory = self._gpu, self._memory
        if gpu is None:
            why = (
                "probing failed"
                if wait
                else "nvidia-smi had not answered when the run was cancelled"
            )
            gpu = GpuFacts(False, [], None, f"no GPU visible: {why}")
        return gpu, memory.stop() if memory is not None else []


def _remove_in_background(folder: Path) -> None:
    """Remove the run's folder (pytest's JUnit file and the record: 64 MB at 100,000 tests) in a
    thread of its own: the kernel's freeing of their pages (6 ms there, 60 ms at a million) then
    overlaps the host's parse instead of coming before it. Not a daemon thread: the interpreter
    waits for it before it exits."""
    threading.Thread(
        target=shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True}, name="remove-run"
    ).start()


def _one_at_a_time(
    callback: Callable[[list[dict[str, Any]]], None],
) -> Callable[[list[dict[str, Any]]], None]:
    """`callback`, called by one thread at a time."""
    lock = threading.Lock()

    def guarded(records: list[dict[str, Any]]) -> None:
        with lock:
            callback(records)

    return guarded


def _pytest_command(request: RunRequest, scratch: Path) -> list[str]:
    plugins = scratch / "plugins"
    shutil.copytree(
        PACKAGE, plugins / PACKAGE_COPY, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
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
        command += ["-p", SHARDING_PLUGIN]
        command += ["--shard-index", str(request.shard_index)]
        command += ["--shard-count", str(request.shard_count)]
        if request.shard_plan is not None:
            plan = scratch / "shard-plan.json"
            plan.write_text(json.dumps(request.shard_plan), encoding="utf-8")
            # One token: a path given as its own argument would move pytest's rootdir, and
            # every test id with it, when the file lies outside the project.
            command.append(f"--shard-plan={plan}")
    return command


def _result(
    request: RunRequest,
    gpu: GpuFacts,
    exited: process.Exited,
    scratch: Path,
    junit_open: bool = False,
) -> RunResult:
    state = read_state(scratch / "progress.jsonl")
    returncode = exited.returncode
    during = f" while running {state.running}" if state.running else ""
    finished, started_session = state.finished, state.started
    crashed = None
    if exited.stopped is None:
        if returncode < 0:
            name = process.signal_name(-returncode)
            crashed = f"pytest was killed by signal {-returncode} ({name})"
        elif returncode not in PYTEST_EXIT_MEANINGS:
            crashed = f"pytest exited with code {returncode}"
            crashed += "" if finished else " without finishing its report"
        elif not started_session and returncode != 4:
            crashed = f"pytest exited with code {returncode} before starting the test session"
        elif started_session and not finished:
            crashed = f"pytest exited with code {returncode} without finishing its report"
        if crashed:
            crashed += during
    if exited.stopped == "timeout":
        stopped_by = f"reached {request.timeout_cause}" if request.timeout_cause else "timed out"
        reason = f"pytest {stopped_by} after {request.timeout_seconds:g} s and was stopped{during}"
    elif exited.stopped == "cancel":
        reason = f"the run was cancelled{during}"
    else:
        reason = crashed or ""
    if not reason and returncode in (2, 3, 4):
        reason = f"pytest exited with code {returncode} ({PYTEST_EXIT_MEANINGS[returncode]})"
    tail = process.summarise_tail(exited.tail)
    junit = choose_junit(
        scratch / "junit.xml", scratch / "progress.jsonl", reason, tail, open_file=junit_open
    )
    return RunResult(
        junit_xml=junit if isinstance(junit, bytes) else b"",
        junit_file=None if isinstance(junit, bytes) else junit,
        exit_code=returncode if returncode >= 0 else None,
        duration_seconds=round(exited.seconds, 3),
        gpu=gpu,
        ending=_ending(exited, started_session, crashed is not None),
        output_tail=tail,
        shard_index=request.shard_index,
        shard_count=request.shard_count,
        label=request.label,
        problem=reason or None,
    )


def _ending(exited: process.Exited, started_session: bool, crashed: bool) -> Ending:
    if exited.stopped == "timeout":
        return Ending.TIMED_OUT
    if exited.stopped == "cancel":
        return Ending.CANCELLED
    code = exited.returncode
    if code in (3, 4) or (code in PYTEST_EXIT_MEANINGS and not started_session):
        return Ending.COULD_NOT_RUN
    return Ending.CRASHED if crashed else Ending.FINISHED


def exit_status(result: RunResult, fail_on_empty: bool = True) -> int:
    """0 the tests passed, 1 they did not (see the module's docstring)."""
    if result.problem:
        return 1
    if result.exit_code == 0 or (result.no_tests and not fail_on_empty):
        return 0
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modal_gpu_action.container",
        description="Run pytest once and write its JUnit XML and run facts.",
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
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: cancel.set())
    try:
        result = run_tests(request, stream=None if args.quiet else "stdout", cancel_event=cancel)
    except RunnerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    target = Path(args.result)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(result.to_json(), encoding="utf-8")
    os.replace(partial, target)
    return exit_status(result, request.fail_on_empty)
