"""pytest plugin that keeps shard I of N and deselects the rest.

    pytest -p modal_gpu_action.container.sharding --shard-index I --shard-count N \
        [--shard-durations=FILE]

I is 0-based (0 <= I < N). With N = 1, or without the options, the plugin does nothing. Every
shard computes the same assignment from the collected node ids alone, so the shards' union is
exactly the unsharded selection and no test runs twice, provided every shard collects the same
tests (same code, same arguments; -k/-m are applied first, the plugin runs last). Under
pytest-xdist each worker computes the same selection, so `-n` and sharding combine.

- Without durations: a test's shard is sha256(node id) mod N. Stable across runs and machines
  (unlike Python's salted `hash`) and independent of what else is collected, but only balanced
  on average: with few tests a shard can get noticeably more, or none (pytest then exits 5).
- With `--shard-durations FILE` (a previous JUnit XML, any number of shards merged): greedy
  balancing by time. Tests are taken longest first (ties by node id) and each goes to the
  least loaded shard (ties: fewer tests, then lower index). A test the file does not know
  counts as the mean of the known ones (1 s when none is known). A file that cannot be read,
  is not JUnit XML or holds no test case is a warning in the header (`balancing fell back to
  test ids`) and the hash rule is used instead: every shard reads the same file, so every shard
  falls back the same way. (Not a Python warning: a project's `filterwarnings = error` would
  turn it into a failed collection.)

Matching the JUnit file to node ids goes from the node id to JUnit's names, never back: each
collected item's node id is turned into the (classname, name) pair that pytest's junitxml writes
for it (`tests/test_x.py::TestC::test_y[p]` -> `tests.test_x.TestC`, `test_y[p]`, with
`junit_prefix` in front when set) and looked up in the file; the time of repeated entries (a
teardown error is a second testcase) is added up. The reverse would be ambiguous (a dot in
`tests.test_x.TestC` may be a directory, a module or a class): names.py.

The option is given as one token, `--shard-durations=FILE` (run.py does): pytest decides its
rootdir from the arguments that look like paths before it knows a plugin's options, and a FILE
outside the project given as a separate argument would move the rootdir, and every node id.

Standard library and pytest only (pytest 5 and later: nothing of pytest 7's API); run.py loads it
from its copy of this package.
"""

from __future__ import annotations

import hashlib
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from .names import junit_names

UNKNOWN_DEFAULT_SECONDS = 1.0
# The header line, from modifyitems to the report hook (not pytest 7's config.stash: pytest 6).
_SUMMARY: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def hash_shard(nodeid: str, count: int) -> int:
    """The shard of `nodeid` without durations: sha256 of its UTF-8 bytes, mod `count`."""
    digest = hashlib.sha256(nodeid.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def read_durations(xml_text: str | bytes) -> dict[tuple[str, str], float]:
    """Seconds per (classname, name) from JUnit XML; repeated entries are added up.
    Raises ValueError when the text is not XML, not JUnit or holds no test case."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as error:
        raise ValueError(f"not JUnit XML: {error}") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise ValueError(f"not JUnit XML: its root is <{root.tag[:100]}>")
    if root.find(".//testcase") is None and root.tag != "testcase":
        raise ValueError("a JUnit XML report without any test case")
    durations: dict[tuple[str, str], float] = {}
    for case in root.iter("testcase"):
        key = (case.get("classname") or "", case.get("name") or "")
        try:
            seconds = float(case.get("time") or 0.0)
        except ValueError:
            seconds = 0.0
        if seconds >= 0:  # also drops NaN
            durations[key] = durations.get(key, 0.0) + seconds
    return durations


def assign_shards(
    nodeids: Sequence[str], count: int, durations: Mapping[str, float] | None = None
) -> dict[str, int]:
    """Shard index of every node id. `durations` (seconds by node id; may be partial) switches
    from the hash rule to greedy balancing; see the module's docstring."""
    if count < 1:
        raise ValueError(f"shard count must be at least 1, got {count}")
    if durations is None:
        return {nodeid: hash_shard(nodeid, count) for nodeid in nodeids}
    unique = sorted(set(nodeids))
    known = [durations[n] for n in unique if n in durations]
    default = sum(known) / len(known) if known else UNKNOWN_DEFAULT_SECONDS
    weights = {n: durations.get(n, default) for n in unique}
    loads = [0.0] * count
    sizes = [0] * count
    assignment = {}
    for nodeid in sorted(unique, key=lambda n: (-weights[n], n)):
        shard = min(range(count), key=lambda i: (loads[i], sizes[i], i))
        assignment[nodeid] = shard
        loads[shard] += weights[nodeid]
        sizes[shard] += 1
    return assignment


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("modal-gpu-action sharding")
    group.addoption(
        "--shard-index", type=int, default=None, help="0-based index of the shard to keep"
    )
    group.addoption("--shard-count", type=int, default=1, help="number of shards (default 1)")
    group.addoption(
        "--shard-durations",
        default=None,
        metavar="FILE",
        help="previous JUnit XML: balance the shards by its test durations",
    )


def pytest_configure(config: pytest.Config) -> None:
    count = config.getoption("shard_count")
    index = config.getoption("shard_index")
    if count < 1:
        raise pytest.UsageError(f"--shard-count must be at least 1, got {count}")
    if count > 1 and index is None:
        raise pytest.UsageError("--shard-count needs --shard-index (0-based)")
    if index is not None and not 0 <= index < count:
        raise pytest.UsageError(f"--shard-index must be from 0 to {count - 1}, got {index}")


@pytest.hookimpl(trylast=True)  # after -k, -m and other plugins have narrowed the selection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    count = config.getoption("shard_count")
    index = config.getoption("shard_index") or 0
    if count <= 1:
        return
    how, by_node = _durations_for(config, items)
    assignment = assign_shards([item.nodeid for item in items], count, by_node)
    kept = [item for item in items if assignment[item.nodeid] == index]
    dropped = [item for item in items if assignment[item.nodeid] != index]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept
    total = len(kept) + len(dropped)
    _SUMMARY[config] = f"shard {index + 1}/{count}: {len(kept)} of {total} tests, {how}"


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    summary = _SUMMARY.get(config)
    return [summary] if summary else []


def _durations_for(
    config: pytest.Config, items: Sequence[pytest.Item]
) -> tuple[str, dict[str, float] | None]:
    path = config.getoption("shard_durations")
    if not path:
        return "assigned by test id", None
    try:
        with open(path, "rb") as file:
            by_key = read_durations(file.read())
    except (OSError, ValueError) as error:
        why = error.strerror if isinstance(error, OSError) and error.strerror else error
        return (
            f"assigned by test id. WARNING: --shard-durations {path} is unusable ({why}):"
            " balancing fell back to test ids",
            None,
        )
    prefix = _junit_prefix(config)
    by_node: dict[str, float] = {}
    for item in items:
        seconds = by_key.get(junit_names(item.nodeid, prefix))
        if seconds is not None:
            by_node[item.nodeid] = seconds
    return f"balanced by durations ({len(by_node)} of {len(items)} tests known)", by_node


def _junit_prefix(config: pytest.Config) -> str:
    try:
        return str(config.getini("junit_prefix") or "")
    except (ValueError, KeyError):
        return ""
