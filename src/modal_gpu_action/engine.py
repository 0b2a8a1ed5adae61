"""The `run` command's flow: Settings -> backend -> TestReport -> written reports -> exit code.

    with session(flags, environ) as started:  # signals ask to stop; the label goes at the end
        settings = load_settings(flags, environ)
        return run(settings, started)

Before the tests: the inputs that need reading (`compare-to`, `shard-durations`) are checked, so
that a bad one is a bad input (exit 2) before anything runs. The backend then runs them
(outcome.py: the shards merged, the run's conclusion, facts and outputs), and everything after
them is after_tests.py's, loaded while they run: the report written where the user looks, the PR
comment last. The label is removed when the session ends, however it ends.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from modal_gpu_action.github_actions.workflow import in_github_actions, mask, one_line, warn
from modal_gpu_action.outcome import execute
from modal_gpu_action.report.junit_reader import JUnitFileError
from modal_gpu_action.settings import Settings, SettingsError, load_label_settings

if TYPE_CHECKING:
    from modal_gpu_action.publish.deadline import Deadline
    from modal_gpu_action.report.test_state import TestState


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
        warn(durations_problem, stream, github_mode)
    compared_file = _compare_to_state(settings)  # a bad file is a bad input: before running
    outcome = execute(
        settings,
        started.cancel,
        stream=stream,
        github_mode=github_mode,
        meanwhile=_load_after_tests,
    )
    from modal_gpu_action.after_tests import finish  # loaded while the tests ran

    return finish(
        outcome,
        settings,
        started,
        compared_file,
        environ=environ,
        summary_file=summary_file,
        comment_file=comment_file,
        stream=stream,
        github_mode=github_mode,
    )


def _load_after_tests() -> None:
    """What a run needs once its tests are over, loaded while they run (the backend calls this
    once they have started): the rendering, the JUnit writer and the rest, 16-20 ms of imports
    on the dev VM, are then not in the time between the last test and the reports."""
    import modal_gpu_action.after_tests  # noqa: F401


def _compare_to_state(settings: Settings) -> TestState | None:
    """The `compare-to` file's tests, read once before the run; SettingsError when it is not a
    JUnit report (a bad input, exit code 2)."""
    if settings.compare_to is None:
        return None
    from modal_gpu_action.report.comparison import file_state

    try:
        return file_state(settings.compare_to, settings.secret_values())
    except JUnitFileError as error:
        raise SettingsError(
            f"invalid value {one_line(str(settings.compare_to))!r} for input 'compare-to':"
            f" {one_line(error.reason)}; expected a JUnit XML report"
        ) from None


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
