"""What changed since an earlier run: two consecutive runs in GitHub mode against the fake API
(the second comment compares with the state the first hid in its section), a `compare-to` file,
`report --compare-to`, and the hidden state's bound and its reading as hostile text."""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from test_run_github_mode import PR, action, environment, workspace

from modal_gpu_action.github_actions.github_limits import COMMENT_CHARS
from modal_gpu_action.render.changes import comment_block, summary_section
from modal_gpu_action.render.comment_sections import (
    Section,
    compose_comment,
    parse_comment,
)
from modal_gpu_action.report.comparison import compare
from modal_gpu_action.report.conclusion import Conclusion
from modal_gpu_action.report.results import CaseOutcome, TestCase, TestReport
from modal_gpu_action.report.test_state import (
    MAX_STATE_CHARS,
    STATE_CHARS,
    decode,
    encode,
    state_of,
)

CASE = "tests/test_changing.py::test_case"
HEADLINE = "GPU tests on this machine: failed"
REPORT = [sys.executable, "-m", "modal_gpu_action", "report"]
RUN = [sys.executable, "-m", "modal_gpu_action", "run", "--backend", "local"]


@pytest.fixture
def fake(github_api_server: Any) -> Any:
    github_api_server.add_pull(PR, "a" * 40)
    return github_api_server


def last_outputs(path: Path) -> dict[str, str]:
    """$GITHUB_OUTPUT's values, the last written of each name."""
    values: dict[str, str] = {}
    for match in re.finditer(r"^([\w-]+)<<(\S+)\n(.*?)\n\2$", path.read_text(), re.M | re.S):
        values[match.group(1)] = match.group(3)
    return values


def run_changing(
    fake: Any, tmp_path: Path, directory: Path, *, names: str, failing: str, **inputs: str
) -> subprocess.CompletedProcess[str]:
    env = environment(
        fake,
        tmp_path,
        directory,
        env=f"TEST_NAMES=list:{names}\nFAILING_TESTS=list:{failing}",
        remove_label="",
        **inputs,
    )
    return action(env, directory)


def test_the_second_run_shows_each_count_change_new_failures_fixed_added_and_removed(
    fake: Any, tmp_path: Path
) -> None:
    directory = workspace(tmp_path, "changing")
    first = run_changing(fake, tmp_path, directory, names="alpha,beta,gamma,omega", failing="alpha")
    assert first.returncode == 1, first.stdout + first.stderr
    [comment] = fake.comments_on(PR)
    assert "Changes since the previous run" not in comment.body  # nothing to compare with yet
    assert last_outputs(tmp_path / "output.txt")["new-failures"] == ""

    second = run_changing(
        fake, tmp_path, directory, names="alpha,beta,gamma,delta", failing="beta,gamma"
    )

    assert second.returncode == 1, second.stdout + second.stderr
    [comment] = fake.comments_on(PR)
    body = comment.body
    assert "**Changes since the previous run**: 4 tests (±0), 2 passed (-1), 2 failed (+1)" in body
    assert f"- New failures (2): `{CASE}[beta]`, `{CASE}[gamma]`" in body
    assert f"- Fixed (1): `{CASE}[alpha]`" in body
    assert f"- Tests added (1): `{CASE}[delta]`" in body
    assert f"- Tests removed (1): `{CASE}[omega]`" in body
    first_summary, second_summary = (tmp_path / "summary.md").read_text().split(HEADLINE)[1:]
    assert "Changes since the previous run" not in first_summary
    assert "### Changes since the previous run" in second_summary
    assert "| 4 (±0) | 2 (-1) | 2 (+1) | 0 (±0) | 0 (±0) |" in second_summary
    assert f"<details><summary>Fixed (1)</summary>\n\n- `{CASE}[alpha]`" in second_summary
    outputs = last_outputs(tmp_path / "output.txt")
    assert outputs["new-failures"] == "2"
    assert outputs["fixed"] == "1"
    assert outputs["tests-added"] == "1"
    assert outputs["tests-removed"] == "1"
    # The state for the next run is hidden in the section, and reads back as this run.
    [section] = parse_comment(body).values()
    state = decode(section.state)
    assert state is not None
    assert state.failed_ids == {f"{CASE}[beta]", f"{CASE}[gamma]"}
    assert state.all_ids is not None and len(state.all_ids) == 4


