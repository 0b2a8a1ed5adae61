"""settings/modal_credentials.py: the Modal token from the inputs, the environment or the user's
Modal profile, in the order `modal` reads them; a configuration Modal would refuse is exit 2.
The run that uses a profile's token against the local Modal server is in test_modal_e2e.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modal_gpu_action.backends.modal import check_credentials, plan
from modal_gpu_action.settings import Settings, SettingsError, load_settings
from modal_gpu_action.settings.modal_credentials import modal_credentials

PROJECTS = Path(__file__).parent / "fixtures" / "modal_projects"
TWO_PROFILES = """
[default]
token_id = "ak-default"
token_secret = "as-default"

[work]
token_id = "ak-work"
token_secret = "as-work"
active = true
"""


def config(tmp_path: Path, text: str) -> dict[str, str]:
    """An environment whose Modal configuration file holds `text`."""
    path = tmp_path / "modal.toml"
    path.write_text(text)
    return {"MODAL_CONFIG_PATH": str(path)}


def found(environ: dict[str, str], token_id: str = "", token_secret: str = "") -> tuple[str, ...]:
    credentials = modal_credentials(token_id, token_secret, environ)
    return credentials.token_id, credentials.token_secret, credentials.source


def test_inputs_then_environment_then_the_active_profile(tmp_path: Path) -> None:
    environ = config(tmp_path, TWO_PROFILES)
    path = environ["MODAL_CONFIG_PATH"]
    assert found(environ) == ("ak-work", "as-work", f"profile 'work' of {path}")
    environ |= {"MODAL_TOKEN_ID": "ak-env", "MODAL_TOKEN_SECRET": "as-env"}
    assert found(environ) == (
        "ak-env",
        "as-env",
        "environment variables MODAL_TOKEN_ID and MODAL_TOKEN_SECRET",
    )
    assert found(environ, "ak-in", "as-in") == (
        "ak-in",
        "as-in",
        "inputs 'modal-token-id' and 'modal-token-secret'",
    )


def test_each_value_is_looked_up_on_its_own_as_modal_does(tmp_path: Path) -> None:
    environ = config(tmp_path, TWO_PROFILES) | {"MODAL_TOKEN_ID": "ak-env"}
    token_id, secret, source = found(environ)
    assert (token_id, secret) == ("ak-env", "as-work")
    assert source == (
        "token id from environment MODAL_TOKEN_ID, secret from profile 'work' of"
        f" {environ['MODAL_CONFIG_PATH']}"
    )


def test_an_empty_variable_counts_as_unset(tmp_path: Path) -> None:
    """A workflow passes a secret it does not have as an empty string."""
    environ = config(tmp_path, TWO_PROFILES) | {"MODAL_TOKEN_ID": "", "MODAL_TOKEN_SECRET": " "}
    assert found(environ)[:2] == ("ak-work", "as-work")


def test_modal_profile_chooses_the_profile_and_default_is_the_last_resort(
    tmp_path: Path,
) -> None:
    environ = config(tmp_path, TWO_PROFILES)
    assert found(environ | {"MODAL_PROFILE": "default"})[:2] == ("ak-default", "as-default")
    one = config(tmp_path, '[default]\ntoken_id = "ak-1"\ntoken_secret = "as-1"\n')
    assert found(one)[:2] == ("ak-1", "as-1")
    token_id, _, source = found(one | {"MODAL_PROFILE": "ci"})
    assert token_id == "" and source == f"{one['MODAL_CONFIG_PATH']} has no profile 'ci'"


def test_the_file_is_home_dot_modal_toml_unless_modal_config_path_names_another(
    tmp_path: Path,
) -> None:
    (tmp_path / ".modal.toml").write_text('[default]\ntoken_id = "ak-h"\ntoken_secret = "as-h"\n')
    assert found({"HOME": str(tmp_path)})[:2] == ("ak-h", "as-h")
    elsewhere = {"HOME": str(tmp_path), "MODAL_CONFIG_PATH": str(tmp_path / "none.toml")}
    assert found(elsewhere) == (
        "",
        "",
        f"no Modal profile: {tmp_path / 'none.toml'} (MODAL_CONFIG_PATH) does not exist",
    )
    # Inside a Modal container Modal reads no file; neither does this.
    assert found({"HOME": str(tmp_path), "MODAL_IS_REMOTE": "1"})[:2] == ("", "")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("token_id = 'ak-outside-a-table'\n", "must contain table sections"),
        ("[default\n", "it cannot be read"),
        ("[a]\nactive = true\n[b]\nactive = true\n", "more than one Modal profile is active"),
        ("[a]\ntoken_id = 'x'\n[b]\ntoken_id = 'y'\n", "no Modal profile is active"),
    ],
)
def test_a_configuration_modal_would_refuse_is_a_settings_error(
    tmp_path: Path, text: str, says: str
) -> None:
    """Modal refuses these when it is imported or connects; here they stop the run first, even
    when the token comes from the environment."""
    environ = config(tmp_path, text) | {"MODAL_TOKEN_ID": "ak", "MODAL_TOKEN_SECRET": "as"}
    with pytest.raises(SettingsError, match="invalid Modal configuration") as raised:
        modal_credentials("", "", environ)
    assert says in str(raised.value)


def test_a_token_that_is_no_string_is_refused_where_it_would_be_used(tmp_path: Path) -> None:
    environ = config(tmp_path, "[default]\ntoken_id = 5\ntoken_secret = 'x'\n")
    with pytest.raises(SettingsError, match="`token_id` of profile 'default' is not a string"):
        modal_credentials("", "", environ)
    assert found(environ | {"MODAL_TOKEN_ID": "ak"})[:2] == ("ak", "x")


def settings_for(tmp_path: Path, environ: dict[str, str], backend: str = "modal") -> Settings:
    folder = tmp_path / "project"
    if not folder.exists():
        shutil.copytree(PROJECTS / "pyproject_project", folder)
    return load_settings({"backend": backend, "working-directory": str(folder)}, environ,
                         workspace=folder)  # fmt: skip


def test_a_local_login_is_used_and_plan_says_where_the_token_comes_from(tmp_path: Path) -> None:
    environ = config(tmp_path, TWO_PROFILES)
    settings = settings_for(tmp_path, environ)
    check_credentials(settings, environ={})
    assert plan(settings)["credentials"] == (
        f"present (profile 'work' of {environ['MODAL_CONFIG_PATH']})"
    )
    assert "as-work" in settings.secret_values()  # so it is masked on GitHub


def test_no_token_anywhere_names_every_place_looked(tmp_path: Path) -> None:
    environ = {"MODAL_CONFIG_PATH": str(tmp_path / "absent.toml")}
    settings = settings_for(tmp_path, environ)
    with pytest.raises(SettingsError) as raised:
        check_credentials(settings, environ={})
    message = str(raised.value)
    assert message.startswith(
        "missing Modal credentials: MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are empty (input"
        " 'modal-token-id' and 'modal-token-secret' or the environment variables; no Modal"
        f" profile: {tmp_path / 'absent.toml'} (MODAL_CONFIG_PATH) does not exist)."
    )
    assert "`modal token new` stores a token in ~/.modal.toml" in message
    assert plan(settings)["credentials"].startswith("missing (a run would stop")


def test_the_local_backend_reads_no_profile(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, config(tmp_path, "[broken\n"), backend="local")
    assert settings.modal_token_id == ""
