"""The table of tests whose outcome differs between GPUs, for the comment that a matrix over GPU
types shares (render/comment_sections.py puts it above the sections).

It is made from what each section keeps hidden (report/test_state.py): the ids of its failed,
errored, skipped (xfailed included) and not-run tests, bounded, and of all its tests while they
fit. Nothing else is known per test, so:
- a test is a row when at least two jobs know an outcome for it and those outcomes differ;
- "passed" is inferred: the test is in none of that job's lists, the lists cover it (they are
  whole, or were cut to fit the comment at a test id that sorts after it: `TestState.covers`),
  and, when the job kept the ids of all its tests, it is among them;
- `?`: the job's lists were cut before this test, so it may have passed or not;
- `—`: the job's list of all tests is known and lacks the test (deselected, or not in its
  checkout): not an outcome, so it makes no difference on its own.
Shown only when the sections with such data come from more than one GPU type (the GPU the job
reported, else its key); a matrix over Python versions on one GPU gets no table. Bounded: the
first MAX_ROWS tests (by id) in the comment, SUMMARY_ROWS in a job's summary, then a count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modal_gpu_action.render.escaping import code_inline, escape_inline
from modal_gpu_action.render.failures import clip
from modal_gpu_action.render.tables import LEFT, table
from modal_gpu_action.report.test_state import TestState, decode

MAX_ROWS = 30  # in the comment
SUMMARY_ROWS = 200  # in the job summary
TITLE = "Tests whose outcome differs by GPU"
_ID_CHARS = 150
_UNKNOWN = "?"
_ABSENT = "—"
_SHOWN = {
    "failed": "❌ failed",
    "errors": "💥 error",
    "skipped": "⏭️ skipped",
    "not_run": "⏸️ not run",
    "passed": "✅ passed",
}
_ORDER = ("failed", "errors", "not_run", "skipped")  # a test in two lists shows the first


@dataclass(frozen=True, slots=True)
class Differences:
    """Every test whose outcome differs between the jobs (by id), with each job's outcome (a key
    of _SHOWN, `?` or `—`), the jobs in `keys` order."""

    keys: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...]], ...]


def differences(columns: Sequence[tuple[str, str, str]]) -> Differences | None:
    """The differences between sections given as (key, GPU, encoded state); None when the
    sections with a readable state come from fewer than two GPU types."""
    known = [(key, gpu, state) for key, gpu, text in columns if (state := decode(text))]
    if len({gpu or key for key, gpu, _ in known}) < 2:
        return None
    candidates: set[str] = set()
    for _, _, state in known:
        for name in _ORDER:
            candidates |= state.ids(name)
    rows = []
    for test_id in sorted(candidates):
        outcomes = tuple(_outcome(state, test_id) for _, _, state in known)
        if len({o for o in outcomes if o not in (_UNKNOWN, _ABSENT)}) >= 2:
            rows.append((test_id, outcomes))
    return Differences(tuple(key for key, _, _ in known), tuple(rows))


def gpu_differences(columns: Sequence[tuple[str, str, str]]) -> str:
    """The comment's table (bold title, MAX_ROWS tests); "" when no test differs."""
    found = differences(columns)
    if found is None or not found.rows:
        return ""
    return render(found, title=f"**{TITLE} ({len(found.rows):,})**", shown=MAX_ROWS)


def summary_section(found: Differences) -> str:
    """The job summary's section (SUMMARY_ROWS tests); "" when no test differs."""
    if not found.rows:
        return ""
    return render(found, title=f"### {TITLE} ({len(found.rows):,})", shown=SUMMARY_ROWS)


def render(found: Differences, *, title: str, shown: int) -> str:
    rows = [
        [code_inline(clip(test_id, _ID_CHARS), in_table=True), *(_SHOWN.get(o, o) for o in cells)]
        for test_id, cells in found.rows[:shown]
    ]
    outcomes = {o for _, cells in found.rows[:shown] for o in cells}
    header = ["Test", *(escape_inline(clip(key, 60)) for key in found.keys)]
    parts = [title, table(header, rows, LEFT)]
    if len(found.rows) > shown:
        parts.append(f"… and {len(found.rows) - shown:,} more.")
    legend = [
        "✅ passed means the test is in none of that job's failed, errored, skipped or not-run"
        " tests, which its section keeps"
    ]
    if _UNKNOWN in outcomes:
        legend.append(f"{_UNKNOWN}: that job's lists were cut to fit the comment before this test")
    if _ABSENT in outcomes:
        legend.append(f"{_ABSENT}: not among that job's tests")
    parts.append("_" + "; ".join(legend) + "._")
    return "\n\n".join(parts)


def _outcome(state: TestState, test_id: str) -> str:
    for name in _ORDER:
        if test_id in state.ids(name):
            return name
    if state.all_ids is not None and test_id not in state.all_ids:
        return _ABSENT
    return "passed" if state.covers(test_id) else _UNKNOWN
