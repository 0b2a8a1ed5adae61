"""The run's result on one screen, as the console shows it at the end of the log."""

from __future__ import annotations

from collections.abc import Sequence

from modal_gpu_action.outcome import RunOutcome
from modal_gpu_action.render.durations import format_duration
from modal_gpu_action.render.failures import explanation
from modal_gpu_action.report.headline import first_line, result_headline
from modal_gpu_action.settings import Settings

TITLE = "GPU tests"


def one_screen(outcome: RunOutcome, settings: Settings, notes: Sequence[str] = ()) -> str:
    """The result as the console shows it at the end of the log: counts as pytest gives them,
    the run's problems, then each failure by its node id (what `pytest` takes to run it again)
    with the line that explains it."""
    report = outcome.report
    totals = report.totals
    counts = (
        f"{totals.shown_passed} passed, {totals.failed} failed, {totals.errors}"
        f" error{_s(totals.errors)}, {totals.shown_skipped} skipped"
    )
    if totals.not_run:
        counts += f", {totals.not_run} not run"
    if totals.flaky:
        counts += f" ({totals.flaky} of the passed flaky)"
    lines = [
        "",
        f"{TITLE}: {outcome.conclusion.value.upper()}",
        f"  {totals.tests} test{_s(totals.tests)}: {counts} in {format_duration(report.wall_time)}",
    ]
    subtests = report.subtests
    if subtests.total:
        lines.append(
            f"  {subtests.total} subtest{_s(subtests.total)}: {subtests.passed} passed,"
            f" {subtests.failed} failed, {subtests.skipped} skipped"
        )
    lines += [f"  {note}" for note in notes]
    for label, value in outcome.facts:
        lines.append(f"  {label}: {value}")
    for problem in report.problems[:10]:
        message = first_line(problem.message)
        lines.append(f"  PROBLEM {problem.where}: {message[:300]}")
    if len(report.problems) > 10:
        lines.append(f"  ... and {len(report.problems) - 10} more problems")
    for case in report.failures[:10]:
        explained = first_line(explanation(case))
        more = f" (and {len(case.more)} more)" if case.more else ""
        lines.append(f"  {case.outcome.upper()} {case.id}: {explained[:200]}{more}")
    if len(report.failures) > 10:
        lines.append(f"  ... and {len(report.failures) - 10} more")
    for case in report.flaky[:10]:
        first = first_line(result_headline(case.reruns[0]))
        lines.append(f"  FLAKY {case.id}: passed on a re-run; first failed: {first[:200]}")
    if totals.not_run:
        lines.append(f"  NOT RUN: {totals.not_run} test{_s(totals.not_run)} never started")
    lines.append(f"  JUnit XML: {settings.junit_xml}")
    return "\n".join(lines)


def _s(count: int) -> str:
    return "" if count == 1 else "s"
