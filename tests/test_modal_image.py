"""The Modal image recipe, the dependency key, the plan and the Modal objects, offline.

The app, function and image are built with the real `modal` SDK (the version this project locks)
and read back through the SDK's lazily evaluated layers: each layer's Dockerfile commands and
build-context files as Modal would send them, and the files each container-start mount uploads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_project_files import hostile_project

from modal_gpu_action.backends import modal as modal_backend
from modal_gpu_action.backends.modal import (
    ModalBackend,
    _Shard,
    build_app,
    check_credentials,
    container_timeout,
    plan,
)
from modal_gpu_action.backends.modal_image import (
    REMOTE_PROJECT,
    build_recipe,
    dependency_key,
    describe_steps,
    dump_toml,
    stage_build_files,
)
from modal_gpu_action.runner import GpuFacts, RunRequest, RunResult, synthesize_junit
from modal_gpu_action.settings import Settings, SettingsError, load_settings

PROJECTS = Path(__file__).parent / "fixtures" / "modal_projects"
REPO = Path(__file__).resolve().parents[1]


def copy_project(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(PROJECTS / name, tmp_path / name))


def settings_for(folder: Path, **inputs: str) -> Settings:
    flags: dict[str, str | None] = {"backend": "modal", "working-directory": str(folder)}
    flags.update({key.replace("_", "-"): value for key, value in inputs.items()})
    return load_settings(flags, {}, workspace=folder)


# -- the SDK's lazily built objects, read back ------------------------------------------------


@dataclass
class Layer:
    commands: list[str]
    context_files: dict[str, str]  # name in the build context -> local path
    context_mount: list[str] = field(default_factory=list)  # files a COPY takes from a folder


@dataclass
class Chain:
    layers: list[Layer]  # base first
    mounts: list[Any]  # added at container start (copy=False), in order
    sources: list[dict[str, Any]]  # registry/Dockerfile starting points, as the SDK holds them


def _cells(function: Any) -> dict[str, Any]:
    names = function.__code__.co_freevars
    return {n: c.cell_contents for n, c in zip(names, function.__closure__ or (), strict=True)}


def builder_version() -> str:
    from modal._image import ImageBuilderVersion

    return max(v for v in typing.get_args(ImageBuilderVersion) if v[0].isdigit())


def read_chain(image: Any) -> Chain:
    from modal._utils.async_utils import synchronizer

    chain = Chain([], [], [])
    version = builder_version()

    def files_of(mount: Any) -> list[str]:
        if mount._entries is None:  # a named mount (Modal's standalone Python builds)
            return [mount._rep]
        return sorted(str(remote) for e in mount._entries for _, remote in e.get_files_to_upload())

    def visit(img: Any) -> None:
        cells = _cells(img._load)
        if "mount" in cells and "base_image" in cells:  # add_local_*(copy=False)
            visit(cells["base_image"])
            chain.mounts.append(cells["mount"])
            return
        if "split_image" in cells:  # from_registry(add_python=...)
            chain.sources.append({"add_python": cells["add_python"]})
            visit(cells["split_image"])
            return
        if "dockerfile_image" in cells:  # from_dockerfile: its layers are made at load time
            context = _cells(cells["dockerfile_image"])["context_mount_function"](version)
            chain.sources.append(
                {
                    "dockerfile": str(cells["path"]),
                    "add_python": cells["add_python"],
                    "context": files_of(context) if context else [],
                }
            )
            return
        for base in (cells.get("base_images") or {}).values():
            visit(base)
        spec = cells["dockerfile_function"](version)
        mount_function = cells.get("context_mount_function")
        mount = mount_function(version) if mount_function else None
        chain.layers.append(
            Layer(list(spec.commands), dict(spec.context_files), files_of(mount) if mount else [])
        )

    visit(synchronizer._translate_in(image))
    return chain


def mounted_files(chain: Chain) -> list[str]:
    return sorted(
        str(remote)
        for mount in chain.mounts
        for entry in mount._entries
        for _, remote in entry.get_files_to_upload()
    )


@dataclass
class Built:
    recipe: Any
    chain: Chain
    options: dict[str, Any]
    staging: Path


@pytest.fixture
def built(tmp_path: Path) -> Iterator[Any]:
    """build(settings) -> the recipe, the image's layers and the function's options."""

    def build(settings: Settings) -> Built:
        from modal._utils.async_utils import synchronizer

        recipe = build_recipe(settings)
        staging = tmp_path / f"staging-{time.monotonic_ns()}"
        staging.mkdir()
        stage_build_files(recipe, staging)
        _app, function = build_app(settings, recipe, staging)
        raw = synchronizer._translate_in(function)
        cells = _cells(raw._load)
        options = {
            "gpu": raw._spec.gpus,
            "timeout": cells["timeout"],
            "retries": cells["retry_policy"].retries if cells["retry_policy"] else None,
            "secrets": [s._rep.removeprefix("modal.") for s in raw._spec.secrets],
            "module": cells["info"].module_name,
            "function": cells["info"].function_name,
            "function_mounts": [m._rep for m in cells["all_mounts"]],
        }
        return Built(recipe, read_chain(raw._spec.image), options, staging)

    yield build


def commands(chain: Chain) -> list[str]:
    return [c for layer in chain.layers for c in layer.commands]


# -- recipes, checked on the objects the SDK would send -------------------------------------------


def test_uv_project_layers_hold_uv_lock_and_the_dependency_tables_only(
    tmp_path: Path, built: Any
) -> None:
    folder = copy_project(tmp_path, "uv_project")
    (folder / ".gitignore").write_text(".env\n")
    junk = (".env", ".venv/pyvenv.cfg", ".venv/bin/python", "src/uvproj/__pycache__/x.pyc")
    for name in junk:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("junk")
    result = built(settings_for(folder, gpu="H100"))

    assert result.recipe.source == "uv.lock" and result.recipe.install_project
    assert not result.recipe.pytest_added  # the dev group, which uv sync installs, has it
    base, sync = result.chain.layers
    assert base.commands[0].startswith("FROM python:3.12")
    assert sync.commands[-2:] == [
        "RUN /.uv/uv sync --project=/.uv --no-install-workspace --compile-bytecode --frozen",
        "ENV PATH=/.uv/.venv/bin:$PATH",
    ]
    assert set(sync.context_files) == {"/.pyproject.toml", "/.uv.lock"}
    staged = Path(sync.context_files["/.pyproject.toml"]).read_text()
    assert "[tool.ruff]" not in staged and "uv_build" not in staged
    assert 'dependencies = ["iniconfig>=2"]' in staged and "[dependency-groups]" in staged
    lock = Path(sync.context_files["/.uv.lock"]).read_bytes()
    assert lock == (folder / "uv.lock").read_bytes()
    # The source and our runner arrive at container start, without junk.
    files = mounted_files(result.chain)
    project = [f for f in files if f.startswith(REMOTE_PROJECT)]
    assert project == [
        f"{REMOTE_PROJECT}/{p}"
        for p in (
            ".gitignore",
            "pyproject.toml",
            "src/uvproj/__init__.py",
            "tests/test_uvproj.py",
            "uv.lock",
        )
    ]
    assert "/root/modal_gpu_action/runner.py" in files
    assert "/root/modal_gpu_action/sharding.py" in files
    assert "/root/modal_gpu_action/backends/modal_entry.py" in files
    assert result.options["module"] == "modal_gpu_action.backends.modal_entry"
    assert result.options["function"] == "run_shard"


def test_the_mount_holds_exactly_the_listed_files_never_a_link(tmp_path: Path, built: Any) -> None:
    folder = hostile_project(copy_project(tmp_path, "upload_project"), tmp_path / "outside")
    result = built(settings_for(folder))

    upload = result.recipe.upload
    project = [f for f in mounted_files(result.chain) if f.startswith(REMOTE_PROJECT + "/")]
    assert project == [f"{REMOTE_PROJECT}/{name}" for name in upload.files]
    assert {link.path for link in upload.links} == {"alias.txt", "linked_data"}
    # What the SDK would read for each mounted file: never a link's target.
    sources = [
        Path(local)
        for mount in result.chain.mounts
        for entry in mount._entries
        for local, remote in entry.get_files_to_upload()
        if str(remote).startswith(REMOTE_PROJECT + "/")
    ]
    assert sorted(sources) == sorted(folder / name for name in upload.files)
    assert any(step.startswith("source: 7 files") and "6 refused" in step for step in
               describe_steps(result.recipe))  # fmt: skip


def test_a_dockerfile_context_holds_uploaded_files_only(tmp_path: Path, built: Any) -> None:
    folder = copy_project(tmp_path, "dockerfile_project")
    with (folder / "Dockerfile").open("a") as dockerfile:
        dockerfile.write("COPY tools /opt/tools\n")
    (folder / "tools" / "passwd").symlink_to("/etc/passwd")
    (folder / "tools" / "skipped.sh").write_text("echo skipped\n")
    (folder / ".dockerignore").write_text("tools/skipped.sh\n")
    result = built(settings_for(folder, dockerfile="Dockerfile"))

    (source,) = result.chain.sources
    assert source["context"] == ["/tools/setup.sh"]
    assert [p.relative_to(folder).as_posix() for p in result.recipe.dockerfile_files] == [
        "tools/setup.sh",
        "tools/skipped.sh",  # the key follows the COPY lines; .dockerignore is read by Modal
        ".dockerignore",
    ]


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


def test_uv_project_extras_and_groups_go_to_uv_sync(tmp_path: Path, built: Any) -> None:
    folder = copy_project(tmp_path, "uv_project")
    result = built(settings_for(folder, extras="fast", groups="gpu"))

    sync = result.chain.layers[-1].commands
    assert "--group=gpu" in sync[-2] and "--extra=fast" in sync[-2]


def test_requirements_project_layer_copies_the_requirement_files_only(
    tmp_path: Path, built: Any
) -> None:
    folder = copy_project(tmp_path, "requirements_project")
    result = built(settings_for(folder, extra_packages="pytest-timeout\nnumpy>=2"))

    assert result.recipe.source == "requirements" and not result.recipe.install_project
    _base, requirements, packages = result.chain.layers
    assert requirements.commands == [
        "FROM base",
        "COPY --from=ghcr.io/astral-sh/uv:latest /uv /.uv/uv",
        "COPY . /.requirements",
        "RUN /.uv/uv pip install --python $(command -v python) --compile-bytecode"
        " -r /.requirements/requirements.txt",
    ]
    # The build context: both files, the one the other includes with its relative path kept.
    assert requirements.context_mount == ["/requirements.txt", "/requirements/base.txt"]
    assert packages.commands[-1].endswith("--compile-bytecode 'numpy>=2' pytest-timeout")
    assert not result.recipe.pytest_added


def test_plain_pyproject_project_installs_its_declared_dependencies(
    tmp_path: Path, built: Any
) -> None:
    folder = copy_project(tmp_path, "pyproject_project")
    result = built(settings_for(folder))

    assert result.recipe.source == "pyproject" and not result.recipe.install_project
    _, dependencies, pytest_layer = result.chain.layers
    assert dependencies.commands[-1].endswith("--compile-bytecode 'iniconfig>=2' packaging")
    assert pytest_layer.commands[-1].endswith(" pytest")  # not declared without the extra
    assert result.recipe.pytest_added
    assert not [layer.context_files for layer in result.chain.layers if layer.context_files]


def test_registry_image_with_python_keeps_its_own(tmp_path: Path, built: Any) -> None:
    folder = copy_project(tmp_path, "pyproject_project")
    result = built(settings_for(folder, image="nvcr.io/nvidia/pytorch:25.01-py3", extras="test"))

    assert result.chain.layers[0].commands == ["FROM nvcr.io/nvidia/pytorch:25.01-py3"]
    assert not result.chain.sources  # no add_python
    assert not result.recipe.pytest_added
    assert any("python-version" in note for note in result.recipe.notes)


def test_registry_image_without_python_gets_modal_standalone_python(
    tmp_path: Path, built: Any
) -> None:
    folder = copy_project(tmp_path, "pyproject_project")
    result = built(settings_for(folder, image="nvidia/cuda:12.4.1-devel-ubuntu22.04"))

    assert result.chain.sources == [{"add_python": "3.12"}]
    first, python = result.chain.layers[:2]
    assert first.commands == ["FROM nvidia/cuda:12.4.1-devel-ubuntu22.04"]
    assert "COPY /python/. /usr/local" in python.commands


def test_dockerfile_project_context_is_what_its_copy_lines_take(tmp_path: Path, built: Any) -> None:
    folder = copy_project(tmp_path, "dockerfile_project")
    result = built(settings_for(folder, dockerfile="Dockerfile"))

    (source,) = result.chain.sources
    assert source["dockerfile"] == str(folder / "Dockerfile")
    assert source["add_python"] == "3.12"  # nvidia/cuda has no Python
    assert source["context"] == ["/tools/setup.sh"]  # Modal's own reading of the COPY lines
    assert [p.relative_to(folder).as_posix() for p in result.recipe.dockerfile_files] == [
        "tools/setup.sh"
    ]
    assert any("-r /.requirements/requirements.txt" in c for c in commands(result.chain))


def test_function_options_gpu_timeout_retries_and_secrets(tmp_path: Path, built: Any) -> None:
    folder = copy_project(tmp_path, "pyproject_project")
    settings = settings_for(
        folder,
        gpu="H100, a100-80gb",
        timeout_minutes="12.5",
        retries="3",
        env="HF_TOKEN=abc\nMODE=fast",
        modal_secrets="team-hf, wandb",
    )
    result = built(settings)

    assert result.options["gpu"] == ["H100", "A100-80GB"]
    assert result.options["timeout"] == 750 + 120 == container_timeout(settings)
    assert result.options["retries"] == 3
    assert result.options["secrets"] == [
        "Secret.from_dict([HF_TOKEN, MODE])",
        "Secret.from_name('team-hf')",
        "Secret.from_name('wandb')",
    ]
    # include_source=False: our package arrives once, through the image's own mount only.
    assert not [m for m in result.options["function_mounts"] if "modal_gpu_action" in m]
    assert "abc" not in json.dumps(result.options) + repr(result.chain.layers)


def test_no_retries_asked_for_is_none(tmp_path: Path, built: Any) -> None:
    folder = copy_project(tmp_path, "pyproject_project")
    assert built(settings_for(folder, retries="0")).options["retries"] is None


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


# -- turning the containers' answers into a BackendResult ----------------------------------------


def result_for(shard: int, count: int, *, gpu: str | None, **fields: Any) -> RunResult:
    gpus = [{"index": 0, "name": gpu, "memory_total_mib": 81559, "driver_version": "580"}]
    values: dict[str, Any] = {
        "junit_xml": synthesize_junit([]),
        "exit_code": 0,
        "duration_seconds": 10.0,
        "gpu": GpuFacts(bool(gpu), gpus if gpu else [], "13.0", "note"),
        "timed_out": False,
        "crashed": None,
        "no_tests": False,
        "output_tail": "",
        "shard_index": shard,
        "shard_count": count,
    }
    values.update(fields)
    return RunResult(**values)


def backend_for(tmp_path: Path, **inputs: str) -> ModalBackend:
    folder = copy_project(tmp_path, "pyproject_project")
    return ModalBackend(settings_for(folder, **inputs), environ={})


def test_cost_uses_the_price_of_the_gpu_each_container_reported(tmp_path: Path) -> None:
    backend = backend_for(tmp_path, gpu="H100:2,A100-80GB:2", shards="2")
    requests = backend.requests()
    shards = [_Shard(r, seconds=100.0) for r in requests]
    shards[0].result = result_for(0, 2, gpu="NVIDIA H100 80GB HBM3")
    shards[1].result = result_for(1, 2, gpu="NVIDIA A100-SXM4-80GB")

    result = backend._result(shards, wall=120.0)
    assert result.cost_usd == pytest.approx(100 * 2 * 0.001097 + 100 * 2 * 0.000694)
    assert result.gpu_seconds == 400.0
    assert result.backend == "modal" and not result.cancelled


def test_cost_without_a_reported_gpu_is_the_worst_case_of_the_fallbacks(tmp_path: Path) -> None:
    backend = backend_for(tmp_path, gpu="L4,H100")
    shard = _Shard(backend.requests()[0], seconds=10.0)
    shard.result = result_for(0, 1, gpu=None)
    assert backend._result([shard], wall=10.0).cost_usd == pytest.approx(10 * 0.001097)


def test_requests_leave_env_values_to_the_secret(tmp_path: Path) -> None:
    backend = backend_for(tmp_path, env="TOKEN=abc", shards="3")
    requests = backend.requests()
    assert [r.env for r in requests] == [{}, {}, {}]
    assert [r.label for r in requests] == ["shard 1/3", "shard 2/3", "shard 3/3"]
    assert {r.working_directory for r in requests} == {REMOTE_PROJECT}


def test_a_modal_timeout_is_a_timed_out_shard_and_other_errors_are_infrastructure(
    tmp_path: Path,
) -> None:
    backend = backend_for(tmp_path, shards="2")
    first, second = (_Shard(r, started=time.monotonic()) for r in backend.requests())
    backend._settle(first, None, TimeoutError("Function call exceeded its timeout"))
    backend._settle(second, None, RuntimeError("container exited with -9"))

    assert first.result is not None and first.result.timed_out
    assert second.error == "shard 2/2 failed on Modal: RuntimeError: container exited with -9"
    result = backend._result([first, second], wall=1.0)
    assert result.timed_out and result.infrastructure_error == second.error


def test_pytest_that_cannot_start_is_infrastructure_with_its_cause(tmp_path: Path) -> None:
    backend = backend_for(tmp_path)
    shard = _Shard(backend.requests()[0], started=time.monotonic())
    tail = "ImportError while loading conftest '/root/project/tests/conftest.py'.\n" + (
        "tests/conftest.py:1: in <module>\nE   ModuleNotFoundError: No module named 'cupy'"
    )
    answer = result_for(0, 1, gpu=None, exit_code=4, output_tail=tail,
                        problem="pytest exited with code 4 (usage error)")  # fmt: skip
    backend._settle(shard, {"result": answer.to_dict(), "seconds": 3.0}, None)

    assert shard.error == (
        "the container: pytest could not run the tests: pytest exited with code 4 (usage error):"
        " ModuleNotFoundError: No module named 'cupy'"
    )
    assert shard.result is not None  # kept beside the error


def test_no_answer_at_all_raises_infrastructure_error(tmp_path: Path) -> None:
    from modal_gpu_action.backends.base import InfrastructureError

    backend = backend_for(tmp_path)
    shard = _Shard(backend.requests()[0], started=time.monotonic())
    backend._settle(shard, {"error": "pytest is not installed", "detail": "tail"}, None)
    with pytest.raises(InfrastructureError, match="the container: pytest is not installed"):
        backend._result([shard], wall=1.0)


def test_interrupter_turns_a_cancel_into_one_keyboard_interrupt_only_when_armed() -> None:
    cancel = threading.Event()
    with modal_backend._Interrupter(cancel) as interrupter:
        with pytest.raises(KeyboardInterrupt), interrupter.armed():
            threading.Timer(0.2, cancel.set).start()
            time.sleep(5)  # a blocking call that only an exception can end
        with pytest.raises(KeyboardInterrupt), interrupter.armed():
            pass  # already cancelled: arming raises at once
    assert cancel.is_set()


def test_plan_request_round_trip_is_json(tmp_path: Path) -> None:
    backend = backend_for(tmp_path)
    request = backend.requests()[0]
    assert RunRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request
