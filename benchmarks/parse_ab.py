"""Paired A/B of `parse_junit`'s CPU time: a base commit's src/ against the working tree's, on
bench_report.py's 100,000-case pytest file, each run in a fresh interpreter, the two alternating.

    uv run python benchmarks/parse_ab.py BASE_COMMIT [--repeat 15]

CPU time (time.process_time) rather than wall time: on a shared machine wall time swings with the
load far more than any change measured here.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_report import generate

ROOT = Path(__file__).resolve().parent.parent
_PARSE = (
    "import sys, time; from modal_gpu_action.report.junit_reader import parse_junit;"
    "t = time.process_time(); r = parse_junit(sys.argv[1]); print(time.process_time() - t)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    path = ROOT / "benchmarks" / "out" / "parse_ab.xml"
    path.parent.mkdir(exist_ok=True)
    if not path.exists():
        generate(path, 100_000, 1_000)
    with tempfile.TemporaryDirectory() as base:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.base, "src"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", base], input=archive, check=True)
        sources = {"base": f"{base}/src", "tree": str(ROOT / "src")}
        times: dict[str, list[float]] = {"base": [], "tree": []}
        for index in range(args.repeat):
            order = ("base", "tree") if index % 2 == 0 else ("tree", "base")
            for name in order:
                out = subprocess.run(
                    [sys.executable, "-c", _PARSE, str(path)],
                    env={"PYTHONPATH": sources[name]},
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                times[name].append(float(out))
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.3f} s, best {min(values):.3f} s CPU")
    paired = [tree - base for base, tree in zip(times["base"], times["tree"], strict=True)]
    print(f"paired median difference (tree - base): {statistics.median(paired):+.3f} s CPU")


if __name__ == "__main__":
    main()
