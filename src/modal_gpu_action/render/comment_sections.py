"""The PR comment that a matrix of jobs shares: pure functions, no network.

One comment per key (the workflow and job by default). Each job of a matrix owns one *section* of
it, keyed by its GPU or `matrix-key`; with more than one section a status table sits on top, one
row per section. Every job rebuilds the whole comment from what the comment already holds, so the
row data of each section is stored in the comment itself:

    <!-- modal-gpu-action:KEY -->                      the marker: the comment is found by it
    <!-- modal-gpu-action:data {"v":1,...} -->          every section's row, as escaped JSON
    (the combined table, when there are several sections)
    (the tests whose outcome differs by GPU, when the sections come from several GPU types)
    <!-- modal-gpu-action:section NONCE 0 -->          then each section's markdown body
    ...
    <!-- modal-gpu-action:end NONCE -->

Tamper-safety:
- The marker and the data line come first, before any text of a report, at fixed places.
- The JSON escapes `<`, `>`, `&` and `-` (as `\\u003c`...), so nothing in it can close the HTML
  comment early (`-->`, `--!>`); the marker's key is percent-encoded (`markdown.comment_marker`).
- Bodies are split on delimiters that carry a random nonce chosen, at each write, so that it
  occurs in no body: no report text can fake a section boundary.
- What is read back is checked (types, ranges); a section whose row is unreadable is left out,
  one whose body is unreadable keeps its row and a link to its run, one whose hidden test state
  is unreadable keeps its row without it.

Each row may carry the job's hidden test state (`state`: base64 of compressed JSON, bounded by
`test_state.STATE_CHARS`, see report/test_state.py) and the GPU it ran on (`gpu`): the next run
of the job compares with the state (publish/previous_run.py), and the table of tests whose
outcome differs by GPU is made from every section's (render/gpu_differences.py).

Size: GitHub refuses comment bodies above `github_limits.COMMENT_CHARS`. When the sections together are
longer, the other jobs' bodies (largest first), then this job's own, are shortened to a line with a
link to their run; a row is never dropped. When even that is too long, the hidden test states
go too (the other jobs' largest first): the next runs then compare counts only.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from modal_gpu_action.github_actions.github_limits import COMMENT_CHARS, SHA, safe_link
from modal_gpu_action.render.durations import format_duration
from modal_gpu_action.render.gpu_differences import gpu_differences
from modal_gpu_action.render.markdown import comment_marker, escape_inline
from modal_gpu_action.render.tables import LEFT, RIGHT, table
from modal_gpu_action.report.conclusion import Conclusion
from modal_gpu_action.report.results import TestReport
from modal_gpu_action.report.test_state import MAX_STATE_CHARS

MAX_KEY_CHARS = 100

_PREFIX = "<!-- modal-gpu-action:"
_DATA = "<!-- modal-gpu-action:data "
_MARKER_LINE = re.compile(r"<!-- modal-gpu-action:[^<>!\s]* -->")
_DATA_LINE = re.compile(r"<!-- modal-gpu-action:data (\{[^<>]*\}) -->")
_NONCE = re.compile(r"^[a-z0-9]{8,32}$")
_WRITER = re.compile(r"^[0-9a-z]{0,32}$")
_STATE = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


@dataclass(frozen=True, slots=True)
class Section:
    """One job's part of the comment: its table row and its markdown body.

    `body` is the job's report as markdown, already escaped by `markdown` (without the marker line).
    `run_url`, `sha` and `written_at` are filled in by `github_comment.publish` when left empty.
    """

    key: str
    conclusion: Conclusion
    tests: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    duration: float = 0.0  # seconds
    not_run: int = 0  # collected, never started (the run crashed, timed out, was cancelled)
    problems: int = 0  # the run's own problems (not tests): a shard crashed, timed out...
    body: str = ""
    run_url: str = ""
    sha: str = ""
    written_at: float = 0.0  # seconds since the epoch
    shortened: bool = False  # the body was replaced by a link to the run
    writer: str = ""  # a random id of the job run that wrote the section
    state: str = ""  # the job's hidden test state (report/test_state.py), encoded; "" for none
    gpu: str = ""  # the GPU the job ran on, as it reported itself ("" when unknown)

    @property
    def passing(self) -> bool:
        return self.conclusion.passing

    def same_result(self, other: Section) -> bool:
        """Whether two runs of a section came out the same (durations and links aside)."""
        return _result(self) == _result(other)


def section_for(
    key: str,
    conclusion: Conclusion,
    report: TestReport,
    comment: str,
    *,
    state: str = "",
    gpu: str = "",
) -> Section:
    """This job's section: its row from the run (counted as the outputs count them), its body
    from the rendered comment (its marker line dropped), its encoded test state and GPU."""
    totals = report.totals
    return Section(
        key=clean_key(key),
        conclusion=conclusion,
        tests=totals.tests,
        passed=totals.shown_passed,
        failed=totals.failed,
        errors=totals.errors,
        skipped=totals.shown_skipped,
        duration=report.wall_time,
        not_run=totals.not_run,
        problems=len(report.problems),
        body=strip_marker(comment),
        state=state,
        gpu=clean_gpu(gpu),
    )


def _result(section: Section) -> tuple[object, ...]:
    return (
        section.conclusion,
        section.tests,
        section.passed,
        section.failed,
        section.errors,
        section.skipped,
        section.not_run,
        section.problems,
    )


def clean_key(key: str) -> str:
    """A section or comment key as stored: one line, trimmed, at most MAX_KEY_CHARS."""
    text = " ".join(key.split())[:MAX_KEY_CHARS]
    return text or "tests"


def clean_gpu(gpu: str) -> str:
    """A GPU's name as stored: one line, trimmed, at most MAX_KEY_CHARS ("" stays "")."""
    return " ".join(gpu.split())[:MAX_KEY_CHARS]


