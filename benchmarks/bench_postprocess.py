"""What `run --backend local` does after pytest exits, against `report` on the same JUnit file.

    uv run python benchmarks/bench_postprocess.py [--cases 100000] [--failures 1000] [--repeat 5]

pytest itself is taken out: the local backend is pointed (MODAL_GPU_ACTION_PYTHON) at a shell
script standing in for `python -m pytest`, which waits as long as pytest's own start takes
(--pytest-start, 0.3 s: `python -m pytest` on an empty folder took 0.42-0.54 s on this VM), then
copies a prepared JUnit file (bench_report.py's: pytest's shape, 1,000 failures with 40-frame
tracebacks, 1% skips, and on every case the `nodeid` attribute the action's plugin adds, as a
run's pytest writes it) to the --junitxml path and a prepared progress record (as the plugin writes
it: the collected tests, then 2 lines a test) to the record's path, and exits 1 as pytest does
with failures. What is left of `run` is the host's side: start-up, settings, the runner (the
plugins' copy; the GPU probe only where it outlasts pytest's start, as it would in a real run),
reading back what "pytest" left, parsing, merging, rendering the summary and the comment,
writing the merged JUnit file.

Each repetition runs, in alternating order:
  run        python -m modal_gpu_action run --backend local ... --junit-xml OUT --summary-file
             --comment-file (through the stand-in)
  report     python -m modal_gpu_action report JUNIT --summary-file --comment-file
each under /usr/bin/time (wall, user + system CPU, peak RSS). The stand-in times its own wait
and copying inside each run (/usr/bin/time again): a `cp` of a 62 MB record here took from
0.02 s to 0.17 s from one copy to the next, so a median of separate stand-in runs would leave
that spread in the figure. run's post-processing is run - that run's stand-in (the stand-in's shell start-up, a
millisecond or two, stays in); the ratio is post-processing / report per repetition, and its
median is the figure (target: within 1.2x). `report` writes no merged JUnit file; `run` does
(it is one of its outputs), so that writing is inside the ratio. Results also go to
benchmarks/out/postprocess.json.

With --instructions, `run` and `report` also run once each under valgrind's callgrind, which
counts the instructions the process executes (not the stand-in: a child it does not trace):
within half a percent for the same inputs whatever else the machine is doing, so their ratio is
the steady figure on a shared machine where wall-time ratios move by a tenth from one run to the
next; with it, that ratio decides the exit code (the wall-time verdict is printed beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_report import generate

HERE = Path(__file__).resolve().parent

STAND_IN = """#!/bin/sh
# Stands in for `python -m pytest ...`: waits as long as pytest's own start takes, copies what
# pytest would have left, exits 1 (failures). Timed where it happens, so that each run's own
# stand-in is taken out of it.
for arg in "$@"; do
  case "$arg" in --junitxml=*) xml="${arg#--junitxml=}" ;; esac
done
/usr/bin/time -f "%e %U %S %M" -o "$BENCH_STAND_IN_TIMES" sh -c \\
  'sleep "$BENCH_PYTEST_START" && cp "$BENCH_JUNIT" "$1" && cp "$BENCH_RECORD" "$2"' \\
  sh "$xml" "$MODAL_GPU_ACTION_PROGRESS_FILE"
echo "$# arguments; =========== 1 failed in 1.00s ==========="
exit 1
"""


def write_record(path: Path, cases: int) -> None:
    """The progress record of `cases` passing tests as the plugin (container/progress.py) writes
    it: the collected tests in batches of about 4,000 characters, then two lines a test (its
    start, its teardown report). Only its size matters here: a run that ends normally never
    reads it, and removes it with pytest's other files."""
    ids = [
        f"tests/gpu/test_module_{n % 250}.py::test_kernel[{n}-float16-cuda:0]" for n in range(cases)
    ]
    with path.open("w", encoding="utf-8") as out:
        out.write('{"e": "configure", "junit_prefix": "", "pid": 1}\n{"e": "sessionstart"}\n')
        batch: list[list[object]] = []
        size = 0
        for n, nodeid in enumerate(ids):
            batch.append([nodeid, f"tests/gpu/test_module_{n % 250}.py", n % 400])
            size += len(nodeid) + 48
            if size >= 4000:
                out.write(json.dumps({"e": "collected", "items": batch}) + "\n")
                batch, size = [], 0
        if batch:
            out.write(json.dumps({"e": "collected", "items": batch}) + "\n")
        for n, nodeid in enumerate(ids):
            quoted = json.dumps(nodeid)
            out.write(
                f'{{"e":"start","nodeid":{quoted},'
                f'"location":["tests/gpu/test_module_{n % 250}.py",{n % 400}]}}\n'
                f'{{"e":"report","nodeid":{quoted},"when":"teardown",'
                f'"outcome":"passed","duration":0.000369}}\n'
            )
        out.write('{"e": "sessionfinish", "exitstatus": 1}\n')


