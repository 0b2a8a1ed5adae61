"""The Modal image recipe as plain data, its human-readable steps and its dependency key.

The dependency layers are built from the project's dependency declarations only (uv.lock and the
dependency tables of pyproject.toml, or requirements files, or `[project] dependencies`), never
from its source: the source is added when a container starts, so a commit that only edits code
reuses every cached layer. `dependency_key` hashes exactly what those layers are built from.
The declarations were read and checked with the other inputs (settings/dependencies.py): building
the recipe refuses nothing.

No `modal` import here: `plan` reads this module and must start fast. backends/modal.py turns a
`Recipe` into `modal.Image` calls.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from modal_gpu_action.backends.project_files import ProjectFiles, list_project_files
from modal_gpu_action.settings import DependencySource, ImageSettings, Settings

RECIPE_VERSION = 1  # bump when the way layers are built changes: the key changes with it

# Where things are inside the container.
REMOTE_PROJECT = "/root/project"
REMOTE_REQUIREMENTS = "/.requirements"
UV_IMAGE = "ghcr.io/astral-sh/uv:latest"  # what Modal's own uv_sync/uv_pip_install copy uv from
UV_BINARY = "/.uv/uv"

# Registry images whose name says they carry Python (and pip); the others get Modal's standalone
# Python (`add_python=`). Modal cannot tell offline either; `plan` shows the choice.
_PYTHON_IMAGE_HINTS = ("python", "pytorch", "tensorflow", "jax", "conda", "py3", "huggingface")

_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


@dataclass(frozen=True, slots=True)
class Base:
    """The image the dependency layers start from."""

    kind: Literal["debian_slim", "registry", "dockerfile"]
    python_version: str = ""  # debian_slim's Python, or the one added to an image without Python
    image: str = ""  # registry reference
    dockerfile: Path | None = None
    add_python: str | None = None  # Modal's standalone Python for an image that has none


@dataclass(frozen=True, slots=True)
class Recipe:
    """Everything the image is built from, read from the project's files once."""

    project_dir: Path
    base: Base
    source: DependencySource
    upload: ProjectFiles  # what of the project folder goes to the container (project_files.py)
    extras: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    uv_pyproject: str = ""  # pyproject.toml's dependency tables, re-written (uv.lock projects)
    uv_lock: Path | None = None
    requirements: tuple[Path, ...] = ()  # the files to install
    requirement_files: tuple[Path, ...] = ()  # the same plus the files they include (-r, -c)
    dependencies: tuple[str, ...] = ()  # pyproject projects: [project] deps, extras, groups
    # extra-packages, the extras and groups of a requirements project, and pytest when undeclared
    packages: tuple[str, ...] = ()
    pytest_added: bool = False
    install_project: bool = False  # a package: installed with --no-deps at container start
    dockerfile_files: tuple[Path, ...] = ()  # files the Dockerfile copies into its layers
    notes: tuple[str, ...] = ()

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
    notes: list[str] = []
    base = _base(image, notes)
    upload = list_project_files(project)
    pyproject = files.pyproject
    extras, groups = image.extras, image.groups
    declared: list[str] = []
    dependencies: list[str] = []
    packages = list(image.extra_packages)
    if files.source == "uv.lock":
        assert pyproject is not None
        if image.requirements:
            notes.append("input 'requirements' is not used: the project has a uv.lock")
        declared = _uv_declared(pyproject, extras, groups)
    elif files.source == "requirements":
        chosen = _chosen_dependencies(pyproject or {}, extras, groups)
        packages += chosen
        declared = [*files.required, *chosen]
    elif files.source == "pyproject":
        assert pyproject is not None
        if "dependencies" in pyproject.get("project", {}).get("dynamic", []):
            notes.append(
                "pyproject.toml declares its dependencies as dynamic: they cannot be read"
                " without building the project; add a uv.lock or a requirements file"
            )
        dependencies = _project_dependencies(pyproject) + _chosen_dependencies(
            pyproject, extras, groups
        )
        declared = list(dependencies)
    declared += image.extra_packages
    pytest_added = "pytest" not in {_normalized_name(r) for r in declared}
    if pytest_added:
        packages.append("pytest")
    dockerfile_files = _dockerfile_copies(base.dockerfile, upload) if base.dockerfile else ()
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
        extras=extras,
        groups=groups,
        uv_pyproject=files.uv_pyproject,
        uv_lock=files.uv_lock,
        requirements=files.requirements,
        requirement_files=files.requirement_files,
        dependencies=tuple(dependencies),
        packages=tuple(dict.fromkeys(packages)),
        pytest_added=pytest_added,
        install_project=_is_package(upload, pyproject),
        dockerfile_files=tuple(p for p in dockerfile_files if p != project),
        notes=tuple(notes),
    )


