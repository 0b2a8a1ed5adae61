"""The action's outputs, as action.yml and the README list them (`OUTPUTS`). after_tests.py writes
their values to `$GITHUB_OUTPUT` (`github_actions.workflow.write_outputs`)."""

from __future__ import annotations

from dataclasses import dataclass

from modal_gpu_action.report import conclusion


@dataclass(frozen=True, slots=True)
class OutputSpec:
    name: str
    description: str


OUTPUTS: tuple[OutputSpec, ...] = (
    OutputSpec("conclusion", conclusion.listed() + "."),
    OutputSpec(
        "tests",
        "Number of tests in the report, not-run ones included: each test pytest collected counts"
        " once, however the run was sharded.",
    ),
    OutputSpec("passed", "Number of tests that passed (xpassed included)."),
    OutputSpec("failed", "Number of tests that failed."),
    OutputSpec(
        "errors", "Number of tests that errored (fixtures, collection, a test that crashed)."
    ),
    OutputSpec("skipped", "Number of tests skipped (xfailed included)."),
    OutputSpec(
        "not-run",
        "Number of tests collected but never started: the run crashed, timed out or was"
        " cancelled first.",
    ),
    OutputSpec(
        "flaky",
        "Number of flaky tests: failed, then passed on a re-run (`rerun-failures`); they are"
        " counted in `passed` too.",
    ),
    OutputSpec(
        "problems",
        "Number of problems with the run itself, counted apart from the tests: a shard that"
        " crashed, timed out or was cancelled, pytest stopped by collection errors, a report cut"
        " short or not written.",
    ),
    OutputSpec("duration-seconds", "Wall time of the test run in seconds (its longest shard)."),
    OutputSpec("junit-xml", "Path of the merged JUnit XML report."),
    OutputSpec("gpu", "The GPU the tests ran on, as the GPU reported it (or the spec asked for)."),
    OutputSpec(
        "cost-usd", "Estimated GPU cost of the run in US dollars (Modal's per-second prices)."
    ),
    OutputSpec(
        "gpu-memory-peak-mib",
        "The most GPU memory the tests had in use on any one GPU, in MiB, above what was in use"
        " before they started (empty when not measured: no GPU, or `gpu-memory: off`).",
    ),
    OutputSpec(
        "cheaper-gpu",
        "A cheaper Modal GPU type whose memory holds that peak plus 20 % (e.g. `L4`), or empty.",
    ),
    OutputSpec(
        "stopped-at-cost-cap",
        "`true` when `max-cost-usd` stopped the tests (the conclusion is then `timed out`),"
        " else `false`.",
    ),
    OutputSpec(
        "artifacts-path",
        "The folder the `artifacts` were copied into (one `shard-N/` folder per shard when there"
        " are several); empty when `artifacts` is.",
    ),
    OutputSpec(
        "new-failures",
        "Number of tests failing or erroring now that did not fail in the run compared with (the"
        " previous run of this job, or `compare-to`); empty when there was none to compare with.",
    ),
    OutputSpec(
        "fixed",
        "Number of tests that failed in the run compared with and pass now; empty when there was"
        " none to compare with.",
    ),
    OutputSpec(
        "tests-added",
        "Number of tests that the run compared with did not have; empty when not known (no run"
        " to compare with, or too many tests to keep their ids).",
    ),
    OutputSpec(
        "tests-removed",
        "Number of tests of the run compared with that this run lacks; empty when not known.",
    ),
    OutputSpec(
        "gpu-differences",
        "Number of tests whose outcome differs between the GPUs of the matrix comment, as this"
        " job left it (the jobs that published before it); empty when it has sections from one"
        " GPU type only, or no comment was written.",
    ),
    OutputSpec("comment-url", "URL of the PR comment written or updated, when there was one."),
)
