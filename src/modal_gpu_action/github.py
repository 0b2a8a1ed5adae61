"""Publishing in GitHub mode: the event's context, the sticky PR comment and the label, through
PyGithub. Nothing here can fail the run: every publishing problem becomes a warning, and the
exit code keeps reflecting the tests.

How the lead (engine) calls it:

    context = read_context(environ, settings)     # SettingsError (exit 2), e.g. pull_request_target
    ... run the tests, write the summary and outputs ...
    result = publish_comment(context, settings, section=section_for(key, outcome, comment))
    remove_label(context, settings)               # in a `finally`; never raises

Context. The pull request comes from the event: `pull_request`, `pull_request_target` and the
review events (any action: opened, labeled, synchronize...) carry it in the payload at
`GITHUB_EVENT_PATH`; `issue_comment` on a PR too. A `pr-number` input wins over the event (it is
how `workflow_dispatch` names one). For `push`, the pull requests of the pushed commit are looked
up (`GET /repos/{owner}/{repo}/commits/{sha}/pulls`): an open one whose head is the commit, else
any open one, else the merged one; none means no comment. `GITHUB_API_URL` is PyGithub's base URL,
so GitHub Enterprise Server (`https://HOST/api/v3`) works the same.

`pull_request_target` is refused unless `allow-pull-request-target: true`: it runs with the base
repository's secrets and a write token, so running a PR's code from it hands both to the PR.

The comment. `comment: sticky` keeps one comment per key (`comment-key`, default the workflow's
name and the job id), found by its hidden marker line on any page of the PR's comments and
edited in place; `new` keeps one comment per workflow run attempt instead (the matrix jobs of a
run still share it). Only comments written by a bot (the workflow's token writes as
`github-actions[bot]`, an app token as the app) or by the repository's owner, members and
collaborators count as ours: a marker pasted into a comment by anyone else is ignored.

The jobs of a matrix share the key, so they share the comment: each job owns the section of its
key (the GPU or `matrix-key`) and rebuilds the whole comment from the sections already in it (see
`comment_sections`). GitHub has no conditional update, so concurrent jobs converge by checking:
after each write a job waits a random 1-2.5 s (at least twice its slowest request, so a slow API
gets longer waits), re-reads, and rewrites (merging what it finds) when
its section is missing or another job's write replaced it, until it has seen its section in place
twice in a row (or `max_writes` writes, or the time budget, run out: a warning). Comments that
a race duplicated are merged into the oldest and deleted.

`comment-on`:
- `always`: create or update the comment on every run.
- `failure`: create the comment only when this job did not pass; an existing comment is always
  updated, so a fixed failure never leaves a stale red comment behind.
- `change`: when the comment already records this job's section, update only if the conclusion or
  any count (tests, passed, failed, errors, skipped) differs (a new duration alone is no change);
  when the comment exists without this job's section, add it (keeping the table complete); when
  there is no comment yet, create one only when this job did not pass (a first green run is not
  news). With `comment: new`, "already records" means the latest comment of an earlier run.
Only creating a comment notifies people; edits do not.

Retries. PyGithub's own urllib3 retry (GithubRetry) is turned off: it waits for a primary rate
limit's reset (up to an hour) and sleeps where tests cannot see it. Instead every call retries,
with exponential backoff and jitter, on 5xx, connection errors, 429, and on 403 rate limits
(`retry-after`, which is honoured, or `x-ratelimit-remaining: 0`, until `x-ratelimit-reset`),
within one time budget per call of `publish_comment` (60 s) and of `remove_label` (20 s): a wait
that would end past the budget is not started, the failure becomes a warning. Other 4xx are not
retried; a 403 "Resource not accessible by integration" (a read-only token, as pull requests from
forks get) becomes a warning that says which permission is missing. The token is never printed.
"""

from __future__ import annotations

import json
import math
import random
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, TextIO, TypeVar
from urllib.parse import quote

import requests
from github import Auth, Github, GithubException
from github.Issue import Issue
from github.IssueComment import IssueComment
from github.Repository import Repository

