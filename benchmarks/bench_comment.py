"""The matrix comment's size with issue 18's comment features on: a 100,000-test suite with 5,000
failures run on 4 GPUs, each job comparing with its previous run and keeping its hidden test
state, the table of tests that differ by GPU on top.

    uv run python benchmarks/bench_comment.py [--tests 100000] [--failures 5000] [--gpus 4]

Each job is rendered as after_tests.finish renders it (render_comment within SECTION_LIMIT, with the
changes since its previous run, its section with the encoded state and its GPU), then the jobs
publish one after the other as github_comment does: parse the comment so far, put the job's
section in, compose the whole comment (compose_comment, GitHub's 65,536-character limit). The
previous runs' comment is built the same way first, so each job has a previous section to read.
Prints the length of each job's own body, of each state, of the table and of the final comment,
how much of each list the states kept, and the time each step took (best of --repeat).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from modal_gpu_action.github_actions.github_limits import COMMENT_CHARS
from modal_gpu_action.publish.previous_run import earlier_state
from modal_gpu_action.render.comment_sections import (
    Section,
    compose_comment,
    parse_comment,
    section_for,
)
from modal_gpu_action.render.gpu_differences import gpu_differences
from modal_gpu_action.render.markdown import SECTION_LIMIT, render_comment
from modal_gpu_action.report.comparison import compare
from modal_gpu_action.report.conclusion import Conclusion
from modal_gpu_action.report.results import CaseOutcome, CaseResult, TestCase, TestReport
from modal_gpu_action.report.test_state import decode, encode, state_of

GPUS = ("A100-80GB", "H100", "L40S", "T4", "L4", "A10G", "B200", "H200")
KEY = "GPU tests/gpu"
# The run's facts with every issue-18 line on: the memory peak, the cheaper-GPU hint, the files
# brought back (their longest wording, as gpu_usage.py and outcome.py write them).
FACTS = (
    ("Backend", "modal"),
    ("GPU memory peak", "shard 1/4: 61,234 MiB of 81,559 MiB; shard 2/4: 60,998 MiB of 81,559 MiB"),
    (
        "Cheaper GPU",
        "L40S would do (46,068 MiB per GPU holds the peak + 20%): about $0.5432 instead of"
        " $1.2345 on A100-80GB for the same 2h 31m of GPU time (an estimate that ignores speed"
        " differences)",
    ),
    ("Artifacts", "12 files (3.4 MB) in gpu-test-artifacts: shard-1/ to shard-4/"),
)
TRACEBACK = "\n".join(
    f"tests/gpu/test_module.py:{n}: in helper_{n}\n    result = helper_{n + 1}(tensor)"
    for n in range(40)
)


def report(tests: int, failures: int, gpu_index: int, run: int) -> TestReport:
    """A suite whose failures move a little between GPUs and between runs: every GPU fails the
    same `failures` tests, but for a few that pass elsewhere and a few fixed since the last run."""
    step = max(1, tests // max(1, failures))
    cases = []
    for n in range(tests):
        test_id = f"tests/gpu/test_module_{n % 250}.py::test_kernel[{n}-float16-cuda:0]"
        failing = n % step == 0 and n // step < failures
        if n % 997 == gpu_index + 3:  # differs by GPU
            failing = not failing
        if run == 1 and n % 1009 == 5:  # fixed or broken since the previous run
            failing = not failing
        if failing:
            case = TestCase(
                "",
                "",
                CaseOutcome.FAILED,
                duration=0.1,
                message=f"AssertionError: tensors differ at index {n}: " + "x" * 150,
                detail=f"{TRACEBACK}\nE   AssertionError: tensors differ at index {n}",
                nodeid=test_id,
            )
        elif n % 499 == 7:  # failed, then passed on a re-run (rerun-failures)
            case = TestCase(
                "",
                "",
                CaseOutcome.PASSED,
                duration=0.2,
                nodeid=test_id,
                reruns=(
                    CaseResult(
                        CaseOutcome.FAILED,
                        f"RuntimeError: CUDA error: an illegal memory access at {n}",
                        TRACEBACK,
                    ),
                ),
            )
        elif n % 100 == 1:
            case = TestCase(
                "", "", CaseOutcome.SKIPPED, message=f"needs {n % 3 + 2} GPUs", nodeid=test_id
            )
        else:
            case = TestCase("", "", CaseOutcome.PASSED, duration=0.01, nodeid=test_id)
        cases.append(case)
    return TestReport(cases=tuple(cases), wall_time=4321.0)


def job(
    suite: TestReport,
    gpu: str,
    previous: Section | None,
    timings: dict[str, float],
    *,
    features: bool = True,
) -> tuple[Section, str]:
    """One job as after_tests.finish renders it: its section and its own comment body (without the
    changes and the hidden state when not `features`: the reference)."""
    started = time.perf_counter()
    changes = None
    if previous is not None:
        changes = compare(suite, earlier_state(previous), against="the previous run")
    compared = time.perf_counter()
    comment = render_comment(
        suite,
        key=KEY,
        facts=(*FACTS, ("GPU", f"NVIDIA {gpu}")),
        run_url="https://github.com/octo-org/gpu-project/actions/runs/99",
        title=f"GPU tests on {gpu}",
        conclusion=Conclusion.FAILED,
        commit="a" * 40,
        ran_at=datetime.now(UTC),
        changes=changes,
        limit_chars=SECTION_LIMIT,
    )
    rendered = time.perf_counter()
    state = ""
    if features:
        state = encode(changes.now if changes is not None else state_of(suite))
    encoded = time.perf_counter()
    section = section_for(gpu, Conclusion.FAILED, suite, comment, state=state, gpu=f"NVIDIA {gpu}")
    for name, seconds in (
        ("compare", compared - started),
        ("render_comment", rendered - compared),
        ("encode state", encoded - rendered),
    ):
        timings[name] = min(timings.get(name, seconds), seconds)
    return section, comment


def publish_all(sections: list[Section], timings: dict[str, float]) -> str:
    """The jobs publish one after the other, each rebuilding the comment from what it holds."""
    body = ""
    seconds = 0.0
    for section in sections:
        started = time.perf_counter()
        current = parse_comment(body) if body else {}
        current[section.key] = section
        body = compose_comment(KEY, current, own_key=section.key)
        seconds = time.perf_counter() - started
    name = "parse + compose (the last job's)"
    timings[name] = min(timings.get(name, seconds), seconds)
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=100_000)
    parser.add_argument("--failures", type=int, default=5_000)
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    gpus = GPUS[: args.gpus]
    timings: dict[str, float] = {}
    started = time.perf_counter()
    previous_runs = [report(args.tests, args.failures, i, 0) for i in range(len(gpus))]
    runs = [report(args.tests, args.failures, i, 1) for i in range(len(gpus))]
    print(f"built {2 * len(gpus)} reports in {time.perf_counter() - started:.1f} s")

    for _ in range(args.repeat):
        previous = publish_all(
            [job(suite, gpu, None, {})[0] for suite, gpu in zip(previous_runs, gpus, strict=True)],
            {},
        )
        earlier = parse_comment(previous)
        jobs = [
            job(suite, gpu, earlier.get(gpu), timings)
            for suite, gpu in zip(runs, gpus, strict=True)
        ]
        final = publish_all([section for section, _ in jobs], timings)

    plain = [
        job(suite, gpu, None, {}, features=False) for suite, gpu in zip(runs, gpus, strict=True)
    ]
    reference = publish_all([section for section, _ in plain], {})
    sections = parse_comment(final)
    table = gpu_differences([(s.key, s.gpu, s.state) for s in sections.values() if s.state])
    rows = table.count("\n| `")
    print(f"\n{args.tests:,} tests, {args.failures:,} failures, {len(gpus)} GPUs")
    for (section, comment), suite in zip(jobs, runs, strict=True):
        state = decode(section.state)
        assert state is not None
        kept = f"{len(state.failing_ids):,} of {state.failed + state.errors:,} failing ids"
        kept += ", all ids" if state.all_ids is not None else ", no list of all ids"
        covered = sum(1 for case in suite.cases if state.covers(case.id))
        print(
            f"  {section.key}: own body {len(comment):,} chars (limit {SECTION_LIMIT:,}),"
            f" state {len(section.state):,} chars ({kept}; outcomes known for"
            f" {covered:,} of {len(suite.cases):,} tests)"
        )
    shortened = [key for key, s in sections.items() if s.shortened]
    with_state = [key for key, s in sections.items() if s.state]
    print(f"  table of tests that differ by GPU: {len(table):,} chars, {rows} rows shown")
    print(
        f"  final comment: {len(final):,} chars (GitHub's limit {COMMENT_CHARS:,});"
        f" bodies shortened to a link: {shortened or 'none'}; states kept: {with_state}"
    )
    print(
        f"  reference, the same jobs without these features: {len(reference):,} chars"
        f" (own bodies {', '.join(f'{len(comment):,}' for _, comment in plain)});"
        f" bodies shortened: {[k for k, s in parse_comment(reference).items() if s.shortened]}"
    )
    print("  changes block in the last job's body:", "Changes since the previous run" in final)
    print("  flaky section in the last job's body:", "Flaky (" in final)
    print(
        "  memory peak and cheaper GPU in it:",
        "GPU memory peak" in final and "Cheaper GPU" in final,
    )
    print("  best of", args.repeat, "runs (seconds, per job):")
    for name, seconds in timings.items():
        print(f"    {name}: {seconds:.3f}")
    assert len(final) <= COMMENT_CHARS, "the comment is over GitHub's limit"


if __name__ == "__main__":
    main()
