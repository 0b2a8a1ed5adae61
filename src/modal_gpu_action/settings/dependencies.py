"""The project's dependency declarations, read once and checked with the other inputs (backend
`modal`): pyproject.toml, uv.lock, setup.cfg and setup.py (project_metadata.py) and the
requirements files with those they include; and which of them the tests get.

Test dependencies (input `test-dependencies`, default `auto`): besides the runtime dependencies
and what the inputs `extras`, `groups` and `requirements` name, the image gets what a maintainer
installs to run the tests: the extras named test, tests or testing (else dev), the dependency
groups named so plus uv's default groups (dev, or [tool.uv] default-groups), and the requirement
files named so (test-requirements.txt, requirements-test.txt, requirements/test*.txt, ...; else
requirements-dev.txt, dev-requirements.txt, requirements/dev*.txt). The same names count for
uv.lock projects (`uv sync --extra/--group`) and the others. `none` installs the runtime
dependencies and what the inputs name only (`uv sync --no-default-groups`).

Only the project's own files are read: a declaration file that is a link leading out of the working
directory or into .git is refused, as is a requirements line that installs a local folder (the
image is built from declarations only; the project is installed when a container starts). The
Modal image recipe (backends/modal_image.py) is built from what this module read.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from modal_gpu_action.settings.project_metadata import (
    ProjectMetadata,
    normalized_name,
    read_metadata,
)
from modal_gpu_action.settings.values import SettingsError, shown

DependencySource = Literal["uv.lock", "requirements", "pyproject", "setup.cfg", "setup.py", "none"]
TestDependencies = Literal["auto", "none"]
_METADATA_SOURCES: dict[str, DependencySource] = {
    "pyproject.toml": "pyproject",
    "setup.cfg": "setup.cfg",
    "setup.py": "setup.py",
}
TEST_DEPENDENCY_CHOICES: tuple[TestDependencies, ...] = ("auto", "none")

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
# What `test-dependencies: auto` looks for, in this order: the test names, else the dev ones.
TEST_NAMES = ("test", "tests", "testing")
DEV_NAMES = ("dev",)
TEST_REQUIREMENT_FILES = (
    "test-requirements.txt",
    "test_requirements.txt",
    "requirements-test.txt",
    "requirements_test.txt",
    "requirements-tests.txt",
    "requirements_tests.txt",
    "requirements-testing.txt",
    "requirements/test*.txt",
    "requirements/tests*.txt",
)
DEV_REQUIREMENT_FILES = (
    "requirements-dev.txt",
    "requirements_dev.txt",
    "dev-requirements.txt",
    "dev_requirements.txt",
    "requirements/dev*.txt",
)


@dataclass(frozen=True, slots=True)
class DependencyFiles:
    """Where the project declares its dependencies (`source`: uv.lock with pyproject.toml, else
    requirements files, else the project's metadata, else none), what those files hold, and what
    is installed of them (`extras`, `groups`, `requirements`: the inputs' and the tests')."""

    source: DependencySource
    pyproject: dict[str, Any] | None = None  # parsed, when the project has one
    metadata: ProjectMetadata = field(default_factory=ProjectMetadata)
    uv_lock: Path | None = None  # uv.lock projects
    uv_pyproject: str = ""  # pyproject.toml's dependency tables, re-written (uv.lock projects)
    # The files to install: the input's or requirements.txt, [tool.setuptools.dynamic] ones and
    # the test files found; then the same plus the files they include (-r, -c).
    requirements: tuple[Path, ...] = ()
    requirement_files: tuple[Path, ...] = ()
    required: tuple[str, ...] = ()  # the requirements those files name
    extras: tuple[str, ...] = ()  # to install: the input's, then the test extras found
    groups: tuple[str, ...] = ()  # to install: the input's, then the test groups found
    default_groups: tuple[str, ...] = ()  # uv's default groups, installed with `auto`
    test_dependencies: TestDependencies = "auto"
    for_tests: tuple[str, ...] = ()  # what `auto` added, in words: "extra 'test'", "file ..."


def read_dependency_files(
    project: Path,
    requirements: tuple[Path, ...],
    extras: tuple[str, ...],
    groups: tuple[str, ...],
    test_dependencies: TestDependencies = "auto",
) -> DependencyFiles:
    """Read and check the declarations; a SettingsError names the input or file at fault."""
    pyproject = _read_pyproject(_project_file(project, "pyproject.toml"))
    uv_lock = _project_file(project, "uv.lock")
    metadata = read_metadata(
        project, pyproject, _project_file(project, "setup.cfg"), _project_file(project, "setup.py")
    )
    _check_extras_and_groups(pyproject, metadata, extras, groups)
    auto = test_dependencies == "auto"
    found: list[str] = []
    test_extras = _named(metadata.extras, "extra", found) if auto else ()
    known_groups = _known_groups(pyproject)
    test_groups = _named(known_groups, "group", found, fallback=False) if auto else ()
    chosen = DependencyFiles(
        "none",
        pyproject,
        metadata=metadata,
        extras=tuple(dict.fromkeys([*extras, *test_extras])),
        groups=tuple(dict.fromkeys([*groups, *test_groups])),
        default_groups=_default_groups(pyproject, known_groups) if auto else (),
        test_dependencies=test_dependencies,
    )
    if pyproject is not None and uv_lock is not None:
        return replace(
            chosen,
            source="uv.lock",
            uv_lock=uv_lock,
            uv_pyproject=dump_toml(dependency_tables(pyproject)),
            for_tests=tuple(found),
        )
    runtime = requirements
    if not runtime:
        default = _project_file(project, "requirements.txt")
        runtime = (default,) if default is not None else ()
    dynamic = tuple(_dynamic_file(project, name) for name in metadata.dependency_files)
    test_files = _test_files(project, found) if auto else ()
    to_install = tuple(dict.fromkeys([*runtime, *dynamic, *test_files]))
    files, names = _read_requirements(to_install, project)
    source = _METADATA_SOURCES.get(metadata.where, "none")
    if runtime or (to_install and source == "none"):
        source = "requirements"
    return replace(
        chosen,
        source=source,
        requirements=to_install,
        requirement_files=files,
        required=tuple(names),
        for_tests=tuple(found),
    )


def _named(
    declared: Iterable[str], kind: str, found: list[str], *, fallback: bool = True
) -> tuple[str, ...]:
    """Those of `declared` named test, tests or testing; else (with `fallback`) the one named
    dev. Dependency groups take no fallback: uv installs dev by default (`default_groups`)."""
    names = set(declared)
    for candidates in (TEST_NAMES, DEV_NAMES) if fallback else (TEST_NAMES,):
        present = tuple(name for name in candidates if name in names)
        if present:
            found.extend(f"{kind} {name!r}" for name in present)
            return present
    return ()


def _test_files(project: Path, found: list[str]) -> tuple[Path, ...]:
    """The test requirement files of the project (else its dev ones), as they are named."""
    for patterns in (TEST_REQUIREMENT_FILES, DEV_REQUIREMENT_FILES):
        paths: list[Path] = []
        for pattern in patterns:
            for match in sorted(project.glob(pattern)):
                checked = _project_file(project, match.relative_to(project).as_posix())
                if checked is not None:
                    paths.append(checked)
        if paths:
            found.extend(f"file {p.relative_to(project).as_posix()}" for p in paths)
            return tuple(dict.fromkeys(paths))
    return ()


def _dynamic_file(project: Path, name: str) -> Path:
    path = _project_file(project, name)
    if path is None:
        raise SettingsError(
            f"pyproject.toml's [tool.setuptools.dynamic] dependencies names {shown(name)}, which is"
            " not a file of the project"
        )
    return path


def _known_groups(pyproject: Mapping[str, Any] | None) -> set[str]:
    known = set((pyproject or {}).get("dependency-groups", {}))
    if (pyproject or {}).get("tool", {}).get("uv", {}).get("dev-dependencies"):
        known.add("dev")
    return known


def _default_groups(pyproject: Mapping[str, Any] | None, known: set[str]) -> tuple[str, ...]:
    """The groups `uv sync` installs unless told otherwise: [tool.uv] default-groups, else dev."""
    defaults = (pyproject or {}).get("tool", {}).get("uv", {}).get("default-groups", ["dev"])
    if defaults == "all":
        return tuple(sorted(known))
    return tuple(str(g) for g in defaults if str(g) in known)


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
    pyproject: Mapping[str, Any] | None,
    metadata: ProjectMetadata,
    extras: Iterable[str],
    groups: Iterable[str],
) -> None:
    known_extras = set(metadata.extras)
    table = (
        "pyproject.toml's [project.optional-dependencies]"
        if metadata.where in ("pyproject.toml", "")
        else f"{metadata.where}'s extras_require"
    )
    for extra in extras:
        if extra not in known_extras:
            raise SettingsError(
                f"invalid value {extra!r} for input 'extras': {table} has "
                + (", ".join(sorted(known_extras)) or "no extras")
            )
    known_groups = _known_groups(pyproject)
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


# -- what is installed of the declarations -----------------------------------------------------


def chosen_requirements(files: DependencyFiles) -> list[str]:
    """The requirements the image installs from the project's metadata (what `uv sync` installs
    directly, for a uv.lock project): its dependencies, then those of the chosen extras and groups (uv's default groups with
    `auto`), the project's references to itself (`proj[gpu]` in an extra or a group) replaced by
    what they name: the project itself is installed at container start."""
    metadata = files.metadata
    out = list(metadata.dependencies)
    for extra in files.extras:
        out += metadata.extras.get(extra, ())
    for group in dict.fromkeys([*files.groups, *files.default_groups]):
        out += _group(files.pyproject or {}, group)
    return list(dict.fromkeys(_without_self(out, metadata)))


def _without_self(requirements: Iterable[str], metadata: ProjectMetadata) -> list[str]:
    own = normalized_name(metadata.name)
    out: list[str] = []

    def add(requirement: str, seen: frozenset[str]) -> None:
        if not own or normalized_name(requirement) != own:
            out.append(requirement)
            return
        match = re.match(r"^[^\[;@]*\[([^\]]*)\]", requirement)
        for extra in (e.strip() for e in (match.group(1).split(",") if match else [])):
            if extra and extra not in seen:
                for inner in metadata.extras.get(extra, ()):
                    add(inner, seen | {extra})

    for requirement in requirements:
        add(requirement, frozenset())
    return out


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
