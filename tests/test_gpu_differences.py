"""The table of tests whose outcome differs by GPU, in the comment that a matrix over GPU types
shares: three jobs through the real command against the fake API, and the table's rules on
sections given directly (inferred passes, cut lists, one GPU type, hostile ids, its bound)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_changes import last_outputs
from test_run_github_mode import PR, action, environment, workspace

from modal_gpu_action.render.comment_sections import Section, compose_comment, parse_comment
from modal_gpu_action.render.gpu_differences import MAX_ROWS, gpu_differences
from modal_gpu_action.report.conclusion import Conclusion
from modal_gpu_action.report.results import CaseOutcome, TestCase, TestReport
from modal_gpu_action.report.test_state import decode, encode, state_of

CASE = "tests/test_changing.py::test_case"
TITLE = "**Tests whose outcome differs by GPU"


@pytest.fixture
def fake(github_api_server: Any) -> Any:
    github_api_server.add_pull(PR, "a" * 40)
    return github_api_server


def test_a_three_gpu_matrix_shows_exactly_the_test_that_fails_on_one_gpu(
    fake: Any, tmp_path: Path
) -> None:
    directory = workspace(tmp_path, "changing")
    failing = {"T4": "", "L4": "beta", "A100": ""}  # in this order: A100 publishes last
    for gpu, fails in failing.items():
        env = environment(
            fake,
            tmp_path,
            directory,
            env=f"TEST_NAMES=list:alpha,beta,gamma\nFAILING_TESTS=list:{fails}",
            matrix_key=gpu,
            remove_label="",
        )
        result = action(env, directory)
        assert result.returncode == (1 if fails else 0), result.stdout + result.stderr

    [comment] = fake.comments_on(PR)
    body = comment.body
    assert set(parse_comment(body)) == {"T4", "L4", "A100"}
    table = body.split(TITLE)[1].split("<!-- modal-gpu-action:section")[0]
    assert table.startswith(" (1)**")
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert rows == [f"| `{CASE}[beta]` | ✅ passed | ❌ failed | ✅ passed |"]
    assert "| Test | A100 | L4 | T4 |" in table  # the sections' order
    # Above the sections, below the status table.
    assert body.index("jobs passed**") < body.index(TITLE) < body.index("section ")
    # The last job's summary has the table as the comment held it; so has its output.
    last_summary = (tmp_path / "summary.md").read_text().split("GPU tests on A100")[-1]
    assert "### Tests whose outcome differs by GPU (1)" in last_summary
    assert f"| `{CASE}[beta]` | ✅ passed | ❌ failed | ✅ passed |" in last_summary
    assert last_outputs(tmp_path / "output.txt")["gpu-differences"] == "1"


def section(
    key: str, outcomes: dict[str, CaseOutcome], *, gpu: str = "", limit: int = 6_000
) -> Section:
    report = TestReport(
        cases=tuple(TestCase("", "", outcome, nodeid=name) for name, outcome in outcomes.items())
    )
    return Section(
        key=key, conclusion=Conclusion.PASSED, state=encode(state_of(report), limit), gpu=gpu
    )


P, F, S, E = CaseOutcome.PASSED, CaseOutcome.FAILED, CaseOutcome.SKIPPED, CaseOutcome.ERROR


def columns(*sections: Section) -> list[tuple[str, str, str]]:
    return [(s.key, s.gpu, s.state) for s in sections]


def test_only_sections_from_more_than_one_gpu_type_get_a_table() -> None:
    one = section("py3.11", {"a": P, "b": F}, gpu="NVIDIA L4")
    two = section("py3.12", {"a": P, "b": P}, gpu="NVIDIA L4")
    assert gpu_differences(columns(one, two)) == ""
    other = section("h100", {"a": P, "b": P}, gpu="NVIDIA H100")
    assert "`b`" in gpu_differences(columns(one, two, other))


def test_skipped_and_errored_differ_too_and_same_outcomes_do_not() -> None:
    t4 = section("T4", {"a": F, "b": S, "c": E, "d": F})
    l4 = section("L4", {"a": P, "b": P, "c": F, "d": F})
    text = gpu_differences(columns(t4, l4))
    assert "| `a` | ❌ failed | ✅ passed |" in text
    assert "| `b` | ⏭️ skipped | ✅ passed |" in text
    assert "| `c` | 💥 error | ❌ failed |" in text
    assert "`d`" not in text  # failed on both


def test_a_job_whose_lists_were_cut_shows_unknown_after_its_bound_and_passed_before() -> None:
    many = {f"tests/test_long_module_name_{i:05d}.py::test_x": F for i in range(3_000)}
    cut = section("T4", {**many, "tests/a_first.py::test_ok": P}, limit=400)
    bound = decode(cut.state).bound  # type: ignore[union-attr]
    assert bound  # room for a few ids only
    # L4 passes everything: T4's listed failures differ; beyond T4's bound nothing is claimed.
    text = gpu_differences(columns(cut, section("L4", dict.fromkeys(many, P))))
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows and all(line.endswith("| ❌ failed | ✅ passed |") for line in rows)
    assert all(line.split("`")[1] <= bound for line in rows)
    # L4 fails everything but one test before T4's bound (T4 passed it: inferred) and one after.
    before, after = "tests/a_first.py::test_ok", max(many)
    l4 = section("L4", {**many, before: F, after: P})
    text = gpu_differences(columns(cut, l4))
    assert f"| `{before}` | ✅ passed | ❌ failed |" in text
    assert after not in text  # T4 does not know it: "?" against "passed" is no difference


def test_a_test_that_a_job_did_not_have_is_no_difference_on_its_own() -> None:
    t4 = section("T4", {"a": F, "b": P})
    l4 = section("L4", {"b": P})  # has no test a
    assert gpu_differences(columns(t4, l4)) == ""
    a100 = section("A100", {"a": P, "b": P})
    assert "| `a` | ❌ failed | — | ✅ passed |" in gpu_differences(columns(t4, l4, a100))


def test_the_table_is_bounded_and_counts_the_rest() -> None:
    names = {f"t{i:03d}": F for i in range(100)}
    text = gpu_differences(columns(section("T4", names), section("L4", dict.fromkeys(names, P))))
    assert text.startswith(f"{TITLE} (100)**")
    assert text.count("\n| `") == MAX_ROWS
    assert f"… and {100 - MAX_ROWS} more" in text


def test_hostile_ids_and_keys_stay_inert_in_the_table() -> None:
    hostile = "a|b` <img src=x> --> @user"
    t4 = section("T4 <b>|", {hostile: F})
    l4 = section("L4", {hostile: P})
    text = gpu_differences(columns(t4, l4))
    span = "``a\\|b` <img src=x> --> @user``"  # one code span: GitHub shows it as text
    assert span in text
    assert "<img" not in text.replace(span, "") and "-->" not in text.replace(span, "")
    assert "T4 &lt;b&gt;\\|" in text
    body = compose_comment("k", {"T4 <b>|": t4, "L4": l4})
    assert set(parse_comment(body)) == {"T4 <b>|", "L4"}  # the table breaks no section out
