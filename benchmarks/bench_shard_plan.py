"""What balancing by `shard-durations` costs each shard, and the host once, with a large file.

    uv run python benchmarks/bench_shard_plan.py [--mb 16] [--shards 4] [--repeat 5]
    uv run python benchmarks/bench_shard_plan.py --old-src DIR   # DIR: an older tree's src/

Generates bench_runner's suite (2,000 tests) and a durations JUnit file of about --mb MB that
knows every one of them, padded with other cases (pytest's shape, 1% failures with tracebacks)
as a large project's report would be (16 MB: about 100,000 cases). Then, each in a fresh pytest, alternating, for shard 1 of --shards:
  none      pytest --collect-only -q -p ...sharding --shard-index 0 --shard-count N TESTS
  plan      the same with --shard-plan=FILE: the plan the host made of the durations file
            (what the runner hands each shard now)
  [old]     with --old-src: the older tree's plugin with --shard-durations=JUNIT (every shard
            parsed the whole file itself)
The per-spawn cost is the median of the paired differences KIND - none (wall and CPU). The host's
one-time cost (read_durations + ShardPlan.balance + to_dict) is timed in this process. Results
also go to benchmarks/out/shard_plan.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape

from bench_runner import generate_suite

from modal_gpu_action.backends.shard_durations import read_durations
from modal_gpu_action.container.names import junit_names

HERE = Path(__file__).resolve().parent
SOURCE = Path(__file__).resolve().parents[1] / "src"


def collected(suite: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=suite, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [line for line in done.stdout.splitlines() if "::" in line]


def write_durations(path: Path, nodeids: list[str], megabytes: float) -> int:
    """The suite's tests with times, then padding cases until the file has `megabytes` MB."""
    text = "\n".join(f"tests/test_other.py:{n}: in helper_{n}" for n in range(30))
    cases = 0
    with path.open("w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">')
        out.write('<testsuite name="pytest">')
        for n, nodeid in enumerate(nodeids):
            classname, name = (escape(part, {'"': "&quot;"}) for part in junit_names(nodeid))
            out.write(f'<testcase classname="{classname}" name="{name}" time="{n % 7 / 10}"/>')
            cases += 1
        while out.tell() < megabytes * 1e6:
            attributes = (
                f'classname="tests.gpu.test_other_{cases % 250}" name="test_kernel[{cases}-cuda:0]"'
                f' file="tests/gpu/test_other_{cases % 250}.py" line="{cases % 400}" time="0.05"'
            )
            if cases % 100 == 0:  # 1% failures, with their tracebacks
                out.write(
                    f'<testcase {attributes}><failure message="boom">{escape(text)}</failure>'
                    "</testcase>"
                )
            else:
                out.write(f"<testcase {attributes}/>")
            cases += 1
        out.write("</testsuite></testsuites>")
    return cases


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{command} exited {done.returncode}:\n{done.stdout[-3000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=16.0)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--old-src", type=Path, help="an older tree's src/ (its sharding plugin)")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "shard_plan.json")
    args = parser.parse_args()
    # As an installed tool runs: modules' bytecode cached (the warm-up run writes it), not every
    # module compiled again in every run as PYTHONDONTWRITEBYTECODE=1 would have it.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False

    with tempfile.TemporaryDirectory(prefix="bench-shard-plan-") as name:
        scratch = Path(name)
        (scratch / "suite").mkdir()
        suite = generate_suite(scratch / "suite", 2000)
        nodeids = collected(suite)
        junit = scratch / "durations.xml"
        cases = write_durations(junit, nodeids, args.mb)
        junit_bytes = junit.stat().st_size

        started, cpu_started = time.perf_counter(), time.process_time()
        durations = read_durations(junit)
        plan = durations.plan(args.shards)
        assert plan is not None, durations.unusable
        plan_json = json.dumps(plan.to_dict())
        host = (time.perf_counter() - started, time.process_time() - cpu_started)
        plan_file = scratch / "plan.json"
        plan_file.write_text(plan_json)

        base = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        base += ["-p", "modal_gpu_action.container.sharding", "--shard-index", "0"]
        base += ["--shard-count", str(args.shards)]
        env = dict(os.environ, PYTHONPATH=str(SOURCE))
        kinds: dict[str, tuple[list[str], dict[str, str]]] = {
            "none": ([*base, "tests"], env),
            "plan": ([*base, f"--shard-plan={plan_file}", "tests"], env),
        }
        if args.old_src:
            old_env = dict(os.environ, PYTHONPATH=str(args.old_src.resolve()))
            kinds["old"] = ([*base, f"--shard-durations={junit}", "tests"], old_env)
        times: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
        for repetition in range(args.repeat):
            order = list(kinds) if repetition % 2 == 0 else list(reversed(kinds))
            for kind in order:
                command, kind_env = kinds[kind]
                times[kind].append(timed(command, suite, kind_env))

    def cost(kind: str, which: int) -> float:
        pairs = zip(times[kind], times["none"], strict=True)
        return statistics.median(a[which] - b[which] for a, b in pairs)

    figures = {
        "command": " ".join(sys.argv),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "load_average": os.getloadavg(),
        "durations_bytes": junit_bytes,
        "durations_cases": cases,
        "collected": len(nodeids),
        "shards": args.shards,
        "plan_bytes": len(plan_json),
        "host_once_seconds": {"wall": host[0], "cpu": host[1]},
        "runs": times,
        "per_spawn_seconds": {
            kind: {"wall": cost(kind, 0), "cpu": cost(kind, 1)} for kind in kinds if kind != "none"
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))
    print(
        f"durations file {junit_bytes / 1e6:.1f} MB, {cases:,} cases ({len(nodeids):,} of them collected);"
        f" {args.shards} shards; plan {len(plan_json):,} bytes; {args.repeat} repetitions;"
        f" load {figures['load_average'][0]:.1f}"
    )
    print(f"  host, once: read + balance {host[0]:.2f} s wall, {host[1]:.2f} s cpu")
    for kind, spent in figures["per_spawn_seconds"].items():
        print(f"  per spawn, {kind} - none: wall {spent['wall']:+.3f} s, cpu {spent['cpu']:+.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
