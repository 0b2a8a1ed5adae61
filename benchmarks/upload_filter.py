"""The cost of choosing what of a project goes to Modal, on a generated project of 10,000 files.

    uv run python benchmarks/upload_filter.py [--files 10000] [--repeat 7]

Generates, in a temporary folder outside any repository, the same project twice: once as a git repository (the
case on GitHub, where actions/checkout leaves .git) and once without .git. Each holds `--files`
files: 88% tracked sources and tests, 5% ignored by its .gitignore (a data/ folder, *.log), 4% in
untracked __pycache__ folders, 2% untracked notes that nothing ignores, 1% in a nested folder with
a .gitignore of its own; plus a few links. Then measures, alternating the kinds, each `--repeat`
times (median and best wall seconds, and the ratio to the reference):

- reference: `os.walk` of the tree, .git pruned, every file's name joined (what any uploader pays);
- list (git): project_files.list_project_files on the repository (`git ls-files` + a lstat each);
- list (.gitignore): the same on the copy without .git (our walk + pathspec's gitignore rules);
- Modal walk, filter: the SDK's own walk of the folder with our filter as `ignore` (what
  `add_local_dir` does when the mount is built), on the repository;
- Modal walk, old patterns: the same walk with the patterns used before (SOURCE_IGNORE), for
  comparison; it uploaded .env and followed links.

Times are wall seconds in this process (imports excluded); the machine is shared, so the best
run is the least disturbed and the median says how much the others moved.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from modal_gpu_action.backends.modal_app import upload_filter
from modal_gpu_action.backends.project_files import list_project_files

OLD_SOURCE_IGNORE = (
    ".git", ".venv", "venv", ".tox", ".nox", "build", "dist", "**/__pycache__", "**/*.pyc",
    "**/.pytest_cache", "**/.mypy_cache", "**/.ruff_cache", "**/.ipynb_checkpoints",
    "**/node_modules", "**/*.egg-info", "**/.DS_Store",
)  # fmt: skip


def generate(root: Path, files: int, repository: bool) -> None:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    shares = {"tracked": 0.88, "ignored": 0.05, "cache": 0.04, "notes": 0.02}
    counts = {kind: int(files * share) for kind, share in shares.items()}
    counts["nested"] = files - sum(counts.values())
    (root / ".gitignore").write_text("data/\n*.log\n.env\n")
    written = 1
    for n in range(counts["tracked"] - 1):
        package = "tests" if n % 8 == 0 else f"src/pkg{n % 40}/sub{n % 7}"
        path = root / package / f"mod_{n}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE_{n} = {n}\n" * 20)
        written += 1
    for n in range(counts["nested"] - 1):
        path = root / "vendor" / "lib" / (f"keep_{n}.py" if n % 2 else f"drop_{n}.tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x = 1\n")
        written += 1
    (root / "vendor" / "lib" / ".gitignore").write_text("*.tmp\n")
    written += 1
    (root / "app.log").write_text("log\n")
    written += 1
    for n in range(counts["ignored"] - 1):
        (root / "data").mkdir(exist_ok=True)
        (root / "data" / f"sample_{n}.csv").write_text("1,2,3\n")
        written += 1
    if repository:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        for command in (
            ["init", "-q"],
            ["add", "-A"],
            ["-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-q", "-m", "init"],
        ):
            subprocess.run(["git", *command], cwd=root, env=env, check=True)
    for n in range(counts["cache"]):
        path = root / f"src/pkg{n % 40}/__pycache__/mod_{n}.cpython-311.pyc"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 64)
        written += 1
    for n in range(counts["notes"]):
        (root / f"notes_{n}.md").write_text("untracked, not ignored\n")
        written += 1
    (root / "linked").symlink_to("src/pkg1")
    (root / "leak").symlink_to(".git/config" if repository else "/etc/passwd")
    assert written == files, (written, files)


def reference(root: Path) -> int:
    count = 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in names:
            os.path.join(folder, name)
            count += 1
    return count


def modal_walk(root: Path, ignore: Any) -> int:
    from modal.mount import _Mount

    mount = _Mount._add_local_dir(root, PurePosixPath("/root/project"), ignore=ignore)
    return sum(1 for entry in mount._entries for _ in entry.get_files_to_upload())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="upload-filter-") as folder:
        measure_all(Path(folder), args.files, args.repeat)


def measure_all(folder: Path, files: int, repeat: int) -> None:
    with_git, without_git = folder / "with-git", folder / "without-git"
    started = time.perf_counter()
    generate(with_git, files, repository=True)
    generate(without_git, files, repository=False)
    print(f"generated 2 x {files} files in {time.perf_counter() - started:.1f} s")

    import modal

    upload = list_project_files(with_git)
    ours = upload_filter(upload)
    old = modal.FilePatternMatcher(*OLD_SOURCE_IGNORE)
    kinds: dict[str, Callable[[], int]] = {
        "reference: os.walk (.git pruned)": lambda: reference(with_git),
        "list (git)": lambda: len(list_project_files(with_git).files),
        "list (.gitignore, no .git)": lambda: len(list_project_files(without_git).files),
        "Modal walk, filter": lambda: modal_walk(with_git, ours),
        "Modal walk, old patterns": lambda: modal_walk(with_git, old),
    }
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    found: dict[str, int] = {}
    for _ in range(repeat):
        for kind, measure in kinds.items():
            begin = time.perf_counter()
            found[kind] = measure()
            times[kind].append(time.perf_counter() - begin)

    base = statistics.median(times["reference: os.walk (.git pruned)"])
    print(f"command: {shlex.join(['uv', 'run', 'python', *sys.argv])}")
    print(
        f"project: {files} files; uploaded {len(upload.files)} files"
        f" ({upload.size} bytes) and {len(upload.links)} links; refused {len(upload.refused)};"
        f" left out {len(upload.left_out)} untracked cache folders"
    )
    print(f"{'kind':34} {'files':>6} {'median s':>9} {'best s':>8} {'x reference':>12}")
    for kind, values in times.items():
        median = statistics.median(values)
        print(
            f"{kind:34} {found[kind]:>6} {median:>9.4f} {min(values):>8.4f} {median / base:>12.2f}"
        )


if __name__ == "__main__":
    main()
