"""The files the tests left (`artifacts`), written from each shard's RunResult into the artifacts
folder (`artifacts-path`) for the next steps: `coverage.xml` to Codecov, `htmlcov/` as an upload.

    saved = save(shards, settings)  # -> SavedArtifacts (None when no `artifacts` input)

Layout: one shard's files go straight into the folder at their path in the project
(`gpu-test-artifacts/coverage.xml`); with several shards, each shard's go into `shard-N/`
(1-based, `gpu-test-artifacts/shard-2/coverage.xml`), so two shards' coverage files never
overwrite each other. Both backends come here: the local one too, although its tests wrote into
the project itself, so `artifacts-path` holds the same files whichever backend ran.

What a shard answered was made by hostile tests (the container side, container/artifacts.py, is
in their reach), so every rule is checked again here: the answer's size before it is decoded,
the cap on bytes and files, names (relative, no `..`, safe characters only: they are listed in
the summary and the log), regular files only; each file is written through
github_actions/output_files.py (under the folder, never through a link, atomically).
"""

from __future__ import annotations

import base64
import binascii
import io
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modal_gpu_action.container.artifacts import (
    LEFT_OUT_LINES,
    MAX_FILES,
    MAX_NAME,
    safe_name,
    shown,
)
from modal_gpu_action.container.protocol import RunResult
from modal_gpu_action.github_actions.output_files import write_output
from modal_gpu_action.settings import Settings

# Room in an answer besides the files' bytes: zip headers (two per file with its name), deflate's
# worst case, base64's 4/3.
_PER_FILE_OVERHEAD = 2 * (64 + MAX_NAME)
_LISTED = 10  # left-out lines in the facts row


@dataclass(frozen=True, slots=True)
class SavedArtifacts:
    """What was written into `folder`, and each file left out (one line each, names escaped)."""

    folder: Path
    files: int
    size: int
    left_out: tuple[str, ...] = ()

    def describe(self, workspace: Path) -> str:
        """`3 files (1.2 MB) in gpu-test-artifacts/`, or that none came back."""
        where = self.folder
        if where.is_relative_to(workspace):
            where = where.relative_to(workspace)
        if not self.files:
            return f"no file came back (nothing written to {where.as_posix()}/)"
        return f"{self.files:,} file{'' if self.files == 1 else 's'} ({_size(self.size)}) in {where.as_posix()}/"

    def describe_left_out(self) -> str:
        """`2: htmlcov/x (a symbolic link ...); big.bin (over the size cap ...)` or ""."""
        if not self.left_out:
            return ""
        listed = "; ".join(self.left_out[:_LISTED])
        more = len(self.left_out) - _LISTED
        return f"{len(self.left_out):,}: {listed}" + (f"; and {more:,} more" if more > 0 else "")


def shard_budget(max_bytes: int, shard_count: int) -> int:
    """Each shard's share of the run's cap: the shards split it evenly (the host holds every
    shard's answer at once)."""
    return max_bytes // max(1, shard_count)


def save(shards: Sequence[RunResult], settings: Settings) -> SavedArtifacts | None:
    """Write every shard's files into `settings.artifacts_path`; None when none were asked for."""
    if not settings.artifacts:
        return None
    folder = settings.artifacts_path
    files = size = 0
    left_out: list[str] = []
    for shard in shards:
        several = shard.shard_count > 1
        where = f"shard-{shard.shard_index + 1}" if several else ""
        label = f"shard {shard.shard_index + 1}/{shard.shard_count}: " if several else ""
        # The container's own lines: it lists LEFT_OUT_LINES at most, a forged answer more.
        lines: list[str] = list(shard.artifacts_left_out[:LEFT_OUT_LINES])
        budget = shard_budget(settings.artifacts_max_bytes, shard.shard_count)
        written, wrote_bytes = _unpack(shard.artifacts, folder / where, budget, settings, lines)
        files, size = files + written, size + wrote_bytes
        left_out += [label + _one_line(line) for line in lines]
    return SavedArtifacts(folder, files, size, tuple(left_out))


def _unpack(
    data: str, folder: Path, budget: int, settings: Settings, left_out: list[str]
) -> tuple[int, int]:
    """Write the shard's zip into `folder`; (files, bytes) written. What is not, in `left_out`."""
    if not data:
        return 0, 0
    limit = (budget + MAX_FILES * _PER_FILE_OVERHEAD) * 4 // 3 + 4096
    if len(data) > limit:
        left_out.append(f"every file: the answer ({len(data):,} characters) is over the cap")
        return 0, 0
    try:
        archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(data, validate=True)))
    except (binascii.Error, ValueError, zipfile.BadZipFile) as error:
        left_out.append(f"every file: the answer's archive is damaged ({error})")
        return 0, 0
    # Links are refused from the workspace down, or from the folder's own parent when it lies
    # outside (RUNNER_TEMP, which local tests can reach too).
    checked_from = settings.workspace
    if not folder.is_relative_to(checked_from):
        checked_from = settings.artifacts_path.parent
    files = size = 0
    with archive:
        for number, info in enumerate(archive.infolist()):
            name = info.filename
            if number >= MAX_FILES:
                left_out.append(
                    f"{len(archive.infolist()) - number:,} files: over the cap of {MAX_FILES:,} files"
                )
                break
            why = _refused(info, budget - size)
            if not why:
                try:
                    with archive.open(info) as member:
                        content = member.read(budget - size + 1)
                except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as error:
                    content, why = b"", f"damaged in the answer ({type(error).__name__})"
                if not why and len(content) > budget - size:
                    why = "over the size cap"
            if not why:
                try:
                    write_output(folder / name, content, workspace=checked_from)
                except OSError as error:
                    why = f"not written: {error}"
            if why:
                left_out.append(f"{shown(name)}: {why}")
                continue
            files, size = files + 1, size + len(content)
    return files, size


def _refused(info: zipfile.ZipInfo, left: int) -> str:
    """Why a member of a shard's zip is not written ("" when it may be)."""
    if not safe_name(info.filename):
        return "refused: its name is not a plain relative path of safe characters"
    if info.is_dir():
        return "refused: a folder entry"
    kind = (info.external_attr >> 16) & 0o170000
    if kind not in (0, 0o100000):  # 0: no Unix mode given; else it must be a regular file
        return "refused: not a regular file"
    if info.file_size > left:
        return "over the size cap"
    return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def _size(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB"
    if size >= 1_000:
        return f"{size / 1_000:.1f} kB"
    return f"{size} bytes"
