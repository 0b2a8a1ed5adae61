"""The Modal image recipe as plain data, its human-readable steps and its dependency key.

The dependency layers are built from the project's dependency declarations only (uv.lock and the
dependency tables of pyproject.toml, or requirements files, or `[project] dependencies`), never
from its source: the source is added when a container starts, so a commit that only edits code
reuses every cached layer. `dependency_key` hashes exactly what those layers are built from.

No `modal` import here: `plan` reads this module and must start fast. backends/modal.py turns a
`Recipe` into `modal.Image` calls.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from modal_gpu_action.project_files import ProjectFiles, list_project_files, resolve_inside
from modal_gpu_action.settings import Settings, SettingsError, shown

RECIPE_VERSION = 1  # bump when the way layers are built changes: the key changes with it

# Where things are inside the container.
REMOTE_PROJECT = "/root/project"
REMOTE_REQUIREMENTS = "/.requirements"
UV_IMAGE = "ghcr.io/astral-sh/uv:latest"  # what Modal's own uv_sync/uv_pip_install copy uv from
UV_BINARY = "/.uv/uv"

# Registry images whose name says they carry Python (and pip); the others get Modal's standalone
# Python (`add_python=`). Modal cannot tell offline either; `plan` shows the choice.
_PYTHON_IMAGE_HINTS = ("python", "pytorch", "tensorflow", "jax", "conda", "py3", "huggingface")

# Project keys that dependency resolution reads; the rest of pyproject.toml (tool configs, URLs,
# descriptions) never reaches a layer.
_PROJECT_KEYS = (
    "name",
    "version",
    "dynamic",
    "requires-python",
    "dependencies",
    "optional-dependencies",
)

_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
_INCLUDE = re.compile(r"^(-r|--requirement|-c|--constraint)(?:\s+|=)(.+)$")

DependencySource = Literal["uv.lock", "requirements", "pyproject", "none"]


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
    """Read the project's dependency declarations; a SettingsError names the input at fault."""
    project = settings.working_directory
    notes: list[str] = []
    base = _base(settings, notes)
    upload = list_project_files(project)
    pyproject = _read_pyproject(_project_file(project, "pyproject.toml"))
    uv_lock = _project_file(project, "uv.lock")
    extras, groups = settings.extras, settings.groups
    _check_extras_and_groups(pyproject, extras, groups)

    source: DependencySource
    declared: list[str] = []
    uv_pyproject, dependencies, packages = "", [], list(settings.extra_packages)
    requirements: tuple[Path, ...] = ()
    requirement_files: tuple[Path, ...] = ()
    if pyproject is not None and uv_lock is not None:
        source = "uv.lock"
        if settings.requirements:
            notes.append("input 'requirements' is not used: the project has a uv.lock")
        uv_pyproject = dump_toml(dependency_tables(pyproject))
        declared = _uv_declared(pyproject, extras, groups)
    else:
        requirements = settings.requirements
        default_requirements = _project_file(project, "requirements.txt")
        if not requirements and default_requirements is not None:
            requirements = (default_requirements,)
        if requirements:
            source = "requirements"
            requirement_files, declared = _read_requirements(requirements, project)
            chosen = _chosen_dependencies(pyproject or {}, extras, groups)
            packages += chosen
            declared += chosen
        elif pyproject is not None:
            source = "pyproject"
            if "dependencies" in pyproject.get("project", {}).get("dynamic", []):
                notes.append(
                    "pyproject.toml declares its dependencies as dynamic: they cannot be read"
                    " without building the project; add a uv.lock or a requirements file"
                )
            dependencies = _project_dependencies(pyproject) + _chosen_dependencies(
                pyproject, extras, groups
            )
            declared = list(dependencies)
        else:
            source = "none"
            if extras or groups:
                raise SettingsError(
                    "input 'extras'/'groups' needs a pyproject.toml in the working directory"
                    f" {shown(project)}"
                )
    declared += settings.extra_packages
    pytest_added = "pytest" not in {_normalized_name(r) for r in declared}
    if pytest_added:
        packages.append("pytest")
    for package in packages:
        if package.startswith("-"):
            raise SettingsError(
                f"invalid value {package!r} for input 'extra-packages': expected requirements"
                " such as `pytest-xdist` or `numpy>=2`, not options"
            )
    dockerfile_files = _dockerfile_copies(base.dockerfile, upload) if base.dockerfile else ()
    if any(path == project for path in dockerfile_files):
        notes.append(
            "the Dockerfile copies the whole project into a layer: every commit rebuilds it"
            " (the action adds the source at container start; the COPY is not needed)"
        )
    return Recipe(
        project_dir=project,
        base=base,
        source=source,
        upload=upload,
        extras=extras,
        groups=groups,
        uv_pyproject=uv_pyproject,
        uv_lock=uv_lock if source == "uv.lock" else None,
        requirements=requirements,
        requirement_files=requirement_files,
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


def _base(settings: Settings, notes: list[str]) -> Base:
    if settings.image and settings.dockerfile:
        raise SettingsError(
            "inputs 'image' and 'dockerfile' were both given: expected at most one of them"
        )
    if settings.dockerfile is not None:
        has_python = _dockerfile_has_python(settings.dockerfile)
        return Base(
            "dockerfile",
            python_version=settings.python_version,
            dockerfile=settings.dockerfile,
            add_python=None if has_python else settings.python_version,
        )
    if settings.image:
        if any(c.isspace() for c in settings.image):
            raise SettingsError(
                f"invalid value {settings.image!r} for input 'image': expected an image reference"
                " such as nvcr.io/nvidia/pytorch:25.01-py3"
            )
        has_python = image_has_python(settings.image)
        if has_python:
            notes.append(
                f"input 'python-version' ({settings.python_version}) is not used: the image"
                " brings its own Python"
            )
        return Base(
            "registry",
            python_version=settings.python_version,
            image=settings.image,
            add_python=None if has_python else settings.python_version,
        )
    return Base("debian_slim", python_version=settings.python_version)


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


def _project_file(project: Path, name: str) -> Path | None:
    """`project/name` when it is a file (pyproject.toml, uv.lock, requirements.txt); a
    SettingsError when it is a link that leads out of the project or into .git: what the image
    is built from is the project's, never another file of this machine."""
    path = project / name
    if not path.is_file():
        return None
    resolved, problem = resolve_inside(path, project)
    if problem is not None:
        where = "outside the working directory" if problem == "outside" else "into .git"
        raise SettingsError(
            f"{name} of the working directory {shown(project)} is a link that leads {where}:"
            " refused (the image is built from the project's own files only)"
        )
    return resolved


def _read_pyproject(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SettingsError(f"cannot read {shown(path)}: {' '.join(str(error).split())}") from None


def _is_package(upload: ProjectFiles, pyproject: Mapping[str, Any] | None) -> bool:
    if pyproject is not None:
        package = pyproject.get("tool", {}).get("uv", {}).get("package")
        if isinstance(package, bool):
            return package
        if "build-system" in pyproject:
            return True
    return upload.holds("setup.py") or upload.holds("setup.cfg")


def dependency_tables(pyproject: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The parts of pyproject.toml that `uv sync --frozen --no-install-project` reads."""
    tables: dict[str, dict[str, Any]] = {}
    project = pyproject.get("project", {})
    kept = {key: project[key] for key in _PROJECT_KEYS if key in project}
    if kept:
        tables["project"] = kept
    if pyproject.get("dependency-groups"):
        tables["dependency-groups"] = dict(pyproject["dependency-groups"])
    uv = pyproject.get("tool", {}).get("uv")
    if uv:
        tables["tool.uv"] = dict(uv)
    return tables


def _check_extras_and_groups(
    pyproject: Mapping[str, Any] | None, extras: Iterable[str], groups: Iterable[str]
) -> None:
    project = (pyproject or {}).get("project", {})
    known_extras = set(project.get("optional-dependencies", {}))
    for extra in extras:
        if extra not in known_extras:
            raise SettingsError(
                f"invalid value {extra!r} for input 'extras': pyproject.toml's"
                " [project.optional-dependencies] has "
                + (", ".join(sorted(known_extras)) or "no extras")
            )
    known_groups = set((pyproject or {}).get("dependency-groups", {}))
    if (pyproject or {}).get("tool", {}).get("uv", {}).get("dev-dependencies"):
        known_groups.add("dev")
    for group in groups:
        if group not in known_groups:
            raise SettingsError(
                f"invalid value {group!r} for input 'groups': pyproject.toml's"
                " [dependency-groups] has " + (", ".join(sorted(known_groups)) or "no groups")
            )


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


def _read_requirements(files: Iterable[Path], project: Path) -> tuple[tuple[Path, ...], list[str]]:
    """The requirements files with those they include, and the requirements they name."""
    seen: list[Path] = []
    names: list[str] = []

    def read(path: Path, given_as: str) -> None:
        path, problem = resolve_inside(path, project)
        if path in seen:
            return
        if problem is not None:
            where = "outside the working directory" if problem == "outside" else "in .git"
            raise SettingsError(
                f"invalid value {given_as!r} for input 'requirements': {shown(path)} is {where}"
                f" {shown(project)}: expected a file of the project"
            )
        if not path.is_file():
            raise SettingsError(
                f"invalid value {given_as!r} for input 'requirements': {shown(path)} is not a file"
            )
        seen.append(path)
        for number, line in _requirement_lines(path):
            include = _INCLUDE.match(line)
            if include:
                read(path.parent / include.group(2).strip(), include.group(2).strip())
                continue
            editable = re.match(r"^(-e|--editable)(?:\s+|=)(.+)$", line)
            target = editable.group(2).strip() if editable else line
            if _is_local(target):
                raise SettingsError(
                    f"{shown(path.name)} line {number} installs a local folder ({line!r}): the image is"
                    " built from dependency declarations only and the project is installed at"
                    " container start; remove the line, or list a requirements file without it"
                    " in input 'requirements'"
                )
            if line.startswith("-"):
                continue  # --index-url, --find-links, --pre, -e git+https://...
            names.append(line)

    for file in files:
        read(file, str(file))
    return tuple(seen), names


def _is_local(target: str) -> bool:
    """`.`, `./lib`, `/abs`, `file:...`, `sub/dir`: a folder on this machine, not an index name."""
    head = re.split(r"[;\s]", target, maxsplit=1)[0]
    if head.startswith((".", "/", "~", "file:")):
        return True
    return "/" in head and "://" not in head and "@" not in target


def _requirement_lines(path: Path) -> Iterator[tuple[int, str]]:
    pending, start = "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = (pending + line).strip(), ""
        if line:
            yield start, line


def _normalized_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- a small TOML writer: enough for the tables above, checked by reading the text back --------


def dump_toml(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML text for `{"project": {...}, "tool.uv": {...}}`; raises SettingsError when a value has
    no TOML form here (dates), so the written file always reads back to the same data."""
    lines: list[str] = []
    for header, table in tables.items():
        lines.append(f"[{header}]")
        lines.extend(f"{_toml_key(key)} = {_toml_value(value)}" for key, value in table.items())
        lines.append("")
    text = "\n".join(lines)
    expected: dict[str, Any] = {}
    for header, table in tables.items():
        node = expected
        for part in header.split("."):
            node = node.setdefault(part, {})
        node.update(table)
    if tomllib.loads(text) != expected:
        raise SettingsError("cannot re-write pyproject.toml's dependency tables")
    return text


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise SettingsError(f"cannot re-write pyproject.toml value {value!r}")


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
