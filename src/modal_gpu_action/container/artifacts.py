"""The files the tests leave for later steps (`artifacts`: coverage.xml, htmlcov/), collected in
the project once pytest is over, however it ended, and packed to travel back in the RunResult:
a zip file (deflated) in base64, which JSON and Modal's answer both carry.

    attach(result, request) -> RunResult   # `artifacts` and `artifacts_left_out` filled in

The tests wrote these files, and pull-request tests are hostile, so collecting them

- never follows a symbolic link (a file or a folder that is a link is left out, and said so),
  not even a folder swapped for a link after the walk: each file is opened step by step from the
  project with O_NOFOLLOW;
- takes regular files only, whose every path part is made of safe characters (`SAFE_PART`): a
  name is later listed in the job summary and the log;
- stops at `request.artifacts_max_bytes` (the cap for this shard) and `MAX_FILES`, reading each
  file with a limit, so a huge file, or one still growing, cannot exhaust memory;
- walks at most `MAX_ENTRIES` entries, and never into `.git`.

What is left out is listed, one line each (`LEFT_OUT_LINES` at most), for the summary and the log.
A glob is relative to the project: `coverage.xml`, `reports/*.xml`, `htmlcov` (a folder: all
its files), `**/junit-*.xml` (`**` is any number of folders). `glob_problem` says why a glob
is refused (the host checks the input with it before anything runs).
"""

from __future__ import annotations

import base64
import dataclasses
import fnmatch
import io
import os
import re
import stat
import zipfile
from collections.abc import Iterator, Sequence

from .protocol import RunRequest, RunResult

MAX_FILES = 5000  # per shard
MAX_ENTRIES = 200_000  # folder entries looked at per shard, over all globs
LEFT_OUT_LINES = 50
MAX_NAME = 400  # characters in a file's path
# Letters, digits and . _ - + @ = , ~: nothing a summary, a log line or a workflow command could
# read as markup, a command or a line break.
SAFE_PART = re.compile(r"^[A-Za-z0-9._+@=,~-]+$")
_GLOB_CHARS = re.compile(r"[*?\[]")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest: the files' times do not travel


def glob_problem(pattern: str) -> str | None:
    """Why `pattern` cannot be an artifacts glob (`is an absolute path`), or None: a glob stays
    inside the project."""
    if not pattern.strip():
        return "is empty"
    if pattern.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", pattern):
        return "is an absolute path"
    if "\\" in pattern:
        return "has a backslash (separate folders with /)"
    parts = pattern.split("/")
    if ".." in parts:
        return "climbs out with '..'"
    if ".git" in (part.lower() for part in parts):  # a wildcard never enters it (the walk)
        return "names .git (it holds the checkout's credentials)"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in pattern):
        return "has a control character"
    return None


def safe_name(name: str) -> bool:
    """A relative `a/b/c` path whose every part is made of SAFE_PART's characters (no `.`, `..`,
    empty or absolute part): what may be listed and written on the host."""
    parts = name.split("/")
    return all(SAFE_PART.match(p) and p not in (".", "..") for p in parts) and len(name) <= MAX_NAME


def shown(name: str) -> str:
    """A name for a left-out line: as it is when safe, else escaped (ascii(), quoted)."""
    return name if safe_name(name) else ascii(name)


class _Collected:
    """The zip being written in memory: each file goes in as soon as it is read, so only the
    packed files and the one being added are held."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        # Level 1: most of deflate's gain on text (coverage XML, HTML) at a fraction of its time.
        self.archive = zipfile.ZipFile(
            self.buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1
        )
        self.files = 0
        self.size = 0

    def add(self, name: str, data: bytes) -> None:
        info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16  # a regular file: the host refuses any other mode
        self.archive.writestr(info, data, compresslevel=1)
        self.files += 1
        self.size += len(data)

    def packed(self) -> str:
        """The zip in base64, "" when no file went in."""
        self.archive.close()
        if not self.files:
            return ""
        return base64.b64encode(self.buffer.getbuffer()).decode("ascii")


def attach(result: RunResult, request: RunRequest) -> RunResult:
    """`result` with the request's artifacts packed in; never raises (a failure to collect is
    one left-out line: the tests' report matters more)."""
    if not request.artifacts:
        return result
    try:
        data, left_out = collect(
            request.working_directory,
            request.artifacts,
            request.artifacts_max_bytes,
            skip=request.artifacts_skip,
        )
    except Exception as error:  # a bug of ours, or a project folder gone
        data, left_out = "", [f"the files could not be collected: {error!a}"]
    return dataclasses.replace(result, artifacts=data, artifacts_left_out=left_out)


def collect(
    project: str, globs: Sequence[str], max_bytes: int, *, skip: Sequence[str] = ()
) -> tuple[str, list[str]]:
    """The files under `project` that `globs` match, as a base64 zip ("" when none), and the
    lines saying what was left out and why. `skip`: folders (relative) never looked into."""
    found = _Collected()
    left_out: list[str] = []
    names: list[str] = []
    seen = set()
    budget = [MAX_ENTRIES]
    for pattern in globs:
        problem = glob_problem(pattern)
        if problem:
            left_out.append(f"{pattern!a}: glob refused: it {problem}")
            continue
        matched = 0
        for name, why in _matches(project, pattern.strip().strip("/"), skip, budget):
            matched += 1
            if name in seen:
                continue
            seen.add(name)
            if why:
                left_out.append(f"{shown(name)}: {why}")
            else:
                names.append(name)
        if budget[0] <= 0:
            left_out.append(f"stopped looking after {MAX_ENTRIES:,} folder entries")
            break
        if not matched:
            left_out.append(f"{pattern!a}: no file matched")
    for name in sorted(names):
        why = _read(project, name, max_bytes, found)
        if why:
            left_out.append(f"{shown(name)}: {why}")
    if len(left_out) > LEFT_OUT_LINES:
        more = len(left_out) - LEFT_OUT_LINES + 1
        left_out = [*left_out[: LEFT_OUT_LINES - 1], f"... and {more:,} more left out"]
    return found.packed(), left_out


