"""The project's dependency declarations, read once and checked with the other inputs (backend
`modal`): pyproject.toml, uv.lock and the requirements files with those they include.

Only the project's own files are read: a declaration file that is a link leading out of the working
directory or into .git is refused, as is a requirements line that installs a local folder (the
image is built from declarations only; the project is installed when a container starts). The
Modal image recipe (backends/modal_image.py) is built from what this module read.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from modal_gpu_action.settings.values import SettingsError, shown

DependencySource = Literal["uv.lock", "requirements", "pyproject", "none"]

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
_INCLUDE = re.compile(r"^(-r|--requirement|-c|--constraint)(?:\s+|=)(.+)$")


@dataclass(frozen=True, slots=True)
class DependencyFiles:
    """Where the project declares its dependencies (`source`: uv.lock with pyproject.toml, else
    requirements files, else pyproject.toml alone, else none) and what those files hold."""

    source: DependencySource
    pyproject: dict[str, Any] | None = None  # parsed, when the project has one
    uv_lock: Path | None = None  # uv.lock projects
    uv_pyproject: str = ""  # pyproject.toml's dependency tables, re-written (uv.lock projects)
    requirements: tuple[Path, ...] = ()  # the files to install: the input's, or requirements.txt
    requirement_files: tuple[Path, ...] = ()  # the same plus the files they include (-r, -c)
    required: tuple[str, ...] = ()  # the requirements those files name


def read_dependency_files(
    project: Path,
    requirements: tuple[Path, ...],
    extras: tuple[str, ...],
    groups: tuple[str, ...],
) -> DependencyFiles:
    """Read and check the declarations; a SettingsError names the input or file at fault."""
    pyproject = _read_pyproject(_project_file(project, "pyproject.toml"))
    uv_lock = _project_file(project, "uv.lock")
    _check_extras_and_groups(pyproject, extras, groups)
    if pyproject is not None and uv_lock is not None:
        return DependencyFiles(
            "uv.lock",
            pyproject,
            uv_lock=uv_lock,
            uv_pyproject=dump_toml(dependency_tables(pyproject)),
        )
    if not requirements:
        default = _project_file(project, "requirements.txt")
        requirements = (default,) if default is not None else ()
    if requirements:
        files, names = _read_requirements(requirements, project)
        return DependencyFiles(
            "requirements",
            pyproject,
            requirements=requirements,
            requirement_files=files,
            required=tuple(names),
        )
    return DependencyFiles("pyproject" if pyproject is not None else "none", pyproject)


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


def resolve_inside(path: Path, root: Path) -> tuple[Path, str | None]:
    """`path` resolved, and why it may not be read as part of `root` (None when it may): it
    must resolve inside `root` (through any links) and outside every `.git` folder."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        return resolved, "outside"
    if ".git" in resolved.relative_to(root).parts:
        return resolved, ".git"
    return resolved, None


def _read_pyproject(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SettingsError(f"cannot read {shown(path)}: {' '.join(str(error).split())}") from None


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
