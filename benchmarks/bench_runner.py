"""The runner's overhead against plain pytest on the same suite.

    uv run python benchmarks/bench_runner.py [--tests 200] [--repeat 7] [--suite DIR]
    uv run python benchmarks/bench_runner.py --tests 20000 --repeat 3 --kinds junit,runner,run
    PYTHONPATH=src python3 benchmarks/bench_runner.py      # where only python3 + pytest exist

Each repetition runs, in a rotating order so that none always goes first:
  plain    python -m pytest -q -p no:cacheprovider TESTS
  junit    the same with --junitxml=FILE -o junit_family=xunit1 (pytest's own cost of the report
           the runner asks for: the fair reference)
  runner   container.run.run_tests on the same suite, output streamed into memory: GPU probe,
           the plugins' copy, the progress record, the JUnit read back (the whole call, timed
           from outside)
  run      the whole command, `python -m modal_gpu_action run --backend local` on the same
           suite and arguments: start-up, the runner, parsing, rendering, the merged JUnit file
and reports the medians, of wall time and of CPU time (user + system, this process's and its
children's: steadier than wall time on a shared machine). The overhead is the median of the
per-repetition differences KIND - reference (drifts of the machine cancel out), the reference
being junit when it ran, else plain; target: under max(1 s, 5% of the reference).
Without --suite it generates TESTS quick tests (20 per file) in a temporary folder.
Results also go, as JSON, to benchmarks/out/runner.json (ignored by git).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
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


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds, and CPU seconds of this process and its children, of `action()`."""
    cpu_started = _cpu()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started, _cpu() - cpu_started


def _cpu() -> float:
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=200, help="generated tests (default 200)")
    parser.add_argument("--repeat", type=int, default=11, help="repetitions (default 11)")
    parser.add_argument("--suite", type=Path, help="an existing project instead (pytest's root)")
    parser.add_argument("--test-path", default="tests", help="inside the suite (default tests)")
    parser.add_argument(
        "--kinds", default="plain,junit,runner", help=f"of {','.join(KINDS)} (default: 3 first)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "out" / "runner.json")
    args = parser.parse_args()
    # As an installed tool runs: modules' bytecode cached (the warm-up run writes it), not every
    # module compiled again in every run as PYTHONDONTWRITEBYTECODE=1 would have it.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False
    kinds = [kind for kind in KINDS if kind in args.kinds.split(",")]
    reference = "junit" if "junit" in kinds else "plain"

    with tempfile.TemporaryDirectory(prefix="bench-runner-") as scratch:
        suite = args.suite.resolve() if args.suite else generate_suite(Path(scratch), args.tests)
        pytest_args = ["-q", "-p", "no:cacheprovider"]
        base = [sys.executable, "-m", "pytest", *pytest_args, args.test_path]
        junit = str(Path(scratch) / "plain.xml")
        request = RunRequest(str(suite), args.test_path, pytest_args, None, {})
        command = [sys.executable, "-m", "modal_gpu_action", "run", "--backend", "local"]
        command += ["--working-directory", str(suite), "--test-path", args.test_path]
        command += ["--pytest-args", " ".join(pytest_args)]
        command += ["--junit-xml", str(Path(scratch) / "merged.xml")]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
        env["MODAL_GPU_ACTION_PYTHON"] = sys.executable

        def plain() -> None:
            subprocess.run(base, cwd=suite, capture_output=True, check=False)

        def with_junit() -> None:
            subprocess.run(
                [*base, f"--junitxml={junit}", "-o", "junit_family=xunit1"],
                cwd=suite,
                capture_output=True,
                check=False,
            )

        def runner() -> None:
            result = run_tests(request, stream=io.StringIO())
            assert result.exit_code == 0, result.output_tail

        def run_command() -> None:
            done = subprocess.run(command, cwd=suite, env=env, capture_output=True, check=False)
            assert done.returncode == 0, done.stdout[-2000:]

        every = {"plain": plain, "junit": with_junit, "runner": runner, "run": run_command}
        runs = {kind: every[kind] for kind in kinds}
        times: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        order = list(runs)
        for name in runs:
            if name in ("runner", "run"):
                runs[name]()  # warm the file cache and the bytecode once, not timed
        for repetition in range(args.repeat):
            turn = order[repetition % len(order) :] + order[: repetition % len(order)]
            for name in turn:
                wall, cpu_seconds = timed(runs[name])
                times[name].append(wall)
                cpu[name].append(cpu_seconds)
        probe = [timed(probe_gpu)[0] for _ in range(args.repeat)]

    median = {name: statistics.median(values) for name, values in times.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    target = max(1.0, 0.05 * median[reference])

    def paired(values: dict[str, list[float]], name: str) -> float:
        # each repetition ran all kinds back to back: their differences cancel slow drifts
        pairs = zip(values[name], values[reference], strict=True)
        return statistics.median(a - b for a, b in pairs)

    overheads = {name: paired(times, name) for name in runs if name != reference}
    overheads_cpu = {name: paired(cpu, name) for name in runs if name != reference}
    measured = [name for name in ("runner", "run") if name in overheads]
    gpu = probe_gpu()
    figures = {
        "command": " ".join(sys.argv),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "load_average": os.getloadavg(),
        "gpu": gpu.describe(),
        "suite": str(args.suite) if args.suite else f"{args.tests} generated tests",
        "repeat": args.repeat,
        "reference": reference,
        "seconds": times,
        "cpu_seconds": cpu,
        "median_seconds": median,
        "median_cpu_seconds": median_cpu,
        "gpu_probe_median_seconds": statistics.median(probe),
        "overhead_seconds": overheads,  # medians of the paired differences KIND - reference
        "overhead_cpu_seconds": overheads_cpu,
        "target_seconds": target,
        "within_target": all(overheads[name] < target for name in measured),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))
    print(f"suite: {figures['suite']}; {args.repeat} repetitions; medians")
    print(f"python {figures['python']} on {figures['machine']}; GPU: {figures['gpu']}")
    for name in runs:
        walls = ", ".join(f"{t:.3f}" for t in times[name])
        print(f"  {name:<7} wall {median[name]:7.3f} s  cpu {median_cpu[name]:7.3f} s  ({walls})")
    print(f"  gpu probe alone {figures['gpu_probe_median_seconds']:.3f} s")
    for name, overhead in overheads.items():
        print(
            f"{name} - {reference} (median of paired differences): wall {overhead:+.3f} s"
            f" ({overhead / median[reference]:+.1%}), cpu {overheads_cpu[name]:+.3f} s"
            f" ({overheads_cpu[name] / median_cpu[reference]:+.1%})"
        )
    print(f"target < {target:.2f} s: {'met' if figures['within_target'] else 'MISSED'}")
    return 0 if figures["within_target"] else 1


KINDS = ("plain", "junit", "runner", "run")


if __name__ == "__main__":
    raise SystemExit(main())
