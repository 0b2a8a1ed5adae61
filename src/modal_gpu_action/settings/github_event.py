"""GitHub's event as settings of the run: where to publish (repository, pull request, commit,
comment key), read from GitHub's variables and the event payload, and the refusal of privileged
events. No network: the pull request of a `push` is looked up when publishing
(`github_requests.pull_number`).

Context. The pull request comes from the event: `pull_request`, `pull_request_target` and the
review events (any action: opened, labeled, synchronize...) carry it in the payload at
`GITHUB_EVENT_PATH`; `issue_comment` on a PR too; `workflow_run`, `check_run` and `check_suite`
name its head commit and, for a pull request of the repository itself, its number. A `pr-number`
input wins over the event (it is how `workflow_dispatch` names one). For `push` (and those three
when they give no number), the pull requests of the commit are looked up
(`GET /repos/{owner}/{repo}/commits/{sha}/pulls`): an open one whose head is the commit, else any
open one, else the merged one; none means no comment. `GITHUB_API_URL` is PyGithub's base URL,
so GitHub Enterprise Server (`https://HOST/api/v3`) works the same.

Privileged events. Some events give the workflow the base repository's secrets and a write token
even when a pull request, a fork's included, caused them: a workflow that runs the pull
request's code from one of them hands both to its author. Unless `allow-pull-request-target:
true`, the run is refused (exit 2; the label is still removed):
- `pull_request_target`: always;
- `workflow_run`: unless the run that triggered it was a `push`, `schedule`,
  `workflow_dispatch`, `repository_dispatch`, `release` or `merge_group` run of this very
  repository (after a pull request's run, a fork's run or another `workflow_run`, the code may be
  a pull request's);
- `issue_comment`: when the comment is on a pull request, or `pr-number` names one (a comment on
  a plain issue runs the repository's own code and is accepted);
- `check_run`, `check_suite`: always (for a fork's pull request GitHub leaves their list of pull
  requests empty, so whose code it is cannot be told).
Events that get no secrets from a fork (`pull_request`, the review events) and events only
people with write access can start (`push`, `workflow_dispatch`, `schedule`...) are not refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modal_gpu_action.github_actions.github_limits import REPOSITORY, SHA, run_url_from_env
from modal_gpu_action.settings.values import SettingsError

PULL_REQUEST_EVENTS = frozenset(
    {"pull_request", "pull_request_target", "pull_request_review", "pull_request_review_comment"}
)
# Events that name a commit (`head_sha`) and, for the repository's own pull requests, their
# numbers (`pull_requests`), in a payload object of the event's name.
COMMIT_EVENTS = frozenset({"workflow_run", "check_run", "check_suite"})
# Events whose workflows hold the repository's secrets and a write token even when a pull
# request (a fork's too) caused them.
PRIVILEGED_EVENTS = frozenset({"pull_request_target", "issue_comment"} | COMMIT_EVENTS)
# A `workflow_run` after one of these ran code that someone with write access put there.
OWN_CODE_TRIGGERS = frozenset(
    {"push", "schedule", "workflow_dispatch", "repository_dispatch", "release", "merge_group"}
)


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


def read_context(
    environ: Mapping[str, str], *, pr_number: int | None, comment_key: str = ""
) -> GitHubContext:
    """The run's context from GitHub's variables and event payload; `pr_number` and
    `comment_key` are the inputs, which win over the event and the default.

    Raises SettingsError (exit code 2) for an unreadable event payload, a pull request event
    without a number, or a malformed GITHUB_REPOSITORY / GITHUB_API_URL. Whether the event may
    run at all is `privileged_event`'s to say.
    """
    event_name = environ.get("GITHUB_EVENT_NAME", "")
    payload = _payload(environ)
    from_event = _number_from_payload(event_name, payload, environ.get("GITHUB_REPOSITORY", ""))
    if event_name in PULL_REQUEST_EVENTS and from_event is None and pr_number is None:
        raise SettingsError(
            f"the '{event_name}' event's payload (GITHUB_EVENT_PATH) names no pull request"
        )
    number = pr_number or from_event
    repository = environ.get("GITHUB_REPOSITORY", "")
    if not REPOSITORY.fullmatch(repository):
        raise SettingsError(
            f"GITHUB_REPOSITORY is {repository!r}: expected OWNER/NAME (is this a GitHub"
            " Actions run?)"
        )
    api_url = (environ.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/")
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", api_url):
        raise SettingsError(f"GITHUB_API_URL is {api_url!r}: expected an http(s) URL")
    sha = _head_sha(event_name, payload) or environ.get("GITHUB_SHA", "")
    workflow, job = environ.get("GITHUB_WORKFLOW", ""), environ.get("GITHUB_JOB", "")
    default_key = "/".join(part for part in (workflow, job) if part) or "gpu-tests"
    return GitHubContext(
        api_url=api_url,
        repository=repository,
        event_name=event_name,
        pr_number=number,
        sha=sha if SHA.fullmatch(sha or "") else "",
        run_url=run_url_from_env(environ) or "",
        run_id=environ.get("GITHUB_RUN_ID", ""),
        run_attempt=environ.get("GITHUB_RUN_ATTEMPT", "1"),
        comment_key=comment_key or default_key,
        find_pull_from_commit=(event_name == "push" or event_name in COMMIT_EVENTS)
        and number is None,
    )


def privileged_event(
    environ: Mapping[str, str], *, allow_pull_request_target: bool, pr_number: int | None
) -> str | None:
    """Why this run must not go on: an event that holds the repository's secrets while it may
    run a pull request's code, without `allow-pull-request-target` (one line that names the
    input); None when it may run. What counts is in the module's docstring."""
    event = environ.get("GITHUB_EVENT_NAME", "")
    if allow_pull_request_target or event not in PRIVILEGED_EVENTS:
        return None
    try:
        payload: dict[str, object] | None = _payload(environ)
    except SettingsError:
        payload = None  # cannot tell whose code it is: refused
    why = _pull_request_code(event, payload, environ.get("GITHUB_REPOSITORY", ""), pr_number)
    if why is None:
        return None
    return (
        f"refusing to run on '{event}'{f' ({why})' if why else ''}: that event gives the workflow"
        " the base repository's secrets (your Modal token) and a write token while it can run a"
        " pull request's code, which could then steal them. Use 'on: pull_request' (gate GPU"
        " runs with a label: 'on: pull_request: types: [labeled]' and 'remove-label'), or set"
        " input 'allow-pull-request-target: true' if this workflow only runs code you trust"
    )


