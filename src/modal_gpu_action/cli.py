"""Command line and GitHub-mode entry.

    modal-gpu-action report JUNIT_XML... [--summary-file F] [--comment-file F] [--compare-to F]
    modal-gpu-action run [--backend local|modal] [--gpu SPEC] [--test-path P] ...
    modal-gpu-action plan [same flags as run]
    python -m modal_gpu_action            (GITHUB_ACTIONS=true: `run` with the INPUT_* variables)

Exit codes: 0 passed, 1 tests failed (or none ran, with `fail-on-empty`), 2 bad input, 3
infrastructure failure. Errors and warnings are workflow commands (`::error::`) in GitHub mode
only; elsewhere they are plain lines on stderr.

`--pytest-args` takes the next word whatever it starts with (`--pytest-args -x`), as people type
it; argparse alone would read `-x` as an option of ours.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from modal_gpu_action import __version__
from modal_gpu_action.exit_codes import BAD_INPUT, FAILED, PASSED
from modal_gpu_action.github_actions.output_files import write_output
from modal_gpu_action.github_actions.workflow import (
    command,
    commands_stopped,
    in_github_actions,
    one_line,
)
from modal_gpu_action.settings import INPUTS, SettingsError, load_settings, output_path

if TYPE_CHECKING:
    from modal_gpu_action.report.comparison import Changes
    from modal_gpu_action.report.results import TestReport


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args and in_github_actions():
        args = ["run"]  # the composite action runs `python -m modal_gpu_action` with INPUT_*
    parser = _parser()
    namespace = parser.parse_args(_joined_values(args))
    try:
        result: int = namespace.handler(namespace)
    except SettingsError as error:
        _error(str(error))
        return BAD_INPUT
    except BrokenPipeError:  # `plan | head`: the reader left; nothing more to say
        _stdout_to_devnull()
        return PASSED
    return result


# Options whose value may start with "-" as typed: `--pytest-args -x`.
_DASHED_VALUES = ("--pytest-args",)


def _joined_values(args: list[str]) -> list[str]:
    """`--pytest-args -x` as `--pytest-args=-x`, which argparse reads as the value it is."""
    joined: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in _DASHED_VALUES and index + 1 < len(args) and args[index + 1].startswith("-"):
            joined.append(f"{arg}={args[index + 1]}")
            index += 2
            continue
        joined.append(arg)
        index += 1
    return joined


def _stdout_to_devnull() -> None:
    """After a broken pipe, Python's own flush at exit would fail again and print a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _error(message: str) -> None:
    if in_github_actions():
        print(command("error", message, title="modal-gpu-action"), flush=True)
    # One line whatever the message holds (paths come from the checkout): never a command.
    print(f"error: {one_line(message)}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modal-gpu-action",
        description="Run a pytest suite on a GPU (Modal or this machine) and report the results.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    report = commands.add_parser("report", help="turn JUnit XML files into a summary and comment")
    report.add_argument(
        "junit_xml", nargs="+", metavar="JUNIT_XML", help="JUnit XML file(s); shards are merged"
    )
    report.add_argument(
        "--summary-file", type=Path, help="write the job summary markdown here (default: stdout)"
    )
    report.add_argument("--comment-file", type=Path, help="write the PR comment markdown here")
    report.add_argument(
        "--comment-key", default="report", help="key of the comment's hidden marker"
    )
    report.add_argument(
        "--title", default="Test results", help="headline of the summary and comment"
    )
    report.add_argument(
        "--compare-to",
        metavar="JUNIT_XML",
        help="a JUnit XML file to compare with: new failures, fixed, added and removed tests",
    )
    report.add_argument(
        "--fail-on-empty",
        choices=("true", "false"),
        default="true",
        help="exit 1 when the reports hold no test, as `run` does (default: true)",
    )
    report.set_defaults(handler=_report)

    for name, handler, help_text in (
        ("run", _run, "run the suite and report it"),
        ("plan", _plan, "print, as JSON, what a run would do, without running anything"),
    ):
        sub = commands.add_parser(name, help=help_text)
        for spec in INPUTS:
            flag = "--" + spec.name
            sub.add_argument(
                flag,
                dest=_dest(spec.name),
                metavar=spec.name.upper().replace("-", "_"),
                help=f"{spec.description} (default: {spec.default!r}; or {_env(spec.name)})",
            )
        if name == "run":
            sub.add_argument(
                "--summary-file", type=Path, help="also write the job summary markdown here"
            )
            sub.add_argument(
                "--comment-file", type=Path, help="also write the PR comment markdown here"
            )
        sub.set_defaults(handler=handler)
    return parser


def _dest(name: str) -> str:
    return "input_" + name.replace("-", "_")


def _env(name: str) -> str:
    return "INPUT_" + name.upper().replace("-", "_")


def _flags(namespace: argparse.Namespace) -> dict[str, str | None]:
    return {spec.name: getattr(namespace, _dest(spec.name)) for spec in INPUTS}


def _report(namespace: argparse.Namespace) -> int:
    from modal_gpu_action.render.markdown import render_summary
    from modal_gpu_action.report.conclusion import Conclusion
    from modal_gpu_action.report.junit_reader import JUnitError
    from modal_gpu_action.report.merging import load_reports

    workspace = Path(os.environ.get("GITHUB_WORKSPACE") or Path.cwd())
    files = _output_files(namespace, workspace)
    try:
        report = load_reports(namespace.junit_xml)
        changes = _compared(report, namespace.compare_to)
    except JUnitError as error:
        _error(str(error))
        return BAD_INPUT
    fail_on_empty = namespace.fail_on_empty == "true"
    notes: tuple[str, ...] = ()
    if report.conclusion is Conclusion.NO_TESTS:
        notes = (
            "The reports hold no test, which fails this command because --fail-on-empty is true."
            if fail_on_empty
            else "The reports hold no test; --fail-on-empty is false.",
        )
    summary = render_summary(report, title=namespace.title, notes=notes, changes=changes)
    try:
        _write_report_files(namespace, report, summary, notes, changes, files, workspace)
    except OSError as error:
        _error(str(error))
        return BAD_INPUT
    if report.conclusion is Conclusion.NO_TESTS:
        return FAILED if fail_on_empty else PASSED
    return PASSED if report.conclusion.passing else FAILED


def _write_report_files(
    namespace: argparse.Namespace,
    report: TestReport,
    summary: str,
    notes: tuple[str, ...],
    changes: Changes | None,
    files: dict[str, Path | None],
    workspace: Path,
) -> None:
    from modal_gpu_action.github_actions.github_limits import run_url_from_env
    from modal_gpu_action.render.markdown import render_comment

    if files["summary-file"]:
        write_output(files["summary-file"], summary, workspace=workspace)
    else:
        with commands_stopped(in_github_actions()):  # test ids and messages in it
            sys.stdout.write(summary)
    if files["comment-file"]:
        comment = render_comment(
            report,
            key=namespace.comment_key,
            title=namespace.title,
            run_url=run_url_from_env(os.environ),
            notes=notes,
            commit=os.environ.get("GITHUB_SHA", ""),
            ran_at=datetime.now(UTC),
            changes=changes,
        )
        write_output(files["comment-file"], comment, workspace=workspace)


def _compared(report: TestReport, path: str | None) -> Changes | None:
    """`--compare-to`: the report against that file (JUnitError when it cannot be read)."""
    if path is None:
        return None
    from modal_gpu_action.report.comparison import compare, file_state

    return compare(report, file_state(path), against=Path(path).name, from_file=True)


def _run(namespace: argparse.Namespace) -> int:
    from modal_gpu_action.engine import run, session

    flags = _flags(namespace)
    with session(flags, os.environ) as started:  # the label goes at its end, whatever happened
        try:
            settings = load_settings(flags, os.environ)
            files = _output_files(namespace, settings.workspace)
        except SettingsError as error:
            # Said now: removing the label when the block ends can take its time (retries).
            _error(str(error))
            return BAD_INPUT
        return run(
            settings,
            started,
            environ=os.environ,
            summary_file=files["summary-file"],
            comment_file=files["comment-file"],
        )


def _output_files(namespace: argparse.Namespace, workspace: Path) -> dict[str, Path | None]:
    """`--summary-file` and `--comment-file`, checked like every output
    (github_actions/output_files.py)."""
    return {
        name: None if given is None else output_path(given, name, workspace.resolve(), os.environ)
        for name, given in (
            ("summary-file", namespace.summary_file),
            ("comment-file", namespace.comment_file),
        )
    }


def _plan(namespace: argparse.Namespace) -> int:
    from modal_gpu_action.engine import plan

    settings = load_settings(_flags(namespace), os.environ)
    sys.stdout.write(json.dumps(plan(settings), indent=2) + "\n")
    sys.stdout.flush()  # here, where a broken pipe (`plan | head`) is caught
    return PASSED
