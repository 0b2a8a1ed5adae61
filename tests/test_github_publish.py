"""GitHub mode end to end against a local GitHub API (tests/github_api/): the real PyGithub calls,
every request and response checked against GitHub's REST API description."""

from __future__ import annotations

import io
import json
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from github_api.server import (
    APP_BOT,
    BOT,
    GRAPHQL,
    GRAPHQL_FORBIDDEN,
    MAINTAINER,
    OTHER_BOT,
    STRANGER,
    FakeGitHub,
)

from modal_gpu_action.publish import github, github_requests
from modal_gpu_action.render.comment_sections import (
    Section,
    compose_comment,
    marker,
    parse_comment,
    section_for,
)
from modal_gpu_action.render.markdown import escape_inline
from modal_gpu_action.report.conclusion import Conclusion
from modal_gpu_action.report.results import CaseOutcome, TestCase, TestReport
from modal_gpu_action.settings import PublishSettings, SettingsError, load_settings
from modal_gpu_action.settings.github_event import privileged_event

HEAD = "0123456789abcdef0123456789abcdef01234567"
PR = 7
LABEL = "gpu-tests"
FAST = github.Timing(settle=(0.005, 0.015), backoff_base=0.005, backoff_cap=0.02)


class FakeClock:
    """Time that passes only when the code sleeps: retries and budgets without waiting."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def wait(self, cancel: threading.Event, seconds: float) -> bool:
        self.sleeps.append(seconds)
        self.elapsed += seconds
        return cancel.is_set()

    def timing(self, **options: Any) -> github.Timing:
        return github.Timing(
            wait=self.wait,
            clock=lambda: self.elapsed,
            now=lambda: 1_800_000_000 + self.elapsed,
            random=lambda: 0.5,
            **options,
        )


def environment(fake: FakeGitHub, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_REPOSITORY": fake.full_name,
        "GITHUB_API_URL": fake.api_url,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "4242",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_SHA": "f" * 40,
        "GITHUB_WORKFLOW": "GPU tests",
        "GITHUB_JOB": "gpu",
        "INPUT_GITHUB_TOKEN": fake.state.token,
        "INPUT_TEST_PATH": ".",
        "INPUT_REMOVE_LABEL": LABEL,
    }
    payload = {
        "action": "labeled",
        "number": PR,
        "pull_request": {"number": PR, "head": {"sha": HEAD}},
    }
    event = tmp_path / "event.json"
    event.write_text(json.dumps(payload), encoding="utf-8")
    env["GITHUB_EVENT_PATH"] = str(event)
    env.update(extra)
    return env


def setup(
    fake: FakeGitHub, tmp_path: Path, **extra: str
) -> tuple[github.GitHubContext, PublishSettings]:
    """The event's context and the publishing settings, as the inputs and GITHUB_* give them."""
    env = environment(fake, tmp_path, **extra)
    settings = load_settings({}, env, workspace=tmp_path).publishing
    assert settings.context is not None
    return settings.context, settings


def section(key: str = "L4", conclusion: str = "passed", **counts: Any) -> Section:
    tests = counts.pop("tests", 3)
    passed = counts.pop("passed", tests if conclusion == "passed" else tests - 1)
    failed = counts.pop("failed", 0 if conclusion == "passed" else 1)
    return Section(
        key=key,
        conclusion=Conclusion(conclusion),
        tests=tests,
        passed=passed,
        failed=failed,
        duration=12.5,
        body=counts.pop("body", f"### GPU tests on {key}: {conclusion}"),
        **counts,
    )


def publish(
    context: github.GitHubContext,
    settings: PublishSettings,
    part: Section,
    timing: github.Timing = FAST,
    deadline: github.Deadline | None = None,
) -> tuple[github.PublishResult, str]:
    out = io.StringIO()
    github_requests._KNOWN_LOGINS.clear()  # each call is a run: a process of its own
    result = github.publish_comment(
        replace(settings, context=context),
        section=part,
        timing=timing,
        stream=out,
        deadline=deadline,
    )
    return result, out.getvalue()


@pytest.fixture
def fake(github_api_server: FakeGitHub) -> FakeGitHub:
    github_api_server.add_pull(PR, HEAD, labels=(LABEL, "other"))
    return github_api_server


# --- the sticky comment ------------------------------------------------------------------------


