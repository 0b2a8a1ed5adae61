"""The `run` command's flow: Settings -> backend -> TestReport -> written reports -> exit code.

    with session(flags, environ) as started:  # signals ask to stop; the label goes at the end
        settings = load_settings(flags, environ)
        return run(settings, started)

Everything the user had is written before anything that can fail on the network: the merged JUnit
file, the job summary and the outputs come first, the PR comment after. The label is removed when
the session ends, however it ends.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from modal_gpu_action.backends.base import Backend, BackendResult, InfrastructureError
from modal_gpu_action.container.protocol import RunResult
from modal_gpu_action.exit_codes import FAILED, INFRASTRUCTURE, PASSED
from modal_gpu_action.github_actions.github_limits import run_url_from_env
from modal_gpu_action.github_actions.output_files import write_output
from modal_gpu_action.github_actions.workflow import (
    append_summary,
    command,
    commands_stopped,
    in_github_actions,
    mask,
    write_outputs,
)
from modal_gpu_action.render.annotations import annotation_commands
from modal_gpu_action.render.comment_sections import SECTION_LIMIT, section_for
from modal_gpu_action.render.durations import format_duration
from modal_gpu_action.render.markdown import render_comment, render_summary
from modal_gpu_action.report.conclusion import Conclusion
from modal_gpu_action.report.junit_writer import to_junit_xml
from modal_gpu_action.report.redaction import redact_report
from modal_gpu_action.report.results import TestReport, merge, parse_junit
from modal_gpu_action.settings import Settings, load_label_settings

if TYPE_CHECKING:
    from modal_gpu_action.publish.github_requests import Deadline

TITLE = "GPU tests"


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What a run produced, whatever happened: the report, its conclusion and the run's facts."""

    report: TestReport
    conclusion: Conclusion
    exit_code: int
    facts: tuple[tuple[str, str], ...]
    gpu: str
    cost_usd: float | None


@dataclass(frozen=True, slots=True)
class Session:
    """What a run holds from its start to its end: the cancel event that SIGINT and SIGTERM set,
    and in GitHub mode the one deadline of all publishing (the comment's and the label's)."""

    cancel: threading.Event
    publishing: Deadline | None = None


def plan(settings: Settings) -> dict[str, Any]:
    """What a run would do, without running anything or contacting Modal."""
    if settings.backend == "modal":
        from modal_gpu_action.backends import modal as modal_backend

        return modal_backend.plan(settings)
    from modal_gpu_action.backends import local

    return local.plan(settings)