def marker(key: str) -> str:
    """The hidden first line a comment is found by (markdown's marker: the key is percent-encoded,
    so it cannot close the HTML comment)."""
    return comment_marker(" ".join(key.split()))


def marker_line(body: str) -> str | None:
    """The first line of a body when it is one of our comment markers, else None."""
    first = body.split("\n", 1)[0].rstrip("\r")
    return first if _MARKER_LINE.fullmatch(first) else None


def strip_marker(body: str) -> str:
    """A rendered body without its leading marker line, if it has one."""
    if marker_line(body) is None:
        return body
    return body.partition("\n")[2].lstrip("\n")


def parse_comment(body: str) -> dict[str, Section]:
    """The sections a comment of ours holds, by key (empty when it holds none we can read)."""
    lines = body.split("\n", 2)
    if len(lines) < 2 or marker_line(body) is None:
        return {}
    match = _DATA_LINE.fullmatch(lines[1].rstrip("\r"))
    if not match:
        return {}
    try:
        data = json.loads(match.group(1))
    except ValueError:
        return {}
    if not isinstance(data, dict) or data.get("v") != 1:
        return {}
    nonce = data.get("nonce")
    rows = data.get("sections")
    if not isinstance(nonce, str) or not _NONCE.match(nonce) or not isinstance(rows, list):
        return {}
    rest = lines[2] if len(lines) > 2 else ""
    sections: dict[str, Section] = {}
    for index, row in enumerate(rows):
        section = _section_from_row(row)
        if section is None or section.key in sections:
            continue
        text = _body_between(rest, nonce, index)
        if text is None:
            section = replace(section, body="", shortened=True)
        else:
            section = replace(section, body=text)
        sections[section.key] = section
    return sections


def _body_between(text: str, nonce: str, index: int) -> str | None:
    start_tag = f"{_PREFIX}section {nonce} {index} -->"
    start = text.find(start_tag)
    if start < 0:
        return None
    start += len(start_tag)
    ends = [
        position
        for tag in (f"{_PREFIX}section {nonce} {index + 1} -->", f"{_PREFIX}end {nonce} -->")
        if (position := text.find(tag, start)) >= 0
    ]
    if not ends:
        return None
    return text[start : min(ends)].replace("\r\n", "\n").strip("\n")


