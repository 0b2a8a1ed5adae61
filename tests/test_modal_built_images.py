"""The Modal image recipe built for real: `modal-gpu-action run --backend modal` (and `plan`)
against the local Modal server started with `--build-images` (../shared/modal-mock).

Every image the recipe defines is built as the mock's README says (debian_slim's Python copied
from this machine, Modal's own RUN steps, ours with PyPI reachable), and each call runs in the
image's own Python: a dependency the recipe forgets fails here as it would on Modal, even when
this machine has it. Fixture projects cover what people have: a uv project whose pyproject.toml
Modal's own uv_sync cannot read, setuptools-scm, setup.cfg, a setup.py that computes its
dependencies, requirements-dev.txt, a project whose tests need its `test` extra, a Python marked
externally managed, and an undeclared import.

One server for the module and one layer cache for the session: the base image (about 15 s cold,
most of it Modal's own `pip install uv` step) is built once, and each project's layers once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modal_mock_server import (
    ModalMock,
    Run,
    clean_environ,
    image_cache_folder,
    run_cli,
    why_unavailable,
)

PROJECTS = Path(__file__).parent / "fixtures" / "modal_projects"
REPO = Path(__file__).resolve().parents[1]

_UNAVAILABLE = why_unavailable()
pytestmark = pytest.mark.skipif(
    _UNAVAILABLE is not None, reason=f"MODAL BUILT-IMAGE TESTS NOT RUN: {_UNAVAILABLE}"
)


@pytest.fixture(scope="session")
def image_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The mock's `--image-cache` for the whole session: layers are shared between tests."""
    folder = image_cache_folder(tmp_path_factory.mktemp("modal-images"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory, image_cache: Path) -> Iterator[ModalMock]:
    folder = tmp_path_factory.mktemp("modal-mock-built")
    with ModalMock(folder, build_images=True, image_cache=image_cache) as server:
        yield server


def project(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(PROJECTS / name, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def run(mock: ModalMock, folder: Path, *args: str, **env: str) -> tuple[Run, dict[str, str]]:
    """The CLI's run in `folder`, and its JUnit file's outcomes (test id -> outcome)."""
    junit = folder.parent / f"{folder.name}-junit.xml"
    result = run_cli(
        ["run", "--backend", "modal", "--junit-xml", str(junit), "--comment", "off", *args],
        env=clean_environ(**mock.env(), **env),
        cwd=folder,
        timeout=240,
    )
    outcomes: dict[str, str] = {}
    if junit.is_file():
        for case in ET.parse(junit).getroot().iter("testcase"):
            kinds = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
            outcomes[f"{case.get('classname')}.{case.get('name')}"] = (kinds or ["passed"])[0]
    return result, outcomes


def plan(folder: Path, *args: str) -> dict[str, Any]:
    """`modal-gpu-action plan --backend modal` in `folder`: no server, no `import modal`."""
    completed = subprocess.run(
        [sys.executable, "-m", "modal_gpu_action", "plan", "--backend", "modal", *args],
        cwd=folder, env=clean_environ(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    data: dict[str, Any] = json.loads(completed.stdout)
    return data


def new_images(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    return [image for key, image in after["images"].items() if key not in before["images"]]


def commands(images: list[dict[str, Any]]) -> list[str]:
    return [c for image in images for c in image["dockerfile_commands"]]


def git(folder: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.com"]
    completed = subprocess.run(
        ["git", *identity, "-C", str(folder), *args],
        env=env, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return completed.stdout.strip()


# -- projects people have -----------------------------------------------------------------------


def test_uv_project_whose_group_mixes_strings_and_tables_builds_and_runs(
    mock: ModalMock, tmp_path: Path
) -> None:
    folder = project(tmp_path, "uv_mixed_project")
    import toml  # what Modal's uv_sync reads pyproject.toml with (a dependency of modal)

    with pytest.raises(toml.TomlDecodeError, match="homogeneous"):
        toml.loads((folder / "pyproject.toml").read_text())

    before = mock.state()
    result, outcomes = run(mock, folder)
    images = new_images(before, mock.state())

    assert result.returncode == 0, result.output
    assert set(outcomes.values()) == {"passed"} and len(outcomes) == 2, outcomes
    sync = next(c for c in commands(images) if c.startswith("RUN /.uv/uv sync"))
    assert "--frozen" in sync and "--no-install-project" in sync and "--group=tests" in sync
    assert {name for image in images for name in image["context_files"]} == {
        "/.pyproject.toml",
        "/.uv.lock",
    }
    assert any(image["python"].startswith("/.uv/.venv/bin/python") for image in images)
    # The build backend came from a layer: the install at start needs no network.
    assert "--no-build-isolation --no-deps --offline -e /root/project" in result.output


def test_setuptools_scm_project_is_given_the_version_of_the_checkout(
    mock: ModalMock, tmp_path: Path
) -> None:
    folder = project(tmp_path, "scm_project")
    git(folder, "init", "-q")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "first")
    git(folder, "tag", "v1.2.3")
    (folder / "scmproj" / "extra.py").write_text("VALUE = 1\n")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "second")
    expected = f"1.2.4.dev1+g{git(folder, 'rev-parse', '--short', 'HEAD')}"

    steps = plan(folder)["image"]
    assert any(step.startswith(f"version: {expected} for setuptools-scm") for step in steps)
    assert any("setuptools>=64, setuptools-scm>=8" in step for step in steps)

    result, outcomes = run(mock, folder, "--env", f"EXPECTED_VERSION={expected}")
    assert result.returncode == 0, result.output
    assert outcomes == {
        "tests.test_scmproj.test_the_version_is_the_one_git_gives_the_checkout": "passed"
    }


def test_setup_cfg_project_gets_install_requires_and_its_test_extra(
    mock: ModalMock, tmp_path: Path
) -> None:
    result, outcomes = run(mock, project(tmp_path, "setupcfg_project"))

    assert result.returncode == 0, result.output
    assert set(outcomes.values()) == {"passed"} and len(outcomes) == 2, outcomes


def test_setup_py_that_computes_its_dependencies_installs_them_at_start(
    mock: ModalMock, tmp_path: Path
) -> None:
    folder = project(tmp_path, "setuppy_project")
    steps = plan(folder)["image"]
    assert any(
        step.startswith("warning: setup.py computes install_requires: its dependencies cannot be")
        for step in steps
    )

    result, outcomes = run(mock, folder)
    assert result.returncode == 0, result.output
    assert set(outcomes.values()) == {"passed"}, outcomes
    assert "--no-build-isolation -e /root/project" in result.output  # with its dependencies


def test_requirements_dev_txt_is_installed_with_requirements_txt(
    mock: ModalMock, tmp_path: Path
) -> None:
    result, outcomes = run(mock, project(tmp_path, "requirements_dev_project"))

    assert result.returncode == 0, result.output
    assert set(outcomes.values()) == {"passed"}, outcomes


def test_an_externally_managed_python_takes_the_requirements(
    mock: ModalMock, tmp_path: Path
) -> None:
    """The base's Python carries PEP 668's marker, as Ubuntu 24.04-based images' do."""
    folder = project(tmp_path, "managed_python_project")
    before = mock.state()
    result, outcomes = run(mock, folder, "--dockerfile", "Dockerfile")

    assert result.returncode == 0, result.output
    assert set(outcomes.values()) == {"passed"}, outcomes
    installs = [
        c for c in commands(new_images(before, mock.state())) if c.startswith("RUN /.uv/uv pip")
    ]
    assert installs and all("--break-system-packages" in c for c in installs)


def test_a_module_the_project_does_not_declare_fails_in_the_image(
    mock: ModalMock, tmp_path: Path
) -> None:
    assert importlib.util.find_spec("jwt") is not None  # this machine has it (PyGithub's)
    result, outcomes = run(mock, project(tmp_path, "undeclared_project"))

    assert result.returncode == 1, result.output
    assert outcomes == {
        "tests.test_undeclared.test_a_module_the_project_does_not_declare": "failure"
    }
    assert "ModuleNotFoundError: No module named 'jwt'" in result.output


# -- test dependencies and the cache ------------------------------------------------------------


def test_the_test_extra_is_installed_and_a_code_change_reuses_the_cached_image(
    mock: ModalMock, tmp_path: Path
) -> None:
    folder = project(tmp_path, "test_extra_project")
    result, outcomes = run(mock, folder)
    assert result.returncode == 0, result.output
    assert set(outcomes.values()) == {"passed"} and len(outcomes) == 2, outcomes

    with (folder / "src" / "extraproj" / "__init__.py").open("a") as source:
        source.write("\n\ndef cube(x):\n    return x * x * x\n")
    before = mock.state()
    again, outcomes = run(mock, folder)
    after = mock.state()

    assert again.returncode == 0, again.output
    assert set(outcomes.values()) == {"passed"}
    built = {k for k, image in after["images"].items() if image.get("built") is True}
    assert built == {k for k, image in before["images"].items() if image.get("built") is True}
    # Nothing was built again; what the second run asked for was found in the cache.
    again_images = new_images(before, after)
    assert again_images and {image["built"] for image in again_images} == {"cached"}

    # Opting out: the `test` extra is left out (and pytest, undeclared then, is added).
    opted_out = plan(folder, "--test-dependencies", "none")["image"]
    layer = next(step for step in opted_out if step.startswith("dependencies layer: RUN"))
    assert layer.endswith(" 'iniconfig>=2' 'hatchling>=1.25' 'editables~=0.3' pytest")


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        (
            "--image",
            "nvcr.io/NVIDIA/pytorch:25.01",
            "for input 'image': expected an image reference",
        ),
        ("--extra-packages", "numpy>=>2", "for input 'extra-packages': expected a requirement"),
        ("--modal-secrets", "team/hf", "for input 'modal-secrets': expected Modal secret names"),
        ("--python-version", "3.9", "for input 'python-version': expected a version the project's"),
    ],
)
def test_modal_only_inputs_are_refused_before_any_network_call(
    tmp_path: Path, flag: str, value: str, message: str
) -> None:
    """Exit 2 with one line, with a server address that nothing answers."""
    completed = subprocess.run(
        [sys.executable, "-m", "modal_gpu_action", "run", "--backend", "modal", flag, value],
        cwd=project(tmp_path, "uv_mixed_project" if flag != "--python-version" else "uv_project"),
        env=clean_environ(MODAL_SERVER_URL="http://127.0.0.1:9", MODAL_TOKEN_ID="ak-x",
                          MODAL_TOKEN_SECRET="as-x"),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 2, completed.stdout + completed.stderr
    errors = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and message in errors[0], errors
