"""Every input of the action, read from command-line flags or GitHub's `INPUT_*` variables,
validated once. A bad value is a `SettingsError` whose one-line message names the input, what was
given and what is accepted; the CLI turns it into exit code 2.

`INPUTS` is the single list of inputs: action.yml, the README's table and the CLI flags are checked
against it by tests, so none can drift.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from modal_gpu_action.gpu import GpuSpec, GpuSpecError, parse_gpu_spec
from modal_gpu_action.output_files import OutputPathError, allowed_roots, check_output_path


class SettingsError(ValueError):
    """An input with a value we cannot accept."""


@dataclass(frozen=True, slots=True)
class InputSpec:
    name: str
    default: str
    description: str
    # The default action.yml writes (an expression such as `${{ github.token }}`), when it differs.
    action_default: str | None = None


INPUTS: tuple[InputSpec, ...] = (
    # What runs and where.
    InputSpec(
        "backend",
        "modal",
        "Where the tests run: `modal` (a Modal GPU container) or `local` (this machine, e.g. a self-hosted GPU runner).",
    ),
    InputSpec(
        "gpu",
        "T4",
        "Modal GPU: T4, L4, A10G, L40S, A100-40GB, A100-80GB, RTX-PRO-6000, H100, H100!, H200, B200 (case-insensitive); `H100:2` for a count; `H100,A100-80GB` for an ordered fallback list.",
    ),
    InputSpec("test-path", "tests", "Test file or folder to run, relative to `working-directory`."),
    InputSpec(
        "pytest-args", "", "Extra pytest arguments, split like a shell would (e.g. `-m gpu -x`)."
    ),
    InputSpec(
        "working-directory",
        ".",
        "The project's folder (where pyproject.toml is), relative to the workspace.",
    ),
    InputSpec("python-version", "3.12", "Python version of the Modal image (e.g. 3.11, 3.12)."),
    InputSpec(
        "timeout-minutes", "30", "Stop the tests after this many minutes and report what finished."
    ),
    InputSpec(
        "shards",
        "1",
        "Split the suite into N parts run in parallel (N containers on Modal); `auto` on the local backend runs one shard per visible GPU.",
    ),
    InputSpec(
        "shard-durations",
        "",
        "A previous JUnit XML file; shards are balanced by its test durations instead of by test id.",
    ),
    InputSpec(
        "env",
        "",
        "Environment variables for the tests, one `KEY=VALUE` per line. Values are never printed.",
    ),
    InputSpec("fail-on-empty", "true", "Fail the run when pytest collects no tests."),
    # The Modal image.
    InputSpec(
        "image",
        "",
        "Registry image to start from instead of debian_slim (e.g. `nvcr.io/nvidia/pytorch:25.01-py3`).",
    ),
    InputSpec(
        "dockerfile",
        "",
        "A Dockerfile of the project to build the image from, relative to `working-directory`.",
    ),
    InputSpec(
        "requirements",
        "",
        "Requirements files to install, one per line (used when the project has no uv.lock).",
    ),
    InputSpec(
        "extras",
        "",
        "Optional-dependency extras of the project to install, comma- or newline-separated.",
    ),
    InputSpec(
        "groups",
        "",
        "Dependency groups of the project to install (uv projects), comma- or newline-separated.",
    ),
    InputSpec(
        "extra-packages",
        "",
        "More packages to install in the image, one requirement per line (e.g. `pytest-xdist`).",
    ),
    InputSpec(
        "modal-secrets",
        "",
        "Names of Modal secrets whose variables the tests get, comma- or newline-separated.",
    ),
    InputSpec(
        "modal-token-id",
        "",
        "Modal token id; defaults to the `MODAL_TOKEN_ID` environment variable.",
    ),
    InputSpec(
        "modal-token-secret",
        "",
        "Modal token secret; defaults to the `MODAL_TOKEN_SECRET` environment variable.",
    ),
    InputSpec(
        "retries",
        "1",
        "How many times Modal restarts a container lost to the infrastructure (preemption); failing tests are never retried.",
    ),
    # Reports.
    InputSpec(
        "junit-xml",
        "gpu-test-results.xml",
        "Where to write the merged JUnit XML report, relative to the workspace.",
    ),
    InputSpec("job-summary", "true", "Write the report to the job summary."),
    InputSpec("annotations", "true", "Annotate failed tests on the files that hold them."),
    # GitHub publishing.
    InputSpec(
        "github-token",
        "",
        "Token for the PR comment and the label; needs `pull-requests: write`.",
        "${{ github.token }}",
    ),
    InputSpec(
        "comment",
        "sticky",
        "PR comment: `sticky` (one comment, updated on every run), `new` (a comment per run) or `off`.",
    ),
    InputSpec(
        "comment-on",
        "always",
        "When to comment: `always`, `failure` (only when tests fail) or `change` (only when the conclusion changed).",
    ),
    InputSpec(
        "comment-key",
        "",
        "Identifies the sticky comment; defaults to the workflow name and job id.",
    ),
    InputSpec(
        "matrix-key",
        "",
        "This job's section in the comment that the jobs of a matrix share; defaults to the GPU.",
    ),
    InputSpec(
        "remove-label",
        "",
        "Label to remove from the PR when the run ends, whatever happened (e.g. `gpu-tests`).",
    ),
    InputSpec(
        "pr-number",
        "",
        "Pull request to comment on when the event has none (e.g. `workflow_dispatch`).",
    ),
    InputSpec(
        "allow-pull-request-target",
        "false",
        "Allow events that hold your secrets while they may run a PR's code: `pull_request_target`, `issue_comment` on a PR, `workflow_run` after a PR's or a fork's run, `check_run`, `check_suite` (read the security notes first).",
    ),
)
INPUT_NAMES = frozenset(spec.name for spec in INPUTS)
_DEFAULTS = {spec.name: spec.default for spec in INPUTS}

BACKENDS = ("modal", "local")
COMMENT_MODES = ("sticky", "new", "off")
COMMENT_ON = ("always", "failure", "change")
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PYTHON_VERSION = re.compile(r"^3\.(\d+)$")
MAX_TIMEOUT_MINUTES = 24 * 60  # Modal's longest function timeout
MAX_SHARDS = 64
# Flags that our runner sets itself; letting pytest-args set them too would lose the report.
_RESERVED_PYTEST_FLAGS = ("--junitxml", "--junit-xml", "--junit-prefix")


@dataclass(frozen=True, slots=True)
class Settings:
    backend: Literal["modal", "local"]
    gpu: GpuSpec
    working_directory: Path
    test_path: str  # relative to working_directory, possibly with a `::node` suffix
    pytest_args: tuple[str, ...]
    python_version: str
    timeout_seconds: float
    shards: int | None  # None: one per visible GPU (`auto`, local backend only)
    shard_durations: Path | None
    env: Mapping[str, str] = field(repr=False)  # values may be secret
    fail_on_empty: bool = True
    image: str = ""
    dockerfile: Path | None = None
    requirements: tuple[Path, ...] = ()
    extras: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    extra_packages: tuple[str, ...] = ()
    modal_secrets: tuple[str, ...] = ()
    modal_token_id: str = field(default="", repr=False)
    modal_token_secret: str = field(default="", repr=False)
    retries: int = 1
    junit_xml: Path = Path("gpu-test-results.xml")
    job_summary: bool = True
    annotations: bool = True
    github_token: str = field(default="", repr=False)
    comment: Literal["sticky", "new", "off"] = "sticky"
    comment_on: Literal["always", "failure", "change"] = "always"
    comment_key: str = ""
    matrix_key: str = ""
    remove_label: str = ""
    pr_number: int | None = None
    allow_pull_request_target: bool = False
    # GITHUB_WORKSPACE, else the current directory: what relative paths are relative to, and
    # the checkout that outputs may not be written through (output_files.py).
    workspace: Path = field(default_factory=Path.cwd)

    def secret_values(self) -> list[str]:
        """Everything that must be masked in logs."""
        values = [
            self.modal_token_id,
            self.modal_token_secret,
            self.github_token,
            *self.env.values(),
        ]
        return [v for v in values if v]


def env_name(input_name: str) -> str:
    """The variable action.yml passes an input through: `test-path` -> `INPUT_TEST_PATH`."""
    return "INPUT_" + input_name.upper().replace("-", "_")


def raw_inputs(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> dict[str, str]:
    """Each input's text: a command-line flag wins, then `INPUT_*` (both `INPUT_TEST_PATH` and
    GitHub's own `INPUT_TEST-PATH` spelling), then the default."""
    values: dict[str, str] = {}
    for name in INPUT_NAMES:
        flag = flags.get(name)
        if flag is not None:
            values[name] = flag
            continue
        for key in (env_name(name), "INPUT_" + name.upper()):
            if key in environ:
                values[name] = environ[key]
                break
        else:
            values[name] = _DEFAULTS[name]
    return values


