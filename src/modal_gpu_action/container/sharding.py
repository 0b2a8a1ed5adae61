"""pytest plugin that keeps shard I of N and deselects the rest.

    pytest -p modal_gpu_action.container.sharding --shard-index I --shard-count N \
        [--shard-plan=FILE]

I is 0-based (0 <= I < N). With N = 1, or without the options, the plugin does nothing. Every
shard computes the same assignment from the collected node ids alone, so the shards' union is
exactly the unsharded selection and no test runs twice, provided every shard collects the same
tests (same code, same arguments; -k/-m are applied first, the plugin runs last). Under
pytest-xdist each worker computes the same selection, so `-n` and sharding combine.

- Without a plan: a test's shard is sha256(node id) mod N. Stable across runs and machines
  (unlike Python's salted `hash`) and independent of what else is collected, but only balanced
  on average: with few tests a shard can get noticeably more, or none (pytest then exits 5).
- With `--shard-plan FILE` (JSON of a balance.ShardPlan: the host read a previous JUnit file once
  and dealt its known tests out by time): a known test goes to the shard the plan gives it, the
  others are dealt out on top of the known loads (balance.py). A plan that cannot be read is a
  warning in the header (`balancing fell back to test ids`) and the hash rule is used instead:
  every shard reads the same plan, so every shard falls back the same way. (Not a Python
  warning: a project's `filterwarnings = error` would turn it into a failed collection.)

Matching goes from the node id to JUnit's names, never back: each collected item's node id is
turned into the (classname, name) pair that pytest's junitxml writes for it
(`tests/test_x.py::TestC::test_y[p]` -> `tests.test_x.TestC`, `test_y[p]`, with `junit_prefix`
in front when set), which is the key the plan knows. The reverse would be ambiguous (a dot in
`tests.test_x.TestC` may be a directory, a module or a class): names.py.

The option is given as one token, `--shard-plan=FILE` (run.py does): pytest decides its rootdir
from the arguments that look like paths before it knows a plugin's options, and a FILE outside
the project given as a separate argument would move the rootdir, and every node id.

Standard library and pytest only (pytest 5 and later: nothing of pytest 7's API); run.py loads it
from its copy of this package.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Sequence
from typing import Any

import pytest

from .balance import ShardPlan, case_key
from .names import junit_names

# The header line, from modifyitems to the report hook (not pytest 7's config.stash: pytest 6).
_SUMMARY: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def hash_shard(nodeid: str, count: int) -> int:
    """The shard of `nodeid` without a plan: sha256 of its UTF-8 bytes, mod `count`."""
    digest = hashlib.sha256(nodeid.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def assign_shards(
    nodeids: Sequence[str], count: int, plan: ShardPlan | None = None, junit_prefix: str = ""
) -> dict[str, int]:
    """Shard index of every node id: by the plan when there is one (see balance.py), else by
    the hash rule."""
    if count < 1:
        raise ValueError(f"shard count must be at least 1, got {count}")
    if plan is None:
        return {nodeid: hash_shard(nodeid, count) for nodeid in nodeids}
    return plan.assign({n: case_key(*junit_names(n, junit_prefix)) for n in nodeids})


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("modal-gpu-action sharding")
    group.addoption(
        "--shard-index", type=int, default=None, help="0-based index of the shard to keep"
    )
    group.addoption("--shard-count", type=int, default=1, help="number of shards (default 1)")
    group.addoption(
        "--shard-plan",
        default=None,
        metavar="FILE",
        help="JSON of the shards balanced by a previous run's durations (balance.py)",
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
    how, plan = _plan_for(config, count)
    nodeids = [item.nodeid for item in items]
    if plan is None:
        assignment = assign_shards(nodeids, count)
    else:
        prefix = _junit_prefix(config)
        keys = {nodeid: case_key(*junit_names(nodeid, prefix)) for nodeid in nodeids}
        assignment = plan.assign(keys)
        known = sum(key in plan.owner for key in keys.values())
        how = f"balanced by durations ({known} of {len(keys)} tests known)"
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


def _plan_for(config: pytest.Config, count: int) -> tuple[str, ShardPlan | None]:
    path = config.getoption("shard_plan")
    if not path:
        return "assigned by test id", None
    try:
        with open(path, "rb") as file:
            plan = ShardPlan.from_dict(json.loads(file.read()))
        if plan.count != count:
            raise ValueError(f"a plan for {plan.count} shards, not {count}")
    except (OSError, ValueError) as error:
        why = error.strerror if isinstance(error, OSError) and error.strerror else error
        return (
            f"assigned by test id. WARNING: --shard-plan {path} is unusable ({why}):"
            " balancing fell back to test ids",
            None,
        )
    return "balanced by durations", plan


def _junit_prefix(config: pytest.Config) -> str:
    try:
        return str(config.getini("junit_prefix") or "")
    except (ValueError, KeyError):
        return ""
