"""The Modal backend without Modal: its requests, and what the containers' answers become
(backends/modal_answers.py). The runs themselves, cancellation included, are in
test_modal_e2e.py, against the local Modal server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from modal_gpu_action.backends.base import InfrastructureError
from modal_gpu_action.backends.modal import ModalBackend
from modal_gpu_action.backends.modal_answers import Shard, backend_result, settle
from modal_gpu_action.backends.modal_image import REMOTE_PROJECT
from modal_gpu_action.container.protocol import Ending, Gpu, GpuFacts, RunRequest, RunResult
from modal_gpu_action.container.record import synthesize_junit
from modal_gpu_action.settings import load_settings
from modal_gpu_action.settings.gpu import parse_gpu_spec

PROJECTS = Path(__file__).parent / "fixtures" / "modal_projects"
REQUEST = RunRequest(REMOTE_PROJECT, "tests", [], 60.0, {})


def backend_for(tmp_path: Path, **inputs: str) -> ModalBackend:
    folder = Path(shutil.copytree(PROJECTS / "pyproject_project", tmp_path / "project"))
    flags = {"backend": "modal", "working-directory": str(folder)}
    flags.update({key.replace("_", "-"): value for key, value in inputs.items()})
    return ModalBackend(load_settings(flags, {}, workspace=folder), environ={})


def answer(gpu: str | None = None, **fields: Any) -> dict[str, Any]:
    """What container/entry.py hands back for a run that saw `gpu` (None: no GPU)."""
    gpus = [Gpu(0, gpu, 81559, "580")] if gpu else []
    values: dict[str, Any] = {
        "junit_xml": synthesize_junit([]),
        "exit_code": 0,
        "duration_seconds": 10.0,
        "gpu": GpuFacts(bool(gpu), gpus, "13.0", "note"),
        "ending": Ending.FINISHED,
        "output_tail": "",
    }
    values.update(fields)
    return {"result": RunResult(**values).to_dict(), "seconds": 3.0}


def settled(answer: Any = None, error: BaseException | None = None, label: str = "") -> Shard:
    shard = Shard(RunRequest(REMOTE_PROJECT, "tests", [], 60.0, {}, label=label))
    settle(shard, answer, error, elapsed=2.0, time_limit=180)
    return shard


# --- requests ------------------------------------------------------------------------------------


def test_requests_leave_env_values_to_the_secret(tmp_path: Path) -> None:
    backend = backend_for(tmp_path, env="TOKEN=abc", shards="3")
    requests = backend.requests()
    assert [r.env for r in requests] == [{}, {}, {}]
    assert [r.label for r in requests] == ["shard 1/3", "shard 2/3", "shard 3/3"]
    assert {r.working_directory for r in requests} == {REMOTE_PROJECT}


def test_plan_request_round_trip_is_json(tmp_path: Path) -> None:
    request = backend_for(tmp_path).requests()[0]
    assert RunRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request


# --- answers -------------------------------------------------------------------------------------


def test_an_answer_is_the_shards_result_and_the_containers_time() -> None:
    shard = settled(answer("NVIDIA L4"))
    assert shard.error is None and shard.seconds == 3.0
    assert shard.result is not None and shard.result.gpu.gpus[0].name == "NVIDIA L4"


def test_a_modal_timeout_is_a_timed_out_shard_and_other_errors_are_infrastructure() -> None:
    first = settled(error=TimeoutError("Function call exceeded its timeout"), label="shard 1/2")
    second = settled(error=RuntimeError("container exited with -9"), label="shard 2/2")

    assert first.result is not None and first.result.ending is Ending.TIMED_OUT
    assert first.result.problem == "Modal stopped shard 1/2 at its time limit (180 s)"
    assert second.error == "shard 2/2 failed on Modal: RuntimeError: container exited with -9"
    result = backend_result(parse_gpu_spec("T4"), [first, second], cancelled=False)
    assert [s.timed_out for s in result.shards] == [True]
    assert result.infrastructure_error == second.error


def test_pytest_that_could_not_run_is_infrastructure_with_its_cause() -> None:
    tail = "ImportError while loading conftest '/root/project/tests/conftest.py'.\n" + (
        "tests/conftest.py:1: in <module>\nE   ModuleNotFoundError: No module named 'cupy'"
    )
    shard = settled(answer(exit_code=4, output_tail=tail, ending=Ending.COULD_NOT_RUN,
                           problem="pytest exited with code 4 (usage error)"))  # fmt: skip

    assert shard.error == (
        "the container: pytest could not run the tests: pytest exited with code 4 (usage error):"
        " ModuleNotFoundError: No module named 'cupy'"
    )
    assert shard.result is not None  # kept beside the error


def test_a_crash_is_the_tests_result_not_infrastructure() -> None:
    shard = settled(answer(exit_code=None, ending=Ending.CRASHED, problem="pytest was killed"))
    assert shard.error is None and shard.result is not None


def test_no_answer_at_all_raises_infrastructure_error() -> None:
    shard = settled({"error": "pytest is not installed", "detail": "tail"})
    with pytest.raises(InfrastructureError, match="the container: pytest is not installed"):
        backend_result(parse_gpu_spec("T4"), [shard], cancelled=False)


def test_an_unreadable_answer_is_infrastructure() -> None:
    assert settled({"result": {"junit_xml": ""}}).error == (
        "the container answered an unreadable result: RunResult: missing exit_code,"
        " duration_seconds, gpu, ending, output_tail"
    )
    assert (
        settled(["not", "a", "dict"]).error == "the container answered something unexpected: list"
    )


# --- GPU time and cost ---------------------------------------------------------------------------


def test_cost_uses_the_price_of_the_gpu_each_container_reported() -> None:
    shards = [settled(answer("NVIDIA H100 80GB HBM3")), settled(answer("NVIDIA A100-SXM4-80GB"))]
    for shard in shards:
        shard.seconds = 100.0
    spec = parse_gpu_spec("H100:2,A100-80GB:2")

    result = backend_result(spec, shards, cancelled=False)
    assert result.cost_usd == pytest.approx(100 * 2 * 0.001097 + 100 * 2 * 0.000694)
    assert result.gpu_seconds == 400.0
    assert result.backend == "modal" and not result.cancelled


def test_cost_without_a_reported_gpu_is_the_worst_case_of_the_fallbacks() -> None:
    shard = settled(answer(None))
    shard.seconds = 10.0
    result = backend_result(parse_gpu_spec("L4,H100"), [shard], cancelled=False)
    assert result.cost_usd == pytest.approx(10 * 0.001097)


def test_a_cancelled_run_with_no_answer_is_a_result_not_an_error() -> None:
    result = backend_result(parse_gpu_spec("T4"), [Shard(REQUEST)], cancelled=True)
    assert result.cancelled and result.shards == []
