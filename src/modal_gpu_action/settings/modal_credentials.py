"""The Modal token a run uses: from the inputs, the environment, or the user's Modal profile, in
the order the `modal` command itself reads them (modal/config.py, clients 1.5 and 1.6).

    token id:      input 'modal-token-id', else MODAL_TOKEN_ID, else `token_id` of the profile
    token secret:  input 'modal-token-secret', else MODAL_TOKEN_SECRET, else `token_secret`
    the file:      MODAL_CONFIG_PATH, else ~/.modal.toml (what `modal token new` writes)
    the profile:   MODAL_PROFILE, else the one marked `active = true`, else `default`

Each value is looked up on its own, as Modal does. Two differences, both on purpose: an empty
variable counts as unset (a workflow passes a secret it does not have as an empty string; Modal
would take the empty value and be refused), and the inputs come first (Modal has none).

The file is read here, without importing `modal`, so that a run without credentials stops in a
second (exit code 2, nothing sent anywhere). Modal reads the same file when it is imported and
when it connects, and refuses one that is not TOML, has values outside a profile's table, marks
more than one profile active, or holds several with none active and MODAL_PROFILE unset:
those are refused here first, with Modal's words, whichever source the token comes from. With
MODAL_IS_REMOTE=1 (inside a Modal container) Modal ignores the file, and so does this.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modal_gpu_action.settings.values import SettingsError

CONFIG_NAME = ".modal.toml"


@dataclass(frozen=True, slots=True)
class ModalCredentials:
    """A token id and secret (either may be empty) and, for people, where they came from or,
    when the profile gave nothing, why."""

    token_id: str = field(default="", repr=False)
    token_secret: str = field(default="", repr=False)
    source: str = ""


def modal_credentials(
    token_id_input: str,
    token_secret_input: str,
    environ: Mapping[str, str],
    *,
    profile: bool = True,
) -> ModalCredentials:
    """The token for a Modal run; see the module's docstring. Raises SettingsError for a
    configuration file that Modal itself would refuse. `profile=False`: the inputs and the
    environment only (the local backend, which only keeps the token from the tests)."""
    values: dict[str, str] = {}
    sources: dict[str, str] = {}  # "input", "environment" or the profile, for each value
    for key, given, variable in (
        ("token_id", token_id_input, "MODAL_TOKEN_ID"),
        ("token_secret", token_secret_input, "MODAL_TOKEN_SECRET"),
    ):
        if given.strip():
            values[key], sources[key] = given.strip(), "input"
        elif environ.get(variable, "").strip():
            values[key], sources[key] = environ[variable].strip(), "environment"
    path = config_path(environ) if profile else None
    if not profile:
        note = ""
    elif path is not None:
        note = _from_profile(path, environ, values, sources)
    elif environ.get("MODAL_IS_REMOTE") == "1":
        note = "no Modal profile is read where MODAL_IS_REMOTE=1"
    else:
        note = f"no Modal profile: {_wanted(environ)} does not exist"
    source = _describe(sources) if len(values) == 2 else note
    return ModalCredentials(values.get("token_id", ""), values.get("token_secret", ""), source)


def _from_profile(
    path: Path, environ: Mapping[str, str], values: dict[str, str], sources: dict[str, str]
) -> str:
    """Fill in what the inputs and the environment left empty from the profile; why it gave
    nothing, when it did not."""
    config = _read_config(path)
    name = active_profile(config, environ, path)
    table = config.get(name)
    if table is None:
        return f"{_shown(path)} has no profile '{name}'"
    for key in ("token_id", "token_secret"):
        value = table.get(key)
        if key in values or value is None:
            continue
        if not isinstance(value, str):
            raise SettingsError(
                f"invalid Modal configuration {_shown(path)}: `{key}` of profile '{name}' is"
                " not a string"
            )
        if value.strip():
            values[key], sources[key] = value.strip(), f"profile '{name}' of {_shown(path)}"
    return "" if len(values) == 2 else f"profile '{name}' of {_shown(path)} has no token"


_NAMED = {  # what each place is called: for the id, for the secret, for both
    "input": ("input 'modal-token-id'", "input 'modal-token-secret'",
              "inputs 'modal-token-id' and 'modal-token-secret'"),
    "environment": ("environment MODAL_TOKEN_ID", "environment MODAL_TOKEN_SECRET",
                    "environment variables MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"),
}  # fmt: skip


def _describe(sources: Mapping[str, str]) -> str:
    id_from, secret_from = sources["token_id"], sources["token_secret"]
    if id_from == secret_from:
        return _NAMED[id_from][2] if id_from in _NAMED else id_from
    id_text = _NAMED[id_from][0] if id_from in _NAMED else id_from
    secret_text = _NAMED[secret_from][1] if secret_from in _NAMED else secret_from
    return f"token id from {id_text}, secret from {secret_text}"


def config_path(environ: Mapping[str, str]) -> Path | None:
    """The configuration file Modal reads, when there is one to read."""
    if environ.get("MODAL_IS_REMOTE") == "1":
        return None
    if environ.get("MODAL_CONFIG_PATH"):
        path = Path(environ["MODAL_CONFIG_PATH"])  # as given: Modal does not expand it
    elif environ.get("HOME"):
        path = Path(environ["HOME"]) / CONFIG_NAME
    else:
        return None
    return path if path.exists() else None


def _wanted(environ: Mapping[str, str]) -> str:
    if environ.get("MODAL_CONFIG_PATH"):
        return f"{environ['MODAL_CONFIG_PATH']} (MODAL_CONFIG_PATH)"
    return _shown(Path(environ["HOME"]) / CONFIG_NAME) if environ.get("HOME") else "~/.modal.toml"


def active_profile(config: Mapping[str, Any], environ: Mapping[str, str], path: Path) -> str:
    """MODAL_PROFILE, else the profile marked active, else `default`; SettingsError where Modal's
    client refuses to connect (modal/config.py, `_check_config`)."""
    active = [name for name, table in config.items() if table.get("active", False) is True]
    chosen = environ.get("MODAL_PROFILE") or (active[0] if active else "default")
    if len(active) > 1:
        raise SettingsError(
            f"invalid Modal configuration {_shown(path)}: more than one Modal profile is active"
            f" ({', '.join(active)}); fix it with `modal profile activate NAME` or by editing"
            " the file"
        )
    if len(config) > 1 and not active and chosen == "default":
        raise SettingsError(
            f"invalid Modal configuration {_shown(path)}: no Modal profile is active; fix it"
            " with `modal profile activate NAME`, by editing the file or by setting MODAL_PROFILE"
        )
    return chosen


def _read_config(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            config = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SettingsError(
            f"invalid Modal configuration {_shown(path)}: it cannot be read ({error}); Modal"
            " refuses it too (MODAL_CONFIG_PATH names another file)"
        ) from None
    if not all(isinstance(table, dict) for table in config.values()):
        raise SettingsError(
            f"invalid Modal configuration {_shown(path)}: TOML file must contain table sections"
            " for each profile (as Modal says)"
        )
    return config


def _shown(path: Path) -> str:
    home = Path.home()
    try:
        return "~/" + path.relative_to(home).as_posix()
    except ValueError:
        return str(path)
