"""What the Modal containers answered, as the run's BackendResult.

Each shard's call ends with an answer (container/entry.py's `{"result": ...}` or `{"error":
...}`) or an exception (Modal's timeout, a lost container), or it is cancelled; `settle` turns
an answer into the shard's RunResult or its error, and notes how a shard without one ended.
`backend_result` puts the shards together with the GPU time and the cost, priced by the GPU each
container reported (a fallback list may give each shard another one). A shard that never
answered gets the report of what its container relayed while the tests ran (modal_records.py):
the tests that finished keep their outcome, the one running says why it did not finish.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from modal_gpu_action.backends.base import BackendResult, InfrastructureError
from modal_gpu_action.backends.modal_records import ShardRecords
from modal_gpu_action.container.protocol import Ending, GpuFacts, RunRequest, RunResult
from modal_gpu_action.container.record import running_test, synthesize_junit
from modal_gpu_action.settings.gpu import GpuChoice, GpuSpec

NAME = "modal"


@dataclasses.dataclass
class Shard:
    """One shard: its request, its Modal call, and what became of it."""

    request: RunRequest
    relayed: ShardRecords = dataclasses.field(default_factory=lambda: ShardRecords(""))
    call: Any = None  # the modal.FunctionCall
    started: float = 0.0  # time.monotonic() at the spawn
    result: RunResult | None = None
    seconds: float = 0.0  # the container's own time for this shard
    error: str | None = None  # not the tests' fault
    detail: str = ""
    # How a shard that did not answer ended, and one line saying so: its report is then made
    # of what its container relayed (`backend_result`).
    ending: Ending | None = None
    note: str = ""

    @property
    def label(self) -> str:
        return self.request.label or "the container"


def settle(
    shard: Shard, answer: Any, error: BaseException | None, *, elapsed: float, time_limit: int
) -> None:
    """Record what the shard's call gave: `answer` (the function's return value) or `error`
    (what the call raised), `elapsed` seconds after it was spawned. `time_limit` is Modal's
    function timeout, named when Modal stopped the container at it."""
    if error is not None:
        shard.seconds = elapsed
        if is_function_timeout(error):
            stop(
                shard,
                Ending.TIMED_OUT,
                f"Modal stopped {shard.label} at its time limit ({time_limit} s)",
            )
        else:
            shard.error = f"{shard.label} failed on Modal: {one_line(error)}"
            stop(
                shard, Ending.CRASHED, f"its container ended before it answered ({one_line(error)})"
            )
        return
    if not isinstance(answer, dict):
        shard.error = f"{shard.label} answered something unexpected: {type(answer).__name__}"
        return
    shard.seconds = float(answer.get("seconds") or elapsed)
    if "error" in answer:
        shard.error = f"{shard.label}: {answer['error']}"
        shard.detail = str(answer.get("detail") or "")
        return
    try:
        result = RunResult.from_dict(answer["result"])
    except (KeyError, TypeError, ValueError) as problem:
        shard.error = f"{shard.label} answered an unreadable result: {problem}"
        return
    shard.result = result
    if result.ending is Ending.COULD_NOT_RUN:
        # Not the tests' fault (the image lacks a module conftest imports, a usage error): an
        # infrastructure error, with the cause pytest printed last.
        cause = next(
            (
                m.group(1).strip()
                for line in reversed(result.output_tail.splitlines())
                if (m := _CAUSE.search(line.strip().removeprefix("E").strip()))
            ),
            "",
        )
        shard.error = f"{shard.label}: pytest could not run the tests: {result.problem}" + (
            f": {cause}" if cause else ""
        )
        shard.detail = result.output_tail


_CAUSE = re.compile(r"\b([A-Za-z_.]*(?:Error|Exception|Exit)\b:?.*)$")


def stop(shard: Shard, ending: Ending, note: str) -> None:
    """Record how a shard that will not answer ended (cancelled, timed out, lost)."""
    shard.ending, shard.note = ending, note


def partial_result(shard: Shard) -> RunResult | None:
    """The report of a shard that did not answer, from what its container relayed: the tests
    that finished, the one that was running as an error saying why it did not finish. None for
    a lost container that relayed nothing (it never reached pytest: its error says why)."""
    if shard.ending is None or (shard.ending is Ending.CRASHED and not shard.relayed.heard):
        return None
    records = shard.relayed.records
    running = running_test(records)
    reason = shard.note + (f" while running {running}" if running else "")
    request = shard.request
    return RunResult(
        junit_xml=synthesize_junit(records, unfinished_reason=reason),
        exit_code=None,
        duration_seconds=round(shard.seconds, 3),
        gpu=shard.relayed.gpu or GpuFacts(False, [], None, f"unknown: {shard.note}"),
        ending=shard.ending,
        output_tail="",
        shard_index=request.shard_index,
        shard_count=request.shard_count,
        label=request.label,
        problem=reason,
        # The files are packed into the answer, which never came.
        artifacts_left_out=(
            ["every file: its container did not answer, so none came back"]
            if request.artifacts
            else []
        ),
    )


def is_function_timeout(error: BaseException) -> bool:
    """Modal stopped the function at its timeout: FunctionTimeoutError, or the TimeoutError the
    local emulator raises in its place."""
    if isinstance(error, TimeoutError):
        return True
    with contextlib.suppress(ImportError):
        from modal.exception import FunctionTimeoutError

        return isinstance(error, FunctionTimeoutError)
    return False


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if text.startswith(type(error).__name__) else f"{type(error).__name__}: {text}"


def backend_result(spec: GpuSpec, shards: Sequence[Shard], *, cancelled: bool) -> BackendResult:
    """The run's result from its shards, those that did not answer from what they relayed.
    Raises InfrastructureError when no shard has a result and the run was not cancelled."""
    for shard in shards:
        if shard.result is None:
            shard.result = partial_result(shard)
    results = [s.result for s in shards if s.result is not None]
    errors = [s for s in shards if s.error]
    if not results and not cancelled:
        message = "; ".join(s.error or "" for s in errors) or "no shard answered"
        raise InfrastructureError(message, detail="\n\n".join(s.detail for s in errors))
    gpu_seconds = 0.0
    cost: float | None = 0.0
    for shard in shards:
        facts = shard.result.gpu if shard.result is not None else None
        choice = _choice_for(spec, facts)
        gpus = choice.count if choice is not None else spec.primary.count
        gpu_seconds += shard.seconds * gpus
        price = choice.price_per_second if choice is not None else spec.price_per_second()
        cost = None if cost is None or price is None else cost + shard.seconds * price
    return BackendResult(
        backend=NAME,
        shards=results,
        gpu_seconds=round(gpu_seconds, 3),
        cost_usd=None if cost is None else round(cost, 6),
        cancelled=cancelled or any(r.cancelled for r in results),
        infrastructure_error="; ".join(s.error or "" for s in errors) or None,
    )


def _choice_for(spec: GpuSpec, facts: GpuFacts | None) -> GpuChoice | None:
    """The fallback choice a container's GPU (as nvidia-smi names it) belongs to, if one does."""
    if facts is None or not facts.gpus:
        return None if spec.is_fallback_list else spec.primary
    name = facts.gpus[0].name.upper().replace(" ", "-")
    for choice in spec.choices:
        if _matches(choice.type, name):
            return choice
    return None


def _matches(gpu_type: str, name: str) -> bool:
    base = gpu_type.rstrip("!+")
    if base.startswith("A100"):
        return "A100" in name and ("80GB" in name) == base.endswith("80GB")
    if base in ("A10", "A10G"):
        return bool(re.search(r"A10G?(?![0-9])", name))
    return base in name
