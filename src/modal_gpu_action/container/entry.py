"""The Modal container's function: recreate the project's links, install the project (its build
backend and, unless they could not be read, its dependencies are in the image), run the shard, and
hand back its RunResult as a plain dict.

Modal imports this module in the container by its name (`modal_gpu_action.container.entry`; the
Modal backend adds the `modal_gpu_action` package when the container starts), so it and what it
imports need the standard library only: the image holds the user's dependencies, never ours.

The function never raises for the tests' sake: failing tests are a normal result. Problems that
retrying cannot fix (no pytest in the image, the project does not install) come back as
`{"error": ...}`, so Modal's retries (meant for lost containers) are not spent on them. Anything
else that goes wrong raises, and Modal retries it as it retries a preempted container.

Cancellation: Modal cancels an input by raising in the function, or by ending the container;
pytest's process group is stopped either way (process.py, progress.py). What a container that
never answers did is not lost with it: the crash record is relayed to the client through the
container's log while pytest runs (relay.py), and the client keeps the tests that finished.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import shutil
import sys
import time
from typing import Any

from . import process
from .protocol import RunnerError, RunRequest
from .relay import Relay
from .run import run_tests

# Set in the setup dict by the Modal backend; the keys are the contract between the two sides.
SETUP_PROJECT = "project"  # the project's folder in the container
SETUP_INSTALL = "install_project"  # True: install it first (`install_project`)
SETUP_INSTALL_DEPENDENCIES = "install_dependencies"  # True: with its dependencies (not all read)
SETUP_INSTALL_ENV = "install_env"  # {name: value} for that install: a git-versioned one's version
SETUP_LINKS = "links"  # [[path, target], ...]: the project's links, recreated first
SETUP_RELAY = "relay"  # this shard's token: the crash record is relayed as it grows (relay.py)
INSTALL_TAIL_LINES = 30
INSTALL_KEPT_LINES = 400  # of the install's output, searched for its error line
# A Python exception's last line (`LookupError: ...`, `pkg.errors.BuildError: ...`): what a build
# backend says went wrong, deep in uv's or pip's output.
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit)(?::\s.*)?$")


def run_shard(request: dict[str, Any], setup: dict[str, Any]) -> dict[str, Any]:
    """Run one shard in this container: {"result": RunResult dict, "seconds": s} or
    {"error": one line, "detail": log tail, "seconds": s}."""
    started = time.monotonic()
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
        problem, tail = install_project(
            str(setup[SETUP_PROJECT]),
            prefix,
            {**(setup.get(SETUP_INSTALL_ENV) or {}), **(request.get("env") or {})},
            with_dependencies=bool(setup.get(SETUP_INSTALL_DEPENDENCIES)),
        )
        if problem:
            return _error(problem, tail, started)
    token = setup.get(SETUP_RELAY)
    relayed = Relay(token).send if isinstance(token, str) and token else None
    try:
        result = run_tests(RunRequest.from_dict(request), stream="stdout", on_records=relayed)
    except RunnerError as error:
        return _error(str(error), "", started)
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
    project: str,
    prefix: str = "",
    extra_env: dict[str, str] | None = None,
    *,
    with_dependencies: bool = False,
) -> tuple[str | None, str]:
    """Install the project, editable, into this Python: its build backend is in the image (a
    cached layer), so without build isolation; and without its dependencies, offline, unless
    they could not all be read on the runner (`with_dependencies`). When that fails (a backend
    that asks for more while it builds: scikit-build-core's cmake), once more with build
    isolation, which fetches what the build asks for. uv when the image has it (the recipe's
    layers leave it at /.uv/uv), else pip. Output streams to the log; returns (a one-line
    problem or None, the output's last lines)."""
    uv = shutil.which("uv") or next((p for p in ("/.uv/uv",) if os.access(p, os.X_OK)), None)
    if uv:
        base = [uv, "pip", "install", "--python", sys.executable]
        offline = ["--offline"]
    else:
        base = [sys.executable, "-m", "pip", "install", "--no-input"]
        offline = ["--no-index"]
    without = [] if with_dependencies else ["--no-deps"]
    attempts = [
        [*base, "--no-build-isolation", *without, *([] if with_dependencies else offline)],
        [*base, *without],
    ]
    env = {**os.environ, "PIP_BREAK_SYSTEM_PACKAGES": "1", "UV_BREAK_SYSTEM_PACKAGES": "1"}
    env.update(extra_env or {})
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    problem, tail = None, ""
    for number, options in enumerate(attempts):
        command = [*options, "-e", project]
        print(f"{prefix}modal-gpu-action: installing the project: {' '.join(command)}", flush=True)
        try:
            exited = process.run_in_own_group(
                command, env=env, out=sys.stdout, prefix=prefix, keep_lines=INSTALL_KEPT_LINES
            )
        except OSError as error:
            return f"could not install the project: {error}", ""
        tail = "\n".join(exited.tail[-INSTALL_TAIL_LINES:])
        if exited.returncode == 0:
            return None, tail
        cause = install_failure(exited.tail)
        problem = (
            f"the project did not install (`{' '.join(command[:3])} ... -e .` exited with"
            f" {exited.returncode})" + (f": {cause}" if cause else "")
        )
        if number + 1 < len(attempts):
            print(
                f"{prefix}modal-gpu-action: warning: {problem}; trying again with build"
                " isolation (what the build asks for is fetched)",
                file=sys.stderr,
                flush=True,
            )
    return problem, tail


def install_failure(output: list[str]) -> str:
    """The cause of a failed install in one line: uv's or pip's own error line (`error: Failed to
    build ...`, `ERROR: ...`, `U+00D7 ...`) and the build backend's exception (`LookupError:
    setuptools-scm was unable to detect version ...`); never the generic `hint:` that ends uv's
    output."""
    lines = [line.strip() for line in output if line.strip()]
    marked = next((x for x in lines if x.startswith(("error:", "ERROR:", "\u00d7"))), "")
    raised = [x for x in lines if _EXCEPTION_LINE.match(x)]
    parts = [x for x in (marked, raised[-1] if raised else "") if x]
    if parts:
        return " | ".join(dict.fromkeys(parts))
    unhinted = [x for x in lines if not x.lower().startswith("hint:")]
    return (unhinted or lines or [""])[-1]


def _error(message: str, detail: str, started: float) -> dict[str, Any]:
    print(f"modal-gpu-action: error: {message}", file=sys.stderr, flush=True)
    return {"error": message, "detail": detail, "seconds": round(time.monotonic() - started, 3)}
