"""What publishing costs a run: the real command in GitHub mode against the fake GitHub API.

    uv run python benchmarks/bench_publish.py [--repeat 11] [--latency 0.02 0.05] [--before DIR]

Each repetition runs `python -m modal_gpu_action` on the `passing` fixture project (local
backend) once in each of these ways, in a rotating order so that none always goes first:
  local          `run --backend local`, not GitHub mode: nothing published, PyGithub not needed
  off            GitHub mode, `comment: off`, no `remove-label`: nothing to publish
  off+label      GitHub mode, `comment: off`, the label to remove
  sticky         GitHub mode, the sticky comment (a single job), no label
  sticky+label   GitHub mode, the sticky comment and the label
against tests/github_api/server.py (every request checked against GitHub's REST API description)
answering each request after a random 20-50 ms (`--latency`). The sticky runs all write the same
pull request's comment: the first creates it, the others update it, as a job's reruns do. The
figures are the medians of the per-repetition differences (drifts of the machine cancel out):
  sticky+label - off+label   the comment's own cost, PyGithub imported by both (target <= 0.5 s)
  sticky - off               the comment's cost with PyGithub's import, which `off` now skips
  off - local                GitHub mode with nothing to publish (the import saving)
`--before DIR` also runs every kind from another checkout's src/ (an older commit) in the same
rotation, so that the two are compared under the same load.
Results also go, as JSON, to benchmarks/out/publish.json (ignored by git).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
sys.path.insert(0, str(TESTS))

from github_api import description  # noqa: E402  (tests/ is not a package on the path)
from github_api.server import FakeGitHub  # noqa: E402

PR, HEAD, LABEL = 7, "a" * 40, "gpu-tests"
KINDS = ("local", "off", "off+label", "sticky", "sticky+label")
PAIRS = (("sticky+label", "off+label"), ("sticky", "off"), ("off", "local"))
TARGET = 0.5  # seconds, sticky+label - off+label


def environments(fake: FakeGitHub, scratch: Path, workspace: Path) -> dict[str, dict[str, str]]:
    event = scratch / "event.json"
    event.write_text(
        json.dumps(
            {
                "action": "labeled",
                "number": PR,
                "pull_request": {"number": PR, "head": {"sha": HEAD}},
            }
        )
    )
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(scratch)),
        "MODAL_GPU_ACTION_PYTHON": sys.executable,
    }
    github = {
        **base,
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": fake.full_name,
        "GITHUB_API_URL": fake.api_url,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "99",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_SHA": HEAD,
        "GITHUB_WORKFLOW": "GPU tests",
        "GITHUB_JOB": "gpu",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_STEP_SUMMARY": str(scratch / "summary.md"),
        "GITHUB_OUTPUT": str(scratch / "output.txt"),
        "INPUT_BACKEND": "local",
        "INPUT_TEST_PATH": "tests",
        "INPUT_GITHUB_TOKEN": fake.state.token,
    }
    return {
        "local": base,
        "off": {**github, "INPUT_COMMENT": "off"},
        "off+label": {**github, "INPUT_COMMENT": "off", "INPUT_REMOVE_LABEL": LABEL},
        "sticky": {**github, "INPUT_COMMENT": "sticky"},
        "sticky+label": {**github, "INPUT_COMMENT": "sticky", "INPUT_REMOVE_LABEL": LABEL},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11, help="repetitions (default 11)")
    parser.add_argument(
        "--latency", type=float, nargs=2, default=(0.02, 0.05), metavar=("LOW", "HIGH")
    )
    parser.add_argument(
        "--before", type=Path, help="also run each kind from this src/ folder, in the same rotation"
    )
    parser.add_argument("--out", type=Path, default=HERE / "out" / "publish.json")
    args = parser.parse_args()

    sources = {"": None} | ({" (before)": args.before.resolve()} if args.before else {})
    runs = [kind + source for source in sources for kind in KINDS]
    validator = description.Validator(description.load("api.github.com"))
    fake = FakeGitHub(validator, delay=tuple(args.latency), seed=1)
    times: dict[str, list[float]] = {run: [] for run in runs}
    cpu: dict[str, list[float]] = {run: [] for run in runs}  # the command's and its children's
    requests: dict[str, list[int]] = {run: [] for run in runs}
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as folder, fake.running():
        scratch = Path(folder)
        workspace = scratch / "workspace"
        shutil.copytree(TESTS / "fixtures" / "projects" / "passing", workspace)
        fake.add_pull(PR, HEAD, labels=(LABEL,))
        module = [sys.executable, "-m", "modal_gpu_action"]
        commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        for source, src in sources.items():
            for kind, env in environments(fake, scratch, workspace).items():
                if src is not None:
                    env["PYTHONPATH"] = str(src)
                argv = [*module, "run", "--backend", "local", "--test-path", "tests"]
                commands[kind + source] = (argv if kind == "local" else module, env)

        def once(run: str) -> float:
            for name in ("summary.md", "output.txt"):
                (scratch / name).write_text("")
            with fake.lock:
                fake.state.issues[PR] = [LABEL]  # labelled again, as for each rerun
                before = len(fake.exchanges)
            argv, env = commands[run]
            used = _children_cpu()
            started = time.perf_counter()
            done = subprocess.run(argv, cwd=workspace, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            cpu[run].append(_children_cpu() - used)
            assert done.returncode == 0, (
                f"{run}: exit {done.returncode}\n{done.stdout}{done.stderr}"
            )
            assert "::warning" not in done.stdout, f"{run}: {done.stdout}"
            with fake.lock:
                requests[run].append(len(fake.exchanges) - before)
                labels = list(fake.state.issues[PR])
            assert labels == ([] if "+label" in run else [LABEL]), (run, labels)
            if run.startswith("sticky"):
                assert len(fake.comments_on(PR)) == 1, run
            return seconds

        for run in runs:  # warm the file cache and the bytecode once, not timed
            once(run)
            requests[run].clear()
            cpu[run].clear()
        for repetition in range(args.repeat):
            shift = repetition % len(runs)
            for run in runs[shift:] + runs[:shift]:
                times[run].append(once(run))
        assert not fake.violations, fake.violations

    median = {run: statistics.median(values) for run, values in times.items()}
    paired = {
        f"{a}{source} - {b}{source}": statistics.median(
            x - y for x, y in zip(times[a + source], times[b + source], strict=True)
        )
        for source in sources
        for a, b in PAIRS
    }
    paired_cpu = {
        f"{a}{source} - {b}{source}": statistics.median(
            x - y for x, y in zip(cpu[a + source], cpu[b + source], strict=True)
        )
        for source in sources
        for a, b in PAIRS
    }
    comment_cost = paired["sticky+label - off+label"]
    figures: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "before": str(args.before) if args.before else None,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "load_average": os.getloadavg(),
        "latency_seconds": list(args.latency),
        "repeat": args.repeat,
        "seconds": times,
        "median_seconds": median,
        "requests_per_run": {run: statistics.median(n) for run, n in requests.items()},
        "paired_median_seconds": paired,
        "cpu_seconds": cpu,
        "paired_median_cpu_seconds": paired_cpu,
        "target_seconds": TARGET,
        "within_target": comment_cost <= TARGET,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))
    print(f"{args.repeat} repetitions, API latency {args.latency[0]}-{args.latency[1]} s;")
    print(f"python {figures['python']} on {figures['machine']}, load {figures['load_average']}")
    for run in runs:
        print(
            f"  {run:<22} {median[run]:6.3f} s median,"
            f" {figures['requests_per_run'][run]:g} API requests"
        )
    print("median of paired differences: wall, and CPU (the command and its children)")
    for pair, value in paired.items():
        print(f"  {pair:<45} {value:+.3f} s   CPU {paired_cpu[pair]:+.3f} s")
    verdict = "met" if figures["within_target"] else "MISSED"
    print(f"comment's own cost {comment_cost:+.3f} s; target <= +{TARGET} s: {verdict}")
    return 0 if figures["within_target"] else 1


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    raise SystemExit(main())
