"""Summary and comment markdown, rendered with GitHub's cmark-gfm and checked as HTML."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options

from modal_gpu_action.github_actions.github_limits import run_url_from_env
from modal_gpu_action.render.annotations import annotation_commands
from modal_gpu_action.render.failures import trim_repeats
from modal_gpu_action.render.markdown import (
    code_inline,
    comment_marker,
    escape_block,
    escape_inline,
    neutralise,
    render_comment,
    render_summary,
)
from modal_gpu_action.report.conclusion import Conclusion
from modal_gpu_action.report.junit_reader import parse_junit
from modal_gpu_action.report.results import (
    CaseOutcome,
    CaseResult,
    Problem,
    Subtests,
    TestCase,
    TestReport,
)

REPORTS = Path(__file__).parent / "fixtures" / "reports"
PROJECTS = Path(__file__).parent / "fixtures" / "projects"
GOLDEN = Path(__file__).parent / "golden"
FACTS = (("GPU", "NVIDIA H100 80GB HBM3 ×1"), ("Backend", "modal"), ("Cost", "$0.0123"))  # noqa: RUF001
GITHUB_ENV = {
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "octo/gpu-project",
    "GITHUB_RUN_ID": "4242",
}
RUN_URL = "https://github.com/octo/gpu-project/actions/runs/4242"
WJ = "\u2060"


# --- GitHub's rendering, as far as it runs here -------------------------------------------------
# github_flavored_markdown_to_html applies GitHub's extensions (table, autolink, tagfilter,
# strikethrough, tasklist). GitHub also keeps raw HTML (then sanitises it) and renders footnotes:
# rendering with UNSAFE checks our output before any sanitiser could help.
GITHUB_OPTIONS = Options.CMARK_OPT_UNSAFE | Options.CMARK_OPT_FOOTNOTES
# GitHub's filters after cmark turn these, found in text outside code and links, into links.
MENTION = re.compile(r"(?:^|\W)@[A-Za-z0-9]")
ISSUE_REFERENCE = re.compile(r"(?:^|\W)#[0-9]|\bGH-[0-9]", re.IGNORECASE)
EMOJI_CODE = re.compile(r":[a-z0-9_+-]+:")
BARE_LINK = re.compile(r"https?://|www\.", re.IGNORECASE)
VOID = {"br", "hr", "img", "input", "meta", "link", "source", "wbr"}
FOLDED_LISTS = ("Skipped tests", "Expected failures", "Tests not run")


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None] = field(default_factory=dict)
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def find(self, tag: str) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                found += [child] if child.tag == tag else []
                found += child.find(tag)
        return found

    def walk(self) -> Iterator[Node]:
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.walk()

    def prose(self) -> Iterator[str]:
        """Text that GitHub's mention, reference and emoji filters look at."""
        for child in self.children:
            if isinstance(child, str):
                yield child
            elif child.tag not in ("pre", "code", "a"):
                yield from child.prose()


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("root")
        self.stack = [self.root]
        self.comments: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


def render_html(markdown: str) -> tuple[Node, list[str]]:
    """GitHub's HTML for `markdown` as a tree (checked to be balanced) and its HTML comments."""
    builder = TreeBuilder()
    builder.feed(cmarkgfm.github_flavored_markdown_to_html(markdown, GITHUB_OPTIONS))
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements"
    return builder.root, builder.comments


def assert_inert(root: Node, allowed_links: tuple[str, ...] = ()) -> None:
    """Only the tags we write, no link but ours, and nothing GitHub would turn into one."""
    ours = {"h2", "h3", "h4", "p", "table", "thead", "tbody", "tr", "th", "td", "ul", "li"}
    ours |= {"details", "summary", "pre", "code", "strong", "em", "a"}
    for node in root.walk():
        assert node.tag in ours, node
        if node.tag == "a":
            assert node.attrs.get("href") in allowed_links, node
    for table in root.find("table"):
        widths = {len(row.find("th") + row.find("td")) for row in table.find("tr")}
        assert len(widths) == 1, f"rows of different widths: {widths}"
    for details in root.find("details"):
        children = [c.tag for c in details.children if isinstance(c, Node)]
        summary = details.find("summary")[0].text()
        if summary in FOLDED_LISTS:  # the tests skipped, expected to fail or not run, named
            assert children == ["summary", "ul"], children
        else:  # a failure's traceback, a problem's output
            assert summary in ("Traceback", "Details"), summary
            assert children == ["summary", "pre"], children
    prose = "".join(root.prose()).replace(WJ, "")
    # With the joiners removed the text is intact; with them, no pattern matches.
    prose_with_joiners = "".join(root.prose())
    assert not MENTION.search(prose_with_joiners), prose_with_joiners
    assert not ISSUE_REFERENCE.search(prose_with_joiners)
    assert not EMOJI_CODE.search(prose_with_joiners)
    assert not BARE_LINK.search(prose_with_joiners)
    assert prose  # something was rendered


