"""backends/modal_app.py: the image, app and function a run asks Modal for, read where Modal
reads them: the requests the real `modal` client sends to the local Modal server
(../shared/modal-mock), which records each image's Dockerfile commands and build-context files
and each function's options. Nothing here reads the SDK's own objects, so a `modal` upgrade
cannot break these tests without changing what reaches Modal.

What the server does not record (which files a mount or a build context holds) is checked on
our own filters, which Modal's walker calls with each path (`ignore=`), and, for the mounts, from
inside the emulated container by test_modal_e2e.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from modal_mock_server import ModalMock, clean_environ, client_command, why_unavailable
from test_project_files import hostile_project

from modal_gpu_action.backends.modal_app import (
    container_timeout,
    dockerfile_context_filter,
    upload_filter,
)
from modal_gpu_action.backends.modal_image import build_recipe, describe_steps, stage_build_files
from modal_gpu_action.settings import Settings, load_settings

PROJECTS = Path(__file__).parent / "fixtures" / "modal_projects"
SECRET = "abc-secret-value"

# Runs in the client's environment: builds each case's app with modal_app.build_app and starts
# it (`app.run()`: the images and the function are created on the server), then reads what the
# server recorded for it. Named secrets are created first, as `modal secret create` would.
CLIENT = """
import json, os, sys, tempfile
from pathlib import Path
import modal
from modal_gpu_action.backends.modal_app import build_app
from modal_gpu_action.backends.modal_image import build_recipe, stage_build_files
from modal_gpu_action.settings import load_settings

cases, state = json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2])
client = modal.Client.from_credentials(os.environ["MODAL_TOKEN_ID"], os.environ["MODAL_TOKEN_SECRET"])
for name in {n for case in cases.values() for n in case.get("secrets", [])}:
    modal.Secret.objects.create(name, {"KEY": "value"}, client=client)
sent = {}
for key, case in cases.items():
    folder = Path(case["folder"])
    settings = load_settings({"backend": "modal", "working-directory": str(folder), **case["inputs"]},
                             {}, workspace=folder)
    recipe = build_recipe(settings)
    before = json.loads(state.read_text())
    with tempfile.TemporaryDirectory() as staging:
        stage_build_files(recipe, Path(staging))
        app, _ = build_app(settings, recipe, Path(staging))
        with app.run(client=client):
            pass
    after = json.loads(state.read_text())
    images = [after["images"][k] for k in sorted(after["images"], key=int)]
    sent[key] = {"images": images[len(before["images"]):], "function": after["functions"]["run_shard"]}
