"""A run's outcome: the backend run, its shards merged into one report, how it concluded, the
run's facts (GPU, shards, cost; memory and the cost cap from gpu_usage.py; the files brought
back: `artifacts`) and the step's outputs.

What went wrong with the run itself (a shard that crashed, timed out or was cancelled, pytest
stopped by collection errors) is a `Problem` of the report, apart from the tests. An
interpreter without pytest is an infrastructure error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from modal_gpu_action.backends.base import Backend, BackendResult, InfrastructureError
from modal_gpu_action.container.protocol import Ending, RunRequest, RunResult
from modal_gpu_action.exit_codes import FAILED, INFRASTRUCTURE, PASSED
from modal_gpu_action.github_actions.workflow import command, in_github_actions, one_line
from modal_gpu_action.gpu_usage import GpuUsage, gpu_usage
from modal_gpu_action.render.durations import format_duration
from modal_gpu_action.report.conclusion import Conclusion
from modal_gpu_action.report.junit_reader import parse_junit
from modal_gpu_action.report.merging import merge
from modal_gpu_action.report.results import CaseOutcome, TestReport
from modal_gpu_action.settings import Settings

if TYPE_CHECKING:
    from modal_gpu_action.backends.artifacts import SavedArtifacts
    from modal_gpu_action.report.comparison import Changes


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What a run produced, whatever happened: the report, its conclusion and the run's facts."""

    report: TestReport
    conclusion: Conclusion
    exit_code: int
    facts: tuple[tuple[str, str], ...]
    gpu: str
    cost_usd: float | None
    # the memory peak, a cheaper GPU, the cost cap (gpu_usage.py)
    usage: GpuUsage = dataclasses.field(default_factory=GpuUsage)
    artifacts: SavedArtifacts | None = None  # the files brought back, when `artifacts` asked

    @property
    def notes(self) -> tuple[str, ...]:
        """Sentences for under the headline about the run itself (the cost cap stopped it)."""
        return self.usage.notes


def execute(
    settings: Settings,
    cancel: threading.Event,
    *,
    stream: TextIO = sys.stdout,
    github_mode: bool | None = None,
    meanwhile: Callable[[], object] | None = None,
) -> RunOutcome:
    """Run the backend (setting `cancel` stops it); never raises for the run's sake. The
    backend calls `meanwhile` once while the tests run."""
    github_mode = in_github_actions() if github_mode is None else github_mode
    backend = _backend(settings, cancel)
    requests: list[RunRequest] = []
    try:
        requests = backend.requests()
        result = backend.run(requests, meanwhile=_never_raising(meanwhile))
    except InfrastructureError as error:
        report = TestReport().with_problem("infrastructure", str(error), error.detail)
        return _infrastructure_outcome(report, str(error), settings, stream, github_mode)
    # Before the report: whatever the shards brought back is on disk even if rendering fails.
    artifacts = None
    if settings.artifacts:  # zipfile and the rest imported only then
        from modal_gpu_action.backends.artifacts import save

        artifacts = save(result.shards, settings)
    outcome = outcome_from(
        result, settings, cancelled=cancel.is_set(), requests=requests, artifacts=artifacts
    )
    if outcome.conclusion is Conclusion.INFRASTRUCTURE_ERROR and outcome.report.problems:
        _say_error(outcome.report.problems[-1].message, stream, github_mode)
    return outcome


def _never_raising(meanwhile: Callable[[], object] | None) -> Callable[[], object] | None:
    """`meanwhile` with its exceptions dropped: it only moves work (the imports after the tests)
    into the time the tests run, and what it would have done is done after them, failing there
    if it must; the backend's tests and results stay whole."""
    if meanwhile is None:
        return None

    def call() -> None:
        with contextlib.suppress(Exception):
            meanwhile()

    return call


def _infrastructure_outcome(
    report: TestReport, message: str, settings: Settings, stream: TextIO, github_mode: bool
) -> RunOutcome:
    _say_error(message, stream, github_mode)
    return RunOutcome(
        report, Conclusion.INFRASTRUCTURE_ERROR, INFRASTRUCTURE, (), _asked_gpu(settings), None
    )


def _say_error(message: str, stream: TextIO, github_mode: bool) -> None:
    """An error: a workflow command in GitHub mode, a plain line elsewhere."""
    if github_mode:
        title = Conclusion.INFRASTRUCTURE_ERROR.value
        print(command("error", message, title=title), file=stream, flush=True)
    else:
        print(f"error: {one_line(message)}", file=stream, flush=True)


