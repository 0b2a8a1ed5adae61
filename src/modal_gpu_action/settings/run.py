"""The run's settings: what runs and where (backend, GPU, tests, time, shards, env, the Modal
function's secrets and retries), what it writes (the JUnit file, summary, annotations), and nested
per concern the Modal image (`image`) and publishing (`publishing`).

`load_settings` validates every input once, before anything runs or reaches the network; a bad
value is a `SettingsError` whose one-line message names the input, what was given and what is
accepted; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from modal_gpu_action.container.artifacts import glob_problem
from modal_gpu_action.github_actions.output_files import (
    OutputPathError,
    allowed_roots,
    check_output_folder,
)
from modal_gpu_action.settings.gpu import GpuSpec, GpuSpecError, parse_gpu_spec
from modal_gpu_action.settings.image import ImageSettings, load_image_settings
from modal_gpu_action.settings.inputs import DEFAULTS, raw_inputs
from modal_gpu_action.settings.modal_credentials import modal_credentials
from modal_gpu_action.settings.publishing import PublishSettings, load_publish_settings
from modal_gpu_action.settings.values import (
    SettingsError,
    boolean,
    choice,
    inside,
    integer,
    invalid,
    items,
    optional_file,
    output_path,
    shown,
)

BACKENDS = ("modal", "local")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODAL_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_MODAL_APP_ID = re.compile(r"^ap-[A-Za-z0-9]{22}$")
MAX_TIMEOUT_MINUTES = 24 * 60  # Modal's longest function timeout
MAX_SHARDS = 64
MAX_RERUN_FAILURES = 10  # a test that fails ten times in a row is not flaky
MAX_ARTIFACTS_MB = 1024  # every shard's answer is held in memory on the runner
# Flags that our runner sets itself; letting pytest-args set them too would lose the report.
_RESERVED_PYTEST_FLAGS = ("--junitxml", "--junit-xml", "--junit-prefix")
# Plugins the report comes from: pytest's junitxml and the runner's own (loaded under this name).
_NEEDED_PLUGINS = {"junitxml": "pytest's JUnit report", "_modal_gpu_action": "the action's record"}


@dataclass(frozen=True, slots=True)
class Settings:
    backend: Literal["modal", "local"]
    gpu: GpuSpec
    working_directory: Path
    test_path: str  # relative to working_directory, possibly with a `::node` suffix
    pytest_args: tuple[str, ...]
    timeout_seconds: float
    shards: int | None  # None: one per visible GPU (`auto`, local backend only)
    shard_durations: Path | None
    env: Mapping[str, str] = field(repr=False)  # values may be secret
    fail_on_empty: bool = True
    max_cost_usd: float | None = None  # None: no cost cap
    gpu_memory: bool = True  # sample the GPUs' memory while the tests run
    rerun_failures: int = 0  # re-runs of the failed tests after the suite (container/reruns.py)
    flaky_fails: bool = False  # `flaky: fail`: a test that passed on a re-run fails the run
    modal_secrets: tuple[str, ...] = ()
    modal_token_id: str = field(default="", repr=False)
    modal_token_secret: str = field(default="", repr=False)
    modal_credentials_source: str = ""  # where the token came from, or why none (people only)
    retries: int = 1
    junit_xml: Path = Path("gpu-test-results.xml")
    job_summary: bool = True
    annotations: bool = True
    artifacts: tuple[str, ...] = ()  # globs relative to working_directory (container/artifacts.py)
    artifacts_path: Path = Path("gpu-test-artifacts")
    artifacts_max_bytes: int = 50_000_000  # the whole run's; the shards split it
    compare_to: Path | None = None  # a JUnit file to compare with instead of the previous run
    image: ImageSettings = field(default_factory=ImageSettings)
    publishing: PublishSettings = field(default_factory=PublishSettings)
    # GITHUB_WORKSPACE, else the current directory: what relative paths are relative to, and
    # the checkout that outputs may not be written through (github_actions/output_files.py).
    workspace: Path = field(default_factory=Path.cwd)

    def test_timeout_seconds(self, shard_count: int) -> float:
        """pytest's time limit in each of `shard_count` shards: timeout-minutes, or the cost
        cap's limit when it is lower."""
        cap = self.cost_cap_seconds(shard_count)
        return self.timeout_seconds if cap is None else min(self.timeout_seconds, cap)

    def cost_cap_seconds(self, shard_count: int) -> float | None:
        """How long `shard_count` shards, side by side, may run before their estimated cost
        passes max-cost-usd: at the GPU spec's price (the dearest type of a fallback list, the
        count included), rounded down to 0.1 s. None without a cap or a price."""
        price = self.gpu.price_per_second()
        if self.max_cost_usd is None or not price:
            return None
        return max(0.1, math.floor(self.max_cost_usd / (price * shard_count) * 10) / 10)

    def cost_cap_binds(self, shard_count: int) -> bool:
        """The cost cap, not timeout-minutes, is what limits the tests' time."""
        cap = self.cost_cap_seconds(shard_count)
        return cap is not None and cap < self.timeout_seconds

    def timeout_cause(self, shard_count: int) -> str:
        """What limits the tests' time when it is not timeout-minutes, for the timeout's message
        (RunRequest.timeout_cause): the cost cap, or ""."""
        if not self.cost_cap_binds(shard_count):
            return ""
        return f"the cost cap (max-cost-usd ${self.max_cost_usd:g})"

    def cost_cap_plan(self, shard_count: int) -> dict[str, object] | None:
        """The cost cap as `plan` shows it; None without one."""
        cap = self.cost_cap_seconds(shard_count)
        if cap is None:
            return None
        return {
            "max_cost_usd": self.max_cost_usd,
            "price_per_second_usd": self.gpu.price_per_second(),
            "shards": shard_count,
            "timeout_seconds": cap,
            "applies": cap < self.timeout_seconds,  # else timeout-minutes is the lower limit
        }

    def secret_values(self) -> list[str]:
        """Everything that must be masked in logs."""
        values = [
            self.modal_token_id,
            self.modal_token_secret,
            self.publishing.github_token,
            *self.env.values(),
        ]
        return [v for v in values if v]