def _pull_request_code(
    event: str, payload: Mapping[str, object] | None, repository: str, pr_number: int | None
) -> str | None:
    """How a pull request's code can be in this privileged run ("" when the event says it all),
    or None when the code is the repository's own."""
    if event == "pull_request_target":
        return ""
    if payload is None:
        return "its payload GITHUB_EVENT_PATH cannot be read"
    if event == "issue_comment":
        issue = payload.get("issue")
        if isinstance(issue, dict) and isinstance(issue.get("pull_request"), dict):
            return f"a comment on pull request #{issue.get('number')}"
        if pr_number is not None:
            return f"input 'pr-number' names pull request #{pr_number}"
        return None
    if event == "workflow_run":
        run = payload.get("workflow_run")
        run = run if isinstance(run, dict) else {}
        trigger = run.get("event")
        head = run.get("head_repository")
        head_name = head.get("full_name") if isinstance(head, dict) else None
        if trigger not in OWN_CODE_TRIGGERS:
            return (
                f"after a {trigger!r} run" if isinstance(trigger, str) else "after an unknown run"
            )
        if not isinstance(head_name, str) or head_name.lower() != repository.lower():
            return f"after a run of {head_name or 'an unknown repository'}"
        return None
    return ""  # check_run, check_suite: a fork's pull request does not show


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


def _into(pull: Mapping[str, object], repository: str) -> bool:
    """A `pull_requests` entry of a commit event is a pull request into this repository (an
    entry that does not say is taken as one)."""
    base = pull.get("base")
    repo = base.get("repo") if isinstance(base, dict) else None
    url = repo.get("url") if isinstance(repo, dict) else None
    return not isinstance(url, str) or url.lower().endswith(f"/repos/{repository.lower()}")


def _head_sha(event_name: str, payload: Mapping[str, object]) -> str:
    """The pull request's head commit (GITHUB_SHA is the test merge commit for PR events), or
    the commit a `workflow_run`, `check_run` or `check_suite` is about."""
    pull = payload.get("pull_request")
    head = pull.get("head") if isinstance(pull, dict) else None
    sha = head.get("sha") if isinstance(head, dict) else None
    run = payload.get(event_name) if event_name in COMMIT_EVENTS else None
    if sha is None and isinstance(run, dict):
        sha = run.get("head_sha")
    return sha if isinstance(sha, str) else ""


def _number_from_payload(
    event_name: str, payload: Mapping[str, object], repository: str
) -> int | None:
    candidates: list[object] = []
    pull = payload.get("pull_request")
    if event_name in PULL_REQUEST_EVENTS:
        if isinstance(pull, dict):
            candidates.append(pull.get("number"))
        candidates.append(payload.get("number"))
    run = payload.get(event_name) if event_name in COMMIT_EVENTS else None
    pulls = run.get("pull_requests") if isinstance(run, dict) else None
    # GitHub also lists pull requests of other repositories whose head is this commit.
    candidates += [
        pull.get("number")
        for pull in (pulls if isinstance(pulls, list) else [])
        if isinstance(pull, dict) and _into(pull, repository)
    ]
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