def misleading(char: str) -> bool:
    """Whether `char` makes text read as something it is not: format characters (bidirectional
    marks and overrides, zero-width characters, tags...) and the line and paragraph separators."""
    return unicodedata.category(char) in ("Cf", "Zl", "Zp")


def visible(text: str) -> str:
    """What escape_block keeps of `text`: each misleading character shown as U+FFFD."""
    return "".join("\ufffd" if misleading(char) else char for char in text)


def shown(text: str) -> str:
    """What escape_inline keeps of `text`: one line, control characters replaced, trimmed."""
    text = re.sub(r"[\n\r\t\x85\u2028\u2029]", " ", text)
    return visible(re.sub(r"[\x00-\x1f\x7f-\x9f]", "\ufffd", text)).strip()


# --- escape_inline / escape_block: any text stays text -------------------------------------------
TRICKY = (
    "`*_[]()<>&!|\\#@:/.-=+~$^\"' \n\r\t\x00\u202eabcwgh1é名🔥"
    "\u200b\u200d\u200f\u2028\u2029\u2060\u2066\ufeff\x85\U000e0041"
)
HOSTILE = [
    "<script>alert(1)</script>",
    "</details><img src=x onerror=alert(1)>",
    "![img](https://evil.example/i.png)",
    "[link](javascript:alert(1))",
    "<https://evil.example>",
    "https://evil.example/x www.evil.example WWW.EVIL.EXAMPLE",
    "mail me: a@b.example xmpp:a@b.example",
    "@here @octocat @org/team",
    "#123 GH-12 octo/repo#9",
    ":shipit: :+1:",
    "pipe | in | cell",
    "``` fence ````",
    "1. not a list",
    "- not a list",
    "# not a heading",
    "> not a quote",
    "---",
    "    not code",
    "[^1] not a footnote",
    "~~strike~~ **bold** _em_ $math$",
    "&lt;entity&gt; &amp; &#64;user",
    "back\\slash at the end\\",
    "line one\nline two\r\n\tthree",
    "\u202eevil bidi override",
    "test passed: \u202etxt.exe\u202c \u2066isolate\u2069 \u200emark\u200f \u061carabic",
    "zero\u200bwidth\u200cnon\u200djoiner\u2060joiner\ufeffbom \U000e0068\U000e0069tags",
    "line\u2028separator\u2029paragraph\x85next",
]


def random_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(TRICKY) for _ in range(rng.randrange(1, 40))) for _ in range(count)]


@pytest.mark.parametrize("text", HOSTILE + random_texts(300, seed=1))
def test_escape_inline_keeps_text_as_text_in_a_table_cell_and_a_paragraph(text: str) -> None:
    cell = escape_inline(text)
    assert "\n" not in cell
    root, _ = render_html(f"| Test | Result |\n| --- | --- |\n| {cell} | x |\n\n{cell} end")
    [row] = root.find("tbody")[0].find("tr")
    cells = row.find("td")
    assert len(cells) == 2
    assert cells[0].text().replace(WJ, "") == shown(text)
    [paragraph] = root.find("p")
    assert paragraph.text().replace(WJ, "") == f"{shown(text)} end".strip()
    if text.strip():
        assert_inert(root)


