"""The local Modal server of ../shared/modal-mock for a test module, and our CLI run against it.

The mock is Modal's own test servicer with emulated containers (its README). It was written for
the 1.5.4 client, so the CLI under test runs with `uv run --with modal==1.5.4` laid over this
project's environment (two uv environments in all: the mock's and the client's). The emulated
containers run on the mock's Python, which has pytest and modal but none of our dependencies:
what the container needs of ours is only what the Modal backend adds at container start.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODAL_CLIENT = "modal==1.5.4"
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MOCK = SHARED / "modal-mock" / "modal_mock.py"
MOCK_PACKAGES = (MODAL_CLIENT, "pytest", "pytest-asyncio", "PyJWT")


def why_unavailable() -> str | None:
    """Why the mock cannot run on this machine, or None. Each reason is a skip that says so."""
    if not MOCK.is_file():
        return f"the Modal mock is not at {MOCK} (CI keeps ../shared beside the clone)"
    if shutil.which("uv") is None:
        return "uv is not on PATH: the mock and the 1.5.4 client run through `uv run --with`"
    if shutil.which("unshare") is None:
        return "`unshare` is missing: the mock's emulated containers need it"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return (
            "`unshare --mount` fails here (the mock's containers need root and a private mount"
            f" namespace): {probe.stderr.strip()}"
        )
    return None


def image_cache_folder(tmp: Path) -> Path:
    """A folder for the mock's image layers: under `tmp`, unless `/` is an overlay (Docker) on
    the same filesystem, where the kernel refuses layer folders: then under /dev/shm (the mock's
    README says so). The caller removes it."""
    root_is_overlay = any(
        line.split()[4] == "/" and line.split(" - ")[1].split()[0] == "overlay"
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )
    if root_is_overlay and tmp.stat().st_dev == Path("/").stat().st_dev:
        return Path(tempfile.mkdtemp(prefix="modal-mock-images-", dir="/dev/shm"))
    folder = tmp / "modal-image-cache"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without GitHub's, the action's inputs and Modal's settings
    (CI itself runs on GitHub Actions: the CLI under test must not write to its summary)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GITHUB_", "INPUT_", "MODAL_", "RUNNER_", "PYTEST_", "ACTIONS_"))
        and key not in ("CI", "VIRTUAL_ENV")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class ModalMock:
    """One mock server: `start()`, `env()` for the client, `state()` its record, `stop()`.

    With `build_images`, it builds every image the client defines for real (base Python, RUN
    steps with the package registries reachable) and runs each call in the image's own Python;
    `image_cache` keeps the layers for the servers that share it (one folder per test session:
    tests/test_modal_built_images.py), `registries` maps registry images to this machine
    (`NAME=host`)."""

    def __init__(
        self,
        folder: Path,
        *,
        build_images: bool = False,
        image_cache: Path | None = None,
        registries: Sequence[str] = (),
    ) -> None:
        self.folder = folder
        self.state_path = folder / "modal-state.json"
        self.log_path = folder / "modal-mock.log"
        self.process: subprocess.Popen[str] | None = None
        self.credentials: dict[str, str] = {}
        self.build_images = build_images
        self.image_cache = image_cache
        self.registries = tuple(registries)

    def start(self, timeout: float = 180.0) -> None:
        command = ["uv", "run", "--no-project"]
        for package in MOCK_PACKAGES:
            command += ["--with", package]
        command += ["python", str(MOCK), "--state", str(self.state_path), "--seconds", "1800"]
        if self.build_images:
            command.append("--build-images")
            if self.image_cache is not None:
                command += ["--image-cache", str(self.image_cache)]
            for registry in self.registries:
                command += ["--registry", registry]
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                env=clean_environ(),
                start_new_session=True,  # its containers and uv's child go with its group
            )
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError(f"the Modal mock did not start: {self.log_path.read_text()[-3000:]}")
        self.credentials = json.loads(self.process.stdout.readline())

    def env(self) -> dict[str, str]:
        return {
            "MODAL_SERVER_URL": self.credentials["url"],
            "MODAL_TOKEN_ID": self.credentials["token_id"],
            "MODAL_TOKEN_SECRET": self.credentials["token_secret"],
        }

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_path.read_text())
        return data

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def __enter__(self) -> ModalMock:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[ModalMock]:
    """A plain mock server for a test module's fixture (the host's Python runs the calls)."""
    with ModalMock(folder) as server:
        yield server


@contextlib.contextmanager
def serving_built_images(folder: Path) -> Iterator[ModalMock]:
    """A mock server that builds the images (with a layer cache of its own, removed after) and
    runs each call in the image's own Python."""
    cache = image_cache_folder(folder)
    (folder / "server").mkdir(exist_ok=True)
    try:
        with ModalMock(folder / "server", build_images=True, image_cache=cache) as server:
            yield server
    finally:
        shutil.rmtree(cache, ignore_errors=True)


