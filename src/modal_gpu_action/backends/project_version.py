"""The version a git-versioned project (setuptools-scm, hatch-vcs, flit-scm, pdm-backend's scm
source) is given in the container, where `.git` is never uploaded: computed here, on the runner's
checkout, as setuptools-scm's default scheme would (`git describe --dirty --tags --long --match
*[0-9]*`: a clean tagged commit is its tag; N commits past tag 1.2.3 are `1.2.4.devN+gHASH`; a
dirty tree adds `.dYYYYMMDD`; no tag is `0.1.devN+gHASH`), and handed to the install at container
start in the variables those tools read. It changes with every commit, so it is never part of a
layer.
"""

from __future__ import annotations

import datetime
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import InvalidVersion, Version

from modal_gpu_action.backends.project_files import _repository_of, run_git

GIT_TIMEOUT_SECONDS = 20
NO_VERSION = "0.0.0"  # when git cannot tell (no repository, no git): the install still works
# setuptools-scm's default tag_regex: an optional `name-` prefix, an optional v, the version.
_TAG = re.compile(r"^(?:[\w-]+-)?[vV]?(?P<version>\d+(?:\.\d+){0,2}[^+]*)(?:\+.*)?$")
_DESCRIBE = re.compile(r"^(?P<tag>.+)-(?P<distance>\d+)-g(?P<node>[0-9a-f]+)(?P<dirty>-dirty)?$")


@dataclass(frozen=True, slots=True)
class ProjectVersion:
    tool: str  # "setuptools-scm", "hatch-vcs", "pdm-backend"
    version: str
    source: str  # how it was found, for `plan`: "git describe: v1.2.3-2-gabc1234"
    warning: str = ""  # what `plan` should warn about (no tag: a shallow clone?)
    env: dict[str, str] = field(default_factory=dict)  # for the install at container start


def project_version(project: Path, tool: str, distribution: str) -> ProjectVersion:
    """The version `tool` would give the project's checkout, and the variables that pass it."""
    version, source, warning = _from_git(project)
    return ProjectVersion(tool, version, source, warning, _variables(tool, distribution, version))


def _variables(tool: str, distribution: str, version: str) -> dict[str, str]:
    if tool == "pdm-backend":
        return {"PDM_BUILD_SCM_VERSION": version}
    # setuptools-scm reads these (hatch-vcs and flit-scm call it); the _FOR_ form names one
    # distribution, so a build dependency installed at the same time is not given it.
    suffix = re.sub(r"[-_.]+", "_", distribution).upper()
    names = ["SETUPTOOLS_SCM_PRETEND_VERSION"]
    if suffix:
        names += [f"SETUPTOOLS_SCM_PRETEND_VERSION_FOR_{suffix}"]
    return dict.fromkeys(names, version)


def _from_git(project: Path) -> tuple[str, str, str]:
    """(version, how, warning) from the checkout's git."""
    repository = _repository_of(project)
    if repository is None:
        return NO_VERSION, "no git repository", _no_git("the project is not in a git repository")
    described = _git(project, repository, "describe", "--dirty", "--tags", "--long", "--match",
                     "*[0-9]*")  # fmt: skip
    if described is not None:
        found = _DESCRIBE.match(described)
        tag = _TAG.match(found.group("tag")) if found else None
        if found and tag:
            try:
                base = Version(tag.group("version"))
            except InvalidVersion:
                base = None
            if base is not None:
                version = _guess_next_dev(
                    base, int(found.group("distance")), found.group("node"), bool(found["dirty"])
                )
                return version, f"git describe: {described}", ""
    node = _git(project, repository, "rev-parse", "--short", "HEAD")
    if node is None:
        return NO_VERSION, "git could not describe HEAD", _no_git("git could not read HEAD")
    count = _git(project, repository, "rev-list", "--count", "HEAD") or "0"
    dirty = _git(project, repository, "status", "--porcelain", "--untracked-files=no")
    version = f"0.1.dev{count}+g{node}" + (f".d{_today()}" if dirty else "")
    return (
        version,
        f"git: no version tag reachable from {node}",
        "no version tag is reachable from HEAD (a shallow clone? actions/checkout needs"
        " `fetch-depth: 0` for tags): the project is given " + version,
    )


def _guess_next_dev(base: Version, distance: int, node: str, dirty: bool) -> str:
    """setuptools-scm's guess-next-dev and node-and-date schemes."""
    if distance == 0 and not dirty:
        return str(base)
    text = str(base)
    if base.is_devrelease or base.is_postrelease or base.local:
        text = base.base_version
    bumped = re.sub(r"(\d+)(?!.*\d)", lambda m: str(int(m.group(1)) + 1), text, count=1)
    local = f"g{node}" + (f".d{_today()}" if dirty else "")
    return f"{bumped}.dev{distance}+{local}"


def _no_git(why: str) -> str:
    return (
        f"{why}: the project is given version {NO_VERSION} (its build reads the version from git,"
        " and .git is never uploaded)"
    )


def _today() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%d")


def _git(folder: Path, repository: Path, *args: str) -> str | None:
    """git's one-line answer, or None. As for the upload's listing (project_files.py): no
    command git could start (fsmonitor, hooks), git's own variables left out."""
    try:
        completed = run_git(folder, repository, *args, timeout=GIT_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if completed.returncode != 0:
        return None
    return completed.stdout.decode("utf-8", "replace").strip()