def dependency_key(recipe: Recipe) -> str:
    """sha256 of exactly what the dependency layers are built from; source edits leave it alone."""
    base = recipe.base
    material: dict[str, Any] = {
        "recipe": RECIPE_VERSION,
        "base": base.kind,
        "python": base.python_version if base.kind == "debian_slim" else base.add_python,
        "image": base.image,
        "source": recipe.source,
        "extras": list(recipe.extras),
        "groups": list(recipe.groups),
        "dependencies": sorted(recipe.dependencies),
        "packages": sorted(recipe.packages),
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


def describe_steps(recipe: Recipe) -> list[str]:
    """The image recipe as a reader would say it, one step a line."""
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
            else "python: the image's own `python` (its name says it has one)"
        )
    flags = "".join(f" --extra {e}" for e in recipe.extras) + "".join(
        f" --group {g}" for g in recipe.groups
    )
    if recipe.source == "uv.lock":
        steps.append(
            "dependencies: uv sync --frozen --no-install-project"
            f"{flags} (from uv.lock and pyproject.toml's dependency tables)"
        )
    elif recipe.source == "requirements":
        names = ", ".join(p.relative_to(recipe.project_dir).as_posix() for p in recipe.requirements)
        steps.append(f"dependencies: uv pip install -r {names}")
    elif recipe.source == "pyproject":
        listed = ", ".join(recipe.dependencies) or "none declared"
        steps.append(f"dependencies: uv pip install of pyproject.toml's dependencies ({listed})")
    else:
        steps.append(
            "dependencies: none declared (no uv.lock, requirements file or pyproject.toml)"
        )
    if recipe.packages:
        added = " (pytest added: the project does not declare it)" if recipe.pytest_added else ""
        steps.append(f"packages: uv pip install {' '.join(recipe.packages)}{added}")
    steps.append(describe_upload(recipe.upload))
    steps.append(
        "project: installed at container start without dependencies (pip install --no-deps -e .)"
        if recipe.install_project
        else "project: not a package (no build system): run from its folder"
    )
    steps.append("runner: modal_gpu_action's runner and sharding plugin, added at container start")
    steps.extend(f"note: {note}" for note in recipe.notes)
    return steps


