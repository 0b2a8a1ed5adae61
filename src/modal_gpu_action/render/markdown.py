"""Markdown for the job summary and the sticky PR comment, from a TestReport.

Test names, messages and tracebacks come from the pull request's code, so every piece of them
goes through one of two escapers before it reaches the markdown:
- `escape_inline`: one line of plain text, safe in a paragraph, heading, list item or table cell.
  Markdown punctuation is backslash-escaped, `<`, `>` and `&` become entities, line breaks
  (U+2028 and U+2029 too) become spaces, other control characters U+FFFD, and a WORD JOINER
  (U+2060, invisible) follows every `@`, `#` and `:` and sits inside `www.` and `GH-1`, so GitHub
  builds no @mention, issue reference, emoji image or link from it. (An entity such as `&#64;`
  would not do: GitHub looks for mentions in the rendered text, where the entity is an `@` again.)
- `escape_block`: a fenced code block whose fence is longer than any backtick run in the text,
  so nothing inside can close it; GitHub neither links nor mentions inside code.
Both first pass the text through `neutralise`, as annotations.py does: every character that makes
text read as something it is not (bidirectional marks and overrides, zero-width characters, the
line and paragraph separators: `_MISLEADING`) is shown as U+FFFD, the replacement character.
Nothing is ever put in a link or image target except the run URL, built from GitHub's own
environment variables and checked.

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
from itertools import compress
from operator import attrgetter
from urllib.parse import quote

from modal_gpu_action.github_actions.github_limits import COMMENT_CHARS, SUMMARY_BYTES, safe_link
from modal_gpu_action.render.durations import format_duration
from modal_gpu_action.render.tables import LEFT, RIGHT, table
from modal_gpu_action.report.conclusion import Conclusion
from modal_gpu_action.report.results import CaseOutcome, TestCase, TestReport, Totals

_WJ = "\u2060"
# In this order: backslashes first, then "&" before the entities that bring their own.
_REPLACEMENTS = (
    ("\\", "\\\\"),
    ("&", "&amp;"),
    ("<", "&lt;"),
    (">", "&gt;"),
    *((char, "\\" + char) for char in "`*_{}[]()+-.!|~$="),
    ("#", "\\#" + _WJ),
    ("@", "@" + _WJ),
    (":", ":" + _WJ),
)
# Line breaks become spaces; other control characters become a visible replacement character.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_SHOWN = dict.fromkeys("\n\r\t\x85\u2028\u2029", " ")
# Characters that make text read as something it is not ("Trojan Source" and its kin): every
# Unicode format character (category Cf) - the bidirectional marks U+200E, U+200F and U+061C,
# the embeddings, overrides and isolates U+202A-U+202E and U+2066-U+2069, the zero-width
# U+200B-U+200D, U+2060 and U+FEFF, the soft hyphen, invisible operators, tag characters - and
# the line and paragraph separators U+2028 and U+2029.
_MISLEADING = re.compile(
    "[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f]"
)
_LINK_WORDS = re.compile(r"(?<=www)(?=\.)|(?<=\bgh)(?=-[0-9])", re.IGNORECASE)


def neutralise(text: str) -> str:
    """`text` with every character that misleads the eye (`_MISLEADING`: bidirectional marks
    and overrides, zero-width characters, U+2028/U+2029) shown as U+FFFD: what the tests
    wrote is shown as what it is. For any test-derived text that people read."""
    return _MISLEADING.sub("\ufffd", text) if _MISLEADING.search(text) else text


def escape_inline(text: str) -> str:
    """`text` as one line of inert markdown: no markup, HTML, mention, reference or link."""
    if _CONTROL.search(text):
        text = _CONTROL.sub(lambda match: _CONTROL_SHOWN.get(match[0], "\ufffd"), text)
    text = neutralise(text)  # before the word joiners of our own are added below
    lowered = text.lower()
    if "www." in lowered or "gh-" in lowered:
        text = _LINK_WORDS.sub(_WJ, text)
    for old, new in _REPLACEMENTS:  # str.replace per character: far faster than translate
        if old in text:
            text = text.replace(old, new)
    return text.strip()


def escape_block(text: str) -> str:
    """`text` verbatim in a fenced code block (but `neutralise`d); put it between blank lines."""
    text = neutralise(text)
    fence = "`" * max(3, _longest_backtick_run(text) + 1)
    return f"{fence}text\n{text}\n{fence}"


def _longest_backtick_run(text: str) -> int:
    if "`" not in text:  # most tracebacks: skip the regex
        return 0
    return max(len(run) for run in _BACKTICK_RUN.findall(text))


_BACKTICK_RUN = re.compile(r"`+")


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
    limit_bytes: int = SUMMARY_BYTES,
) -> str:
    """The job summary: headline, totals, run facts, failures with tracebacks, slowest, skips.
    The headline says `conclusion`, else the report's own (`TestReport.conclusion`)."""
    totals = report.totals
    head = _join(
        _headline(report, title, conclusion), _totals_table(report, totals), _facts_table(facts)
    )
    tail = _join(
        _slowest_table(report.cases),
        _reasons_table("Skipped", _cases_with(report, CaseOutcome.SKIPPED, totals.skipped)),
        _reasons_table(
            "Expected failures", _cases_with(report, CaseOutcome.XFAILED, totals.xfailed)
        ),
    )
    failures = report.failures
    if not failures:
        return _clamp_bytes(_join(head, tail) + "\n", limit_bytes)
    room = limit_bytes - _utf8_len(_join(head, tail)) - _NOTE_ROOM
    if room < _MIN_ENTRY_BYTES:  # a tiny limit: the failures matter more than the tables
        tail = ""
        room = limit_bytes - _utf8_len(head) - _NOTE_ROOM
    entries = _failure_entries(failures, room)
    section = _join(f"### Failures and errors ({len(failures):,})", *entries)
    if len(entries) < len(failures):
        left_out = len(failures) - len(entries)
        section = _join(
            section,
            f"… and {left_out:,} more failure{_s(left_out)} not shown: a job summary is limited "
            f"to {limit_bytes:,} bytes.",
        )
    return _clamp_bytes(_join(head, section, tail) + "\n", limit_bytes)