@dataclass
class Since:
    """What the mock recorded after a point: the new calls, images and apps, and the function
    definition in force (the record keeps the latest definition per function name)."""

    calls: list[dict[str, Any]]
    images: list[dict[str, Any]]
    apps: list[dict[str, Any]]
    cancelled: list[str]
    function: dict[str, Any] = field(default_factory=dict)


def since(before: Mapping[str, Any], after: Mapping[str, Any]) -> Since:
    return Since(
        calls=after["calls"][len(before["calls"]) :],
        images=[after["images"][k] for k in sorted(after["images"], key=int)][
            len(before["images"]) :
        ],
        apps=after["apps"][len(before["apps"]) :],
        cancelled=after["cancelled"][len(before["cancelled"]) :],
        function=after["functions"].get("run_shard", {}),
    )


def client_command(*args: str) -> list[str]:
    """`python ARGS` in this checkout's environment with the 1.5.4 client laid over it."""
    return ["uv", "run", "--project", str(REPO), "--frozen", "--quiet", "--with", MODAL_CLIENT,
            "python", *args]  # fmt: skip


def cli_command(*args: str) -> list[str]:
    """`modal-gpu-action ARGS` under the 1.5.4 client, from this checkout."""
    return client_command("-m", "modal_gpu_action", *args)


@dataclass
class Run:
    returncode: int
    lines: list[tuple[float, str]]  # (seconds since start, line) as they arrived
    seconds: float

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def first(self, text: str) -> float:
        """When the first line holding `text` arrived (seconds since start)."""
        return next(at for at, line in self.lines if text in line)


def run_cli(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float = 120.0,
    on_line: Callable[[float, str, subprocess.Popen[bytes]], None] | None = None,
    on_start: Callable[[subprocess.Popen[bytes], float], None] | None = None,
) -> Run:
    """Run the CLI, reading its output (stderr merged) line by line as it comes. `on_line` is
    called with each line; `on_start`, in a thread of its own, with the process and the time it
    started (for what waits on something other than the output)."""
    started = time.monotonic()
    process = subprocess.Popen(
        cli_command(*args),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its group is killed whole if a test gives up on it
    )
    assert process.stdout is not None
    if on_start is not None:
        threading.Thread(target=on_start, args=(process, started), daemon=True).start()
    lines: list[tuple[float, str]] = []
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    buffer = b""
    try:
        while True:
            left = timeout - (time.monotonic() - started)
            if left <= 0:
                shown = "\n".join(line for _, line in lines[-60:])
                raise TimeoutError(f"the CLI ran past {timeout} s; its output ended:\n{shown}")
            if not selector.select(min(left, 0.5)):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                at = time.monotonic() - started
                line = raw.decode("utf-8", "replace")
                lines.append((at, line))
                if on_line is not None:
                    on_line(at, line, process)
        returncode = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if buffer:
        lines.append((time.monotonic() - started, buffer.decode("utf-8", "replace")))
    return Run(returncode, lines, time.monotonic() - started)
