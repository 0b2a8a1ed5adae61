"""GitHub-flavoured markdown tables, written one way for the summary, the comment and the matrix
table. Cells must already be escaped (`markdown.escape_inline`): no line break, every `|`
escaped."""

from __future__ import annotations

from collections.abc import Sequence

LEFT = "---"
RIGHT = "---:"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | Sequence[str]) -> str:
    """A table; `align` is one alignment for every column (LEFT, RIGHT) or one per column."""
    aligns = [align] * len(header) if isinstance(align, str) else list(align)
    return "\n".join(row(cells) for cells in (header, aligns, *rows))


def row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