def test_with_a_comment_per_run_the_previous_run_is_the_newest_earlier_comment(
    fake: Any, tmp_path: Path
) -> None:
    directory = workspace(tmp_path, "changing")
    for run_id, failing in (("98", "alpha"), ("99", "alpha,beta")):
        env = environment(
            fake,
            tmp_path,
            directory,
            env=f"TEST_NAMES=list:alpha,beta\nFAILING_TESTS=list:{failing}",
            remove_label="",
            comment="new",
        )
        env["GITHUB_RUN_ID"] = run_id
        action(env, directory)
    # A re-run of the second run's job updates its own comment and still compares with run 98.
    action(env, directory)
    first, second = fake.comments_on(PR)
    assert "Changes since the previous run" not in first.body
    assert f"- New failures (1): `{CASE}[beta]`" in second.body
    assert last_outputs(tmp_path / "output.txt")["new-failures"] == "1"


def test_compare_previous_false_reads_nothing_and_keep_test_ids_false_hides_no_ids(
    fake: Any, tmp_path: Path
) -> None:
    directory = workspace(tmp_path, "changing")
    run_changing(fake, tmp_path, directory, names="alpha,beta", failing="alpha")
    start = len(fake.exchanges)
    run_changing(
        fake,
        tmp_path,
        directory,
        names="alpha,beta",
        failing="beta",
        compare_previous="false",
        keep_test_ids="false",
    )
    [comment] = fake.comments_on(PR)
    assert "Changes since the previous run" not in comment.body
    [section] = parse_comment(comment.body).values()
    assert section.state == ""
    assert last_outputs(tmp_path / "output.txt")["fixed"] == ""
    # No read of the previous run: the comment's own read is the only one before it is written.
    second = [exchange.operation_id for exchange in fake.exchanges[start:]]
    assert second[: second.index("issues/update-comment")].count("issues/list-comments") == 1


def test_a_previous_section_without_ids_still_gives_the_count_changes(
    fake: Any, tmp_path: Path
) -> None:
    directory = workspace(tmp_path, "changing")
    run_changing(
        fake, tmp_path, directory, names="alpha,beta", failing="alpha", keep_test_ids="false"
    )
    run_changing(fake, tmp_path, directory, names="alpha,beta,gamma", failing="")
    [comment] = fake.comments_on(PR)
    assert "3 tests (+1), 3 passed (+2), 0 failed (-1)" in comment.body
    assert "Fixed" not in comment.body  # which test it was is not known
    assert "it is not known which tests were added or removed" in comment.body
    outputs = last_outputs(tmp_path / "output.txt")
    assert outputs["fixed"] == "0"
    assert outputs["tests-added"] == ""


