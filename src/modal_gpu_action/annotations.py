"""`::error` workflow commands that annotate failed tests in the pull request's files.

GitHub shows at most 10 error annotations per step, so past `limit` the rest are counted in one
`::notice::`. Values are escaped as @actions/core does (`escapeData`, `escapeProperty`): a test's
message cannot end the command or start another one. File paths are as the JUnit report gives
them (pytest: relative to its rootdir), so annotations land when pytest ran at the repository root.
"""

from __future__ import annotations

from modal_gpu_action.results import Outcome, TestCase, TestReport

_MESSAGE_CHARS = 4_000  # an annotation is a pointer; the job summary has the full traceback


def annotation_commands(report: TestReport, *, limit: int = 10) -> list[str]:
    """One `::error file=..,line=..,title=..::message` line per failed or errored test with a
    file (the first `limit`), then a `::notice::` counting the others."""
    located = [case for case in report.failures if case.file]
    lines = [_error_command(case) for case in located[:limit]]
    if len(located) > limit:
        more = len(located) - limit
        lines.append(
            "::notice::"
            + _escape_data(
                f"{more:,} more failed test{'' if more == 1 else 's'} not annotated "
                f"(GitHub shows {limit} error annotations per step): see the job summary."
            )
        )
    return lines


def _error_command(case: TestCase) -> str:
    verb = "errored" if case.outcome is Outcome.ERROR else "failed"
    properties = [f"file={_escape_property(case.file or '')}"]
    if case.line is not None:
        properties.append(f"line={case.line}")
    title = f"{case.id or '(unnamed test)'} {verb}"
    properties.append(f"title={_escape_property(title)}")
    message = case.message or _last_line(case.detail) or f"The test {verb}."
    if len(message) > _MESSAGE_CHARS:
        message = message[: _MESSAGE_CHARS - 1] + "…"
    return f"::error {','.join(properties)}::{_escape_data(message)}"


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
