"""GitHub's API for publishing, bounded in time: the deadline that the comment and the label
share, PyGithub calls run in daemon threads and retried, the pull request of the run, and the
text of warnings. Kept apart so that the publishers (`github`, `github_comment`) say what to
call, not how long to wait for it.

Time. All of a run's publishing has one deadline (`deadline.Deadline`): 60 s from its first
request (MODAL_GPU_ACTION_PUBLISH_SECONDS, 1 to 600, changes it), retries, waits and checks
included. The comment stops when the last quarter is left, which the label keeps. Each API
interaction
runs in a daemon thread and is waited for until it ends, whole - connecting, sending, every byte
of the answer - within `request_seconds` (15 s) and what is left of the deadline: an API that
accepts and never answers, or trickles a header line every few seconds, costs that and no more
(a socket timeout alone would wait per read, forever for a trickle). A request given up on is
left behind, never waited for. The run's cancel event (SIGINT, SIGTERM) stops the comment at
once - skipped, or abandoned where it was - and leaves the label `cancel_seconds` (3 s), so a
cancelled job ends before GitHub's SIGKILL (SIGINT, SIGTERM 7.5 s later, SIGKILL 2.5 s after).

Retries. PyGithub's own urllib3 retry (GithubRetry) is turned off: it waits for a primary rate
limit's reset (up to an hour) and sleeps where tests cannot see it. Instead every call retries,
with exponential backoff and jitter, on 5xx, connection errors, requests that did not end in
time, 429, and on 403 rate limits (`retry-after`, which is honoured, or
`x-ratelimit-remaining: 0`, until `x-ratelimit-reset`), within the deadline: a wait that would
end past it is not started, the failure becomes a warning. Other 4xx are not retried; a 403
"Resource not accessible by integration" (a read-only token, as pull requests from forks get)
becomes a warning that says which permission is missing. The token is never printed.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import sys
import threading
from collections.abc import Callable
from typing import TextIO, TypeVar

import requests
from github import Auth, Github, GithubException
from github.Issue import Issue
from github.IssueComment import IssueComment
from github.Repository import Repository

from modal_gpu_action.github_actions.workflow import command
from modal_gpu_action.publish.deadline import Timing, number
from modal_gpu_action.render.durations import format_duration
from modal_gpu_action.settings import GitHubContext

ACTIONS_BOT = "github-actions[bot]"  # who the workflow's GITHUB_TOKEN writes as
_BOT_SUFFIX = "[bot]"  # GitHub's logins of apps' bots end so; a user's login cannot
_VIEWER_QUERY = "query { viewer { login } }"
_POLL_SECONDS = 0.05  # how often a wait for a request looks at the cancel event
# Who each token writes as, once found (GET /user, GraphQL's viewer, a comment it created), by
# API and token: a run reads the previous comment, publishes and reads it back with an Api each,
# and would otherwise ask up to three times. A guess (ACTIONS_BOT after both lookups failed) is
# not kept: the next Api asks again.
_KNOWN_LOGINS: dict[tuple[str, str], str] = {}
T = TypeVar("T")


class Cancelled(Exception):
    """The run was cancelled: the comment stops where it is."""


class _NoAnswer(requests.Timeout):
    """A request that did not end within its own limit or the deadline: left behind."""


class Api:
    """PyGithub with our retry loop, one deadline for everything it does, and the run's cancel
    event: the comment stops at a cancel, the label (`hurry`) gets `cancel_seconds` more."""

    def __init__(
        self,
        context: GitHubContext,
        token: str,
        timing: Timing,
        end: float,
        cancel: threading.Event,
        *,
        hurry: bool,
    ) -> None:
        self.context = context
        self.timing = timing
        self.end = end  # timing.clock() value by which everything here is over
        self.cancel = cancel
        self.hurry = hurry
        self.slowest = 0.0  # seconds, the slowest call so far (retries' waits excluded)
        self._known = (context.api_url, token)
        self._login: str | None = _KNOWN_LOGINS.get(self._known)
        self.github = Github(
            auth=Auth.Token(token),
            base_url=context.api_url,
            timeout=max(1, math.ceil(timing.request_seconds)),  # per socket read: a backstop
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
        """Every comment of the PR, all pages, oldest first: one bounded request a page."""
        pages = self.issue(number).get_comments()
        comments: list[IssueComment] = []
        for index in itertools.count():
            page = self.call("read the comments", functools.partial(pages.get_page, index))
            comments += page
            if len(page) < self.github.per_page:
                break
        return comments

    def login(self) -> str:
        """Who this token writes as, looked up once: `GET /user` (a user's token); for a token
        that it refuses (an installation token) GraphQL's `viewer`, as a bot; failing that,
        `github-actions[bot]` until a comment it wrote says otherwise."""
        if self._login is None:
            try:
                _, data = self.call(
                    "find who the token writes as",
                    lambda: self.github.requester.requestJsonAndCheck("GET", "/user"),
                )
                login = data.get("login") if isinstance(data, dict) else None
            except GithubException as error:
                if error.status != 403:
                    raise
                login = self._installation_login()
            if isinstance(login, str) and login:
                _KNOWN_LOGINS[self._known] = login
            self._login = login if isinstance(login, str) and login else ACTIONS_BOT
        return self._login

    def _installation_login(self) -> str | None:
        """The bot an installation token writes as (`APP-SLUG[bot]`, `github-actions[bot]`),
        from GraphQL's `viewer`, which answers installation tokens where `GET /user` does not:
        without it a GitHub App's earlier comments are not recognised and every run writes a
        new one. None when GraphQL cannot tell; the caller then guesses as before."""
        try:
            _, data = self.call(
                "find which bot the token writes as",
                lambda: self.github.requester.graphql_query(_VIEWER_QUERY, {}),
            )
        except (GithubException, requests.RequestException, ValueError, TypeError):
            # Refused, an error payload, no answer in time, or a body that is not a JSON
            # object (PyGithub's TypeError, ValueError): the lookup is only a better guess.
            return None
        viewer = data.get("data") if isinstance(data, dict) else None
        viewer = viewer.get("viewer") if isinstance(viewer, dict) else None
        login = viewer.get("login") if isinstance(viewer, dict) else None
        if not isinstance(login, str) or not login:
            return None
        # An installation token always writes as a bot, whose comments GitHub shows as
        # `NAME[bot]`; GraphQL may name it without the suffix (the workflow's token:
        # `github-actions`). Never the bare name: a user of that login is someone else.
        return login if login.endswith(_BOT_SUFFIX) else login + _BOT_SUFFIX

    def wrote_as(self, login: str) -> None:
        """A comment this token created was written by `login`: that is who we are."""
        if login:
            self._login = _KNOWN_LOGINS[self._known] = login

    def pause(self, seconds: float) -> bool:
        """Wait before trying again, unless that would pass the deadline (False). A cancel cuts
        the wait short: the comment stops (Cancelled), the label tries again at once."""
        self._on_cancel()
        if self.timing.clock() + seconds > self.end:
            return False
        # Once cancelled, the event no longer interrupts anything: wait on one never set.
        event = threading.Event() if self.cancel.is_set() else self.cancel
        if seconds > 0 and self.timing.wait(event, seconds):
            self._on_cancel()
        return True

    def _on_cancel(self) -> None:
        if not self.cancel.is_set():
            return
        if not self.hurry:
            raise Cancelled
        self.end = min(self.end, self.timing.clock() + self.timing.cancel_seconds)

    def call(self, what: str, action: Callable[[], T]) -> T:
        """`action()`, tried again while that can help and the deadline allows."""
        attempt = 0
        while True:
            started = self.timing.clock()
            try:
                result = self._bounded(what, action)
            except GithubException as error:
                self._took(started)
                delay = self._delay(error, attempt)
                if delay is None or not self.pause(delay):
                    error.add_note(f"while trying to {what}")
                    raise
            except (requests.ConnectionError, requests.Timeout) as error:
                if not isinstance(error, _NoAnswer):
                    self._took(started)
                if not self.pause(self._backoff(attempt)):
                    error.add_note(f"while trying to {what}")
                    raise
            else:
                self._took(started)
                return result
            attempt += 1

    def _bounded(self, what: str, action: Callable[[], T]) -> T:
        """`action()` in a daemon thread, waited for until it ends, its own limit passes
        (`request_seconds`, for the whole request, not one read of it) or the deadline does, or
        the run is cancelled. A request given up on is left behind: nothing waits for it, and
        it cannot keep the process from exiting."""
        self._on_cancel()
        started = self.timing.clock()
        if started >= self.end:  # not even sent: a request left behind could still land
            raise _NoAnswer("no time was left before the publishing deadline")
        results: list[T] = []
        errors: list[BaseException] = []
        done = threading.Event()

        def work() -> None:
            try:
                results.append(action())
            except BaseException as error:  # handed to the caller's thread below
                errors.append(error)
            finally:
                done.set()

        threading.Thread(target=work, name=f"GitHub API: {what}", daemon=True).start()
        while True:
            limit = min(started + self.timing.request_seconds, self.end)
            left = limit - self.timing.clock()
            if done.wait(max(0.0, min(_POLL_SECONDS, left))):
                break
            self._on_cancel()  # the comment stops here, the label's limit may shrink
            if self.timing.clock() >= min(started + self.timing.request_seconds, self.end):
                self._abandon()
                waited = self.timing.clock() - started
                raise _NoAnswer(f"GitHub's API did not answer within {format_duration(waited)}")
        if errors:
            raise errors[0]
        return results[0]

    def _abandon(self) -> None:
        """Leave the stuck request its connection: the next request opens a new one."""
        with contextlib.suppress(Exception):
            self.github.close()

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
        retry_after = number(headers.get("retry-after"))
        if retry_after is not None:
            return max(retry_after, 1.0)
        if headers.get("x-ratelimit-remaining") == "0":
            reset = number(headers.get("x-ratelimit-reset"))
            return max((reset or 0) - self.timing.now(), 1.0)
        if status == 429 or "rate limit" in error_message(error).lower():
            return self._backoff(attempt)
        return None


def pull_number(api: Api, context: GitHubContext) -> int | None:
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


def error_message(error: GithubException) -> str:
    data = error.data
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return error.message or ""


def explain(error: BaseException) -> str:
    notes = getattr(error, "__notes__", None) or []
    return _describe(error) + "".join(f" ({note})" for note in notes[:1])


def _describe(error: BaseException) -> str:
    if isinstance(error, GithubException):
        message = error_message(error)
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
    if isinstance(error, _NoAnswer):
        return str(error)
    if isinstance(error, requests.RequestException):
        return f"cannot reach GitHub's API ({type(error).__name__})"
    return f"{type(error).__name__}: {error}"


class Log:
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