def load_settings(
    flags: Mapping[str, str | None], environ: Mapping[str, str], *, workspace: Path | None = None
) -> Settings:
    """Validate every input once; raise SettingsError naming the first bad one."""
    raw = raw_inputs(flags, environ)
    base = (workspace or Path(environ.get("GITHUB_WORKSPACE") or Path.cwd())).resolve()
    backend = _choice(raw, "backend", BACKENDS)
    working_directory = _working_directory(raw["working-directory"], base)
    shards = _shards(raw["shards"], backend)
    gpu_text = raw["gpu"]
    try:
        gpu = parse_gpu_spec(gpu_text)
    except GpuSpecError as error:
        raise SettingsError(str(error)) from None
    return Settings(
        backend=backend,  # type: ignore[arg-type]
        gpu=gpu,
        working_directory=working_directory,
        test_path=_test_path(raw["test-path"], working_directory),
        pytest_args=_pytest_args(raw["pytest-args"]),
        python_version=_python_version(raw["python-version"]),
        timeout_seconds=_timeout_minutes(raw["timeout-minutes"]) * 60,
        shards=shards,
        shard_durations=_optional_file(raw, "shard-durations", base, "the workspace"),
        env=_env_lines(raw["env"]),
        fail_on_empty=_boolean(raw, "fail-on-empty"),
        image=raw["image"].strip(),
        dockerfile=_optional_file(raw, "dockerfile", working_directory, "the working directory"),
        requirements=tuple(
            _existing_file(item, "requirements", working_directory, "the working directory")
            for item in _items(raw["requirements"])
        ),
        extras=_items(raw["extras"]),
        groups=_items(raw["groups"]),
        extra_packages=tuple(
            line.strip() for line in raw["extra-packages"].splitlines() if line.strip()
        ),
        modal_secrets=_items(raw["modal-secrets"]),
        modal_token_id=raw["modal-token-id"].strip() or environ.get("MODAL_TOKEN_ID", ""),
        modal_token_secret=raw["modal-token-secret"].strip()
        or environ.get("MODAL_TOKEN_SECRET", ""),
        retries=_integer(raw, "retries", 0, 10),
        junit_xml=output_path(
            raw["junit-xml"].strip() or _DEFAULTS["junit-xml"], "junit-xml", base, environ
        ),
        job_summary=_boolean(raw, "job-summary"),
        annotations=_boolean(raw, "annotations"),
        github_token=raw["github-token"].strip() or environ.get("GITHUB_TOKEN", ""),
        comment=_choice(raw, "comment", COMMENT_MODES),  # type: ignore[arg-type]
        comment_on=_choice(raw, "comment-on", COMMENT_ON),  # type: ignore[arg-type]
        comment_key=raw["comment-key"].strip(),
        matrix_key=raw["matrix-key"].strip(),
        remove_label=raw["remove-label"].strip(),
        pr_number=_integer(raw, "pr-number", 1, None) if raw["pr-number"].strip() else None,
        allow_pull_request_target=_boolean(raw, "allow-pull-request-target"),
        workspace=base,
    )


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


