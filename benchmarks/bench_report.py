"""Parse and render a large pytest report; compare with an lxml `iterparse` pass over it.

    uv run python benchmarks/bench_report.py [--cases 100000] [--failures 1000] [--repeat 7]
        [--kinds lxml,ours,junitparser] [--nodeids]

Writes a pytest-like JUnit file (xunit1) to benchmarks/out/, then measures, each in a fresh
interpreter so that peak RSS is the process's own:
- ours: load_reports + render_summary + render_comment + annotation_commands (what the `report`
  command does, less writing the two files); then, timed apart, the merged JUnit file written
  (write_junit_xml, what `run` adds);
- lxml: `etree.iterparse` (safe options) over the same file, reading each case's name,
  classname, file, line and time and each result child's message, type and text, and clearing
  each case once read: the least work that gives what a report needs;
- junitparser (the earlier reference): JUnitXml.fromfile and a read of every case's name,
  classname, time and results.
Times exclude interpreter start and imports; peak RSS is the whole process (ru_maxrss). The kinds
alternate, one repetition after another; the figures are medians over the repetitions, and the
ratio is the median of the per-repetition ratios (ours / lxml), wall and CPU time.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

OUT = Path(__file__).parent / "out"


def generate(path: Path, cases: int, failures: int, *, nodeids: bool = False) -> None:
    """A pytest-shaped report: `failures` failures with 40-frame tracebacks, 1% skips. With
    `nodeids`, each case has the `nodeid` attribute the action's pytest plugin adds (as pytest
    writes the report in a `run`; pytest alone writes none)."""
    rng = random.Random(2026)
    traceback = "\n".join(
        f"tests/gpu/test_module.py:{n}: in helper_{n}\n    result = helper_{n + 1}(tensor)"
        for n in range(40)
    )
    step = max(1, cases // max(1, failures))
    with path.open("w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">')
        out.write(
            f'<testsuite name="pytest" errors="0" failures="{failures}" skipped="0" '
            f'tests="{cases}" time="4321.000" timestamp="2026-11-23T00:00:00" hostname="gpu">'
        )
        for n in range(cases):
            module = f"tests.gpu.test_module_{n % 250}"
            name, file = f"test_kernel[{n}-float16-cuda:0]", f"tests/gpu/test_module_{n % 250}.py"
            nodeid = f'nodeid="{file}::{name}" ' if nodeids else ""
            attrs = (
                f'classname="{module}" name="{name}" file="{file}" line="{n % 400}" '
                f'{nodeid}time="{rng.random() * 0.1:.3f}"'
            )
            if n % step == 0 and n // step < failures:
                message = quoteattr(f"AssertionError: tensors differ at index {n}: " + "x" * 150)
                body = escape(f"{traceback}\nE   AssertionError: tensors differ at index {n}")
                out.write(
                    f"<testcase {attrs}><failure message={message}>{body}</failure></testcase>"
                )
            elif n % 100 == 1:
                out.write(
                    f'<testcase {attrs}><skipped type="pytest.skip" message="needs {n % 3 + 2} GPUs">'
                    f"tests/gpu/conftest.py:12: needs {n % 3 + 2} GPUs</skipped></testcase>"
                )
            else:
                out.write(f"<testcase {attrs}/>")
        out.write("</testsuite></testsuites>")


def measure_ours(path: Path) -> dict[str, float]:
    from modal_gpu_action.render.annotations import annotation_commands
    from modal_gpu_action.render.markdown import render_comment, render_summary
    from modal_gpu_action.report.junit_writer import write_junit_xml
    from modal_gpu_action.report.merging import load_reports

    started, cpu_started = time.perf_counter(), time.process_time()
    report = load_reports([path])
    parsed, cpu_parsed = time.perf_counter(), time.process_time()
    facts = [("GPU", "NVIDIA H100 80GB HBM3 x1"), ("Backend", "modal")]
    summary = render_summary(report, facts=facts)
    comment = render_comment(report, key="bench", facts=facts)
    annotation_commands(report)
    finished, cpu_finished = time.perf_counter(), time.process_time()
    # What `run` writes besides: the merged JUnit file, streamed (not part of `seconds`).
    with (OUT / "merged.xml").open("wb") as out:
        write_junit_xml(report, out)
    written = time.perf_counter()
    return {
        "seconds": finished - started,
        "cpu_seconds": cpu_finished - cpu_started,
        "parse_seconds": parsed - started,
        "parse_cpu_seconds": cpu_parsed - cpu_started,
        "render_seconds": finished - parsed,
        "write_seconds": written - finished,
        "summary_bytes": len(summary.encode()),
        "comment_chars": len(comment),
        "tests": report.totals.tests,
    }


def measure_lxml(path: Path) -> dict[str, float]:
    from lxml import etree

    started, cpu_started = time.perf_counter(), time.process_time()
    tests = 0
    events = etree.iterparse(
        str(path),
        events=("end",),
        tag="testcase",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
    )
    for _, case in events:
        tests += 1
        get = case.get
        _ = (get("name"), get("classname"), get("file"), get("line"), get("time"))
        for result in case:
            _ = (result.get("message"), result.get("type"), result.text)
        case.clear(keep_tail=True)
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "tests": tests,
    }


def measure_junitparser(path: Path) -> dict[str, float]:
    from junitparser import JUnitXml

    started, cpu_started = time.perf_counter(), time.process_time()
    tests = 0
    for suite in JUnitXml.fromfile(str(path)):
        for case in suite:
            tests += 1
            _ = (case.name, case.classname, case.time)
            for result in case.result:
                _ = (result.message, result.text)
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "tests": tests,
    }


def run_fresh(kind: str, path: Path) -> dict[str, float]:
    """One measurement in a new interpreter; adds its peak RSS in MB."""
    completed = subprocess.run(
        [sys.executable, __file__, "--measure", kind, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(completed.stdout)
    return result


MEASURES = {"ours": measure_ours, "lxml": measure_lxml, "junitparser": measure_junitparser}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--failures", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--kinds", default="lxml,ours,junitparser")
    parser.add_argument(
        "--nodeids",
        action="store_true",
        help="each case with the `nodeid` attribute the action's plugin adds (a run's pytest"
        " report; pytest alone writes none)",
    )
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure:
        kind, file = args.measure
        result = MEASURES[kind](Path(file))
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    OUT.mkdir(exist_ok=True)
    path = OUT / f"junit-{args.cases}{'-nodeids' if args.nodeids else ''}.xml"
    generate(path, args.cases, args.failures, nodeids=args.nodeids)
    print(
        f"{path}: {args.cases:,} cases, {args.failures:,} failures, {path.stat().st_size:,} bytes"
    )
    kinds = args.kinds.split(",")
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for _ in range(args.repeat):
        for kind in kinds:
            runs[kind].append(run_fresh(kind, path))
    for kind, results in runs.items():
        wall = [result["seconds"] for result in results]
        cpu = [result["cpu_seconds"] for result in results]
        rss = [result["peak_rss_mb"] for result in results]
        print(
            f"{kind:12} wall median {statistics.median(wall):.2f} s (best {min(wall):.2f}); "
            f"CPU median {statistics.median(cpu):.2f} s (best {min(cpu):.2f}); "
            f"peak RSS median {statistics.median(rss):.0f} MB (max {max(rss):.0f})"
        )
    if "ours" not in runs:
        return
    ours = runs["ours"]
    print(
        f"ours: parse median {statistics.median(r['parse_seconds'] for r in ours):.2f} s "
        f"(CPU {statistics.median(r['parse_cpu_seconds'] for r in ours):.2f} s), "
        f"render median {statistics.median(r['render_seconds'] for r in ours):.2f} s; "
        f"merged JUnit written in {statistics.median(r['write_seconds'] for r in ours):.2f} s; "
        f"summary {ours[0]['summary_bytes']:,} bytes, comment {ours[0]['comment_chars']:,} chars"
    )
    for reference in (kind for kind in kinds if kind != "ours"):
        for mine_measure, measure in (
            ("parse_seconds", "seconds"),
            ("parse_cpu_seconds", "cpu_seconds"),
            ("seconds", "seconds"),
            ("cpu_seconds", "cpu_seconds"),
        ):
            ratios = [
                mine[mine_measure] / theirs[measure]
                for mine, theirs in zip(ours, runs[reference], strict=True)
            ]
            what = "parse only" if mine_measure.startswith("parse") else "parse + render"
            print(
                f"ours ({what}) / {reference} ({'wall' if measure == 'seconds' else 'CPU'},"
                f" median of {len(ratios)} paired runs): {statistics.median(ratios):.2f}x"
            )


if __name__ == "__main__":
    main()
