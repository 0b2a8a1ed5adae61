"""Shared fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

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
