from pathlib import Path

import pytest

from modal_gpu_action.settings import INPUTS, SettingsError, env_name, load_settings


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("def test_a(): pass\n")
    (tmp_path / "requirements.txt").write_text("numpy\n")
    return tmp_path


def load(project: Path, environ: dict[str, str] | None = None, **flags: str):
    return load_settings(
        {name.replace("_", "-"): value for name, value in flags.items()},
        environ or {},
        workspace=project,
    )


def test_defaults_are_usable_as_they_are(project: Path) -> None:
    settings = load(project)
    assert settings.backend == "modal"
    assert str(settings.gpu) == "T4"
    assert settings.test_path == "tests"
    assert settings.timeout_seconds == 30 * 60
    assert settings.shards == 1
    assert settings.comment == "sticky"
    assert settings.junit_xml == project / "gpu-test-results.xml"


def test_inputs_come_from_github_variables_in_either_spelling(project: Path) -> None:
    environ = {
        "INPUT_GPU": "h100:2",
        "INPUT_PYTEST-ARGS": "-m 'gpu and not slow' -x",
        env_name("timeout-minutes"): "1.5",
        "INPUT_ENV": "TOKEN=a=b\n\nMODE=fast",
        "INPUT_MODAL-SECRETS": "hf, wandb\nother",
    }
    settings = load(project, environ)
    assert str(settings.gpu) == "H100:2"
    assert settings.pytest_args == ("-m", "gpu and not slow", "-x")
    assert settings.timeout_seconds == 90
    assert dict(settings.env) == {"TOKEN": "a=b", "MODE": "fast"}
    assert settings.modal_secrets == ("hf", "wandb", "other")


def test_a_flag_wins_over_the_variable(project: Path) -> None:
    assert str(load(project, {"INPUT_GPU": "L4"}, gpu="A10G").gpu) == "A10G"


def test_secrets_never_show_in_the_settings_repr(project: Path) -> None:
    settings = load(project, {"MODAL_TOKEN_SECRET": "as-very-secret"}, env="KEY=hunter2")
    assert "hunter2" not in repr(settings)
    assert "as-very-secret" not in repr(settings)
    assert set(settings.secret_values()) == {"hunter2", "as-very-secret"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"gpu": "X100"}, "invalid value 'X100' for input 'gpu': unknown GPU type"),
        ({"gpu": "H100:0"}, "for input 'gpu': count '0'"),
        (
            {"shards": "0"},
            "invalid value '0' for input 'shards': expected a whole number from 1 to 64",
        ),
        ({"shards": "auto"}, "`auto` needs backend 'local'"),
        (
            {"pytest_args": "-k 'unbalanced"},
            "for input 'pytest-args': expected arguments a shell could split",
        ),
        ({"pytest_args": "--junitxml=x.xml"}, "use 'junit-xml'"),
        (
            {"test_path": "../outside"},
            "for input 'test-path': it must be inside the working directory",
        ),
        ({"test_path": "missing_tests"}, "for input 'test-path':"),
        (
            {"timeout_minutes": "-5"},
            "for input 'timeout-minutes': expected a number of minutes above 0",
        ),
        ({"timeout_minutes": "nan"}, "for input 'timeout-minutes'"),
        ({"backend": "aws"}, "for input 'backend': expected one of modal, local"),
        ({"comment": "sometimes"}, "expected one of sticky, new, off"),
        ({"fail_on_empty": "maybe"}, "for input 'fail-on-empty': expected true or false"),
        ({"python_version": "2.7"}, "for input 'python-version'"),
        ({"working_directory": "nowhere"}, "for input 'working-directory'"),
        ({"requirements": "missing.txt"}, "for input 'requirements'"),
        ({"pr_number": "abc"}, "for input 'pr-number'"),
    ],
)
def test_each_bad_input_is_one_line_naming_it(
    project: Path, flags: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load(project, **flags)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_bad_env_line_is_reported_without_its_value(project: Path) -> None:
    with pytest.raises(SettingsError) as raised:
        load(project, env="GOOD=1\nnot a pair secret-value")
    assert "line 2 of input 'env'" in str(raised.value)
    assert "secret-value" not in str(raised.value)


def test_test_path_may_name_a_node(project: Path) -> None:
    assert load(project, test_path="tests/test_a.py::test_a").test_path == "tests/test_a.py::test_a"


def test_local_backend_accepts_auto_shards(project: Path) -> None:
    assert load(project, backend="local", shards="auto").shards is None


def test_every_input_has_a_description_and_kebab_case_name() -> None:
    for spec in INPUTS:
        assert spec.name == spec.name.lower() and "_" not in spec.name
        assert spec.description.endswith(".")
