"""The failures as people read them: an entry per failed or errored test for the job summary
(its node id, where it failed, the line that explains it, then its traceback folded), and one
line per test for the PR comment.

A test can fail more than once (a unittest `subTest`, the `subtests` fixture, a teardown error
after a failed call): each failure is shown, the first MORE_SHOWN after the first, then counted.

Budget: the entries stay within `room` bytes of UTF-8. Tracebacks, the only unbounded parts, are
first trimmed of repeated frames (a deep recursion repeats the same few lines hundreds of times:
one copy stays, with a line saying how often it repeats), then cut from the longest down,
keeping their ends, where the error is; when even short ones do not fit, the last failures are
left out and the caller counts them.
"""

from __future__ import annotations

from collections.abc import Sequence

from modal_gpu_action.render.escaping import code_inline, escape_block, escape_inline
from modal_gpu_action.report.headline import headline, phase, result_headline
from modal_gpu_action.report.results import CaseOutcome, CaseResult, TestCase

UNNAMED = "(unnamed test)"
MORE_SHOWN = 10  # further failures of one test shown in the summary
MIN_TRACE_BYTES = 2_000  # below this a traceback loses its point: leave out failures instead
_TRUNCATION_NOTE_ROOM = 64
_DETAILS_OPEN = "<details><summary>Traceback</summary>"
_DETAILS_CLOSE = "</details>"
MIN_ENTRY_BYTES = len(_DETAILS_OPEN) + len(_DETAILS_CLOSE) + 20
SEPARATOR = "\n\n"
_PHASES = {
    "collection": "Collection error",
    "setup": "Error in setup",
    "teardown": "Error in teardown",
}
_REPEATS_SHOWN_FROM = 3  # a block of lines repeated this often is shown once
_MAX_BLOCK_LINES = 12


def icon(outcome: CaseOutcome) -> str:
    return "💥" if outcome is CaseOutcome.ERROR else "❌"


def case_name(case: TestCase, limit: int, *, in_table: bool = False) -> str:
    """The test's node id (else its names) as a code span that pastes into `pytest`."""
    if not case.id:
        return f"_{UNNAMED}_"
    return code_inline(clip(case.id, limit), in_table=in_table)


def explanation(case: TestCase) -> str:
    """The line that explains the case's first failure, with where it happened when that was
    not the test itself: `Collection error: ModuleNotFoundError: No module named 'x'`."""
    text = headline(case)
    where = _PHASES.get(phase(case))
    if where:
        return f"{where}: {text}" if text else where
    return text


def comment_item(case: TestCase) -> str:
    """One line of the comment's failure list."""
    item = f"- {icon(case.outcome)} {case_name(case, 300)}"
    text = explanation(case)
    if text:
        item += f" — {escape_inline(clip(text, 200))}"
    if case.more:
        more = len(case.more)
        item += f" _\\(and {more:,} more failure{s(more)} of this test\\)_"
    return item + _reruns_note(case)


FLAKY_ICON = "🔁"
FLAKY_TRACE_BYTES = 2_000  # of a flaky test's first traceback in the summary


def flaky_item(case: TestCase, *, traceback: bool) -> str:
    """A test that failed, then passed on a re-run: its node id, how often it failed, its first
    failure's line (and, with `traceback`, the end of that traceback, folded)."""
    first = case.reruns[0]
    times = len(case.reruns)
    item = f"- {FLAKY_ICON} {case_name(case, 300)} — failed {times:,} time{s(times)}, then passed"
    line = result_headline(first, case.collection)
    if line:
        item += f": {escape_inline(clip(line, 300))}"
    trace = _traceback(first)
    if traceback and trace:
        block = _tail_block(trace, FLAKY_TRACE_BYTES)
        item += "\n\n  " + "\n  ".join(
            [
                _DETAILS_OPEN,
                "",
                *block.split("\n"),
                "",
                _DETAILS_CLOSE,
            ]
        )
    return item


def _reruns_note(case: TestCase) -> str:
    """For a test that failed every re-run: how many (its runs are in the merged JUnit file)."""
    reruns = len(case.reruns)
    return f" _\\(failed {reruns:,} re-run{s(reruns)} too\\)_" if case.reruns else ""


def summary_entries(failures: Sequence[TestCase], room: int) -> list[str]:
    """Markdown per failure within `room` bytes (see the module's docstring)."""
    pieces: list[tuple[int, str, str]] = []  # (case's number, head, traceback)
    fixed: list[int] = []  # what a piece costs besides its traceback text
    used = 0
    for number, case in enumerate(failures):
        case_pieces = _pieces(case)
        cost = sum(_utf8_len(head) + _block_overhead(trace) for head, trace in case_pieces)
        minimum = sum(min(_utf8_len(trace), MIN_TRACE_BYTES) for _, trace in case_pieces)
        used += cost + minimum
        if used > room:
            break
        for head, trace in case_pieces:
            pieces.append((number, head, trace))
            fixed.append(_utf8_len(head) + _block_overhead(trace))
    cap = _water_level([_utf8_len(trace) for _, _, trace in pieces], room - sum(fixed))
    entries: list[list[str]] = []
    for number, head, trace in pieces:
        if number == len(entries):
            entries.append([])
        entries[number].append(_entry(head, trace, cap))
    return [SEPARATOR.join(parts) for parts in entries]