print(json.dumps(sent))
"""

_UNAVAILABLE = why_unavailable()


def copy_project(tmp_path: Path, name: str, as_name: str = "") -> Path:
    return Path(shutil.copytree(PROJECTS / name, tmp_path / (as_name or name)))


def settings_for(folder: Path, **inputs: str) -> Settings:
    flags: dict[str, str | None] = {"backend": "modal", "working-directory": str(folder)}
    flags.update({key.replace("_", "-"): value for key, value in inputs.items()})
    return load_settings(flags, {}, workspace=folder)


def junk_uv_project(tmp_path: Path) -> Path:
    folder = copy_project(tmp_path, "uv_project")
    (folder / ".gitignore").write_text(".env\n")
    for name in (".env", ".venv/pyvenv.cfg", ".venv/bin/python", "src/uvproj/__pycache__/x.pyc"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("junk")
    return folder


def dockerfile_project_with_more_context(tmp_path: Path) -> Path:
    """A COPY of a whole folder that holds a link out and a file .dockerignore leaves out."""
    folder = copy_project(tmp_path, "dockerfile_project", "dockerfile_more")
    with (folder / "Dockerfile").open("a") as dockerfile:
        dockerfile.write("COPY tools /opt/tools\n")
    (folder / "tools" / "passwd").symlink_to("/etc/passwd")
    (folder / "tools" / "skipped.sh").write_text("echo skipped\n")
    (folder / ".dockerignore").write_text("tools/skipped.sh\n")
    return folder


CASES: dict[str, tuple[Callable[[Path], Path], dict[str, str], list[str]]] = {
    "uv": (junk_uv_project, {"gpu": "H100"}, []),
    "uv extras": (lambda t: copy_project(t, "uv_project"), {"extras": "fast", "groups": "gpu"}, []),
    "requirements": (
        lambda t: copy_project(t, "requirements_project"),
        {"extra-packages": "pytest-timeout\nnumpy>=2"},
        [],
    ),
    "pyproject": (lambda t: copy_project(t, "pyproject_project"), {}, []),
    "registry with python": (
        lambda t: copy_project(t, "pyproject_project"),
        {"image": "nvcr.io/nvidia/pytorch:25.01-py3", "extras": "test"},
        [],
    ),
    "registry without python": (
        lambda t: copy_project(t, "pyproject_project"),
        {"image": "nvidia/cuda:12.4.1-devel-ubuntu22.04"},
        [],
    ),
    "dockerfile": (
        lambda t: copy_project(t, "dockerfile_project"),
        {"dockerfile": "Dockerfile"},
        [],
    ),
    "options": (
        lambda t: copy_project(t, "pyproject_project"),
        {
            "gpu": "h100:2",
            "timeout-minutes": "12.5",
            "retries": "3",
            "env": f"HF_TOKEN={SECRET}\nMODE=fast",
            "modal-secrets": "team-hf, wandb",
        },
        ["team-hf", "wandb"],
    ),
    "no retries": (lambda t: copy_project(t, "pyproject_project"), {"retries": "0"}, []),
    "fallbacks": (lambda t: copy_project(t, "pyproject_project"), {"gpu": "H100, a100-80gb"}, []),
}


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """Every case's images (base first) and function, as the server received them."""
    if _UNAVAILABLE is not None:
        pytest.skip(f"MODAL APP TESTS NOT RUN: {_UNAVAILABLE}")
    tmp_path = tmp_path_factory.mktemp("modal-app")
    cases = {}
    for index, (key, (make, inputs, secrets)) in enumerate(CASES.items()):
        folder = make(tmp_path / f"case{index}")
        cases[key] = {"folder": str(folder), "inputs": inputs, "secrets": secrets}
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    server = ModalMock(tmp_path / "server")
    server.folder.mkdir()
    server.start()
    try:
        done = subprocess.run(
            client_command("-c", CLIENT, str(tmp_path / "cases.json"), str(server.state_path)),
            env=clean_environ(**server.env()),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-5000:]
        received: dict[str, dict[str, Any]] = json.loads(done.stdout.splitlines()[-1])
        received["*state*"] = {"text": server.state_path.read_text()}
        yield received
    finally:
        server.stop()


def commands(images: list[dict[str, Any]]) -> list[str]:
    return [c for image in images for c in image["dockerfile_commands"]]


# --- the layers ----------------------------------------------------------------------------------


def test_uv_project_layers_hold_uv_lock_and_the_dependency_tables_only(
    sent: dict[str, Any], tmp_path: Path
) -> None:
    base, sync, tools = sent["uv"]["images"]
    assert base["dockerfile_commands"][0].startswith("FROM python:3.12")
    assert sync["dockerfile_commands"][-2:] == [
        "RUN /.uv/uv sync --project=/.uv --frozen --no-install-project --compile-bytecode"
        ' --no-python-downloads --python "$(command -v python || command -v python3)"',
        "ENV PATH=/.uv/.venv/bin:$PATH",
    ]
    assert sync["context_files"] == ["/.pyproject.toml", "/.uv.lock"]
    # The build backend, for the install at container start without build isolation.
    assert tools["dockerfile_commands"][-1].endswith(" 'uv_build>=0.8,<0.14'")
    # What those two context files hold: the dependency tables and the lock, nothing else.
    folder = junk_uv_project(tmp_path)
    recipe = build_recipe(settings_for(folder, gpu="H100"))
    assert recipe.source == "uv.lock" and recipe.install_project
    assert not recipe.pytest_added  # the dev group, which uv sync installs, has it
    stage_build_files(recipe, tmp_path / "staging")
    staged = (tmp_path / "staging" / "uv" / "pyproject.toml").read_text()
    assert "[tool.ruff]" not in staged and "uv_build" not in staged
    assert 'dependencies = ["iniconfig>=2"]' in staged and "[dependency-groups]" in staged
    lock = (tmp_path / "staging" / "uv" / "uv.lock").read_bytes()
    assert lock == (folder / "uv.lock").read_bytes()


