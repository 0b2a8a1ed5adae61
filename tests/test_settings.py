import os
import subprocess
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
    assert settings.publishing.comment == "sticky"
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


# -- every path input stays inside the workspace and the project ---------------------------------

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace with a project, a .git folder holding a checkout's token, and beside the
    workspace a folder of the runner's that no input may reach."""
    outside = tmp_path / "outside"
    (outside / "etc").mkdir(parents=True)
    for name in ("durations.xml", "Dockerfile", "requirements.txt"):
        (outside / name).write_text("outside\n")
    root = tmp_path / "workspace"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "config").write_text("extraheader = AUTHORIZATION: basic token\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_a.py").write_text("def test_a(): pass\n")
    (root / "durations.xml").write_text("<testsuites/>\n")
    (root / "to_etc").symlink_to(outside / "etc")
    (root / "durations_link.xml").symlink_to(outside / "durations.xml")
    (root / "Dockerfile.link").symlink_to(outside / "Dockerfile")
    (root / "requirements_link.txt").symlink_to("../outside/requirements.txt")
    (root / "config_link").symlink_to(".git/config")
    return root


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"working_directory": "../.."}, "'../..' for input 'working-directory': expected a path inside the workspace"),
        ({"working_directory": "/etc"}, "'/etc' for input 'working-directory': expected a path inside the workspace"),
        ({"working_directory": "to_etc"}, "'to_etc' for input 'working-directory': expected a path inside the workspace"),
        ({"working_directory": ".git"}, "'.git' for input 'working-directory': expected a path outside .git"),
        ({"shard_durations": "../outside/durations.xml"}, "for input 'shard-durations': expected a path inside the workspace"),
        ({"shard_durations": "durations_link.xml"}, "for input 'shard-durations': expected a path inside the workspace"),
        ({"shard_durations": ".git/config"}, "for input 'shard-durations': expected a path outside .git"),
        ({"shard_durations": "config_link"}, "for input 'shard-durations': expected a path outside .git"),
        ({"dockerfile": "../outside/Dockerfile"}, "for input 'dockerfile': expected a path inside the working directory"),
        ({"dockerfile": "Dockerfile.link"}, "for input 'dockerfile': expected a path inside the working directory"),
        ({"requirements": "requirements_link.txt"}, "for input 'requirements': expected a path inside the working directory"),
        ({"requirements": "tests/test_a.py\n/etc/passwd"}, "'/etc/passwd' for input 'requirements': expected a path inside"),
        ({"requirements": ".git/config"}, "for input 'requirements': expected a path outside .git"),
    ],
)  # fmt: skip
def test_path_inputs_that_leave_the_workspace_or_enter_git_are_refused(
    workspace: Path, flags: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load(workspace, **flags)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_path_inputs_inside_the_workspace_are_resolved(workspace: Path) -> None:
    (workspace / "inner").symlink_to("durations.xml")
    settings = load(workspace, shard_durations="inner")
    assert settings.shard_durations == workspace / "durations.xml"
    assert settings.working_directory == workspace


def test_the_workspace_is_github_workspace_else_the_current_folder(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = {"GITHUB_WORKSPACE": str(workspace)}
    with pytest.raises(SettingsError, match="expected a path inside the workspace"):
        load_settings({"working-directory": ".."}, environ)
    monkeypatch.chdir(workspace / "tests")
    assert load_settings({"test-path": "."}, {}).working_directory == workspace / "tests"
    with pytest.raises(SettingsError, match="expected a path inside the workspace"):
        load_settings({"working-directory": ".."}, {})


def test_a_message_naming_a_path_from_the_pull_request_stays_on_one_line(workspace: Path) -> None:
    odd = workspace / "odd\n::error::forged"
    odd.mkdir()
    (workspace / "plain").symlink_to(odd / "missing.xml")
    with pytest.raises(SettingsError) as raised:
        load(workspace, shard_durations="plain")
    assert "\n" not in str(raised.value)
    assert "odd\\n::error::forged" in str(raised.value)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--working-directory", "../.."], "'working-directory'"),
        (["--shard-durations", "durations_link.xml"], "'shard-durations'"),
        (["--dockerfile", "Dockerfile.link"], "'dockerfile'"),
        (["--requirements", "requirements_link.txt"], "'requirements'"),
    ],
)
def test_the_command_refuses_them_with_exit_code_2_before_anything_runs(
    workspace: Path, args: list[str], named: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_", "MODAL_"))}
    completed = subprocess.run(
        ["uv", "run", "--project", str(REPO), "--frozen", "--quiet", "modal-gpu-action", "plan",
         "--backend", "modal", *args],
        cwd=workspace, env={**env, "GITHUB_WORKSPACE": str(workspace)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert f"for input {named}: expected a path inside" in completed.stderr
    assert completed.stdout == ""


# -- Modal-only inputs, checked before any network call ------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "python:3.12-slim",
        "nvcr.io/nvidia/pytorch:25.01-py3",
        "ghcr.io/org/team/image@sha256:" + "a" * 64,
        "localhost:5000/cuda:12.4.1-devel-ubuntu22.04",
        "registry.example.com:443/my_org/my-image__x:tag.1",
        "[::1]:5000/image:latest",
    ],
)
def test_image_references_docker_accepts_are_accepted(project: Path, image: str) -> None:
    assert load(project, image=image).image.registry_image == image


@pytest.mark.parametrize(
    "image",
    [
        "nvcr.io/NVIDIA/pytorch:25.01",  # uppercase in the name
        "pytorch/pytorch:2.4 cuda",
        "pytorch:",
        "python:3.12:slim",
        "-python",
        "image@sha256:short",
        "https://nvcr.io/nvidia/pytorch",
        "org//image",
    ],
)
def test_a_malformed_image_reference_is_refused(project: Path, image: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load(project, image=image)
    assert str(raised.value).startswith(f"invalid value {image!r} for input 'image': expected an")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("numpy>=>2", "expected a requirement a line (PEP 508)"),
        ("torch==2.4 +cu121", "expected a requirement a line (PEP 508)"),
        ("--index-url https://download.pytorch.org/whl/cu121", "not options"),
        ("./wheels/mylib.whl", "expected a requirement a line (PEP 508)"),
        ("mylib @ file:///home/me/mylib", "not a file: the image is built on Modal"),
    ],
)
def test_an_extra_package_that_is_not_a_requirement_is_refused(
    project: Path, line: str, reason: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load(project, extra_packages=f"pytest-xdist\n{line}")
    message = str(raised.value)
    assert message.startswith(f"invalid value {line!r} for input 'extra-packages'")
    assert reason in message and "\n" not in message


def test_requirements_pep_508_allows_are_accepted_as_extra_packages(project: Path) -> None:
    lines = [
        "pytest-xdist",
        "numpy>=2,<3",
        'torch==2.4.1; sys_platform == "linux"',
        "jax[cuda12]>=0.4",
        "mylib @ https://example.com/mylib-1.0-py3-none-any.whl",
    ]
    assert load(project, extra_packages="\n".join(lines)).image.extra_packages == tuple(lines)


@pytest.mark.parametrize(
    "name", ["team/hf", "has space", "x" * 65, "ap-" + "a" * 22, "émoji", "semi;colon"]
)
def test_a_modal_secret_name_modal_would_refuse_is_refused(project: Path, name: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load(project, modal_secrets=f"fine-name, {name}")
    assert str(raised.value).startswith(f"invalid value {name!r} for input 'modal-secrets'")


def test_modal_secret_names_are_checked_only_for_the_modal_backend(project: Path) -> None:
    assert load(project, modal_secrets="hf_token, team.wandb-1").modal_secrets == (
        "hf_token",
        "team.wandb-1",
    )
    assert load(project, backend="local", modal_secrets="not/checked").modal_secrets == (
        "not/checked",
    )


@pytest.mark.parametrize(
    ("declared", "where"),
    [
        ("[project]\nname = 'p'\nrequires-python = '>=3.13'\n", "pyproject.toml"),
        ("[metadata]\nname = p\n[options]\npython_requires = >=3.13\n", "setup.cfg"),
    ],
)
def test_a_python_version_outside_requires_python_is_refused(
    project: Path, declared: str, where: str
) -> None:
    (project / where).write_text(declared)
    with pytest.raises(SettingsError) as raised:
        load(project, python_version="3.12")
    assert str(raised.value) == (
        "invalid value '3.12' for input 'python-version': expected a version the project's"
        f" requires-python '>=3.13' ({where}) allows: 3.13, 3.14"
    )
    assert load(project, python_version="3.13").image.python_version == "3.13"
    # An image that brings its own Python does not use python-version: nothing to refuse.
    assert load(
        project, python_version="3.12", image="pytorch/pytorch:2.4.1-cuda12.1-cudnn9-runtime"
    )
    assert load(project, python_version="3.12", backend="local")


def test_requires_python_with_patch_versions_allows_the_minor_version(project: Path) -> None:
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\nrequires-python = '~=3.11.4'\n")
    assert load(project, python_version="3.11").image.python_version == "3.11"
    with pytest.raises(SettingsError, match=r"allows: 3\.11$"):
        load(project, python_version="3.12")


def test_test_dependencies_is_auto_or_none(project: Path) -> None:
    assert load(project).image.test_dependencies == "auto"
    assert load(project, test_dependencies="NONE").image.test_dependencies == "none"
    with pytest.raises(SettingsError, match="for input 'test-dependencies': expected one of auto"):
        load(project, test_dependencies="all")
