"""What the project's metadata declares, read without building or running anything: its name,
requires-python, dependencies and extras, build requirements, and whether git gives its version.

Read from pyproject.toml's [project] table, else from setup.cfg's [metadata] and [options] and the
literal keywords of setup.py's `setup()` call (parsed with `ast`, never run). What cannot be read
that way (a setup.py that computes its dependencies, dependencies that are `dynamic` in a way
only the build backend knows) is named in `unknown`: the Modal recipe then installs the project
with its dependencies at container start and `plan` says why.
"""

from __future__ import annotations

import ast
import configparser
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# PEP 517's fallback for a project without [build-system] (setup.py or setup.cfg).
SETUPTOOLS_FALLBACK = "setuptools>=40.8.0"
HATCHLING_EDITABLES = "editables~=0.3"  # hatchling's get_requires_for_build_editable
_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
# Build requirements that version the project from git, and the tool that reads the version.
_VCS_REQUIREMENTS = {
    "setuptools-scm": "setuptools-scm",
    "hatch-vcs": "hatch-vcs",
    "flit-scm": "setuptools-scm",
}
_SETUP_KEYWORDS = ("install_requires", "extras_require", "setup_requires", "python_requires")


@dataclass(frozen=True, slots=True)
class ProjectMetadata:
    where: str = ""  # "pyproject.toml", "setup.cfg", "setup.py", or "" (no metadata)
    name: str = ""
    requires_python: str = ""
    dependencies: tuple[str, ...] = ()
    extras: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # pyproject.toml's [tool.setuptools.dynamic] dependencies files (requirements-file syntax)
    dependency_files: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()  # why some dependencies cannot be read without building
    build_requires: tuple[str, ...] = ()
    build_system: str = ""  # where build_requires come from, for `plan`
    vcs_version: str = ""  # the tool that takes the version from git ("setuptools-scm", ...)