def stage_build_files(recipe: Recipe, folder: Path) -> None:
    """Write what the dependency layers' build context holds into `folder`: the reduced
    pyproject.toml and uv.lock under `uv/`, the requirements files under `requirements/`."""
    if recipe.source == "uv.lock" and recipe.uv_lock is not None:
        (folder / "uv").mkdir(parents=True, exist_ok=True)
        (folder / "uv" / "pyproject.toml").write_text(recipe.uv_pyproject, encoding="utf-8")
        shutil.copyfile(recipe.uv_lock, folder / "uv" / "uv.lock")
    for path in recipe.requirement_files:
        target = folder / "requirements" / path.relative_to(recipe.project_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def requirements_commands(recipe: Recipe) -> list[str]:
    """Dockerfile commands of the requirements layer; its context is `stage_build_files`'s
    `requirements/` folder, so `-r`/`-c` lines between the files resolve as they do locally."""
    installs = " ".join(
        f"-r {shlex.quote(recipe.requirement_path(p))}" for p in recipe.requirements
    )
    return [
        f"COPY --from={UV_IMAGE} /uv {UV_BINARY}",
        f"COPY . {REMOTE_REQUIREMENTS}",
        f"RUN {UV_BINARY} pip install --python $(command -v python) --compile-bytecode {installs}",
    ]


# -- reading the project ------------------------------------------------------------------------


def _base(image: ImageSettings, notes: list[str]) -> Base:
    if image.dockerfile is not None:
        has_python = _dockerfile_has_python(image.dockerfile)
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


def image_has_python(reference: str) -> bool:
    """Whether a registry image's name says it carries Python (python:3.12, pytorch/pytorch,
    nvcr.io/nvidia/pytorch:25.01-py3); CUDA or OS images (nvidia/cuda, ubuntu) do not."""
    name = reference.lower().rsplit("@", 1)[0]
    return any(hint in name for hint in _PYTHON_IMAGE_HINTS)


def _dockerfile_has_python(path: Path) -> bool:
    """Whether the final stage starts from an image with Python or installs one in a RUN line."""
    stages: dict[str, bool] = {}
    has = False
    for instruction, args in _dockerfile_instructions(path.read_text(encoding="utf-8")):
        if instruction == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            image = words[0] if words else ""
            has = stages.get(image.lower(), image_has_python(image))
            if len(words) >= 3 and words[1].lower() == "as":
                stages[words[2].lower()] = has
        elif instruction == "RUN" and re.search(r"\bpython3?(\.\d+)?\b", args):
            has = True  # e.g. apt-get install python3 python3-pip
    return has


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        current += (" " if current else "") + line.rstrip("\\").strip()
        if line.endswith("\\"):
            continue
        instruction, _, args = current.partition(" ")
        out.append((instruction.upper(), args.strip()))
        current = ""
    return out


def _dockerfile_copies(dockerfile: Path, upload: ProjectFiles) -> tuple[Path, ...]:
    """Files of the build context that the Dockerfile's COPY/ADD lines take (the project folder
    itself, when one copies it whole), among the files that are uploaded (project_files.py): the
    context holds nothing else. Follows Docker's rules closely enough for a cache key."""
    context = upload.root
    found: list[Path] = []
    text = dockerfile.read_text(encoding="utf-8", errors="replace")
    for instruction, args in _dockerfile_instructions(text):
        if instruction not in ("COPY", "ADD"):
            continue
        if args.startswith("["):
            try:
                parts = [str(p) for p in json.loads(args)]
            except ValueError:
                continue
        else:
            parts = shlex.split(args)
        if any(p.startswith("--from") for p in parts):
            continue
        sources = [p for p in parts if not p.startswith("--")][:-1]
        for source in sources:
            if "://" in source:
                continue
            pattern = source.lstrip("/") or "."
            if pattern in (".", "./"):
                found.append(context)
                found.extend(context / f for f in upload.files)
                continue
            if ".." in PurePosixPath(pattern).parts:
                continue  # outside the context: Modal refuses it
            for match in sorted(context.glob(pattern)):
                relative = match.relative_to(context).as_posix()
                if upload.holds(relative):
                    found.append(match)
                else:
                    found.extend(context / f for f in upload.files_under(relative))
    for ignore_file in dockerignore_files(dockerfile, upload):
        found.append(upload.root / ignore_file)
    return tuple(dict.fromkeys(found))


def dockerignore_files(dockerfile: Path, upload: ProjectFiles) -> list[str]:
    """The .dockerignore that Modal would read for `dockerfile` (`<name>.dockerignore` or
    `.dockerignore` beside it, else the context's), when it is an uploaded file; at most one."""
    beside = dockerfile.parent.relative_to(upload.root).as_posix()
    beside = "" if beside == "." else beside + "/"
    for name in (
        f"{beside}{dockerfile.name}.dockerignore",
        f"{beside}.dockerignore",
        ".dockerignore",
    ):
        if upload.holds(name):
            return [name]
    return []


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


def _is_package(upload: ProjectFiles, pyproject: Mapping[str, Any] | None) -> bool:
    if pyproject is not None:
        package = pyproject.get("tool", {}).get("uv", {}).get("package")
        if isinstance(package, bool):
            return package
        if "build-system" in pyproject:
            return True
    return upload.holds("setup.py") or upload.holds("setup.cfg")


def _project_dependencies(pyproject: Mapping[str, Any]) -> list[str]:
    return [str(d) for d in pyproject.get("project", {}).get("dependencies", [])]


def _group(
    pyproject: Mapping[str, Any], name: str, seen: frozenset[str] = frozenset()
) -> list[str]:
    table = pyproject.get("dependency-groups", {})
    out: list[str] = []
    if name == "dev":
        out += [str(d) for d in pyproject.get("tool", {}).get("uv", {}).get("dev-dependencies", [])]
    for item in table.get(name, []):
        if isinstance(item, str):
            out.append(item)
        elif (
            isinstance(item, dict) and "include-group" in item and item["include-group"] not in seen
        ):
            out += _group(pyproject, str(item["include-group"]), seen | {name})
    return out


def _chosen_dependencies(
    pyproject: Mapping[str, Any], extras: Iterable[str], groups: Iterable[str]
) -> list[str]:
    optional = pyproject.get("project", {}).get("optional-dependencies", {})
    out: list[str] = []
    for extra in extras:
        out += [str(d) for d in optional.get(extra, [])]
    for group in groups:
        out += _group(pyproject, group)
    return out


def _uv_declared(
    pyproject: Mapping[str, Any], extras: Iterable[str], groups: Iterable[str]
) -> list[str]:
    """What `uv sync` installs directly: dependencies, the chosen extras and groups, and uv's
    default groups (`dev` unless [tool.uv] default-groups says otherwise)."""
    uv = pyproject.get("tool", {}).get("uv", {})
    defaults = uv.get("default-groups", ["dev"])
    if defaults == "all":
        defaults = [*pyproject.get("dependency-groups", {}), "dev"]
    chosen = list(dict.fromkeys([*groups, *[str(g) for g in defaults]]))
    return _project_dependencies(pyproject) + _chosen_dependencies(pyproject, extras, chosen)


def _normalized_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