from modal_gpu_action.comment_sections import (
    COMMENT_LIMIT,
    Section,
    clean_key,
    compose_comment,
    marker,
    marker_line,
    merge,
    parse_comment,
    strip_marker,
)
from modal_gpu_action.render import run_url_from_env
from modal_gpu_action.settings import Settings, SettingsError
from modal_gpu_action.workflow import command

__all__ = [
    "GitHubContext",
    "PublishResult",
    "Section",
    "Timing",
    "publish_comment",
    "read_context",
    "remove_label",
    "removing_label",
    "section_for",
]

PULL_REQUEST_EVENTS = frozenset(
    {"pull_request", "pull_request_target", "pull_request_review", "pull_request_review_comment"}
)
TRUSTED_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
PULL_REQUEST_TARGET_REFUSED = (
    "refusing to run on 'pull_request_target': that event gives the workflow the base"
    " repository's secrets (your Modal token) and a write token, so running the pull request's"
    " code from it lets any pull request steal them. Use 'on: pull_request' (gate GPU runs with a"
    " label: 'on: pull_request: types: [labeled]' and 'remove-label'), or set input"
    " 'allow-pull-request-target: true' if this workflow only runs code you trust"
)
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_SHA = re.compile(r"^[0-9a-f]{7,64}$")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GitHubContext:
    """What the workflow run tells about where to publish (no secrets in it)."""

    api_url: str  # GITHUB_API_URL: https://api.github.com, or https://HOST/api/v3 on GHES
    repository: str  # owner/name
    event_name: str
    pr_number: int | None  # None for push (looked up from `sha`) and for events without a PR
    sha: str  # the pull request's head commit, else GITHUB_SHA
    run_url: str  # the run's page ("" when GitHub's variables are missing)
    run_id: str
    run_attempt: str
    comment_key: str  # `comment-key`, default "WORKFLOW/JOB"
    find_pull_from_commit: bool = False  # push: look the PR up from `sha`


@dataclass(frozen=True, slots=True)
class Timing:
    """Budgets, waits and the clock: the defaults are for GitHub, tests pass fast ones."""

    max_seconds: float = 60.0  # all of publish_comment, retries and checks included
    label_max_seconds: float = 20.0  # all of remove_label
    request_timeout: int = 15  # one HTTP request
    backoff_base: float = 1.0
    backoff_cap: float = 16.0
    settle: tuple[float, float] = (1.0, 2.5)  # wait after a write before re-reading
    confirmations: int = 2  # reads in a row that must show this job's section in place
    max_writes: int = 8
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], float] = time.time  # wall clock, for the sections' write times
    random: Callable[[], float] = random.random


DEFAULT_TIMING = Timing()


@dataclass(frozen=True, slots=True)
class PublishResult:
    comment_url: str | None  # the comment written or updated (the `comment-url` output)
    warnings: list[str] = field(default_factory=list)  # also printed as ::warning:: lines


# --- context ---------------------------------------------------------------------------------


