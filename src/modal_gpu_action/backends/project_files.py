"""What of the project folder goes to Modal: the project, and nothing else.

    files = list_project_files(project)    # -> ProjectFiles: files, links, refusals, left out

The project is what git shows of it: every file git tracks plus the untracked files it does not
ignore (`git ls-files --cached --others --exclude-standard`), never `.git` itself. Without a git
repository the same rules are read from the `.gitignore` files (with the `pathspec` library, which
implements git's matching). Untracked caches and virtual environments (`__pycache__`, `*.pyc`,
`.pytest_cache`, a folder with a `pyvenv.cfg`, ...) are left out even when nothing ignores them;
tracked ones are part of the project and go.

Links are never followed when listing. A link goes only when it resolves inside the project,
outside `.git`, to something that is itself uploaded: the container then recreates it, with a
relative target (`links`), so it can reach nothing that is not in the upload. Every other link is
refused with its reason, as are files that are neither regular files nor links (fifos, sockets,
devices) and anything found below a linked folder.

No `modal` import: `plan` lists the same upload without contacting Modal.
"""

from __future__ import annotations

import os
import posixpath
import stat
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

GIT_TIMEOUT_SECONDS = 60
MAX_NESTED_REPOSITORIES = 8  # submodules within submodules, at most this deep

# Left out when git does not track them, even if nothing ignores them: made on this machine, never
# the project's source (bytecode for another Python, a virtual environment for this one).
CACHE_FOLDERS = frozenset(
    {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}
    | {".ipynb_checkpoints", ".tox", ".nox", "node_modules"}
)
CACHE_SUFFIXES = (".pyc", ".pyo")
CACHE_FILES = frozenset({".DS_Store"})

# Why a path was refused: fixed texts, so a plan or a log line never carries a link's target.
OUTSIDE = "link to a path outside the project"
INTO_GIT = "link into .git"
DANGLING = "dangling link (its target does not exist, or links loop)"
NOT_UPLOADED = "link to something that is not uploaded (ignored, left out or refused)"
SPECIAL = "not a regular file, folder or link (fifo, socket or device)"
UNDER_LINK = "below a linked folder"


@dataclass(frozen=True, slots=True)
class Link:
    """A link the container recreates: `path` -> `target`, both relative (posix), the target
    relative to the link's folder and inside the project."""

    path: str
    target: str


@dataclass(frozen=True, slots=True)
class Refusal:
    path: str  # relative to the project, posix
    reason: str


@dataclass(frozen=True, slots=True)
class ProjectFiles:
    """The upload of one project folder: plain data, paths relative to `root` in posix form."""

    root: Path  # the project folder, resolved
    rules: str  # "git", or ".gitignore" (no repository, or git could not list it)
    files: tuple[str, ...]  # regular files, sorted
    links: tuple[Link, ...] = ()
    refused: tuple[Refusal, ...] = ()
    left_out: tuple[str, ...] = ()  # untracked caches and virtual environments (folders end /)
    size: int = 0  # bytes of `files`
    notes: tuple[str, ...] = ()
    _file_set: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    _folders: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def ignores(self, relative: str | os.PathLike[str]) -> bool:
        """Whether a walker of `root` must leave `relative` out: everything but the listed files
        and the folders that hold them, and those only while they still are what was listed (a
        regular file, a real folder: never a link put there since)."""
        key = Path(relative).as_posix()
        if key in self._file_set:
            wanted = stat.S_ISREG
        elif key in self._folders:
            wanted = stat.S_ISDIR
        else:
            return True
        try:
            return not wanted(os.lstat(self.root / key).st_mode)
        except OSError:
            return True

    def holds(self, relative: str) -> bool:
        """Whether a regular file at `relative` is part of the upload."""
        return relative in self._file_set

    def files_under(self, folder: str) -> list[str]:
        """The uploaded files below `folder` ("" or "." for all of them)."""
        if folder in ("", "."):
            return list(self.files)
        prefix = folder.rstrip("/") + "/"
        return [f for f in self.files if f.startswith(prefix)]


def list_project_files(project: Path) -> ProjectFiles:
    """The upload of `project` (a folder): see the module's docstring."""
    root = project.resolve()
    notes: list[str] = []
    candidates: list[tuple[str, bool]] = []  # (relative path, tracked)
    repository = _repository_of(root)
    rules = "git"
    if repository is not None:
        try:
            candidates = _git_list(root, repository)
        except _GitFailed as failure:
            notes.append(
                f"git could not list the project ({failure}): its .gitignore files were read"
                " instead, so files git tracks but ignores are left out"
            )
            rules = ".gitignore"
    else:
        rules = ".gitignore"
    if rules != "git":
        candidates = [(path, False) for path in _gitignore_candidates(root, repository)]
    return _classify(root, rules, candidates, notes)


# -- listing ---------------------------------------------------------------------------------


class _GitFailed(Exception):
    pass


def _repository_of(root: Path) -> Path | None:
    """The nearest folder at or above `root` that holds `.git` (a folder, or a file as in a
    worktree or submodule), or None."""
    for folder in (root, *root.parents):
        if os.path.lexists(folder / ".git"):
            return folder
    return None


