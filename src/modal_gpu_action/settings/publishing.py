"""Publishing in GitHub mode: the PR comment and the label, with the pull request's context read
from GitHub's event (settings/github_event.py).

The label's own inputs (`remove-label`, `github-token`, `pr-number`) and the event are read first
and on their own (`load_label_settings`): the label is to go whatever else is wrong, so removing
it may need nothing more. `PublishSettings` is the same plus the comment's inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from modal_gpu_action.github_actions.workflow import in_github_actions
from modal_gpu_action.settings.github_event import GitHubContext, privileged_event, read_context
from modal_gpu_action.settings.inputs import raw_inputs
from modal_gpu_action.settings.values import SettingsError, boolean, choice, integer

COMMENT_MODES = ("sticky", "new", "off")
COMMENT_ON = ("always", "failure", "change")


@dataclass(frozen=True, slots=True)
class LabelSettings:
    """`remove-label`, and what removing it takes: the token and the pull request."""

    remove_label: str = ""
    github_token: str = field(default="", repr=False)
    pr_number: int | None = None  # input 'pr-number'; the event's number is in `context`
    # GitHub mode, when the label or the comment is to be published: where to.
    context: GitHubContext | None = None


@dataclass(frozen=True, slots=True)
class PublishSettings(LabelSettings):
    comment: Literal["sticky", "new", "off"] = "sticky"
    comment_on: Literal["always", "failure", "change"] = "always"
    comment_key: str = ""
    matrix_key: str = ""
    allow_pull_request_target: bool = False
    compare_previous: bool = True  # compare with this job's section as the previous run left it
    keep_test_ids: bool = True  # keep the hidden test state in this job's section


def load_label_settings(
    flags: Mapping[str, str | None], environ: Mapping[str, str]
) -> LabelSettings | None:
    """In GitHub mode with a `remove-label`: the label's own inputs and the event's context,
    whatever the other inputs hold. None when there is no label to remove. A SettingsError when
    these cannot be read: then there is nothing to remove the label with."""
    raw = raw_inputs(flags, environ)
    if not (in_github_actions(environ) and raw["remove-label"].strip()):
        return None
    label = _label(raw, environ)
    return replace(label, context=read_context(environ, pr_number=label.pr_number))


def load_publish_settings(raw: Mapping[str, str], environ: Mapping[str, str]) -> PublishSettings:
    """Every publishing input, and in GitHub mode the event: refused when it holds the secrets
    while it may run a pull request's code (`privileged_event`), and read when the comment or
    the label needs it."""
    label = _label(raw, environ)
    settings = PublishSettings(
        remove_label=label.remove_label,
        github_token=label.github_token,
        pr_number=label.pr_number,
        comment=choice(raw, "comment", COMMENT_MODES),  # type: ignore[arg-type]
        comment_on=choice(raw, "comment-on", COMMENT_ON),  # type: ignore[arg-type]
        comment_key=raw["comment-key"].strip(),
        matrix_key=raw["matrix-key"].strip(),
        allow_pull_request_target=boolean(raw, "allow-pull-request-target"),
        compare_previous=boolean(raw, "compare-previous"),
        keep_test_ids=boolean(raw, "keep-test-ids"),
    )
    if not in_github_actions(environ):
        return settings
    refusal = privileged_event(
        environ,
        allow_pull_request_target=settings.allow_pull_request_target,
        pr_number=settings.pr_number,
    )
    if refusal:
        raise SettingsError(refusal)
    if settings.comment == "off" and not settings.remove_label:
        return settings
    context = read_context(environ, pr_number=settings.pr_number, comment_key=settings.comment_key)
    return replace(settings, context=context)


def _label(raw: Mapping[str, str], environ: Mapping[str, str]) -> LabelSettings:
    return LabelSettings(
        remove_label=raw["remove-label"].strip(),
        github_token=raw["github-token"].strip() or environ.get("GITHUB_TOKEN", ""),
        pr_number=integer(raw, "pr-number", 1, None) if raw["pr-number"].strip() else None,
    )
