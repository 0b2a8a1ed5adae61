"""Our PR comment's sections, read on their own through the same API helpers and the same rules
of what is ours as the comment itself (github_comment.py: only comments by the token's login,
with this exact key):
- `previous_section`, before this run's reports are rendered: this job's section (its matrix
  key) as the previous run left it, what "Changes since the previous run" compares with;
  `comment: new` reads the newest comment of an earlier run that holds the section;
- `written_sections`, after this job published: every section the comment holds now, for the
  job summary's table of tests that differ by GPU (the jobs that published before this one).

Never raises: a read that fails (a token that may not read, an API that does not answer within
READ_SHARE of the publishing deadline) is a warning and the run shows no changes; a cancel
stops it at once. What the section holds is untrusted all the same: its row is checked by
`comment_sections.parse_comment`, its test state by `test_state.decode`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO, TypeVar

from github.IssueComment import IssueComment

from modal_gpu_action.publish.deadline import DEFAULT_TIMING, Deadline, Timing
from modal_gpu_action.publish.github_comment import our_comments, our_comments_of_runs, run_key
from modal_gpu_action.publish.github_requests import Api, Cancelled, Log, explain, pull_number
from modal_gpu_action.render.comment_sections import (
    Section,
    clean_key,
    marker,
    merge,
    parse_comment,
)
from modal_gpu_action.report.test_state import TestState, counts_only, decode
from modal_gpu_action.settings import GitHubContext, PublishSettings

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
    own_key = clean_key(key)

    def pick(comments: list[IssueComment], login: str, context: GitHubContext) -> Section | None:
        base_key = context.comment_key
        if settings.comment == "sticky":
            mine = our_comments(comments, base_key, login)
            return merge(*(parse_comment(c.body) for c in mine)).get(own_key)
        this_run = marker(run_key(base_key, context))
        for comment in reversed(our_comments_of_runs(comments, base_key, login)):
            if (comment.body or "").startswith(this_run + "\n"):
                continue  # this run's own comment (a re-run of a matrix job): not the previous
            section = parse_comment(comment.body or "").get(own_key)
            if section is not None:
                return section
        return None

    return _read(settings, pick, "the previous run's results", deadline, timing, stream)


def written_sections(
    settings: PublishSettings,
    *,
    deadline: Deadline | None = None,
    timing: Timing = DEFAULT_TIMING,
    stream: TextIO | None = None,
) -> dict[str, Section]:
    """Every section of the comment this job has just written (sticky: the comment of its key;
    `new`: this run's), as it stands now: the other jobs of a matrix that published before."""

    def pick(
        comments: list[IssueComment], login: str, context: GitHubContext
    ) -> dict[str, Section]:
        key = context.comment_key
        if settings.comment != "sticky":
            key = run_key(key, context)
        return merge(*(parse_comment(c.body) for c in our_comments(comments, key, login)))

    return _read(settings, pick, "the PR comment's sections", deadline, timing, stream) or {}


T = TypeVar("T")


def _read(
    settings: PublishSettings,
    pick: Callable[[list[IssueComment], str, GitHubContext], T | None],
    what: str,
    deadline: Deadline | None,
    timing: Timing,
    stream: TextIO | None,
) -> T | None:
    """List the pull request's comments once and `pick` from ours; None when there are none to
    read, the read failed (a warning) or the run was cancelled."""
    context = settings.context
    if settings.comment == "off" or context is None or not settings.github_token:
        return None
    deadline = deadline or Deadline()
    if deadline.cancel.is_set():
        return None
    log = Log(stream, settings.github_token, "PR comment")
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
        return pick(comments, api.login(), context)
    except Cancelled:
        return None
    except Exception as error:
        log.warn(f"could not read {what} from the PR comment: {explain(error)}")
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
