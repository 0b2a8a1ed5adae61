"""Every input of the action, once: its name, default and description (`INPUTS`), and its text as
given by a command-line flag or GitHub's `INPUT_*` variables (`raw_inputs`).

`INPUTS` is the single list of inputs: action.yml, the README's table and the CLI flags are checked
against it by tests, so none can drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


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
    InputSpec(
        "max-cost-usd",
        "",
        "Stop the tests when their estimated GPU cost would pass this many US dollars: a time limit of cost / (price per second x shards), with the dearest type of a fallback list (the `gpu` input's price on the local backend); the lower of it and `timeout-minutes` applies. Empty: no cap.",
    ),
    InputSpec(
        "gpu-memory",
        "on",
        "Sample the GPUs' memory while the tests run (nvidia-smi every 0.2 s) to report the peak and a cheaper GPU type it would fit: `on` or `off`.",
    ),
    InputSpec(
        "rerun-failures",
        "0",
        "Re-run the failed tests (only those, by node id) up to N times right after the suite, in the same place and within what is left of `timeout-minutes`; a test that passes on a re-run is flaky and counts as passed. 0 turns it off.",
    ),
    InputSpec(
        "flaky",
        "pass",
        "What a flaky test (failed, then passed on a re-run) does to the run: `pass` or `fail`.",
    ),
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
        "test-dependencies",
        "auto",
        "What the Modal image gets for the tests besides `extras`, `groups` and `requirements`: `auto` adds the project's extras and dependency groups named test, tests or testing (else a `dev` extra), uv's default groups (dev) and its test requirement files (test-requirements.txt, requirements-test.txt, requirements/test*.txt; else requirements-dev.txt); `none` adds nothing.",
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
        "Modal token id; defaults to `MODAL_TOKEN_ID`, then the active Modal profile (`~/.modal.toml`).",
    ),
    InputSpec(
        "modal-token-secret",
        "",
        "Modal token secret; defaults to `MODAL_TOKEN_SECRET`, then the active Modal profile (`~/.modal.toml`).",
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
    InputSpec(
        "artifacts",
        "",
        "Files the tests write to bring back from every container (e.g. `coverage.xml`, `htmlcov`, `reports/*.xml`, `**/junit-*.xml`), one glob per line or comma-separated, relative to `working-directory`; copied into `artifacts-path` after the run, also after a crash or a timeout.",
    ),
    InputSpec(
        "artifacts-path",
        "gpu-test-artifacts",
        "The folder the `artifacts` are written to, relative to the workspace; with several shards, each shard's go into `shard-N/` in it.",
    ),
    InputSpec(
        "artifacts-max-mb",
        "50",
        "Cap on the `artifacts`' size in MB (1 MB = 1,000,000 bytes) for the whole run, split evenly among the shards; files over it are left out and listed.",
    ),
    InputSpec("job-summary", "true", "Write the report to the job summary."),
    InputSpec("annotations", "true", "Annotate failed tests on the files that hold them."),
    InputSpec(
        "compare-to",
        "",
        "A JUnit XML file to compare this run with instead of the previous run (e.g. the base branch's report, downloaded as an artifact): each failure is marked new or also failing there, with fixed, added and removed tests.",
    ),
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
        "compare-previous",
        "true",
        "Show what changed since the previous run of this job (its section of the PR comment): each count's change, new failures, fixed tests, tests added and removed. Reads the PR's comments once more before the reports are written.",
    ),
    InputSpec(
        "keep-test-ids",
        "true",
        "Keep, hidden in this job's section of the PR comment, the ids of its failing, skipped and not-run tests (and of all its tests while they fit; at most 6,000 characters), for the next run's comparison and the matrix's table of tests that differ by GPU. `false` keeps the counts only.",
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
DEFAULTS = {spec.name: spec.default for spec in INPUTS}


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
            values[name] = DEFAULTS[name]
    return values
