"""Files the action writes (the merged JUnit, `--summary-file`, `--comment-file`): never through a
link or into a folder the checkout provides.

The checkout is the pull request's: it can commit `gpu-test-results.xml -> .../site-packages/x.pth`
or make `reports/` a link to anywhere, and a write that followed either would turn PR text into
code that later steps run. So an output path

- lies inside the workspace (in GitHub Actions also `RUNNER_TEMP`, which the checkout cannot
  reach); outside GitHub Actions any absolute path is allowed, the current directory standing in
  for the workspace;
- passes through no symbolic link inside the workspace, and is not itself a link or a folder;
- is written to a new temporary file beside it, then renamed over it: a link put there while the
  tests ran is replaced, never followed.

`check_output_path` runs with the other input checks, before any test runs (exit 2);
`write_output` (text) and `stream_output` (bytes written as they are made: the merged JUnit of
a large suite) check again when the tests are over, since the tests ran in between.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from modal_gpu_action.github_actions.workflow import one_line


class OutputPathError(ValueError):
    """An output path that would escape the workspace or follow a link (a bad input: exit 2)."""


def allowed_roots(environ: Mapping[str, str], workspace: Path) -> list[Path] | None:
    """Where outputs may go: the workspace (and RUNNER_TEMP) in GitHub Actions; None (anywhere)
    on a command line outside it."""
    if environ.get("GITHUB_ACTIONS") != "true":
        return None
    roots = [workspace]
    if environ.get("RUNNER_TEMP"):
        roots.append(Path(environ["RUNNER_TEMP"]))
    return [Path(os.path.abspath(root)) for root in roots]


def check_output_path(
    text: str | Path, *, input_name: str, workspace: Path, roots: Sequence[Path] | None
) -> Path:
    """The absolute path to write `input_name` to; OutputPathError (exit 2) when it is unsafe."""
    path, where = _inside_roots(text, input_name, workspace, roots)
    problem = _unsafe(path, Path(os.path.abspath(workspace))) or _unwritable(path)
    if problem:
        raise OutputPathError(f"{where}: {problem}")
    return path


def check_output_folder(
    text: str | Path, *, input_name: str, workspace: Path, roots: Sequence[Path] | None
) -> Path:
    """The absolute folder to write `input_name`'s files into (write_output each), under the
    same rules as a file; OutputPathError (exit 2) when it is unsafe."""
    path, where = _inside_roots(text, input_name, workspace, roots)
    problem = None
    if path.is_symlink():
        problem = "it is a symbolic link; remove it or choose another path"
    elif path.exists() and not path.is_dir():
        problem = "it is a file, not a folder"
    problem = problem or _folders_unsafe([path, *path.parents], Path(os.path.abspath(workspace)))
    problem = problem or _unwritable(path / "x")
    if problem:
        raise OutputPathError(f"{where}: {problem}")
    return path


def _inside_roots(
    text: str | Path, input_name: str, workspace: Path, roots: Sequence[Path] | None
) -> tuple[Path, str]:
    """The absolute path an output input names, and the start of its error message;
    OutputPathError when it lies outside `roots` (None: anywhere)."""
    given = str(text)
    # Lexical: `..` cannot climb out through a link, since no link is followed below.
    path = Path(os.path.abspath(workspace / given))
    where = f"invalid value {one_line(given)!r} for input '{input_name}'"
    if roots is not None and not any(path.is_relative_to(root) for root in roots):
        accepted = " or ".join(str(root) for root in roots)
        raise OutputPathError(f"{where}: expected a path inside {one_line(accepted)}")
    return path, where


def write_output(path: Path, text: str | bytes, *, workspace: Path) -> None:
    """Write `text` (or bytes) to `path` atomically, refusing links; raises OSError (with the
    reason) when it cannot, e.g. a full disk or a link the tests put on the way."""
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    stream_output(path, lambda out: out.write(data), workspace=workspace)


def stream_output(path: Path, write: Callable[[BinaryIO], object], *, workspace: Path) -> None:
    """`write_output`, the content written by `write(binary_file)` as it is made, so that it
    never has to stand in memory whole."""
    # A link the tests put at the path itself is harmless: the rename below replaces it.
    problem = _unsafe(path, Path(os.path.abspath(workspace)), link_at_path_ok=True)
    if problem:
        raise OSError(f"{one_line(str(path))}: {problem}")
    _make_folders(path.parent)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as out:
            write(out)
        os.replace(temporary, path)  # replaces a link itself, never its target
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _unsafe(path: Path, workspace: Path, *, link_at_path_ok: bool = False) -> str | None:
    """Why writing `path` could follow a link or clobber a folder; None when it cannot."""
    if path.is_symlink():
        if not link_at_path_ok:
            return "it is a symbolic link; remove it or choose another path"
    elif path.exists() and not path.is_file():
        return "it is a folder or a special file, not a regular file"
    return _folders_unsafe(path.parents, workspace)


def _folders_unsafe(folders: Sequence[Path], workspace: Path) -> str | None:
    """Why one of `folders` (a path's parents, nearest first) is a link or not a folder."""
    # Every existing folder on the way, from the workspace down, must be a real folder.
    start = workspace if folders and folders[0].is_relative_to(workspace) else None
    for parent in reversed(folders):
        if start is None or not parent.is_relative_to(start) or parent == start:
            continue
        if parent.is_symlink():
            return f"its folder {one_line(str(parent))} is a symbolic link"
        if parent.exists() and not parent.is_dir():
            return f"{one_line(str(parent))} is not a folder"
    return None


def _unwritable(path: Path) -> str | None:
    """Why `path` cannot be created (missing folders are created, in a folder we may write)."""
    existing = next(p for p in path.parents if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return f"{one_line(str(existing))} is not a folder this user can write to"
    return None


def _make_folders(folder: Path) -> None:
    """Create the missing folders (never through a link: _unsafe checked the existing ones)."""
    folder.mkdir(parents=True, exist_ok=True)
