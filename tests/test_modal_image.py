"""The Modal image recipe, the dependency key and the plan, offline. What the recipe becomes in
Modal's SDK, and what that sends to Modal, is test_modal_app.py's.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modal_gpu_action.backends.modal import check_credentials, plan
from modal_gpu_action.backends.modal_app import container_setup
from modal_gpu_action.backends.modal_image import (
    Recipe,
    build_recipe,
    dependency_key,
    describe_steps,
    install_command,
    layers,
    stage_build_files,
)
from modal_gpu_action.backends.project_version import ProjectVersion
from modal_gpu_action.container.entry import install_failure
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
    assert out["worst-case-cost-usd"] == round(2 * 0.001097 * 1920 * 2, 4)


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


# -- the recipe for the projects people have ----------------------------------------------------


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    (folder / "tests").mkdir(exist_ok=True)
    return folder


def steps_of(folder: Path, **inputs: str) -> list[str]:
    return describe_steps(build_recipe(settings_for(folder, **inputs)))


def install_line(recipe: Recipe) -> str:
    """The last `uv pip install` of the recipe's layers."""
    return [c for layer in layers(recipe) for c in layer.commands if "pip install" in c][-1]


def test_a_uv_project_modal_cannot_read_gets_our_own_uv_sync(tmp_path: Path) -> None:
    folder = copy_project(tmp_path, "uv_mixed_project")
    recipe = build_recipe(settings_for(folder))

    sync, tools = layers(recipe)
    assert sync.context_files == (
        ("/.pyproject.toml", "uv/pyproject.toml"),
        ("/.uv.lock", "uv/uv.lock"),
    )
    assert sync.commands[3] == (
        "RUN /.uv/uv sync --project=/.uv --frozen --no-install-project --compile-bytecode"
        ' --no-python-downloads --python "$(command -v python || command -v python3)"'
        " --group=tests"
    )
    assert sync.commands[4] == "ENV PATH=/.uv/.venv/bin:$PATH"
    # The build backend (and what hatchling asks for an editable install) in a layer of its own.
    assert tools.commands == (
        'RUN /.uv/uv pip install --python "$(command -v python || command -v python3)"'
        " --break-system-packages --compile-bytecode 'hatchling>=1.25' 'editables~=0.3'",
    )
    assert recipe.default_groups == ("dev",) and not recipe.pytest_added
    # The staged pyproject.toml keeps the mixed array: uv reads it, Modal's toml 0.10 never does.
    stage_build_files(recipe, tmp_path / "staging")
    staged = (tmp_path / "staging" / "uv" / "pyproject.toml").read_text()
    assert 'dev = ["packaging>=24", { include-group = "tests" }]' in staged


def test_test_dependencies_none_leaves_the_test_groups_and_uvs_defaults_out(
    tmp_path: Path,
) -> None:
    folder = copy_project(tmp_path, "uv_mixed_project")
    recipe = build_recipe(settings_for(folder, test_dependencies="none"))
    sync = layers(recipe)[0].commands[3]
    assert sync.endswith("--no-default-groups") and "--group" not in sync
    assert recipe.pytest_added  # pytest was in the tests group only
    assert any(s.startswith("test dependencies: none added") for s in describe_steps(recipe))
    assert dependency_key(recipe) != key(folder)


def test_setup_cfg_declarations_and_the_test_extra_are_installed(tmp_path: Path) -> None:
    folder = copy_project(tmp_path, "setupcfg_project")
    recipe = build_recipe(settings_for(folder))
    assert recipe.source == "setup.cfg" and recipe.extras == ("test",)
    assert recipe.dependencies == ("iniconfig>=2", "pytest>=8", "packaging>=24")
    assert install_line(recipe).endswith(
        " 'iniconfig>=2' 'pytest>=8' 'packaging>=24' 'setuptools>=40.8.0'"
    )
    assert recipe.install_project and not recipe.install_dependencies and not recipe.warnings
    with pytest.raises(
        SettingsError, match=r"'cuda' for input 'extras': setup.cfg's extras_require has gpu, test"
    ):
        settings_for(folder, extras="cuda")


