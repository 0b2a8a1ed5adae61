"""A command (pytest, the project's install) in a process group of its own: its output streamed
line by line, stopped at a timeout or on a cancel, and nothing of it left running afterwards.

This process owns that group and is the only one to signal it:
- timeout or cancel event: SIGTERM to the whole group, SIGKILL after a grace period;
- an exception while waiting (Modal cancelling the input, KeyboardInterrupt): SIGKILL at once,
  then the exception goes on;
- the command ended by itself: whatever it left running in its group is SIGKILLed too (a test's
  stray server would otherwise hold the output pipe open).
The group is signalled while its leader is still an unreaped zombie, so its id cannot have been
reused. Processes that start a session of their own escape, as they escape any group kill. When
this process itself is killed outright, pytest goes with it: the progress plugin asks the kernel
for that (progress.py). POSIX only.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Literal, TextIO, Union

TAIL_LINES = 50
MAX_LINE_CHARS = 4000  # of one streamed line kept in the tail
DEFAULT_KILL_GRACE_SECONDS = 5.0
CANCEL_CHECK_SECONDS = 0.05  # how often a wait looks at the cancel event

# Where output goes live: "stdout" (the current sys.stdout, looked up when the run starts), a
# stream, or None (nowhere).
Stream = Union[TextIO, None, Literal["stdout"]]
Stopped = Literal["timeout", "cancel"]

_STREAM_LOCK = threading.Lock()  # shards running in threads share one stream: whole lines only


@dataclasses.dataclass(frozen=True)
class Exited:
    """How the command's process ended: its return code (negative: killed by that signal),
    whether we stopped it and why, how long it ran, and its last lines of output."""

    returncode: int
    stopped: Stopped | None
    seconds: float
    tail: list[str]


def run_in_own_group(
    command: Sequence[str],
    *,
    env: dict[str, str],
    cwd: str | None = None,
    out: TextIO | None = None,
    prefix: str = "",
    timeout: float | None = None,
    cancel_event: threading.Event | None = None,
    kill_grace_seconds: float = DEFAULT_KILL_GRACE_SECONDS,
    keep_lines: int = TAIL_LINES * 4,
    on_started: Callable[[], object] | None = None,
) -> Exited:
    """Run `command` in a new session, its stdout and stderr merged and copied to `out` line by
    line (each prefixed), until it ends, `timeout` seconds pass or `cancel_event` is set;
    `on_started` is called once it runs. Raises OSError when it cannot be started."""
    started = time.monotonic()
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: we stop it and all it started
    )
    assert process.stdout is not None
    tail: collections.deque[str] = collections.deque(maxlen=keep_lines)
    pump = threading.Thread(target=_pump, args=(process.stdout, out, prefix, tail), daemon=True)
    pump.start()
    try:
        if on_started is not None:
            on_started()
        stopped = _wait_unreaped(process.pid, started, timeout, cancel_event)
        if stopped:
            _signal_group(process.pid, signal.SIGTERM)
            _wait_unreaped(process.pid, time.monotonic(), kill_grace_seconds, None)
    except BaseException:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()
        raise
    # The leader has exited (or is past its grace) but is not reaped yet: its group id is still
    # ours, so this cannot reach an unrelated group. Leftover children go with it.
    _signal_group(process.pid, signal.SIGKILL)
    returncode = process.wait()
    seconds = time.monotonic() - started
    pump.join(timeout=2.0)  # a process that left the group may hold the pipe: don't wait on it
    return Exited(returncode, stopped, seconds, list(tail))


def _wait_unreaped(
    pid: int, started: float, timeout: float | None, cancel_event: threading.Event | None
) -> Stopped | None:
    """Wait until `pid` exits, leaving it unreaped (WNOWAIT); "timeout" or "cancel" when either
    comes first. The exit is seen the moment it happens (a thread blocks in waitid for it); a
    cancel within CANCEL_CHECK_SECONDS, a timeout on time."""
    if timeout is None and cancel_event is None:
        _waitid(pid)
        return None
    exited = threading.Event()

    def wait_for_exit() -> None:
        _waitid(pid)
        exited.set()

    # A daemon: after a timeout or cancel it is still blocked until the group is killed.
    threading.Thread(target=wait_for_exit, name=f"waitid-{pid}", daemon=True).start()
    deadline = None if timeout is None else started + timeout
    while True:
        wait = CANCEL_CHECK_SECONDS if deadline is None else deadline - time.monotonic()
        if exited.wait(max(0.0, min(wait, CANCEL_CHECK_SECONDS))):
            return None
        if cancel_event is not None and cancel_event.is_set():
            return "cancel"
        if deadline is not None and time.monotonic() >= deadline:
            return "timeout"


def _waitid(pid: int) -> None:
    """Block until `pid` has exited (it stays a zombie until Popen.wait reaps it)."""
    while True:
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            return
        except InterruptedError:
            continue
        except ChildProcessError:  # reaped already
            return


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "unknown signal"


def _pump(pipe: IO[bytes], out: TextIO | None, prefix: str, tail: collections.deque[str]) -> None:
    """Copy the output line by line to `out` and the tail; never stop draining the pipe."""
    for raw in iter(lambda: pipe.readline(65536), b""):
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        tail.append(line[:MAX_LINE_CHARS])
        if out is not None and not write_line(out, prefix + line):
            out = None
    pipe.close()


def write_line(out: TextIO | None, line: str) -> bool:
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


def resolve(stream: Stream) -> TextIO | None:
    """The stream a `Stream` names, now."""
    return sys.stdout if stream == "stdout" else stream


# A faulthandler frame inside pytest's or pluggy's machinery: noise under a crash or timeout dump.
_MACHINERY_FRAME = re.compile(
    r'^\s+File "(?:[^"]*/(?:_pytest|pluggy)/[^"]*|[^"]*/pytest/__main__\.py|<frozen runpy>)", '
    r"line \d+ in "
)


def summarise_tail(lines: Sequence[str], keep: int = TAIL_LINES) -> str:
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