def load_settings(
    flags: Mapping[str, str | None], environ: Mapping[str, str], *, workspace: Path | None = None
) -> Settings:
    """Validate every input once; raise SettingsError naming the first bad one. In GitHub mode
    the event is checked and read too (settings/publishing.py)."""
    raw = raw_inputs(flags, environ)
    base = (workspace or Path(environ.get("GITHUB_WORKSPACE") or Path.cwd())).resolve()
    backend = choice(raw, "backend", BACKENDS)
    working_directory = _working_directory(raw["working-directory"], base)
    shards = _shards(raw["shards"], backend)
    try:
        gpu = parse_gpu_spec(raw["gpu"])
    except GpuSpecError as error:
        raise SettingsError(str(error)) from None
    credentials = modal_credentials(
        raw["modal-token-id"], raw["modal-token-secret"], environ, profile=backend == "modal"
    )
    return Settings(
        backend=backend,  # type: ignore[arg-type]
        gpu=gpu,
        working_directory=working_directory,
        test_path=_test_path(raw["test-path"], working_directory),
        pytest_args=_pytest_args(raw["pytest-args"]),
        timeout_seconds=_timeout_minutes(raw["timeout-minutes"]) * 60,
        shards=shards,
        shard_durations=optional_file(raw, "shard-durations", base, "the workspace"),
        env=_env_lines(raw["env"]),
        fail_on_empty=boolean(raw, "fail-on-empty"),
        max_cost_usd=_max_cost_usd(raw["max-cost-usd"]),
        gpu_memory=choice(raw, "gpu-memory", ("on", "off")) == "on",
        rerun_failures=integer(raw, "rerun-failures", 0, MAX_RERUN_FAILURES),
        flaky_fails=choice(raw, "flaky", ("pass", "fail")) == "fail",
        modal_secrets=_modal_secrets(raw["modal-secrets"], backend),
        modal_token_id=credentials.token_id,
        modal_token_secret=credentials.token_secret,
        modal_credentials_source=credentials.source,
        retries=integer(raw, "retries", 0, 10),
        junit_xml=output_path(
            raw["junit-xml"].strip() or DEFAULTS["junit-xml"], "junit-xml", base, environ
        ),
        job_summary=boolean(raw, "job-summary"),
        annotations=boolean(raw, "annotations"),
        artifacts=_artifact_globs(raw["artifacts"]),
        artifacts_path=_artifacts_path(raw, base, working_directory, environ),
        artifacts_max_bytes=integer(raw, "artifacts-max-mb", 1, MAX_ARTIFACTS_MB) * 1_000_000,
        compare_to=optional_file(raw, "compare-to", base, "the workspace"),
        image=load_image_settings(raw, working_directory, backend=backend),
        publishing=load_publish_settings(raw, environ),
        workspace=base,
    )


