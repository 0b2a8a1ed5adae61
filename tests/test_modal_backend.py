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
from modal_gpu_action.backends.modal_answers import Shard, backend_result, settle, stop
from modal_gpu_action.backends.modal_image import REMOTE_PROJECT
from modal_gpu_action.backends.modal_records import LogRelay, ShardRecords
from modal_gpu_action.container.protocol import Ending, Gpu, GpuFacts, RunRequest, RunResult
from modal_gpu_action.container.record import synthesize_junit
from modal_gpu_action.container.relay import MARKER, encode
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


def settled(
    answer: Any = None,
    error: BaseException | None = None,
    label: str = "",
    relayed: ShardRecords | None = None,
) -> Shard:
    shard = Shard(RunRequest(REMOTE_PROJECT, "tests", [], 60.0, {}, label=label))
    if relayed is not None:
        shard.relayed = relayed
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

    assert first.ending is Ending.TIMED_OUT and first.error is None
    assert second.error == "shard 2/2 failed on Modal: RuntimeError: container exited with -9"
    result = backend_result(parse_gpu_spec("T4"), [first, second], cancelled=False)
    # The timed-out shard reports what it relayed (nothing here); the lost one, which relayed
    # nothing either, is its error alone.
    assert [s.timed_out for s in result.shards] == [True]
    assert result.shards[0].problem == "Modal stopped shard 1/2 at its time limit (180 s)"
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


# --- what a container relayed while its tests ran -------------------------------------------------

GPU_RECORD = {"e": "gpu", "facts": GpuFacts(True, [Gpu(0, "NVIDIA H100 80GB HBM3", 81559, "580")],
                                            "13.0", "1 GPU").to_dict()}  # fmt: skip


def records_of_test(nodeid: str, outcome: str = "passed", finished: bool = True) -> list[Any]:
    """The progress plugin's records of one test (container/progress.py)."""
    path, name = nodeid.split("::")
    records: list[dict[str, Any]] = [
        {"e": "start", "nodeid": nodeid, "location": [path, 1, name],
         "junit": [path.removesuffix(".py").replace("/", "."), name]},
        {"e": "report", "nodeid": nodeid, "when": "setup", "outcome": "passed", "duration": 0.1},
    ]  # fmt: skip
    if finished:
        records += [
            {"e": "report", "nodeid": nodeid, "when": "call", "outcome": outcome, "duration": 1.0,
             **({"message": "assert 1 == 2", "text": "E  assert 1 == 2"} if outcome == "failed" else {})},
            {"e": "report", "nodeid": nodeid, "when": "teardown", "outcome": "passed", "duration": 0},
        ]  # fmt: skip
    return records


def frame_line(records: ShardRecords, seq: int, batch: list[Any], attempt: str = "a1") -> str:
    return encode(records.token, attempt, seq, batch) + "\n"


def test_frames_are_taken_out_of_the_log_and_the_rest_passes_at_once() -> None:
    relay = LogRelay()
    shard = relay.new_shard()
    line = frame_line(shard, 0, [GPU_RECORD, *records_of_test("tests/test_a.py::test_one")])
    pieces = ["[shard 1/2] collected 2 items\n[shard 1/2] tests/test_a.py ", ".", "\n",
              line[:10], line[10:200], line[200:], "no newline yet"]  # fmt: skip

    shown = [relay.filter(2, piece) for piece in pieces]

    assert shown == ["[shard 1/2] collected 2 items\n[shard 1/2] tests/test_a.py ", ".", "\n",
                     "", "", "", "no newline yet"]  # fmt: skip
    assert [r["e"] for r in shard.records] == ["gpu", "start", "report", "report", "report"]
    assert shard.gpu is not None and shard.gpu.gpus[0].name == "NVIDIA H100 80GB HBM3"
    # stdout and stderr are separate streams: a frame's start held on one holds nothing back
    # on the other.
    assert relay.filter(2, "\n" + MARKER[:5]) == "\n" and relay.filter(1, "out\n") == "out\n"
    assert relay.flush() == MARKER[:5]