def test_a_setup_py_that_computes_its_dependencies_is_installed_with_them_at_start(
    tmp_path: Path,
) -> None:
    folder = copy_project(tmp_path, "setuppy_project")
    recipe = build_recipe(settings_for(folder))
    assert recipe.source == "setup.py" and recipe.install_dependencies
    assert recipe.dependencies == ("pytest>=8",)  # extras_require is a literal: read
    assert recipe.warnings == (
        "setup.py computes install_requires: its dependencies cannot be known without running"
        " it; the project is installed with its dependencies at container start (those the"
        " image lacks are fetched on every run): declare them in pyproject.toml, setup.cfg or a"
        " requirements file",
    )
    assert install_command(recipe) == "uv pip install --no-build-isolation -e /root/project"
    assert container_setup(recipe)["install_dependencies"] is True


@pytest.mark.parametrize(
    ("setup_py", "dependencies", "warning"),
    [
        ("from setuptools import setup\nsetup()\n", (), ""),
        (
            "import setuptools\nsetuptools.setup(name='p', install_requires=['numpy>=2'],"
            " python_requires='>=3.10')\n",
            ("numpy>=2",),
            "",
        ),
        ("from setuptools import setup\nsetup(**dict(name='p'))\n", (), "passes **keywords"),
        ("print 'python 2'\n", (), "is not Python 3 that can be parsed"),
        ("import os\n", (), "has no setup() call"),
    ],
)
def test_setup_py_is_read_without_running_it(
    tmp_path: Path, setup_py: str, dependencies: tuple[str, ...], warning: str
) -> None:
    ran = tmp_path / "setup.py-ran"
    folder = write(tmp_path, {"setup.py": f"{setup_py}open({str(ran)!r}, 'w')\n"})
    recipe = build_recipe(settings_for(folder))
    assert not ran.exists()
    assert recipe.dependencies == dependencies
    assert (warning in " ".join(recipe.warnings)) if warning else not recipe.warnings
    assert recipe.install_dependencies is bool(warning)
    assert recipe.build_requires == ("setuptools>=40.8.0",)


def test_requirement_files_for_tests_are_found_by_name(tmp_path: Path) -> None:
    folder = write(
        tmp_path,
        {
            "requirements.txt": "numpy\n",
            "requirements-dev.txt": "ruff\n",
            "requirements/test-gpu.txt": "-r ../requirements.txt\npytest\n",
            "requirements/docs.txt": "sphinx\n",
        },
    )
    recipe = build_recipe(settings_for(folder))
    assert [p.relative_to(folder).as_posix() for p in recipe.requirements] == [
        "requirements.txt",
        "requirements/test-gpu.txt",  # a test file is found: the dev file is not used
    ]
    assert recipe.for_tests == ("file requirements/test-gpu.txt",)
    (folder / "requirements" / "test-gpu.txt").unlink()
    recipe = build_recipe(settings_for(folder))
    assert [p.name for p in recipe.requirements] == ["requirements.txt", "requirements-dev.txt"]
    assert recipe.pytest_added
    none = build_recipe(settings_for(folder, test_dependencies="none"))
    assert [p.name for p in none.requirements] == ["requirements.txt"]


def test_the_test_extra_else_the_dev_extra_and_the_projects_own_references(
    tmp_path: Path,
) -> None:
    pyproject = """
[project]
name = "My_Lib"
version = "1"
dependencies = ["numpy"]
[project.optional-dependencies]
gpu = ["cupy-cuda12x"]
fast = ["numba"]
test = ["my-lib[fast]", "pytest"]
dev = ["ruff"]
all = ["my_lib[gpu,test]"]
"""
    folder = write(tmp_path, {"pyproject.toml": pyproject})
    recipe = build_recipe(settings_for(folder))
    assert recipe.extras == ("test",)
    assert recipe.dependencies == ("numpy", "numba", "pytest")
    assert build_recipe(settings_for(folder, extras="all")).dependencies == (
        "numpy", "cupy-cuda12x", "numba", "pytest",
    )  # fmt: skip
    (folder / "pyproject.toml").write_text(
        pyproject.replace('test = ["my-lib[fast]", "pytest"]\n', "")
    )
    recipe = build_recipe(settings_for(folder))
    assert recipe.extras == ("dev",) and recipe.dependencies == ("numpy", "ruff")
    assert build_recipe(settings_for(folder, test_dependencies="none")).dependencies == ("numpy",)


