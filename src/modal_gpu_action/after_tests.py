"""What a run does once its tests are over, in this order: the report redacted (a test can print
a secret it was given); then everything the user had, before anything that can fail on the
network: the merged JUnit file, the summary and comment files, the log's one screen, the job
summary, the annotations, the step's outputs; then the PR comment, and the tests that differ by
GPU in the comment as this job left it. A file that cannot be written becomes a problem of the
run or a warning, never a lost report. Errors and warnings are workflow commands in GitHub mode
only.

engine.py calls `finish` once the backend has run. This module and what it imports (the
rendering, the JUnit writer, the comparison with a previous run) are loaded while the tests run
(engine._load_after_tests), not in the time between the last test and the reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from modal_gpu_action.console import TITLE, one_screen
from modal_gpu_action.exit_codes import FAILED
from modal_gpu_action.github_actions.github_limits import run_url_from_env
from modal_gpu_action.github_actions.output_files import stream_output, write_output
from modal_gpu_action.github_actions.workflow import (
    append_summary,
    commands_stopped,
    warn,
    write_outputs,
)
from modal_gpu_action.outcome import RunOutcome, outputs
from modal_gpu_action.render.annotations import annotation_commands
from modal_gpu_action.render.markdown import SECTION_LIMIT, render_comment, render_summary
from modal_gpu_action.report.comparison import Changes, compare
from modal_gpu_action.report.conclusion import Conclusion
from modal_gpu_action.report.junit_writer import write_junit_xml
from modal_gpu_action.report.redaction import redact_report
from modal_gpu_action.report.test_state import TestState, encode, state_of
from modal_gpu_action.settings import Settings

if TYPE_CHECKING:
    from modal_gpu_action.engine import Session


def finish(
    outcome: RunOutcome,
    settings: Settings,
    started: Session,
    compared_file: TestState | None,
    *,
    environ: Mapping[str, str],
    summary_file: Path | None,
    comment_file: Path | None,
    stream: TextIO,
    github_mode: bool,
) -> int:
    """Write every report of the run's `outcome` and publish it; the run's exit code."""
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
            warn(f"the job summary was not written: {error}", stream, github_mode)
    if settings.annotations:
        prefix = _relative_to_workspace(settings.working_directory, environ)
        for line in annotation_commands(outcome.report, path_prefix=prefix):
            print(line, file=stream, flush=True)
    output_file = Path(environ["GITHUB_OUTPUT"]) if environ.get("GITHUB_OUTPUT") else None
    if output_file:
        try:
            write_outputs(output_file, outputs(outcome, settings, changes))  # before the network
        except OSError as error:
            warn(f"the step's outputs were not written: {error}", stream, github_mode)
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
            warn(f"the step's outputs were not written: {error}", stream, True)
    section = differences_section(found)
    if section and settings.job_summary and environ.get("GITHUB_STEP_SUMMARY"):
        try:
            append_summary(Path(environ["GITHUB_STEP_SUMMARY"]), "\n" + section + "\n")
        except OSError as error:
            warn(f"the job summary was not written: {error}", stream, True)


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
        warn(f"the {name} was not written: {error}", stream, github_mode)


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