def _pieces(case: TestCase) -> list[tuple[str, str]]:
    """(head, traceback) for the case's first failure, then for each further one shown."""
    head = f"#### {icon(case.outcome)} {case_name(case, 300)}"
    if case.file:
        where = case.file if case.line is None else f"{case.file}:{case.line}"
        head += f" — {escape_inline(clip(where, 300))}"
    results = case.results or (CaseResult(case.outcome, case.message, case.detail),)
    text = explanation(case)
    if len(results) > 1:
        text = f"Failure 1 of {len(results):,}: {text}" if text else ""
    if text:
        head += SEPARATOR + escape_inline(clip(text, 1_000))
    head += _reruns_note(case)
    pieces = [(head, _traceback(results[0]))]
    for number, result in enumerate(results[1 : 1 + MORE_SHOWN], start=2):
        line = result_headline(result, case.collection) or "(no message)"
        more = f"{'Error' if result.outcome is CaseOutcome.ERROR else 'Failure'} {number:,} of"
        pieces.append(
            (escape_inline(f"{more} {len(results):,}: {clip(line, 1_000)}"), _traceback(result))
        )
    left = len(results) - 1 - MORE_SHOWN
    if left > 0:
        pieces.append(
            (
                f"… and {left:,} more failure{s(left)} of this test, all in the merged JUnit file.",
                "",
            )
        )
    return pieces


def _traceback(result: CaseResult) -> str:
    """The detail, unless it only repeats the message (as in a strict xpass)."""
    if result.detail.strip() == result.message.strip():
        return ""
    return trim_repeats(result.detail)


def trim_repeats(text: str) -> str:
    """`text` with every block of 1 to _MAX_BLOCK_LINES lines that repeats _REPEATS_SHOWN_FROM
    times or more in a row shown once, followed by a line saying how often it repeats."""
    lines = text.split("\n")
    if len(lines) < 2 * _REPEATS_SHOWN_FROM or not _repeats_somewhere(lines):
        return text
    out: list[str] = []
    index = 0
    while index < len(lines):
        best_size, best_count = 0, 1
        for size in range(1, _MAX_BLOCK_LINES + 1):
            block = lines[index : index + size]
            if len(block) < size:
                break
            count = 1
            while lines[index + count * size : index + (count + 1) * size] == block:
                count += 1
            if count >= _REPEATS_SHOWN_FROM and count * size > best_count * best_size:
                best_size, best_count = size, count
        if best_size:
            out += lines[index : index + best_size]
            repeated = best_count - 1
            out.append(
                f"[… the {best_size} line{s(best_size)} above repeat{'' if best_size > 1 else 's'}"
                f" {repeated:,} more time{s(repeated)} …]"
            )
            index += best_size * best_count
        else:
            out.append(lines[index])
            index += 1
    return "\n".join(out)


def _repeats_somewhere(lines: list[str]) -> bool:
    """Whether some block of 1 to _MAX_BLOCK_LINES lines repeats _REPEATS_SHOWN_FROM times in
    a row: a quick look (comparisons only) that spares most tracebacks the full search."""
    needed = _REPEATS_SHOWN_FROM - 1
    last: dict[str, int] = {}
    sizes: set[int] = set()  # distances at which a line comes again
    for index, line in enumerate(lines):
        before = last.get(line)
        if before is not None and index - before <= _MAX_BLOCK_LINES:
            sizes.add(index - before)
        last[line] = index
    for size in sizes:
        # 1 where a line equals the one `size` lines on: a block repeated has a run of them
        same = bytes(map(str.__eq__, lines, lines[size:]))
        if b"\x01" * (needed * size) in same:
            return True
    return False


def _block_overhead(detail: str) -> int:
    if not detail:
        return len(SEPARATOR)
    fence = max(3, _longest_backtick_run(detail) + 1)
    # separators, <details>, two fences, "text" and their line ends, a truncation note
    return (
        4 * len(SEPARATOR)
        + len(_DETAILS_OPEN)
        + len(_DETAILS_CLOSE)
        + 2 * fence
        + len("text")
        + 2
        + _TRUNCATION_NOTE_ROOM
    )


def _longest_backtick_run(text: str) -> int:
    if "`" not in text:
        return 0
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return longest


def _entry(head: str, detail: str, cap: int) -> str:
    if not detail:
        return head
    return SEPARATOR.join((head, _DETAILS_OPEN, _tail_block(detail, cap), _DETAILS_CLOSE))


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


def _tail_block(text: str, max_bytes: int) -> str:
    """The end of `text` (where a traceback says what went wrong) in at most `max_bytes`, in a
    code block; a note of ours says what was cut, kept apart from the test's text (a line
    above it in the block), so that text that is all ASCII is spared neutralise's search."""
    note, kept = _tail_parts(text, max_bytes)
    return escape_block(kept, note=note)


def _tail_parts(text: str, max_bytes: int) -> tuple[str, str]:
    """The note of what was cut ("" when nothing was) and the end of `text` that is kept."""
    if _utf8_len(text) <= max_bytes:
        return "", text
    if max_bytes <= 0:
        kept = ""
    elif text.isascii():
        kept = text[-max_bytes:]
    else:
        kept = text.encode()[-max_bytes:].decode("utf-8", "ignore")
    cut = text.count("\n") - kept.count("\n")
    return f"[… {cut:,} earlier line{s(cut)} cut …]", kept


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def s(count: int) -> str:
    return "" if count == 1 else "s"


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())