@contextmanager
def session(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> Iterator[Session]:
    """Everything of a run after GitHub's event is read.

    Inside, SIGINT and SIGTERM only set `cancel`: GitHub sends SIGINT, then SIGTERM 7.5 s later,
    and neither may interrupt the writing of the reports. In GitHub mode the label
    (`remove-label`) is removed when the block ends, however it ends: the tests passed or failed,
    an infrastructure error, a bad input, a refused event, a cancel. Left on the PR, it would keep
    asking for a run that cannot happen. When the label's own inputs or the event cannot be read
    there is nothing to remove it with: that SettingsError is raised before the block.
    """
    label = load_label_settings(flags, environ)
    cancel = threading.Event()
    with _cancel_on_signals(cancel):
        if not in_github_actions(environ):
            yield Session(cancel)
            return
        import modal_gpu_action.publish.github as github

        deadline = github.Deadline.for_run(cancel, environ)
        with github.removing_label(label, deadline=deadline):
            yield Session(cancel, deadline)


def run(
    settings: Settings,
    started: Session,
    *,
    environ: Mapping[str, str] = os.environ,
    summary_file: Path | None = None,
    comment_file: Path | None = None,
    stream: TextIO = sys.stdout,
) -> int:
    """Run the tests and write every report; the exit code. Never raises for the tests' sake."""
    github_mode = in_github_actions(environ)
    if github_mode:
        mask(settings.secret_values(), stream)
    outcome = execute(settings, started.cancel, stream=stream)
    # Before anything is rendered or written: a test can print a secret it was given.
    outcome = dataclasses.replace(
        outcome, report=redact_report(outcome.report, settings.secret_values())
    )
    key = section_key(settings, outcome)
    # Written first: a file that cannot be written (a full disk, a link the tests put there)
    # becomes an entry in the report that is still rendered and published.
    outcome = _write_junit(outcome, settings)
    title = f"{TITLE} on {key}"
    summary = render_summary(
        outcome.report, facts=outcome.facts, title=title, conclusion=outcome.conclusion
    )
    publishing = settings.publishing
    comment = render_comment(
        outcome.report,
        key=publishing.comment_key or "gpu-tests",
        facts=outcome.facts,
        run_url=run_url_from_env(environ),
        title=title,
        conclusion=outcome.conclusion,
        limit_chars=SECTION_LIMIT,  # room for a matrix comment's table and other sections
    )
    for path, text, name in (
        (summary_file, summary, "summary-file"),
        (comment_file, comment, "comment-file"),
    ):
        if path is not None:
            _write_or_warn(path, text, settings.workspace, name, stream)
    with commands_stopped(github_mode, stream):  # test ids and messages in it
        print(_one_screen(outcome, settings), file=stream, flush=True)
    if not github_mode:
        return outcome.exit_code
    if settings.job_summary and environ.get("GITHUB_STEP_SUMMARY"):
        try:
            append_summary(Path(environ["GITHUB_STEP_SUMMARY"]), summary)
        except OSError as error:
            _warn(f"the job summary was not written: {error}", stream)
    if settings.annotations:
        prefix = _relative_to_workspace(settings.working_directory, environ)
        for line in annotation_commands(outcome.report, path_prefix=prefix):
            print(line, file=stream, flush=True)
    output_file = Path(environ["GITHUB_OUTPUT"]) if environ.get("GITHUB_OUTPUT") else None
    if output_file:
        try:
            write_outputs(output_file, _outputs(outcome, settings))  # before the network
        except OSError as error:
            _warn(f"the step's outputs were not written: {error}", stream)
    if publishing.context is not None and publishing.comment != "off":
        import modal_gpu_action.publish.github as github

        published = github.publish_comment(
            publishing,
            section=section_for(key, outcome.conclusion, outcome.report, comment),
            deadline=started.publishing,
        )
        if published.comment_url and output_file:
            write_outputs(output_file, {"comment-url": published.comment_url})
    return outcome.exit_code


def _write_junit(outcome: RunOutcome, settings: Settings) -> RunOutcome:
    """Write the merged JUnit file; when it cannot be, the report says so as an error entry."""
    try:
        write_output(settings.junit_xml, to_junit_xml(outcome.report), workspace=settings.workspace)
    except OSError as error:
        report = outcome.report.with_extra_error(
            "modal-gpu-action", "junit-xml", f"the merged JUnit file was not written: {error}", ""
        )
        return dataclasses.replace(outcome, report=report)
    return outcome


def _write_or_warn(path: Path, text: str, workspace: Path, name: str, stream: TextIO) -> None:
    try:
        write_output(path, text, workspace=workspace)
    except OSError as error:
        _warn(f"the {name} was not written: {error}", stream)


def _warn(message: str, stream: TextIO) -> None:
    print(command("warning", message, title="modal-gpu-action"), file=stream, flush=True)


def section_key(settings: Settings, outcome: RunOutcome) -> str:
    """The job's name in titles and in a matrix comment: `matrix-key`, else what ran the tests."""
    if settings.publishing.matrix_key:
        return settings.publishing.matrix_key
    if settings.backend == "modal":
        return str(settings.gpu)
    return outcome.gpu or "this machine"


def _relative_to_workspace(directory: Path, environ: Mapping[str, str]) -> str:
    """Annotations name files relative to the repository; pytest's are relative to its folder."""
    workspace = Path(environ.get("GITHUB_WORKSPACE") or Path.cwd()).resolve()
    return (
        directory.relative_to(workspace).as_posix() if directory.is_relative_to(workspace) else ""
    )


def execute(
    settings: Settings, cancel: threading.Event, *, stream: TextIO = sys.stdout
) -> RunOutcome:
    """Run the backend (setting `cancel` stops it); never raises for the run's sake."""
    backend = _backend(settings, cancel)
    try:
        result = backend.run(backend.requests())
    except InfrastructureError as error:
        report = TestReport().with_extra_error(
            "modal-gpu-action", "infrastructure", str(error), getattr(error, "detail", "")
        )
        title = Conclusion.INFRASTRUCTURE_ERROR.value
        print(command("error", str(error), title=title), file=stream, flush=True)
        return RunOutcome(
            report,
            Conclusion.INFRASTRUCTURE_ERROR,
            INFRASTRUCTURE,
            (),
            _asked_gpu(settings),
            None,
        )
    return outcome_from(result, settings, cancelled=cancel.is_set())


def _asked_gpu(settings: Settings) -> str:
    """The GPU to name when none reported itself: the spec on Modal; nothing on this machine."""
    return str(settings.gpu) if settings.backend == "modal" else ""


def _backend(settings: Settings, cancel: threading.Event) -> Backend:
    if settings.backend == "modal":
        from modal_gpu_action.backends.modal import ModalBackend

        return ModalBackend(settings, cancel_event=cancel)
    from modal_gpu_action.backends.local import LocalBackend

    return LocalBackend(settings, cancel_event=cancel)


@contextmanager
def _cancel_on_signals(cancel: threading.Event) -> Iterator[None]:
    """GitHub cancels a job with SIGINT, then SIGTERM 7.5 s later: both set the cancel event so the
    backend stops its tests (and containers) and returns what finished."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        cancel.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def outcome_from(result: BackendResult, settings: Settings, *, cancelled: bool) -> RunOutcome:
    """Merge the shards into one report, adding an entry for each crash and timeout."""
    reports = []
    for shard in result.shards:
        report = parse_junit(shard.junit_xml.encode(), name=_shard_name(shard))
        # The runner already turns the test that was running into an error when pytest crashed,
        # timed out or was stopped; add the shard's problem only where no case says it.
        if shard.problem and not any(shard.problem in case.detail for case in report.failures):
            report = report.with_extra_error(
                "pytest", _shard_name(shard), shard.problem, shard.output_tail
            )
        reports.append(report)
    report = merge(reports)
    # A report pytest never finished has no suite time: the shards' own run time stands in.
    longest_shard = max((s.duration_seconds for s in result.shards), default=0.0)
    if not report.wall_time:
        report = dataclasses.replace(report, wall_time=longest_shard)
    totals = report.totals
    cancelled = cancelled or result.cancelled or any(s.cancelled for s in result.shards)
    if cancelled:
        conclusion, code = Conclusion.CANCELLED, INFRASTRUCTURE
    elif result.infrastructure_error:
        conclusion, code = Conclusion.INFRASTRUCTURE_ERROR, INFRASTRUCTURE
    elif any(s.timed_out for s in result.shards):
        conclusion, code = Conclusion.TIMED_OUT, FAILED
    elif totals.failed or totals.errors:
        conclusion, code = Conclusion.FAILED, FAILED
    elif totals.tests == 0 or all(s.no_tests for s in result.shards):
        conclusion, code = Conclusion.NO_TESTS, FAILED if settings.fail_on_empty else PASSED
    else:
        conclusion, code = Conclusion.PASSED, PASSED
    if result.infrastructure_error and not cancelled:
        report = report.with_extra_error(
            "modal-gpu-action", "infrastructure", result.infrastructure_error, ""
        )
    gpu = _gpu_description(result.shards) or _asked_gpu(settings)
    cost = result.cost_usd
    facts = _facts(result, settings, gpu, cost)
    return RunOutcome(report, conclusion, code, facts, gpu, cost)


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


def _outputs(outcome: RunOutcome, settings: Settings) -> dict[str, str]:
    totals = outcome.report.totals
    return {
        "conclusion": outcome.conclusion.value,
        "tests": str(totals.tests),
        "passed": str(totals.shown_passed),
        "failed": str(totals.failed),
        "errors": str(totals.errors),
        "skipped": str(totals.shown_skipped),
        "duration-seconds": f"{outcome.report.wall_time:.1f}",
        "junit-xml": str(settings.junit_xml),
        "gpu": outcome.gpu,
        "cost-usd": "" if outcome.cost_usd is None else f"{outcome.cost_usd:.4f}",
    }


def _one_screen(outcome: RunOutcome, settings: Settings) -> str:
    totals = outcome.report.totals
    lines = [
        "",
        f"{TITLE}: {outcome.conclusion.value.upper()}",
        f"  {totals.tests} tests: {totals.shown_passed} passed, {totals.failed} failed,"
        f" {totals.errors} errors, {totals.shown_skipped} skipped"
        f" in {format_duration(outcome.report.wall_time)}",
    ]
    for label, value in outcome.facts:
        lines.append(f"  {label}: {value}")
    for case in outcome.report.failures[:10]:
        first = case.message.splitlines()[0] if case.message else ""
        lines.append(f"  {case.outcome.upper()} {case.id}: {first[:160]}")
    if len(outcome.report.failures) > 10:
        lines.append(f"  ... and {len(outcome.report.failures) - 10} more")
    lines.append(f"  JUnit XML: {settings.junit_xml}")
    return "\n".join(lines)
