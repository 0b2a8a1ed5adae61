"""Markdown for the job summary and the sticky PR comment, from a TestReport.

Test names, messages and tracebacks come from the pull request's code, so every piece of them
goes through one of the escapers of escaping.py (re-exported here) before it reaches the
markdown: `escape_inline` for text, `code_inline` for a test's node id (shown exactly, so that it
pastes into `pytest`), `escape_block` for tracebacks and output. Nothing is ever put in a link or
image target except the run URL, built from GitHub's own environment variables and checked.

What a reader needs first comes first: the headline (the conclusion), for the comment the commit
and time it is about, why "no tests" fails the run, the counts, what changed since an earlier
run (changes.py), the run's own problems (a shard that crashed or timed out: not tests), then each
failure with the line that explains it (failures.py), then the flaky tests (failed, then passed on
a re-run), then the slowest tests, the skipped ones (named, folded) and those never run.

Budgets: the summary stays within `limit_bytes` of UTF-8 (GitHub refuses a step summary over
1 MiB) and the comment within `limit_chars` characters (GitHub's comment limit): `github_limits`. The
tracebacks, the only unbounded parts, are cut from the longest down (keeping their ends, where
the error is); when even short ones do not fit, the last failures are left out and counted.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import compress
from operator import attrgetter
from urllib.parse import quote

from modal_gpu_action.github_actions.github_limits import COMMENT_CHARS, SUMMARY_BYTES, safe_link
from modal_gpu_action.render.changes import comment_block, summary_section
from modal_gpu_action.render.durations import format_duration
from modal_gpu_action.render.escaping import (
    code_inline,
    escape_block,
    escape_inline,
    neutralise,
)
from modal_gpu_action.render.failures import (
    MIN_ENTRY_BYTES,
    SEPARATOR,
    case_name,
    clip,
    comment_item,
    flaky_item,
    s,
    summary_entries,
)
from modal_gpu_action.render.tables import LEFT, RIGHT, table
from modal_gpu_action.report.comparison import Changes
from modal_gpu_action.report.conclusion import Conclusion
from modal_gpu_action.report.results import CaseOutcome, Problem, TestCase, TestReport, Totals

__all__ = [
    "code_inline",
    "comment_marker",
    "escape_block",
    "escape_inline",
    "neutralise",
    "render_comment",
    "render_summary",
]


def comment_marker(key: str) -> str:
    """The hidden first line that identifies our comment; `key` tells matrix jobs apart.

    The key is percent-encoded (so two keys never share a marker) except for a few plain
    characters, which leaves no `>`, `!` or space that could end the HTML comment early.
    """
    return f"<!-- modal-gpu-action:{quote(key or 'default', safe='._~:/+=@-')[:256]} -->"


def render_summary(
    report: TestReport,
    *,
    facts: Sequence[tuple[str, str]] = (),
    title: str = "GPU tests",
    conclusion: Conclusion | None = None,
    notes: Sequence[str] = (),
    changes: Changes | None = None,
    limit_bytes: int = SUMMARY_BYTES,
) -> str:
    """The job summary: headline, notes, totals, what changed since an earlier run, run facts,
    the run's problems, failures with tracebacks, slowest, skips, tests not run. The headline
    says `conclusion`, else the report's own (`TestReport.conclusion`); `notes` are sentences
    of ours under it (why "no tests" fails the run)."""
    totals = report.totals
    head = _join(
        _headline(report, title, conclusion),
        _notes(notes),
        _totals_table(report, totals),
        summary_section(changes) if changes is not None else "",
        _facts_table(facts),
        _problems_section(report.problems, details=True),
    )
    tail = _join(
        _flaky_section(report, details=True),
        _slowest_table(report.cases),
        _skipped_section(
            "Skipped", _cases_with(report, CaseOutcome.SKIPPED, totals.skipped), "Skipped tests"
        ),
        _skipped_section(
            "Expected failures",
            _cases_with(report, CaseOutcome.XFAILED, totals.xfailed),
            "Expected failures",
        ),
        _not_run_section(_cases_with(report, CaseOutcome.NOT_RUN, totals.not_run)),
    )
    failures = report.failures
    if not failures:
        return _clamp_bytes(_join(head, tail) + "\n", limit_bytes)
    room = limit_bytes - _utf8_len(_join(head, tail)) - _NOTE_ROOM
    if room < MIN_ENTRY_BYTES:  # a tiny limit: the failures matter more than the tables
        tail = ""
        room = limit_bytes - _utf8_len(head) - _NOTE_ROOM
    entries = summary_entries(failures, room)
    section = _join(f"### Failures and errors ({len(failures):,})", *entries)
    if len(entries) < len(failures):
        left_out = len(failures) - len(entries)
        section = _join(
            section,
            f"… and {left_out:,} more failure{s(left_out)} not shown: a job summary is limited "
            f"to {limit_bytes:,} bytes.",
        )
    return _clamp_bytes(_join(head, section, tail) + "\n", limit_bytes)


# What a job's own body should stay within (render_comment's limit_chars in GitHub mode), so that
# a matrix comment's table, hidden rows and other jobs' sections (comment_sections.py) still fit.
SECTION_LIMIT = 56_000


def render_comment(
    report: TestReport,
    *,
    key: str,
    facts: Sequence[tuple[str, str]] = (),
    run_url: str | None = None,
    title: str = "GPU tests",
    conclusion: Conclusion | None = None,
    notes: Sequence[str] = (),
    commit: str = "",
    ran_at: datetime | None = None,
    changes: Changes | None = None,
    limit_chars: int = COMMENT_CHARS,
) -> str:
    """The PR comment: marker line, headline, which commit it is for and when it ran, notes,
    totals, what changed since an earlier run, run facts, the run's problems, a failure list,
    the run link."""
    link = ""
    if run_url and safe_link(run_url):
        link = f"[Open the run and its job summary]({run_url})"
    head = _join(
        comment_marker(key),
        _headline(report, title, conclusion),
        _when(commit, ran_at),
        _notes(notes),
        _totals_table(report, report.totals),
        comment_block(changes) if changes is not None else "",
        _facts_table(facts),
        _problems_section(report.problems, details=False),
    )
    flaky = _flaky_section(report, details=False)
    failures = report.failures
    if not failures:
        return (_join(head, flaky, link) + "\n")[:limit_chars]

    room = limit_chars - len(head) - len(flaky) - len(link) - _NOTE_ROOM
    items: list[str] = []
    for case in failures[:_COMMENT_FAILURES]:
        item = comment_item(case)
        room -= len(item) + 1
        if room < 0:
            break
        items.append(item)
    lines = [f"**Failures and errors ({len(failures):,})**", "", *items]
    if len(items) < len(failures):
        left_out = len(failures) - len(items)
        lines.append(f"- … and {left_out:,} more failure{s(left_out)}: see the job summary.")
    return (_join(head, "\n".join(lines), flaky, link) + "\n")[:limit_chars]


_COMMENT_FAILURES = 50  # a comment is read at a glance; the summary has the rest
_NOTE_ROOM = 256  # for the "... more not shown" line
_NAMES_SHOWN = 100  # tests named in a folded list (skipped, not run)
_SHA = re.compile(r"^[0-9a-f]{7,64}$")


def _headline(report: TestReport, title: str, conclusion: Conclusion | None) -> str:
    conclusion = conclusion or report.conclusion
    return f"## {conclusion.icon} {escape_inline(clip(title, 200))}: {conclusion.value}"


def _when(commit: str, ran_at: datetime | None) -> str:
    """`For commit 0123abc, run 2026-12-01 12:00 UTC`: a comment read later (a re-run on a PR
    that moved on) says what it is about. GitHub links the commit."""
    parts = []
    if _SHA.match(commit):
        parts.append(f"For commit {commit[:12]}")
    if ran_at is not None:
        when = ran_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        parts.append(f"run {when}" if parts else f"Run {when}")
    return ", ".join(parts)


def _notes(notes: Sequence[str]) -> str:
    return "\n\n".join(escape_inline(clip(note, 500)) for note in notes if note.strip())


def _totals_table(report: TestReport, totals: Totals) -> str:
    columns = [
        ("Tests", f"{totals.tests:,}"),
        ("Passed", f"{totals.passed:,}"),
        ("Failed", f"{totals.failed:,}"),
        ("Errors", f"{totals.errors:,}"),
        ("Skipped", f"{totals.skipped:,}"),
    ]
    if totals.xfailed:
        columns.append(("XFailed", f"{totals.xfailed:,}"))
    if totals.xpassed:
        columns.append(("XPassed", f"{totals.xpassed:,}"))
    if totals.not_run:
        columns.append(("Not run", f"{totals.not_run:,}"))
    if totals.flaky:
        columns.append(("Flaky", f"{totals.flaky:,}"))  # of the passed
    columns.append(("Duration", format_duration(report.wall_time or totals.duration)))
    text = table([label for label, _ in columns], [[value for _, value in columns]], RIGHT)
    subtests = report.subtests
    if subtests.total:
        counts = [f"{subtests.passed:,} passed", f"{subtests.failed:,} failed"]
        counts += [f"{subtests.skipped:,} skipped"] if subtests.skipped else []
        text += f"\n\nSubtests: {', '.join(counts)}."
    return text


def _facts_table(facts: Sequence[tuple[str, str]]) -> str:
    if not facts:
        return ""
    labels = [escape_inline(clip(label, 100)) for label, _ in facts]
    values = [escape_inline(clip(value, 300)) for _, value in facts]
    return table(labels, [values], LEFT)


def _problems_section(problems: Sequence[Problem], *, details: bool) -> str:
    """The run's own problems (not tests), those with the same message together:
    `- **shard 1/2, shard 2/2**: pytest stopped after ...`."""
    if not problems:
        return ""
    grouped: dict[str, list[Problem]] = {}
    for problem in problems:
        grouped.setdefault(problem.message, []).append(problem)
    title = f"Problems with the run ({len(problems):,})"
    lines = [f"### {title}" if details else f"**{title}**", ""]
    for message, group in list(grouped.items())[:_PROBLEMS_SHOWN]:
        where = ", ".join(dict.fromkeys(problem.where for problem in group))
        item = f"- **{escape_inline(clip(where, 200))}**: {escape_inline(clip(message, 1_000))}"
        detail = group[0].detail.strip()
        if details and detail:
            block = escape_block(_last_lines(detail, _PROBLEM_DETAIL_LINES))
            item += "\n\n  " + "\n  ".join(
                ["<details><summary>Details</summary>", "", *block.split("\n"), "", "</details>"]
            )
        lines.append(item)
    if len(grouped) > _PROBLEMS_SHOWN:
        lines.append(f"- … and {len(grouped) - _PROBLEMS_SHOWN:,} more")
    return "\n".join(lines)


_PROBLEMS_SHOWN = 20
_PROBLEM_DETAIL_LINES = 60


def _last_lines(text: str, count: int) -> str:
    lines = text.splitlines()
    if len(lines) <= count:
        return text
    return f"[… {len(lines) - count:,} earlier lines cut …]\n" + "\n".join(lines[-count:])


def _flaky_section(report: TestReport, *, details: bool) -> str:
    """The tests that failed, then passed on a re-run (counted as passed), each with its first
    failure's line; in the summary (`details`) with the end of its traceback, folded."""
    flaky = report.flaky
    if not flaky:
        return ""
    shown = _FLAKY_SHOWN if details else _COMMENT_FLAKY
    title = f"Flaky ({len(flaky):,})"
    lines = [f"### {title}" if details else f"**{title}**", ""]
    lines += [flaky_item(case, traceback=details) for case in flaky[:shown]]
    if len(flaky) > shown:
        lines.append(f"- … and {len(flaky) - shown:,} more, all in the merged JUnit file")
    return "\n".join(lines)


