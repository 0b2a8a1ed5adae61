"""`::error` workflow commands that annotate failed tests in the pull request's files.

GitHub shows at most 10 error annotations per step, so past `limit` the rest are counted in one
`::notice::`. The title names the test by its node id (what `pytest` takes to run it again); the
message is the line that explains the failure (report/headline.py), as the summary has it. Values are escaped as @actions/core does (`escapeData`, `escapeProperty`): a test's
message cannot end the command or start another one; and, as in the markdown, characters that
mislead the eye (bidirectional overrides, zero-width characters) are shown as U+FFFD
(`markdown.neutralise`). File paths are as the JUnit report gives
them (pytest: relative to its rootdir); `path_prefix` (the working directory, relative to the
repository) makes them relative to the repository, where GitHub looks for them.
"""

from __future__ import annotations

import posixpath

from modal_gpu_action.github_actions.github_limits import ERROR_ANNOTATIONS
from modal_gpu_action.github_actions.workflow import command
from modal_gpu_action.render.escaping import neutralise
from modal_gpu_action.render.failures import explanation
from modal_gpu_action.report.results import CaseOutcome, TestCase, TestReport

_MESSAGE_CHARS = 4_000  # an annotation is a pointer; the job summary has the full traceback


def annotation_commands(
    report: TestReport, *, limit: int = ERROR_ANNOTATIONS, path_prefix: str = ""
) -> list[str]:
    """One `::error file=..,line=..,title=..::message` line per failed or errored test with a
    file (the first `limit`), then a `::notice::` counting the others."""
    located = [case for case in report.failures if case.file]
    lines = [_error_command(case, path_prefix) for case in located[:limit]]
    if len(located) > limit:
        more = len(located) - limit
        lines.append(
            command(
                "notice",
                f"{more:,} more failed test{'' if more == 1 else 's'} not annotated "
                f"(GitHub shows {limit} error annotations per step): see the job summary.",
            )
        )
    return lines


def _error_command(case: TestCase, path_prefix: str) -> str:
    verb = "errored" if case.outcome is CaseOutcome.ERROR else "failed"
    file = posixpath.normpath(posixpath.join(path_prefix, case.file or ""))
    properties = {"file": neutralise(file)}
    if case.line is not None:
        properties["line"] = str(case.line)
    properties["title"] = neutralise(f"{case.id or '(unnamed test)'} {verb}")
    message = explanation(case) or f"The test {verb}."
    if case.more:
        more = len(case.more)
        message += f" (and {more:,} more failure{'' if more == 1 else 's'} of this test)"
    if len(message) > _MESSAGE_CHARS:
        message = message[: _MESSAGE_CHARS - 1] + "…"
    return command("error", neutralise(message), **properties)
