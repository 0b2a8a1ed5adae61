"""The `run` command's flow: Settings -> backend -> TestReport -> written reports -> exit code.

    with session(flags, environ) as started:  # signals ask to stop; the label goes at the end
        settings = load_settings(flags, environ)
        return run(settings, started)

Everything the user had is written before anything that can fail on the network: the merged JUnit
file, the job summary and the outputs come first, the PR comment after. The label is removed when
the session ends, however it ends.

The shards' reports are merged as results.merge does (a module skipped or broken at collection
counts once); what went wrong with the run itself (a shard that crashed, timed out or was
cancelled, pytest stopped by collection errors, the JUnit file not written) is a `Problem` of
the report, apart from the tests, counted in the `problems` output. An interpreter without pytest
is an infrastructure error. Errors and warnings are workflow commands in GitHub mode only.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from modal_gpu_action.backends.base import Backend, BackendResult, InfrastructureError
from modal_gpu_action.container.protocol import Ending, RunRequest, RunResult
from modal_gpu_action.exit_codes import FAILED, INFRASTRUCTURE, PASSED
from modal_gpu_action.github_actions.github_limits import run_url_from_env
from modal_gpu_action.github_actions.output_files import write_output
from modal_gpu_action.github_actions.workflow import (
    append_summary,
    command,
    commands_stopped,
    in_github_actions,
    mask,
    one_line,
    write_outputs,
)
from modal_gpu_action.render.annotations import annotation_commands
from modal_gpu_action.render.comment_sections import SECTION_LIMIT, section_for
from modal_gpu_action.render.durations import format_duration
from modal_gpu_action.render.failures import explanation
from modal_gpu_action.render.markdown import render_comment, render_summary
from modal_gpu_action.report.conclusion import Conclusion
from modal_gpu_action.report.headline import first_line
from modal_gpu_action.report.junit_writer import to_junit_xml
from modal_gpu_action.report.redaction import redact_report
from modal_gpu_action.report.results import (
    CaseOutcome,
    JUnitFileError,
    TestReport,
    merge,
    parse_junit,
    read_junit,
)
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
    """What a run would do, without running anything or contacting Modal. Its keys are in one
    style whatever the backend, the inputs' own (`test-path`, `timeout-seconds`)."""
    if settings.backend == "modal":
        from modal_gpu_action.backends import modal as modal_backend

        planned = modal_backend.plan(settings)
    else:
        from modal_gpu_action.backends import local

        planned = local.plan(settings)
    kebab: dict[str, Any] = _kebab_keys(planned)
    return kebab


_OUR_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


