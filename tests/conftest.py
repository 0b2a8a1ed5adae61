"""Shared fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

REPORT_PROJECTS = Path(__file__).parent / "fixtures" / "reports"


@pytest.fixture(scope="session")
def junit_from_pytest(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """Runs a fixture project of tests/fixtures/reports/ with real pytest and returns its JUnit
    XML: `junit_from_pytest("mixed", "xunit1")`. Each (project, junit_family) runs once per session
    (CI has two cores)."""
    runs: dict[tuple[str, str], Path] = {}

    def run(project: str, family: str = "xunit2") -> Path:
        if (project, family) not in runs:
            junit = tmp_path_factory.mktemp(f"{project}-{family}") / "junit.xml"
            env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
            env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave the fixture tree clean
            command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
            command += ["-o", f"junit_family={family}", f"--junitxml={junit}"]
            completed = subprocess.run(
                command,
                cwd=REPORT_PROJECTS / project,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert junit.is_file(), completed.stdout + completed.stderr
            runs[project, family] = junit
        return runs[project, family]

    return run


# --- The fake GitHub API (tests/github_api/): every request and response checked against
# GitHub's REST API description (`npm ci --prefix tests/github_api --no-audit --no-fund`).


@pytest.fixture(scope="session")
def github_api_validator(request: pytest.FixtureRequest) -> Any:
    """A validator for api.github.com's description, cut down to the operations we call."""
    from github_api import description

    return description.Validator(
        description.load("api.github.com", getattr(request.config, "cache", None))
    )


@pytest.fixture(scope="session")
def github_api_ghes_validator(request: pytest.FixtureRequest) -> Any:
    """The same for the newest GitHub Enterprise Server description in the package."""
    from github_api import description

    variant = description.latest_ghes()
    return description.Validator(description.load(variant, getattr(request.config, "cache", None)))


@pytest.fixture
def github_api_make_server(github_api_validator: Any) -> Iterator[Callable[..., Any]]:
    """Start fake GitHub servers: `github_api_make_server(prefix="/api/v3", delay=(0, 0.01))`.
    A test fails when any of them saw a request or gave a response the description refuses."""
    from github_api.server import FakeGitHub

    with ExitStack() as stack:
        servers: list[Any] = []

        def make(validator: Any = None, **options: Any) -> Any:
            fake = FakeGitHub(validator or github_api_validator, **options)
            servers.append(stack.enter_context(fake.running()))
            return fake

        yield make
        violations = [v for fake in servers for v in fake.violations]
        assert not violations, "GitHub's REST API description refuses:\n" + "\n".join(violations)


@pytest.fixture
def github_api_server(github_api_make_server: Callable[..., Any]) -> Any:
    """A fake api.github.com with an empty repository `octo-org/gpu-project`."""
    return github_api_make_server()