def _matches(
    project: str, pattern: str, skip: Sequence[str], budget: list[int]
) -> Iterator[tuple[str, str]]:
    """(relative name, why it is left out or "") for each entry `pattern` matches: the files
    themselves, the files under a matched folder, and links and special files (left out)."""
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    literal: list[str] = []
    for part in parts:
        if _GLOB_CHARS.search(part):
            break
        literal.append(part)
    # The literal start, checked part by part: a link on the way is never walked through.
    here = project
    for index, part in enumerate(literal):
        here = os.path.join(here, part)
        name = "/".join(literal[: index + 1])
        try:
            info = os.lstat(here)
        except OSError:
            return
        if stat.S_ISLNK(info.st_mode):
            yield name, "a symbolic link, not followed"
            return
        if not stat.S_ISDIR(info.st_mode):
            if index + 1 == len(parts):
                yield name, "" if stat.S_ISREG(info.st_mode) else "not a regular file"
            return
    yield from _walk(project, "/".join(literal), parts, skip, budget)


def _walk(
    project: str, start: str, parts: list[str], skip: Sequence[str], budget: list[int]
) -> Iterator[tuple[str, str]]:
    folders = [start]
    while folders and budget[0] > 0:
        folder = folders.pop()
        try:
            entries = sorted(os.scandir(os.path.join(project, folder)), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            budget[0] -= 1
            if budget[0] <= 0:
                return
            name = f"{folder}/{entry.name}" if folder else entry.name
            if entry.name == ".git" or name in skip:
                continue
            try:
                is_link = entry.is_symlink()
                is_dir = not is_link and entry.is_dir(follow_symlinks=False)
                is_file = not is_link and entry.is_file(follow_symlinks=False)
            except OSError:
                continue
            matched = _matched(parts, name.split("/"))
            if is_dir:
                if matched or _may_match_below(parts, name.split("/")):
                    folders.append(name)
                continue
            if not matched:
                continue
            if is_link:
                yield name, "a symbolic link, not followed"
            elif not is_file:
                yield name, "not a regular file"
            else:
                yield name, ""


def _matched(parts: list[str], path: list[str]) -> bool:
    """The glob matches the path or one of its folders (a matched folder brings its files)."""
    return any(_match(parts, path[:end]) for end in range(1, len(path) + 1))


def _match(parts: list[str], path: list[str]) -> bool:
    if not parts:
        return not path
    if parts[0] == "**":
        return any(_match(parts[1:], path[start:]) for start in range(len(path) + 1))
    return bool(path) and fnmatch.fnmatchcase(path[0], parts[0]) and _match(parts[1:], path[1:])


def _may_match_below(parts: list[str], folder: list[str]) -> bool:
    """Could the glob match something inside `folder`? (prunes the walk)"""
    for index, part in enumerate(folder):
        if index >= len(parts):
            return False
        if parts[index] == "**":
            return True
        if not fnmatch.fnmatchcase(part, parts[index]):
            return False
    return True


def _read(project: str, name: str, max_bytes: int, found: _Collected) -> str:
    """Add the file to `found`; or why it is left out."""
    if not safe_name(name):
        return "an odd or long name (allowed: letters, digits and . _ - + @ = , ~)"
    if found.files >= MAX_FILES:
        return f"over the cap of {MAX_FILES:,} files"
    left = max_bytes - found.size
    try:
        descriptor = _open_inside(project, name.split("/"))
    except OSError as error:
        if error.errno in (getattr(os, "ELOOP", 40), getattr(os, "ENOTDIR", 20)):
            return "a symbolic link on its way, not followed"
        return f"could not be opened ({error.strerror or type(error).__name__})"
    with os.fdopen(descriptor, "rb") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        if info.st_size > left:
            return f"over the size cap ({_mb(info.st_size)}, {_mb(max(left, 0))} left of {_mb(max_bytes)})"
        data = stream.read(left + 1)  # never more: a file still growing stops here
    if len(data) > left:
        return f"over the size cap (it grew while read; {_mb(max_bytes)} in all)"
    found.add(name, data)
    return ""


def _open_inside(project: str, parts: list[str]) -> int:
    """A read descriptor for project/parts..., opened one part at a time with O_NOFOLLOW, so a
    link anywhere on the way fails (ELOOP or ENOTDIR) instead of being followed."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    directory = getattr(os, "O_DIRECTORY", 0)
    folder = os.open(project, os.O_RDONLY | directory)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | directory | nofollow, dir_fd=folder)
            os.close(folder)
            folder = inner
        # O_NONBLOCK: a FIFO put there since the walk does not block the open.
        flags = os.O_RDONLY | nofollow | getattr(os, "O_NONBLOCK", 0)
        return os.open(parts[-1], flags, dir_fd=folder)
    finally:
        os.close(folder)


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size:,} bytes"