def render_comment(
    report: TestReport,
    *,
    key: str,
    facts: Sequence[tuple[str, str]] = (),
    run_url: str | None = None,
    title: str = "GPU tests",
    conclusion: Conclusion | None = None,
    limit_chars: int = COMMENT_CHARS,
) -> str:
    """The PR comment: marker line, headline, totals, run facts, a failure list, the run link."""
    link = ""
    if run_url and safe_link(run_url):
        link = f"[Open the run and its job summary]({run_url})"
    head = _join(
        comment_marker(key),
        _headline(report, title, conclusion),
        _totals_table(report, report.totals),
        _facts_table(facts),
    )
    failures = report.failures
    if not failures:
        return (_join(head, link) + "\n")[:limit_chars]

    room = limit_chars - len(head) - len(link) - _NOTE_ROOM
    items: list[str] = []
    for case in failures[:_COMMENT_FAILURES]:
        item = f"- {_icon(case)} {escape_inline(_clip(case.id or _UNNAMED, 200))}"
        if case.message:
            item += f" — {escape_inline(_clip(case.message, 200))}"
        room -= len(item) + 1
        if room < 0:
            break
        items.append(item)
    lines = [f"**Failures and errors ({len(failures):,})**", "", *items]
    if len(items) < len(failures):
        left_out = len(failures) - len(items)
        lines.append(f"- … and {left_out:,} more failure{_s(left_out)}: see the job summary.")
    return (_join(head, "\n".join(lines), link) + "\n")[:limit_chars]


_UNNAMED = "(unnamed test)"
_COMMENT_FAILURES = 50  # a comment is read at a glance; the summary has the rest
_NOTE_ROOM = 256  # for the "... more not shown" line
_MIN_TRACE_BYTES = 2_000  # below this a traceback loses its point: leave out failures instead
_TRUNCATION_NOTE_ROOM = 64
_DETAILS_OPEN = "<details><summary>Traceback</summary>"
_DETAILS_CLOSE = "</details>"
_MIN_ENTRY_BYTES = len(_DETAILS_OPEN) + len(_DETAILS_CLOSE) + 20


def _failure_entries(failures: Sequence[TestCase], room: int) -> list[str]:
    """Markdown per failure within `room` bytes: the longest tracebacks are cut first; when even
    short ones do not all fit, the last failures are left out."""
    heads: list[str] = []
    tracebacks: list[str] = []
    fixed: list[int] = []  # what an entry costs besides its traceback text
    used = 0
    for case in failures:  # render only what can be shown
        head, traceback = _failure_head(case), _traceback(case)
        cost = _utf8_len(head) + _block_overhead(traceback)
        used += cost + min(_utf8_len(traceback[:_MIN_TRACE_BYTES]), _MIN_TRACE_BYTES)
        if used > room:
            break
        heads.append(head)
        tracebacks.append(traceback)
        fixed.append(cost)
    cap = _water_level([_utf8_len(traceback) for traceback in tracebacks], room - sum(fixed))
    return [
        _failure_entry(head, traceback, cap)
        for head, traceback in zip(heads, tracebacks, strict=True)
    ]


def _failure_head(case: TestCase) -> str:
    head = f"#### {_icon(case)} {escape_inline(_clip(case.id or _UNNAMED, 300))}"
    if case.file:
        where = case.file if case.line is None else f"{case.file}:{case.line}"
        head += f" — {escape_inline(_clip(where, 300))}"
    if case.message:
        head += "\n\n" + escape_inline(_clip(case.message, 1_000))
    return head