@pytest.mark.parametrize(
    "text",
    [
        "plain traceback\nE   AssertionError",
        "```\n````\n`````````\n</details>\n<script>x</script>\n~~~\n",
        "    indented\n\n\nblank lines\n<!-- comment -->\n-->",
        "ends with a fence\n```",
        "crlf\r\nand\rcr",
        "def check():\n    access = 'user\u202e \u2066# admin\u2069 \u2066'  # trojan source\n",
        "",
        *random_texts(200, seed=2),
    ],
)
def test_escape_block_keeps_a_traceback_verbatim_inside_details(text: str) -> None:
    markdown = (
        f"<details><summary>Traceback</summary>\n\n{escape_block(text)}\n\n</details>\n\nafter"
    )
    root, _ = render_html(markdown)
    [details] = root.find("details")
    [pre] = details.find("pre")
    expected = f"{text}\n".replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")
    assert pre.text() == visible(expected)
    assert root.find("p")[-1].text() == "after"  # nothing inside escaped the block


def shown_in_code(text: str) -> str:
    """What code_inline shows of `text`: one line, control characters replaced, nothing else."""
    text = re.sub(r"[\n\r\t\x85\u2028\u2029]", " ", text)
    return visible(re.sub(r"[\x00-\x1f\x7f-\x9f]", "\ufffd", text))


@pytest.mark.parametrize(
    "text",
    [
        "tests/test_x.py::TestC::test_m[p]",
        "tests/t.py::test[a|b]",
        "tests/t.py::test[a\\|b]",
        "`starts with a backtick",
        "ends with a backtick`",
        " spaces around ",
        "``` fence ```",
        *HOSTILE,
        *random_texts(300, seed=3),
    ],
)
def test_code_inline_shows_a_node_id_exactly_in_a_table_cell_and_a_paragraph(text: str) -> None:
    # What people copy from the summary and paste into pytest must be the id itself.
    if not text.strip(" "):
        return
    cell, line = code_inline(text, in_table=True), code_inline(text)
    root, _ = render_html(f"| Test | Result |\n| --- | --- |\n| {cell} | x |\n\n- {line} end")
    [row] = root.find("tbody")[0].find("tr")
    cells = row.find("td")
    assert len(cells) == 2
    assert [code.text() for code in cells[0].find("code")] == [shown_in_code(text)]
    [item] = root.find("li")
    assert [code.text() for code in item.find("code")] == [shown_in_code(text)]
    assert item.text() == f"{shown_in_code(text)} end"
    assert_inert(root)


