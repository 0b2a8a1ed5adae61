"""The error every bad input raises, and the checks that several inputs share: choices, booleans,
whole numbers, lists, and paths that must stay inside the workspace and outside .git.

A message is one line that names the input, what was given and what is accepted, as uv and ruff
write theirs: `invalid value 'X100' for input 'gpu': expected one of T4, L4, ...`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from modal_gpu_action.github_actions.output_files import (
    OutputPathError,
    allowed_roots,
    check_output_path,
)


class SettingsError(ValueError):
    """An input (or GitHub's event) with a value we cannot accept: exit code 2."""


_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


def invalid(name: str, value: str, expected: str) -> SettingsError:
    return SettingsError(f"invalid value {value!r} for input '{name}': expected {expected}")


def choice(raw: Mapping[str, str], name: str, accepted: tuple[str, ...]) -> str:
    value = raw[name].strip().lower()
    if value not in accepted:
        raise invalid(name, raw[name], "one of " + ", ".join(accepted))
    return value


def boolean(raw: Mapping[str, str], name: str) -> bool:
    value = raw[name].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise invalid(name, raw[name], "true or false")


def integer(raw: Mapping[str, str], name: str, low: int, high: int | None) -> int:
    text = raw[name].strip()
    bounds = f"a whole number from {low}" + (f" to {high}" if high is not None else " up")
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        raise invalid(name, raw[name], bounds)
    return int(text)


def items(text: str) -> tuple[str, ...]:
    """A comma- or newline-separated list."""
    return tuple(item.strip() for item in re.split(r"[,\n]", text) if item.strip())


def shown(path: str | Path) -> str:
    """A path for a one-line message: quoted, with control characters (a newline in a folder name
    a pull request chose) escaped."""
    return repr(str(path))


def inside(text: str, name: str, base: Path, where: str) -> Path:
    """`base / text` resolved through every link, which must stay inside `base` and outside any
    .git folder (the checkout's credentials are in .git/config)."""
    path = (base / text).resolve()
    if not path.is_relative_to(base):
        raise SettingsError(
            f"invalid value {text!r} for input '{name}': expected a path inside {where}"
            f" {shown(base)} (it resolves to {shown(path)}, through links if any)"
        )
    if ".git" in path.relative_to(base).parts:
        raise SettingsError(
            f"invalid value {text!r} for input '{name}': expected a path outside .git"
            f" (it resolves to {shown(path)})"
        )
    return path


def existing_file(text: str, name: str, base: Path, where: str) -> Path:
    path = inside(text, name, base, where)
    if not path.is_file():
        raise SettingsError(
            f"invalid value {text!r} for input '{name}': {shown(path)} is not a file"
        )
    return path


def optional_file(raw: Mapping[str, str], name: str, base: Path, where: str) -> Path | None:
    text = raw[name].strip()
    return existing_file(text, name, base, where) if text else None


def output_path(
    text: str | Path, input_name: str, workspace: Path, environ: Mapping[str, str]
) -> Path:
    """Where to write an output: inside the workspace in GitHub Actions, never through a link."""
    try:
        return check_output_path(
            text,
            input_name=input_name,
            workspace=workspace,
            roots=allowed_roots(environ, workspace),
        )
    except OutputPathError as error:
        raise SettingsError(str(error)) from None