def _asked_gpu(settings: Settings) -> str:
    """The GPU to name when none reported itself: the spec on Modal; nothing on this machine."""
    return str(settings.gpu) if settings.backend == "modal" else ""


def _backend(settings: Settings, cancel: threading.Event) -> Backend:
    if settings.backend == "modal":
        from modal_gpu_action.backends.modal import ModalBackend

        return ModalBackend(settings, cancel_event=cancel)
    from modal_gpu_action.backends.local import LocalBackend

    return LocalBackend(settings, cancel_event=cancel)


def outcome_from(
    result: BackendResult,
    settings: Settings,
    *,
    cancelled: bool,
    requests: Sequence[RunRequest] = (),
    artifacts: SavedArtifacts | None = None,
) -> RunOutcome:
    """Merge the shards into one report; each shard's problem (a crash, a timeout, a cancel,
    pytest stopped by collection errors) is a problem of the run, apart from the tests."""
    reports = []
    with contextlib.ExitStack() as handed_over:  # pytest's files (local backend): all closed
        for shard in result.shards:
            if shard.junit_file is not None:
                handed_over.enter_context(shard.junit_file)
        for shard in result.shards:
            report = parse_junit(shard.junit_file or shard.junit_xml, name=_shard_name(shard))
            if shard.problem:
                report = report.with_problem(
                    _shard_name(shard), _problem_message(shard, report), shard.output_tail
                )
            reports.append(report)
    report = merge(reports)
    # The run's wall time: the longest shard's pytest (shards run side by side). pytest's own
    # suite time misses a run it never finished (a timeout, a crash).
    longest_shard = max((s.duration_seconds for s in result.shards), default=0.0)
    report = dataclasses.replace(report, wall_time=longest_shard or report.wall_time)
    totals = report.totals
    cancelled = cancelled or result.cancelled or any(s.cancelled for s in result.shards)
    missing = _missing_pytest(result.shards, requests, settings)
    if cancelled:
        conclusion, code = Conclusion.CANCELLED, INFRASTRUCTURE
    elif result.infrastructure_error or missing:
        conclusion, code = Conclusion.INFRASTRUCTURE_ERROR, INFRASTRUCTURE
    elif any(s.timed_out for s in result.shards):
        conclusion, code = Conclusion.TIMED_OUT, FAILED
    elif (
        totals.failed
        or totals.errors
        or totals.not_run
        or report.problems
        or (totals.flaky and settings.flaky_fails)  # `flaky: fail`
    ):
        conclusion, code = Conclusion.FAILED, FAILED
    elif totals.tests == 0 or all(s.no_tests for s in result.shards):
        conclusion, code = Conclusion.NO_TESTS, FAILED if settings.fail_on_empty else PASSED
    else:
        conclusion, code = Conclusion.PASSED, PASSED
    if result.infrastructure_error and not cancelled:
        report = report.with_problem("infrastructure", result.infrastructure_error)
    if missing and not cancelled:
        report = report.with_problem("infrastructure", missing)
    gpu = _gpu_description(result.shards) or _asked_gpu(settings)
    cost = result.cost_usd
    usage = gpu_usage(result, settings)
    facts = _facts(result, settings, gpu, cost) + usage.facts + _artifact_facts(artifacts, settings)
    return RunOutcome(report, conclusion, code, facts, gpu, cost, usage, artifacts)


def _problem_message(shard: RunResult, report: TestReport) -> str:
    """The shard's problem for people. pytest's exit code 2 after collection errors means it ran
    no test at all, which "interrupted" does not say."""
    problem = shard.problem or ""
    collection_errors = sum(
        1 for case in report.cases if case.collection and case.outcome is CaseOutcome.ERROR
    )
    if (
        shard.exit_code == 2
        and shard.ending is Ending.FINISHED
        and collection_errors
        and all(case.collection for case in report.cases)
    ):
        return (
            f"pytest stopped after {collection_errors:,} collection"
            f" error{'' if collection_errors == 1 else 's'} and ran no test (exit code 2;"
            " its option --continue-on-collection-errors runs the tests that were collected)"
        )
    return problem


_NO_PYTEST = re.compile(r"No module named '?pytest'?\s*$", re.MULTILINE)


