"""container/sharding.py: the assignment rules, and the plugin inside real pytest runs."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modal_gpu_action import container
from modal_gpu_action.container.names import junit_names
from modal_gpu_action.container.protocol import RunRequest, RunResult
from modal_gpu_action.container.run import run_tests
from modal_gpu_action.container.sharding import assign_shards, hash_shard, read_durations

PROJECTS = Path(__file__).parent / "fixtures" / "projects"
SOURCE = Path(container.__file__).parents[2]  # holds the package: `-p modal_gpu_action...`

IDS = [f"tests/test_{m}.py::test_{n}" for m in "abc" for n in range(20)]


# --- the rules ----------------------------------------------------------------------------------


def test_hash_rule_is_sha256_of_the_node_id_mod_n() -> None:
    nodeid = "tests/test_a.py::TestC::test_y[1]"
    digest = int.from_bytes(hashlib.sha256(nodeid.encode()).digest()[:8], "big")
    assert hash_shard(nodeid, 3) == digest % 3
    assert assign_shards([nodeid], 3) == {nodeid: digest % 3}


@pytest.mark.parametrize("count", [1, 2, 3, 7])
@pytest.mark.parametrize("durations", [None, {IDS[0]: 30.0, IDS[5]: 12.0, IDS[9]: 0.5}])
def test_every_test_lands_in_exactly_one_shard(
    count: int, durations: dict[str, float] | None
) -> None:
    assignment = assign_shards(IDS, count, durations)
    assert set(assignment) == set(IDS)
    assert set(assignment.values()) <= set(range(count))
    # the same answer whatever order the shards collected in
    assert assign_shards(list(reversed(IDS)), count, durations) == assignment


def test_durations_put_the_longest_tests_apart_and_balance_the_rest() -> None:
    durations = {"a": 10.0, "b": 9.0, "c": 1.0, "d": 1.0, "e": 1.0}
    assignment = assign_shards(["a", "b", "c", "d", "e", "unknown"], 2, durations)

    assert assignment["a"] != assignment["b"]
    loads = Counter[int]()
    for nodeid, shard in assignment.items():
        loads[shard] += durations.get(nodeid, 22.0 / 5)  # unknown: the mean of the known
    assert sorted(loads.values()) == [13.0, 13.4]


def test_durations_of_zero_still_spread_the_tests_evenly() -> None:
    ids = [f"t::{n}" for n in range(9)]
    assignment = assign_shards(ids, 3, dict.fromkeys(ids, 0.0))
    assert sorted(Counter(assignment.values()).values()) == [3, 3, 3]


def test_read_durations_adds_repeated_cases_and_skips_bad_times() -> None:
    xml = """<testsuites><testsuite>
      <testcase classname="tests.test_a" name="test_x" time="1.5"/>
      <testcase classname="tests.test_a" name="test_x" time="0.5"/>
      <testcase classname="tests.test_a" name="test_y" time="oops"/>
      <testcase classname="tests.test_a" name="test_z"/>
    </testsuite></testsuites>"""
    assert read_durations(xml) == {
        ("tests.test_a", "test_x"): 2.0,
        ("tests.test_a", "test_y"): 0.0,
        ("tests.test_a", "test_z"): 0.0,
    }
    with pytest.raises(ValueError, match="not JUnit XML"):
        read_durations("<testsuites>")


# --- the plugin in real runs --------------------------------------------------------------------


def case_ids(result: RunResult) -> list[str]:
    root = ET.fromstring(result.junit_xml)
    return [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")]


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(shutil.copytree(PROJECTS / "many", tmp_path_factory.mktemp("p") / "many"))


def run_shards(path: Path, count: int, **changes: object) -> list[RunResult]:
    requests = [
        RunRequest.from_dict(
            {
                "working_directory": str(path),
                "test_path": "tests",
                "pytest_args": ["-p", "no:cacheprovider"],
                "timeout_seconds": 60.0,
                "env": {},
                "shard_index": index,
                "shard_count": count,
                **changes,
            }
        )
        for index in range(count)
    ]
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda r: run_tests(r, stream=None), requests))


@pytest.fixture(scope="module")
def unsharded(many: Path) -> list[str]:
    (result,) = run_shards(many, 1)
    assert result.exit_code == 0
    return case_ids(result)


@pytest.mark.parametrize("count", [2, 3])
def test_shards_together_run_exactly_the_unsharded_tests(
    many: Path, unsharded: list[str], count: int
) -> None:
    shards = run_shards(many, count)

    together = [case for shard in shards for case in case_ids(shard)]
    assert len(unsharded) == 27
    assert sorted(together) == sorted(unsharded)  # all of them, none twice
    for index, shard in enumerate(shards):
        assert shard.exit_code == 0 and case_ids(shard)
        assert f"shard {index + 1}/{count}: {len(case_ids(shard))} of 27 tests" in shard.output_tail
        assert "assigned by node id hash" in shard.output_tail


def collected_node_ids(path: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_shards_are_balanced_by_a_durations_junit(many: Path, unsharded: list[str]) -> None:
    nodeids = collected_node_ids(many)
    heavy = {
        "tests/test_plain.py::test_number[0]": 30.0,
        "tests/test_plain.py::test_number[1]": 20.0,
        "tests/sub/test_classes.py::TestOuter::test_tricky_ids[a::b]": 10.0,
    }
    known = {n: heavy.get(n, 0.1) for n in nodeids if n != "tests/test_plain.py::test_alone"}
    cases = "".join(
        '<testcase classname="{}" name="{}" time="{}"/>'.format(*junit_names(n), t)
        for n, t in known.items()
    )
    durations_junit = f"<testsuites><testsuite>{cases}</testsuite></testsuites>"

    shards = run_shards(many, 2, durations_junit=durations_junit)

    ids = [case_ids(shard) for shard in shards]
    assert sorted(ids[0] + ids[1]) == sorted(unsharded)
    expected = assign_shards(nodeids, 2, known)
    for index in (0, 1):
        wanted = sorted("::".join(junit_names(n)) for n, s in expected.items() if s == index)
        assert sorted(ids[index]) == wanted
    # 30 s on one side; 20 s + 10 s on the other; the 0.1 s ones (and the unknown one, counted
    # as the mean) even it out
    assert (
        expected["tests/test_plain.py::test_number[0]"]
        != expected["tests/test_plain.py::test_number[1]"]
    )
    mean = sum(known.values()) / len(known)
    loads = [sum(known.get(n, mean) for n, s in expected.items() if s == i) for i in (0, 1)]
    assert abs(loads[0] - loads[1]) < 0.5
    assert "balanced by durations (26 of 27 tests known)" in shards[0].output_tail


def test_an_unusable_durations_file_falls_back_to_the_hash_rule(many: Path) -> None:
    shards = run_shards(many, 2, durations_junit="<not xml")
    assert all(s.exit_code == 0 for s in shards)
    assert "assigned by node id hash (" in shards[0].output_tail
    assert "unusable: not JUnit XML" in shards[0].output_tail


def test_sharding_applies_after_keyword_selection(many: Path) -> None:
    (selected,) = run_shards(many, 1, pytest_args=["-p", "no:cacheprovider", "-k", "more"])
    shards = run_shards(many, 2, pytest_args=["-p", "no:cacheprovider", "-k", "more"])
    assert sorted(case_ids(shards[0]) + case_ids(shards[1])) == sorted(case_ids(selected))
    assert len(case_ids(selected)) == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard-count", "2"], "--shard-count needs --shard-index"),
        (["--shard-count", "2", "--shard-index", "2"], "--shard-index must be from 0 to 1, got 2"),
        (["--shard-count", "0"], "--shard-count must be at least 1, got 0"),
    ],
)
def test_the_plugin_refuses_impossible_options(many: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "modal_gpu_action.container.sharding",
            *args,
            "tests",
        ],
        cwd=many,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SOURCE), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 4
    assert message in done.stderr