def _section_from_row(row: Any) -> Section | None:
    """A section's row from untrusted JSON, or None when any field is off."""
    if not isinstance(row, dict):
        return None
    key, conclusion = row.get("key"), Conclusion.read(row.get("conclusion"))
    run_url, sha, short = row.get("run_url", ""), row.get("sha", ""), row.get("short", False)
    writer, state, gpu = row.get("by", ""), row.get("state", ""), row.get("gpu", "")
    if not isinstance(key, str) or conclusion is None:
        return None
    if not (isinstance(run_url, str) and isinstance(sha, str) and isinstance(short, bool)):
        return None
    if not isinstance(writer, str) or not _WRITER.match(writer):
        return None
    if not isinstance(gpu, str):
        return None
    if not (isinstance(state, str) and len(state) <= MAX_STATE_CHARS and _STATE.match(state)):
        state = ""  # the row stands without it: the next run compares counts only
    numbers = {
        name: row.get(name, 0)
        for name in (
            "tests",
            "passed",
            "failed",
            "errors",
            "skipped",
            "not_run",
            "problems",
            "duration_ms",
            "at_ms",
        )
    }
    if not all(_count(v) for v in numbers.values()):
        return None
    return Section(
        key=clean_key(key),
        conclusion=conclusion,
        tests=numbers["tests"],
        passed=numbers["passed"],
        failed=numbers["failed"],
        errors=numbers["errors"],
        skipped=numbers["skipped"],
        not_run=numbers["not_run"],
        problems=numbers["problems"],
        duration=numbers["duration_ms"] / 1000,
        run_url=safe_link(run_url),
        sha=sha if SHA.fullmatch(sha) else "",
        written_at=numbers["at_ms"] / 1000,
        shortened=short,
        writer=writer,
        state=state,
        gpu=clean_gpu(gpu),
    )


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


def merge(*groups: Mapping[str, Section]) -> dict[str, Section]:
    """All sections of several comments (duplicates left by a race): per key the newest write."""
    merged: dict[str, Section] = {}
    for group in groups:
        for key, section in group.items():
            current = merged.get(key)
            if current is None or section.written_at > current.written_at:
                merged[key] = section
    return merged


def compose_comment(
    key: str,
    sections: Mapping[str, Section],
    *,
    own_key: str | None = None,
    limit: int = COMMENT_CHARS,
    nonce: str | None = None,
) -> str:
    """The comment's whole body. Bodies of sections other than `own_key` are shortened first when
    the result would exceed `limit`; rows are always kept."""
    ordered = sorted(sections.values(), key=lambda s: (s.key.casefold(), s.key))
    text = _compose(key, ordered, nonce)
    if len(text) <= limit:
        return text
    others = sorted(
        (s for s in ordered if s.key != own_key and not s.shortened),
        key=lambda s: -len(s.body),
    )
    own = [s for s in ordered if s.key == own_key and not s.shortened]
    for victim in [*others, *own]:
        ordered = [shorten(s) if s.key == victim.key else s for s in ordered]
        text = _compose(key, ordered, nonce)
        if len(text) <= limit:
            return text
    states = sorted(
        (s for s in ordered if s.state),
        key=lambda s: (s.key == own_key, -len(s.state)),
    )
    for victim in states:
        ordered = [replace(s, state="") if s.key == victim.key else s for s in ordered]
        text = _compose(key, ordered, nonce)
        if len(text) <= limit:
            break
    return text


def shorten(section: Section) -> Section:
    """The section with its body replaced by one line that links to its run."""
    where = f"[the run's job summary]({section.run_url})" if section.run_url else "the run"
    note = (
        f"_The details of {escape_inline(section.key)} were left out to keep this comment within"
        f" GitHub's size limit: see {where}._"
    )
    return replace(section, body=note, shortened=True)


