"""The Modal image recipe, the dependency key and the plan, offline. What the recipe becomes in
Modal's SDK, and what that sends to Modal, is test_modal_app.py's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modal_gpu_action.backends.modal import check_credentials, plan
from modal_gpu_action.backends.modal_image import build_recipe, dependency_key
from modal_gpu_action.settings import Settings, SettingsError, load_settings
from modal_gpu_action.settings.dependencies import dump_toml

PROJECTS = Path(__file__).parent / "fixtures" / "modal_projects"
REPO = Path(__file__).resolve().parents[1]


def copy_project(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(PROJECTS / name, tmp_path / name))


def settings_for(folder: Path, **inputs: str) -> Settings:
    flags: dict[str, str | None] = {"backend": "modal", "working-directory": str(folder)}
    flags.update({key.replace("_", "-"): value for key, value in inputs.items()})
    return load_settings(flags, {}, workspace=folder)


@pytest.mark.parametrize("name", ["uv.lock", "requirements.txt", "pyproject.toml"])
def test_a_dependency_file_that_links_out_of_the_project_is_refused(
    tmp_path: Path, name: str
) -> None:
    folder = copy_project(
        tmp_path, "uv_project" if name != "requirements.txt" else "requirements_project"
    )
    (tmp_path / "elsewhere").write_text("[project]\nname = 'x'\n")
    (folder / name).unlink()
    (folder / name).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(
        SettingsError, match=f"{name} of the working directory .* is a link that leads outside"
    ):
        build_recipe(settings_for(folder))


def test_a_requirements_file_may_not_include_git_config(tmp_path: Path) -> None:
    folder = copy_project(tmp_path, "requirements_project")
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("[http]\n\textraheader = AUTHORIZATION: basic x\n")
    (folder / "requirements.txt").write_text("-r .git/config\n")
    with pytest.raises(SettingsError, match=r"in \.git"):
        build_recipe(settings_for(folder))


# -- the dependency key -------------------------------------------------------------------------


def key(folder: Path, **inputs: str) -> str:
    return dependency_key(build_recipe(settings_for(folder, **inputs)))


@pytest.mark.parametrize(
    ("name", "source_edit", "dependency_edit"),
    [
        ("uv_project", "src/uvproj/__init__.py", "uv.lock"),
        ("requirements_project", "calc.py", "requirements/base.txt"),
        ("pyproject_project", "lib.py", "pyproject.toml"),
        ("dockerfile_project", "tests/test_smoke.py", "tools/setup.sh"),
    ],
)
def test_dependency_key_ignores_source_edits_and_follows_dependency_edits(
    tmp_path: Path, name: str, source_edit: str, dependency_edit: str
) -> None:
    folder = copy_project(tmp_path, name)
    inputs = {"dockerfile": "Dockerfile"} if name == "dockerfile_project" else {}
    before = key(folder, **inputs)

    with (folder / source_edit).open("a") as out:
        out.write("\n# an edit to the source\n")
    (folder / "tests" / "test_new.py").write_text("def test_new():\n    pass\n")
    assert key(folder, **inputs) == before

    text = (folder / dependency_edit).read_text()
    if dependency_edit == "pyproject.toml":
        text = text.replace('"packaging"', '"packaging>=24"')
    elif dependency_edit == "uv.lock":
        text = text.replace('version = "2.3.1"', 'version = "2.3.0"', 1)
    else:
        text += "\n# changed\n"
    (folder / dependency_edit).write_text(text)
    assert key(folder, **inputs) != before


def test_dependency_key_ignores_pyproject_tables_uv_sync_does_not_read(tmp_path: Path) -> None:
    folder = copy_project(tmp_path, "uv_project")
    before = key(folder)
    pyproject = folder / "pyproject.toml"
    edited = pyproject.read_text().replace("line-length = 100", "line-length = 88")
    edited = edited.replace('description = "A uv', 'description = "Another uv')
    pyproject.write_text(edited + "\n[tool.coverage.run]\nbranch = true\n")
    assert key(folder) == before

    pyproject.write_text(edited.replace('gpu = ["pluggy>=1.5"]', 'gpu = ["pluggy>=1.6"]'))
    assert key(folder) != before


def test_dependency_key_follows_every_input_a_layer_is_built_from(tmp_path: Path) -> None:
    folder = copy_project(tmp_path, "uv_project")
    keys = {
        key(folder),
        key(folder, python_version="3.11"),
        key(folder, extras="fast"),
        key(folder, groups="gpu"),
        key(folder, extra_packages="pytest-xdist"),
        key(folder, image="nvidia/cuda:12.4.1-devel-ubuntu22.04"),
        key(folder, image="nvidia/cuda:12.4.1-devel-ubuntu22.04", python_version="3.11"),
    }
    assert len(keys) == 7
    # Inputs that no layer reads leave it alone.
    assert key(folder, gpu="H100", shards="4", timeout_minutes="5", env="A=1") == key(folder)
    pytorch = "nvcr.io/nvidia/pytorch:25.01-py3"  # brings its own Python: python-version unused
    assert key(folder, image=pytorch) == key(folder, image=pytorch, python_version="3.11")


# -- plan and credentials: fast, and without `import modal` -------------------------------------

_PROBE = """
import json, sys, time
from pathlib import Path
started = time.monotonic()
from modal_gpu_action.backends.modal import ModalBackend, plan
from modal_gpu_action.settings import SettingsError, load_settings
settings = load_settings({"backend": "modal", "working-directory": sys.argv[1]}, {})
if sys.argv[2] == "plan":
    out = plan(settings)