def test_uv_project_extras_and_groups_go_to_uv_sync(sent: dict[str, Any]) -> None:
    sync = commands(sent["uv extras"]["images"])
    run = next(c for c in sync if c.startswith("RUN /.uv/uv sync"))
    assert "--group=gpu" in run and "--extra=fast" in run


def test_requirements_project_layer_copies_the_requirement_files_only(
    sent: dict[str, Any], tmp_path: Path
) -> None:
    _base, requirements = sent["requirements"]["images"]
    assert requirements["dockerfile_commands"] == [
        "FROM base",
        "COPY --from=ghcr.io/astral-sh/uv:latest /uv /.uv/uv",
        "COPY . /.requirements",
        'RUN /.uv/uv pip install --python "$(command -v python || command -v python3)"'
        " --break-system-packages --compile-bytecode pytest-timeout 'numpy>=2'"
        " -r /.requirements/requirements.txt",
    ]
    # `COPY . /.requirements` copies the staged folder: both files, the one the other includes
    # with its relative path kept.
    folder = copy_project(tmp_path, "requirements_project")
    recipe = build_recipe(settings_for(folder, extra_packages="pytest-timeout\nnumpy>=2"))
    assert recipe.source == "requirements" and not recipe.install_project
    assert not recipe.pytest_added
    stage_build_files(recipe, tmp_path / "staging")
    staged = tmp_path / "staging" / "requirements"
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()) == [
        "requirements.txt",
        "requirements/base.txt",
    ]


def test_plain_pyproject_project_installs_its_declared_dependencies(sent: dict[str, Any]) -> None:
    _, dependencies = sent["pyproject"]["images"]
    # One resolution: the dependencies and the `test` extra (test-dependencies: auto), which
    # declares pytest.
    assert dependencies["dockerfile_commands"][-1].endswith(
        "--compile-bytecode 'iniconfig>=2' packaging 'pytest>=8'"
    )
    assert not [image for image in sent["pyproject"]["images"] if image["context_files"]]


def test_registry_image_with_python_keeps_its_own(sent: dict[str, Any], tmp_path: Path) -> None:
    images = sent["registry with python"]["images"]
    assert images[0]["dockerfile_commands"] == ["FROM nvcr.io/nvidia/pytorch:25.01-py3"]
    assert "COPY /python/. /usr/local" not in commands(images)  # no Python of Modal's added
    folder = copy_project(tmp_path, "pyproject_project")
    recipe = build_recipe(
        settings_for(folder, image="nvcr.io/nvidia/pytorch:25.01-py3", extras="test")
    )
    assert not recipe.pytest_added
    assert any("python-version" in note for note in recipe.notes)


def test_registry_image_without_python_gets_modal_standalone_python(sent: dict[str, Any]) -> None:
    first = sent["registry without python"]["images"][0]["dockerfile_commands"]
    assert first[:2] == ["FROM nvidia/cuda:12.4.1-devel-ubuntu22.04", "COPY /python/. /usr/local"]


def test_dockerfile_project_runs_its_own_lines_then_gets_python_and_requirements(
    sent: dict[str, Any], tmp_path: Path
) -> None:
    own, python, requirements = sent["dockerfile"]["images"]
    folder = copy_project(tmp_path, "dockerfile_project")
    lines = [line for line in (folder / "Dockerfile").read_text().splitlines() if line.strip()]
    assert [c for c in own["dockerfile_commands"] if c] == lines
    assert "COPY /python/. /usr/local" in python["dockerfile_commands"]  # nvidia/cuda has none
    assert any(
        "-r /.requirements/requirements.txt" in c for c in requirements["dockerfile_commands"]
    )
    recipe = build_recipe(settings_for(folder, dockerfile="Dockerfile"))
    assert recipe.base.add_python == "3.12"
    assert [p.relative_to(folder).as_posix() for p in recipe.dockerfile_files] == ["tools/setup.sh"]