def _artifact_globs(text: str) -> tuple[str, ...]:
    globs = items(text)
    for pattern in globs:
        problem = glob_problem(pattern)
        if problem:
            raise invalid(
                "artifacts",
                pattern,
                "globs inside the project (relative to 'working-directory'), such as coverage.xml"
                f" or htmlcov; this one {problem}",
            )
    return globs


def _artifacts_path(
    raw: Mapping[str, str], base: Path, working_directory: Path, environ: Mapping[str, str]
) -> Path:
    """A folder of its own, inside the workspace (or RUNNER_TEMP), reached through no link."""
    text = raw["artifacts-path"].strip() or DEFAULTS["artifacts-path"]
    if not items(raw["artifacts"]):
        return base / text  # unused: not checked, so a run without artifacts never fails on it
    try:
        path = check_output_folder(
            text, input_name="artifacts-path", workspace=base, roots=allowed_roots(environ, base)
        )
    except OutputPathError as error:
        raise SettingsError(str(error)) from None
    if working_directory.is_relative_to(path) or ".git" in path.parts:
        raise invalid(
            "artifacts-path",
            text,
            "a folder of its own, outside .git, that does not hold the project or the workspace",
        )
    return path


def _working_directory(text: str, base: Path) -> Path:
    path = inside(text.strip() or ".", "working-directory", base, "the workspace")
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
        raise invalid("pytest-args", text, f"arguments a shell could split ({error})") from None
    for arg in args:
        if arg.split("=", 1)[0] in _RESERVED_PYTEST_FLAGS:
            raise invalid(
                "pytest-args", text, "no --junitxml: the action writes the report (use 'junit-xml')"
            )
    for plugin in _disabled_plugins(args):
        needed = next(
            (what for name, what in _NEEDED_PLUGINS.items() if plugin.startswith(name)), ""
        )
        if needed:
            raise invalid(
                "pytest-args",
                text,
                f"arguments that keep the plugins the report comes from: '-p no:{plugin}' turns"
                f" off {needed}",
            )
    return tuple(args)


def _disabled_plugins(args: list[str]) -> list[str]:
    """The plugins `-p no:NAME` turns off, in each way pytest takes it (`-p no:x`, `-pno:x`,
    `-p=no:x`)."""
    names = []
    for index, arg in enumerate(args):
        if arg == "-p" and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("-p") and not arg.startswith("--"):
            value = arg[2:].removeprefix("=")
        else:
            continue
        if value.startswith("no:"):
            names.append(value[3:])
    return names


def _timeout_minutes(text: str) -> float:
    try:
        minutes = float(text.strip())
    except ValueError:
        minutes = float("nan")
    if not 0 < minutes <= MAX_TIMEOUT_MINUTES:  # also false for NaN
        raise invalid(
            "timeout-minutes",
            text,
            f"a number of minutes above 0 and at most {MAX_TIMEOUT_MINUTES}",
        )
    return minutes


def _max_cost_usd(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        dollars = float(text.strip().removeprefix("$"))
    except ValueError:
        dollars = float("nan")
    if not (dollars > 0 and math.isfinite(dollars)):  # also false for NaN
        raise invalid(
            "max-cost-usd", text, "a positive number of US dollars (e.g. 0.50), or empty for no cap"
        )
    return dollars


def _shards(text: str, backend: str) -> int | None:
    value = text.strip().lower()
    if value == "auto":
        if backend != "local":
            raise invalid("shards", text, "a whole number from 1; `auto` needs backend 'local'")
        return None
    if not value.isdigit() or not 1 <= int(value) <= MAX_SHARDS:
        raise invalid("shards", text, f"a whole number from 1 to {MAX_SHARDS}, or auto")
    return int(value)


def _modal_secrets(text: str, backend: str) -> tuple[str, ...]:
    """Names Modal accepts for a secret (its SDK's rule, checked by Modal only after connecting):
    letters, digits, `-`, `_` and `.`, at most 64, and not the form of an app id."""
    names = items(text)
    for name in names if backend == "modal" else ():
        if len(name) > 64 or not _MODAL_NAME.match(name) or _MODAL_APP_ID.match(name):
            raise invalid(
                "modal-secrets",
                name,
                "Modal secret names: letters, digits, '-', '_' and '.', at most 64 characters"
                " each, comma- or newline-separated",
            )
    return names


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
