"""The shards' TestReports merged into one, as if the suite had run unsharded."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from modal_gpu_action.report.junit_reader import read_junit
from modal_gpu_action.report.results import CaseOutcome, Subtests, TestCase, TestReport


def load_reports(paths: Sequence[str | Path]) -> TestReport:
    """Read every file (one per shard) and merge them into one report; JUnitFileError names
    the first file that cannot be used."""
    return merge(read_junit(path) for path in paths)


def merge(reports: Iterable[TestReport]) -> TestReport:
    """One report with every case in order; shards run in parallel, so the longest wall time.

    Every shard collects the whole suite before it keeps its part, so each reports the modules
    that failed or were skipped at collection: such an entry (`TestCase.collection`) that an
    earlier report already holds is left out, and each counts once, as in an unsharded run."""
    reports = list(reports)
    if len(reports) == 1:  # nothing to merge: no copy of a large report's cases
        return reports[0]
    cases: list[TestCase] = []
    seen: set[tuple[str, str, CaseOutcome, str]] = set()
    for report in reports:
        mine: set[tuple[str, str, CaseOutcome, str]] = set()
        for case in report.cases:
            if case.collection:
                key = (case.classname, case.name, case.outcome, case.message)
                if key in seen:
                    continue
                mine.add(key)
            cases.append(case)
        seen |= mine
    return TestReport(
        cases=tuple(cases),
        wall_time=max((report.wall_time for report in reports), default=0.0),
        sources=tuple(source for report in reports for source in report.sources),
        problems=tuple(problem for report in reports for problem in report.problems),
        subtests=sum((report.subtests for report in reports), Subtests()),
    )
