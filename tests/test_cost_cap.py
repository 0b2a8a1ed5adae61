"""`max-cost-usd`: the time limit derived from the price and the shard count (the lower of it and
timeout-minutes), what `plan` shows, a run stopped at it through the real command (reported as
stopped at the cost cap, not as a plain timeout) on the local backend and on the Modal mock, and
bad values exiting 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modal_mock_server import ModalMock, clean_environ, run_cli, serving, since, why_unavailable
from test_gpu_memory import run_action

from modal_gpu_action.settings import Settings, load_settings

SLOW_TESTS = """
import time

def test_quick():
    pass

def test_slow():
    time.sleep(60)
"""


def slow_project(tmp_path: Path) -> Path:
    folder = tmp_path / "workspace"
    (folder / "tests").mkdir(parents=True)
    (folder / "tests" / "test_slow.py").write_text(SLOW_TESTS)
    return folder


# -- the derived limit --------------------------------------------------------------------------


def settings_with(tmp_path: Path, **inputs: str) -> Settings:
    (tmp_path / "tests").mkdir(exist_ok=True)
    flags = {"backend": "modal", **{k.replace("_", "-"): v for k, v in inputs.items()}}
    return load_settings(flags, {}, workspace=tmp_path)


def test_the_limit_is_the_cap_over_price_times_shards(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, gpu="H100", shards="2", max_cost_usd="0.01")
    # $0.01 / ($0.001097/s x 2 shards) = 4.56 s, rounded down to 0.1 s
    assert settings.cost_cap_seconds(2) == 4.5
    assert settings.test_timeout_seconds(2) == 4.5
    assert settings.timeout_cause(2) == "the cost cap (max-cost-usd $0.01)"


def test_a_gpu_count_multiplies_the_price(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, gpu="H100:2", max_cost_usd="0.01")
    assert settings.cost_cap_seconds(1) == 4.5


def test_a_fallback_list_is_priced_at_its_dearest_type(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, gpu="L4,H200,T4", max_cost_usd="1")
    assert settings.cost_cap_seconds(1) == pytest.approx(793.0)  # $1 / $0.001261/s = 793.02 s


def test_timeout_minutes_applies_when_it_is_lower(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, gpu="T4", max_cost_usd="5", timeout_minutes="1")
    assert settings.cost_cap_seconds(1) > 60
    assert settings.test_timeout_seconds(1) == 60
    assert not settings.cost_cap_binds(1) and settings.timeout_cause(1) == ""


def test_no_cap_by_default(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    assert settings.max_cost_usd is None and settings.cost_cap_seconds(1) is None
    assert settings.test_timeout_seconds(1) == 30 * 60


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf", "1e400", "$-2"])
def test_a_bad_cap_exits_2_naming_the_input(tmp_path: Path, value: str) -> None:
    folder = slow_project(tmp_path)
    done, _ = run_action(folder, tmp_path, None, "--max-cost-usd", value)
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        f"invalid value {value!r} for input 'max-cost-usd': expected a positive number of US"
        " dollars (e.g. 0.50), or empty for no cap"
    ) in done.stdout + done.stderr
    assert "test session starts" not in done.stdout  # nothing ran


def plan(folder: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "modal_gpu_action", "plan", "--working-directory", ".", *args],
        cwd=folder, env=clean_environ(), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    planned: dict[str, Any] = json.loads(done.stdout)
    return planned


def test_plan_shows_the_derived_limit_on_both_backends(tmp_path: Path) -> None:
    folder = slow_project(tmp_path)
    modal = plan(folder, "--backend", "modal", "--gpu", "H100", "--shards", "2",
                 "--max-cost-usd", "0.01")  # fmt: skip
    assert modal["cost-cap"] == {
        "max-cost-usd": 0.01, "price-per-second-usd": 0.001097, "shards": 2,
        "timeout-seconds": 4.5, "applies": True,
    }  # fmt: skip
    assert modal["timeout-seconds"] == 4.5
    assert modal["container-timeout-seconds"] == 5 + 120  # the container's grace on top
    local = plan(folder, "--backend", "local", "--max-cost-usd", "0.0005")  # T4: 3.05 s
    assert local["cost-cap"]["timeout-seconds"] == 3.0
    assert [shard["timeout-seconds"] for shard in local["shards"]] == [3.0]
    assert plan(folder, "--backend", "local")["cost-cap"] is None


# -- runs stopped at it -------------------------------------------------------------------------


def test_a_run_is_stopped_at_the_cost_cap_and_says_so(tmp_path: Path) -> None:
    folder = slow_project(tmp_path)
    # The local backend prices the run at the `gpu` input's price (T4 by default): 3.0 s.
    done, outputs = run_action(folder, tmp_path, None, "--max-cost-usd", "0.0005")

    assert done.returncode == 1, done.stdout + done.stderr
    console = done.stdout
    assert "GPU tests: TIMED OUT" in console
    note = (
        "The tests were stopped at the cost cap: max-cost-usd $0.0005 buys 3.00s of tests per"
        " shard (T4 on Modal at $0.000164/s)"
    )
    assert note in console
    assert (
        "PROBLEM run: pytest reached the cost cap (max-cost-usd $0.0005) after 3 s and was"
        " stopped while running tests/test_slow.py::test_slow"
    ) in console
    assert "timed out after" not in console  # not a plain timeout
    summary = (tmp_path / "summary.md").read_text()
    comment = (folder / "comment.md").read_text()
    for text in (summary, comment):
        assert "stopped at the cost cap" in text
        assert "Cost cap" in text
    assert outputs["stopped-at-cost-cap"] == "true"
    assert outputs["conclusion"] == "timed out"
    assert float(outputs["duration-seconds"]) < 20  # stopped at 3 s, not after the 60 s sleep
    junit = (folder / "gpu-test-results.xml").read_text()
    assert "reached the cost cap" in junit


def test_a_plain_timeout_is_not_reported_as_the_cost_cap(tmp_path: Path) -> None:
    folder = slow_project(tmp_path)
    done, outputs = run_action(
        folder, tmp_path, None, "--timeout-minutes", "0.05", "--max-cost-usd", "1"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pytest timed out after 3 s" in done.stdout
    assert "stopped at the cost cap" not in done.stdout
    assert (
        "Cost cap: $1: 1h 41m of tests per shard (T4 on Modal at $0.000164/s); timeout-minutes"
        in (done.stdout)
    )
    assert outputs["stopped-at-cost-cap"] == "false"


# -- on the Modal mock --------------------------------------------------------------------------

_UNAVAILABLE = why_unavailable()
MODAL_PROJECTS = Path(__file__).parent / "fixtures" / "modal_projects"


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModalMock]:
    if _UNAVAILABLE is not None:
        pytest.skip(f"MODAL E2E NOT RUN: {_UNAVAILABLE}")
    with serving(tmp_path_factory.mktemp("modal-mock")) as server:
        yield server


def test_on_modal_the_shards_and_the_container_get_the_derived_limit(
    mock: ModalMock, tmp_path: Path
) -> None:
    folder = tmp_path / "slow_project"
    shutil.copytree(MODAL_PROJECTS / "slow_project", folder)
    before = mock.state()
    result = run_cli(
        ["run", "--backend", "modal", "--junit-xml", str(tmp_path / "junit.xml"), "--comment",
         "off", "--gpu", "H100", "--shards", "2", "--max-cost-usd", "0.01",
         "--env", "SLEEP_SECONDS=60"],
        env=clean_environ(**mock.env()), cwd=folder, timeout=90,
    )  # fmt: skip
    record = since(before, mock.state())

    # $0.01 / ($0.001097/s x 2 shards) = 4.5 s for pytest; Modal's own limit adds the grace.
    assert record.function["timeout_secs"] == 5 + 120
    assert result.returncode == 1, result.output
    assert "GPU tests: TIMED OUT" in result.output
    assert "pytest reached the cost cap (max-cost-usd $0.01) after 4.5 s" in result.output
    assert "The tests were stopped at the cost cap" in result.output
    assert result.seconds < 60
