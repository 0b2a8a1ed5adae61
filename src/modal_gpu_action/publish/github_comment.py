"""The PR comment of GitHub mode: which comments are ours, whether
`comment-on` wants it written, and writing it so that the jobs of a matrix converge on one
comment. Its format (sections, markers, size) is `comment_sections`; every API call goes
through `github_requests.Api`.

The comment. `comment: sticky` keeps one comment per key (`comment-key`, default the workflow's
name and the job id), found by its hidden marker line on any page of the PR's comments and
edited in place; `new` keeps one comment per workflow run attempt instead (the matrix jobs of a
run still share it). Only comments written by the token's own login are ours: it is looked up
once per run (github_requests keeps it for the run's other reads) with `GET /user` (a personal
access token's user). Installation tokens,
which `GET /user` refuses (403 "Resource not accessible by integration"), write as a bot: the
workflow's GITHUB_TOKEN as `github-actions[bot]`, a GitHub App's as `APP-SLUG[bot]`; GraphQL's
`viewer { login }`, which answers them, names it (`[bot]` appended where the answer lacks it, so
a user whose login is the bare name is never taken for the bot). Where GraphQL fails too, the
token is taken for `github-actions[bot]` until a comment it creates shows its login: an app's
earlier comment is then not recognised at first, so a new comment is written (notifying), then
found beside the earlier one, merged into it and deleted. Logins are compared whole, ignoring
case only. A marker line in anybody else's comment, another bot's or a maintainer's, is never
edited, merged or deleted.

The jobs of a matrix share the key, so they share the comment: each job owns the section of its
key (the GPU or `matrix-key`) and rebuilds the whole comment from the sections already in it (see
`comment_sections`). GitHub has no conditional update, so a job checks what it wrote by reading
the comment again, and waits only where another writer can be at work:
- alone (no other key's section, at most one comment): one write, one re-read at once;
- beside other jobs' sections, none seen writing: one write, one re-read after `Timing.guard`
  (0.2 s), long enough for a job that read the comment before this write to have landed its
  own;
- once another writer is seen - a second comment of ours, another section that changed between
  this job's reads, or its own section missing or replaced - it waits a random 1-2.5 s before
  each re-read, rewrites (merging what it finds) while its section is missing or not alone in
  one comment, and stops once it has seen its section in place twice in a row.
Every wait is at least as long as this job's own read-then-write and twice its slowest request,
so a slow API or a busy machine gets longer waits (`_wait`).
`max_writes` writes, or the time budget, running out end it with a warning. Comments that a race
duplicated are merged into the oldest and deleted. What a lone job cannot see: a job whose key
is new to the comment (a matrix's first run, into the comment one job left) and whose
read-then-write straddles the lone job's write and re-read; its write can bring back the lone
job's previous section, until the next run.

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
"""

from __future__ import annotations

import secrets
from dataclasses import replace

from github import GithubException
from github.IssueComment import IssueComment

from modal_gpu_action.github_actions.github_limits import COMMENT_CHARS
from modal_gpu_action.publish.deadline import Timing
from modal_gpu_action.publish.github_requests import Api, Log, pull_number
from modal_gpu_action.render.comment_sections import (
    Section,
    clean_key,
    compose_comment,
    marker,
    marker_line,
    merge,
    parse_comment,
    strip_marker,
)
from modal_gpu_action.settings import GitHubContext, PublishSettings


