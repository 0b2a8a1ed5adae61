"""container/sharding.py: the assignment rules, and the plugin inside real pytest runs."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modal_gpu_action import container
from modal_gpu_action.backends.shard_durations import read_durations
from modal_gpu_action.container.balance import ShardPlan, case_key
from modal_gpu_action.container.names import junit_names
from modal_gpu_action.container.protocol import RunRequest, RunResult
from modal_gpu_action.container.run import run_tests
from modal_gpu_action.container.sharding import assign_shards, hash_shard

PROJECTS = Path(__file__).parent / "fixtures" / "projects"
SOURCE = Path(container.__file__).parents[2]  # holds the package: `-p modal_gpu_action...`

IDS = [f"tests/test_{m}.py::test_{n}" for m in "abc" for n in range(20)]


# --- the rules ----------------------------------------------------------------------------------


def test_hash_rule_is_sha256_of_the_node_id_mod_n() -> None:
    nodeid = "tests/test_a.py::TestC::test_y[1]"
    digest = int.from_bytes(hashlib.sha256(nodeid.encode()).digest()[:8], "big")
    assert hash_shard(nodeid, 3) == digest % 3
    assert assign_shards([nodeid], 3) == {nodeid: digest % 3}


def plan_of(durations: dict[str, float], count: int, prefix: str = "") -> ShardPlan:
    """The plan the host makes of a durations file that knows these node ids."""
    cases = [(*junit_names(nodeid, prefix), seconds) for nodeid, seconds in durations.items()]
    return ShardPlan.balance(cases, count)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
@pytest.mark.parametrize("durations", [None, {IDS[0]: 30.0, IDS[5]: 12.0, IDS[9]: 0.5}])
def test_every_test_lands_in_exactly_one_shard(
    count: int, durations: dict[str, float] | None
) -> None:
    plan = None if durations is None else plan_of(durations, count)
    assignment = assign_shards(IDS, count, plan)
    assert set(assignment) == set(IDS)
    assert set(assignment.values()) <= set(range(count))
    # the same answer whatever order the shards collected in, and from the plan as it travels
    assert assign_shards(list(reversed(IDS)), count, plan) == assignment
    if plan is not None:
        travelled = ShardPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
        assert travelled == plan
        assert assign_shards(IDS, count, travelled) == assignment


def test_durations_put_the_longest_tests_apart_and_balance_the_rest() -> None:
    durations = {f"t.py::{n}": s for n, s in zip("abcde", (10.0, 9.0, 1.0, 1.0, 1.0), strict=True)}
    plan = plan_of(durations, 2)
    assignment = assign_shards([*durations, "t.py::unknown"], 2, plan)

    assert assignment["t.py::a"] != assignment["t.py::b"]
    loads = Counter[int]()
    for nodeid, shard in assignment.items():
        loads[shard] += durations.get(nodeid, 22.0 / 5)  # unknown: the mean of the known
    # the known ones are dealt out first (on the host: 10 + 1 | 9 + 1 + 1), then the unknown
    assert sorted(plan.loads) == [11.0, 11.0] and sorted(plan.sizes) == [2, 3]
    assert sorted(loads.values()) == [11.0, 15.4]


def test_unknown_tests_are_dealt_out_on_top_of_the_known_loads() -> None:
    # one known test of 10 s: the first unknown one (10 s, the mean) goes to the other shard,
    # then they alternate (ties: the lower index)
    plan = plan_of({"t.py::known": 10.0, "t.py::gone": 30.0, "t.py::gone_too": 10.0}, 2)
    unknown = [f"t.py::new_{n}" for n in range(5)]
    assignment = assign_shards(["t.py::known", *unknown], 2, plan)
    assert plan.unknown_seconds == 50.0 / 3
    assert sorted(plan.loads) == [20.0, 30.0]
    light = plan.loads.index(20.0)
    assert assignment["t.py::known"] == light
    # 20 + 16.7 > 30: then 30 + 16.7 > 36.7, and so on
    assert [assignment[n] == light for n in unknown] == [True, False, True, False, True]


def test_a_known_test_no_longer_collected_still_counts_in_its_shard() -> None:
    plan = plan_of({"t.py::gone": 100.0, "t.py::here": 1.0}, 2)
    assignment = assign_shards(["t.py::here", "t.py::new"], 2, plan)
    # `gone` (100 s) keeps its shard loaded: the new test goes beside `here` (1 s)
    assert assignment["t.py::new"] == assignment["t.py::here"]


def test_the_plan_keys_tests_by_their_junit_names_with_the_prefix() -> None:
    plan = plan_of({IDS[0]: 50.0, IDS[1]: 50.0}, 2, prefix="gpu")
    assert case_key(*junit_names(IDS[0], "gpu")) in plan.owner
    assert case_key(*junit_names(IDS[0], "")) not in plan.owner
    # known with the prefix: apart; unknown without it: both on top of equal loads, shard 0 first
    assert set(assign_shards(IDS[:2], 2, plan, "gpu").values()) == {0, 1}


def test_durations_of_zero_still_spread_the_tests_evenly() -> None:
    ids = [f"t::{n}" for n in range(9)]
    assignment = assign_shards(ids, 3, plan_of(dict.fromkeys(ids, 0.0), 3))
    assert sorted(Counter(assignment.values()).values()) == [3, 3, 3]


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"count": 2},
        {"count": 2, "known": ["AAAA"], "loads": [0, 0], "sizes": [0, 0], "unknown_seconds": 1},
        {"count": 1, "known": ["!!"], "loads": [0], "sizes": [0], "unknown_seconds": 1},
    ],
)
def test_a_plan_that_is_not_whole_is_refused(data: object) -> None:
    with pytest.raises(ValueError, match="not a shard plan"):
        ShardPlan.from_dict(data)


def test_the_durations_file_is_read_once_by_the_reports_reader(tmp_path: Path) -> None:
    path = tmp_path / "durations.xml"
    path.write_text("""<testsuites><testsuite>
      <testcase classname="tests.test_a" name="test_x" time="1.5"/>
      <testcase classname="tests.test_a" name="test_x" time="0.5"/>
      <testcase classname="tests.test_a" name="test_y" time="oops"/>
      <testcase classname="tests.test_a" name="test_z"/>
    </testsuite></testsuites>""")
    durations = read_durations(path)
    assert sorted(durations.cases) == [
        ("tests.test_a", "test_x", 0.5),
        ("tests.test_a", "test_x", 1.5),
        ("tests.test_a", "test_y", 0.0),
        ("tests.test_a", "test_z", 0.0),
    ]
    plan = durations.plan(2)
    assert plan is not None and sorted(plan.loads) == [0.0, 2.0]  # repeated cases added up
    assert read_durations(path) is durations  # the second reader gets the same parse
    path.write_text("<testsuites>")
    assert read_durations(path).unusable and read_durations(path).plan(2) is None


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
        assert "assigned by test id" in shard.output_tail


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
    plan = plan_of(known, 2)

    shards = run_shards(many, 2, shard_plan=plan.to_dict())

    ids = [case_ids(shard) for shard in shards]
    assert sorted(ids[0] + ids[1]) == sorted(unsharded)
    expected = assign_shards(nodeids, 2, plan)
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
    # the known ones balance within one 0.1 s test; the unknown one (the mean, 2.3 s) goes on
    # top, to the lighter side
    known_loads = [sum(known.get(n, 0) for n, s in expected.items() if s == i) for i in (0, 1)]
    assert abs(known_loads[0] - known_loads[1]) <= 0.1 + 1e-9
    assert abs(loads[0] - loads[1]) <= mean + 0.1
    assert "balanced by durations (26 of 27 tests known)" in shards[0].output_tail


@pytest.mark.parametrize(
    ("plan", "why"),
    [
        ({"count": 2}, "not a shard plan: KeyError"),
        (ShardPlan.balance([("a", "b", 1.0)], 3).to_dict(), "a plan for 3 shards, not 2"),
    ],
)
def test_a_plan_that_cannot_be_used_warns_and_falls_back_to_test_ids(
    many: Path, plan: dict[str, object], why: str
) -> None:
    shards = run_shards(many, 2, shard_plan=plan)
    assert all(s.exit_code == 0 for s in shards)
    for shard in shards:
        assert "assigned by test id. WARNING: --shard-plan " in shard.output_tail
        assert f"is unusable ({why}" in shard.output_tail
        assert "balancing fell back to test ids" in shard.output_tail
    # the same split as with no plan at all
    plain = run_shards(many, 2)
    assert [case_ids(s) for s in shards] == [case_ids(s) for s in plain]


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


def test_a_plan_file_outside_the_project_changes_no_test_id(many: Path, tmp_path: Path) -> None:
    # pytest picks its rootdir from the arguments that look like paths (in a project without a
    # configuration file, the common folder of them all): the file outside the project, given
    # as one token (as run.py gives it), must not move it and every id with it.
    nodeids = collected_node_ids(many)
    many = Path(shutil.copytree(many, tmp_path / "no-ini"))
    (many / "pytest.ini").unlink()
    outside = tmp_path / "elsewhere" / "plan.json"
    outside.parent.mkdir()
    plan = plan_of(dict.fromkeys(nodeids, 1.0), 2)
    outside.write_text(json.dumps(plan.to_dict()))
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
            "-p", "modal_gpu_action.container.sharding", "--shard-index", "0",
            "--shard-count", "2", f"--shard-plan={outside}", "tests",
        ],
        cwd=many, capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": str(SOURCE), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    kept = [line for line in done.stdout.splitlines() if "::" in line]
    assert kept and set(kept) <= set(nodeids)  # the same ids, no prefix
    expected = assign_shards(nodeids, 2, plan)
    assert sorted(kept) == sorted(n for n, shard in expected.items() if shard == 0)


def test_the_plugin_needs_nothing_of_pytest_7s_api(many: Path, tmp_path: Path) -> None:
    # pytest 6 has no pytest.StashKey nor config.stash: take the first away and shard.
    (tmp_path / "without_pytest7_api.py").write_text("import pytest\n\ndel pytest.StashKey\n")
    runs = [
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-p",
                "without_pytest7_api",
                "-p",
                "modal_gpu_action.container.sharding",
                "--shard-index",
                str(index),
                "--shard-count",
                "2",
                "tests",
            ],
            cwd=many,
            capture_output=True,
            text=True,
            timeout=60,
            # no installed plugin (pytest-timeout uses StashKey itself)
            env={
                "PYTHONPATH": f"{tmp_path}:{SOURCE}",
                "PATH": "/usr/bin:/bin",
                "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
            },
        )
        for index in (0, 1)
    ]
    for index, done in enumerate(runs):
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"shard {index + 1}/2: " in done.stdout
    passed = [int(re.search(r"(\d+) passed", done.stdout).group(1)) for done in runs]  # type: ignore[union-attr]
    assert sum(passed) == 27


def test_sharding_works_with_pytest_6(many: Path, tmp_path: Path) -> None:
    """With a real pytest 6.2 where uv has it at hand (offline: no download in a test run)."""
    uv = shutil.which("uv")
    venv = tmp_path / "pytest6"
    if uv is None:
        pytest.skip("uv is not on PATH")
    made = subprocess.run(
        [uv, "venv", "-q", "--offline", "--python", sys.executable, str(venv)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    python = venv / "bin" / "python"
    installed = made.returncode == 0 and (
        subprocess.run(
            [uv, "pip", "install", "-q", "--offline", "--python", str(python), "pytest==6.2.5"],
            capture_output=True,
            text=True,
            timeout=120,
        ).returncode
        == 0
    )
    if not installed:
        pytest.skip("pytest 6.2.5 is not in uv's cache (offline)")
    shards = run_shards(many, 2, python=str(python))
    assert all(s.exit_code == 0 for s in shards), [s.output_tail for s in shards]
    assert "pytest-6.2.5" in shards[0].output_tail
    together = [case for shard in shards for case in case_ids(shard)]
    assert len(together) == len(set(together)) == 27