def test_neutralise_shows_every_misleading_character_and_keeps_the_rest() -> None:
    every = [chr(code) for code in range(0x110000) if misleading(chr(code))]
    assert {"\u200e", "\u200f", "\u061c", "\u202a", "\u202e", "\u2066", "\u2069"} <= set(every)
    assert {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u2028", "\u2029"} <= set(every)
    assert neutralise("".join(every)) == "\ufffd" * len(every)
    plain = "tests/test_gpu.py::test_matmul[float16-名前-🔥] café ☕ \t\n"
    assert neutralise(plain) is plain


# Our own WORD JOINERs (escape_inline's) follow `@`, `#` and `:` and sit in `www.` and `gh-1`.
OUR_JOINERS = re.compile(r"(?<=[@#:])\u2060|(?<=www)\u2060(?=\\\.)|(?<=gh)\u2060(?=\\-)", re.I)


def assert_nothing_misleading(markdown: str) -> None:
    left = [char for char in OUR_JOINERS.sub("", markdown) if misleading(char)]
    assert left == [], [unicodedata.name(char, hex(ord(char))) for char in left]


TROJAN = (
    "test passed: \u202etxt.exe\u202c\u200b\u200d\u2060\ufeff \u2066isolate\u2069 "
    "\u200emark\u200f \u061carabic\u2028next line\u2029next paragraph \U000e0041"
)


def test_misleading_text_of_a_report_is_neutralised_in_summary_and_comment() -> None:
    report = TestReport(
        (
            TestCase(
                f"tests.test_{TROJAN}",
                f"test_x[{TROJAN}]",
                CaseOutcome.FAILED,
                2.0,
                TROJAN,
                f"E   {TROJAN}\n",
                f"tests/{TROJAN}.py",
                3,
            ),
            TestCase("tests", "test_skip", CaseOutcome.SKIPPED, 1.0, f"needs {TROJAN}"),
        )
    )
    summary = render_summary(report, facts=[("GPU", TROJAN)], title=f"GPU {TROJAN}")
    comment = render_comment(report, key=TROJAN, facts=[("GPU", TROJAN)], title=TROJAN)
    for markdown in (summary, comment):
        assert_nothing_misleading(markdown)
        assert "txt\\.exe" in markdown  # the text itself is still there, shown as it is
        assert_inert(render_html(markdown)[0])


def test_misleading_text_is_neutralised_in_annotations_too() -> None:
    report = TestReport(
        (
            TestCase(
                f"tests.{TROJAN}", "test_x", CaseOutcome.FAILED, 1.0, TROJAN, "", f"{TROJAN}.py", 3
            ),
        )
    )
    [line] = annotation_commands(report)
    assert [char for char in line if misleading(char)] == []
    assert "txt.exe" in line and "\ufffd" in line


def test_misleading_text_from_a_real_run_is_neutralised_in_summary_and_comment(
    tmp_path: Path,
) -> None:
    """End to end: the real `run` command on a project whose test fails with such a message."""
    directory = Path(shutil.copytree(PROJECTS / "hostile_output", tmp_path / "project"))
    summary, comment = directory / "summary.md", directory / "comment.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    env["MODAL_GPU_ACTION_PYTHON"] = sys.executable
    command = [sys.executable, "-m", "modal_gpu_action", "run", "--backend", "local"]
    command += ["--working-directory", str(directory), "--env", "API_KEY=not-a-real-key"]
    command += ["--summary-file", str(summary), "--comment-file", str(comment)]
    command += ["--junit-xml", str(directory / "out.xml")]
    result = subprocess.run(
        command, cwd=directory, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stdout + result.stderr
    for markdown in (summary.read_text(encoding="utf-8"), comment.read_text(encoding="utf-8")):
        assert "test passed:\u2060 \ufffdtxt\\.exe\ufffd" in markdown
        assert_nothing_misleading(markdown)


# --- the comment marker and the run link ---------------------------------------------------------
@pytest.mark.parametrize(
    "key", ["gpu-tests", "H100:2", "a b", "x --> <b>y</b>", "--!>", "-", "\n", "é/名", ""]
)
def test_comment_marker_is_one_html_comment_that_cannot_be_closed_early(key: str) -> None:
    marker = comment_marker(key)
    assert re.fullmatch(r"<!-- modal-gpu-action:[^<>!\s]+ -->", marker)
    root, comments = render_html(marker + "\n\nbody")
    assert comments == [marker[4:-3]]
    assert [node.text() for node in root.find("p")] == ["body"]


def test_distinct_keys_give_distinct_markers() -> None:
    keys = ["a b", "a-b", "a%20b", "a_b", "A b", "a+b"]
    assert len({comment_marker(key) for key in keys}) == len(keys)


def test_run_url_comes_from_githubs_variables() -> None:
    assert run_url_from_env(GITHUB_ENV) == RUN_URL
    assert run_url_from_env({**GITHUB_ENV, "GITHUB_SERVER_URL": "https://ghe.example/"}) == (
        "https://ghe.example/octo/gpu-project/actions/runs/4242"
    )
    assert run_url_from_env({}) is None
    for name, value in [
        ("GITHUB_SERVER_URL", "javascript:alert(1)"),
        ("GITHUB_SERVER_URL", "https://github.com) [x](https://evil"),
        ("GITHUB_REPOSITORY", "octo/gpu project"),
        ("GITHUB_REPOSITORY", "octo"),
        ("GITHUB_RUN_ID", "42)"),
        ("GITHUB_RUN_ID", ""),
    ]:
        assert run_url_from_env({**GITHUB_ENV, name: value}) is None, (name, value)


def test_a_run_url_that_is_not_plain_is_left_out() -> None:
    report = TestReport((TestCase("c", "t", CaseOutcome.PASSED),))
    comment = render_comment(report, key="k", run_url="https://x.example/a) ![i](https://e/i.png")
    assert "x.example" not in comment


# --- the real pytest run with hostile names ------------------------------------------------------
@pytest.fixture(scope="module")
def hostile_report(junit_from_pytest: Callable[[str, str], Path]) -> TestReport:
    return parse_junit(junit_from_pytest("mixed", "xunit1"))


def test_summary_of_hostile_names_renders_them_as_inert_text(hostile_report: TestReport) -> None:
    summary = render_summary(hostile_report, facts=FACTS)
    root, comments = render_html(summary)
    assert comments == []
    assert_inert(root)
    failures = hostile_report.failures
    headings = [h.text().replace(WJ, "") for h in root.find("h4")]
    assert headings == [
        f"{'💥' if case.outcome is CaseOutcome.ERROR else '❌'} {case.id} — {case.file}:{case.line}"
        for case in failures
    ]
    tracebacks = [
        details.find("pre")[0].text()
        for details in root.find("details")
        if details.find("summary")[0].text() == "Traceback"
    ]
    # A detail that only repeats the message (a strict xpass) gets no traceback block.
    assert tracebacks == [case.detail + "\n" for case in failures if case.detail != case.message]


def test_summary_has_totals_facts_slowest_and_skip_reasons(hostile_report: TestReport) -> None:
    root, _ = render_html(render_summary(hostile_report, facts=FACTS))
    assert root.find("h2")[0].text() == "❌ GPU tests: failed"
    totals, facts, slowest, skipped, xfailed = (
        [
            [cell.text().replace(WJ, "") for cell in row.find("th") + row.find("td")]
            for row in t.find("tr")
        ]
        for t in root.find("table")
    )
    assert totals == [
        ["Tests", "Passed", "Failed", "Errors", "Skipped", "XFailed", "Duration"],
        ["21", "3", "12", "2", "3", "1", f"{hostile_report.wall_time:.2f}s"],
    ]
    assert facts == [["GPU", "Backend", "Cost"], ["NVIDIA H100 80GB HBM3 ×1", "modal", "$0.0123"]]  # noqa: RUF001
    assert slowest[0] == ["Test", "Result", "Duration"]
    assert slowest[1][:2] == ["check_outcomes.py::test_slow_pass", "passed"]
    # no row would read 0.00s
    timed = sorted((c.duration for c in hostile_report.cases), reverse=True)
    assert [row[2] for row in slowest[1:]] == [f"{d:.2f}s" for d in timed[:10] if d >= 0.005]
    assert skipped == [["Reason", "Tests"], ["needs two GPUs", "2"], ["CUDA 12 only", "1"]]
    assert xfailed == [["Reason", "Tests"], ["known bug #42", "1"]]
    assert [h.text() for h in root.find("h3")] == [
        "Failures and errors (14)",
        "Slowest tests",
        "Skipped (3)",
        "Expected failures (1)",
    ]


def test_comment_of_hostile_names_is_compact_and_inert(hostile_report: TestReport) -> None:
    comment = render_comment(hostile_report, key="gpu-tests", facts=FACTS, run_url=RUN_URL)
    assert comment.startswith(comment_marker("gpu-tests") + "\n")
    root, comments = render_html(comment)
    assert comments == [comment_marker("gpu-tests")[4:-3]]
    assert_inert(root, allowed_links=(RUN_URL,))
    items = [li.text().replace(WJ, "") for li in root.find("li")]
    assert items == [
        f"{'💥' if case.outcome is CaseOutcome.ERROR else '❌'} {case.id} — {shown(explained)}"
        for case in hostile_report.failures
        for explained in [
            case.message.replace('failed on setup with "', "Error in setup: ")
            .replace('failed on teardown with "', "Error in teardown: ")
            .removesuffix('"')
        ]
    ]
    assert root.find("a")[0].attrs["href"] == RUN_URL
    assert "<details>" not in comment  # tracebacks live in the summary


@pytest.mark.parametrize(
    ("conclusion", "headline"),
    [
        (None, "❌ GPU tests: failed"),
        (Conclusion.TIMED_OUT, "⏱️ GPU tests: timed out"),
        (Conclusion.CANCELLED, "🚫 GPU tests: cancelled"),
        (Conclusion.INFRASTRUCTURE_ERROR, "💥 GPU tests: infrastructure error"),
    ],
)
def test_the_callers_conclusion_overrides_the_headline(
    hostile_report: TestReport, conclusion: Conclusion | None, headline: str
) -> None:
    for markdown in (
        render_summary(hostile_report, conclusion=conclusion),
        render_comment(hostile_report, key="k", conclusion=conclusion),
    ):
        root, _ = render_html(markdown)
        assert root.find("h2")[0].text().replace(WJ, "") == headline


def test_a_run_without_tests_or_failures() -> None:
    empty = render_summary(TestReport())
    assert empty.startswith("## ⚠️ GPU tests: no tests\n")
    passed = TestReport((TestCase("m", "t", CaseOutcome.PASSED, 1.5),), wall_time=2.0)
    summary = render_summary(passed)
    assert summary.startswith("## ✅ GPU tests: passed\n")
    assert "Failures" not in summary
    comment = render_comment(passed, key="k", run_url=RUN_URL)
    assert "Failures" not in comment
    assert comment.endswith(f"[Open the run and its job summary]({RUN_URL})\n")


# --- size budgets ---------------------------------------------------------------------------------
def big_report(cases: int, failures: int, detail: str, message: str) -> TestReport:
    step = cases // failures
    return TestReport(
        tuple(
            TestCase(
                f"tests.gpu.test_module_{n % 100}",
                f"test_kernel[{n}-{'名' * 40}]",
                CaseOutcome.FAILED if n % step == 0 else CaseOutcome.PASSED,
                duration=n / cases,
                message=message if n % step == 0 else "",
                detail=detail if n % step == 0 else "",
                file="tests/gpu/test_module.py",
                line=n % 500 + 1,
            )
            for n in range(cases)
        ),
        wall_time=1234.0,
    )


def left_out(markdown: str) -> int:
    match = re.search(r"… and ([0-9,]+) more", markdown)
    return int(match[1].replace(",", "")) if match else 0


@pytest.mark.parametrize(
    ("failures", "detail", "message"),
    [
        (100_000, "E   AssertionError: 名前 🔥\n" * 400, "AssertionError: " + "é" * 5_000),
        (1_000, ("x" * 120 + "\n") * 300 + "E   the end", "assert " + "@here " * 2_000),
    ],
)
def test_budgets_hold_for_a_100000_case_report(failures: int, detail: str, message: str) -> None:
    report = big_report(100_000, failures, detail, message)
    started = time.perf_counter()
    summary = render_summary(report, facts=FACTS)
    comment = render_comment(report, key="k", facts=FACTS, run_url=RUN_URL)
    assert time.perf_counter() - started < 5
    assert len(summary.encode()) <= 1_048_576
    assert len(comment) <= 65_536
    shown_entries = summary.count("\n#### ")
    assert shown_entries + left_out(summary) == failures
    assert shown_entries >= min(failures, 200)
    assert comment.count("\n- ❌ ") + left_out(comment) == failures
    root, _ = render_html(summary)
    assert len(root.find("details")) == shown_entries
    assert_inert(root)
    assert_inert(render_html(comment)[0], allowed_links=(RUN_URL,))


def test_the_longest_tracebacks_are_cut_first_keeping_their_ends() -> None:
    short = "E   short failure"
    long = "".join(f"frame {n}\n" for n in range(200_000)) + "E   ValueError: the end"
    cases = tuple(
        TestCase("m", f"t{n}", CaseOutcome.FAILED, message="m", detail=long if n % 2 else short)
        for n in range(10)
    )
    summary = render_summary(TestReport(cases))
    assert len(summary.encode()) <= 1_048_576
    assert left_out(summary) == 0
    root, _ = render_html(summary)
    tracebacks = [
        details.find("pre")[0].text()
        for details in root.find("details")
        if details.find("summary")[0].text() == "Traceback"
    ]
    assert tracebacks[0::2] == [short + "\n"] * 5  # short ones untouched
    for traceback in tracebacks[1::2]:
        assert traceback.startswith("[… ")
        assert "earlier lines cut …]\n" in traceback
        assert traceback.endswith("frame 199999\nE   ValueError: the end\n")
        assert len(traceback.encode()) > 150_000  # the room is shared, not wasted


def test_a_cut_traceback_is_neutralised_apart_from_the_note_on_what_was_cut() -> None:
    # The note of the cut is ours and goes unsearched; the test's text after it never does.
    long = "".join(f"frame {n}\n" for n in range(300_000)) + f"E   {TROJAN}"
    case = TestCase("m", "t", CaseOutcome.FAILED, message="m", detail=long)
    summary = render_summary(TestReport((case,)))
    assert "earlier lines cut …]\n" in summary
    assert_nothing_misleading(summary)
    assert visible(TROJAN) in summary


@pytest.mark.parametrize("limit", [20_000, 100_000])
def test_a_smaller_byte_limit_holds_with_multibyte_text(limit: int) -> None:
    report = big_report(1_000, 500, "🔥" * 10_000, "名" * 3_000)
    summary = render_summary(report, limit_bytes=limit)
    assert len(summary.encode()) <= limit
    assert len(summary) < limit  # characters are fewer than bytes here: bytes are what count
    shown_entries = summary.count("\n#### ")
    assert shown_entries + left_out(summary) == 500
    root, _ = render_html(summary)
    assert_inert(root)


def test_a_smaller_comment_limit_holds() -> None:
    report = big_report(1_000, 500, "x", "@team " * 100)
    comment = render_comment(report, key="k", limit_chars=5_000)
    assert len(comment) <= 5_000
    assert comment.count("\n- ❌ ") + left_out(comment) == 500
    assert comment.endswith(f"- … and {left_out(comment)} more failures: see the job summary.\n")


# --- golden files ---------------------------------------------------------------------------------
def test_golden_summary_and_comment() -> None:
    """Rewrite them with UPDATE_GOLDEN=1 and review the diff."""
    report = parse_junit(REPORTS / "golden.xml", name="junit.xml")
    rendered = {
        "summary.md": render_summary(report, facts=FACTS, title="GPU tests on H100"),
        "comment.md": render_comment(
            report,
            key="gpu-tests",
            facts=FACTS,
            run_url=run_url_from_env(GITHUB_ENV),
            title="GPU tests on H100",
            commit="0123456789abcdef0123456789abcdef01234567",
            ran_at=datetime(2026, 11, 23, 12, 0, 5, tzinfo=UTC),
        ),
    }
    for name, text in rendered.items():
        path = GOLDEN / name
        if os.environ.get("UPDATE_GOLDEN") == "1":
            path.write_text(text, encoding="utf-8")
        assert text == path.read_text(encoding="utf-8"), (
            f"{name} changed: UPDATE_GOLDEN=1 rewrites it"
        )


# --- the run's problems, tests not run, subtests, several failures in one test -------------------
def crashed_report() -> TestReport:
    """Two shards: one finished with subtest failures, one killed mid-run."""
    return TestReport(
        (
            TestCase(
                "tests.test_k.TestK",
                "test_sizes",
                CaseOutcome.FAILED,
                0.5,
                "size 2 @team",
                "E   AssertionError: size 2",
                "tests/test_k.py",
                7,
                nodeid="tests/test_k.py::TestK::test_sizes",
                more=(CaseResult(CaseOutcome.FAILED, "size 3 #12", "E   AssertionError: size 3"),),
            ),
            TestCase("tests.test_k", "test_fast", CaseOutcome.PASSED, 0.001, nodeid="tests/test_k.py::test_fast"),
            TestCase(
                "tests.test_k",
                "test_later",
                CaseOutcome.NOT_RUN,
                message="not run: pytest was killed by signal 9 (SIGKILL) <b>",
                nodeid="tests/test_k.py::test_later[<b>]",
            ),
        ),
        wall_time=61.0,
        problems=(
            Problem("shard 1/2", "pytest stopped after 2 collection errors", "tail 1"),
            Problem("shard 2/2", "pytest stopped after 2 collection errors", "tail 2"),
            Problem("shard 2/2", "pytest was killed by signal 9 (SIGKILL) </details>", "```x```"),
        ),
        subtests=Subtests(passed=21039, failed=2),
    )  # fmt: skip


def test_problems_not_run_tests_and_subtests_have_their_own_place_and_stay_inert() -> None:
    report = crashed_report()
    summary = render_summary(report)
    comment = render_comment(report, key="k", run_url=RUN_URL)
    for markdown in (summary, comment):
        root, _ = render_html(markdown)
        assert_inert(root, allowed_links=(RUN_URL,))
        text = root.text().replace(WJ, "")
        assert "Problems with the run (3)" in text
        # the same message from two shards is one line naming both
        assert "shard 1/2, shard 2/2: pytest stopped after 2 collection errors" in text
        assert "Subtests: 21,039 passed, 2 failed." in text
        assert "1 more failure of this test" in text or "Failure 2 of 2" in text
        totals = [cell.text() for cell in root.find("table")[0].find("th")]
        assert totals == ["Tests", "Passed", "Failed", "Errors", "Skipped", "Not run", "Duration"]
        assert [cell.text() for cell in root.find("table")[0].find("td")][-2:] == ["1", "1m 01s"]
    root, _ = render_html(summary)
    assert [h.text() for h in root.find("h3")] == [
        "Problems with the run (3)",
        "Failures and errors (1)",
        "Slowest tests",
        "Not run (1)",
    ]
    outputs = [
        d.find("pre")[0].text()
        for d in root.find("details")
        if d.find("summary")[0].text() == "Details"
    ]
    assert outputs == ["tail 1\n", "```x```\n"]
    not_run = [d for d in root.find("details") if d.find("summary")[0].text() == "Tests not run"]
    assert [li.text() for li in not_run[0].find("li")] == ["tests/test_k.py::test_later[<b>]"]
    never = "Collected but never started: pytest was killed by signal 9 (SIGKILL) <b>."
    assert never in root.text().replace(WJ, "")
    # each failure of the test, with its traceback
    tracebacks = [
        d.find("pre")[0].text()
        for d in root.find("details")
        if d.find("summary")[0].text() == "Traceback"
    ]
    assert tracebacks == ["E   AssertionError: size 2\n", "E   AssertionError: size 3\n"]
    assert "Failure 2 of 2: size 3 #12" in root.text().replace(WJ, "")


def test_the_slowest_table_has_no_row_that_would_read_zero() -> None:
    cases = tuple(
        TestCase("t", f"test_{n}", CaseOutcome.PASSED, duration, nodeid=f"t.py::test_{n}")
        for n, duration in enumerate([0.004, 0.0, 0.006, 1.5])
    )
    root, _ = render_html(render_summary(TestReport(cases)))
    [_, slowest] = root.find("table")
    assert [row.find("td")[2].text() for row in slowest.find("tr")[1:]] == ["1.50s", "0.01s"]
    only_fast = TestReport(cases[:2])
    assert "Slowest tests" not in render_summary(only_fast)


def test_skipped_tests_are_named_in_a_folded_list() -> None:
    cases = tuple(
        TestCase("t", f"test_{n}", CaseOutcome.SKIPPED, message=f"needs {n % 2 + 1} GPUs", nodeid=f"t.py::test_{n}")
        for n in range(130)
    )  # fmt: skip
    root, _ = render_html(render_summary(TestReport(cases)))
    assert_inert(root)
    [folded] = [d for d in root.find("details") if d.find("summary")[0].text() == "Skipped tests"]
    items = [li.text() for li in folded.find("li")]
    assert items[0] == "t.py::test_0 — needs 1 GPUs"
    assert len(items) == 101 and items[-1] == "… and 30 more, all in the merged JUnit file"


def test_a_recursion_traceback_is_trimmed_to_one_copy_of_what_repeats() -> None:
    frame = "tests/test_r.py:2: in f\n    return f(n + 1)\n           ^^^^^^^^"
    detail = (
        "def test_r():\n>       f(0)\n\n" + "\n".join([frame] * 500) + "\nE   RecursionError: x"
    )
    trimmed = trim_repeats(detail)
    assert trimmed.count("return f(n + 1)") == 1
    assert "[… the 3 lines above repeat 499 more times …]" in trimmed
    assert trimmed.endswith("E   RecursionError: x")
    assert trim_repeats("a\nb\nc") == "a\nb\nc"
    case = TestCase("t", "test_r", CaseOutcome.FAILED, message="RecursionError: x", detail=detail)
    summary = render_summary(TestReport((case,)))
    assert summary.count("return f(n + 1)") == 1
