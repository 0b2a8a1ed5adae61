"""The Modal image recipe as plain data, its layers as Dockerfile commands, its human-readable
steps and its dependency key.

The layers are built from the project's dependency declarations only (uv.lock and the dependency
tables of pyproject.toml; else the requirements files and the dependencies of its metadata:
pyproject.toml, setup.cfg, setup.py's literal keywords), never from its source: the source is
added when a container starts, so a commit that only edits code reuses every cached layer.
`dependency_key` hashes exactly what those layers are built from. The declarations were read and
checked with the other inputs (settings/dependencies.py): building the recipe refuses nothing.

Every layer is our own Dockerfile commands, not Modal's `uv_sync`/`uv_pip_install`: Modal's
uv_sync reads pyproject.toml with the `toml` 0.10 library, which refuses valid TOML (a
dependency group that mixes strings and tables); ours read nothing but what uv reads, `plan`
shows them as they run, and they are the same whatever `modal` version the runner has.
- uv.lock projects: `uv sync --frozen --no-install-project` into /.uv/.venv (then on PATH), from
  the dependency tables and uv.lock; then one `uv pip install` of the build backend and of the
  packages the lock does not hold (extra-packages, pytest when undeclared).
- other projects: one `uv pip install` (one resolution) of the metadata's dependencies with the
  chosen extras and groups, the build backend, the packages and the requirements files.
Installs into the image's Python pass `--break-system-packages`: an image is built for the tests,
and PEP 668's marker (Ubuntu 24.04-based images) protects a distribution's own tools, which the
tests do not run; a virtual environment instead would hide what the image brings (a PyTorch
image's torch).

The project itself is installed when a container starts (container/entry.py), without build
isolation (its build backend is in a layer) and, when its dependencies were all read, without
them and offline; a git-versioned project is given the version of this checkout
(project_version.py). No `modal` import here: `plan` reads this module and must start fast;
modal_app.py turns the layers into `modal.Image` calls.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from modal_gpu_action.backends.dockerfile import dockerfile_copies, dockerfile_has_python
from modal_gpu_action.backends.project_files import ProjectFiles, list_project_files
from modal_gpu_action.backends.project_version import ProjectVersion, project_version
from modal_gpu_action.settings import DependencySource, ImageSettings, Settings
from modal_gpu_action.settings.dependencies import chosen_requirements
from modal_gpu_action.settings.image import image_has_python
from modal_gpu_action.settings.project_metadata import (
    SETUPTOOLS_FALLBACK,
    ProjectMetadata,
    normalized_name,
)

RECIPE_VERSION = 2  # bump when the way layers are built changes: the key changes with it

# Where things are inside the container.
REMOTE_PROJECT = "/root/project"
REMOTE_REQUIREMENTS = "/.requirements"
UV_IMAGE = "ghcr.io/astral-sh/uv:latest"  # where Modal's own uv steps copy uv from
UV_ROOT = "/.uv"
UV_BINARY = f"{UV_ROOT}/uv"
# The `python` the image's PATH finds (Modal runs the function with it), else `python3`.
IMAGE_PYTHON = '"$(command -v python || command -v python3)"'
# Build backends whose editable install needs nothing but what the recipe puts in a layer.
_KNOWN_BACKENDS = (
    "setuptools.build_meta",
    "hatchling.build",
    "flit_core.buildapi",
    "pdm.backend",
    "poetry.core.masonry.api",
    "uv_build",
)
_COPY_UV = f"COPY --from={UV_IMAGE} /uv {UV_BINARY}"
_INSTALL = (
    f"RUN {UV_BINARY} pip install --python {IMAGE_PYTHON} --break-system-packages"
    " --compile-bytecode"
)


@dataclass(frozen=True, slots=True)
class Base:
    """The image the dependency layers start from."""

    kind: Literal["debian_slim", "registry", "dockerfile"]
    python_version: str = ""  # debian_slim's Python, or the one added to an image without Python
    image: str = ""  # registry reference
    dockerfile: Path | None = None
    add_python: str | None = None  # Modal's standalone Python for an image that has none


@dataclass(frozen=True, slots=True)
class Layer:
    """One `dockerfile_commands` layer: its commands, and its build context as files staged by
    `stage_build_files` (relative to the staging folder): single files under a name, or a
    folder copied whole (`COPY . ...`)."""

    name: str
    commands: tuple[str, ...]
    context_files: tuple[tuple[str, str], ...] = ()
    context_dir: str = ""


@dataclass(frozen=True, slots=True)
class Recipe:
    """Everything the image is built from, read from the project's files once."""

    project_dir: Path
    base: Base
    source: DependencySource
    upload: ProjectFiles  # what of the project folder goes to the container (project_files.py)
    metadata: ProjectMetadata = field(default_factory=ProjectMetadata)
    extras: tuple[str, ...] = ()  # installed: the input's and the test extras found
    groups: tuple[str, ...] = ()  # installed: the input's and the test groups found
    default_groups: tuple[str, ...] = ()  # uv's, installed with test-dependencies `auto`
    test_dependencies: str = "auto"
    for_tests: tuple[str, ...] = ()  # what `auto` found, in words
    uv_pyproject: str = ""  # pyproject.toml's dependency tables, re-written (uv.lock projects)
    uv_lock: Path | None = None
    requirements: tuple[Path, ...] = ()  # the files to install
    requirement_files: tuple[Path, ...] = ()  # the same plus the files they include (-r, -c)
    dependencies: tuple[str, ...] = ()  # not uv.lock: the metadata's, with extras and groups
    build_requires: tuple[str, ...] = ()  # the build backend, for the install at start
    # extra-packages, and pytest when nothing declares it
    packages: tuple[str, ...] = ()
    pytest_added: bool = False
    install_project: bool = False  # a package: installed at container start
    install_dependencies: bool = False  # ... with its dependencies: they could not all be read
    version: ProjectVersion | None = None  # given to a git-versioned project at start
    dockerfile_files: tuple[Path, ...] = ()  # files the Dockerfile copies into its layers
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # what cannot be known here

    def requirement_path(self, path: Path) -> str:
        """Where a requirements file lies in the build (its place in the project, kept)."""
        return str(
            PurePosixPath(REMOTE_REQUIREMENTS) / path.relative_to(self.project_dir).as_posix()
        )


