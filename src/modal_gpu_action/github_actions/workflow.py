"""GitHub Actions workflow commands and files: outputs, step summary, masks, log groups.

Kept here so every module writes them the same way (and nothing else prints `::` commands).
The action's outputs themselves are listed in publish/outputs.py (`OUTPUTS`).

Text from the tests (their output, ids, messages, paths in the checkout) is the pull request's:
GitHub would obey a `::add-mask::`, `::error::` or `::stop-commands::` line in it. Such text is
printed only inside `commands_stopped()` (GitHub ignores every command there but the one that
ends the block, whose token the tests never see), or through `one_line()` as part of a line that
starts with our own text.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


def in_github_actions(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get("GITHUB_ACTIONS") == "true"


_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def one_line(text: str) -> str:
    """`text` as part of one log line: control characters and line breaks shown as escapes, so
    text from the checkout cannot start a line of its own (a workflow command)."""
    escaped = _LINE_BREAKING.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return escaped.replace("##[", "## [")  # the runner's older command syntax, anywhere in a line


@contextmanager
def commands_stopped(enabled: bool, stream: TextIO = sys.stdout) -> Iterator[None]:
    """While inside, GitHub processes no workflow command in the log (`::stop-commands::TOKEN`);
    the token is random per block, so the text inside cannot end the block itself."""
    if not enabled:
        yield
        return
    token = secrets.token_hex(16)
    print(f"::stop-commands::{token}", file=stream, flush=True)
    try:
        yield
    finally:
        stream.flush()
        print(f"::{token}::", file=stream, flush=True)


def escape_data(text: str) -> str:
    """Escape a workflow command's message (GitHub's toolkit `escapeData`)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def command(name: str, message: str = "", **properties: str) -> str:
    """One workflow command line, e.g. `::warning title=X::message`."""
    props = ",".join(
        f"{key}={escape_data(value).replace(':', '%3A').replace(',', '%2C')}"
        for key, value in properties.items()
    )
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def warn(message: str, stream: TextIO, github_mode: bool) -> None:
    """A warning of the action's: a workflow command in GitHub mode, a plain line elsewhere."""
    if github_mode:
        print(command("warning", message, title="modal-gpu-action"), file=stream, flush=True)
    else:
        print(f"warning: {one_line(message)}", file=stream, flush=True)


def mask(values: list[str], stream: TextIO = sys.stdout) -> None:
    """Ask the runner to hide each secret in the log; each line of a multi-line value too."""
    for value in values:
        for line in {value, *value.splitlines()}:
            if line.strip():
                print(command("add-mask", line), file=stream, flush=True)


@contextmanager
def group(title: str, enabled: bool, stream: TextIO = sys.stdout) -> Iterator[None]:
    """A folded `::group::` section in the job log (plain text outside GitHub)."""
    print(command("group", title) if enabled else f"== {title}", file=stream, flush=True)
    try:
        yield
    finally:
        if enabled:
            print("::endgroup::", file=stream, flush=True)


def write_outputs(path: Path, values: Mapping[str, str]) -> None:
    """Append outputs to `$GITHUB_OUTPUT`, using the heredoc form so no value can inject another."""
    with path.open("a", encoding="utf-8") as out:
        for name, value in values.items():
            delimiter = f"ghadelimiter_{uuid.uuid4()}"
            out.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


def append_summary(path: Path, markdown: str) -> None:
    """Append to `$GITHUB_STEP_SUMMARY` (several steps may share the file)."""
    with path.open("a", encoding="utf-8") as out:
        out.write(markdown if markdown.endswith("\n") else markdown + "\n")