def test_setuptools_dynamic_dependencies_are_read_from_their_files(tmp_path: Path) -> None:
    pyproject = """
[project]
name = "dyn"
version = "1"
dynamic = ["dependencies"]
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"
[tool.setuptools.dynamic]
dependencies = {file = ["requirements.in"]}
"""
    folder = write(tmp_path, {"pyproject.toml": pyproject, "requirements.in": "numpy>=2\n"})
    recipe = build_recipe(settings_for(folder))
    assert [p.name for p in recipe.requirements] == ["requirements.in"]
    assert not recipe.warnings and not recipe.install_dependencies
    (folder / "pyproject.toml").write_text(pyproject.replace("[tool.setuptools.dynamic]", "[x]"))
    recipe = build_recipe(settings_for(folder))
    assert recipe.install_dependencies
    assert recipe.warnings[0].startswith("pyproject.toml declares its dependencies as dynamic")


def test_every_install_into_the_images_python_breaks_system_packages(tmp_path: Path) -> None:
    """PEP 668's marker (Ubuntu 24.04-based images) would refuse a plain `uv pip install`."""
    for name in ("requirements_project", "pyproject_project", "uv_mixed_project"):
        recipe = build_recipe(settings_for(copy_project(tmp_path, name)))
        for command in (c for layer in layers(recipe) for c in layer.commands):
            assert "pip install" not in command or "--break-system-packages" in command


# -- the version of a git-versioned project -----------------------------------------------------


