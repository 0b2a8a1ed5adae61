"""What a run keeps of its tests for the next run and for the other jobs of a matrix: the state
hidden in its section of the PR comment, bounded, and read back as hostile text.

A `TestState` holds the counts, the ids of the failing (failed, errored), skipped (xfailed
included) and not-run tests, the ids of all tests while they fit, and a digest of the set of all
ids. It travels as base64 of zlib-compressed compact JSON (`encode`), at most `STATE_CHARS`
characters: base64 has no `-`, `<`, `>` or `!`, so it cannot end the HTML comment it sits in.

The bound. When everything does not fit, `encode` first drops the list of all ids (added and
removed tests are then known only by count, and by the digest whether the set changed), then
cuts the four lists together at one test id, `bound`, the largest that lets them fit: each list
keeps exactly its ids up to `bound` (in sorted order), so for every test that sorts at or before
`bound` the state still knows its outcome - listed, or else passed - and for those after it,
nothing (`covers`). The counts are always kept whole. With typical pytest ids (zlib packs sorted
ids about 8:1) the whole list fits for suites of a few hundred tests, and the listed ids for
about two thousand failing or skipped tests.

Reading (`decode`) checks everything: size, alphabet, a bounded decompression (no zip bomb),
JSON types, id lengths. Anything off and the state is None: it is as if there were none.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from modal_gpu_action.report.results import CaseOutcome, TestReport

STATE_CHARS = 6_000  # what one section's state may take of the comment
MAX_STATE_CHARS = 8_000  # what is read back at most (a later version may keep a little more)
MAX_ID_CHARS = 500  # longer ids are clipped, on both sides of a comparison
_MAX_RAW_BYTES = 4 * 1024 * 1024  # decompressed, at most
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_DIGEST = re.compile(r"^[0-9a-f]{16}$")
_VERSION = 1

# The lists, by their key in the JSON.
LISTS = ("failed", "errors", "skipped", "not_run")
_KEYS = {"failed": "f", "errors": "e", "skipped": "s", "not_run": "n"}
_OUTCOMES: dict[CaseOutcome, str] = {
    CaseOutcome.FAILED: "failed",
    CaseOutcome.ERROR: "errors",
    CaseOutcome.SKIPPED: "skipped",
    CaseOutcome.XFAILED: "skipped",
    CaseOutcome.NOT_RUN: "not_run",
}


@dataclass(frozen=True, slots=True)
class TestState:
    """A run's tests as kept for comparisons. `all_ids` is None when it was not kept; `bound`,
    when not None, is the last test id (in sorted order) that the lists cover: they were cut
    after it ("" covers nothing: a state of counts only)."""

    __test__ = False  # not a pytest test class

    tests: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    not_run: int = 0
    failed_ids: frozenset[str] = frozenset()
    error_ids: frozenset[str] = frozenset()
    skipped_ids: frozenset[str] = frozenset()
    not_run_ids: frozenset[str] = frozenset()
    all_ids: frozenset[str] | None = None
    digest: str = ""
    bound: str | None = None

    @property
    def failing_ids(self) -> frozenset[str]:
        return self.failed_ids | self.error_ids

    @property
    def complete(self) -> bool:
        """Every test that did not pass is listed: a test in none of the lists passed."""
        return self.bound is None

    def covers(self, test_id: str) -> bool:
        """Whether the lists are exact for this test: listed there, else it passed (or, when
        `all_ids` is known and lacks it, it was not in the run)."""
        return self.bound is None or test_id <= self.bound

    def ids(self, name: str) -> frozenset[str]:
        ids: frozenset[str] = getattr(self, _FIELDS[name])
        return ids


_FIELDS = {
    "failed": "failed_ids",
    "errors": "error_ids",
    "skipped": "skipped_ids",
    "not_run": "not_run_ids",
}


def clip_id(test_id: str) -> str:
    return test_id[:MAX_ID_CHARS]


def state_of(report: TestReport) -> TestState:
    """The whole state of a run (nothing cut): what `encode` bounds."""
    totals = report.totals
    lists: dict[str, set[str]] = {name: set() for name in LISTS}
    every: set[str] = set()
    for case in report.cases:
        test_id = clip_id(case.id)
        every.add(test_id)
        name = _OUTCOMES.get(case.outcome)
        if name:
            lists[name].add(test_id)
    return TestState(
        tests=totals.tests,
        passed=totals.shown_passed,
        failed=totals.failed,
        errors=totals.errors,
        skipped=totals.shown_skipped,
        not_run=totals.not_run,
        failed_ids=frozenset(lists["failed"]),
        error_ids=frozenset(lists["errors"]),
        skipped_ids=frozenset(lists["skipped"]),
        not_run_ids=frozenset(lists["not_run"]),
        all_ids=frozenset(every),
        digest=digest_of(every),
    )


def counts_only(
    *, tests: int, passed: int, failed: int, errors: int, skipped: int, not_run: int
) -> TestState:
    """A state that knows only the counts (a section written without ids)."""
    return TestState(
        tests=tests,
        passed=passed,
        failed=failed,
        errors=errors,
        skipped=skipped,
        not_run=not_run,
        bound="",
    )


def digest_of(ids: Iterable[str]) -> str:
    """16 hex digits of SHA-256 over the sorted ids: tells whether two sets of tests differ."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def encode(state: TestState, limit: int = STATE_CHARS) -> str:
    """The state as at most `limit` characters of base64, cut as the module says ("" when not
    even the counts fit)."""
    lists = {name: sorted(state.ids(name)) for name in LISTS}

    def pack(bound: str | None, every: list[str] | None) -> str:
        data: dict[str, Any] = {
            "v": _VERSION,
            "c": [state.tests, state.passed, state.failed, state.errors, state.skipped],
            "h": state.digest,
        }
        if state.not_run:
            data["c"].append(state.not_run)
        for name in LISTS:
            kept = lists[name] if bound is None else [i for i in lists[name] if i <= bound]
            if kept:
                data[_KEYS[name]] = kept
        if every is not None:
            data["a"] = every
        if bound is not None:
            data["b"] = bound
        raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")

    # zlib packs ids about 8:1 at best: a list far beyond what could fit is not even tried (zlib
    # on the ids of a 100,000-test suite would take a second).
    room = limit * _BEST_RATIO
    all_ids = sorted(state.all_ids) if state.all_ids is not None else None
    if all_ids is not None and _raw_size(all_ids) <= room:
        text = pack(state.bound, all_ids)
        if len(text) <= limit:
            return text
    text = pack(state.bound, None)
    if len(text) <= limit:
        return text
    listed = sorted({i for name in LISTS for i in lists[name]})
    if state.bound is not None:
        listed = [i for i in listed if i <= state.bound]
    # The most ids (a prefix of `listed`) whose lists fit: in [low, high].
    low, high = 0, _within(listed, room)
    while low < high:
        middle = (low + high + 1) // 2
        if len(pack(listed[middle - 1], None)) <= limit:
            low = middle
        else:
            high = middle - 1
    text = pack(listed[low - 1] if low else "", None)
    return text if len(text) <= limit else ""