def run_git(
    folder: Path, repository: Path, *args: str, timeout: float = GIT_TIMEOUT_SECONDS
) -> subprocess.CompletedProcess[bytes]:
    """git in `folder` with nothing it could start (fsmonitor, hooks, a pager), the repository
    trusted for this call only, and git's own variables left out. Raises OSError (git missing)
    and subprocess.TimeoutExpired."""
    command = [
        "git", "--no-pager", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null",
        "-c", f"safe.directory={repository}", "-C", str(folder), *args,
    ]  # fmt: skip
    return subprocess.run(
        command,
        env=_git_environment(repository),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def _git_environment(repository: Path) -> dict[str, str]:
    """This environment without git's own variables (GIT_DIR, GIT_INDEX_FILE, ... could point it
    elsewhere), no pager or prompt, and git kept from looking above the repository."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.pop("PAGER", None)
    env.update(
        GIT_PAGER="cat",
        GIT_TERMINAL_PROMPT="0",
        GIT_OPTIONAL_LOCKS="0",
        GIT_CONFIG_NOSYSTEM="1",
        LC_ALL="C",
    )
    if repository.parent != repository:
        env["GIT_CEILING_DIRECTORIES"] = str(repository.parent)
    return env


def _git_list(folder: Path, repository: Path) -> list[tuple[str, bool]]:
    """(path relative to `folder`, tracked) for what git shows in `folder`. Nothing git runs
    here executes a command: the fsmonitor hook, the one ls-files could start, is turned off; so
    the repository is trusted for this listing even when another user owns it (a checkout made
    by the runner's user, read from a container running as root: git's "dubious ownership")."""
    try:
        completed = run_git(
            folder,
            repository,
            "ls-files", "-z", "-t", "--cached", "--others", "--exclude-standard",
        )  # fmt: skip
    except FileNotFoundError:
        raise _GitFailed("git is not installed") from None
    except (OSError, subprocess.TimeoutExpired) as error:
        raise _GitFailed(type(error).__name__) from None
    if completed.returncode != 0:
        message = completed.stderr.decode("utf-8", "replace").strip().splitlines()
        first = message[0] if message else f"exit code {completed.returncode}"
        raise _GitFailed(ascii(first[:200]))
    out: dict[str, bool] = {}
    for item in completed.stdout.decode("utf-8", "surrogateescape").split("\0"):
        if len(item) < 3 or item[1] != " ":
            continue
        tag, path = item[0], item[2:]
        out[path] = out.get(path, False) or tag != "?"
    return list(out.items())


def _is_real_folder(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _gitignore_candidates(root: Path, repository: Path | None) -> Iterator[str]:
    """The files and links git would show in `root` without a repository to ask: a walk that
    never follows links, with every `.gitignore` on the way applied as git applies it (deeper
    files first, the last matching line of a file wins, an ignored folder is not entered). When
    `root` sits in a repository that git could not read, that repository's `.gitignore` files
    above `root` and its `.git/info/exclude` apply too."""
    top = repository or root
    lead = root.relative_to(top).as_posix() + "/" if root != top else ""
    specs: list[tuple[str, GitIgnoreSpec]] = []
    if repository is not None:
        exclude = _read_ignore_file(repository / ".git" / "info" / "exclude")
        if exclude is not None:
            specs.append(("", exclude))
        for folder in reversed(root.parents):
            if folder.is_relative_to(top):
                spec = _read_ignore_file(folder / ".gitignore")
                if spec is not None:
                    base = folder.relative_to(top).as_posix()
                    specs.append(("" if base == "." else base + "/", spec))
    stack: list[tuple[Path, str, list[tuple[str, GitIgnoreSpec]]]] = [(root, "", specs)]
    while stack:
        folder, relative, inherited = stack.pop()
        here = list(inherited)
        spec = _read_ignore_file(folder / ".gitignore")
        if spec is not None:
            here.append((lead + relative, spec))
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name, reverse=True)
        except OSError:
            continue
        for entry in entries:
            if entry.name == ".git":
                continue
            path = relative + entry.name
            is_folder = entry.is_dir(follow_symlinks=False)
            if _ignored(lead + path, is_folder, here):
                continue
            if is_folder:
                stack.append((Path(entry.path), path + "/", here))
            else:
                yield path


def _read_ignore_file(path: Path) -> GitIgnoreSpec | None:
    """A .gitignore as git reads it: a regular file only (git does not follow a linked one)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    from pathspec import GitIgnoreSpec

    return GitIgnoreSpec.from_lines(text.splitlines())


def _ignored(path: str, is_folder: bool, specs: list[tuple[str, GitIgnoreSpec]]) -> bool:
    for base, spec in reversed(specs):  # the deepest .gitignore decides first
        result = spec.check_file(path[len(base) :] + ("/" if is_folder else ""))
        if result.include is not None:
            return bool(result.include)
    return False


# -- what goes ---------------------------------------------------------------------------------


def _classify(
    root: Path, rules: str, candidates: Iterable[tuple[str, bool]], notes: list[str]
) -> ProjectFiles:
    files: dict[str, int] = {}
    links: dict[str, str] = {}  # link -> resolved target, relative to root
    refused: list[Refusal] = []
    left_out: set[str] = set()
    top = os.fspath(root) + os.sep
    folders: dict[str, bool] = {"": True}  # folder -> is a real folder (not a link), cached
    venvs: dict[str, bool] = {}
    work = [(path, tracked, 0) for path, tracked in candidates]

    def nested(inner: str, depth: int) -> None:
        """A submodule (tracked) or a clone inside the project (untracked, listed as `dir/`):
        its own git lists it, by its own rules."""
        if not os.path.lexists(top + inner + "/.git"):
            return  # a submodule that is not checked out: nothing to upload
        if depth >= MAX_NESTED_REPOSITORIES:
            refused.append(Refusal(inner, f"repository nested over {MAX_NESTED_REPOSITORIES} deep"))
            return
        try:
            inside = _git_list(root / inner, root / inner)
        except _GitFailed as failure:
            refused.append(Refusal(inner, f"a nested repository git could not list ({failure})"))
            return
        work.extend((f"{inner}/{path}", tracked, depth + 1) for path, tracked in inside)

    for path, tracked, depth in work:  # `nested` appends to it
        parts = path.rstrip("/").split("/")
        if ".git" in parts or not path:
            continue
        if not tracked:
            cache = _cache_prefix(top, parts, venvs)
            if cache is not None:
                left_out.add(cache)
                continue
        if not _real_folder(top, path.rstrip("/").rpartition("/")[0], folders):
            refused.append(Refusal(path, UNDER_LINK))
            continue
        if path.endswith("/"):
            nested(path.rstrip("/"), depth)
            continue
        try:
            mode = os.lstat(top + path)
        except OSError:
            continue  # tracked but deleted from the working tree
        if stat.S_ISDIR(mode.st_mode):
            if rules == "git":
                nested(path, depth)
        elif stat.S_ISREG(mode.st_mode):
            files[path] = mode.st_size
        elif stat.S_ISLNK(mode.st_mode):
            target, reason = _link_target(root, path)
            if reason is not None:
                refused.append(Refusal(path, reason))
            else:
                links[path] = target
        else:
            refused.append(Refusal(path, SPECIAL))
    kept_links: list[Link] = []
    holders = _folders_of([*files, *links])
    for path, target in sorted(links.items()):
        if target == "." or target in files or target in holders:
            start = posixpath.dirname(path) or "."
            kept_links.append(Link(path, posixpath.relpath(target, start)))
        else:
            refused.append(Refusal(path, NOT_UPLOADED))
    listed = sorted(files)
    folders_kept = frozenset(_folders_of(listed))
    return ProjectFiles(
        root=root,
        rules=rules,
        files=tuple(listed),
        links=tuple(kept_links),
        refused=tuple(sorted(refused, key=lambda r: r.path)),
        left_out=tuple(sorted(left_out)),
        size=sum(files.values()),
        notes=tuple(notes),
        _file_set=frozenset(listed),
        _folders=folders_kept,
    )


def _folders_of(paths: Iterable[str]) -> set[str]:
    """Every folder that holds one of `paths`, at any depth."""
    out: set[str] = set()
    for path in paths:
        folder = path.rpartition("/")[0]
        while folder and folder not in out:
            out.add(folder)
            folder = folder.rpartition("/")[0]
    return out


def _cache_prefix(top: str, parts: list[str], venvs: dict[str, bool]) -> str | None:
    """The cache or virtual-environment folder (ending /) or file that `parts` is, or is in."""
    for n, name in enumerate(parts[:-1], start=1):
        folder = "/".join(parts[:n])
        if name in CACHE_FOLDERS:
            return folder + "/"
        if folder not in venvs:
            venvs[folder] = os.path.lexists(top + folder + "/pyvenv.cfg")
        if venvs[folder]:
            return folder + "/"
    name = parts[-1]
    if name in CACHE_FILES or name.endswith(CACHE_SUFFIXES):
        return "/".join(parts)
    return None


def _real_folder(top: str, folder: str, cache: dict[str, bool]) -> bool:
    """Whether `folder` and every folder above it are real folders, not links (cached)."""
    if folder not in cache:
        parent = folder.rpartition("/")[0]
        cache[folder] = _real_folder(top, parent, cache) and _is_real_folder(top + folder)
    return cache[folder]


def _link_target(root: Path, path: str) -> tuple[str, str | None]:
    """(the link's final target relative to root, why it is refused or None)."""
    try:
        target = (root / path).resolve(strict=True)
    except (OSError, RuntimeError):  # missing target, or a loop (RuntimeError before 3.13)
        return "", DANGLING
    if not target.is_relative_to(root):
        return "", OUTSIDE
    relative = target.relative_to(root)
    if ".git" in relative.parts:
        return "", INTO_GIT
    return relative.as_posix(), None