# What removing the label needs; the rest may be the bad input that stopped the run.
_LABEL_INPUTS = frozenset({"github-token", "remove-label", "pr-number"})


def load_label_settings(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> Settings:
    """Settings good enough to remove the label after another input was refused: every input
    but the label's own ones at a default that cannot fail."""
    safe: dict[str, str | None] = {
        spec.name: spec.default for spec in INPUTS if spec.name not in _LABEL_INPUTS
    }
    safe.update({"working-directory": ".", "test-path": ".", "backend": "local"})
    safe.update({name: flags.get(name) for name in _LABEL_INPUTS})
    return load_settings(safe, environ)


def _invalid(name: str, value: str, expected: str) -> SettingsError:
    return SettingsError(f"invalid value {value!r} for input '{name}': expected {expected}")


def _choice(raw: Mapping[str, str], name: str, accepted: tuple[str, ...]) -> str:
    value = raw[name].strip().lower()
    if value not in accepted:
        raise _invalid(name, raw[name], "one of " + ", ".join(accepted))
    return value


def _boolean(raw: Mapping[str, str], name: str) -> bool:
    value = raw[name].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _invalid(name, raw[name], "true or false")


def _integer(raw: Mapping[str, str], name: str, low: int, high: int | None) -> int:
    text = raw[name].strip()
    bounds = f"a whole number from {low}" + (f" to {high}" if high is not None else " up")
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        raise _invalid(name, raw[name], bounds)
    return int(text)


def _items(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in re.split(r"[,\n]", text) if item.strip())


def shown(path: str | Path) -> str:
    """A path for a one-line message: quoted, with control characters (a newline in a folder name
    a pull request chose) escaped."""
    return repr(str(path))


def _inside(text: str, name: str, base: Path, where: str) -> Path:
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


def _working_directory(text: str, base: Path) -> Path:
    path = _inside(text.strip() or ".", "working-directory", base, "the workspace")
    if not path.is_dir():
        raise SettingsError(
            f"invalid value {text!r} for input 'working-directory': {shown(path)} is not a folder"
        )
    return path


def _test_path(text: str, working_directory: Path) -> str:
    text = text.strip() or "."
    file_part = text.split("::", 1)[0]
    path = (working_directory / file_part).resolve()
    if not path.is_relative_to(working_directory):
        raise SettingsError(
            f"invalid value {text!r} for input 'test-path': it must be inside the working"
            f" directory {shown(working_directory)}"
        )
    if not path.exists():
        raise SettingsError(
            f"invalid value {text!r} for input 'test-path': {shown(path)} does not exist"
            " (paths are relative to 'working-directory')"
        )
    relative = path.relative_to(working_directory).as_posix()
    return relative + text[len(file_part) :]


def _pytest_args(text: str) -> tuple[str, ...]:
    try:
        args = shlex.split(text)
    except ValueError as error:
        raise _invalid("pytest-args", text, f"arguments a shell could split ({error})") from None
    for arg in args:
        if arg.split("=", 1)[0] in _RESERVED_PYTEST_FLAGS:
            raise _invalid(
                "pytest-args", text, "no --junitxml: the action writes the report (use 'junit-xml')"
            )
    return tuple(args)


def _python_version(text: str) -> str:
    value = text.strip()
    match = _PYTHON_VERSION.match(value)
    if not match or not 9 <= int(match.group(1)) <= 14:
        raise _invalid("python-version", text, "a version from 3.9 to 3.14, such as 3.12")
    return value


def _timeout_minutes(text: str) -> float:
    try:
        minutes = float(text.strip())
    except ValueError:
        minutes = float("nan")
    if not 0 < minutes <= MAX_TIMEOUT_MINUTES:  # also false for NaN
        raise _invalid(
            "timeout-minutes",
            text,
            f"a number of minutes above 0 and at most {MAX_TIMEOUT_MINUTES}",
        )
    return minutes


def _shards(text: str, backend: str) -> int | None:
    value = text.strip().lower()
    if value == "auto":
        if backend != "local":
            raise _invalid("shards", text, "a whole number from 1; `auto` needs backend 'local'")
        return None
    if not value.isdigit() or not 1 <= int(value) <= MAX_SHARDS:
        raise _invalid("shards", text, f"a whole number from 1 to {MAX_SHARDS}, or auto")
    return int(value)


def _env_lines(text: str) -> dict[str, str]:
    """`KEY=VALUE` per line. Lines end at `\n` (a `\r` before it is dropped) and nowhere else:
    str.splitlines would also end one at U+2028, U+0085, `\x1c`..., which a value may hold."""
    env: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _ENV_KEY.match(key):
            # Never echo the line: its value may be a secret.
            raise SettingsError(
                f"invalid line {number} of input 'env': expected KEY=VALUE with KEY made of"
                " letters, digits and _ (not starting with a digit)"
            )
        env[key] = value
    return env


def _existing_file(text: str, name: str, base: Path, where: str) -> Path:
    path = _inside(text, name, base, where)
    if not path.is_file():
        raise SettingsError(
            f"invalid value {text!r} for input '{name}': {shown(path)} is not a file"
        )
    return path


def _optional_file(raw: Mapping[str, str], name: str, base: Path, where: str) -> Path | None:
    text = raw[name].strip()
    return _existing_file(text, name, base, where) if text else None