def read_context(environ: Mapping[str, str], settings: Settings) -> GitHubContext:
    """The run's context from GitHub's variables and event payload.

    Raises SettingsError (exit code 2) for `pull_request_target` without
    `allow-pull-request-target`, an unreadable event payload, a pull request event without a
    number, or a malformed GITHUB_REPOSITORY / GITHUB_API_URL.
    """
    event_name = environ.get("GITHUB_EVENT_NAME", "")
    if event_name == "pull_request_target" and not settings.allow_pull_request_target:
        raise SettingsError(PULL_REQUEST_TARGET_REFUSED)
    payload = _payload(environ)
    from_event = _number_from_payload(event_name, payload)
    if event_name in PULL_REQUEST_EVENTS and from_event is None and settings.pr_number is None:
        raise SettingsError(
            f"the '{event_name}' event's payload (GITHUB_EVENT_PATH) names no pull request"
        )
    number = settings.pr_number or from_event
    repository = environ.get("GITHUB_REPOSITORY", "")
    if not _REPOSITORY.match(repository):
        raise SettingsError(
            f"GITHUB_REPOSITORY is {repository!r}: expected OWNER/NAME (is this a GitHub"
            " Actions run?)"
        )
    api_url = (environ.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/")
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", api_url):
        raise SettingsError(f"GITHUB_API_URL is {api_url!r}: expected an http(s) URL")
    sha = _head_sha(payload) or environ.get("GITHUB_SHA", "")
    workflow, job = environ.get("GITHUB_WORKFLOW", ""), environ.get("GITHUB_JOB", "")
    default_key = "/".join(part for part in (workflow, job) if part) or "gpu-tests"
    return GitHubContext(
        api_url=api_url,
        repository=repository,
        event_name=event_name,
        pr_number=number,
        sha=sha if _SHA.match(sha or "") else "",
        run_url=run_url_from_env(environ) or "",
        run_id=environ.get("GITHUB_RUN_ID", ""),
        run_attempt=environ.get("GITHUB_RUN_ATTEMPT", "1"),
        comment_key=settings.comment_key or default_key,
        find_pull_from_commit=event_name == "push" and number is None,
    )


def _payload(environ: Mapping[str, str]) -> dict[str, object]:
    path = environ.get("GITHUB_EVENT_PATH", "")
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SettingsError(
            f"cannot read the event payload GITHUB_EVENT_PATH={path}: {error}"
        ) from None
    return data if isinstance(data, dict) else {}


def _head_sha(payload: Mapping[str, object]) -> str:
    """The pull request's head commit (GITHUB_SHA is the test merge commit for PR events)."""
    pull = payload.get("pull_request")
    head = pull.get("head") if isinstance(pull, dict) else None
    sha = head.get("sha") if isinstance(head, dict) else None
    return sha if isinstance(sha, str) else ""


def _number_from_payload(event_name: str, payload: Mapping[str, object]) -> int | None:
    candidates: list[object] = []
    pull = payload.get("pull_request")
    if event_name in PULL_REQUEST_EVENTS:
        if isinstance(pull, dict):
            candidates.append(pull.get("number"))
        candidates.append(payload.get("number"))
    issue = payload.get("issue")
    if (
        event_name == "issue_comment"
        and isinstance(issue, dict)
        and isinstance(issue.get("pull_request"), dict)  # a comment on a PR, not on an issue
    ):
        candidates.append(issue.get("number"))
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


# --- the section of this job -------------------------------------------------------------------


class _Totals(Protocol):
    @property
    def tests(self) -> int: ...
    @property
    def passed(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def xfailed(self) -> int: ...
    @property
    def xpassed(self) -> int: ...


class _Report(Protocol):
    @property
    def totals(self) -> _Totals: ...
    @property
    def wall_time(self) -> float: ...


class _Outcome(Protocol):
    @property
    def report(self) -> _Report: ...
    @property
    def status(self) -> str: ...


def section_for(key: str, outcome: _Outcome, comment: str) -> Section:
    """This job's section: its row from the outcome (xpassed count as passed, xfailed as skipped,
    as in the outputs) and its body from the rendered comment (its marker line dropped)."""
    totals = outcome.report.totals
    return Section(
        key=clean_key(key),
        conclusion=outcome.status,
        tests=totals.tests,
        passed=totals.passed + totals.xpassed,
        failed=totals.failed,
        errors=totals.errors,
        skipped=totals.skipped + totals.xfailed,
        duration=outcome.report.wall_time,
        body=strip_marker(comment),
    )


# --- publishing --------------------------------------------------------------------------------


def publish_comment(
    context: GitHubContext,
    settings: Settings,
    *,
    section: Section,
    timing: Timing = DEFAULT_TIMING,
    stream: TextIO | None = None,
) -> PublishResult:
    """Create or update this job's section of the PR comment. Never raises."""
    log = _Log(stream, settings.github_token, "PR comment")
    if settings.comment == "off":
        return PublishResult(None, [])
    url: str | None = None
    try:
        if not settings.github_token:
            log.warn("no github-token: the PR comment was not written")
        else:
            url = _publish(context, settings, section, timing, log)
    except Exception as error:
        log.warn(f"could not write the PR comment: {_explain(error)}")
    return PublishResult(url, log.warnings)


def remove_label(
    context: GitHubContext,
    settings: Settings,
    *,
    timing: Timing = DEFAULT_TIMING,
    stream: TextIO | None = None,
) -> list[str]:
    """Remove `remove-label` from the pull request; already gone is fine. Never raises."""
    log = _Log(stream, settings.github_token, "remove-label")
    label = settings.remove_label
    if not label:
        return []
    try:
        if not settings.github_token:
            log.warn(f"no github-token: the label {label!r} was not removed")
            return log.warnings
        api = _Api(context, settings.github_token, timing, timing.label_max_seconds)
        number = _pull_number(api, context)
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
        if error.status == 404 and _message(error).lower() == "label does not exist":
            log.info(f"The label {label!r} was already gone.")
        else:
            log.warn(f"could not remove the label {label!r}: {_explain(error)}")
    except Exception as error:
        log.warn(f"could not remove the label {label!r}: {_explain(error)}")
    return log.warnings


@contextmanager
def removing_label(
    context: GitHubContext,
    settings: Settings,
    *,
    timing: Timing = DEFAULT_TIMING,
    stream: TextIO | None = None,
) -> Iterator[None]:
    """Remove the label when the block ends, however it ends (passed, failed, raised,
    KeyboardInterrupt on cancellation); what the block raised still propagates."""
    try:
        yield
    finally:
        remove_label(context, settings, timing=timing, stream=stream)


def _publish(
    context: GitHubContext, settings: Settings, section: Section, timing: Timing, log: _Log
) -> str | None:
    api = _Api(context, settings.github_token, timing, timing.max_seconds)
    number = _pull_number(api, context)
    if number is None:
        log.info("No pull request for this run: no PR comment.")
        return None
    base_key = context.comment_key
    key = base_key if settings.comment == "sticky" else _run_key(base_key, context)
    own = replace(
        section,
        key=clean_key(section.key),
        body=strip_marker(section.body),
        run_url=section.run_url or context.run_url,
        sha=section.sha or context.sha,
        written_at=section.written_at or timing.now(),
        shortened=False,
        writer=secrets.token_hex(6),
    )
    comments = api.list_comments(number)
    mine = _ours(comments, key)
    if settings.comment == "sticky":
        baseline = merge(*(parse_comment(c.body) for c in mine)).get(own.key)
    else:
        mine_ids = {c.id for c in mine}
        earlier = [c for c in _ours_of_runs(comments, base_key) if c.id not in mine_ids]
        baseline = parse_comment(earlier[-1].body).get(own.key) if earlier else None
    reason = _skip_reason(settings.comment_on, own, baseline, exists=bool(mine))
    if reason:
        log.info(f"PR comment not written: {reason} (comment-on: {settings.comment_on}).")
        return None
    return _converge(api, number, key, own, mine, timing, log)


def _skip_reason(comment_on: str, own: Section, baseline: Section | None, *, exists: bool) -> str:
    if comment_on == "failure" and own.passing and not exists:
        return "the tests passed and there is no comment to update"
    if comment_on == "change":
        if baseline is not None and baseline.same_result(own):
            return "the results are the same as the comment's"
        if baseline is None and not exists and own.passing:
            return "the tests passed and there is no earlier result to compare with"
    return ""


def _converge(
    api: _Api,
    number: int,
    key: str,
    own: Section,
    state: list[IssueComment],
    timing: Timing,
    log: _Log,
) -> str | None:
    """Write this job's section and check, re-reading, that it stays in the one comment."""
    url: str | None = None
    expected: Section | None = None
    confirmed = writes = 0
    while True:
        sections = merge(*(parse_comment(c.body) for c in state))
        current = sections.get(own.key)
        if (
            current is not None
            and current.writer != own.writer
            and round(current.written_at * 1000) >= round(own.written_at * 1000)
        ):
            log.warn(
                f"another job wrote the section {own.key!r} after this one; give the jobs"
                " different matrix-key values so each keeps its own section"
            )
            return state[0].html_url if state else url
        if expected is not None and len(state) == 1 and current == expected:
            confirmed += 1
            url = state[0].html_url
            if confirmed >= timing.confirmations:
                log.info(f"PR comment: {url}")
                return url
        else:
            confirmed = 0
            if writes >= timing.max_writes:
                log.warn(
                    f"other jobs kept rewriting the PR comment: gave up after {writes} writes;"
                    " the section of this job may be missing"
                )
                return url
            sections[own.key] = own
            body = compose_comment(key, sections, own_key=own.key)
            if len(body) > COMMENT_LIMIT:
                log.warn(
                    f"the comment would hold {len(body):,} characters, more than GitHub's"
                    f" {COMMENT_LIMIT:,}, even with every section shortened"
                )
                return url
            expected = parse_comment(body)[own.key]
            url = _write(api, number, body, state)
            writes += 1
        low, high = timing.settle
        # Wait well beyond the slowest request seen: another job's read-then-write must have
        # landed before this one checks (a slow API gets longer waits).
        wait = max(low + (high - low) * timing.random(), 2 * api.slowest)
        if not api.pause(wait):
            if confirmed == 0:
                log.warn(
                    "ran out of time before checking that the PR comment kept this job's section"
                )
            return url
        state = _ours(api.list_comments(number), key)


def _write(api: _Api, number: int, body: str, state: list[IssueComment]) -> str:
    if not state:
        created = api.call("create the comment", lambda: api.issue(number).create_comment(body))
        return created.html_url
    canonical, *duplicates = state
    if canonical.body != body:
        try:
            api.call("update the comment", lambda: canonical.edit(body))
        except GithubException as error:
            if error.status != 404:  # deleted meanwhile: the next read shows what to do
                raise
    for duplicate in duplicates:
        try:
            api.call("delete a duplicate comment", duplicate.delete)
        except GithubException as error:
            if error.status != 404:
                raise
    return canonical.html_url


def _ours(comments: list[IssueComment], key: str) -> list[IssueComment]:
    """Our comments with this exact key, oldest first."""
    line = marker(key)
    return [c for c in comments if _trusted(c) and marker_line(c.body or "") == line]


def _run_key(base_key: str, context: GitHubContext) -> str:
    """The key of `comment: new`: one comment per run attempt, shared by its matrix jobs."""
    return f"{base_key} run {context.run_id or 0}.{context.run_attempt or 1}"


def _ours_of_runs(comments: list[IssueComment], base_key: str) -> list[IssueComment]:
    """Our `comment: new` comments of any run, oldest first."""
    start = marker(f"{base_key} run X")[: -len("X -->")]
    return [
        c for c in comments if _trusted(c) and (marker_line(c.body or "") or "").startswith(start)
    ]


def _trusted(comment: IssueComment) -> bool:
    """Written by a bot (our token) or by someone with write access, not by a passer-by."""
    user = comment.user
    kind = getattr(user, "type", "") if user is not None else ""
    return kind == "Bot" or comment.author_association in TRUSTED_ASSOCIATIONS


def _pull_number(api: _Api, context: GitHubContext) -> int | None:
    if context.pr_number is not None:
        return context.pr_number
    if not context.find_pull_from_commit or not context.sha:
        return None
    pulls = api.call(
        "find the pull request of the commit",
        lambda: list(api.repo().get_commit(context.sha).get_pulls()),
    )
    choices = (
        [p for p in pulls if p.state == "open" and p.head.sha == context.sha]
        + [p for p in pulls if p.state == "open"]
        + [p for p in pulls if p.merged_at is not None]
    )
    return choices[0].number if choices else None


# --- the API, with retries ---------------------------------------------------------------------


class _Api:
    """PyGithub with our retry loop and one time budget for everything it does."""

    def __init__(self, context: GitHubContext, token: str, timing: Timing, budget: float) -> None:
        self.context = context
        self.timing = timing
        self.deadline = timing.clock() + budget
        self.slowest = 0.0  # seconds, the slowest call so far (retries' waits excluded)
        self.github = Github(
            auth=Auth.Token(token),
            base_url=context.api_url,
            timeout=timing.request_timeout,
            user_agent="modal-gpu-action",
            per_page=100,
            retry=None,
            seconds_between_requests=None,
            seconds_between_writes=None,
            lazy=True,
        )

    def repo(self) -> Repository:
        return self.github.get_repo(self.context.repository)

    def issue(self, number: int) -> Issue:
        return self.repo().get_issue(number)

    def list_comments(self, number: int) -> list[IssueComment]:
        """Every comment of the PR, all pages, oldest first."""
        return self.call("read the comments", lambda: list(self.issue(number).get_comments()))

    def pause(self, seconds: float) -> bool:
        """Sleep unless that would pass the budget."""
        if self.timing.clock() + seconds > self.deadline:
            return False
        self.timing.sleep(seconds)
        return True

    def call(self, what: str, action: Callable[[], T]) -> T:
        """`action()`, tried again while that can help and the budget allows."""
        attempt = 0
        while True:
            started = self.timing.clock()
            try:
                result = action()
            except GithubException as error:
                self._took(started)
                delay = self._delay(error, attempt)
                if delay is None or not self.pause(delay):
                    error.add_note(f"while trying to {what}")
                    raise
            except (requests.ConnectionError, requests.Timeout) as error:
                self._took(started)
                if not self.pause(self._backoff(attempt)):
                    error.add_note(f"while trying to {what}")
                    raise
            else:
                self._took(started)
                return result
            attempt += 1

    def _took(self, started: float) -> None:
        self.slowest = max(self.slowest, self.timing.clock() - started)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.timing.backoff_cap, self.timing.backoff_base * 2.0**attempt)
        return ceiling * (0.5 + self.timing.random() / 2)

    def _delay(self, error: GithubException, attempt: int) -> float | None:
        """How long to wait before trying again, or None when trying again cannot help."""
        status = error.status
        headers = {k.lower(): v for k, v in (error.headers or {}).items()}
        if status >= 500:
            return self._backoff(attempt)
        if status not in (403, 429):
            return None
        retry_after = _number(headers.get("retry-after"))
        if retry_after is not None:
            return max(retry_after, 1.0)
        if headers.get("x-ratelimit-remaining") == "0":
            reset = _number(headers.get("x-ratelimit-reset"))
            return max((reset or 0) - self.timing.now(), 1.0)
        if status == 429 or "rate limit" in _message(error).lower():
            return self._backoff(attempt)
        return None


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _message(error: GithubException) -> str:
    data = error.data
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return error.message or ""


def _explain(error: BaseException) -> str:
    notes = getattr(error, "__notes__", None) or []
    return _describe(error) + "".join(f" ({note})" for note in notes[:1])


def _describe(error: BaseException) -> str:
    if isinstance(error, GithubException):
        message = _message(error)
        text = f"GitHub answered {error.status}" + (f" ({message})" if message else "")
        if error.status == 403 and "not accessible" in message.lower():
            text += (
                ": the token cannot write to pull requests. Give the job"
                " 'permissions: pull-requests: write'; pull requests from forks only get a"
                " read-only token, whatever the workflow asks"
            )
        elif error.status == 401:
            text += ": the github-token was refused"
        elif error.status == 403 or error.status == 429:
            text += ": rate limited for longer than the time left to publish"
        elif error.status == 404:
            text += ": the repository or pull request was not found with this token"
        return text
    if isinstance(error, requests.RequestException):
        return f"cannot reach GitHub's API ({type(error).__name__})"
    return f"{type(error).__name__}: {error}"


class _Log:
    """Lines for the job log; warnings also kept for the caller. The token never gets out."""

    def __init__(self, stream: TextIO | None, token: str, title: str) -> None:
        self.stream = stream
        self.token = token
        self.title = title
        self.warnings: list[str] = []

    def _clean(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text

    def info(self, text: str) -> None:
        print(self._clean(text), file=self.stream or sys.stdout, flush=True)

    def warn(self, text: str) -> None:
        text = self._clean(text)
        self.warnings.append(text)
        print(
            command("warning", text, title=self.title), file=self.stream or sys.stdout, flush=True
        )