_FLAKY_SHOWN = 50  # in the summary, each with up to FLAKY_TRACE_BYTES of traceback
_COMMENT_FLAKY = 20


def _cases_with(report: TestReport, outcome: CaseOutcome, count: int) -> list[TestCase]:
    if not count:
        return []
    # compress/map run in C: a few milliseconds for 100,000 cases
    return list(compress(report.cases, map(outcome.__eq__, map(_OUTCOME, report.cases))))


def _slowest_table(cases: Sequence[TestCase]) -> str:
    """The ten slowest tests; none that would show as 0.00s."""
    slowest = [
        case for case in heapq.nlargest(10, cases, key=_DURATION) if case.duration >= _SHOWN_TIME
    ]
    if not slowest:
        return ""
    rows = [
        [case_name(case, 200, in_table=True), case.outcome.value, format_duration(case.duration)]
        for case in slowest
    ]
    return _join("### Slowest tests", table(["Test", "Result", "Duration"], rows, LEFT))


_SHOWN_TIME = 0.005  # format_duration shows less as 0.00s


def _skipped_section(title: str, cases: Sequence[TestCase], folded: str) -> str:
    """Cases grouped by their reason, most common first; then the tests themselves, folded."""
    if not cases:
        return ""
    counts = Counter(case.message.strip() for case in cases)
    rows = [
        [escape_inline(clip(reason, 300)) or "(no reason given)", f"{count:,}"]
        for reason, count in counts.most_common(_REASONS_SHOWN)
    ]
    if len(counts) > _REASONS_SHOWN:
        rest = sum(count for _, count in counts.most_common()[_REASONS_SHOWN:])
        rows.append([f"… {len(counts) - _REASONS_SHOWN:,} other reasons", f"{rest:,}"])
    return _join(
        f"### {title} ({len(cases):,})",
        table(["Reason", "Tests"], rows, LEFT),
        _folded_names(folded, cases, with_reason=True),
    )