def publish(
    api: Api,
    context: GitHubContext,
    settings: PublishSettings,
    section: Section,
    timing: Timing,
    log: Log,
) -> str | None:
    number = pull_number(api, context)
    if number is None:
        log.info("No pull request for this run: no PR comment.")
        return None
    base_key = context.comment_key
    key = base_key if settings.comment == "sticky" else run_key(base_key, context)
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
    login = api.login()  # first: the read below is what this job's write is built from
    read_at = timing.clock()
    comments = api.list_comments(number)
    mine = our_comments(comments, key, login)
    if settings.comment == "sticky":
        baseline = merge(*(parse_comment(c.body) for c in mine)).get(own.key)
    else:
        mine_ids = {c.id for c in mine}
        earlier = [
            c for c in our_comments_of_runs(comments, base_key, login) if c.id not in mine_ids
        ]
        baseline = parse_comment(earlier[-1].body).get(own.key) if earlier else None
    reason = _skip_reason(settings.comment_on, own, baseline, exists=bool(mine))
    if reason:
        log.info(f"PR comment not written: {reason} (comment-on: {settings.comment_on}).")
        return None
    return _converge(api, number, key, own, (mine, read_at), timing, log)


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
    api: Api,
    number: int,
    key: str,
    own: Section,
    read: tuple[list[IssueComment], float],
    timing: Timing,
    log: Log,
) -> str | None:
    """Write this job's section and check, re-reading, that it stays in the one comment. `read`:
    our comments with this key, and when the request that found them started."""
    state, read_at = read
    span = 0.0  # the last write, from the start of the read it was built from to its end
    url: str | None = None
    expected: Section | None = None  # this job's section as last written
    seen: dict[str, Section] = {}  # every section, as this job last wrote or read them
    contended = len(state) > 1  # another writer seen
    looked_again = False  # for the comment written, when a re-read did not list it
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
            url = state[0].html_url
            contended = contended or sections != seen  # another section changed meanwhile
            confirmed += 1
            if confirmed >= (timing.confirmations if contended else 1):
                log.info(f"PR comment: {url}")
                return url
        elif expected is not None and not state and not looked_again:
            # Not listed right after it was written: GitHub's reads can lag behind its writes for a
            # moment, and writing again would create a second comment. Wait, then look again.
            contended = looked_again = True
            confirmed = 0
        else:
            contended = contended or expected is not None  # ours missing, replaced, duplicated
            confirmed = 0
            if writes >= timing.max_writes:
                log.warn(
                    f"other jobs kept rewriting the PR comment: gave up after {writes} writes;"
                    " the section of this job may be missing"
                )
                return url
            sections[own.key] = own
            body = compose_comment(key, sections, own_key=own.key)
            if len(body) > COMMENT_CHARS:
                log.warn(
                    f"the comment would hold {len(body):,} characters, more than GitHub's"
                    f" {COMMENT_CHARS:,}, even with every section shortened"
                )
                return url
            sections = parse_comment(body)
            expected = sections[own.key]
            url = _write(api, number, body, state)
            writes += 1
            span = timing.clock() - read_at
        seen = sections
        if not api.pause(_wait(api, timing, span, contended=contended, alone=len(seen) == 1)):
            if confirmed == 0:
                log.warn(
                    "ran out of time before checking that the PR comment kept this job's section"
                )
            return url
        read_at = timing.clock()
        state = our_comments(api.list_comments(number), key, api.login())


def _wait(api: Api, timing: Timing, span: float, *, contended: bool, alone: bool) -> float:
    """How long to wait before re-reading the comment. Another job that read the comment before
    this job's write and writes after it must have landed by then; its read-then-write takes
    about as long as this job's own (`span`) and less than two of its requests with a little
    work between, so a wait is never shorter than `span` or twice the slowest request seen (a
    slow API, or a busy machine, gets longer waits)."""
    least = max(span, 2 * api.slowest)
    if contended:  # random, so that jobs that collided once do not re-read in step
        low, high = timing.settle
        return max(low + (high - low) * timing.random(), least)
    if alone:  # nobody else's section: nobody to wait for
        return 0.0
    return max(timing.guard, least)


def _write(api: Api, number: int, body: str, state: list[IssueComment]) -> str:
    if not state:
        created = api.call("create the comment", lambda: api.issue(number).create_comment(body))
        api.wrote_as(created.user.login if created.user is not None else "")
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


def our_comments(comments: list[IssueComment], key: str, login: str) -> list[IssueComment]:
    """Our comments with this exact key, oldest first."""
    line = marker(key)
    return [c for c in comments if _by(c, login) and marker_line(c.body or "") == line]


def run_key(base_key: str, context: GitHubContext) -> str:
    """The key of `comment: new`: one comment per run attempt, shared by its matrix jobs."""
    return f"{base_key} run {context.run_id or 0}.{context.run_attempt or 1}"


def our_comments_of_runs(
    comments: list[IssueComment], base_key: str, login: str
) -> list[IssueComment]:
    """Our `comment: new` comments of any run, oldest first."""
    start = marker(f"{base_key} run X")[: -len("X -->")]
    return [
        c for c in comments if _by(c, login) and (marker_line(c.body or "") or "").startswith(start)
    ]


def _by(comment: IssueComment, login: str) -> bool:
    """Written by this login (ours), not by another bot, a maintainer or a passer-by."""
    user = comment.user
    author = getattr(user, "login", None) if user is not None else None
    return isinstance(author, str) and author.lower() == login.lower()
