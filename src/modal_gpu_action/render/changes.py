"""What changed since an earlier run (report/comparison.py), as markdown: a section of the job
summary (`summary_section`) and a compact block of the PR comment (`comment_block`).

Each count with its change (`12 (+1)`, `0 (±0)`), then the tests themselves: new failures, fixed
tests, tests added and removed (with `compare-to`, the failures that also fail in the file). Ids
are code spans (`code_inline`, they paste into pytest), clipped; lists are bounded (the summary
names SUMMARY_IDS of each, the comment COMMENT_IDS) and then counted. Where the earlier run was
kept only in part, a sentence says what that leaves unknown.
"""

from __future__ import annotations

from collections.abc import Sequence

from modal_gpu_action.render.escaping import code_inline
from modal_gpu_action.render.failures import clip, s
from modal_gpu_action.render.tables import RIGHT, table
from modal_gpu_action.report.comparison import COUNTS, Changes

SUMMARY_IDS = 100
COMMENT_IDS = 10
_SUMMARY_ID_CHARS = 300
_COMMENT_ID_CHARS = 150
_LABELS = {
    "tests": "Tests",
    "passed": "Passed",
    "failed": "Failed",
    "errors": "Errors",
    "skipped": "Skipped",
}


def title(changes: Changes) -> str:
    if changes.from_file:
        return f"Compared with {code_inline(clip(changes.against, 200))}"
    return "Changes since the previous run"


def signed(delta: int) -> str:
    """`+1`, `-2`, `±0`."""
    return f"+{delta:,}" if delta > 0 else f"-{-delta:,}" if delta < 0 else "±0"


def summary_section(changes: Changes) -> str:
    """The job summary's section: the counts as a table, each list of tests folded."""
    cells = []
    for name in COUNTS:
        now, delta = changes.delta(name)
        cells.append(f"{now:,} ({signed(delta)})")
    parts = [
        f"### {title(changes)}",
        table([_LABELS[name] for name in COUNTS], [cells], RIGHT),
    ]
    for label, ids in _lists(changes):
        parts.append(_folded(label, ids))
    parts.extend(_notes(changes))
    return "\n\n".join(part for part in parts if part)


def comment_block(changes: Changes) -> str:
    """The PR comment's block: one line of counts, then a line per non-empty list."""
    counts = ", ".join(
        f"{now:,} {name} ({signed(delta)})"
        for name in COUNTS
        for now, delta in [changes.delta(name)]
    )
    items = [f"- {label}: {_inline_ids(ids)}" for label, ids in _lists(changes)]
    parts = [f"**{title(changes)}**: {counts}", "\n".join(items), *_notes(changes)]
    return "\n\n".join(part for part in parts if part)


def _lists(changes: Changes) -> list[tuple[str, Sequence[str]]]:
    """Each list with its label and count: `New failures (2)`."""
    named: list[tuple[str, Sequence[str]]] = [("New failures", changes.new_failures)]
    if changes.from_file:
        named.append(("Also failing there", changes.still_failing))
    named.append(("Fixed", changes.fixed))
    if changes.added is not None:
        named.append(("Tests added", changes.added))
    if changes.removed is not None:
        named.append(("Tests removed", changes.removed))
    return [(f"{label} ({len(ids):,})", ids) for label, ids in named if ids]


def _folded(label: str, ids: Sequence[str]) -> str:
    if not ids:
        return ""
    items = [f"- {code_inline(clip(test_id, _SUMMARY_ID_CHARS))}" for test_id in ids[:SUMMARY_IDS]]
    if len(ids) > SUMMARY_IDS:
        items.append(f"- … and {len(ids) - SUMMARY_IDS:,} more")
    return "\n".join([f"<details><summary>{label}</summary>", "", *items, "", "</details>"])


def _inline_ids(ids: Sequence[str]) -> str:
    shown = [code_inline(clip(test_id, _COMMENT_ID_CHARS)) for test_id in ids[:COMMENT_IDS]]
    if len(ids) > COMMENT_IDS:
        shown.append(f"… and {len(ids) - COMMENT_IDS:,} more")
    return ", ".join(shown)


def _notes(changes: Changes) -> list[str]:
    """What the bounded record of the earlier run leaves unknown."""
    notes = []
    earlier = changes.earlier
    if changes.unsure:
        unsure = len(changes.unsure)
        kept = "kept only its counts" if earlier.bound == "" else "kept only part of its test ids"
        notes.append(
            f"_The previous run's hidden record {kept} (it is bounded to fit the comment):"
            f" whether {unsure:,} more failing test{s(unsure)} failed then too is not known;"
            " the counts are compared in full._"
        )
    if changes.added is None:
        if changes.tests_changed is None:
            known = "it is not known which tests were added or removed"
        elif changes.tests_changed:
            known = "the set of tests changed (the counts say by how much)"
        else:
            known = "the set of tests is the same"
        notes.append(
            f"_The previous run's {earlier.tests:,} test{s(earlier.tests)} were too many to keep"
            f" their ids in the comment: {known}._"
        )
    return notes