_BEST_RATIO = 20


def _raw_size(ids: list[str]) -> int:
    return sum(len(item) + 3 for item in ids)


def _within(ids: list[str], room: int) -> int:
    """How many of the first ids take at most `room` characters of JSON."""
    total = 0
    for index, item in enumerate(ids):
        total += len(item) + 3
        if total > room:
            return index
    return len(ids)


def decode(text: object) -> TestState | None:
    """A state read back from a comment, or None when anything about it is off."""
    if not isinstance(text, str) or not text or len(text) > MAX_STATE_CHARS:
        return None
    if not _BASE64.match(text):
        return None
    try:
        packed = base64.b64decode(text, validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, _MAX_RAW_BYTES)
        if inflater.unconsumed_tail or not inflater.eof:
            return None
        data = json.loads(raw.decode())
    except (binascii.Error, zlib.error, ValueError):
        return None
    return _state_from(data)


def _state_from(data: Any) -> TestState | None:
    if not isinstance(data, dict) or data.get("v") != _VERSION:
        return None
    counts, digest = data.get("c"), data.get("h", "")
    if not isinstance(counts, list) or len(counts) not in (5, 6) or not all(map(_count, counts)):
        return None
    if not isinstance(digest, str) or (digest and not _DIGEST.match(digest)):
        return None
    bound = data.get("b")
    if bound is not None and not (isinstance(bound, str) and len(bound) <= MAX_ID_CHARS):
        return None
    lists: dict[str, frozenset[str]] = {}
    for name in LISTS:
        ids = _ids(data.get(_KEYS[name], []))
        if ids is None:
            return None
        lists[name] = ids
    all_ids = None
    if "a" in data:
        all_ids = _ids(data["a"])
        if all_ids is None:
            return None
    tests, passed, failed, errors, skipped, *rest = counts
    return TestState(
        tests=tests,
        passed=passed,
        failed=failed,
        errors=errors,
        skipped=skipped,
        not_run=rest[0] if rest else 0,
        failed_ids=lists["failed"],
        error_ids=lists["errors"],
        skipped_ids=lists["skipped"],
        not_run_ids=lists["not_run"],
        all_ids=all_ids,
        digest=digest,
        bound=bound,
    )


def _ids(value: Any) -> frozenset[str] | None:
    if not isinstance(value, list) or not all(
        isinstance(item, str) and 0 < len(item) <= MAX_ID_CHARS for item in value
    ):
        return None
    return frozenset(value)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53
