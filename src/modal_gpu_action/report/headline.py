"""The one line that explains a failure, for the reader who has a glance to spare: the summary,
the comment, the annotations and the console put it first, the traceback after.

pytest's own message is that line for most failures (`AssertionError: arithmetic is off`). Where
it is not, the cause is taken from the traceback, from pytest's `E ` lines at its end:
- a module that failed at collection: pytest's message is "collection failure"; the cause is
  `ModuleNotFoundError: No module named 'x'`, `SyntaxError: ...`;
- an error in a fixture: `failed on setup with "RuntimeError: boom"` becomes `RuntimeError: boom`
  (the phase is `phase()`), and pytest's `file /path/x.py, line 5` for a missing fixture becomes
  `fixture 'gpu' not found`;
- anything else without a message: the traceback's last exception line, else its last line.
A crash, a timeout or a cancel already says what happened in its message ("test did not finish:
pytest was killed by signal 11 (SIGSEGV) ..."), which is kept.
"""

from __future__ import annotations

import re

from modal_gpu_action.report.results import CaseOutcome, CaseResult, TestCase

# pytest's error lines at the end of a traceback: `E   ModuleNotFoundError: No module named 'x'`
_E_LINE = re.compile(r"^E(?: +(.*))?$")
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Warning|Failed|Failure)"
    r"(?::|$)"
)
# pytest's message for an error outside the test itself; pytest 9 leaves the closing quote off
# a message it shortened ("[+4 more lines; full report in element text]").
_PHASE_MESSAGE = re.compile(r'^failed on (setup|teardown) with "(.*?)"?$', re.S)
_FIXTURE_LOOKUP = re.compile(r"^file .*, line \d+$")
MAX_CHARS = 1_000


def headline(case: TestCase) -> str:
    """The line that explains the case's (first) failure or error; "" for a case that has none."""
    if case.outcome not in (CaseOutcome.FAILED, CaseOutcome.ERROR):
        return _one_line(case.message)
    return result_headline(CaseResult(case.outcome, case.message, case.detail), case.collection)


def result_headline(result: CaseResult, collection: bool = False) -> str:
    """The line that explains one failure or error of a case (see the module's docstring)."""
    message = result.message.strip()
    if collection:
        return _clip(cause(result.detail) or message)
    phase = _PHASE_MESSAGE.match(message)
    if phase:
        inner = phase.group(2).strip()
        if not inner or _FIXTURE_LOOKUP.match(inner.splitlines()[0]):
            inner = cause(result.detail) or inner
        return _clip(inner)
    return _clip(message or cause(result.detail) or _last_line(result.detail))


def phase(case: TestCase) -> str:
    """Where the case failed, when it was not the test itself: "collection", "setup",
    "teardown"; "" otherwise."""
    if case.collection and case.outcome is CaseOutcome.ERROR:
        return "collection"
    match = _PHASE_MESSAGE.match(case.message.strip())
    return match.group(1) if match and case.outcome is CaseOutcome.ERROR else ""


def cause(detail: str) -> str:
    """The exception line of the last block of pytest's `E ` lines in a traceback, else that
    block's first line; "" when there is none."""
    block: list[str] = []
    current: list[str] = []
    for line in detail.splitlines():
        match = _E_LINE.match(line)
        if match:
            current.append((match.group(1) or "").strip())
        elif current:
            block, current = current, []
    block = current or block
    block = [line for line in block if line]
    if not block:
        return ""
    exceptions = [line for line in block if _EXCEPTION_LINE.match(line)]
    return exceptions[-1] if exceptions else block[0]


def first_line(text: str) -> str:
    """The first non-blank line of `text` (for the console)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _one_line(text: str) -> str:
    return _clip(" ".join(text.split()))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"