def test_first_run_creates_the_comment_and_a_rerun_updates_it(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    context, settings = setup(fake, tmp_path)

    first, _ = publish(context, settings, section(conclusion="failed"))
    second, log = publish(context, settings, section(conclusion="passed"))

    comments = fake.comments_on(PR)
    assert len(comments) == 1
    assert first.warnings == second.warnings == []
    assert first.comment_url == second.comment_url
    assert first.comment_url and first.comment_url.endswith(f"#issuecomment-{comments[0].id}")
    assert comments[0].body.startswith(marker("GPU tests/gpu") + "\n")
    assert parse_comment(comments[0].body)["L4"].conclusion == "passed"
    assert len(fake.calls("issues/create-comment")) == 1
    assert len(fake.calls("issues/update-comment")) == 1
    assert second.comment_url in log


def test_the_marker_is_found_on_the_second_page_of_150_comments(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    context, settings = setup(fake, tmp_path)
    ours = compose_comment("GPU tests/gpu", {"L4": section(conclusion="failed")})
    for index in range(150):
        if index == 120:
            fake.add_comment(PR, ours, user=BOT)
        else:
            fake.add_comment(PR, f"comment {index}", user=STRANGER)

    result, _ = publish(context, settings, section())

    assert result.warnings == []
    assert len(fake.comments_on(PR)) == 150
    assert parse_comment(fake.comments_on(PR)[120].body)["L4"].conclusion == "passed"
    assert fake.calls("issues/create-comment") == []
    pages = [e.query.get("page", ["1"])[0] for e in fake.calls("issues/list-comments")]
    assert pages and pages == ["1", "2"] * (len(pages) // 2)  # every read took both pages


PAT_USER = {"login": "ci-robot", "id": 4004, "type": "User"}  # a personal access token's user


def github_url(fake: FakeGitHub, comment_id: int) -> str:
    return f"{fake.host}/{fake.full_name}/pull/{PR}#issuecomment-{comment_id}"


def foreign_marker_comments(fake: FakeGitHub, *others: dict[str, Any]) -> list[Any]:
    """Comments that start with our marker line, written by others than the token."""
    body = compose_comment("GPU tests/gpu", {"A100": section("A100", "failed")})
    return [
        fake.add_comment(PR, body.replace("failed", "forged"), user=STRANGER),
        fake.add_comment(PR, body, user=MAINTAINER, association="MEMBER"),
        fake.add_comment(PR, body, user=OTHER_BOT, association="NONE"),
        *(fake.add_comment(PR, body, user=user, association="MEMBER") for user in others),
    ]


@pytest.mark.parametrize(
    ("token_user", "others"),
    [(BOT, ()), (PAT_USER, (BOT,))],
    ids=["GITHUB_TOKEN", "personal access token"],
)
def test_foreign_marker_comments_are_never_edited_or_deleted_and_ours_is_updated(
    fake: FakeGitHub, tmp_path: Path, token_user: dict[str, Any], others: tuple[Any, ...]
) -> None:
    fake.state.as_user = token_user
    context, settings = setup(fake, tmp_path)
    foreign = foreign_marker_comments(fake, *others)
    ours = fake.add_comment(
        PR, compose_comment("GPU tests/gpu", {"T4": section("T4")}), user=token_user
    )

    result, _ = publish(context, settings, section("L4", "failed"))

    assert result.warnings == []
    assert result.comment_url == github_url(fake, ours.id)
    bodies = {c.id: c.body for c in fake.comments_on(PR)}
    assert {c.id: c.body for c in foreign} == {c.id: bodies[c.id] for c in foreign}  # untouched
    assert set(parse_comment(bodies[ours.id])) == {"T4", "L4"}  # theirs not merged in
    assert len(bodies) == len(foreign) + 1
    assert fake.calls("issues/delete-comment") == fake.calls("issues/create-comment") == []
    edited = {int(e.path.rsplit("/", 1)[1]) for e in fake.calls("issues/update-comment")}
    assert edited == {ours.id}
    # Who the token is was asked once, whatever the number of reads.
    assert len(fake.calls("users/get-authenticated")) == 1
    assert len(fake.calls("issues/list-comments")) >= 2


def test_a_github_app_token_writes_its_own_comment_and_leaves_the_others(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    """GET /user refuses an app's installation token, as the workflow's GITHUB_TOKEN; GraphQL's
    viewer names its bot, whose comment is then the only one recognised as ours."""
    fake.state.as_user = APP_BOT
    context, settings = setup(fake, tmp_path)
    foreign = foreign_marker_comments(fake)

    result, _ = publish(context, settings, section("L4", "failed"))

    assert result.warnings == []
    assert [e.status for e in fake.calls("users/get-authenticated")] == [403]
    assert [e.status for e in fake.calls(GRAPHQL)] == [200]
    created = [c for c in fake.comments_on(PR) if c.user["login"] == APP_BOT["login"]]
    assert len(created) == 1 and result.comment_url == github_url(fake, created[0].id)
    assert set(parse_comment(created[0].body)) == {"L4"}
    bodies = {c.id: c.body for c in fake.comments_on(PR)}
    assert {c.id: c.body for c in foreign} == {c.id: bodies[c.id] for c in foreign}
    assert fake.calls("issues/delete-comment") == []


# A GitHub App's installation token: GET /user refuses it, GraphQL's viewer names its bot.


@pytest.mark.parametrize("where", ["api.github.com", "GHES"])
def test_a_github_app_tokens_next_run_edits_the_comment_of_its_earlier_run(
    request: pytest.FixtureRequest,
    github_api_make_server: Callable[..., FakeGitHub],
    tmp_path: Path,
    where: str,
) -> None:
    """Each run asks who the token is afresh: its earlier runs' comment, written by
    `APP-SLUG[bot]`, must be recognised before anything is written, or every run adds one."""
    if where == "GHES":  # GraphQL at /api/graphql, REST below /api/v3
        validator = request.getfixturevalue("github_api_ghes_validator")
        fake = github_api_make_server(validator, prefix="/api/v3")
    else:
        fake = github_api_make_server()
    fake.add_pull(PR, HEAD, labels=(LABEL,))
    fake.state.as_user = APP_BOT
    context, settings = setup(fake, tmp_path)
    foreign = foreign_marker_comments(fake)

    first, _ = publish(context, settings, section("L4", "failed"))
    second, _ = publish(context, settings, section("L4", "passed"))

    assert first.warnings == second.warnings == []
    ours = [c for c in fake.comments_on(PR) if c.user["login"] == APP_BOT["login"]]
    assert len(ours) == 1
    assert first.comment_url == second.comment_url == github_url(fake, ours[0].id)
    assert parse_comment(ours[0].body)["L4"].conclusion == "passed"
    assert len(fake.calls("issues/create-comment")) == 1
    assert len(fake.calls("issues/update-comment")) == 1
    assert fake.calls("issues/delete-comment") == []  # no duplicate written
    assert [e.status for e in fake.calls(GRAPHQL)] == [200, 200]  # once per run
    assert {e.path for e in fake.calls(GRAPHQL)} == {fake.graphql_path}
    bodies = {c.id: c.body for c in fake.comments_on(PR)}
    assert {c.id: c.body for c in foreign} == {c.id: bodies[c.id] for c in foreign}


@pytest.mark.parametrize("viewer", [None, "github-actions"], ids=["bot login", "bare name"])
def test_the_workflow_token_is_github_actions_bot_whatever_graphql_calls_it(
    fake: FakeGitHub, tmp_path: Path, viewer: str | None
) -> None:
    fake.state.as_user = BOT
    fake.state.viewer_login = viewer  # None: `github-actions[bot]`
    context, settings = setup(fake, tmp_path)
    foreign = foreign_marker_comments(fake)
    ours = fake.add_comment(PR, compose_comment("GPU tests/gpu", {"T4": section("T4")}), user=BOT)

    result, _ = publish(context, settings, section("L4", "failed"))

    assert result.warnings == []
    assert result.comment_url == github_url(fake, ours.id)
    assert [e.status for e in fake.calls(GRAPHQL)] == [200]
    assert fake.calls("issues/create-comment") == fake.calls("issues/delete-comment") == []
    edited = {int(e.path.rsplit("/", 1)[1]) for e in fake.calls("issues/update-comment")}
    assert edited == {ours.id}
    assert set(parse_comment(fake.comments_on(PR)[-1].body)) == {"T4", "L4"}
    bodies = {c.id: c.body for c in fake.comments_on(PR)}
    assert {c.id: c.body for c in foreign} == {c.id: bodies[c.id] for c in foreign}


GRAPHQL_FAILURES = {
    "403": (403, {"message": "Resource not accessible by integration"}),
    "error payload": (200, GRAPHQL_FORBIDDEN),
    "no login in the answer": (200, {"data": {"viewer": None}}),
    "bad credentials": (401, {"message": "Bad credentials"}),
}


@pytest.mark.parametrize("failure", list(GRAPHQL_FAILURES))
@pytest.mark.parametrize("token_user", [BOT, APP_BOT], ids=["GITHUB_TOKEN", "GitHub App"])
def test_graphql_failing_falls_back_to_github_actions_bot_and_still_publishes(
    fake: FakeGitHub, tmp_path: Path, failure: str, token_user: dict[str, Any]
) -> None:
    """As before GraphQL was asked: the token is taken for github-actions[bot] until its first
    comment shows its login. An app's earlier comment is then not recognised at first: a new
    comment is created (a notification), then found beside it, merged into it and deleted."""
    fake.state.as_user = token_user
    status, body = GRAPHQL_FAILURES[failure]
    fake.inject(GRAPHQL, status, body=body)
    context, settings = setup(fake, tmp_path)
    foreign = foreign_marker_comments(fake)
    earlier = fake.add_comment(
        PR, compose_comment("GPU tests/gpu", {"T4": section("T4")}), user=token_user
    )

    result, _ = publish(context, settings, section("L4", "failed"))

    assert result.warnings == []
    assert [e.status for e in fake.calls(GRAPHQL)] == [status]  # not retried
    assert result.comment_url == github_url(fake, earlier.id)
    ours = [c for c in fake.comments_on(PR) if c.user["login"] == token_user["login"]]
    assert [c.id for c in ours] == [earlier.id]
    assert set(parse_comment(ours[0].body)) == {"T4", "L4"}
    assert parse_comment(ours[0].body)["L4"].conclusion == "failed"
    created = len(fake.calls("issues/create-comment"))
    deleted = len(fake.calls("issues/delete-comment"))
    # github-actions[bot] is the right guess for the workflow's token, not for an app's.
    assert (created, deleted) == ((0, 0) if token_user is BOT else (1, 1))
    bodies = {c.id: c.body for c in fake.comments_on(PR)}
    assert {c.id: c.body for c in foreign} == {c.id: bodies[c.id] for c in foreign}


def test_graphql_is_retried_like_every_request(fake: FakeGitHub, tmp_path: Path) -> None:
    fake.state.as_user = APP_BOT
    fake.inject(GRAPHQL, 502)
    context, settings = setup(fake, tmp_path)
    earlier = fake.add_comment(
        PR, compose_comment("GPU tests/gpu", {"T4": section("T4")}), user=APP_BOT
    )

    result, _ = publish(context, settings, section("L4", "failed"))

    assert result.warnings == []
    assert [e.status for e in fake.calls(GRAPHQL)] == [502, 200]
    assert result.comment_url == github_url(fake, earlier.id)
    assert fake.calls("issues/create-comment") == []


SLUG_USER = {"login": "gpu-ci-app", "id": 5005, "type": "User"}  # a user named as the app


@pytest.mark.parametrize("viewer", [None, "gpu-ci-app"], ids=["bot login", "bare name"])
@pytest.mark.parametrize("ours_exists", [True, False], ids=["ours exists", "none of ours"])
def test_a_user_named_like_the_app_is_never_taken_for_it(
    fake: FakeGitHub, tmp_path: Path, viewer: str | None, ours_exists: bool
) -> None:
    """Logins are compared whole: `gpu-ci-app` (a user: a maintainer, a passer-by) is not the
    app's bot `gpu-ci-app[bot]`, whatever GraphQL names the bot."""
    fake.state.as_user = APP_BOT
    fake.state.viewer_login = viewer  # None: `gpu-ci-app[bot]`
    context, settings = setup(fake, tmp_path)
    foreign = foreign_marker_comments(fake, SLUG_USER)
    body = compose_comment("GPU tests/gpu", {"T4": section("T4")})
    ours = fake.add_comment(PR, body, user=APP_BOT) if ours_exists else None

    result, _ = publish(context, settings, section("L4", "failed"))

    assert result.warnings == []
    bodies = {c.id: c.body for c in fake.comments_on(PR)}
    assert {c.id: c.body for c in foreign} == {c.id: bodies[c.id] for c in foreign}  # untouched
    assert fake.calls("issues/delete-comment") == []
    written = [c for c in fake.comments_on(PR) if c.user["login"] == APP_BOT["login"]]
    assert len(written) == 1 and result.comment_url == github_url(fake, written[0].id)
    if ours is not None:
        assert written[0].id == ours.id
        assert set(parse_comment(written[0].body)) == {"T4", "L4"}  # theirs not merged in
        assert fake.calls("issues/create-comment") == []
    else:
        assert set(parse_comment(written[0].body)) == {"L4"}
        edited = {int(e.path.rsplit("/", 1)[1]) for e in fake.calls("issues/update-comment")}
        assert edited <= {written[0].id}


def test_different_comment_keys_keep_different_comments(fake: FakeGitHub, tmp_path: Path) -> None:
    context, settings = setup(fake, tmp_path)
    other_context, other_settings = setup(fake, tmp_path, INPUT_COMMENT_KEY="nightly")

    publish(context, settings, section())
    publish(other_context, other_settings, section())

    assert [c.body.split("\n", 1)[0] for c in fake.comments_on(PR)] == [
        marker("GPU tests/gpu"),
        marker("nightly"),
    ]


def test_comment_new_writes_one_comment_per_run_attempt(fake: FakeGitHub, tmp_path: Path) -> None:
    context, settings = setup(fake, tmp_path, INPUT_COMMENT="new")
    publish(context, settings, section("L4"))
    publish(context, settings, section("A100"))  # a matrix job of the same run joins it
    rerun, rerun_settings = setup(fake, tmp_path, INPUT_COMMENT="new", GITHUB_RUN_ATTEMPT="2")
    publish(rerun, rerun_settings, section("L4"))

    comments = fake.comments_on(PR)
    assert len(comments) == 2
    assert set(parse_comment(comments[0].body)) == {"L4", "A100"}
    assert set(parse_comment(comments[1].body)) == {"L4"}


def test_comment_off_sends_nothing(fake: FakeGitHub, tmp_path: Path) -> None:
    context, settings = setup(fake, tmp_path, INPUT_COMMENT="off")
    result, _ = publish(context, settings, section())
    assert result == github.PublishResult(None, [])
    assert fake.exchanges == []


def test_the_job_body_keeps_renders_marker_out(fake: FakeGitHub, tmp_path: Path) -> None:
    context, settings = setup(fake, tmp_path)
    rendered = "<!-- modal-gpu-action:gpu-tests -->\n## GPU tests on L4\n\nAll passed."
    publish(context, settings, section(body=rendered))
    body = fake.comments_on(PR)[0].body
    assert body.count("<!-- modal-gpu-action:gpu-tests -->") == 0
    assert parse_comment(body)["L4"].body == "## GPU tests on L4\n\nAll passed."


# --- comment-on --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("comment_on", "runs", "writes"),
    [
        ("always", ["passed", "passed"], 2),
        ("failure", ["passed"], 0),  # nothing to say yet
        ("failure", ["failed", "passed"], 2),  # the fix updates the red comment
        ("change", ["passed"], 0),  # a first green run is not news
        ("change", ["failed", "failed"], 1),  # same result: left alone
        ("change", ["failed", "passed", "passed"], 2),
    ],
)
def test_comment_on(
    fake: FakeGitHub, tmp_path: Path, comment_on: str, runs: list[str], writes: int
) -> None:
    context, settings = setup(fake, tmp_path, INPUT_COMMENT_ON=comment_on)
    for conclusion in runs:
        result, _ = publish(context, settings, section(conclusion=conclusion))
        assert result.warnings == []
    made = fake.calls("issues/create-comment") + fake.calls("issues/update-comment")
    assert len(made) == writes
    assert len(fake.comments_on(PR)) == (1 if writes else 0)


def test_comment_on_change_adds_a_missing_section_to_an_existing_comment(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    context, settings = setup(fake, tmp_path, INPUT_COMMENT_ON="change")
    publish(context, settings, section("L4", "failed"))
    publish(context, settings, section("A100", "passed"))
    assert set(parse_comment(fake.comments_on(PR)[0].body)) == {"L4", "A100"}


def test_comment_new_with_change_compares_with_the_latest_earlier_run(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    def run(attempt: int, conclusion: str) -> None:
        context, settings = setup(
            fake,
            tmp_path,
            INPUT_COMMENT="new",
            INPUT_COMMENT_ON="change",
            GITHUB_RUN_ATTEMPT=str(attempt),
        )
        assert publish(context, settings, section(conclusion=conclusion))[0].warnings == []

    run(1, "passed")  # nothing earlier, green: no comment
    run(2, "failed")  # a new comment
    run(3, "failed")  # the same as run 2: none
    run(4, "passed")  # changed: a new comment
    conclusions = [parse_comment(c.body)["L4"].conclusion for c in fake.comments_on(PR)]
    assert conclusions == ["failed", "passed"]


# --- waiting only where another writer can be at work ----------------------------------------


def writes(fake: FakeGitHub) -> int:
    return len(fake.calls("issues/create-comment") + fake.calls("issues/update-comment"))


def test_a_lone_job_writes_once_and_re_reads_once_without_waiting(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    context, settings = setup(fake, tmp_path)
    clock = FakeClock()

    created, _ = publish(context, settings, section("L4", "failed"), clock.timing())
    clock.elapsed += 60  # the next run
    updated, _ = publish(context, settings, section("L4", "passed"), clock.timing())

    assert created.warnings == updated.warnings == []
    assert clock.sleeps == []
    assert [len(fake.calls(op)) for op in ("issues/create-comment", "issues/update-comment")] == [
        1,
        1,
    ]
    assert len(fake.calls("issues/list-comments")) == 4  # per run: the read, the one re-read
    [comment] = fake.comments_on(PR)
    assert parse_comment(comment.body)["L4"].conclusion == "passed"


def test_beside_other_jobs_sections_one_guard_wait_then_one_re_read(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    context, settings = setup(fake, tmp_path)
    fake.add_comment(PR, compose_comment("GPU tests/gpu", {"T4": section("T4")}), user=BOT)
    clock = FakeClock()

    result, _ = publish(context, settings, section("L4"), clock.timing(guard=0.3))

    assert result.warnings == []
    assert clock.sleeps == [0.3]
    assert writes(fake) == 1 and len(fake.calls("issues/list-comments")) == 2
    assert sorted(parse_comment(fake.comments_on(PR)[0].body)) == ["L4", "T4"]


def test_the_guard_wait_is_at_least_twice_the_slowest_request(
    github_api_make_server: Callable[..., FakeGitHub], tmp_path: Path
) -> None:
    fake = github_api_make_server(delay=(0.05, 0.05))
    fake.add_pull(PR, HEAD)
    context, settings = setup(fake, tmp_path)
    fake.add_comment(PR, compose_comment("GPU tests/gpu", {"T4": section("T4")}), user=BOT)
    slept: list[float] = []

    def wait(event: threading.Event, seconds: float) -> bool:
        slept.append(seconds)
        return False

    result, _ = publish(context, settings, section("L4"), replace(FAST, guard=0.01, wait=wait))

    assert result.warnings == []
    [guard] = slept
    assert 0.1 <= guard < 1.0


def other_job_meanwhile(
    fake: FakeGitHub, clock: FakeClock, change: Callable[[str], str]
) -> Callable[[threading.Event, float], bool]:
    """A wait during which another job rewrites the comment (`change` of its body), once."""

    def wait(event: threading.Event, seconds: float) -> bool:
        if not clock.sleeps:
            with fake.lock:
                [comment] = fake.state.comments
                comment.body = change(comment.body)
        return clock.wait(event, seconds)

    return wait


def test_a_section_that_changes_between_reads_means_waiting_for_a_second_confirmation(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    context, settings = setup(fake, tmp_path)
    fake.add_comment(PR, compose_comment("GPU tests/gpu", {"T4": section("T4")}), user=BOT)
    clock = FakeClock()

    def t4_fails(body: str) -> str:  # T4's job merged this job's section and wrote its own
        sections = parse_comment(body)
        sections["T4"] = section("T4", "failed", written_at=time.time())
        return compose_comment("GPU tests/gpu", sections)

    timing = replace(clock.timing(guard=0.3), wait=other_job_meanwhile(fake, clock, t4_fails))
    result, _ = publish(context, settings, section("L4"), timing)

    assert result.warnings == []
    assert clock.sleeps == [0.3, 1.75]  # the guard, then a settle wait (random 0.5 of 1-2.5 s)
    assert writes(fake) == 1 and len(fake.calls("issues/list-comments")) == 3
    sections = parse_comment(fake.comments_on(PR)[0].body)
    assert sections["T4"].conclusion == "failed" and sections["L4"].conclusion == "passed"


def test_a_write_that_brings_back_an_older_section_is_seen_and_repaired(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    context, settings = setup(fake, tmp_path)
    earlier = compose_comment(
        "GPU tests/gpu", {"T4": section("T4"), "L4": section("L4", "failed", written_at=1.0)}
    )
    fake.add_comment(PR, earlier, user=BOT)
    clock = FakeClock()

    def t4_from_an_old_read(body: str) -> str:  # T4's job read before this job wrote
        sections = parse_comment(earlier)
        sections["T4"] = section("T4", "failed", written_at=time.time())
        return compose_comment("GPU tests/gpu", sections)

    timing = replace(
        clock.timing(guard=0.3), wait=other_job_meanwhile(fake, clock, t4_from_an_old_read)
    )
    result, _ = publish(context, settings, section("L4", "passed"), timing)

    assert result.warnings == []
    assert clock.sleeps == [0.3, 1.75, 1.75]  # the guard; the rewrite, then two confirmations
    assert writes(fake) == 2 and len(fake.calls("issues/list-comments")) == 4
    sections = parse_comment(fake.comments_on(PR)[0].body)
    assert sections["T4"].conclusion == "failed" and sections["L4"].conclusion == "passed"


def test_a_lone_job_that_finds_a_second_comment_on_its_re_read_merges_and_waits(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    """Two jobs of a matrix's first run: each found no comment and created one."""
    context, settings = setup(fake, tmp_path)
    create = fake._op_issues_create_comment

    def create_and_another(*args: Any) -> tuple[int, Any, dict[str, str]]:
        answer = create(*args)
        if len(fake.state.comments) == 1:
            body = compose_comment("GPU tests/gpu", {"H100": section("H100")})
            fake.add_comment(PR, body, user=BOT)
        return answer

    fake._op_issues_create_comment = create_and_another  # type: ignore[method-assign]
    clock = FakeClock()

    result, _ = publish(context, settings, section("L4"), clock.timing())

    assert result.warnings == []
    assert clock.sleeps == [1.75, 1.75]  # none after the create; then the settle-and-confirm loop
    [comment] = fake.comments_on(PR)
    assert result.comment_url == github_url(fake, comment.id)
    assert sorted(parse_comment(comment.body)) == ["H100", "L4"]
    assert len(fake.calls("issues/delete-comment")) == 1


def test_a_comment_not_listed_yet_right_after_its_creation_is_looked_for_not_written_again(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    """GitHub's reads can lag behind its writes: the re-read right after the create misses it."""
    context, settings = setup(fake, tmp_path)
    listed = fake._op_issues_list_comments
    lagged: list[bool] = []

    def lagging(*args: Any) -> tuple[int, Any, dict[str, str]]:
        status, answer, headers = listed(*args)
        if fake.calls("issues/create-comment") and not lagged:  # the first read after it
            lagged.append(True)
            answer = []
        return status, answer, headers

    fake._op_issues_list_comments = lagging  # type: ignore[method-assign]
    clock = FakeClock()

    result, _ = publish(context, settings, section("L4"), clock.timing())

    assert result.warnings == []
    assert len(fake.calls("issues/create-comment")) == 1 and writes(fake) == 1
    assert clock.sleeps == [1.75, 1.75]  # a wait, the comment found: then confirmed twice
    [comment] = fake.comments_on(PR)
    assert result.comment_url == github_url(fake, comment.id)


# --- PyGithub is imported only to publish something -------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "published"),
    [
        ({"INPUT_COMMENT": "off", "INPUT_REMOVE_LABEL": ""}, False),
        ({"INPUT_COMMENT": "off"}, True),  # the label
        ({"INPUT_REMOVE_LABEL": ""}, True),  # the comment
    ],
    ids=["nothing to publish", "a label to remove", "a comment to write"],
)
def test_the_run_command_imports_pygithub_only_to_publish_something(
    fake: FakeGitHub, tmp_path: Path, inputs: dict[str, str], published: bool
) -> None:
    directory = tmp_path / "workspace"
    shutil.copytree(Path(__file__).parent / "fixtures" / "projects" / "passing", directory)
    for name in ("summary.md", "output.txt"):
        (tmp_path / name).touch()
    env = environment(
        fake,
        tmp_path,
        PATH="/usr/bin:/bin",
        GITHUB_WORKSPACE=str(directory),
        GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"),
        GITHUB_OUTPUT=str(tmp_path / "output.txt"),
        MODAL_GPU_ACTION_PYTHON=sys.executable,
        INPUT_BACKEND="local",
        INPUT_TEST_PATH="tests",
        **inputs,
    )

    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "modal_gpu_action"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    imported = set(re.findall(r"^import time:[^|]*\|[^|]*\| +(\S+)$", run.stderr, re.M))
    assert "modal_gpu_action.engine" in imported  # the check sees the command's imports
    assert ("github" in imported) is published
    assert ("modal_gpu_action.publish.github" in imported) is published
    assert bool(fake.exchanges) is published
    assert (fake.labels_on(PR) == ["other"]) is ("INPUT_REMOVE_LABEL" not in inputs)
    assert len(fake.comments_on(PR)) == (0 if inputs.get("INPUT_COMMENT") == "off" else 1)


# --- matrix jobs at once -----------------------------------------------------------------------


GPUS = ["A100-80GB", "H100", "L4", "T4"]


def matrix_rounds(
    fake: FakeGitHub,
    tmp_path: Path,
    timing: github.Timing,
    *,
    rounds: int,
    earlier_run: bool,
) -> list[dict[str, list[float]]]:
    """`rounds` times, the four jobs of a matrix publish at once (each on its own pull request);
    with `earlier_run`, into the comment an earlier run of all four left. Checks that every round
    ends with one comment holding each job's own section; the waits of each job, per round."""
    context, settings = setup(fake, tmp_path)
    first = 100 if earlier_run else 1
    for number in range(first, first + rounds):
        fake.add_pull(number, HEAD)
        if earlier_run:
            old = {gpu: section(gpu, "failed", tests=100, written_at=1.0) for gpu in GPUS}
            fake.add_comment(number, compose_comment("GPU tests/gpu", old), user=BOT)
    results: dict[tuple[int, str], github.PublishResult] = {}
    parts: dict[tuple[int, str], Section] = {}
    waits: dict[tuple[int, str], list[float]] = {}

    def job(number: int, gpu: str, barrier: threading.Barrier) -> None:
        part = section(gpu, random.choice(["passed", "failed"]), tests=random.randint(1, 99))
        parts[number, gpu] = part
        slept = waits.setdefault((number, gpu), [])

        def wait(event: threading.Event, seconds: float) -> bool:
            slept.append(seconds)
            return event.wait(seconds)

        barrier.wait()
        time.sleep(random.uniform(0, 0.01))
        results[number, gpu] = github.publish_comment(
            replace(settings, context=replace(context, pr_number=number)),
            section=part,
            timing=replace(timing, wait=wait),
            stream=io.StringIO(),
        )

    for number in range(first, first + rounds):
        barrier = threading.Barrier(len(GPUS))
        threads = [threading.Thread(target=job, args=(number, g, barrier)) for g in GPUS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

    for number in range(first, first + rounds):
        comments = fake.comments_on(number)
        assert len(comments) == 1, f"round {number}: {len(comments)} comments"
        sections = parse_comment(comments[0].body)
        assert sorted(sections) == GPUS, f"round {number}"
        url = f"{fake.host}/{fake.full_name}/pull/{number}#issuecomment-{comments[0].id}"
        for gpu in GPUS:
            assert results[number, gpu].warnings == []
            assert results[number, gpu].comment_url == url
            assert sections[gpu].same_result(parts[number, gpu]), f"round {number}, {gpu}"
            assert sections[gpu].body == parts[number, gpu].body
        table = comments[0].body.split("<!-- modal-gpu-action:section", 1)[0]
        assert all(f"| {escape_inline(gpu)} |" in table for gpu in GPUS)
    return [{gpu: waits[number, gpu] for gpu in GPUS} for number in range(first, first + rounds)]


def test_four_matrix_jobs_at_once_converge_to_one_comment_with_four_sections(
    github_api_make_server: Callable[..., FakeGitHub], tmp_path: Path
) -> None:
    """The first run of a matrix: no comment yet, each job creates one at the same time."""
    fake = github_api_make_server(delay=(0.0, 0.004), seed=5)
    timing = github.Timing(settle=(0.02, 0.05), guard=0.02, backoff_base=0.01)

    rounds = matrix_rounds(fake, tmp_path, timing, rounds=20, earlier_run=False)

    # The jobs collided (more than one comment, sections changing between reads): the waiting
    # loop ran, a job waited more than once, in most rounds.
    assert sum(any(len(w) > 1 for w in jobs.values()) for jobs in rounds) >= len(rounds) // 2


def test_a_rerun_of_four_matrix_jobs_editing_one_comment_at_once_keeps_every_section(
    github_api_make_server: Callable[..., FakeGitHub], tmp_path: Path
) -> None:
    """Every job edits the comment of the earlier run: a job that read it before another's write
    and writes after it puts that job's earlier section back, unless that job checks again."""
    fake = github_api_make_server(delay=(0.0, 0.004), seed=7)
    timing = github.Timing(settle=(0.02, 0.05), guard=0.02, backoff_base=0.01)

    rounds = matrix_rounds(fake, tmp_path, timing, rounds=20, earlier_run=True)

    assert all(w for jobs in rounds for w in jobs.values())  # beside others: the guard, at least
    assert sum(any(len(w) > 1 for w in jobs.values()) for jobs in rounds) >= len(rounds) // 2


def test_duplicates_left_by_a_race_are_merged_into_the_oldest(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    context, settings = setup(fake, tmp_path)
    first = fake.add_comment(PR, compose_comment("GPU tests/gpu", {"T4": section("T4")}), user=BOT)
    fake.add_comment(PR, compose_comment("GPU tests/gpu", {"H100": section("H100")}), user=BOT)

    result, _ = publish(context, settings, section("L4"))

    comments = fake.comments_on(PR)
    assert [c.id for c in comments] == [first.id]
    assert sorted(parse_comment(comments[0].body)) == ["H100", "L4", "T4"]
    assert result.warnings == []


def test_two_jobs_with_the_same_key_end_with_a_warning_not_a_fight(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    context, settings = setup(fake, tmp_path)
    newer = section("L4", "failed", written_at=time.time() + 60, writer="other")
    fake.add_comment(PR, compose_comment("GPU tests/gpu", {"L4": newer}), user=BOT)

    result, _ = publish(context, settings, section("L4"))

    assert "different matrix-key" in result.warnings[0]
    assert fake.calls("issues/update-comment") == []


def test_over_the_size_limit_other_sections_are_shortened_and_rows_kept(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    context, settings = setup(fake, tmp_path)
    big = {
        gpu: section(gpu, body="x" * 30_000, run_url="https://github.com/o/r/actions/runs/1")
        for gpu in ("A100", "H100")
    }
    fake.add_comment(PR, compose_comment("GPU tests/gpu", big, limit=10**6), user=BOT)

    result, _ = publish(context, settings, section("L4", body="y" * 20_000))

    body = fake.comments_on(PR)[0].body
    sections = parse_comment(body)
    assert len(body) <= 65_536
    assert sorted(sections) == ["A100", "H100", "L4"]
    assert sections["L4"].body == "y" * 20_000 and not sections["L4"].shortened
    assert sum(s.shortened for s in sections.values()) >= 1
    assert result.warnings == []


# --- the label ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["passed", "failed", "error", "cancelled"])
def test_the_label_is_removed_whatever_happened(
    fake: FakeGitHub, tmp_path: Path, ending: str
) -> None:
    context, settings = setup(fake, tmp_path)
    raised: BaseException | None = None
    try:
        with github.removing_label(settings, timing=FAST, stream=io.StringIO()):
            if ending in ("passed", "failed"):
                publish(context, settings, section(conclusion=ending))
            elif ending == "error":
                raise RuntimeError("the infrastructure failed")
            else:
                raise KeyboardInterrupt  # the runner cancelling the job
    except BaseException as error:
        raised = error
    assert fake.labels_on(PR) == ["other"]
    assert (raised is None) == (ending in ("passed", "failed"))


def test_a_label_already_gone_is_fine(fake: FakeGitHub, tmp_path: Path) -> None:
    _, settings = setup(fake, tmp_path, INPUT_REMOVE_LABEL="not-there")
    out = io.StringIO()
    assert github.remove_label(settings, timing=FAST, stream=out) == []
    assert [e.status for e in fake.calls("issues/remove-label")] == [404]
    assert "already gone" in out.getvalue()


def test_a_label_with_a_slash_and_spaces_is_removed(fake: FakeGitHub, tmp_path: Path) -> None:
    fake.add_pull(8, HEAD, labels=("needs GPU/tests",))
    _, settings = setup(fake, tmp_path, INPUT_PR_NUMBER="8", INPUT_REMOVE_LABEL="needs GPU/tests")
    assert github.remove_label(settings, timing=FAST, stream=io.StringIO()) == []
    assert fake.labels_on(8) == []


def test_no_remove_label_input_sends_nothing(fake: FakeGitHub, tmp_path: Path) -> None:
    _, settings = setup(fake, tmp_path, INPUT_REMOVE_LABEL="")
    assert github.remove_label(settings, timing=FAST) == []
    assert fake.exchanges == []


# --- faults ------------------------------------------------------------------------------------


def test_a_server_error_is_retried_then_succeeds(fake: FakeGitHub, tmp_path: Path) -> None:
    context, settings = setup(fake, tmp_path)
    fake.inject("issues/create-comment", 500)
    fake.inject("issues/remove-label", 502)
    clock = FakeClock()

    result, _ = publish(context, settings, section(), clock.timing())
    removed = github.remove_label(settings, timing=clock.timing(), stream=io.StringIO())

    assert result.warnings == [] and removed == []
    assert len(fake.comments_on(PR)) == 1
    assert [e.status for e in fake.calls("issues/create-comment")] == [500, 201]
    assert fake.labels_on(PR) == ["other"]


def test_a_secondary_rate_limit_waits_for_retry_after(fake: FakeGitHub, tmp_path: Path) -> None:
    context, settings = setup(fake, tmp_path)
    message = (
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
    )
    fake.inject(
        "issues/create-comment",
        403,
        headers={"retry-after": "30"},
        body={"message": message, "documentation_url": "https://docs.github.com/rest"},
    )
    fake.inject("issues/list-comments", 429, headers={"Retry-After": "5"})
    clock = FakeClock()

    result, _ = publish(context, settings, section(), clock.timing())

    assert result.warnings == [] and result.comment_url
    assert clock.sleeps[:2] == [5.0, 30.0]
    assert len(fake.comments_on(PR)) == 1


def test_a_primary_rate_limit_waits_until_its_reset(fake: FakeGitHub, tmp_path: Path) -> None:
    context, settings = setup(fake, tmp_path)
    clock = FakeClock()
    reset = 1_800_000_000 + 20
    fake.inject(
        "issues/list-comments",
        403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
        body={
            "message": "API rate limit exceeded for installation ID 1.",
            "documentation_url": "https://docs.github.com/rest",
        },
    )
    result, _ = publish(context, settings, section(), clock.timing())
    assert result.warnings == []
    assert clock.sleeps[0] == 20.0


def test_a_rate_limit_longer_than_the_budget_becomes_a_warning_without_waiting(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    context, settings = setup(fake, tmp_path)
    fake.inject("issues/list-comments", 429, headers={"retry-after": "600"})
    clock = FakeClock()

    result, log = publish(context, settings, section(), clock.timing())

    assert result.comment_url is None
    assert clock.sleeps == []
    assert "rate limited" in result.warnings[0]
    assert log.startswith("::warning title=PR comment::could not write the PR comment")


def test_server_errors_that_go_on_stop_within_the_time_budget(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    context, settings = setup(fake, tmp_path)
    fake.inject("issues/list-comments", 503, times=1000)
    clock = FakeClock()

    result, _ = publish(context, settings, section(), clock.timing(max_seconds=60))

    assert result.comment_url is None and len(result.warnings) == 1
    assert clock.elapsed <= 60
    assert len(clock.sleeps) >= 5  # it did retry, with growing waits
    assert clock.sleeps == sorted(clock.sleeps)


def test_a_read_only_token_gives_a_warning_and_the_result_still_returns(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    fake.state.read_only = True  # a pull request from a fork
    context, settings = setup(fake, tmp_path)

    result, log = publish(context, settings, section(conclusion="failed"))
    label_warnings = github.remove_label(settings, timing=FAST, stream=io.StringIO())

    assert result.comment_url is None
    assert "pull-requests: write" in result.warnings[0]
    assert "Resource not accessible by integration" in log
    assert log.startswith("::warning title=PR comment::")
    assert "pull-requests: write" in label_warnings[0]
    assert fake.labels_on(PR) == [LABEL, "other"]
    assert [e.status for e in fake.calls("issues/create-comment")] == [403]  # not retried


def test_an_unreachable_api_becomes_a_warning(tmp_path: Path, fake: FakeGitHub) -> None:
    context, settings = setup(fake, tmp_path, GITHUB_API_URL="http://127.0.0.1:9")
    clock = FakeClock()
    result, _ = publish(context, settings, section(), clock.timing(max_seconds=10))
    assert result.comment_url is None
    assert "cannot reach GitHub's API" in result.warnings[0]
    assert clock.elapsed <= 10


# --- time: one deadline for all publishing, and the run's cancel ------------------------------


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.01)


@pytest.mark.parametrize("stall", ["silent", "trickle"])
def test_an_api_that_never_answers_costs_the_deadline_and_no_more(
    fake: FakeGitHub, tmp_path: Path, stall: str
) -> None:
    context, settings = setup(fake, tmp_path)
    # A header line every 0.1 s: no read of the socket ever waits long enough to time out.
    fake.stall(stall, interval=0.1)
    timing = replace(FAST, request_seconds=0.6)
    deadline = github.Deadline(seconds=2.0)
    started = time.monotonic()

    result, log = publish(context, settings, section(), timing, deadline)
    label = github.remove_label(settings, timing=timing, stream=io.StringIO(), deadline=deadline)

    assert time.monotonic() - started < 2.0 + 1.0  # the deadline, and some scheduling
    assert result.comment_url is None
    assert "could not write the PR comment: GitHub's API did not answer within" in log
    assert "did not answer within" in label[0]
    # The first request (who the token is): its own limit, then a retry.
    assert len(fake.calls("users/get-authenticated")) >= 2
    assert fake.calls("issues/remove-label")  # the label's share of the deadline was left
    assert fake.labels_on(PR) == [LABEL, "other"]


def test_a_cancel_stops_the_comment_at_once_and_the_label_still_goes(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    context, settings = setup(fake, tmp_path)
    fake.stall("silent", "issues/list-comments")
    deadline = github.Deadline(threading.Event())  # 60 s
    published: list[tuple[github.PublishResult, str]] = []
    writer = threading.Thread(
        target=lambda: published.append(publish(context, settings, section(), FAST, deadline))
    )
    writer.start()
    wait_for(lambda: fake.calls("issues/list-comments"))

    deadline.cancel.set()
    cancelled_at = time.monotonic()
    writer.join(5)
    removed = github.remove_label(settings, timing=FAST, deadline=deadline)

    assert time.monotonic() - cancelled_at < 1.0
    [(result, _)] = published
    assert result.comment_url is None
    assert result.warnings == ["the run was cancelled: the PR comment was left as it was"]
    assert removed == [] and fake.labels_on(PR) == ["other"]
    assert fake.comments_on(PR) == []


def test_a_cancelled_run_skips_the_comment(fake: FakeGitHub, tmp_path: Path) -> None:
    context, settings = setup(fake, tmp_path)
    cancel = threading.Event()
    cancel.set()
    result, _ = publish(context, settings, section(), FAST, github.Deadline(cancel))
    assert result.warnings == ["the run was cancelled: the PR comment was skipped"]
    assert fake.exchanges == []


@pytest.mark.parametrize("when", ["before", "during"])
def test_after_a_cancel_the_label_gets_a_few_seconds_not_the_deadline(
    fake: FakeGitHub, tmp_path: Path, when: str
) -> None:
    _, settings = setup(fake, tmp_path)
    fake.stall("silent", "issues/remove-label")
    timing = replace(FAST, cancel_seconds=0.5)
    deadline = github.Deadline(threading.Event())  # 60 s, the request's own limit 15 s
    if when == "before":
        deadline.cancel.set()
    else:
        threading.Thread(
            target=lambda: (
                wait_for(lambda: fake.calls("issues/remove-label")),
                deadline.cancel.set(),
            ),
            daemon=True,
        ).start()
    started = time.monotonic()

    warnings = github.remove_label(settings, timing=timing, stream=io.StringIO(), deadline=deadline)

    assert time.monotonic() - started < 0.5 + 0.5
    assert "could not remove the label" in warnings[0] and "did not answer" in warnings[0]


def test_the_token_is_never_printed(fake: FakeGitHub, tmp_path: Path) -> None:
    context, settings = setup(fake, tmp_path)
    fake.inject(
        "issues/list-comments",
        404,
        body={
            "message": f"Not Found {fake.state.token}",
            "documentation_url": "https://docs.github.com/rest",
        },
    )
    result, log = publish(context, settings, section())
    assert fake.state.token not in log and fake.state.token not in " ".join(result.warnings)
    assert "***" in log


def test_no_token_is_a_warning(fake: FakeGitHub, tmp_path: Path) -> None:
    context, settings = setup(fake, tmp_path, INPUT_GITHUB_TOKEN="")
    result, _ = publish(context, settings, section())
    assert result.comment_url is None and "no github-token" in result.warnings[0]
    assert fake.exchanges == []


# --- events ------------------------------------------------------------------------------------


REPOSITORY = "octo-org/gpu-project"


def run_of(trigger: str | None, head: str | None = REPOSITORY, **extra: Any) -> dict[str, Any]:
    """A `workflow_run` payload: the run that triggered it was `trigger` in `head`."""
    run: dict[str, Any] = {"head_sha": HEAD, "pull_requests": [], **extra}
    if trigger is not None:
        run["event"] = trigger
    if head is not None:
        run["head_repository"] = {"full_name": head}
    return {"action": "completed", "workflow_run": run}


ON_PULL_REQUEST = {"issue": {"number": PR, "pull_request": {"url": "https://x"}}}
ON_ISSUE = {"issue": {"number": 3}}
PULL = {"action": "labeled", "number": PR, "pull_request": {"number": PR, "head": {"sha": HEAD}}}


@pytest.mark.parametrize(
    ("event", "payload", "inputs", "why"),
    [
        ("pull_request_target", PULL, {}, ""),
        ("workflow_run", run_of("pull_request", "fork-owner/gpu-project"), {}, "after a 'pull_"),
        ("workflow_run", run_of("pull_request", pull_requests=[{"number": PR}]), {}, "'pull_"),
        ("workflow_run", run_of("pull_request_target"), {}, "after a 'pull_request_target'"),
        ("workflow_run", run_of("workflow_run"), {}, "after a 'workflow_run' run"),
        ("workflow_run", run_of("push", "fork-owner/gpu-project"), {}, "a run of fork-owner/"),
        ("workflow_run", run_of(None, None), {}, "after an unknown run"),
        ("workflow_run", None, {}, "cannot be read"),
        ("issue_comment", ON_PULL_REQUEST, {}, f"a comment on pull request #{PR}"),
        ("issue_comment", ON_ISSUE, {"INPUT_PR_NUMBER": str(PR)}, "'pr-number' names"),
        ("issue_comment", None, {}, "cannot be read"),
        ("check_suite", {"check_suite": {"head_sha": HEAD, "pull_requests": []}}, {}, ""),
        ("check_run", {"check_run": {"head_sha": HEAD, "pull_requests": []}}, {}, ""),
    ],
)
def test_events_that_hold_secrets_while_they_may_run_a_pull_requests_code_are_refused(
    fake: FakeGitHub,
    tmp_path: Path,
    event: str,
    payload: dict[str, Any] | None,
    inputs: dict[str, str],
    why: str,
) -> None:
    path = tmp_path / "privileged.json"
    path.write_text("{not json" if payload is None else json.dumps(payload), encoding="utf-8")
    env = {"GITHUB_EVENT_NAME": event, "GITHUB_EVENT_PATH": str(path), **inputs}

    with pytest.raises(SettingsError) as refused:
        setup(fake, tmp_path, **env)

    message = str(refused.value)
    assert message.startswith(f"refusing to run on '{event}'") and why in message
    assert "secrets" in message and "on: pull_request" in message
    assert "input 'allow-pull-request-target: true'" in message and "\n" not in message
    pr_number = int(inputs["INPUT_PR_NUMBER"]) if "INPUT_PR_NUMBER" in inputs else None
    refusal = privileged_event(
        environment(fake, tmp_path, **env), allow_pull_request_target=False, pr_number=pr_number
    )
    assert refusal == message
    allowed = {**env, "INPUT_ALLOW_PULL_REQUEST_TARGET": "true"}
    if payload is not None:
        assert setup(fake, tmp_path, **allowed)[0].event_name == event


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("pull_request", PULL),
        ("pull_request_review", PULL),
        ("workflow_run", run_of("push")),
        ("workflow_run", run_of("schedule", REPOSITORY.upper())),
        ("workflow_run", run_of("workflow_dispatch")),
        ("issue_comment", ON_ISSUE),  # a plain issue: the repository's own code runs
        ("push", {}),
        ("workflow_dispatch", {}),
    ],
)
def test_events_that_run_the_repositorys_own_code_or_get_no_secrets_are_accepted(
    fake: FakeGitHub, tmp_path: Path, event: str, payload: dict[str, Any]
) -> None:
    path = tmp_path / "accepted.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    env = environment(fake, tmp_path, GITHUB_EVENT_NAME=event, GITHUB_EVENT_PATH=str(path))
    assert privileged_event(env, allow_pull_request_target=False, pr_number=None) is None
    context = load_settings({}, env, workspace=tmp_path).publishing.context  # not refused
    assert context is not None and context.event_name == event


def test_an_allowed_workflow_run_finds_its_pull_request(fake: FakeGitHub, tmp_path: Path) -> None:
    allow = {"INPUT_ALLOW_PULL_REQUEST_TARGET": "true", "GITHUB_EVENT_NAME": "workflow_run"}
    same_repo = tmp_path / "same.json"
    into = [  # GitHub lists the other repositories' pull requests of the commit too
        {"number": 99, "base": {"repo": {"url": "https://api.github.com/repos/up/stream"}}},
        {"number": PR, "base": {"repo": {"url": f"https://api.github.com/repos/{REPOSITORY}"}}},
    ]
    same_repo.write_text(json.dumps(run_of("pull_request", pull_requests=into)))
    fork = tmp_path / "fork.json"
    fork.write_text(json.dumps(run_of("pull_request", "fork-owner/gpu-project")))

    numbered, settings = setup(fake, tmp_path, GITHUB_EVENT_PATH=str(same_repo), **allow)
    looked_up, _ = setup(fake, tmp_path, GITHUB_EVENT_PATH=str(fork), **allow)

    assert (numbered.pr_number, numbered.sha, numbered.find_pull_from_commit) == (PR, HEAD, False)
    assert (looked_up.pr_number, looked_up.sha, looked_up.find_pull_from_commit) == (
        None,
        HEAD,
        True,
    )
    # A fork's pull request is not in the payload: found from the commit, like `push`.
    assert (
        github.remove_label(replace(settings, context=looked_up), timing=FAST, stream=io.StringIO())
        == []
    )
    assert fake.labels_on(PR) == ["other"]


def test_pull_request_target_runs_when_allowed(fake: FakeGitHub, tmp_path: Path) -> None:
    context, settings = setup(
        fake,
        tmp_path,
        GITHUB_EVENT_NAME="pull_request_target",
        INPUT_ALLOW_PULL_REQUEST_TARGET="true",
    )
    assert context.pr_number == PR and context.sha == HEAD
    result, _ = publish(context, settings, section())
    assert result.comment_url and len(fake.comments_on(PR)) == 1


def test_push_comments_on_the_pull_request_of_the_commit(fake: FakeGitHub, tmp_path: Path) -> None:
    fake.add_pull(9, "b" * 40, state="closed")
    fake.state.commit_pulls[HEAD].insert(0, 9)  # a closed one first: the open one is chosen
    env = {"GITHUB_EVENT_NAME": "push", "GITHUB_SHA": HEAD, "GITHUB_EVENT_PATH": ""}
    context, settings = setup(fake, tmp_path, **env)
    assert context.pr_number is None and context.find_pull_from_commit

    result, _ = publish(context, settings, section())
    removed = github.remove_label(settings, timing=FAST, stream=io.StringIO())

    assert result.warnings == [] and removed == []
    assert len(fake.comments_on(PR)) == 1 and fake.comments_on(9) == []
    assert fake.labels_on(PR) == ["other"]


def test_push_without_a_pull_request_writes_no_comment(fake: FakeGitHub, tmp_path: Path) -> None:
    context, settings = setup(
        fake, tmp_path, GITHUB_EVENT_NAME="push", GITHUB_SHA="c" * 40, GITHUB_EVENT_PATH=""
    )
    result, log = publish(context, settings, section())
    assert result == github.PublishResult(None, [])
    assert "No pull request" in log
    assert [e.operation_id for e in fake.exchanges] == [
        "repos/list-pull-requests-associated-with-commit"
    ]


def test_workflow_dispatch_uses_the_pr_number_input(fake: FakeGitHub, tmp_path: Path) -> None:
    dispatch = {"GITHUB_EVENT_NAME": "workflow_dispatch", "GITHUB_EVENT_PATH": ""}
    context, settings = setup(fake, tmp_path, INPUT_PR_NUMBER=str(PR), **dispatch)
    assert publish(context, settings, section())[0].comment_url
    without, without_settings = setup(fake, tmp_path, **dispatch)
    assert without.pr_number is None
    assert publish(without, without_settings, section())[0] == github.PublishResult(None, [])


def test_github_enterprise_server_with_a_path_prefix(
    github_api_make_server: Callable[..., FakeGitHub],
    github_api_ghes_validator: Any,
    tmp_path: Path,
) -> None:
    ghes = github_api_make_server(github_api_ghes_validator, prefix="/api/v3")
    ghes.add_pull(PR, HEAD, labels=(LABEL,))
    for index in range(120):  # pagination links must keep the prefix
        ghes.add_comment(PR, f"comment {index}")
    context, settings = setup(ghes, tmp_path)
    assert context.api_url.endswith("/api/v3")

    result, _ = publish(context, settings, section())
    second, _ = publish(context, settings, section(conclusion="failed"))
    removed = github.remove_label(settings, timing=FAST, stream=io.StringIO())

    assert result.warnings == second.warnings == removed == []
    assert len(ghes.comments_on(PR)) == 121
    assert ghes.labels_on(PR) == []


def test_read_context_defaults_and_payload(fake: FakeGitHub, tmp_path: Path) -> None:
    context, _ = setup(fake, tmp_path, GITHUB_API_URL="")
    assert context.api_url == "https://api.github.com"
    assert context.comment_key == "GPU tests/gpu"
    assert context.run_url == f"https://github.com/{fake.full_name}/actions/runs/4242"
    assert (context.event_name, context.pr_number, context.sha) == ("pull_request", PR, HEAD)
    keyed, _ = setup(fake, tmp_path, INPUT_COMMENT_KEY="my key", INPUT_PR_NUMBER="12")
    assert (keyed.comment_key, keyed.pr_number) == ("my key", 12)
    comment_event = tmp_path / "comment.json"
    comment_event.write_text(json.dumps({"issue": {"number": 5, "pull_request": {}}}))
    on_comment, _ = setup(
        fake,
        tmp_path,
        GITHUB_EVENT_NAME="issue_comment",
        GITHUB_EVENT_PATH=str(comment_event),
        INPUT_ALLOW_PULL_REQUEST_TARGET="true",
    )
    assert on_comment.pr_number == 5


def test_read_context_refuses_an_unusable_event(fake: FakeGitHub, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(SettingsError, match="GITHUB_EVENT_PATH"):
        setup(fake, tmp_path, GITHUB_EVENT_PATH=str(broken))
    empty = tmp_path / "empty.json"
    empty.write_text("{}", encoding="utf-8")
    with pytest.raises(SettingsError, match="names no pull request"):
        setup(fake, tmp_path, GITHUB_EVENT_PATH=str(empty))
    with pytest.raises(SettingsError, match="GITHUB_REPOSITORY"):
        setup(fake, tmp_path, GITHUB_REPOSITORY="")


def test_section_for_counts_like_the_outputs() -> None:
    counts = {
        CaseOutcome.PASSED: 5,
        CaseOutcome.FAILED: 1,
        CaseOutcome.ERROR: 1,
        CaseOutcome.SKIPPED: 1,
        CaseOutcome.XFAILED: 1,
        CaseOutcome.XPASSED: 1,
    }
    cases = tuple(
        TestCase("m", f"{outcome}{n}", outcome)
        for outcome, count in counts.items()
        for n in range(count)
    )
    report = TestReport(cases, wall_time=3.5)

    part = section_for("H100", Conclusion.FAILED, report, "<!-- modal-gpu-action:k -->\n## Body")
    assert (part.key, part.conclusion, part.passed, part.skipped, part.duration) == (
        "H100",
        Conclusion.FAILED,
        6,
        2,
        3.5,
    )
    assert (part.tests, part.failed, part.errors) == (10, 1, 1)
    assert part.body == "## Body"


# --- the fake API itself -----------------------------------------------------------------------


def test_the_fake_api_refuses_what_githubs_description_does_not_allow(
    github_api_validator: Any,
) -> None:
    import requests

    fake = FakeGitHub(github_api_validator)
    fake.add_pull(PR, HEAD)
    with fake.running(), requests.Session() as http:
        http.headers["Authorization"] = f"token {fake.state.token}"
        repo = f"{fake.api_url}/repos/{fake.full_name}"
        comments = f"{repo}/issues/{PR}/comments"
        assert http.put(comments, json={"body": "x"}).status_code == 404
        assert http.get(f"{repo}/pulls").status_code == 404
        assert http.post(comments, json={"bdy": "x"}).status_code == 422
        assert http.post(comments, json={"body": "x", "title": "y"}).status_code == 422
        assert http.get(comments, params={"per_page": "many"}).status_code == 422
        assert http.get(comments, params={"sort": "created"}).status_code == 422
        fake._comment_json = lambda c: {"id": c.id, "url": f"{repo}/issues/comments/{c.id}"}  # type: ignore[method-assign]
        assert http.post(comments, json={"body": "x"}).status_code == 201
    expected = [
        "PUT /repos/octo-org/gpu-project/issues/7/comments: unknown method",
        "GET /repos/octo-org/gpu-project/pulls: unknown path",
        "undeclared body property 'bdy'",
        "'body' is a required property",
        "undeclared body property 'title'",
        "query parameter 'per_page'='many' is not integer",
        "undeclared query parameter 'sort'",
        "issues/create-comment response 201: 'user' is a required property",
    ]
    problems = "\n".join(fake.violations)
    for what in expected:
        assert what in problems
    for violation in fake.violations:  # the rest: the 201's other missing properties
        assert any(what in violation for what in expected) or violation.startswith(
            "issues/create-comment response 201: "
        ), violation