def _not_run_section(cases: Sequence[TestCase]) -> str:
    """Tests collected but never started: the run ended before them."""
    if not cases:
        return ""
    why = cases[0].message.removeprefix("not run: ").strip()
    sentence = f"Collected but never started: {why}." if why else "Collected but never started."
    return _join(
        f"### Not run ({len(cases):,})",
        escape_inline(clip(sentence, 1_000)),
        _folded_names("Tests not run", cases, with_reason=False),
    )


def _folded_names(summary: str, cases: Sequence[TestCase], *, with_reason: bool) -> str:
    """The tests' node ids (and reasons) in a folded list, the first _NAMES_SHOWN of them."""
    items = []
    for case in cases[:_NAMES_SHOWN]:
        item = f"- {case_name(case, 300)}"
        if with_reason and case.message.strip():
            item += f" — {escape_inline(clip(case.message.strip(), 200))}"
        items.append(item)
    if len(cases) > _NAMES_SHOWN:
        more = len(cases) - _NAMES_SHOWN
        items.append(f"- … and {more:,} more, all in the merged JUnit file")
    return "\n".join([f"<details><summary>{summary}</summary>", "", *items, "", "</details>"])


_REASONS_SHOWN = 20
_OUTCOME = attrgetter("outcome")
_DURATION = attrgetter("duration")


def _join(*parts: str) -> str:
    return SEPARATOR.join(part for part in parts if part)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _clamp_bytes(text: str, limit: int) -> str:
    """A last guard: the budgets above already keep within `limit`."""
    data = text.encode()
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")