def _kebab_keys(value: Any) -> Any:
    """`value` with every key of ours written `like-this` (`shard_index` -> `shard-index`);
    other keys (an environment variable's name) and the values are left as they are."""
    if isinstance(value, dict):
        return {
            (key.replace("_", "-") if isinstance(key, str) and _OUR_KEY.match(key) else key): (
                _kebab_keys(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_kebab_keys(item) for item in value]
    return value


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
    durations_problem = durations_warning(settings)
    if durations_problem:
        _warn(durations_problem, stream, github_mode)
    outcome = execute(settings, started.cancel, stream=stream, github_mode=github_mode)
    # Before anything is rendered or written: a test can print a secret it was given.
    outcome = dataclasses.replace(
        outcome, report=redact_report(outcome.report, settings.secret_values())
    )
    key = section_key(settings, outcome)
    # Written first: a file that cannot be written (a full disk, a link the tests put there)
    # becomes an entry in the report that is still rendered and published.
    outcome = _write_junit(outcome, settings)
    title = f"{TITLE} on {key}"
    notes = _notes(outcome, settings)
    summary = render_summary(
        outcome.report,
        facts=outcome.facts,
        title=title,
        conclusion=outcome.conclusion,
        notes=notes,
    )
    publishing = settings.publishing
    comment = render_comment(
        outcome.report,
        key=publishing.comment_key or "gpu-tests",
        facts=outcome.facts,
        run_url=run_url_from_env(environ),
        title=title,
        conclusion=outcome.conclusion,
        notes=notes,
        commit=_commit(settings, environ),
        ran_at=datetime.now(UTC),
        limit_chars=SECTION_LIMIT,  # room for a matrix comment's table and other sections
    )
    for path, text, name in (
        (summary_file, summary, "summary-file"),
        (comment_file, comment, "comment-file"),
    ):
        if path is not None:
            _write_or_warn(path, text, settings.workspace, name, stream, github_mode)
    with commands_stopped(github_mode, stream):  # test ids and messages in it
        print(one_screen(outcome, settings, notes), file=stream, flush=True)
    if not github_mode:
        return outcome.exit_code
    if settings.job_summary and environ.get("GITHUB_STEP_SUMMARY"):
        try:
            append_summary(Path(environ["GITHUB_STEP_SUMMARY"]), summary)
        except OSError as error:
            _warn(f"the job summary was not written: {error}", stream, github_mode)
    if settings.annotations:
        prefix = _relative_to_workspace(settings.working_directory, environ)
        for line in annotation_commands(outcome.report, path_prefix=prefix):
            print(line, file=stream, flush=True)
    output_file = Path(environ["GITHUB_OUTPUT"]) if environ.get("GITHUB_OUTPUT") else None
    if output_file:
        try:
            write_outputs(output_file, _outputs(outcome, settings))  # before the network
        except OSError as error:
            _warn(f"the step's outputs were not written: {error}", stream, github_mode)
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
    """Write the merged JUnit file; when it cannot be, the report says so as a problem of the
    run (it fails the run: the file is one of its outputs)."""
    try:
        write_output(settings.junit_xml, to_junit_xml(outcome.report), workspace=settings.workspace)
    except OSError as error:
        report = outcome.report.with_problem(
            "junit-xml", f"the merged JUnit file was not written: {error}"
        )
        conclusion, code = outcome.conclusion, outcome.exit_code
        if conclusion in (Conclusion.PASSED, Conclusion.NO_TESTS):
            conclusion, code = Conclusion.FAILED, FAILED
        return dataclasses.replace(outcome, report=report, conclusion=conclusion, exit_code=code)
    return outcome


def _write_or_warn(
    path: Path, text: str, workspace: Path, name: str, stream: TextIO, github_mode: bool
) -> None:
    try:
        write_output(path, text, workspace=workspace)
    except OSError as error:
        _warn(f"the {name} was not written: {error}", stream, github_mode)


def _warn(message: str, stream: TextIO, github_mode: bool) -> None:
    """A warning: a workflow command in GitHub mode, a plain line elsewhere."""
    if github_mode:
        print(command("warning", message, title="modal-gpu-action"), file=stream, flush=True)
    else:
        print(f"warning: {one_line(message)}", file=stream, flush=True)


def durations_warning(settings: Settings) -> str:
    """Why `shard-durations` cannot balance the shards ("" when it can, or is not used): the
    sharding plugin then falls back to test ids and says so in pytest's header too."""
    path = settings.shard_durations
    if path is None or settings.shards == 1:
        return ""
    try:
        report = read_junit(path)
    except JUnitFileError as error:
        why = error.reason
    else:
        if report.cases:
            return ""
        why = report.problems[0].message if report.problems else "it holds no test case"
    return (
        f"input 'shard-durations': {one_line(str(path))} is not a JUnit XML report with test"
        f" durations ({one_line(why)}): balancing fell back to test ids"
    )


def _commit(settings: Settings, environ: Mapping[str, str]) -> str:
    """The commit the run is about: the pull request's head, else GITHUB_SHA."""
    context = settings.publishing.context
    return (context.sha if context is not None else "") or environ.get("GITHUB_SHA", "")


def _notes(outcome: RunOutcome, settings: Settings) -> tuple[str, ...]:
    """Sentences under the headline: why the conclusion is what it is, where that is not plain."""
    if outcome.conclusion is not Conclusion.NO_TESTS:
        return ()
    if settings.fail_on_empty:
        return (
            "pytest collected no tests, which fails the run because 'fail-on-empty' is true"
            " (check 'test-path' and the -k/-m options in 'pytest-args').",
        )
    return ("pytest collected no tests; the run passes because 'fail-on-empty' is false.",)


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
    settings: Settings,
    cancel: threading.Event,
    *,
    stream: TextIO = sys.stdout,
    github_mode: bool | None = None,
) -> RunOutcome:
    """Run the backend (setting `cancel` stops it); never raises for the run's sake."""
    github_mode = in_github_actions() if github_mode is None else github_mode
    backend = _backend(settings, cancel)
    requests: list[RunRequest] = []
    try:
        requests = backend.requests()
        result = backend.run(requests)
    except InfrastructureError as error:
        report = TestReport().with_problem("infrastructure", str(error), error.detail)
        return _infrastructure_outcome(report, str(error), settings, stream, github_mode)
    outcome = outcome_from(result, settings, cancelled=cancel.is_set(), requests=requests)
    if outcome.conclusion is Conclusion.INFRASTRUCTURE_ERROR and outcome.report.problems:
        _say_error(outcome.report.problems[-1].message, stream, github_mode)
    return outcome


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


def outcome_from(
    result: BackendResult,
    settings: Settings,
    *,
    cancelled: bool,
    requests: Sequence[RunRequest] = (),
) -> RunOutcome:
    """Merge the shards into one report; each shard's problem (a crash, a timeout, a cancel,
    pytest stopped by collection errors) is a problem of the run, apart from the tests."""
    reports = []
    for shard in result.shards:
        report = parse_junit(shard.junit_xml.encode(), name=_shard_name(shard))
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
    elif totals.failed or totals.errors or totals.not_run or report.problems:
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
    facts = _facts(result, settings, gpu, cost)
    return RunOutcome(report, conclusion, code, facts, gpu, cost)


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


def _outputs(outcome: RunOutcome, settings: Settings) -> dict[str, str]:
    totals = outcome.report.totals
    return {
        "conclusion": outcome.conclusion.value,
        "tests": str(totals.tests),
        "passed": str(totals.shown_passed),
        "failed": str(totals.failed),
        "errors": str(totals.errors),
        "skipped": str(totals.shown_skipped),
        "not-run": str(totals.not_run),
        "problems": str(len(outcome.report.problems)),
        "duration-seconds": f"{outcome.report.wall_time:.1f}",
        "junit-xml": str(settings.junit_xml),
        "gpu": outcome.gpu,
        "cost-usd": "" if outcome.cost_usd is None else f"{outcome.cost_usd:.4f}",
    }


def one_screen(outcome: RunOutcome, settings: Settings, notes: Sequence[str] = ()) -> str:
    """The result as the console shows it at the end of the log: counts as pytest gives them,
    the run's problems, then each failure by its node id (what `pytest` takes to run it again)
    with the line that explains it."""
    report = outcome.report
    totals = report.totals
    counts = (
        f"{totals.shown_passed} passed, {totals.failed} failed, {totals.errors}"
        f" error{_s(totals.errors)}, {totals.shown_skipped} skipped"
    )
    if totals.not_run:
        counts += f", {totals.not_run} not run"
    lines = [
        "",
        f"{TITLE}: {outcome.conclusion.value.upper()}",
        f"  {totals.tests} test{_s(totals.tests)}: {counts} in {format_duration(report.wall_time)}",
    ]
    subtests = report.subtests
    if subtests.total:
        lines.append(
            f"  {subtests.total} subtest{_s(subtests.total)}: {subtests.passed} passed,"
            f" {subtests.failed} failed, {subtests.skipped} skipped"
        )
    lines += [f"  {note}" for note in notes]
    for label, value in outcome.facts:
        lines.append(f"  {label}: {value}")
    for problem in report.problems[:10]:
        message = first_line(problem.message)
        lines.append(f"  PROBLEM {problem.where}: {message[:300]}")
    if len(report.problems) > 10:
        lines.append(f"  ... and {len(report.problems) - 10} more problems")
    for case in report.failures[:10]:
        explained = first_line(explanation(case))
        more = f" (and {len(case.more)} more)" if case.more else ""
        lines.append(f"  {case.outcome.upper()} {case.id}: {explained[:200]}{more}")
    if len(report.failures) > 10:
        lines.append(f"  ... and {len(report.failures) - 10} more")
    if totals.not_run:
        lines.append(f"  NOT RUN: {totals.not_run} test{_s(totals.not_run)} never started")
    lines.append(f"  JUnit XML: {settings.junit_xml}")
    return "\n".join(lines)


def _s(count: int) -> str:
    return "" if count == 1 else "s"
