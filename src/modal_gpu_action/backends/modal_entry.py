"""What runs inside the Modal container: install the project without its dependencies, then the
runner, and hand back its RunResult as a plain dict.

Modal imports this module in the container by its name (the whole `modal_gpu_action` package is
added at container start), so it and what it imports must need the standard library only:
`modal_gpu_action/__init__.py`, `backends/__init__.py`, `runner.py` and `sharding.py`. The image
holds the user's dependencies, never ours.

The function never raises for the tests' sake: failing tests are a normal result. Problems that
retrying cannot fix (no pytest in the image, the project does not install) come back as
`{"error": ...}`, so Modal's retries (meant for lost containers) are not spent on them. Anything
else that goes wrong raises, and Modal retries it as it retries a preempted container.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# Set in the setup dict by backends/modal.py; the keys are the contract between the two sides.
SETUP_PROJECT = "project"  # the project's folder in the container
SETUP_INSTALL = "install_project"  # True: `pip install --no-deps -e` it first
SETUP_LINKS = "links"  # [[path, target], ...]: the project's links, recreated first
INSTALL_TAIL_LINES = 30


def run_shard(request: dict[str, Any], setup: dict[str, Any]) -> dict[str, Any]:
    """Run one shard in this container: {"result": RunResult dict, "seconds": s} or
    {"error": one line, "detail": log tail, "seconds": s}."""
    started = time.monotonic()
    from modal_gpu_action import runner

    label = str(request.get("label") or "")
    prefix = f"[{label}] " if label else ""
    if importlib.util.find_spec("pytest") is None:
        return _error(
            f"pytest is not installed in the image's Python ({sys.executable})", "", started
        )
    for link_problem in make_links(str(setup[SETUP_PROJECT]), setup.get(SETUP_LINKS) or []):
        print(f"{prefix}modal-gpu-action: warning: {link_problem}", file=sys.stderr, flush=True)
    if setup.get(SETUP_INSTALL):
        # The `env` input applies to the install too (a private index, offline wheels).
        problem, tail = install_project(str(setup[SETUP_PROJECT]), prefix, request.get("env"))
        if problem:
            return _error(problem, tail, started)
    cancel = threading.Event()
    with OrphanGuard() as guard:
        try:
            result = runner.run_tests(
                runner.RunRequest.from_dict(request), stream="stdout", cancel_event=cancel
            )
        except runner.RunnerError as error:
            return _error(str(error), "", started)
        except BaseException:  # Modal cancelled the input or stops the container
            cancel.set()
            guard.kill_now()
            raise
    return {"result": result.to_dict(), "seconds": round(time.monotonic() - started, 3)}


def make_links(project: str, links: list[list[str]]) -> list[str]:
    """Recreate the project's links under `project`: only the uploaded files travel (never a link,
    whose target Modal would read on the runner), and the client allowed only links that resolve
    inside the project to something uploaded. Checked again here: a relative link, placed and
    pointing inside `project`, in a folder that is not itself a link. Returns the problems, one
    line each (the tests that need a link then fail and say so)."""
    root = os.path.realpath(project)
    problems: list[str] = []
    for item in links:
        # (list, tuple), not list | tuple: this runs on the image's Python, 3.9 included.
        if not (isinstance(item, (list, tuple)) and len(item) == 2):
            problems.append(f"link entry {item!a} is not [path, target]")
            continue
        path, target = str(item[0]), str(item[1])
        place = os.path.normpath(os.path.join(root, path))
        parent = os.path.dirname(place)
        lands = os.path.normpath(os.path.join(parent, target))
        steps = target.split("/")
        climbs = len(steps) - len(list(itertools.dropwhile(lambda step: step == "..", steps)))
        if (
            os.path.isabs(path)
            or os.path.isabs(target)
            or ".." in steps[climbs:]  # the client writes (../)*name/name: `..` only leads
            or ".git" in path.split("/")
            or not place.startswith(root + os.sep)
            or not (lands == root or lands.startswith(root + os.sep))
        ):
            problems.append(f"link {path!a} -> {target!a} not made: it leaves the project")
            continue
        try:
            os.makedirs(parent, exist_ok=True)
            if os.path.realpath(parent) != parent:
                problems.append(f"link {path!a} not made: its folder is a link")
                continue
            os.symlink(target, place)
        except OSError as error:
            problems.append(f"link {path!a} -> {target!a} not made: {error}")
    return problems


def install_project(
    project: str, prefix: str = "", extra_env: dict[str, str] | None = None
) -> tuple[str | None, str]:
    """`uv pip install --no-deps -e PROJECT` (uv when the image has it: Modal's uv_sync and
    uv_pip_install leave it at /.uv/uv), else `python -m pip install --no-deps -e PROJECT`.
    Output streams to the log; returns (a one-line problem or None, the output's last lines)."""
    uv = shutil.which("uv") or next((p for p in ("/.uv/uv",) if os.access(p, os.X_OK)), None)
    if uv:
        command = [uv, "pip", "install", "--python", sys.executable, "--no-deps", "-e", project]
    else:
        command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "-e", project]
    env = {**os.environ, "PIP_BREAK_SYSTEM_PACKAGES": "1", "UV_BREAK_SYSTEM_PACKAGES": "1"}
    env.update(extra_env or {})
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    print(f"{prefix}modal-gpu-action: installing the project: {' '.join(command)}", flush=True)
    tail: collections.deque[str] = collections.deque(maxlen=INSTALL_TAIL_LINES)
    try:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as error:
        return f"could not install the project: {error}", ""
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        tail.append(line)
        print(f"{prefix}{line}", flush=True)
    code = process.wait()
    if code != 0:
        lines = [line.strip() for line in tail if line.strip()]
        # uv marks its error with U+00D7, pip with "ERROR:".
        marked = [line for line in lines if line.startswith(("\u00d7", "ERROR", "error"))]
        cause = (marked or lines[-1:] or [""])[0]
        return (
            f"the project did not install (`{' '.join(command[:3])} ... -e .` exited with {code})"
            + (f": {cause}" if cause else ""),
            "\n".join(tail),
        )
    return None, "\n".join(tail)


