"""Secrets out of what the action publishes: redact_report on every text of a report, and the
real `run` command with a test that prints a value of the `env` input and asserts on it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modal_gpu_action.report.redaction import MIN_SECRET_CHARS, redact_report, redact_text
from modal_gpu_action.report.results import CaseOutcome, CaseResult, Problem, TestCase, TestReport
from modal_gpu_action.settings import load_settings

PROJECTS = Path(__file__).parent / "fixtures" / "projects"
KEY = "sk-live-0123456789abcdefghijKLMNOPQRSTUVWXYZ"


def case(**fields: str) -> TestCase:
    values = {"classname": "", "name": "t", "message": "", "detail": ""} | fields
    return TestCase(
        values.pop("classname"),
        values.pop("name"),
        CaseOutcome.FAILED,
        **values,  # type: ignore[arg-type]
    )


def test_every_text_of_every_case_is_redacted() -> None:
    report = TestReport(
        (
            TestCase(
                f"tests.{KEY}",
                f"test_x[{KEY}]",
                CaseOutcome.FAILED,
                1.5,
                f"assert {KEY!r} == 'x'",
                f"E   {KEY}\n----- Captured stdout call -----\nthe key is {KEY}",
                f"tests/{KEY}.py",
                7,
            ),
        ),
        wall_time=2.0,
        sources=(f"/tmp/{KEY}/junit.xml",),
    )
    [redacted] = redact_report(report, [KEY]).cases
    assert redacted == TestCase(
        "tests.***",
        "test_x[***]",
        CaseOutcome.FAILED,
        1.5,
        "assert '***' == 'x'",
        "E   ***\n----- Captured stdout call -----\nthe key is ***",
        "tests/***.py",
        7,
    )
    assert redact_report(report, [KEY]).sources == ("/tmp/***/junit.xml",)
    assert redact_report(report, [KEY]).wall_time == 2.0


def test_node_ids_further_failures_and_the_runs_problems_are_redacted_too() -> None:
    case = TestCase(
        "t",
        "test_x",
        CaseOutcome.FAILED,
        message="first",
        nodeid=f"t.py::test_x[{KEY}]",
        more=(CaseResult(CaseOutcome.FAILED, f"second {KEY}", f"E   {KEY}"),),
    )
    report = TestReport((case,), problems=(Problem(f"shard {KEY}", f"died: {KEY}", KEY),))
    redacted = redact_report(report, [KEY])
    [cleaned] = redacted.cases
    assert cleaned.nodeid == "t.py::test_x[***]"
    assert cleaned.more == (CaseResult(CaseOutcome.FAILED, "second ***", "E   ***"),)
    assert redacted.problems == (Problem("shard ***", "died: ***", "***"),)
    assert KEY not in repr(redacted)


def test_each_line_of_a_multi_line_value_is_redacted_too() -> None:
    pem = "-----BEGIN KEY-----\r\nQUJDREVGR0hJSktMTU5PUA==\r\nUVJTVFVWV1hZWg==\n-----END KEY-----"
    text = "only the middle line: QUJDREVGR0hJSktMTU5PUA== and the whole:\n" + pem
    assert redact_text(text, [pem]) == "only the middle line: *** and the whole:\n***"


def test_the_longest_value_wins_where_one_holds_another() -> None:
    assert redact_text("password123456 and password", ["password", "password123456"]) == (
        "*** and ***"
    )


def test_values_shorter_than_the_threshold_are_left_alone() -> None:
    assert MIN_SECRET_CHARS == 4
    short = ["0", "1", "on", "abc", "   ", "", " ab "]
    text = "0 1 on abc ab: 10 tests in 1.0 s"
    assert redact_text(text, short) == text
    assert redact_report(TestReport((case(message=text),)), short).cases[0].message == text
    assert redact_text("the value abcd", ["abcd"]) == "the value ***"


def test_a_value_is_found_as_pythons_repr_escapes_it() -> None:
    value = "it's a\\secret\tvalue"
    message = f"assert {value!r} == 'x'"  # pytest shows "it's a\\secret\tvalue"
    assert value not in message
    assert redact_text(message, [value]) == "assert \"***\" == 'x'"


def test_ends_of_a_value_that_pytest_cut_short_are_redacted() -> None:
    # pytest shortens long values in an assertion message's first line, keeping both ends.
    message = (
        f"AssertionError: assert 'sk-live-0123...NOPQRSTUVWXYZ' == 'x'\n"
        f"  {{'key': 'sk-l...WXYZ', 'n': 1}}\n  + {KEY}\n  'sk-live-01234567..."
    )
    assert redact_text(message, [KEY]) == (
        "AssertionError: assert '***...***' == 'x'\n  {'key': '***...***', 'n': 1}\n  + ***\n"
        "  '***..."
    )
    # Fewer than MIN_SECRET_CHARS shown, or not next to the dots: left alone.
    assert redact_text("'sk-...XYZ' sk-live then ...", [KEY]) == "'sk-...XYZ' sk-live then ..."


def test_a_report_without_secrets_is_returned_as_it_is() -> None:
    report = TestReport((case(message="nothing to hide"),))
    assert redact_report(report, []) is report
    assert redact_report(report, ["", "1"]) is report
    assert redact_report(report, [KEY]).cases[0] is report.cases[0]


def test_100000_cases_are_redacted_within_a_second_or_two() -> None:
    filler = "E   AssertionError: tensor mismatch at index 4711 (atol=1e-5)\n" * 60
    cases = tuple(
        TestCase(
            f"tests.gpu.test_module_{n % 100}",
            f"test_kernel[{n}]",
            CaseOutcome.FAILED if n % 10 == 0 else CaseOutcome.PASSED,
            message=f"assert {n} == {n + 1}" if n % 10 == 0 else "",
            # Distinct texts (none to remember from an earlier case): 38 MB of tracebacks.
            detail=f"{filler}{n}\n{KEY if n % 1000 == 0 else ''}" if n % 10 == 0 else "",
            file="tests/gpu/test_module.py",
        )
        for n in range(100_000)
    )
    secrets = [KEY, "ghp_" + "A1b2" * 9, "-----BEGIN KEY-----\nQUJD\n-----END KEY-----", "1"]
    started = time.perf_counter()
    redacted = redact_report(TestReport(cases), secrets)
    assert time.perf_counter() - started < 2
    assert sum("***" in case.detail for case in redacted.cases) == 100
    assert not any(KEY in case.detail for case in redacted.cases)


# --- the `env` input, whose values are what is redacted ------------------------------------------


def test_the_env_input_is_split_at_newlines_only(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    text = "A=one\u2028B=two\r\nC=x\x1cy\x85z\u2029w\rv\n\nD=4"
    settings = load_settings(
        {"env": text, "backend": "local", "test-path": "tests"}, {}, workspace=tmp_path
    )
    # U+2028, \x1c, \x85 and a lone \r are in values, not line ends: no line is injected.
    assert dict(settings.env) == {"A": "one\u2028B=two", "C": "x\x1cy\x85z\u2029w\rv", "D": "4"}


# --- end to end: the real `run` command --------------------------------------------------------


def test_a_secret_from_the_env_input_is_masked_in_summary_comment_and_junit(
    tmp_path: Path,
) -> None:
    directory = Path(shutil.copytree(PROJECTS / "hostile_output", tmp_path / "project"))
    outputs = {name: directory / name for name in ("summary.md", "comment.md", "out.xml")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    env["MODAL_GPU_ACTION_PYTHON"] = sys.executable
    command = [sys.executable, "-m", "modal_gpu_action", "run", "--backend", "local"]
    command += ["--working-directory", str(directory), "--env", f"API_KEY={KEY}\nLEVEL=1"]
    command += ["--summary-file", str(outputs["summary.md"])]
    command += ["--comment-file", str(outputs["comment.md"])]
    command += ["--junit-xml", str(outputs["out.xml"])]
    result = subprocess.run(
        command, cwd=directory, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stdout + result.stderr
    for name, path in outputs.items():
        text = path.read_text(encoding="utf-8")
        assert "***" in text.replace("\\*", "*"), name  # markdown escapes each `*` outside code
        # Neither the value nor the ends that pytest's shortened repr shows of it.
        for fragment in (KEY, "0123456789", "NOPQRSTUVWXYZ", "sk-l"):
            assert fragment not in text, (name, fragment)
    assert "login failed with API_KEY=***" in outputs["out.xml"].read_text(encoding="utf-8")


@pytest.mark.parametrize("value", ["0", "1", "on", "yes"])
def test_short_values_stay_readable(value: str) -> None:
    text = f"LEVEL={value}; 10 tests, 1 failed"
    assert redact_text(text, [value]) == text