def git(folder: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    command = ["git", "-c", "user.name=T", "-c", "user.email=t@example.com", "-C", str(folder)]
    done = subprocess.run([*command, *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def scm_repository(tmp_path: Path) -> Path:
    folder = copy_project(tmp_path, "scm_project")
    git(folder, "init", "-q")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "one")
    return folder


def version_of(folder: Path) -> ProjectVersion:
    version = build_recipe(settings_for(folder)).version
    assert version is not None
    return version


def test_the_version_follows_setuptools_scms_default_scheme(tmp_path: Path) -> None:
    folder = scm_repository(tmp_path)
    count = git(folder, "rev-list", "--count", "HEAD")
    untagged = version_of(folder)
    assert untagged.version == f"0.1.dev{count}+g{git(folder, 'rev-parse', '--short', 'HEAD')}"
    assert "fetch-depth: 0" in untagged.warning

    git(folder, "tag", "v2.0.9")
    tagged = version_of(folder)
    assert (tagged.version, tagged.warning) == ("2.0.9", "")
    assert tagged.env == {
        "SETUPTOOLS_SCM_PRETEND_VERSION": "2.0.9",
        "SETUPTOOLS_SCM_PRETEND_VERSION_FOR_SCMPROJ": "2.0.9",
    }
    before = key(folder)

    (folder / "scmproj" / "new.py").write_text("X = 1\n")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "two")
    node = git(folder, "rev-parse", "--short", "HEAD")
    assert version_of(folder).version == f"2.0.10.dev1+g{node}"
    assert key(folder) == before  # the version is given at start: no layer changes

    (folder / "scmproj" / "new.py").write_text("X = 2\n")
    today = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d")
    assert version_of(folder).version == f"2.0.10.dev1+g{node}.d{today}"
    recipe = build_recipe(settings_for(folder))
    assert container_setup(recipe)["install_env"] == recipe.version.env  # type: ignore[union-attr]
    assert any(s.startswith("version: 2.0.10.dev1+g") for s in describe_steps(recipe))


def test_without_git_the_version_is_a_placeholder_plan_warns_about(tmp_path: Path) -> None:
    folder = copy_project(tmp_path, "scm_project")  # no repository: a tarball's checkout
    version = version_of(folder)
    assert version.version == "0.0.0" and version.source == "no git repository"
    assert any("given version 0.0.0" in s for s in steps_of(folder) if s.startswith("warning:"))


@pytest.mark.parametrize(
    ("build", "tool"),
    [
        ('requires = ["hatchling", "hatch-vcs"]\nbuild-backend = "hatchling.build"', "hatch-vcs"),
        ('requires = ["setuptools", "setuptools_scm[toml]>=6"]', "setuptools-scm"),
        ('requires = ["pdm-backend"]\nbuild-backend = "pdm.backend"\n[tool.pdm.version]\nsource = "scm"', "pdm-backend"),
    ],
)  # fmt: skip
def test_git_versioned_build_backends_are_recognised(tmp_path: Path, build: str, tool: str) -> None:
    folder = write(
        tmp_path, {"pyproject.toml": f"[project]\nname = 'v'\ndynamic = ['version']\n[build-system]\n{build}\n"}
    )  # fmt: skip
    version = version_of(folder)
    assert version.tool == tool
    if tool == "pdm-backend":
        assert version.env == {"PDM_BUILD_SCM_VERSION": "0.0.0"}
    static = (
        (folder / "pyproject.toml").read_text().replace("dynamic = ['version']", "version = '1'")
    )
    (folder / "pyproject.toml").write_text(static)
    assert build_recipe(settings_for(folder)).version is None


# -- the install at container start -------------------------------------------------------------

_FAILING_BACKEND = """
def get_requires_for_build_editable(config_settings=None):
    raise LookupError("setuptools-scm was unable to detect version for /root/project.")

build_editable = build_wheel = get_requires_for_build_wheel = get_requires_for_build_editable
"""


def test_a_failed_install_shows_the_installers_error_and_the_backends_exception(
    tmp_path: Path,
) -> None:
    """The real uv, offline: a build backend in the project that raises. Both attempts (without
    build isolation, then with it) fail; the line names uv's error and the exception."""
    if shutil.which("uv") is None:
        pytest.skip("uv is not on PATH")
    folder = write(
        tmp_path / "proj",
        {
            "pyproject.toml": "[project]\nname = 'failing'\nversion = '1'\n[build-system]\n"
            "requires = []\nbuild-backend = 'backend'\nbackend-path = ['.']\n",
            "backend.py": _FAILING_BACKEND,
        },
    )
    venv = tmp_path / "venv"
    subprocess.run(["uv", "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    probe = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        " from modal_gpu_action.container.entry import install_project;"
        " print(json.dumps(install_project(sys.argv[2])))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))}
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe, str(REPO / "src"), str(folder)],
        env={**env, "UV_OFFLINE": "1"}, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    problem, tail = json.loads(done.stdout.splitlines()[-1])
    assert problem.startswith("the project did not install (`")
    assert "error: Failed to build `failing @ file://" in problem
    assert problem.endswith(
        "| LookupError: setuptools-scm was unable to detect version for /root/project."
    )
    assert "hint:" not in problem and "hint:" in tail
    assert "trying again with build isolation" in done.stderr


def test_the_cause_of_a_failed_install_is_never_uvs_generic_hint() -> None:
    assert install_failure(["Resolved 1 package", "hint: This usually indicates a problem"]) == (
        "Resolved 1 package"
    )
    pip = ["ERROR: Could not find a version that satisfies the requirement nope", "notice: x"]
    assert install_failure(pip) == pip[0]


def test_plan_warns_about_what_only_the_build_can_tell(tmp_path: Path) -> None:
    folder = write(
        tmp_path,
        {
            "pyproject.toml": "[project]\nname = 'ext'\nversion = '1'\nrequires-python = '>=3.10'\n"
            "[build-system]\nrequires = ['scikit-build-core']\n"
            "build-backend = 'scikit_build_core.build'\n"
        },
    )
    warnings = [
        s for s in steps_of(folder, image="pytorch/pytorch:2.4.1") if s.startswith("warning:")
    ]
    assert warnings == [
        "warning: the build backend scikit_build_core.build may ask for more while it builds the"
        " editable install (cmake, ninja, a compiler: not known here): then the install at"
        " container start falls back to build isolation, fetching it on every run",
        "warning: the image brings its own Python: whether requires-python '>=3.10' allows it is"
        " known only when it builds",
    ]
    assert not [s for s in steps_of(copy_project(tmp_path, "scm_project")) if "build backend" in s
                and s.startswith("warning:")]  # fmt: skip