def _error(message: str, detail: str, started: float) -> dict[str, Any]:
    print(f"modal-gpu-action: error: {message}", file=sys.stderr, flush=True)
    return {"error": message, "detail": detail, "seconds": round(time.monotonic() - started, 3)}


class OrphanGuard:
    """Stops pytest when this process dies without stopping it itself.

    The runner starts pytest in a session of its own (so it can stop pytest and everything pytest
    started as one group). A container that is killed outright (SIGKILL to its processes, as the
    local Modal emulator does on cancel) takes this process down before it can signal that group;
    Modal's own containers are torn down whole, so there it changes nothing. A small watcher
    process in its own session polls the runner's children; when this process is gone, it sends
    SIGKILL to their process groups.
    """

    def __init__(self) -> None:
        self._watcher: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> OrphanGuard:
        package_root = str(Path(__file__).resolve().parents[2])
        code = (
            f"import sys; sys.path.insert(0, {package_root!r}); "
            "from modal_gpu_action.backends.modal_entry import watch_parent; "
            f"watch_parent({os.getpid()})"
        )
        with contextlib.suppress(OSError):
            self._watcher = subprocess.Popen(
                [sys.executable, "-c", code],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._watcher is not None:
            with contextlib.suppress(OSError):
                self._watcher.kill()
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self._watcher.wait(timeout=2)

    def kill_now(self) -> None:
        """SIGKILL the process groups of this process's session-leading children (pytest)."""
        watcher = self._watcher.pid if self._watcher is not None else None
        for group in child_groups(os.getpid()) - {watcher}:
            with contextlib.suppress(OSError):
                os.killpg(group, signal.SIGKILL)


def child_groups(parent: int) -> set[int]:
    """Process groups led by direct children of `parent` that started their own session."""
    groups: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        # after "pid (comm)": state ppid pgrp session ...
        if len(fields) >= 4 and int(fields[1]) == parent and int(fields[2]) == int(entry.name):
            groups.add(int(entry.name))
    return groups


def watch_parent(parent: int, poll_seconds: float = 0.2) -> None:
    """Run by the watcher process: note the parent's session-leading children while the parent
    lives; once it is gone, SIGKILL their groups."""
    seen: set[int] = set()
    while os.getppid() == parent:
        seen |= child_groups(parent)
        time.sleep(poll_seconds)
    seen.discard(os.getpid())  # this watcher is one of them: it must not stop itself first
    for group in seen:
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)
