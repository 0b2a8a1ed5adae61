"""TestReport: JUnit XML (pytest's and other producers') parsed into plain, immutable data.

Contract (other modules rely on it; keep the names):
- `Outcome`, `TestCase`, `Totals`, `TestReport` below.
- `parse_junit(source: str | Path | bytes, *, name: str = "") -> TestReport`: one file or XML text;
  refuses entity expansion and external entities (`JUnitError`); a truncated/empty document keeps
  every complete case and adds one ERROR case saying the report was cut short.
- `load_reports(paths) -> TestReport`: parse several files (shards) and merge; missing/unreadable
  file -> `JUnitFileError` naming it.
- `merge(reports) -> TestReport`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Outcome(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"
    XFAILED = "xfailed"
    XPASSED = "xpassed"


@dataclass(frozen=True, slots=True)
class TestCase:
    __test__ = False  # not a pytest test class

    classname: str
    name: str
    outcome: Outcome
    duration: float = 0.0
    message: str = ""
    detail: str = ""
    file: str | None = None
    line: int | None = None

    @property
    def id(self) -> str:
        return f"{self.classname}.{self.name}" if self.classname else self.name


@dataclass(frozen=True, slots=True)
class Totals:
    tests: int
    passed: int
    failed: int
    errors: int
    skipped: int
    xfailed: int
    xpassed: int
    duration: float


@dataclass(frozen=True, slots=True)
class TestReport:
    __test__ = False

    cases: tuple[TestCase, ...] = ()
    wall_time: float = 0.0
    sources: tuple[str, ...] = field(default=())
