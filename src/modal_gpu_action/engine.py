"""The `run` command's flow: Settings -> backend -> TestReport -> written reports -> exit code.

    with session(flags, environ) as started:  # signals ask to stop; the label goes at the end
        settings = load_settings(flags, environ)
        return run(settings, started)

Everything the user had is written before anything that can fail on the network: the merged JUnit
file, the job summary and the outputs come first, the PR comment after. The one read before them,
this job's section as the previous run left it (what "changes since the previous run" compares
with), never fails the run: a read that fails is a warning, within a third of the publishing
deadline. The label is removed when the session ends, however it ends. The run's outcome (the
shards merged, its conclusion, facts and outputs) is outcome.py's; the console's one screen is
console.py's. Errors and warnings are workflow commands in GitHub mode only.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from modal_gpu_action.console import TITLE, one_screen
from modal_gpu_action.exit_codes import FAILED
from modal_gpu_action.github_actions.github_limits import run_url_from_env
from modal_gpu_action.github_actions.output_files import stream_output, write_output
from modal_gpu_action.github_actions.workflow import (
    append_summary,
    command,
    commands_stopped,
    in_github_actions,
    mask,
    one_line,
    write_outputs,
)
from modal_gpu_action.outcome import RunOutcome, execute, outputs
from modal_gpu_action.render.annotations import annotation_commands
from modal_gpu_action.render.markdown import SECTION_LIMIT, render_comment, render_summary
from modal_gpu_action.report.comparison import Changes, compare, file_state
from modal_gpu_action.report.conclusion import Conclusion
from modal_gpu_action.report.junit_reader import JUnitFileError
from modal_gpu_action.report.junit_writer import write_junit_xml
from modal_gpu_action.report.redaction import redact_report
from modal_gpu_action.report.test_state import TestState, encode, state_of
from modal_gpu_action.settings import Settings, SettingsError, load_label_settings

if TYPE_CHECKING:
    from modal_gpu_action.publish.deadline import Deadline


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
        from modal_gpu_action.publish.deadline import Deadline  # GitHub mode's only

        deadline = Deadline.for_run(cancel, environ)
        if label is None:  # PyGithub is imported only to publish something: 0.5-1 s
            yield Session(cancel, deadline)
            return
        import modal_gpu_action.publish.github as github

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
    compared_file = _compare_to_state(settings)  # a bad file is a bad input: before running
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
    changes = _changes(outcome, settings, key, compared_file, started, stream, github_mode)
    summary = render_summary(
        outcome.report,
        facts=outcome.facts,
        title=title,
        conclusion=outcome.conclusion,
        notes=notes,
        changes=changes,
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
        changes=changes,
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
            write_outputs(output_file, outputs(outcome, settings, changes))  # before the network
        except OSError as error:
            _warn(f"the step's outputs were not written: {error}", stream, github_mode)
    if publishing.context is not None and publishing.comment != "off":
        import modal_gpu_action.publish.github as github
        from modal_gpu_action.render.comment_sections import section_for

        state = ""
        if publishing.keep_test_ids:
            state = encode(changes.now if changes is not None else state_of(outcome.report))
        section = section_for(
            key, outcome.conclusion, outcome.report, comment, state=state, gpu=outcome.gpu
        )
        published = github.publish_comment(publishing, section=section, deadline=started.publishing)
        if published.comment_url and output_file:
            write_outputs(output_file, {"comment-url": published.comment_url})
        if published.comment_url and publishing.keep_test_ids:
            _gpu_differences(settings, started, stream, environ, output_file)
    return outcome.exit_code


def _gpu_differences(
    settings: Settings,
    started: Session,
    stream: TextIO,
    environ: Mapping[str, str],
    output_file: Path | None,
) -> None:
    """After publishing: the tests that differ by GPU in the comment as this job left it, in the
    job summary and the `gpu-differences` output (the comment has its own table)."""
    from modal_gpu_action.publish.previous_run import written_sections
    from modal_gpu_action.render.gpu_differences import differences
    from modal_gpu_action.render.gpu_differences import summary_section as differences_section

    sections = written_sections(settings.publishing, deadline=started.publishing, stream=stream)
    found = differences([(s.key, s.gpu, s.state) for s in sections.values() if s.state])
    if found is None:
        return
    if output_file:
        try:
            write_outputs(output_file, {"gpu-differences": str(len(found.rows))})
        except OSError as error:
            _warn(f"the step's outputs were not written: {error}", stream, True)
    section = differences_section(found)
    if section and settings.job_summary and environ.get("GITHUB_STEP_SUMMARY"):
        try:
            append_summary(Path(environ["GITHUB_STEP_SUMMARY"]), "\n" + section + "\n")
        except OSError as error:
            _warn(f"the job summary was not written: {error}", stream, True)


def _compare_to_state(settings: Settings) -> TestState | None:
    """The `compare-to` file's tests, read once before the run; SettingsError when it is not a
    JUnit report (a bad input, exit code 2)."""
    if settings.compare_to is None:
        return None
    try:
        return file_state(settings.compare_to, settings.secret_values())
    except JUnitFileError as error:
        raise SettingsError(
            f"invalid value {one_line(str(settings.compare_to))!r} for input 'compare-to':"
            f" {one_line(error.reason)}; expected a JUnit XML report"
        ) from None


def _changes(
    outcome: RunOutcome,
    settings: Settings,
    key: str,
    compared_file: TestState | None,
    started: Session,
    stream: TextIO,
    github_mode: bool,
) -> Changes | None:
    """What changed: against `compare-to`, else (GitHub mode) against this job's section as
    the previous run left it in the PR comment; None when there is nothing to compare with."""
    report = outcome.report
    if compared_file is not None and settings.compare_to is not None:
        return compare(report, compared_file, against=settings.compare_to.name, from_file=True)
    publishing = settings.publishing
    if not (github_mode and publishing.compare_previous and publishing.context is not None):
        return None
    from modal_gpu_action.publish.previous_run import earlier_state, previous_section

    previous = previous_section(publishing, key, deadline=started.publishing, stream=stream)
    if previous is None:
        return None
    return compare(report, earlier_state(previous), against="the previous run")


def _write_junit(outcome: RunOutcome, settings: Settings) -> RunOutcome:
    """Write the merged JUnit file; when it cannot be, the report says so as a problem of the
    run (it fails the run: the file is one of its outputs)."""
    try:
        stream_output(
            settings.junit_xml,
            lambda out: write_junit_xml(outcome.report, out),
            workspace=settings.workspace,
        )
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
    from modal_gpu_action.backends.shard_durations import read_durations  # sharded runs' only

    why = read_durations(path).unusable  # parsed once: the backend's requests reuse it
    if not why:
        return ""
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
    report, totals = outcome.report, outcome.report.totals
    failing = totals.failed or totals.errors or totals.not_run or report.problems
    if totals.flaky and settings.flaky_fails and not failing:  # they alone fail the run
        tests = "1 test" if totals.flaky == 1 else f"{totals.flaky:,} tests"
        return (
            f"{tests} passed only on a re-run (flaky), which fails the run because 'flaky' is fail.",
            *outcome.notes,
        )
    if outcome.conclusion is not Conclusion.NO_TESTS:
        return outcome.notes  # the cost cap stopped the tests
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
