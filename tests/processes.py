"""Helpers for tests that start, wait for and stop processes (the `hang` fixture project)."""

from __future__ import annotations

import time
from pathlib import Path


def wait_for_file(path: Path, timeout: float = 30.0) -> None:
    """Wait until `path` exists (a fixture test writes it once it is hanging)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def process_gone(pid: int) -> bool:
    """No such process, or only a zombie left for a parent (here: init) to reap."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def processes_with(mark: str, wait: float = 3.0) -> list[int]:
    """Processes whose environment holds `mark` (the env input's value reaches every process of
    the tests), after giving them `wait` seconds to go."""
    deadline = time.monotonic() + wait
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and mark.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
