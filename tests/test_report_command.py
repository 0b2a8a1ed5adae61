"""`modal-gpu-action report JUNIT_XML...`, run as a real process outside GitHub Actions."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from modal_gpu_action.render.markdown import comment_marker
from modal_gpu_action.report.junit_reader import MAX_JUNIT_BYTES

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "junit-xml"
PASSING = CORPUS / "jest" / "jest-junit.xml"


def report(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("GITHUB_", "INPUT_", "RUNNER_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "modal_gpu_action", "report", *map(str, args)],
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_passing_report_exits_0_and_writes_summary_and_comment(tmp_path: Path) -> None:
    summary, comment = tmp_path / "summary.md", tmp_path / "comment.md"
    done = report(
        PASSING,
        "--summary-file",
        summary,
        "--comment-file",
        comment,
        "--comment-key",
        "gpu tests/L4",
        env={
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_REPOSITORY": "octo/gpu-project",
            "GITHUB_RUN_ID": "99",
        },
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == done.stderr == ""
    assert summary.read_text(encoding="utf-8").split("\n", 1)[0].endswith(": passed")
    text = comment.read_text(encoding="utf-8")
    assert text.startswith(comment_marker("gpu tests/L4") + "\n")
    assert "(https://github.com/octo/gpu-project/actions/runs/99)" in text


def test_failures_exit_1_and_the_summary_goes_to_stdout(
    junit_from_pytest: Callable[[str, str], Path],
) -> None:
    done = report(junit_from_pytest("mixed", "xunit2"))
    assert done.returncode == 1, done.stderr
    assert done.stdout.split("\n", 1)[0].endswith(": failed")
    assert "### Failures and errors (14)" in done.stdout


def test_shards_are_merged_and_a_collection_error_fails_the_run(
    junit_from_pytest: Callable[[str, str], Path], tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    done = report(
        PASSING, junit_from_pytest("collection_error", "xunit2"), "--summary-file", summary
    )
    assert done.returncode == 1, done.stderr
    totals = summary.read_text(encoding="utf-8").split("\n")[4]
    assert totals.startswith("| 3 | 2 | 0 | 1 | 0 |")  # tests, passed, failed, errors, skipped


def test_a_truncated_report_fails_and_says_it_was_cut_short(tmp_path: Path) -> None:
    cut = tmp_path / "junit.xml"
    data = PASSING.read_bytes()
    cut.write_bytes(data[: data.rindex(b"</testcase>") + len(b"</testcase>")])
    done = report(cut)
    assert done.returncode == 1, done.stderr
    assert "The JUnit report was cut short after 2 complete test cases" in done.stdout


def test_a_missing_file_exits_2_with_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "shard-1.xml"
    done = report(PASSING, missing)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"error: {missing}: no such file"]


def test_an_unreadable_or_refused_file_exits_2_naming_it(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.xml"
    bomb.write_text(
        '<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        '<testsuite><testcase name="&b;"/></testsuite>',
        encoding="utf-8",
    )
    for path, reason in ((tmp_path, "is a directory"), (bomb, "refused")):
        done = report(path)
        assert done.returncode == 2
        [line] = done.stderr.splitlines()
        assert line.startswith(f"error: {path}: {reason}")


def test_a_file_that_is_no_junit_report_at_all_exits_2_naming_it(tmp_path: Path) -> None:
    # As a missing or refused file: the report command reads files the user names. (In a run,
    # the same files are one error case of a report that is still written: test_results.py.)
    page, encoded, pipe = tmp_path / "page.xml", tmp_path / "encoded.xml", tmp_path / "pipe.xml"
    page.write_text("<html><body><p>Nothing to see</p></body></html>", encoding="utf-8")
    encoded.write_text('<?xml version="1.0" encoding="bogus"?><testsuite/>', encoding="utf-8")
    os.mkfifo(pipe)  # nobody writes to it: reading it must not wait
    for path, reason in (
        (page, "not a JUnit XML report: its root is <html>"),
        (encoded, "cannot be decoded: unknown encoding: bogus"),
        (pipe, "is not a regular file"),
    ):
        done = report(path)
        assert done.returncode == 2
        [line] = done.stderr.splitlines()
        assert line.startswith(f"error: {path}: {reason}")


def test_a_report_past_the_size_cap_fails_and_says_so(tmp_path: Path) -> None:
    padded = tmp_path / "junit.xml"
    data = PASSING.read_bytes()
    cap = MAX_JUNIT_BYTES
    # A whole report, then NUL bytes up to past the cap (a sparse file: no 256 MiB on disk).
    padded.write_bytes(data)
    with padded.open("r+b") as handle:
        handle.truncate(cap + 1000)
    done = report(padded)
    assert done.returncode == 1, done.stderr
    assert f"The JUnit report is {cap + 1000:,} bytes, more than the {cap:,} bytes" in done.stdout


def test_a_report_without_tests_exits_as_run_does_and_says_why(tmp_path: Path) -> None:
    empty = CORPUS / "no-cases.xml"
    summary = tmp_path / "summary.md"
    done = report(empty, "--summary-file", summary)
    assert done.returncode == 1, done.stderr  # fail-on-empty, as `run` has it by default
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("## ⚠️ Test results: no tests\n")
    assert "fails this command because \\-\\-fail\\-on\\-empty is true" in text
    assert report(empty, "--fail-on-empty", "false", "--summary-file", summary).returncode == 0


def test_problems_of_a_run_written_by_the_action_read_back_apart_from_the_tests(
    tmp_path: Path,
) -> None:
    from modal_gpu_action.report.junit_reader import parse_junit
    from modal_gpu_action.report.junit_writer import to_junit_xml

    crashed = parse_junit(PASSING).with_problem("shard 2/2", "pytest was killed by signal 9")
    merged = tmp_path / "merged.xml"
    merged.write_text(to_junit_xml(crashed), encoding="utf-8")
    summary = tmp_path / "summary.md"
    done = report(merged, "--summary-file", summary)
    assert done.returncode == 1, done.stderr  # a problem fails the run
    text = summary.read_text(encoding="utf-8")
    assert "### Problems with the run (1)" in text
    assert "**shard 2/2**: pytest was killed by signal 9" in text
    tests = parse_junit(PASSING).totals.tests
    assert f"| {tests} |" in text.split("\n")[4]  # the problem is no test


def test_a_report_larger_than_a_read_reads_whole_and_merges_with_its_own_merged_file(
    tmp_path: Path,
) -> None:
    # 30,000 cases: several of the reader's 1 MiB reads; the merged JUnit the writer streams out
    # (a 7 MB file) reads back the same.
    from modal_gpu_action.report.junit_reader import parse_junit
    from modal_gpu_action.report.junit_writer import write_junit_xml

    cases = "".join(
        f'<testcase classname="tests.test_big" name="test_{n}" file="tests/test_big.py" '
        f'line="{n % 300}" time="0.001">'
        + (f'<failure message="boom {n}">tests/test_big.py:{n % 300 + 1}: boom</failure>'
           if n % 1000 == 7 else "")
        + "</testcase>"
        for n in range(30_000)
    )  # fmt: skip
    big = tmp_path / "big.xml"
    big.write_text(
        f'<testsuites name="pytest tests"><testsuite name="pytest">{cases}</testsuite></testsuites>',
        encoding="utf-8",
    )
    assert big.stat().st_size > 3 * 1024 * 1024
    parsed = parse_junit(big)
    merged = tmp_path / "merged.xml"
    with merged.open("wb") as out:
        write_junit_xml(parsed, out)
    assert parse_junit(merged).cases == parsed.cases
    done = report(big, merged)
    assert done.returncode == 1, done.stderr
    assert "### Failures and errors (60)" in done.stdout  # 30 failures, in each file
    assert "\n| 60,000 | 59,940 | 60 | 0 | 0 |" in done.stdout