# --- the function --------------------------------------------------------------------------------


def test_function_options_gpu_timeout_retries_and_secrets(
    sent: dict[str, Any], tmp_path: Path
) -> None:
    function = sent["options"]["function"]
    assert function["module"] == "modal_gpu_action.container.entry"
    assert function["gpu"] == ["H100:2"]
    settings = settings_for(copy_project(tmp_path, "pyproject_project"), timeout_minutes="12.5")
    assert function["timeout_secs"] == 750 + 120 == container_timeout(settings)
    assert function["retries"] == 3
    assert len(function["secret_ids"]) == 3  # the env input's, then the two named ones
    # The env input's values travel in the secret only: in no image, nor anything recorded.
    assert SECRET not in json.dumps(sent["options"]["images"]) + sent["*state*"]["text"]


def test_a_fallback_list_reaches_modal_in_its_order(sent: dict[str, Any]) -> None:
    assert sent["fallbacks"]["function"]["gpu"] == ["H100", "A100-80GB"]


def test_no_retries_asked_for_is_none(sent: dict[str, Any]) -> None:
    assert sent["no retries"]["function"]["retries"] is None
    assert sent["pyproject"]["function"]["retries"] == 1  # the default


# --- what the filters let Modal's walker take ----------------------------------------------------


def taken(folder: Path, ignore: Callable[[Path], bool]) -> tuple[list[str], list[str]]:
    """(regular files, links) that a walker calling `ignore` with relative paths takes, going
    into the folders it does not ignore and never through a link."""
    files, links = [], []
    for top, dirs, names in os.walk(folder):
        relative = Path(top).relative_to(folder)
        dirs[:] = [d for d in dirs if not ignore(relative / d)]
        for name in names + [d for d in dirs if (Path(top) / d).is_symlink()]:
            path = relative / name
            if not ignore(path):
                (links if (folder / path).is_symlink() else files).append(path.as_posix())
    return sorted(files), sorted(links)


def test_the_project_mount_takes_exactly_the_listed_files_never_a_link(tmp_path: Path) -> None:
    folder = hostile_project(copy_project(tmp_path, "upload_project"), tmp_path / "outside")
    recipe = build_recipe(settings_for(folder))
    upload = recipe.upload

    files, links = taken(folder, upload_filter(upload))
    assert files == sorted(upload.files) and links == []
    assert {link.path for link in upload.links} == {"alias.txt", "linked_data"}  # made in there
    assert any(step.startswith("source: 7 files") and "6 refused" in step for step in
               describe_steps(recipe))  # fmt: skip


def test_the_uv_project_mount_leaves_the_junk_out(tmp_path: Path) -> None:
    folder = junk_uv_project(tmp_path)
    files, _ = taken(folder, upload_filter(build_recipe(settings_for(folder)).upload))
    assert files == [
        ".gitignore",
        "pyproject.toml",
        "src/uvproj/__init__.py",
        "tests/test_uvproj.py",
        "uv.lock",
    ]


def test_a_dockerfile_context_holds_uploaded_files_only(tmp_path: Path) -> None:
    folder = dockerfile_project_with_more_context(tmp_path)
    recipe = build_recipe(settings_for(folder, dockerfile="Dockerfile"))

    files, links = taken(folder / "tools", lambda path: dockerfile_context_filter(recipe)(
        Path("tools") / path))  # fmt: skip
    assert files == ["setup.sh"] and links == []
    assert [p.relative_to(folder).as_posix() for p in recipe.dockerfile_files] == [
        "tools/setup.sh",
        "tools/skipped.sh",  # the key follows the COPY lines; .dockerignore is read by Modal
        ".dockerignore",
    ]
