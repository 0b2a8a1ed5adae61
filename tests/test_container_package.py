"""The container package runs in the user's Python: the standard library only, nothing of the
host, and the oldest Python it supports (3.9: what it promises in its docstring and what ruff
checks it against, pyproject.toml's per-file-target-version).

The Python 3.9 checks run in that interpreter, found on this machine (pyenv's versions, a
`python3.9` on PATH, or uv's); they are skipped, saying so, where there is none.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modal_gpu_action import container
from modal_gpu_action.container.balance import ShardPlan

OLDEST = (3, 9)
OLDEST_NAME = "3.9"
PACKAGE = Path(container.__file__).parent
PROJECTS = Path(__file__).parent / "fixtures" / "projects"
MODULES = sorted(PACKAGE.glob("*.py"))
PYTEST_PLUGINS = {"sharding.py"}  # loaded only inside pytest: may import it


def imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(level, module) of every import: level 0 absolute, 1 and more relative."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((0, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.level, node.module or ""


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_each_module_imports_the_standard_library_and_its_siblings_only(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), feature_version=OLDEST)
    allowed = set(sys.stdlib_module_names) | {"__future__"}
    if path.name in PYTEST_PLUGINS:
        allowed |= {"pytest", "_pytest"}
    siblings = {module.stem for module in MODULES}
    for level, module in imports(tree):
        if level == 0:
            assert module.split(".")[0] in allowed, f"{path.name} imports {module}"
        else:  # relative: the copy pytest loads has another name, so never absolute
            assert level == 1 and (not module or module.split(".")[0] in siblings), module


def test_no_module_is_over_400_lines() -> None:
    lengths = {path.name: len(path.read_text().splitlines()) for path in MODULES}
    assert max(lengths.values()) <= 400, lengths


# --- under the oldest Python it supports ---------------------------------------------------------


def _version(python: str) -> tuple[int, int] | None:
    try:
        done = subprocess.run(
            [python, "-I", "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = done.stdout.split()
    return (int(parts[0]), int(parts[1])) if done.returncode == 0 and len(parts) == 2 else None


def find_python(version: tuple[int, int]) -> str | None:
    wanted = ".".join(map(str, version))
    candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{wanted}.*/bin/python")))
    candidates += [p for p in [shutil.which(f"python{wanted}")] if p]
    if shutil.which("uv"):
        found = subprocess.run(
            ["uv", "python", "find", "--no-project", wanted],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        candidates += found.stdout.split()
    return next((p for p in candidates if _version(p) == version), None)


@pytest.fixture(scope="module")
def oldest_python() -> str:
    python = find_python(OLDEST)
    if python is None:
        pytest.skip(f"no Python {OLDEST_NAME} on this machine (pyenv, PATH or uv)")
    return python


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the Modal backend adds to a container: the package's __init__ and `container`."""
    root = tmp_path_factory.mktemp("shipped")
    target = root / "modal_gpu_action"
    target.mkdir()
    shutil.copy(PACKAGE.parent / "__init__.py", target / "__init__.py")
    shutil.copytree(PACKAGE, target / "container", ignore=shutil.ignore_patterns("__pycache__"))
    return root


IMPORT_ALL = """
import json, sys
sys.path.insert(0, sys.argv[1])
for name in sys.argv[2:]:
    __import__("modal_gpu_action.container." + name)
print(json.dumps(sorted(sys.modules)))
"""


def test_every_module_imports_under_the_oldest_python_with_nothing_but_the_standard_library(
    oldest_python: str, shipped: Path
) -> None:
    """-I -S: no site-packages, no PYTHONPATH; the shipped copy alone on sys.path."""
    names = [p.stem for p in MODULES if p.name not in PYTEST_PLUGINS | {"__main__.py"}]
    done = subprocess.run(
        [oldest_python, "-I", "-S", "-c", IMPORT_ALL, str(shipped), *names],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    ours = {m for m in loaded if m.startswith("modal_gpu_action")}
    assert {f"modal_gpu_action.container.{name}" for name in names} <= ours
    assert ours - {"modal_gpu_action", "modal_gpu_action.container"} <= {
        f"modal_gpu_action.container.{p.stem}" for p in MODULES
    }


@pytest.fixture(scope="module")
def oldest_python_with_pytest(oldest_python: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A venv of the oldest Python holding pytest alone (uv installs it, from its cache when it
    can); skipped, saying why, when it cannot be made."""
    venv = tmp_path_factory.mktemp("oldest") / "venv"
    steps = [
        ["uv", "venv", "--quiet", "--python", oldest_python, str(venv)],
        ["uv", "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "pytest"],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            pytest.skip(f"no pytest for Python {OLDEST_NAME}: {error}")
        if done.returncode != 0:
            pytest.skip(f"no pytest for Python {OLDEST_NAME}: {done.stderr.strip()[-300:]}")
    return str(venv / "bin" / "python")


RUN = """
import sys
sys.path.insert(0, sys.argv[1])
from modal_gpu_action.container.run import main
raise SystemExit(main(sys.argv[2:]))
"""


def test_a_sharded_run_under_the_oldest_python(
    oldest_python_with_pytest: str, shipped: Path, tmp_path: Path
) -> None:
    """The runner, both plugins (sharding with durations) and the crash record, in a Python
    3.9 that has pytest and nothing of ours but the shipped copy."""
    project = Path(shutil.copytree(PROJECTS / "many", tmp_path / "many"))
    plan = ShardPlan.balance([("tests.test_plain", "test_alone", 5.0)], 2)
    request = {
        "working_directory": str(project),
        "test_path": "tests",
        "pytest_args": ["-p", "no:cacheprovider"],
        "timeout_seconds": 60,
        "env": {},
        "shard_index": 1,
        "shard_count": 2,
        "shard_plan": plan.to_dict(),
    }
    (tmp_path / "request.json").write_text(json.dumps(request))
    command = [oldest_python_with_pytest, "-I", "-c", RUN, str(shipped)]
    command += ["--request", str(tmp_path / "request.json"), "--result", str(tmp_path / "r.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert (result["exit_code"], result["ending"], result["problem"]) == (0, "finished", None)
    assert "balanced by durations (1 of 27 tests known)" in done.stdout
    assert 'name="test_' in result["junit_xml"] and "synthesised" not in result["junit_xml"]