def _compose(key: str, sections: list[Section], nonce: str | None) -> str:
    bodies = [s.body.replace("\r\n", "\n").strip("\n") for s in sections]
    table = combined_table(sections) if len(sections) > 1 else ""
    differences = ""
    if len(sections) > 1:
        differences = gpu_differences([(s.key, s.gpu, s.state) for s in sections if s.state])
    nonce = nonce or _new_nonce()
    while any(nonce in text for text in (*bodies, table, differences)):
        nonce = _new_nonce()
    data = {"v": 1, "nonce": nonce, "sections": [_row(s) for s in sections]}
    parts = [marker(key), _DATA + _escape_json(data) + " -->", ""]
    for block in (table, differences):
        if block:
            parts += [block, ""]
    for index, body in enumerate(bodies):
        parts += [f"{_PREFIX}section {nonce} {index} -->", body, ""]
    parts.append(f"{_PREFIX}end {nonce} -->")
    return "\n".join(parts) + "\n"


def _new_nonce() -> str:
    return secrets.token_hex(8)


def _row(section: Section) -> dict[str, object]:
    duration = section.duration if math.isfinite(section.duration) else 0.0
    row = {
        "key": clean_key(section.key),
        "conclusion": section.conclusion.value,
        "tests": max(section.tests, 0),
        "passed": max(section.passed, 0),
        "failed": max(section.failed, 0),
        "errors": max(section.errors, 0),
        "skipped": max(section.skipped, 0),
        "not_run": max(section.not_run, 0),  # these two only when there are some (below)
        "problems": max(section.problems, 0),
        "duration_ms": max(round(duration * 1000), 0),
        "run_url": safe_link(section.run_url),
        "sha": section.sha if SHA.fullmatch(section.sha) else "",
        "at_ms": max(round(section.written_at * 1000), 0),
        "short": section.shortened,
        "by": section.writer if _WRITER.match(section.writer) else "",
        "gpu": clean_gpu(section.gpu),  # these two only when there are some (below)
        "state": section.state if _STATE.match(section.state) else "",
    }
    return {key: value for key, value in row.items() if value or key not in _ONLY_WHEN_SOME}


_ONLY_WHEN_SOME = frozenset({"not_run", "problems", "gpu", "state"})


def _escape_json(value: object) -> str:
    """JSON that cannot end an HTML comment: `<`, `>`, `&` and `-` only appear as \\u escapes.
    Every number in it is a non-negative integer, so `-` can only occur inside strings."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    for char in "<>&-":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def combined_table(sections: Iterable[Section]) -> str:
    """One row per section: key, conclusion, counts and duration (a "Not run" and a "Problems"
    column when a section has some; a commit column when the sections come from different
    commits)."""
    parts = list(sections)
    with_commits = len({s.sha for s in parts if s.sha}) > 1
    with_not_run = any(s.not_run for s in parts)
    with_problems = any(s.problems for s in parts)
    head = ["Job", "Result", "Tests", "Passed", "Failed", "Errors", "Skipped"]
    head += ["Not run"] * with_not_run + ["Problems"] * with_problems + ["Duration"]
    align = [LEFT, LEFT, *[RIGHT] * (len(head) - 2)]
    if with_commits:
        head.append("Commit")
        align.append(LEFT)
    rows = []
    for s in parts:
        cells = [
            escape_inline(s.key),
            s.conclusion.label,
            str(s.tests),
            str(s.passed),
            str(s.failed),
            str(s.errors),
            str(s.skipped),
            *([str(s.not_run)] if with_not_run else []),
            *([str(s.problems)] if with_problems else []),
            format_duration(s.duration),
        ]
        if with_commits:
            cells.append(f"`{s.sha[:7]}`" if s.sha else "")
        rows.append(cells)
    passed = sum(1 for s in parts if s.passing)
    return f"**{passed} of {len(parts)} jobs passed**\n\n" + table(head, rows, align)
