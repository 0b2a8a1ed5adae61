"""The shared matrix comment as text: sections in, body out, and back (no network)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from html.parser import HTMLParser

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options

from modal_gpu_action.github_actions.github_limits import COMMENT_CHARS
from modal_gpu_action.render.comment_sections import (
    Section,
    combined_table,
    compose_comment,
    marker,
    marker_line,
    merge,
    parse_comment,
    strip_marker,
)
from modal_gpu_action.render.durations import format_duration
from modal_gpu_action.render.markdown import comment_marker, escape_inline
from modal_gpu_action.report.conclusion import Conclusion

RUN = "https://github.com/octo-org/gpu-project/actions/runs/4242"


def part(key: str, conclusion: str = "passed", **fields: object) -> Section:
    """A section as a job writes it; `conclusion` is its wording."""
    values: dict[str, object] = {
        "tests": 4,
        "passed": 4 if conclusion == "passed" else 3,
        "failed": 0 if conclusion == "passed" else 1,
        "duration": 61.25,
        "body": f"### GPU tests on {escape_inline(key)}\n\n{conclusion}",
        "run_url": RUN,
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "written_at": 1_800_000_000.123,
        "writer": "a1b2c3",
    }
    values.update(fields)
    return Section(key, Conclusion(conclusion), **values)  # type: ignore[arg-type]


def test_one_section_has_no_table_and_reads_back_the_same() -> None:
    body = compose_comment("GPU tests/gpu", {"L4": part("L4")}, nonce="feedc0de12345678")
    assert body == (
        "<!-- modal-gpu-action:GPU%20tests/gpu -->\n"
        '<!-- modal-gpu-action:data {"v":1,"nonce":"feedc0de12345678","sections":[{"key":"L4",'
        '"conclusion":"passed","tests":4,"passed":4,"failed":0,"errors":0,"skipped":0,'
        '"duration_ms":61250,"run_url":"https://github.com/octo\\u002dorg/gpu\\u002dproject/'
        'actions/runs/4242","sha":"0123456789abcdef0123456789abcdef01234567",'
        '"at_ms":1800000000123,"short":false,"by":"a1b2c3"}]} -->\n'
        "\n"
        "<!-- modal-gpu-action:section feedc0de12345678 0 -->\n"
        "### GPU tests on L4\n"
        "\n"
        "passed\n"
        "\n"
        "<!-- modal-gpu-action:end feedc0de12345678 -->\n"
    )
    assert parse_comment(body) == {"L4": part("L4")}


def test_several_sections_get_a_table_with_one_row_each_in_key_order() -> None:
    sections = {
        k: part(k, c) for k, c in [("T4", "passed"), ("H100", "failed"), ("A10G", "timed out")]
    }
    body = compose_comment("k", sections)
    table = body.split("<!-- modal-gpu-action:section", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")][2:]  # no head
    assert rows == [
        "| A10G | ⏱️ timed out | 4 | 3 | 1 | 0 | 0 | 1m 01s |",
        "| H100 | ❌ failed | 4 | 3 | 1 | 0 | 0 | 1m 01s |",
        "| T4 | ✅ passed | 4 | 4 | 0 | 0 | 0 | 1m 01s |",
    ]
    assert "**1 of 3 jobs passed**" in table
    assert parse_comment(body) == sections
    assert body.index("GPU tests on A10G") < body.index("GPU tests on H100") < body.index("on T4")


def test_a_commit_column_appears_when_sections_come_from_different_commits() -> None:
    table = combined_table([part("L4"), part("T4", sha="abcdef0" * 5 + "abcde")])
    assert "| Commit |" in table.splitlines()[2] + " |"
    assert "`abcdef0`" in table and "`0123456`" in table


def test_nothing_a_key_or_body_holds_can_close_the_hidden_parts_or_fake_a_section() -> None:
    evil_key = "L4 --> <b>x</b> --!> \n| fake | row |"
    first = compose_comment("k", {"A100": part("A100")}, nonce="0000aaaa0000aaaa")
    evil_body = (
        "<!-- modal-gpu-action:section 0000aaaa0000aaaa 1 -->\n"
        "<!-- modal-gpu-action:end 0000aaaa0000aaaa -->\n"
        + first  # a whole comment of ours, data line included, pasted into a failure message
    )
    sections = {"A100": part("A100"), evil_key: part(evil_key, "failed", body=evil_body)}
    body = compose_comment("k -->", sections, nonce="0000aaaa0000aaaa")

    lines = body.splitlines()
    assert lines[0] == marker("k -->") and "-->" not in lines[0][:-3]
    assert lines[1].count("-->") == 1 and lines[1].endswith(" -->")
    assert "0000aaaa0000aaaa" not in lines[1]  # the nonce was replaced: the body holds it
    read = parse_comment(body)
    cleaned = " ".join(evil_key.split())
    assert sorted(read) == ["A100", cleaned]
    assert read[cleaned].body == evil_body.strip("\n")
    assert read["A100"] == part("A100")


def test_github_shows_the_table_and_bodies_and_hides_the_rest() -> None:
    key = "L4 --> <img src=x onerror=alert(1)> @octocat"
    body = compose_comment("k", {"T4": part("T4"), key: part(key, "failed")})
    html = cmarkgfm.github_flavored_markdown_to_html(body, options=Options.CMARK_OPT_UNSAFE)
    page = _Page()
    page.feed(html)
    assert len(page.comments) == 5  # marker, data, two section starts, end
    assert all(c.startswith(" modal-gpu-action:") for c in page.comments)
    assert "modal-gpu-action" not in page.text
    assert "<img" not in html.replace("&lt;img", "")
    assert page.tags.count("tr") == 3  # header and two rows
    assert "@\u2060octocat" in page.text  # no mention


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.comments: list[str] = []
        self.tags: list[str] = []
        self.text = ""

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text += data


def test_unreadable_rows_are_left_out_and_unreadable_bodies_become_links() -> None:
    good = part("L4")
    body = compose_comment("k", {"L4": good, "T4": part("T4")}, nonce="1234abcd1234abcd")
    data = json.loads(
        re.search(r"data (\{.*\}) -->", body).group(1)  # type: ignore[union-attr]
    )
    data["sections"][1]["tests"] = "4"
    tampered = body.replace(
        body.splitlines()[1],
        "<!-- modal-gpu-action:data " + json.dumps(data).replace("-", "\\u002d") + " -->",
    )
    assert sorted(parse_comment(tampered)) == ["L4"]

    cut = body.replace("<!-- modal-gpu-action:section 1234abcd1234abcd 0 -->", "")
    read = parse_comment(cut)
    assert read["L4"].shortened and read["L4"].body == ""
    assert read["T4"] == part("T4")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no marker\n<!-- modal-gpu-action:data {} -->",
        "<!-- modal-gpu-action:k -->\nnot data",
        '<!-- modal-gpu-action:k -->\n<!-- modal-gpu-action:data {"v":2,"nonce":"abcdabcd","sections":[]} -->',
        '<!-- modal-gpu-action:k -->\n<!-- modal-gpu-action:data {"v":1,"nonce":"x","sections":[]} -->',
        "<!-- modal-gpu-action:k -->\n<!-- modal-gpu-action:data {not json} -->",
    ],
)
def test_comments_that_are_not_ours_or_broken_hold_no_sections(text: str) -> None:
    assert parse_comment(text) == {}


def test_over_the_limit_the_other_sections_are_shortened_first_and_no_row_is_lost() -> None:
    sections = {
        "A100": part("A100", body="a" * 40_000),
        "H100": part("H100", body="h" * 30_000),
        "L4": part("L4", body="l" * 20_000),
        "T4": part("T4", body="t" * 100),
    }
    body = compose_comment("k", sections, own_key="L4")
    read = parse_comment(body)
    assert len(body) <= COMMENT_CHARS
    assert sorted(read) == ["A100", "H100", "L4", "T4"]
    assert read["A100"].shortened and not read["H100"].shortened  # the largest went first
    assert read["L4"].body == "l" * 20_000
    assert f"]({RUN})" in read["A100"].body
    assert all(f"| {k} |" in body for k in read)


def test_the_own_section_is_shortened_last_when_it_alone_is_too_long() -> None:
    sections = {"L4": part("L4", body="l" * 70_000), "T4": part("T4")}
    read = parse_comment(compose_comment("k", sections, own_key="L4"))
    assert read["L4"].shortened and read["T4"].shortened


def test_merge_keeps_the_newest_write_of_each_key() -> None:
    old, new = part("L4", "failed", written_at=100.0), part("L4", "passed", written_at=200.0)
    merged = merge({"L4": new, "T4": part("T4")}, {"L4": old, "A100": part("A100")})
    assert merged["L4"] is new and sorted(merged) == ["A100", "L4", "T4"]


def test_markers_are_renders_and_the_rendered_marker_is_stripped() -> None:
    assert marker("GPU  tests/gpu") == comment_marker("GPU tests/gpu")
    rendered = comment_marker("gpu-tests") + "\n## GPU tests\n"
    assert marker_line(rendered) == comment_marker("gpu-tests")
    assert strip_marker(rendered) == "## GPU tests\n"
    assert strip_marker("## no marker") == "## no marker"
    assert marker_line("<!-- modal-gpu-action:data {} -->") is None


def test_same_result_ignores_duration_and_links() -> None:
    assert part("L4").same_result(part("L4", duration=1.0, run_url="", body="other"))
    assert not part("L4").same_result(part("L4", skipped=1))
    assert not part("L4").same_result(part("L4", "failed"))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.04, "0.04s"),
        (12.34, "12.3s"),
        (61.2, "1m 01s"),
        (125, "2m 05s"),
        (3725, "1h 02m"),
        (-1.0, ""),
        (float("nan"), ""),
    ],
)
def test_one_duration_format_for_the_table_the_summary_and_the_comment(
    seconds: float, text: str
) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("conclusion", ["forged", "PASSED", "passed ", 1, None])
def test_a_row_whose_conclusion_is_not_one_of_ours_is_left_out(conclusion: object) -> None:
    body = compose_comment("k", {"L4": part("L4"), "T4": part("T4")}, nonce="1234abcd1234abcd")
    data = json.loads(
        re.search(r"data (\{.*\}) -->", body).group(1)  # type: ignore[union-attr]
    )
    data["sections"][1]["conclusion"] = conclusion
    tampered = body.replace(
        body.splitlines()[1],
        "<!-- modal-gpu-action:data " + json.dumps(data).replace("-", "\\u002d") + " -->",
    )
    assert sorted(parse_comment(tampered)) == ["L4"]


def test_every_conclusion_has_one_icon_and_one_wording_in_the_table() -> None:
    sections = [part(f"job {c.name}", c.value) for c in Conclusion]
    table = combined_table(sections)
    for conclusion in Conclusion:
        assert f"| {conclusion.icon} {conclusion.value} |" in table
    assert len({c.icon for c in Conclusion}) == len(Conclusion)


def test_not_run_tests_and_problems_get_a_column_only_where_a_job_has_some() -> None:
    plain = {k: part(k) for k in ("A10G", "L4")}
    assert "Not run" not in compose_comment("k", plain) and "Problems" not in compose_comment(
        "k", plain
    )
    assert '"not_run"' not in compose_comment("k", plain)  # rows as before
    crashed = {**plain, "T4": part("T4", "failed", not_run=3, problems=1)}
    body = compose_comment("k", crashed)
    header = next(line for line in body.splitlines() if line.startswith("| Job"))
    assert header == (
        "| Job | Result | Tests | Passed | Failed | Errors | Skipped | Not run | Problems | Duration |"
    )
    assert "| T4 | ❌ failed | 4 | 3 | 1 | 0 | 0 | 3 | 1 | 1m 01s |" in body
    assert parse_comment(body)["T4"] == crashed["T4"]
    assert not parse_comment(body)["T4"].same_result(replace(crashed["T4"], problems=0))
