"""The TestReport model: a run's JUnit results as plain, immutable data.

Contract (other modules rely on it; keep the names): `CaseOutcome` (a test case's), `TestCase`,
`CaseResult`, `Problem`, `Subtests`, `Totals`, `TestReport`. A report's `cases` are the tests,
counted in `totals`; its `problems` are the run's own (a crash, a timeout, a report cut short),
counted apart: they are not tests. junit_reader.py builds reports from JUnit XML; merging.py
merges the shards' reports into one.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import compress
from operator import attrgetter
from typing import Any

from modal_gpu_action.report.conclusion import Conclusion


class CaseOutcome(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"
    XFAILED = "xfailed"
    XPASSED = "xpassed"
    NOT_RUN = "not run"  # collected, never started: the run crashed, timed out or was cancelled


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One more failure or error of a test case beyond the one its outcome comes from (a unittest
    `subTest` or pytest `subtests` failure, a teardown error after a failed call)."""

    outcome: CaseOutcome
    message: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TestCase:
    __test__ = False  # not a pytest test class

    classname: str
    name: str
    outcome: CaseOutcome
    duration: float = 0.0
    message: str = ""
    detail: str = ""
    file: str | None = None
    line: int | None = None
    # pytest's node id, when the report lets us know it: what `pytest` takes to run this test again
    nodeid: str = ""
    # an entry for a module or class that failed or was skipped while pytest collected it
    collection: bool = False
    # the case's other failures and errors, in the report's order (`CaseResult`)
    more: tuple[CaseResult, ...] = ()
    # its failed runs besides the one its outcome comes from (Surefire's flakyFailure and
    # rerunFailure): for a test that passed on a re-run (`flaky`), every failed run, the first
    # first; for one that failed every re-run, the re-runs' failures
    reruns: tuple[CaseResult, ...] = ()

    @property
    def flaky(self) -> bool:
        """It failed, then passed on a re-run: it counts as passed."""
        return bool(self.reruns) and self.outcome not in _FAILING

    @property
    def id(self) -> str:
        """The node id when known (`tests/test_x.py::TestC::test_m[p]`), else `classname.name`."""
        if self.nodeid:
            return self.nodeid
        return f"{self.classname}.{self.name}" if self.classname else self.name

    @property
    def results(self) -> tuple[CaseResult, ...]:
        """Every failure and error of the case, its worst first (one for most failed cases)."""
        if self.outcome not in _FAILING:
            return self.more
        return (CaseResult(self.outcome, self.message, self.detail), *self.more)


class NodePrefix(str):
    """A node id's `path::classes`, shared by a class's cases (junit_case.py stores one in a
    `TestCase`'s nodeid slot): the case's `nodeid` is it, `::` and the case's name, made when
    read. A million node ids, each stored whole, would be a third of a large report's memory."""

    __slots__ = ()


def _nodeid_property(stored: Any) -> property:
    """`TestCase.nodeid` read through its slot (`stored`): a `NodePrefix` there is completed
    with the name, anything else is the node id itself. Written through the slot as given (the
    dataclass's __init__ does), so TestCase(..., nodeid="a::b") keeps that string."""
    get = stored.__get__

    def nodeid(case: TestCase) -> str:
        value: str = get(case)
        if type(value) is NodePrefix:
            return f"{value}::{case.name}"
        return value

    return property(nodeid, stored.__set__, doc="pytest's node id, or '' when not known.")


# Equality, hashing, repr, replace() and pickling all read the field by name, so they all see
# the whole node id, however it is stored.
_NODEID_SLOT = TestCase.__dict__["nodeid"]
setattr(TestCase, "nodeid", _nodeid_property(_NODEID_SLOT))  # noqa: B010 (typed: a str)

