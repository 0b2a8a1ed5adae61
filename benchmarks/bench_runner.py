"""The runner's overhead against plain pytest on the same suite.

    uv run python benchmarks/bench_runner.py [--tests 200] [--repeat 7] [--suite DIR]
    PYTHONPATH=src python3 benchmarks/bench_runner.py      # where only python3 + pytest exist

Each repetition runs, in a rotating order so that none always goes first:
  plain    python -m pytest -q -p no:cacheprovider TESTS
  junit    the same with --junitxml (pytest's own cost of the report the runner asks for)
  runner   container.run.run_tests on the same suite, output streamed into memory: GPU probe,
           the plugins' copy, the progress record, the JUnit read back (the whole call, timed
           from outside)
and reports the medians. The overhead is the median of the per-repetition differences
runner - plain (drifts of the machine cancel out); target: under max(1 s, 5% of plain).
Without --suite it generates TESTS quick tests (20 per file) in a temporary folder.
Results also go, as JSON, to benchmarks/out/runner.json (ignored by git).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from modal_gpu_action.container.probe import probe_gpu
from modal_gpu_action.container.protocol import RunRequest
from modal_gpu_action.container.run import run_tests

HERE = Path(__file__).resolve().parent


def generate_suite(folder: Path, count: int) -> Path:
    (folder / "pytest.ini").write_text("[pytest]\n")
    tests = folder / "tests"
    tests.mkdir()
    per_file = 20
    for start in range(0, count, per_file):
        body = ["import pytest", ""]
        for n in range(start, min(start + per_file, count)):
            if n % 10 == 9:
                body += [
                    '@pytest.mark.parametrize("x", [1, 2])',
                    f"def test_case_{n}(x):",
                    "    assert x * 2 > x",
                    "",
                ]
            else:
                body += [f"def test_case_{n}():", f"    assert sum(range({n})) >= 0", ""]
        (tests / f"test_file_{start // per_file:03d}.py").write_text("\n".join(body))
    return folder


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=200, help="generated tests (default 200)")
    parser.add_argument("--repeat", type=int, default=11, help="repetitions (default 11)")
    parser.add_argument("--suite", type=Path, help="an existing project instead (pytest's root)")
    parser.add_argument("--test-path", default="tests", help="inside the suite (default tests)")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "runner.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-runner-") as scratch:
        suite = args.suite.resolve() if args.suite else generate_suite(Path(scratch), args.tests)
        base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", args.test_path]
        junit = str(Path(scratch) / "plain.xml")
        request = RunRequest(str(suite), args.test_path, ["-q", "-p", "no:cacheprovider"], None, {})

        def plain() -> None:
            subprocess.run(base, cwd=suite, capture_output=True, check=False)

        def with_junit() -> None:
            subprocess.run([*base, f"--junitxml={junit}"], cwd=suite, capture_output=True)

        def runner() -> None:
            result = run_tests(request, stream=io.StringIO())
            assert result.exit_code == 0, result.output_tail

        runs = {"plain": plain, "junit": with_junit, "runner": runner}
        times: dict[str, list[float]] = {name: [] for name in runs}
        order = list(runs)
        runner()  # warm the file cache and the bytecode once, not timed
        for repetition in range(args.repeat):
            turn = order[repetition % 3 :] + order[: repetition % 3]
            for name in turn:
                times[name].append(timed(runs[name]))
        probe = [timed(probe_gpu) for _ in range(args.repeat)]

    median = {name: statistics.median(values) for name, values in times.items()}
    # each repetition ran all three back to back: their differences cancel slow drifts
    paired = [r - p for r, p in zip(times["runner"], times["plain"], strict=True)]
    paired_junit = [r - j for r, j in zip(times["runner"], times["junit"], strict=True)]
    overhead = statistics.median(paired)
    target = max(1.0, 0.05 * median["plain"])
    gpu = probe_gpu()
    figures = {
        "command": " ".join(sys.argv),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
        "gpu": gpu.describe(),
        "suite": str(args.suite) if args.suite else f"{args.tests} generated tests",
        "repeat": args.repeat,
        "seconds": times,
        "median_seconds": median,
        "gpu_probe_median_seconds": statistics.median(probe),
        "overhead_seconds": overhead,  # median of the paired differences runner - plain
        "overhead_vs_junit_seconds": statistics.median(paired_junit),
        "overhead_ratio": median["runner"] / median["plain"],
        "target_seconds": target,
        "within_target": overhead < target,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))
    print(f"suite: {figures['suite']}; {args.repeat} repetitions; median wall time")
    print(f"python {figures['python']} on {figures['machine']}; GPU: {figures['gpu']}")
    for name in runs:
        print(
            f"  {name:<7} {median[name]:7.3f} s   (all: {', '.join(f'{t:.3f}' for t in times[name])})"
        )
    print(f"  gpu probe alone {figures['gpu_probe_median_seconds']:.3f} s")
    print(
        f"overhead runner - plain (median of paired differences): {overhead:+.3f} s;"
        f" ratio of medians {figures['overhead_ratio']:.3f};"
        f" target < {target:.2f} s: {'met' if figures['within_target'] else 'MISSED'}"
    )
    print(f"runner - (pytest with --junitxml): {figures['overhead_vs_junit_seconds']:+.3f} s")
    return 0 if figures["within_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
