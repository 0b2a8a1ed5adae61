"""`artifacts` at the default cap: time and peak memory of collecting the files where the tests
ran (container/artifacts.collect: walk, read with limits, zip, base64) and of writing them on the
host (backends/artifacts.save: check, decode, unzip, write each file), against a plain copy of
the same files (`shutil.copytree`) as the reference. Each step runs in a fresh interpreter
(peak RSS is the whole process's, `ru_maxrss`); the kinds rotate, medians of the repetitions.

    uv run python benchmarks/bench_artifacts.py [--repeat 5]

Two projects: one incompressible 49 MB file (the cap's worst case for memory), and an
htmlcov-like folder of 2,000 HTML files (about 40 MB of text that deflates well).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

STEP = r"""
import json, resource, sys, time, shutil
from pathlib import Path
kind, project, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
from modal_gpu_action.container.artifacts import collect
from modal_gpu_action.backends.artifacts import save
from modal_gpu_action.container.protocol import Ending, GpuFacts, RunResult
from modal_gpu_action.settings import load_settings
globs = ["big.bin", "htmlcov"]
started = time.perf_counter()
if kind == "copytree":
    for name in ("big.bin", "htmlcov"):
        source = Path(project) / name
        if source.is_dir():
            shutil.copytree(source, out / "copy" / name)
        elif source.exists():
            (out / "copy").mkdir(parents=True, exist_ok=True)
            shutil.copy(source, out / "copy" / name)
elif kind == "collect":
    data, left_out = collect(project, globs, 50_000_000)
    seconds = time.perf_counter() - started  # the answer's write below is the benchmark's own
    (out / "answer.txt").write_text(data)
else:
    data = (out / "answer.txt").read_text()
    started = time.perf_counter()
    settings = load_settings({"backend": "local", "artifacts": ",".join(globs), "test-path": ".",
                              "artifacts-path": str(out / "arts")}, {}, workspace=out)
    result = RunResult("", 0, 1.0, GpuFacts(False, [], None, ""), Ending.FINISHED, "",
                       artifacts=data)
    saved = save([result], settings)
    assert saved is not None and not saved.left_out, saved
seconds = seconds if kind == "collect" else time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_projects(root: Path) -> dict[str, Path]:
    big = root / "big"
    big.mkdir()
    (big / "big.bin").write_bytes(os.urandom(49_000_000))
    html = root / "html"
    (html / "htmlcov").mkdir(parents=True)
    row = "<tr><td class='ln'>{n}</td><td class='src'><span class='k'>def</span> f_{n}(x): return x</td></tr>\n"
    page = "".join(row.format(n=n) for n in range(200))
    for n in range(2000):
        (html / "htmlcov" / f"d_{n:04d}_module_py.html").write_text(page)
    return {"one 49 MB random file": big, "2,000 htmlcov pages (40 MB)": html}


def step(kind: str, project: Path, out: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", STEP, kind, str(project), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        projects = make_projects(root)
        kinds = ["copytree", "collect", "save"]
        print("| project | step | seconds (median) | peak RSS MB (median) |")
        print("| --- | --- | --- | --- |")
        for label, project in projects.items():
            found: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
            for rep in range(args.repeat):
                out = root / f"out-{label[:3]}-{rep}"
                out.mkdir()
                order = kinds[rep % 2 :] + kinds[: rep % 2]  # copytree first or last
                if order.index("save") < order.index("collect"):
                    order.remove("save")
                    order.append("save")
                for kind in order:
                    found[kind].append(step(kind, project, out))
                shutil.rmtree(out)
            for kind in kinds:
                seconds = statistics.median(r["seconds"] for r in found[kind])
                peak = statistics.median(r["peak_mb"] for r in found[kind])
                print(f"| {label} | {kind} | {seconds:.3f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