def build_recipe(settings: Settings) -> Recipe:
    """The recipe for settings loaded for backend `modal` (their dependency files read)."""
    image = settings.image
    files = image.dependency_files
    if files is None:
        raise ValueError("the settings were loaded for backend 'local': no image is built")
    project = settings.working_directory
    metadata = files.metadata
    notes: list[str] = []
    warnings: list[str] = []
    base = _base(image, notes)
    upload = list_project_files(project)
    install_project = _is_package(upload, files.pyproject)
    declared = chosen_requirements(files)
    dependencies: list[str] = []
    install_dependencies = False
    if files.source == "uv.lock":
        if image.requirements:
            notes.append("input 'requirements' is not used: the project has a uv.lock")
    else:
        dependencies = declared
        declared = [*declared, *files.required]
        for why in metadata.unknown:
            warnings.append(
                f"{why}; the project is installed with its dependencies at container start"
                " (those the image lacks are fetched on every run): declare them in"
                " pyproject.toml, setup.cfg or a requirements file"
                if install_project
                else f"{why}; they are not installed"
            )
        install_dependencies = install_project and bool(metadata.unknown)
    declared += image.extra_packages
    packages = list(image.extra_packages)
    pytest_added = "pytest" not in {normalized_name(r) for r in declared}
    if pytest_added:
        packages.append("pytest")
    build_requires = (metadata.build_requires or (SETUPTOOLS_FALLBACK,)) if install_project else ()
    warnings += _unknowable(files.pyproject, metadata, base, install_project)
    version = None
    if install_project and metadata.vcs_version:
        version = project_version(project, metadata.vcs_version, metadata.name)
        if version.warning:
            warnings.append(version.warning)
    dockerfile_files = dockerfile_copies(base.dockerfile, upload) if base.dockerfile else ()
    if any(path == project for path in dockerfile_files):
        notes.append(
            "the Dockerfile copies the whole project into a layer: every commit rebuilds it"
            " (the action adds the source at container start; the COPY is not needed)"
        )
    return Recipe(
        project_dir=project,
        base=base,
        source=files.source,
        upload=upload,
        metadata=metadata,
        extras=files.extras,
        groups=files.groups,
        default_groups=files.default_groups,
        test_dependencies=files.test_dependencies,
        for_tests=files.for_tests,
        uv_pyproject=files.uv_pyproject,
        uv_lock=files.uv_lock,
        requirements=files.requirements,
        requirement_files=files.requirement_files,
        dependencies=tuple(dependencies),
        build_requires=tuple(build_requires),
        packages=tuple(dict.fromkeys(packages)),
        pytest_added=pytest_added,
        install_project=install_project,
        install_dependencies=install_dependencies,
        version=version,
        dockerfile_files=tuple(p for p in dockerfile_files if p != project),
        notes=tuple(notes),
        warnings=tuple(warnings),
    )