def _block_overhead(detail: str) -> int:
    if not detail:
        return len(_SEPARATOR)
    fence = max(3, _longest_backtick_run(detail) + 1)
    # separators, <details>, two fences, "text" and their line ends, a truncation note
    return (
        4 * len(_SEPARATOR)
        + len(_DETAILS_OPEN)
        + len(_DETAILS_CLOSE)
        + 2 * fence
        + len("text")
        + 2
        + _TRUNCATION_NOTE_ROOM
    )


def _traceback(case: TestCase) -> str:
    """The case's detail, unless it only repeats the message (as in a strict xpass)."""
    return "" if case.detail.strip() == case.message.strip() else case.detail


def _failure_entry(head: str, detail: str, cap: int) -> str:
    if not detail:
        return head
    return _join(head, _DETAILS_OPEN, escape_block(_tail(detail, cap)), _DETAILS_CLOSE)


def _water_level(lengths: Sequence[int], room: int) -> int:
    """The largest cap c with sum(min(length, c)) <= room: only the longest get cut."""
    if sum(lengths) <= room:
        return max(lengths, default=0)
    below = 0
    ordered = sorted(lengths)
    for index, length in enumerate(ordered):
        remaining = len(ordered) - index
        if below + length * remaining > room:
            return max(0, (room - below) // remaining)
        below += length
    return ordered[-1]


def _tail(text: str, max_bytes: int) -> str:
    """The end of `text` (where a traceback says what went wrong) in at most `max_bytes`."""
    if _utf8_len(text) <= max_bytes:
        return text
    if max_bytes <= 0:
        kept = ""
    elif text.isascii():
        kept = text[-max_bytes:]
    else:
        kept = text.encode()[-max_bytes:].decode("utf-8", "ignore")
    cut = text.count("\n") - kept.count("\n")
    return f"[… {cut:,} earlier line{_s(cut)} cut …]\n{kept}"


def _headline(report: TestReport, title: str, conclusion: Conclusion | None) -> str:
    conclusion = conclusion or report.conclusion
    return f"## {conclusion.icon} {escape_inline(_clip(title, 200))}: {conclusion.value}"


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
    columns.append(("Duration", format_duration(report.wall_time or totals.duration)))
    return table([label for label, _ in columns], [[value for _, value in columns]], RIGHT)


def _facts_table(facts: Sequence[tuple[str, str]]) -> str:
    if not facts:
        return ""
    labels = [escape_inline(_clip(label, 100)) for label, _ in facts]
    values = [escape_inline(_clip(value, 300)) for _, value in facts]
    return table(labels, [values], LEFT)


def _cases_with(report: TestReport, outcome: CaseOutcome, count: int) -> list[TestCase]:
    if not count:
        return []
    # compress/map run in C: a few milliseconds for 100,000 cases
    return list(compress(report.cases, map(outcome.__eq__, map(_OUTCOME, report.cases))))


def _slowest_table(cases: Sequence[TestCase]) -> str:
    slowest = [case for case in heapq.nlargest(10, cases, key=_DURATION) if case.duration > 0]
    if not slowest:
        return ""
    rows = [
        [
            escape_inline(_clip(case.id or _UNNAMED, 200)),
            case.outcome.value,
            format_duration(case.duration),
        ]
        for case in slowest
    ]
    return _join("### Slowest tests", table(["Test", "Result", "Duration"], rows, LEFT))


def _reasons_table(title: str, cases: Sequence[TestCase]) -> str:
    """Cases grouped by their reason, most common first."""
    if not cases:
        return ""
    counts = Counter(case.message.strip() for case in cases)
    rows = [
        [escape_inline(_clip(reason, 300)) or "(no reason given)", f"{count:,}"]
        for reason, count in counts.most_common(_REASONS_SHOWN)
    ]
    if len(counts) > _REASONS_SHOWN:
        rest = sum(count for _, count in counts.most_common()[_REASONS_SHOWN:])
        rows.append([f"… {len(counts) - _REASONS_SHOWN:,} other reasons", f"{rest:,}"])
    return _join(f"### {title} ({len(cases):,})", table(["Reason", "Tests"], rows, LEFT))


_REASONS_SHOWN = 20
_OUTCOME = attrgetter("outcome")
_DURATION = attrgetter("duration")
_SEPARATOR = "\n\n"


def _join(*parts: str) -> str:
    return _SEPARATOR.join(part for part in parts if part)


def _icon(case: TestCase) -> str:
    return "💥" if case.outcome is CaseOutcome.ERROR else "❌"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _clamp_bytes(text: str, limit: int) -> str:
    """A last guard: the budgets above already keep within `limit`."""
    data = text.encode()
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")