def normalized_name(requirement: str) -> str:
    """PEP 503's name of a requirement (`Foo_Bar[x]>=1` -> `foo-bar`); "" when it has none."""
    match = _NAME.match(requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def read_metadata(
    project: Path,
    pyproject: Mapping[str, Any] | None,
    setup_cfg: Path | None,
    setup_py: Path | None,
) -> ProjectMetadata:
    """The project's metadata from the files given (each already checked to be the project's)."""
    cfg = _read_setup_cfg(setup_cfg) if setup_cfg is not None else {}
    literal, unknown = _read_setup_py(setup_py) if setup_py is not None else ({}, [])
    table = (pyproject or {}).get("project")
    if isinstance(table, dict):
        metadata = _from_pyproject(pyproject or {}, table)
    elif cfg or setup_py is not None:
        metadata = _from_setup(cfg, literal, unknown, "setup.cfg" if cfg else "setup.py")
    else:
        metadata = ProjectMetadata()
    return _with_build_system(metadata, pyproject, cfg, literal, setup_py)


def _from_pyproject(pyproject: Mapping[str, Any], table: Mapping[str, Any]) -> ProjectMetadata:
    dynamic = [str(d) for d in table.get("dynamic", [])]
    unknown: list[str] = []
    files: tuple[str, ...] = ()
    if "dependencies" in dynamic:
        setuptools_dynamic = pyproject.get("tool", {}).get("setuptools", {}).get("dynamic", {})
        found = setuptools_dynamic.get("dependencies", {})
        given = found.get("file") if isinstance(found, dict) else None
        if given:
            files = (given,) if isinstance(given, str) else tuple(str(f) for f in given)
        else:
            unknown.append(
                "pyproject.toml declares its dependencies as dynamic: only its build backend"
                " knows them"
            )
    if "optional-dependencies" in dynamic:
        unknown.append(
            "pyproject.toml declares its optional dependencies as dynamic: its extras cannot be"
            " read"
        )
    extras = {
        str(name): tuple(str(d) for d in deps)
        for name, deps in table.get("optional-dependencies", {}).items()
    }
    return ProjectMetadata(
        where="pyproject.toml",
        name=str(table.get("name", "")),
        requires_python=str(table.get("requires-python", "")),
        dependencies=tuple(str(d) for d in table.get("dependencies", [])),
        extras=extras,
        dependency_files=files,
        unknown=tuple(unknown),
    )


def _from_setup(
    cfg: Mapping[str, Any], literal: Mapping[str, Any], unknown: list[str], where: str
) -> ProjectMetadata:
    """setup.cfg's declarations, with setup.py's literal keywords over them (as setuptools
    lets setup.py's keywords win)."""
    merged = {**cfg, **literal}
    extras = {
        str(name): tuple(_lines(deps))
        for name, deps in dict(merged.get("extras_require", {})).items()
    }
    return ProjectMetadata(
        where=where,
        name=str(merged.get("name", "")),
        requires_python=str(merged.get("python_requires", "")),
        dependencies=tuple(_lines(merged.get("install_requires", []))),
        extras=extras,
        unknown=tuple(unknown),
    )


def _with_build_system(
    metadata: ProjectMetadata,
    pyproject: Mapping[str, Any] | None,
    cfg: Mapping[str, Any],
    literal: Mapping[str, Any],
    setup_py: Path | None,
) -> ProjectMetadata:
    build = (pyproject or {}).get("build-system")
    setup_requires = _lines({**cfg, **literal}.get("setup_requires", []))
    if isinstance(build, dict):
        requires = tuple(str(r) for r in build.get("requires", []))
        where = "pyproject.toml's [build-system] requires"
    elif cfg or setup_py is not None:
        requires = (SETUPTOOLS_FALLBACK,)
        where = "setuptools, PEP 517's default for a project without [build-system]"
    else:
        requires, where = (), ""
    if setup_requires:
        requires += tuple(r for r in setup_requires if r not in requires)
        where += " and setup_requires"
    editable = [r for r in _editable_requires(pyproject or {}) if r not in requires]
    if editable:
        requires += tuple(editable)
        where += " and what hatchling asks for an editable install"
    names = {normalized_name(r) for r in requires}
    tool = next((_VCS_REQUIREMENTS[n] for n in _VCS_REQUIREMENTS if n in names), "")
    pdm = (pyproject or {}).get("tool", {}).get("pdm", {}).get("version", {})
    if not tool and isinstance(pdm, dict) and pdm.get("source") == "scm":
        tool = "pdm-backend"
    if not tool and setup_py is not None and "use_scm_version" in _text(setup_py):
        tool = "setuptools-scm"
    project = (pyproject or {}).get("project")
    if isinstance(project, dict) and "version" not in project.get("dynamic", []):
        tool = ""  # a static version: git is not asked
    return ProjectMetadata(
        where=metadata.where,
        name=metadata.name,
        requires_python=metadata.requires_python,
        dependencies=metadata.dependencies,
        extras=metadata.extras,
        dependency_files=metadata.dependency_files,
        unknown=metadata.unknown,
        build_requires=requires,
        build_system=where,
        vcs_version=tool,
    )


def _editable_requires(pyproject: Mapping[str, Any]) -> list[str]:
    """What a build backend asks for only when it builds an editable install (PEP 660's
    get_requires_for_build_editable), where it can be read without running it: hatchling's
    `editables` and its build hooks' dependencies. The others ask for nothing more (setuptools,
    flit-core, pdm-backend, poetry-core, uv_build) or decide while they build (scikit-build-core,
    meson-python): the install at start then falls back to build isolation."""
    backend = str(pyproject.get("build-system", {}).get("build-backend", ""))
    if not backend.startswith("hatchling"):
        return []
    build = pyproject.get("tool", {}).get("hatch", {}).get("build", {})
    wheel = build.get("targets", {}).get("wheel", {})
    out = [HATCHLING_EDITABLES, *[str(d) for d in wheel.get("dependencies", [])]]
    for hooks in (build.get("hooks", {}), wheel.get("hooks", {})):
        for hook in hooks.values():
            if isinstance(hook, dict):
                out += [str(d) for d in hook.get("dependencies", [])]
    return out


def _read_setup_cfg(path: Path) -> dict[str, Any]:
    """setup.cfg's name, python_requires, install_requires, setup_requires and extras_require.
    A value given as `file:` or `attr:` cannot be read here: it is left out."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(_text(path), source=str(path))
    except configparser.Error:
        return {}
    out: dict[str, Any] = {}
    if parser.has_option("metadata", "name"):
        out["name"] = parser.get("metadata", "name").strip()
    for key in ("python_requires", "install_requires", "setup_requires"):
        if parser.has_option("options", key):
            value = parser.get("options", key)
            if not value.strip().startswith(("file:", "attr:")):
                out[key] = value.strip() if key == "python_requires" else value
    if parser.has_section("options.extras_require"):
        out["extras_require"] = dict(parser.items("options.extras_require"))
    return out


def _read_setup_py(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The literal dependency keywords of setup.py's `setup(...)` call, read with `ast` (never
    run), and why the rest cannot be known."""
    why = "setup.py {}: its dependencies cannot be known without running it"
    try:
        tree = ast.parse(_text(path))
    except (SyntaxError, ValueError):
        return {}, [why.format("is not Python 3 that can be parsed")]
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) or getattr(node.func, "attr", None)) == "setup"
    ]
    if not calls:
        return {}, [why.format("has no setup() call")]
    found: dict[str, Any] = {}
    unknown: list[str] = []
    for call in calls:
        for keyword in call.keywords:
            if keyword.arg is None:
                unknown.append(why.format("passes **keywords to setup()"))
            elif keyword.arg in _SETUP_KEYWORDS:
                try:
                    found[keyword.arg] = ast.literal_eval(keyword.value)
                except ValueError:
                    unknown.append(why.format(f"computes {keyword.arg}"))
    return found, list(dict.fromkeys(unknown))


def _lines(value: Any) -> list[str]:
    """A setup.cfg list (one item a line, `#` comments) or a setup.py list of strings."""
    if isinstance(value, str):
        items = [re.sub(r"(^|\s)#.*$", "", line).strip() for line in value.splitlines()]
    elif isinstance(value, list | tuple):
        items = [str(v).strip() for v in value]
    else:
        return []
    return [item for item in items if item]


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")
