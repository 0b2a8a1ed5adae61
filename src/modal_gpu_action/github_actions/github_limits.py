"""What GitHub allows and how it names things, written once: the size limits of a comment and a
step summary, the error annotations it shows, and the formats of a repository, a commit and a
workflow run's page (the one link built into the reports)."""

from __future__ import annotations

import re
from collections.abc import Mapping

COMMENT_CHARS = 65_536  # an issue or pull request comment's body
SUMMARY_BYTES = 1_048_576  # a step's summary, in UTF-8
ERROR_ANNOTATIONS = 10  # shown per step; the rest are dropped

REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")  # OWNER/NAME
SHA = re.compile(r"[0-9a-f]{7,64}")  # a commit, whole or abbreviated
_SERVER_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[A-Za-z0-9._~-]+)*")
_RUN_ID = re.compile(r"[0-9]+")
# A link target that cannot end the markdown link or the HTML comment it is written in.
_SAFE_LINK = re.compile(r"https?://[^\s<>()\[\]`\"'\\]+")


def run_url_from_env(environ: Mapping[str, str]) -> str | None:
    """The workflow run's page, when GitHub's variables are all set and well-formed."""
    server = environ.get("GITHUB_SERVER_URL", "").rstrip("/")
    repository = environ.get("GITHUB_REPOSITORY", "")
    run_id = environ.get("GITHUB_RUN_ID", "")
    if (
        _SERVER_URL.fullmatch(server)
        and REPOSITORY.fullmatch(repository)
        and _RUN_ID.fullmatch(run_id)
    ):
        return f"{server}/{repository}/actions/runs/{run_id}"
    return None


def safe_link(url: str) -> str:
    """`url` when it may stand as a link's target in markdown, else ""."""
    return url if _SAFE_LINK.fullmatch(url) else ""
