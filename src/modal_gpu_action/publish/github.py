"""Publishing in GitHub mode: the sticky PR comment and the label, through PyGithub. Nothing here
can fail the run: every publishing problem becomes a warning, and the exit code keeps reflecting
the tests. Where to publish (the event's context) and what (the inputs) come checked from
settings: `LabelSettings` and `PublishSettings`.

How the engine (engine.py, then after_tests.py once the tests are over) calls it:

    deadline = Deadline.for_run(cancel, environ)  # one deadline for all publishing
    with removing_label(label_settings, deadline=deadline):  # the label goes however it ends
        ... read the other inputs, run the tests, write the summary and outputs ...
        result = publish_comment(  # after_tests.finishsettings.publishing, section=..., deadline=deadline)

The engine imports this module (and with it PyGithub, 0.5-1 s) only when there is a label to
remove or a comment to write; `Deadline` itself lives in `deadline`, which needs no PyGithub.
This module holds the entry points and re-exports what the engine and the tests use; the rest
lives beside it, one concern a module, imports flowing one way (github -> github_comment ->
github_requests -> deadline):
- `deadline`: the budgets and waits (`Timing`), the one deadline;
- `github_requests`: bounded and retried API calls, the text of warnings;
- `github_comment`: the matrix's shared comment, `comment-on`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO
from urllib.parse import quote

from github import GithubException

from modal_gpu_action.publish.deadline import DEFAULT_TIMING, Deadline, Timing
from modal_gpu_action.publish.github_comment import publish
from modal_gpu_action.publish.github_requests import (
    Api,
    Cancelled,
    Log,
    error_message,
    explain,
    pull_number,
)
from modal_gpu_action.render.comment_sections import Section
from modal_gpu_action.settings import GitHubContext, LabelSettings, PublishSettings

__all__ = [
    "Deadline",
    "GitHubContext",
    "PublishResult",
    "Section",
    "Timing",
    "publish_comment",
    "remove_label",
    "removing_label",
]


@dataclass(frozen=True, slots=True)
class PublishResult:
    comment_url: str | None  # the comment written or updated (the `comment-url` output)
    warnings: list[str] = field(default_factory=list)  # also printed as ::warning:: lines


def publish_comment(
    settings: PublishSettings,
    *,
    section: Section,
    timing: Timing = DEFAULT_TIMING,
    stream: TextIO | None = None,
    deadline: Deadline | None = None,
) -> PublishResult:
    """Create or update this job's section of the PR comment. Never raises.

    Within the deadline, less the label's share when a label is to be removed; skipped, or
    stopped where it is, once the run is cancelled."""
    log = Log(stream, settings.github_token, "PR comment")
    context = settings.context
    if settings.comment == "off" or context is None:
        return PublishResult(None, [])
    deadline = deadline or Deadline()
    url: str | None = None
    try:
        if not settings.github_token:
            log.warn("no github-token: the PR comment was not written")
        elif deadline.cancel.is_set():
            log.warn("the run was cancelled: the PR comment was skipped")
        else:
            end = deadline.end(timing)
            if settings.remove_label:
                end -= deadline.seconds(timing) * timing.label_share
            api = Api(context, settings.github_token, timing, end, deadline.cancel, hurry=False)
            url = publish(api, context, settings, section, timing, log)
    except Cancelled:
        log.warn("the run was cancelled: the PR comment was left as it was")
    except Exception as error:
        log.warn(f"could not write the PR comment: {explain(error)}")
    return PublishResult(url, log.warnings)


def remove_label(
    settings: LabelSettings,
    *,
    timing: Timing = DEFAULT_TIMING,
    stream: TextIO | None = None,
    deadline: Deadline | None = None,
) -> list[str]:
    """Remove `remove-label` from the pull request; already gone is fine. Never raises.

    Within the deadline, and within `Timing.cancel_seconds` once the run is cancelled."""
    log = Log(stream, settings.github_token, "remove-label")
    label, context = settings.remove_label, settings.context
    if not label or context is None:
        return []
    deadline = deadline or Deadline()
    try:
        if not settings.github_token:
            log.warn(f"no github-token: the label {label!r} was not removed")
            return log.warnings
        end = deadline.end(timing)
        api = Api(context, settings.github_token, timing, end, deadline.cancel, hurry=True)
        number = pull_number(api, context)
        if number is None:
            log.info(f"No pull request for this run: no label {label!r} to remove.")
            return log.warnings
        path = f"/repos/{context.repository}/issues/{number}/labels/{quote(label, safe='')}"
        # Issue.remove_from_labels quotes with safe="/", which breaks labels holding a slash.
        api.call(
            "remove the label", lambda: api.github.requester.requestJsonAndCheck("DELETE", path)
        )
        log.info(f"Removed the label {label!r} from #{number}.")
    except GithubException as error:
        if error.status == 404 and error_message(error).lower() == "label does not exist":
            log.info(f"The label {label!r} was already gone.")
        else:
            log.warn(f"could not remove the label {label!r}: {explain(error)}")
    except Exception as error:
        log.warn(f"could not remove the label {label!r}: {explain(error)}")
    return log.warnings


@contextmanager
def removing_label(
    settings: LabelSettings | None,
    *,
    timing: Timing = DEFAULT_TIMING,
    stream: TextIO | None = None,
    deadline: Deadline | None = None,
) -> Iterator[None]:
    """Remove the label when the block ends, however it ends (passed, failed, a bad input, a
    refused event, raised, KeyboardInterrupt); what the block raised still propagates. Nothing
    to do for None (no label, or not GitHub mode)."""
    try:
        yield
    finally:
        if settings is not None:
            remove_label(settings, timing=timing, stream=stream, deadline=deadline)