def timed(command: list[str], env: dict[str, str], cwd: Path, scratch: Path) -> dict[str, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of `command`."""
    measured = scratch / "time.txt"
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(measured), *command],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"{shlex.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return parse_time(measured.read_text())


def parse_time(text: str) -> dict[str, float]:
    """/usr/bin/time -f "%e %U %S %M"'s line as wall, CPU (user + system), user and system
    seconds, and peak RSS (MB)."""
    wall, user, system, rss_kb = text.split()[-4:]
    return {
        "wall": float(wall),
        "cpu": float(user) + float(system),
        "user": float(user),
        "system": float(system),
        "rss_mb": int(rss_kb) / 1024,
    }


def instructions(command: list[str], env: dict[str, str], cwd: Path) -> int:
    """The instructions `command`'s process executes (callgrind; its children are not traced)."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode not in (0, 1) or not found:
        raise SystemExit(
            f"callgrind: {shlex.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}"
        )
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--failures", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "postprocess.json")
    parser.add_argument(
        "--instructions", action="store_true", help="also count instructions (valgrind callgrind)"
    )
    parser.add_argument(
        "--pytest-start",
        type=float,
        default=0.3,
        help="seconds the stand-in waits before leaving its files, as pytest's own start does"
        " (python -m pytest on an empty folder: 0.42-0.54 s on this VM); what the runner does"
        " beside pytest's start (the GPU probe) then stays out of the figure, as in a real run",
    )
    parser.add_argument(
        "--run-args",
        default="",
        help="more arguments for `run`, e.g. '--gpu-memory off' on a GPU machine, where the"
        " memory sampler's nvidia-smi would otherwise start and stop inside the figure",
    )
    args = parser.parse_args()
    if args.instructions and not shutil.which("valgrind"):
        parser.error("--instructions needs valgrind (Debian: apt-get install valgrind)")
    # As an installed tool runs: modules' bytecode cached (the warm-up run writes it), not every
    # module compiled again in every run as PYTHONDONTWRITEBYTECODE=1 would have it.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False

    with tempfile.TemporaryDirectory(prefix="bench-postprocess-") as name:
        scratch = Path(name)
        project = scratch / "project"
        (project / "tests").mkdir(parents=True)
        junit, record = scratch / "pytest.xml", scratch / "record.jsonl"
        generate(junit, args.cases, args.failures, nodeids=True)
        write_record(record, args.cases)
        stand_in = scratch / "python"
        stand_in.write_text(STAND_IN)
        stand_in.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
        stand_in_times = scratch / "stand-in-time.txt"
        env |= {
            "MODAL_GPU_ACTION_PYTHON": str(stand_in),
            "BENCH_JUNIT": str(junit),
            "BENCH_RECORD": str(record),
            "BENCH_STAND_IN_TIMES": str(stand_in_times),
            "BENCH_PYTEST_START": str(args.pytest_start),
        }
        outputs = ["--summary-file", str(scratch / "s.md"), "--comment-file", str(scratch / "c.md")]
        py = sys.executable
        merged = scratch / "merged.xml"
        commands = {
            "run": [py, "-m", "modal_gpu_action", "run", "--backend", "local", "--working-directory",
                    str(project), "--junit-xml", str(merged), *outputs,
                    *shlex.split(args.run_args)],
            "report": [py, "-m", "modal_gpu_action", "report", str(junit), *outputs],
        }  # fmt: skip
        timed(commands["run"], env, project, scratch)  # warm the file cache and bytecode
        times: dict[str, list[dict[str, float]]] = {name: [] for name in ("stand-in", *commands)}
        for repetition in range(args.repeat):
            order = list(commands) if repetition % 2 == 0 else list(reversed(commands))
            for name in order:
                stand_in_times.unlink(missing_ok=True)
                # As in a CI job, which starts from a fresh checkout: no merged file of an earlier
                # run to replace (replacing one frees its pages: 18 ms more at 100,000 cases).
                merged.unlink(missing_ok=True)
                times[name].append(timed(commands[name], env, project, scratch))
                if name == "run":  # what this run's stand-in itself took, timed inside it
                    if not stand_in_times.exists():
                        raise SystemExit(
                            "`run` never started the stand-in: can the project folder import"
                            " modal_gpu_action (a relative PYTHONPATH cannot)?"
                        )
                    times["stand-in"].append(parse_time(stand_in_times.read_text()))
        junit_bytes, record_bytes = junit.stat().st_size, record.stat().st_size
        counted = {}
        if args.instructions:
            counted = {
                name: instructions(commands[name], env, project) for name in ("run", "report")
            }

    def post(key: str) -> list[float]:
        """run's post-processing (run - its stand-in) in `key`, repetition by repetition."""
        return [r[key] - s[key] for r, s in zip(times["run"], times["stand-in"], strict=True)]

    def ratios(key: str) -> list[float]:
        return [p / r[key] for p, r in zip(post(key), times["report"], strict=True)]

    def median(name: str, key: str) -> float:
        return statistics.median(t[key] for t in times[name])

    figures = {
        "command": shlex.join(sys.argv),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "load_average": os.getloadavg(),
        "cases": args.cases,
        "junit_bytes": junit_bytes,
        "record_bytes": record_bytes,
        "repeat": args.repeat,
        "runs": times,
        "median": {
            name: {key: median(name, key) for key in ("wall", "cpu", "user", "system", "rss_mb")}
            for name in times
        },
        "postprocess_wall_median": statistics.median(post("wall")),
        "postprocess_cpu_median": statistics.median(post("cpu")),
        "ratio_wall_median": statistics.median(ratios("wall")),
        "ratio_cpu_median": statistics.median(ratios("cpu")),
        # Where the CPU time goes: user (Python, expat) and system (the kernel: files written
        # and removed, pages faulted in). Medians of each side, not of paired ratios.
        "postprocess_user_median": statistics.median(post("user")),
        "postprocess_system_median": statistics.median(post("system")),
        "within_target": statistics.median(ratios("wall")) <= 1.2,
        "instructions": counted,
        "instructions_ratio": counted["run"] / counted["report"] if counted else None,
    }
    if counted:
        figures["instructions_within_target"] = figures["instructions_ratio"] <= 1.2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))
    print(
        f"{args.cases:,} cases (JUnit {junit_bytes / 1e6:.1f} MB, record {record_bytes / 1e6:.1f}"
        f" MB); {args.repeat} repetitions; python {figures['python']} on {figures['machine']},"
        f" load {figures['load_average'][0]:.1f}"
    )
    for name in times:
        m = figures["median"][name]
        print(
            f"  {name:<9} wall {m['wall']:6.2f} s  cpu {m['cpu']:6.2f} s (user {m['user']:.2f},"
            f" system {m['system']:.2f})  peak {m['rss_mb']:6.0f} MB"
        )
    print(
        f"run's post-processing (run - stand-in): wall {figures['postprocess_wall_median']:.2f} s,"
        f" cpu {figures['postprocess_cpu_median']:.2f} s; ratio to report (median of paired):"
        f" wall {figures['ratio_wall_median']:.2f}x, cpu {figures['ratio_cpu_median']:.2f}x;"
        f" target <= 1.2x: {'met' if figures['within_target'] else 'MISSED'}\n"
        f"  of which user {figures['postprocess_user_median']:.2f} s (report"
        f" {figures['median']['report']['user']:.2f} s), system"
        f" {figures['postprocess_system_median']:.2f} s (report"
        f" {figures['median']['report']['system']:.2f} s)"
    )
    if counted:
        print(
            f"instructions (callgrind, one run each): run {counted['run'] / 1e9:.3f} G, report"
            f" {counted['report'] / 1e9:.3f} G; ratio {figures['instructions_ratio']:.3f}x;"
            f" target <= 1.2x: {'met' if figures['instructions_within_target'] else 'MISSED'}"
        )
        return 0 if figures["instructions_within_target"] else 1
    return 0 if figures["within_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
