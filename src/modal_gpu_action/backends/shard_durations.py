"""The `shard-durations` file, read once on the host: a previous run's JUnit report, parsed by the
report's own reader, whose test times balance the shards (container/balance.py deals them out;
each shard is sent the plan, never the file).

The engine's warning and the backends' requests ask for the same file: it is parsed once
(`read_durations` keeps its last answer for the same file unchanged on disk).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

from modal_gpu_action.container.balance import ShardPlan
from modal_gpu_action.report.junit_reader import JUnitFileError, read_junit


@dataclasses.dataclass(frozen=True)
class Durations:
    """The known tests' (classname, name, seconds), or why there are none ("" when usable)."""

    cases: tuple[tuple[str, str, float], ...] = ()
    unusable: str = ""

    def plan(self, count: int) -> ShardPlan | None:
        """The known tests dealt out over `count` shards; None when unusable or one shard."""
        if self.unusable or count <= 1:
            return None
        return ShardPlan.balance(self.cases, count)


def read_durations(path: Path) -> Durations:
    """The file's durations; a file that cannot be read, is not JUnit or holds no test case is
    `unusable` (the shards then fall back to test ids)."""
    try:
        status = os.stat(path)
    except OSError as error:
        return Durations(unusable=f"it cannot be read ({error.strerror or error})")
    return _read(str(path), status.st_mtime_ns, status.st_size)


@functools.lru_cache(maxsize=2)
def _read(path: str, mtime_ns: int, size: int) -> Durations:
    try:
        report = read_junit(path)
    except JUnitFileError as error:
        return Durations(unusable=error.reason)
    cases = tuple(
        (case.classname, case.name, case.duration) for case in report.cases if not case.collection
    )
    if not cases:
        why = report.problems[0].message if report.problems else "it holds no test case"
        return Durations(unusable=why)
    return Durations(cases)
