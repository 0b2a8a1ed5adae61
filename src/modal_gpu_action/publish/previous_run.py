"""This job's section as the previous run left it in our PR comment: what "Changes since the
previous run" compares with. Read before this run's reports are rendered, through the same API
helpers and the same rules of what is ours as the comment itself (github_comment.py): only
comments by the token's login with this exact key, and in them only this job's section (its
matrix key). `comment: new` reads the newest comment of an earlier run that holds the section.

Never raises: a read that fails (a token that may not read, an API that does not answer within
READ_SHARE of the publishing deadline) is a warning and the run shows no changes; a cancel
stops it at once. What the section holds is untrusted all the same: its row is checked by
`comment_sections.parse_comment`, its test state by `test_state.decode`.
"""

from __future__ import annotations

from typing import TextIO

from modal_gpu_action.publish.github_comment import _ours, _ours_of_runs, _run_key
from modal_gpu_action.publish.github_requests import (
    DEFAULT_TIMING,
    Api,
    Cancelled,
    Deadline,
    Log,
    Timing,
    explain,
    pull_number,
)
from modal_gpu_action.render.comment_sections import (
    Section,
    clean_key,
    marker,
    merge,
    parse_comment,
)
from modal_gpu_action.report.test_state import TestState, counts_only, decode
from modal_gpu_action.settings import PublishSettings

READ_SHARE = 1 / 3  # of the publishing deadline, at most, for this read


def previous_section(
    settings: PublishSettings,
    key: str,
    *,
    deadline: Deadline | None = None,
    timing: Timing = DEFAULT_TIMING,
    stream: TextIO | None = None,
) -> Section | None:
    """The section of `key` in our comment as the previous run wrote it, or None."""
    context = settings.context
    if settings.comment == "off" or context is None or not settings.github_token:
        return None
    deadline = deadline or Deadline()
    if deadline.cancel.is_set():
        return None
    log = Log(stream, settings.github_token, "PR comment")
    own_key = clean_key(key)
    try:
        end = deadline.end(timing)
        if settings.remove_label:
            end -= deadline.seconds(timing) * timing.label_share
        # A share of its own: an API that does not answer leaves the comment the rest.
        end = min(end, timing.clock() + deadline.seconds(timing) * READ_SHARE)
        api = Api(context, settings.github_token, timing, end, deadline.cancel, hurry=False)
        number = pull_number(api, context)
        if number is None:
            return None
        comments = api.list_comments(number)
        login = api.login()
        base_key = context.comment_key
        if settings.comment == "sticky":
            mine = _ours(comments, base_key, login)
            return merge(*(parse_comment(c.body) for c in mine)).get(own_key)
        this_run = marker(_run_key(base_key, context))
        for comment in reversed(_ours_of_runs(comments, base_key, login)):
            if (comment.body or "").startswith(this_run + "\n"):
                continue  # this run's own comment (a re-run of a matrix job): not the previous
            section = parse_comment(comment.body or "").get(own_key)
            if section is not None:
                return section
    except Cancelled:
        return None
    except Exception as error:
        log.warn(f"could not read the previous run's results from the PR comment: {explain(error)}")
    return None


def earlier_state(section: Section) -> TestState:
    """What a previous section tells of its run: its hidden test state, else its counts."""
    state = decode(section.state) if section.state else None
    if state is not None:
        return state
    return counts_only(
        tests=section.tests,
        passed=section.passed,
        failed=section.failed,
        errors=section.errors,
        skipped=section.skipped,
        not_run=section.not_run,
    )