def dependency_key(recipe: Recipe) -> str:
    """sha256 of exactly what the dependency layers are built from; source edits leave it alone
    (and so does the version a git-versioned project is given: it is set at container start)."""
    base = recipe.base
    material: dict[str, Any] = {
        "recipe": RECIPE_VERSION,
        "base": base.kind,
        "python": base.python_version if base.kind == "debian_slim" else base.add_python,
        "image": base.image,
        "layers": [list(layer.commands) for layer in layers(recipe)],
        "files": {},
    }
    files: dict[str, str] = material["files"]
    if base.dockerfile is not None:
        files["Dockerfile"] = _sha256(base.dockerfile.read_bytes())
        for path in recipe.dockerfile_files:
            files["context/" + path.relative_to(recipe.project_dir).as_posix()] = _sha256(
                path.read_bytes()
            )
    if recipe.source == "uv.lock" and recipe.uv_lock is not None:
        files["pyproject.toml (dependency tables)"] = _sha256(recipe.uv_pyproject.encode())
        files["uv.lock"] = _sha256(recipe.uv_lock.read_bytes())
    for path in recipe.requirement_files:
        files[recipe.requirement_path(path)] = _sha256(path.read_bytes())
    blob = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


# -- the layers ---------------------------------------------------------------------------------


def layers(recipe: Recipe) -> list[Layer]:
    """The layers over the base image, as `modal_app.build_image` adds them."""
    tools = [*recipe.build_requires, *recipe.packages]
    if recipe.source == "uv.lock":
        out = [
            Layer(
                "dependencies",
                (
                    _COPY_UV,
                    f"COPY /.pyproject.toml {UV_ROOT}/pyproject.toml",
                    f"COPY /.uv.lock {UV_ROOT}/uv.lock",
                    f"RUN {uv_sync_command(recipe)}",
                    f"ENV PATH={UV_ROOT}/.venv/bin:$PATH",
                ),
                context_files=(
                    ("/.pyproject.toml", "uv/pyproject.toml"),
                    ("/.uv.lock", "uv/uv.lock"),
                ),
            )
        ]
        if tools:
            out.append(Layer("tools", (f"{_INSTALL} {_quoted(tools)}",)))
        return out
    files = [f"-r {shlex.quote(recipe.requirement_path(p))}" for p in recipe.requirements]
    everything = [*recipe.dependencies, *tools]
    if not everything and not files:
        return []
    commands = [_COPY_UV]
    if recipe.requirement_files:
        commands.append(f"COPY . {REMOTE_REQUIREMENTS}")
    commands.append(" ".join([_INSTALL, *(shlex.quote(r) for r in everything), *files]))
    context = "requirements" if recipe.requirement_files else ""
    return [Layer("dependencies", tuple(commands), context_dir=context)]


def uv_sync_command(recipe: Recipe) -> str:
    """`uv sync` of a uv.lock project's dependencies into /.uv/.venv, on the image's Python."""
    words = [
        f"{UV_BINARY} sync --project={UV_ROOT} --frozen --no-install-project --compile-bytecode",
        f"--no-python-downloads --python {IMAGE_PYTHON}",
    ]
    if recipe.test_dependencies == "none":
        words.append("--no-default-groups")
    words += [f"--extra={shlex.quote(e)}" for e in recipe.extras]
    words += [f"--group={shlex.quote(g)}" for g in recipe.groups]
    return " ".join(words)