else:
    backend = ModalBackend(settings, environ={})
    try:
        backend.run(backend.requests())
    except SettingsError as error:
        out = str(error)
print(json.dumps({"out": out, "modal": "modal" in sys.modules,
                  "seconds": time.monotonic() - started}))
"""


def probe(folder: Path, what: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "GITHUB_"))}
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE, str(folder), what],
        cwd=folder,  # the workspace: the working directory must be inside it
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    data: dict[str, Any] = json.loads(completed.stdout.splitlines()[-1])
    return data


def test_plan_is_json_made_without_importing_modal(tmp_path: Path) -> None:
    folder = copy_project(tmp_path, "uv_project")
    result = probe(folder, "plan")

    assert result["modal"] is False
    assert result["seconds"] < 1
    out = result["out"]
    assert out["backend"] == "modal" and out["gpu"] == "T4" and out["shards"] == 1
    assert out["timeout-seconds"] == 1800 and out["container-timeout-seconds"] == 1920
    assert out["retries"] == 1 and out["dependency-source"] == "uv.lock"
    assert out["dependency-key"] == key(folder)
    assert out["credentials"].startswith("missing")
    assert any(step.startswith("dependencies: uv sync") for step in out["image"])
    assert any(step.startswith("source: ") for step in out["image"])


def test_plan_command_prints_the_modal_plan_as_json(tmp_path: Path) -> None:
    folder = copy_project(tmp_path, "requirements_project")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "INPUT_", "GITHUB_"))}
    completed = subprocess.run(
        [sys.executable, "-m", "modal_gpu_action", "plan", "--backend", "modal",
         "--working-directory", str(folder), "--gpu", "h100:2", "--shards", "2"],
        cwd=folder, capture_output=True, text=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    out = json.loads(completed.stdout)
    assert out["gpu-argument"] == "H100:2" and out["shards"] == 2
    assert out["dependency-source"] == "requirements"
    assert out["dependency-key"] == key(folder)
    assert out["max-cost-usd"] == round(2 * 0.001097 * 1920 * 2, 4)


def test_plan_leaves_secret_values_out(tmp_path: Path) -> None:
    folder = copy_project(tmp_path, "pyproject_project")
    settings = settings_for(folder, env="API_KEY=hunter2-secret", modal_secrets="team")
    out = plan(settings)
    assert out["env-keys"] == ["API_KEY"] and out["modal-secrets"] == ["team"]
    assert "hunter2" not in json.dumps(out)


def test_missing_credentials_fail_before_importing_modal(tmp_path: Path) -> None:
    result = probe(copy_project(tmp_path, "pyproject_project"), "run")

    assert result["modal"] is False
    assert result["seconds"] < 1
    assert result["out"].startswith("missing Modal credentials: MODAL_TOKEN_ID and")
    for words in ("forks", "repository secrets", "env:", "modal-token-id"):
        assert words in result["out"]


def test_one_missing_credential_is_named(tmp_path: Path) -> None:
    folder = copy_project(tmp_path, "pyproject_project")
    settings = load_settings(
        {"backend": "modal", "working-directory": str(folder)},
        {"MODAL_TOKEN_ID": "ak-1"},
        workspace=folder,
    )
    with pytest.raises(SettingsError, match="MODAL_TOKEN_SECRET is empty"):
        check_credentials(settings, environ={})


def test_credentials_are_masked_in_github_logs(tmp_path: Path) -> None:
    folder = copy_project(tmp_path, "pyproject_project")
    environ = {"MODAL_TOKEN_ID": "ak-123", "MODAL_TOKEN_SECRET": "as-456"}
    settings = load_settings(
        {"backend": "modal", "working-directory": str(folder)}, environ, workspace=folder
    )
    lines: list[str] = []

    class Stream:
        def write(self, text: str) -> None:
            lines.extend(text.splitlines())

        def flush(self) -> None:
            pass

    check_credentials(settings, environ={"GITHUB_ACTIONS": "true"}, stream=Stream())  # type: ignore[arg-type]
    assert "::add-mask::ak-123" in lines and "::add-mask::as-456" in lines


# -- bad inputs ---------------------------------------------------------------------------------


def test_requirements_that_install_a_local_folder_are_refused(tmp_path: Path) -> None:
    folder = copy_project(tmp_path, "requirements_project")
    (folder / "requirements.txt").write_text("-r requirements/base.txt\n-e .[test]\n")
    with pytest.raises(SettingsError, match=r"line 2 installs a local folder \('-e \.\[test\]'\)"):
        build_recipe(settings_for(folder))


def test_requirements_outside_the_project_are_refused(tmp_path: Path) -> None:
    folder = copy_project(tmp_path, "requirements_project")
    (tmp_path / "shared.txt").write_text("numpy\n")
    (folder / "requirements.txt").write_text("-r ../shared.txt\n")
    with pytest.raises(SettingsError, match="outside the working directory"):
        build_recipe(settings_for(folder))


def test_unknown_extra_or_group_is_refused_naming_what_exists(tmp_path: Path) -> None:
    folder = copy_project(tmp_path, "uv_project")
    with pytest.raises(SettingsError, match=r"'gpus' for input 'extras'.* has fast"):
        build_recipe(settings_for(folder, extras="gpus"))
    with pytest.raises(SettingsError, match=r"'docs' for input 'groups'.* has dev, gpu"):
        build_recipe(settings_for(folder, groups="docs"))


def test_image_and_dockerfile_together_are_refused(tmp_path: Path) -> None:
    folder = copy_project(tmp_path, "dockerfile_project")
    with pytest.raises(SettingsError, match="'image' and 'dockerfile' were both given"):
        build_recipe(settings_for(folder, dockerfile="Dockerfile", image="python:3.12"))


def test_dump_toml_round_trips_what_pyproject_files_hold() -> None:
    import tomllib

    tables = {
        "project": {
            "name": "odd",
            "dependencies": ['torch>=2 ; sys_platform == "linux"', "a\\b", "t\tab\x7f", "é 🚀"],
            "optional-dependencies": {"gpu.x": ["cupy"], "empty": []},
        },
        "tool.uv": {"sources": {"torch": [{"index": "cu128", "marker": "x"}]}, "package": True},
    }
    text = dump_toml(tables)
    assert tomllib.loads(text)["tool"]["uv"] == tables["tool.uv"]
    assert tomllib.loads(text)["project"] == tables["project"]