def test_only_whole_frames_of_this_run_are_taken() -> None:
    relay = LogRelay()
    shard = relay.new_shard()
    good = frame_line(shard, 0, [GPU_RECORD])
    damaged = good.replace(good.split(" ")[4][:8], "AAAAAAAA", 1)  # the payload, not its CRC
    forged = encode("another-runs-token", "a1", 0, [GPU_RECORD]) + "\n"
    printed_by_a_test = f"{MARKER} is how the action relays its records\n"

    shown = relay.filter(2, damaged + forged + printed_by_a_test)

    assert shown == forged + printed_by_a_test
    assert relay.unreadable == 1 and not shard.heard


def test_a_restarted_shard_reports_its_last_container_and_missing_frames() -> None:
    relay = LogRelay()
    shard = relay.new_shard()
    first = records_of_test("tests/test_a.py::test_one")
    relay.filter(2, frame_line(shard, 0, first, attempt="first"))
    relay.filter(2, frame_line(shard, 0, [GPU_RECORD], attempt="second"))
    relay.filter(2, frame_line(shard, 1, first, attempt="first"))  # late: ignored
    relay.filter(2, frame_line(shard, 2, records_of_test("tests/test_a.py::test_two"), "second"))

    notes = [r["message"] for r in shard.records if r["e"] == "note"]
    assert [r.get("nodeid") for r in shard.records if r["e"] == "start"] == [
        "tests/test_a.py::test_two"
    ]
    assert notes == [
        "1 of the 3 batches of records relayed while the tests ran did not arrive: the tests in"
        " them are missing from this report.",
        "This shard ran in 2 containers (Modal started it again after the container before was"
        " lost): these are the last one's tests.",
    ]


def relayed(*records: dict[str, Any]) -> ShardRecords:
    relay = LogRelay()
    shard = relay.new_shard()
    relay.filter(2, frame_line(shard, 0, list(records)))
    return shard


def test_a_shard_that_never_answered_reports_the_tests_that_finished() -> None:
    records = relayed(
        GPU_RECORD,
        *records_of_test("tests/test_a.py::test_one"),
        *records_of_test("tests/test_a.py::test_two", outcome="failed"),
        *records_of_test("tests/test_a.py::test_three", finished=False),
    )
    timed_out = settled(error=TimeoutError("exceeded"), label="shard 1/2", relayed=records)
    lost = settled(error=RuntimeError("exited with -9"), label="shard 2/2", relayed=records)
    cancelled = Shard(REQUEST, relayed=records)
    stop(cancelled, Ending.CANCELLED, "the run was cancelled")

    result = backend_result(parse_gpu_spec("H100"), [timed_out, lost, cancelled], cancelled=True)

    assert [s.ending for s in result.shards] == [Ending.TIMED_OUT, Ending.CRASHED, Ending.CANCELLED]
    for shard in result.shards:
        assert shard.gpu.gpus[0].name == "NVIDIA H100 80GB HBM3"
        assert shard.problem is not None
        assert shard.problem.endswith(" while running tests/test_a.py::test_three")
        assert 'tests="3" failures="1" errors="1"' in shard.junit_xml.decode()
        assert "test did not finish: " + shard.problem in shard.junit_xml.decode()
    assert result.shards[1].problem == (
        "its container ended before it answered (RuntimeError: exited with -9) while running"
        " tests/test_a.py::test_three"
    )
    assert result.infrastructure_error == "shard 2/2 failed on Modal: RuntimeError: exited with -9"


def test_a_lost_container_that_relayed_nothing_is_its_error_alone() -> None:
    lost = settled(error=RuntimeError("no capacity"))
    with pytest.raises(InfrastructureError, match="failed on Modal: RuntimeError: no capacity"):
        backend_result(parse_gpu_spec("T4"), [lost], cancelled=False)