def stage_build_files(recipe: Recipe, folder: Path) -> None:
    """Write what the layers' build context holds into `folder`: the reduced pyproject.toml and
    uv.lock under `uv/`, the requirements files under `requirements/`."""
    if recipe.source == "uv.lock" and recipe.uv_lock is not None:
        (folder / "uv").mkdir(parents=True, exist_ok=True)
        (folder / "uv" / "pyproject.toml").write_text(recipe.uv_pyproject, encoding="utf-8")
        shutil.copyfile(recipe.uv_lock, folder / "uv" / "uv.lock")
    for path in recipe.requirement_files:
        target = folder / "requirements" / path.relative_to(recipe.project_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def install_command(recipe: Recipe) -> str:
    """What the container runs before the tests, as `plan` shows it (container/entry.py)."""
    if not recipe.install_project:
        return ""
    flags = "--no-build-isolation" + ("" if recipe.install_dependencies else " --no-deps --offline")
    return f"uv pip install {flags} -e {REMOTE_PROJECT}"


def _quoted(requirements: list[str]) -> str:
    return " ".join(shlex.quote(r) for r in requirements)


# -- the steps, for `plan` ----------------------------------------------------------------------


def describe_steps(recipe: Recipe) -> list[str]:
    """The image recipe as a reader would say it, one step a line; then notes and warnings."""
    base = recipe.base
    steps: list[str] = []
    if base.kind == "debian_slim":
        steps.append(f"base: Modal's debian_slim with Python {base.python_version}")
    elif base.kind == "registry":
        steps.append(f"base: registry image {base.image}")
    else:
        assert base.dockerfile is not None
        where = base.dockerfile.relative_to(recipe.project_dir).as_posix()
        steps.append(f"base: the project's Dockerfile {where}")
    if base.kind != "debian_slim":
        steps.append(
            f"python: Modal's standalone Python {base.add_python} added"
            if base.add_python
            else "python: the image's own `python` (its name says it has one); installs into it"
            " pass --break-system-packages, so a Python marked externally managed (PEP 668,"
            " Ubuntu 24.04-based images) takes them"
        )
    steps.append(_describe_dependencies(recipe))
    steps.append(_describe_tests(recipe))
    if recipe.build_requires:
        where = recipe.metadata.build_system or "setuptools, the default build backend"
        steps.append(
            f"build backend: {', '.join(recipe.build_requires)} ({where}), installed in a cached"
            " layer: the project is built at container start without fetching it"
        )
    if recipe.packages:
        added = " (pytest added: the project does not declare it)" if recipe.pytest_added else ""
        steps.append(f"packages: {', '.join(recipe.packages)}{added}")
    for layer in layers(recipe):
        steps.extend(f"{layer.name} layer: {command}" for command in layer.commands)
    steps.append(describe_upload(recipe.upload))
    if recipe.install_project:
        how = (
            "with its dependencies (some could not be read: see the warnings)"
            if recipe.install_dependencies
            else "without its dependencies, offline"
        )
        steps.append(f"project: installed at container start {how}: {install_command(recipe)}")
    else:
        steps.append("project: not a package (no build system): run from its folder")
    if recipe.version is not None:
        version = recipe.version
        steps.append(
            f"version: {version.version} for {version.tool} ({version.source} on this checkout;"
            " .git is not uploaded), given at container start as " + ", ".join(sorted(version.env))
        )
    steps.append("runner: modal_gpu_action's runner and sharding plugin, added at container start")
    steps.extend(f"note: {note}" for note in recipe.notes)
    steps.extend(f"warning: {warning}" for warning in recipe.warnings)
    return steps


def _describe_dependencies(recipe: Recipe) -> str:
    if recipe.source == "uv.lock":
        return (
            "dependencies: uv sync --frozen --no-install-project of uv.lock and pyproject.toml's"
            f" dependency tables into {UV_ROOT}/.venv, our own step (Modal's uv_sync reads"
            " pyproject.toml with the toml 0.10 library, which refuses valid TOML such as a"
            " dependency group that mixes strings and tables)"
        )
    parts = []
    if recipe.dependencies:
        where = recipe.metadata.where or "pyproject.toml"
        parts.append(f"{', '.join(recipe.dependencies)} (from {where})")
    if recipe.requirements:
        names = ", ".join(p.relative_to(recipe.project_dir).as_posix() for p in recipe.requirements)
        parts.append(f"the requirements files {names}")
    if not parts:
        return (
            "dependencies: none declared (no uv.lock, requirements file, pyproject.toml, setup.cfg)"
        )
    chosen = [f"extra {e!r}" for e in recipe.extras] + [f"group {g!r}" for g in recipe.groups]
    with_chosen = f" with {', '.join(chosen)}" if chosen else ""
    return "dependencies: " + "; ".join(parts) + f"{with_chosen}, in one uv pip install"


def _describe_tests(recipe: Recipe) -> str:
    if recipe.test_dependencies == "none":
        return (
            "test dependencies: none added (test-dependencies: none): the runtime dependencies"
            " and what the inputs extras, groups and requirements name"
            + (" (uv sync --no-default-groups)" if recipe.source == "uv.lock" else "")
        )
    found = list(recipe.for_tests)
    if recipe.default_groups:
        found.append("uv's default groups " + ", ".join(recipe.default_groups))
    return "test dependencies (test-dependencies: auto; `none` leaves them out): " + (
        ", ".join(found)
        or "none found (no extra, group or requirements file named test, tests or testing,"
        " nor a dev one)"
    )


# -- reading the project ------------------------------------------------------------------------


def _base(image: ImageSettings, notes: list[str]) -> Base:
    if image.dockerfile is not None:
        has_python = dockerfile_has_python(image.dockerfile)
        return Base(
            "dockerfile",
            python_version=image.python_version,
            dockerfile=image.dockerfile,
            add_python=None if has_python else image.python_version,
        )
    if image.registry_image:
        has_python = image_has_python(image.registry_image)
        if has_python:
            notes.append(
                f"input 'python-version' ({image.python_version}) is not used: the image"
                " brings its own Python"
            )
        return Base(
            "registry",
            python_version=image.python_version,
            image=image.registry_image,
            add_python=None if has_python else image.python_version,
        )
    return Base("debian_slim", python_version=image.python_version)


def describe_upload(upload: ProjectFiles) -> str:
    """The `source:` step of the image, in one line."""
    rules = (
        "what git tracks and the untracked files it does not ignore"
        if upload.rules == "git"
        else "the files its .gitignore files do not ignore (no git repository to ask)"
    )
    extra = [f"{len(upload.links)} link{'s' if len(upload.links) != 1 else ''} recreated"]
    if upload.refused:
        extra.append(f"{len(upload.refused)} refused (see upload.refused)")
    if upload.left_out:
        extra.append(f"{len(upload.left_out)} untracked caches left out")
    return (
        f"source: {len(upload.files)} files ({_size(upload.size)}) of the project folder at"
        f" {REMOTE_PROJECT}, added at container start (not a layer): {rules}, never .git;"
        f" {', '.join(extra)}"
    )


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / (1024 * 1024):.1f} MiB"


def _unknowable(
    pyproject: Mapping[str, Any] | None, metadata: ProjectMetadata, base: Base, package: bool
) -> list[str]:
    """Warnings about what only building the image can tell."""
    out = []
    backend = str((pyproject or {}).get("build-system", {}).get("build-backend", ""))
    if package and backend and backend.split(":")[0] not in _KNOWN_BACKENDS:
        out.append(
            f"the build backend {backend} may ask for more while it builds the editable install"
            " (cmake, ninja, a compiler: not known here): then the install at container start"
            " falls back to build isolation, fetching it on every run"
        )
    if base.kind != "debian_slim" and not base.add_python and metadata.requires_python:
        out.append(
            f"the image brings its own Python: whether requires-python {metadata.requires_python!r}"
            " allows it is known only when it builds"
        )
    return out


def _is_package(upload: ProjectFiles, pyproject: Mapping[str, Any] | None) -> bool:
    if pyproject is not None:
        package = pyproject.get("tool", {}).get("uv", {}).get("package")
        if isinstance(package, bool):
            return package
        if "build-system" in pyproject:
            return True
    return upload.holds("setup.py") or upload.holds("setup.cfg")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