def test_compare_to_marks_each_failure_new_or_also_failing_there(tmp_path: Path) -> None:
    directory = workspace(tmp_path, "changing")
    base = [*RUN, "--test-path", "tests"]
    env = {"PATH": "/usr/bin:/bin", "MODAL_GPU_ACTION_PYTHON": sys.executable}
    first = subprocess.run(
        [*base, "--junit-xml", "base.xml", "--env", "FAILING_TESTS=list:alpha,beta"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 1, first.stdout + first.stderr
    second = subprocess.run(
        [
            *base,
            "--compare-to",
            "base.xml",
            "--env",
            "FAILING_TESTS=list:beta,gamma",
            "--summary-file",
            "summary.md",
            "--comment-file",
            "comment.md",
        ],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 1, second.stdout + second.stderr
    comment = (directory / "comment.md").read_text()
    assert "**Compared with `base.xml`**: 3 tests (±0), 1 passed (±0), 2 failed (±0)" in comment
    assert f"- New failures (1): `{CASE}[gamma]`" in comment
    assert f"- Also failing there (1): `{CASE}[beta]`" in comment
    assert f"- Fixed (1): `{CASE}[alpha]`" in comment
    summary = (directory / "summary.md").read_text()
    assert "### Compared with `base.xml`" in summary
    assert "<details><summary>Also failing there (1)</summary>" in summary


def test_compare_to_a_file_that_is_not_junit_is_a_bad_input_before_anything_runs(
    tmp_path: Path,
) -> None:
    directory = workspace(tmp_path, "changing")
    (directory / "notes.txt").write_text("not xml")
    result = subprocess.run(
        [*RUN, "--compare-to", "notes.txt", "--junit-xml", "out.xml"],
        cwd=directory,
        env={"PATH": "/usr/bin:/bin", "MODAL_GPU_ACTION_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "for input 'compare-to'" in result.stderr
    assert "expected a JUnit XML report" in result.stderr
    assert not (directory / "out.xml").exists()  # nothing ran


def test_report_command_compares_to_a_file(tmp_path: Path) -> None:
    before = tmp_path / "before.xml"
    after = tmp_path / "after.xml"
    before.write_text(_junit({"a": "failed", "b": "passed", "gone": "passed"}))
    after.write_text(_junit({"a": "passed", "b": "failed", "new": "passed"}))
    result = subprocess.run(
        [
            *REPORT,
            str(after),
            "--compare-to",
            str(before),
            "--comment-file",
            str(tmp_path / "c.md"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "### Compared with `before.xml`" in result.stdout
    comment = (tmp_path / "c.md").read_text()
    assert "- New failures (1): `t.b`" in comment
    assert "- Fixed (1): `t.a`" in comment
    assert "- Tests added (1): `t.new`" in comment
    assert "- Tests removed (1): `t.gone`" in comment


def _junit(outcomes: dict[str, str]) -> str:
    cases = "".join(
        f'<testcase classname="t" name="{name}" time="0.1">'
        + ("<failure message='boom'>boom</failure>" if outcome == "failed" else "")
        + "</testcase>"
        for name, outcome in outcomes.items()
    )
    return f'<testsuite name="s" tests="{len(outcomes)}">{cases}</testsuite>'


# --- the hidden state: bounded, and read as hostile text ---------------------------------------


def report_of(count: int, failing: int) -> TestReport:
    step = max(count // max(failing, 1), 1)
    return TestReport(
        cases=tuple(
            TestCase(
                classname="",
                name="",
                nodeid=f"tests/gpu/test_mod_{index // 40:04d}.py::test_kernel_{index:06d}[fp16]",
                outcome=CaseOutcome.FAILED if index % step == 0 and failing else CaseOutcome.PASSED,
            )
            for index in range(count)
        )
    )


def test_a_small_suite_keeps_every_id_and_a_big_one_keeps_a_marked_part_of_its_failures() -> None:
    small = decode(encode(state_of(report_of(200, 10))))
    assert small is not None and small.all_ids is not None and len(small.all_ids) == 200
    assert small.complete and len(small.failed_ids) == 10

    text = encode(state_of(report_of(100_000, 5_000)))
    assert len(text) <= STATE_CHARS
    big = decode(text)
    assert big is not None
    assert big.all_ids is None and big.digest  # too many ids: the set's digest only
    assert not big.complete and big.bound
    assert 0 < len(big.failed_ids) < 5_000
    assert all(test_id <= big.bound for test_id in big.failed_ids)
    whole = state_of(report_of(100_000, 5_000))
    # Exactly the failing ids up to the bound: for those tests the outcome is still known.
    assert big.failed_ids == {i for i in whole.failed_ids if i <= big.bound}
    assert (big.tests, big.failed) == (100_000, 5_000)  # counts stay whole


def test_a_bounded_earlier_state_says_what_it_leaves_unknown() -> None:
    earlier = decode(encode(state_of(report_of(100_000, 5_000))))
    assert earlier is not None
    changes = compare(report_of(100_000, 5_000), earlier, against="the previous run")
    assert changes.delta("failed") == (5_000, 0)
    assert changes.added == changes.removed == ()  # the same digest: the same tests
    assert changes.fixed == () and changes.new_failures == ()
    assert 0 < len(changes.unsure) < 5_000  # failing beyond the part kept: not known
    block = comment_block(changes)
    assert "kept only part of its test ids" in block
    assert f"whether {len(changes.unsure):,} more failing tests failed then too" in block

    moved = compare(report_of(100_000, 4_000), earlier, against="the previous run")
    assert moved.fixed and all(i <= earlier.bound for i in moved.fixed)
    assert "- Fixed (" in comment_block(moved) and "… and" in comment_block(moved)
    assert len(summary_section(changes)) < 40_000

    grown = compare(report_of(100_001, 5_000), earlier, against="the previous run")
    assert grown.added is None and grown.tests_changed is True
    assert "the set of tests changed" in comment_block(grown)


def _pack(data: object) -> str:
    return base64.b64encode(zlib.compress(json.dumps(data).encode())).decode()


@pytest.mark.parametrize(
    "text",
    [
        "not base64!",
        "A" * (MAX_STATE_CHARS + 4),
        base64.b64encode(b"not zlib").decode(),
        base64.b64encode(zlib.compress(b"\0" * 10_000_000, 9)).decode(),  # a zip bomb
        _pack({"v": 2, "c": [1, 1, 0, 0, 0]}),
        _pack({"v": 1, "c": [1, -1, 0, 0, 0]}),
        _pack({"v": 1, "c": [1, 1, 0, 0, 0], "f": [3]}),
        _pack({"v": 1, "c": [1, 1, 0, 0, 0], "f": ["x" * 501]}),
        _pack({"v": 1, "c": [1, 1, 0, 0, 0], "b": 7}),
        _pack({"v": 1, "c": [1, 1, 0, 0, 0], "h": "--><script>"}),
        _pack([1, 2]),
    ],
)
def test_a_state_that_is_off_in_any_way_is_no_state(text: str) -> None:
    assert decode(text) is None


def test_hostile_ids_in_a_state_are_rendered_inert() -> None:
    hostile = "x` <img src=x onerror=alert(1)> --> @someone #1"
    state = _pack({"v": 1, "c": [1, 0, 1, 0, 0], "f": [hostile]})
    earlier = decode(state)
    assert earlier is not None
    report = TestReport(cases=(TestCase("", "", CaseOutcome.PASSED, nodeid=hostile),))
    block = comment_block(compare(report, earlier, against="the previous run"))
    assert "``x` <img src=x onerror=alert(1)> --> @someone #1``" in block  # one code span


def test_a_section_keeps_its_state_through_the_comment_and_a_bad_one_is_dropped() -> None:
    state = encode(state_of(report_of(50, 5)))
    section = Section(key="T4", conclusion=Conclusion.FAILED, tests=50, failed=5, state=state)
    [back] = parse_comment(compose_comment("k", {"T4": section})).values()
    assert back.state == state
    forged = compose_comment("k", {"T4": section}).replace(state, state[:10] + "!!" + state[12:])
    [dropped] = parse_comment(forged).values()
    assert dropped.state == "" and dropped.failed == 5  # the row stands without it


def test_an_api_that_never_answers_the_previous_read_leaves_the_comment_time(
    fake: Any, tmp_path: Path
) -> None:
    fake.stall("silent", "issues/list-comments")
    directory = workspace(tmp_path, "changing")
    env = environment(fake, tmp_path, directory, remove_label="")
    env["MODAL_GPU_ACTION_PUBLISH_SECONDS"] = "6"
    started = time.monotonic()
    result = action(env, directory)
    assert time.monotonic() - started < 6 + 12  # the deadline, plus starting Python and pytest
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("::warning")]
    assert "could not read the previous run's results" in warnings[0]
    assert "did not answer within 2" in warnings[0]  # its third of the deadline
    assert "could not write the PR comment" in warnings[1]  # later, in the time left
    assert last_outputs(tmp_path / "output.txt")["conclusion"] == "passed"
    assert "passed" in (tmp_path / "summary.md").read_text()


def test_sigint_during_the_previous_read_exits_within_seconds_with_the_reports_written(
    fake: Any, tmp_path: Path
) -> None:
    fake.stall("silent", "issues/list-comments")
    directory = workspace(tmp_path, "changing")
    process = subprocess.Popen(
        [sys.executable, "-m", "modal_gpu_action"],
        cwd=directory,
        env=environment(fake, tmp_path, directory),
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not fake.calls("issues/list-comments"):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    out, _ = process.communicate(timeout=30)
    assert time.monotonic() - signalled < 3.5, out
    assert process.returncode == 0, out
    assert last_outputs(tmp_path / "output.txt")["conclusion"] == "passed"
    assert fake.comments_on(PR) == []


def test_report_compare_to_a_file_that_is_not_junit_is_a_bad_input(tmp_path: Path) -> None:
    after = tmp_path / "after.xml"
    after.write_text(_junit({"a": "passed"}))
    (tmp_path / "notes.txt").write_text("not xml")
    result = subprocess.run(
        [*REPORT, str(after), "--compare-to", str(tmp_path / "notes.txt")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "notes.txt" in result.stderr and result.stdout == ""


def test_a_comment_too_long_with_every_body_shortened_drops_the_other_jobs_states_first() -> None:
    state = encode(state_of(report_of(100_000, 5_000)))
    assert len(state) > STATE_CHARS - 200
    sections = {
        f"gpu{i:02d}": Section(
            key=f"gpu{i:02d}", conclusion=Conclusion.FAILED, body="x" * 3_000, state=state
        )
        for i in range(12)  # 12 states of ~6,000 characters: more than a comment holds
    }
    body = compose_comment("k", sections, own_key="gpu05")
    assert len(body) <= COMMENT_CHARS
    back = parse_comment(body)
    assert all(section.shortened for section in back.values())  # the bodies went first
    assert back["gpu05"].state == state  # this job's own state is kept
    kept = [key for key, section in back.items() if section.state]
    assert 1 < len(kept) < 12