# The node id as stored: a NodePrefix (the whole id is it, `::` and the name) or the whole id.
# For the JUnit writer, which escapes a class's prefix once, not once per case.
stored_nodeid: Callable[[TestCase], str] = _NODEID_SLOT.__get__


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with the run itself, not a test: a shard that crashed, timed out or was
    cancelled, pytest stopped by collection errors, a report cut short or not written. Problems
    are counted apart from the tests and fail the run."""

    where: str  # "shard 1/2", "run", "JUnit report junit.xml", "junit-xml"
    message: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Subtests:
    """pytest's subtest counts (unittest `subTest`, the `subtests` fixture), as its summary line
    gives them: `21039 subtests passed`."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped

    def __add__(self, other: Subtests) -> Subtests:
        return Subtests(
            self.passed + other.passed, self.failed + other.failed, self.skipped + other.skipped
        )


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
    not_run: int = 0
    flaky: int = 0  # of the passed: tests that failed, then passed on a re-run

    # The counts people are shown (outputs, the matrix table, the log): an xpass is a pass and
    # an xfail a skip, as pytest's own summary line has it.
    @property
    def shown_passed(self) -> int:
        return self.passed + self.xpassed

    @property
    def shown_skipped(self) -> int:
        return self.skipped + self.xfailed


@dataclass(frozen=True, slots=True)
class TestReport:
    __test__ = False

    cases: tuple[TestCase, ...] = ()
    wall_time: float = 0.0
    sources: tuple[str, ...] = field(default=())
    problems: tuple[Problem, ...] = ()  # the run's, apart from the tests: not counted in totals
    subtests: Subtests = field(default_factory=Subtests)
    # What the properties below worked out, kept: the report is immutable, and rendering asks
    # for its totals, failures and flaky tests several times (each a pass over every case).
    _known: dict[str, Any] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @property
    def totals(self) -> Totals:
        known = self._known.get("totals")
        if known is None:
            known = self._known["totals"] = self._totals()
        return known

    def _totals(self) -> Totals:
        counts = Counter(map(attrgetter("outcome"), self.cases))
        return Totals(
            tests=len(self.cases),
            passed=counts[CaseOutcome.PASSED],
            failed=counts[CaseOutcome.FAILED],
            errors=counts[CaseOutcome.ERROR],
            skipped=counts[CaseOutcome.SKIPPED],
            xfailed=counts[CaseOutcome.XFAILED],
            xpassed=counts[CaseOutcome.XPASSED],
            duration=math.fsum(map(attrgetter("duration"), self.cases)),
            not_run=counts[CaseOutcome.NOT_RUN],
            flaky=len(self.flaky),
        )

    @property
    def failures(self) -> tuple[TestCase, ...]:
        """Failed and errored cases, in report order."""
        known = self._known.get("failures")
        if known is None:
            known = self._known["failures"] = tuple(
                case for case in self.cases if case.outcome in _FAILING
            )
        return known

    @property
    def flaky(self) -> tuple[TestCase, ...]:
        """Tests that failed, then passed on a re-run, in report order."""
        known = self._known.get("flaky")
        if known is None:
            rerun = compress(self.cases, map(_RERUNS, self.cases))  # few: picked out in C
            known = self._known["flaky"] = tuple(case for case in rerun if case.flaky)
        return known

    @property
    def conclusion(self) -> Conclusion:
        """FAILED when anything failed or errored, a test did not run or the run had a problem;
        NO_TESTS when nothing ran, else PASSED."""
        totals = self.totals
        if self.problems or totals.failed or totals.errors or totals.not_run:
            return Conclusion.FAILED
        return Conclusion.PASSED if self.cases else Conclusion.NO_TESTS

    def with_problem(self, where: str, message: str, detail: str = "") -> TestReport:
        """This report plus one problem of the run, e.g. "pytest was killed by signal 11"."""
        return replace(self, problems=(*self.problems, Problem(where, message, detail)))


_FAILING = frozenset({CaseOutcome.FAILED, CaseOutcome.ERROR})
_RERUNS = attrgetter("reruns")
