"""Secrets out of what the action publishes: each secret value in a TestReport becomes `***`.

A test can print a variable of the `env` input or put it in an assertion message; pytest writes
it into the JUnit report, and from there it would reach the job summary, the PR comment and the
merged JUnit file. `redact_report` replaces, in every text of the report (class names, names,
node ids, messages and tracebacks of every failure with their captured output, file paths,
source labels, the run's problems):
- each secret value, each line of a multi-line one, and each of these as Python's repr escapes
  it (`'`, `\\`, control characters), as pytest shows values in an assertion message;
- an end of one cut off by pytest's `...` (`'sk-live-01...WXYZ'`: pytest shortens long values
  in the first line of an assertion message), when at least MIN_SECRET_CHARS of it are shown;
- longest values first, so a value that holds another is replaced whole.
Values (and lines) shorter than MIN_SECRET_CHARS, once trimmed of surrounding spaces, are left
alone: `0`, `1` or `on` are everywhere in test output and are settings, not secrets. A value
that the test transformed before printing it (encoded, reversed, split) is not recognised.

One compiled alternation of every form, run once per distinct text, and only on a text that holds
the first or last MIN_SECRET_CHARS characters of one (a far quicker search): 100,000 cases with
50 MB of tracebacks take under a second.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from modal_gpu_action.report.results import Problem, TestCase, TestReport

MASK = "***"
MIN_SECRET_CHARS = 4
# pytest's saferepr shortens a value to 240 characters at most: longer ends are never shown cut.
_MAX_CUT_END = 240
_CUT = "..."
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def redact_report(report: TestReport, secrets: Iterable[str]) -> TestReport:
    """`report` with every secret value (see the module's docstring) replaced by `***`."""
    redact = _Redactor.compile(secrets)
    if redact is None:
        return report
    done: dict[str, str] = {}  # texts repeat (a shared message, the same class name)

    def clean(text: str) -> str:
        result = done.get(text)
        if result is None:
            result = done[text] = redact(text)
        return result

    cases: list[TestCase] = []
    for case in report.cases:
        fields = (
            case.classname,
            case.name,
            case.message,
            case.detail,
            case.file or "",
            case.nodeid,
        )
        # A case's name and node id are its own (a node id is even made when read): kept in
        # `done`, a large report's would all be held a second time.
        classname, name, message, detail, file, nodeid = fields
        cleaned = (
            clean(classname),
            redact(name),
            clean(message),
            clean(detail),
            clean(file),
            redact(nodeid),
        )
        more, reruns = (
            tuple(
                replace(result, message=clean(result.message), detail=clean(result.detail))
                for result in results
            )
            for results in (case.more, case.reruns)
        )
        if cleaned == fields and more == case.more and reruns == case.reruns:  # a cheap compare
            cases.append(case)
            continue
        classname, name, message, detail, file, nodeid = cleaned
        cases.append(
            replace(
                case,
                classname=classname,
                name=name,
                message=message,
                detail=detail,
                file=file if case.file is not None else None,
                nodeid=nodeid,
                more=more,
                reruns=reruns,
            )
        )
    problems = tuple(
        Problem(clean(problem.where), clean(problem.message), clean(problem.detail))
        for problem in report.problems
    )
    return replace(
        report,
        cases=tuple(cases),
        sources=tuple(map(clean, report.sources)),
        problems=problems,
    )


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by `***` (for text outside a report)."""
    redact = _Redactor.compile(secrets)
    return text if redact is None else redact(text)


@dataclass(frozen=True, slots=True)
class _Redactor:
    # Every match of `pattern` holds the first or the last MIN_SECRET_CHARS characters of a
    # form, so a text without any of those (nearly all) is passed over at the speed of a search
    # for a few short words; the full pattern, with its cut-off ends, is several times slower.
    clues: re.Pattern[str]
    pattern: re.Pattern[str]

    def __call__(self, text: str) -> str:
        if not text or self.clues.search(text) is None:
            return text
        return self.pattern.sub(_replacement, text)

    @classmethod
    def compile(cls, secrets: Iterable[str]) -> _Redactor | None:
        forms = sorted(_forms(secrets), key=lambda form: (-len(form), form))
        if not forms:
            return None
        clues = {form[:MIN_SECRET_CHARS] for form in forms} | {
            form[-MIN_SECRET_CHARS:] for form in forms
        }
        whole = "|".join(map(re.escape, forms))
        starts = "|".join(_any_start(form) for form in forms if len(form) > MIN_SECRET_CHARS)
        ends = "|".join(_any_end(form) for form in forms if len(form) > MIN_SECRET_CHARS)
        dots = re.escape(_CUT)
        # A start cut off by "...", then "..." and an end: the dots stay, so a reader sees a cut.
        pattern = f"{whole}|(?:{starts})(?={dots})|(?P<cut>{dots})(?:{ends})" if starts else whole
        return cls(
            re.compile("|".join(map(re.escape, sorted(clues)))), re.compile(f"(?:{pattern})")
        )


def _replacement(match: re.Match[str]) -> str:
    return _CUT + MASK if match.lastgroup == "cut" else MASK


def _forms(secrets: Iterable[str]) -> set[str]:
    """Each value, each of its lines, and their repr's inside, when long enough to be a secret."""
    forms: set[str] = set()
    for value in secrets:
        if not value:
            continue
        for piece in {value, *_LINE_BREAK.split(value)}:
            for form in (piece, repr(piece)[1:-1]):
                form = form.strip()
                if len(form) >= MIN_SECRET_CHARS:
                    forms.add(form)
    return forms


def _any_start(form: str) -> str:
    """`form`'s first MIN_SECRET_CHARS characters, then optionally more, up to all but one."""
    last = min(len(form) - 1, _MAX_CUT_END)
    head = re.escape(form[:MIN_SECRET_CHARS])
    rest = [re.escape(char) for char in form[MIN_SECRET_CHARS:last]]
    return head + "".join(f"(?:{char}" for char in rest) + ")?" * len(rest)


def _any_end(form: str) -> str:
    """`form`'s last MIN_SECRET_CHARS characters, optionally after more, up to all but one."""
    first = max(1, len(form) - _MAX_CUT_END)
    tail = re.escape(form[-MIN_SECRET_CHARS:])
    rest = [re.escape(char) for char in form[first : len(form) - MIN_SECRET_CHARS]]
    return "(?:" * len(rest) + "".join(f"{char})?" for char in rest) + tail
