"""This run against an earlier one: the previous run's state kept in our PR comment section, or
any JUnit file (`compare-to`). Pure functions; the earlier side may be bounded (test_state.py).

What is compared, and how sure it is:
- each count, always (the counts are kept whole);
- new failures: failing (failed or errored) now, not failing then, for the tests the earlier
  state covers (all of them, unless its lists were cut at `bound`); the failing tests beyond it
  are `unsure`: whether they failed then too is not known, and the reports say so;
- fixed: failing then (among those kept), passed now (xpassed included); exact;
- added and removed: exact while the earlier run's list of all ids was kept; past that only
  whether the set changed (its digest) and the count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modal_gpu_action.report.junit_reader import JUnitFileError, read_junit
from modal_gpu_action.report.redaction import redact_report
from modal_gpu_action.report.results import CaseOutcome, TestReport
from modal_gpu_action.report.test_state import TestState, clip_id, state_of

COUNTS = ("tests", "passed", "failed", "errors", "skipped")


@dataclass(frozen=True, slots=True)
class Changes:
    """The difference between this run and an earlier one (`against` names it for people:
    "the previous run", or the file's name)."""

    against: str
    now: TestState
    earlier: TestState
    new_failures: tuple[str, ...]  # sorted
    unsure: tuple[str, ...]  # failing now, beyond what the earlier state covers
    still_failing: tuple[str, ...]  # failing now and then
    fixed: tuple[str, ...]  # failing then, passed now
    added: tuple[str, ...] | None  # None: not known (the earlier list of ids was not kept)
    removed: tuple[str, ...] | None
    # the set of test ids differs (from the digest when the lists were cut); None: not known
    tests_changed: bool | None
    from_file: bool = False  # `compare-to`: a JUnit file, complete

    def delta(self, name: str) -> tuple[int, int]:
        """(now, now minus then) of one of COUNTS."""
        now, then = getattr(self.now, name), getattr(self.earlier, name)
        return now, now - then


def compare(
    report: TestReport, earlier: TestState, *, against: str, from_file: bool = False
) -> Changes:
    """This run's report against an earlier run's (possibly bounded) state."""
    now = state_of(report)
    outcomes = {clip_id(case.id): case.outcome for case in report.cases}
    failing_now = now.failing_ids
    failing_then = earlier.failing_ids
    fixed = sorted(test_id for test_id in failing_then if outcomes.get(test_id) in _PASSED)
    added: tuple[str, ...] | None = None
    removed: tuple[str, ...] | None = None
    ids_now = now.all_ids or frozenset()
    if earlier.all_ids is not None:
        added = tuple(sorted(ids_now - earlier.all_ids))
        removed = tuple(sorted(earlier.all_ids - ids_now))
    elif earlier.digest and earlier.digest == now.digest:
        added = removed = ()
    changed: bool | None = None
    if added is not None and removed is not None:
        changed = bool(added or removed)
    elif earlier.digest:
        changed = earlier.digest != now.digest
    return Changes(
        against=against,
        now=now,
        earlier=earlier,
        new_failures=tuple(sorted(i for i in failing_now - failing_then if earlier.covers(i))),
        unsure=tuple(sorted(i for i in failing_now - failing_then if not earlier.covers(i))),
        still_failing=tuple(sorted(failing_now & failing_then)),
        fixed=tuple(fixed),
        added=added,
        removed=removed,
        tests_changed=changed,
        from_file=from_file,
    )


def file_state(path: str | Path, secrets: Sequence[str] = ()) -> TestState:
    """The tests of a JUnit file to compare with (`compare-to`), `secrets` masked as in our own
    reports. JUnitFileError when it cannot be used, or is no JUnit report at all (it holds no
    test, only the reason it could not be read)."""
    report = read_junit(path)
    if report.problems and not report.cases:
        raise JUnitFileError(path, report.problems[0].message)
    return state_of(redact_report(report, list(secrets)))


_PASSED = frozenset({CaseOutcome.PASSED, CaseOutcome.XPASSED})