def _missing_pytest(
    shards: Sequence[RunResult], requests: Sequence[RunRequest], settings: Settings
) -> str:
    """What to say when the interpreter that was to run pytest has none ("" when it had): not
    the tests' failure but the machine's, an infrastructure error."""
    for shard in shards:
        if shard.ending is not Ending.COULD_NOT_RUN or not _NO_PYTEST.search(shard.output_tail):
            continue
        python = next(
            (r.python for r in requests if r.shard_index == shard.shard_index and r.python), ""
        )
        if settings.backend == "local":
            return (
                f"the Python interpreter {python or 'chosen'} has no pytest: install pytest in it"
                " (the job's Python environment), or name one that has it in the"
                " MODAL_GPU_ACTION_PYTHON variable"
            )
        return (
            "the image's Python has no pytest: add pytest to the image (the project's test"
            " dependencies, 'requirements' or 'extra-packages')"
        )
    return ""


def _shard_name(shard: RunResult) -> str:
    return f"shard {shard.shard_index + 1}/{shard.shard_count}" if shard.shard_count > 1 else "run"


def _gpu_description(shards: list[RunResult]) -> str:
    names: list[str] = []
    for shard in shards:
        for gpu in shard.gpu.gpus:
            label = gpu.name
            if label not in names:
                names.append(label)
    return ", ".join(names)


def _facts(
    result: BackendResult, settings: Settings, gpu: str, cost: float | None
) -> tuple[tuple[str, str], ...]:
    rows: list[tuple[str, str]] = [("Backend", result.backend)]
    if result.backend == "modal":
        rows.append(("GPU asked for", str(settings.gpu)))
    for shard in result.shards:
        facts = shard.gpu
        prefix = f"{_shard_name(shard).capitalize()}: " if len(result.shards) > 1 else ""
        if facts.visible and facts.gpus:
            cards = "; ".join(f"{g.name} ({g.memory_total_mib} MiB)" for g in facts.gpus)
            extra = f", driver {facts.gpus[0].driver_version}"
            extra += f", CUDA {facts.cuda_version}" if facts.cuda_version else ""
            rows.append(("GPU", f"{prefix}{cards}{extra}"))
        else:
            rows.append(("GPU", f"{prefix}{facts.note or 'no GPU visible'}"))
    if len(result.shards) > 1:
        rows.append(("Shards", str(len(result.shards))))
    if result.gpu_seconds:
        rows.append(("GPU time", format_duration(result.gpu_seconds)))
    if cost is not None:
        rows.append(("Cost", f"${cost:.4f} (estimate from Modal's per-second prices)"))
    return tuple(rows)


def _artifact_facts(
    artifacts: SavedArtifacts | None, settings: Settings
) -> tuple[tuple[str, str], ...]:
    if artifacts is None:
        return ()
    rows = [("Artifacts", artifacts.describe(settings.workspace))]
    if artifacts.left_out:
        rows.append(("Artifacts left out", artifacts.describe_left_out()))
    return tuple(rows)


def outputs(
    outcome: RunOutcome, settings: Settings, changes: Changes | None = None
) -> dict[str, str]:
    """The step's outputs (publish/outputs.py lists them), as written to $GITHUB_OUTPUT."""
    totals = outcome.report.totals
    usage = outcome.usage
    return {
        "conclusion": outcome.conclusion.value,
        "tests": str(totals.tests),
        "passed": str(totals.shown_passed),
        "failed": str(totals.failed),
        "errors": str(totals.errors),
        "skipped": str(totals.shown_skipped),
        "not-run": str(totals.not_run),
        "flaky": str(totals.flaky),
        "problems": str(len(outcome.report.problems)),
        "duration-seconds": f"{outcome.report.wall_time:.1f}",
        "junit-xml": str(settings.junit_xml),
        "gpu": outcome.gpu,
        "cost-usd": "" if outcome.cost_usd is None else f"{outcome.cost_usd:.4f}",
        "gpu-memory-peak-mib": "" if usage.peak_mib is None else str(usage.peak_mib),
        "cheaper-gpu": "" if usage.cheaper is None else str(usage.cheaper),
        "stopped-at-cost-cap": "true" if usage.stopped_at_cost_cap else "false",
        "artifacts-path": str(settings.artifacts_path) if settings.artifacts else "",
        **change_outputs(changes),
    }


def change_outputs(changes: Changes | None) -> dict[str, str]:
    """What changed since the run compared with, as counts ("" when not known)."""
    if changes is None:
        return dict.fromkeys(("new-failures", "fixed", "tests-added", "tests-removed"), "")

    def count(ids: tuple[str, ...] | None) -> str:
        return "" if ids is None else str(len(ids))

    return {
        "new-failures": count(changes.new_failures),
        "fixed": count(changes.fixed),
        "tests-added": count(changes.added),
        "tests-removed": count(changes.removed),
    }
