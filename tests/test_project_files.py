"""What of a project goes to Modal (project_files.py), tried on a project a hostile pull request
could commit: links to .git/config, to the runner's files and outside folders, a dangling link,
ignored secrets; besides a tracked build/ folder and *.egg-info that must go.

`hostile_project` builds that project at run time (committing links, a .gitignore and a git
repository into this repository's fixtures would change this repository's own git behaviour);
tests/test_modal_e2e.py runs the same project in a container and looks from inside.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modal_gpu_action.backends.modal_app import describe_upload, upload_summary
from modal_gpu_action.backends.project_files import (
    DANGLING,
    INTO_GIT,
    NOT_UPLOADED,
    OUTSIDE,
    SPECIAL,
    Link,
    list_project_files,
)
from modal_gpu_action.container.entry import make_links

FIXTURE = Path(__file__).parent / "fixtures" / "modal_projects" / "upload_project"
REPO = Path(__file__).resolve().parents[1]
# What actions/checkout leaves in .git/config; tests/fixtures/.../upload_project looks for it.
TOKEN = "ghs_upload-fixture-token"

# The links of hostile_project and why each is refused (with a repository).
REFUSED = {
    "dangling": DANGLING,
    "env_alias": NOT_UPLOADED,
    "leak_config": INTO_GIT,
    "leak_outside": OUTSIDE,
    "leak_passwd": OUTSIDE,
    "outside_dir": OUTSIDE,
}
TRACKED_OUTPUTS = ("build/generated.py", "pkg.egg-info/PKG-INFO")


def git(folder: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    completed = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com",
         "-c", "init.defaultBranch=main", *args],
        cwd=folder, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return completed.stdout


def hostile_project(folder: Path, outside: Path, *, repository: bool = True) -> Path:
    """Add to `folder` what a pull request can commit (links out of the project and into .git,
    a dangling link, a link to an ignored secret, ignored files, a tracked build/ and egg-info)
    and, with `repository`, a git repository whose .git/config holds a checkout's token as
    actions/checkout leaves it. Untracked caches are added after the commit."""
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.txt").write_text("the runner's secret\n")
    files = {
        ".gitignore": ".env\n*.log\ndist/\n",
        ".env": "API_KEY=from-dotenv\n",
        "app.log": "a log\n",
        "data/real.txt": "real data\n",
        "build/generated.py": "GENERATED = True\n",
        "pkg.egg-info/PKG-INFO": "Name: pkg\n",
        "dist/tracked.txt": "ignored, but tracked\n",
    }
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    links = {
        "linked_data": "data",
        "alias.txt": "data/real.txt",
        "leak_config": ".git/config",
        "leak_passwd": "/etc/passwd",
        "leak_outside": str(outside / "secret.txt"),
        "outside_dir": os.path.relpath(outside, folder),
        "dangling": "missing.txt",
        "env_alias": ".env",
    }
    for name, target in links.items():
        (folder / name).symlink_to(target)
    if repository:
        git(folder, "init", "-q")
        git(
            folder,
            "config",
            "http.https://github.com/.extraheader",
            f"AUTHORIZATION: basic {TOKEN}",
        )
        git(folder, "add", "-A")
        git(folder, "add", "-f", "dist/tracked.txt")
        git(folder, "commit", "-q", "-m", "a pull request")
    for name in ("src/__pycache__/mod.cpython-311.pyc", ".venv/pyvenv.cfg", ".venv/lib/site.py"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("made on this machine\n")
    return folder


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = Path(shutil.copytree(FIXTURE, tmp_path / "project"))
    return hostile_project(folder, tmp_path / "outside")


@pytest.fixture
def plain_project(tmp_path: Path) -> Path:
    """The same project without a git repository."""
    folder = Path(shutil.copytree(FIXTURE, tmp_path / "project"))
    return hostile_project(folder, tmp_path / "outside", repository=False)


def refusals(folder: Path) -> dict[str, str]:
    return {r.path: r.reason for r in list_project_files(folder).refused}


# -- with git -----------------------------------------------------------------------------------


def test_a_link_to_git_config_is_refused_and_no_uploaded_file_holds_the_token(
    project: Path,
) -> None:
    upload = list_project_files(project)
    assert refusals(project)["leak_config"] == INTO_GIT
    assert not [f for f in upload.files if f.split("/")[0] == ".git"]
    for name in upload.files:
        assert TOKEN not in (project / name).read_text(errors="replace"), name


def test_links_to_files_and_folders_outside_the_project_are_refused(project: Path) -> None:
    refused = refusals(project)
    assert refused["leak_passwd"] == OUTSIDE  # an absolute link to the runner's files
    assert refused["leak_outside"] == OUTSIDE
    assert refused["outside_dir"] == OUTSIDE  # a folder


def test_a_dangling_link_is_refused(project: Path) -> None:
    assert refusals(project)["dangling"] == DANGLING


def test_a_link_to_an_ignored_secret_is_refused(project: Path) -> None:
    assert refusals(project)["env_alias"] == NOT_UPLOADED


def test_links_inside_the_project_are_kept_with_relative_targets(project: Path) -> None:
    upload = list_project_files(project)
    assert set(upload.links) == {Link("alias.txt", "data/real.txt"), Link("linked_data", "data")}
    assert "data/real.txt" in upload.files  # the linked folder's files go at their own place
    assert not [f for f in upload.files if f.startswith(("linked_data", "alias.txt"))]


def test_what_goes_is_what_git_tracks_plus_what_it_does_not_ignore(project: Path) -> None:
    (project / "notes.md").write_text("untracked, not ignored\n")
    upload = list_project_files(project)

    assert upload.rules == "git"
    assert sorted(upload.files) == [
        ".gitignore", "build/generated.py", "data/real.txt", "dist/tracked.txt", "notes.md",
        "pkg.egg-info/PKG-INFO", "pytest.ini", "tests/test_upload.py",
    ]  # fmt: skip
    assert set(refusals(project)) == set(REFUSED)
    assert upload.size == sum((project / f).stat().st_size for f in upload.files)


def test_untracked_caches_are_left_out_and_tracked_ones_go(project: Path) -> None:
    assert list_project_files(project).left_out == (".venv/", "src/__pycache__/")
    git(project, "add", "-f", "src/__pycache__/mod.cpython-311.pyc")
    upload = list_project_files(project)
    assert "src/__pycache__/mod.cpython-311.pyc" in upload.files
    assert upload.left_out == (".venv/",)


def test_a_project_in_a_subfolder_of_the_repository_gets_its_own_files(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    (repository / "other").mkdir(parents=True)
    (repository / "other" / "x.py").write_text("")
    (repository / ".gitignore").write_text("*.secret\n")
    folder = Path(shutil.copytree(FIXTURE, repository / "project"))
    (folder / "key.secret").write_text("ignored by the repository's .gitignore\n")
    (folder / "up").symlink_to("../other/x.py")  # inside the repository, outside the project
    git(repository, "init", "-q")
    git(repository, "add", "-A")

    upload = list_project_files(folder)
    assert upload.files == ("data/real.txt", "pytest.ini", "tests/test_upload.py")
    assert refusals(folder) == {"up": OUTSIDE}


def test_git_variables_of_the_environment_do_not_change_the_listing(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    git(elsewhere, "init", "-q")
    monkeypatch.setenv("GIT_DIR", str(elsewhere / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(elsewhere))
    assert "build/generated.py" in list_project_files(project).files


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a folder's owner needs root")
def test_a_checkout_owned_by_another_user_is_still_listed_by_git(project: Path) -> None:
    """A container action runs as root on a checkout the runner's user made."""
    for folder, dirs, files in os.walk(project):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(folder, name), 1234, 1234)
    os.lchown(project, 1234, 1234)
    upload = list_project_files(project)
    assert upload.rules == "git" and not upload.notes
    assert "dist/tracked.txt" in upload.files


def test_a_repository_git_cannot_read_falls_back_to_the_gitignore_rules(project: Path) -> None:
    shutil.rmtree(project / ".git")
    (project / ".git").mkdir()
    (project / ".git" / "HEAD").write_text("not a repository\n")
    upload = list_project_files(project)

    assert upload.rules == ".gitignore"
    assert "git could not list the project" in upload.notes[0]
    assert ".env" not in upload.files and "build/generated.py" in upload.files
    assert not [f for f in upload.files if f.startswith(".git/")]


def test_a_nested_repository_is_listed_by_its_own_rules(project: Path) -> None:
    nested = project / "vendor" / "lib"
    nested.mkdir(parents=True)
    (nested / "code.py").write_text("")
    (nested / "local.tmp").write_text("")
    (nested / ".gitignore").write_text("*.tmp\n")
    git(nested, "init", "-q")
    upload = list_project_files(project)
    assert "vendor/lib/code.py" in upload.files
    assert "vendor/lib/local.tmp" not in upload.files
    assert not [f for f in upload.files if "/.git/" in f]


def test_the_filter_leaves_out_a_file_that_became_a_link_after_the_listing(project: Path) -> None:
    upload = list_project_files(project)
    assert not upload.ignores(Path("build/generated.py"))
    assert not upload.ignores(Path("build"))
    (project / "build" / "generated.py").unlink()
    (project / "build" / "generated.py").symlink_to(project / ".git" / "config")
    assert upload.ignores(Path("build/generated.py"))
    assert upload.ignores(Path("linked_data"))  # links are recreated, never walked into
    assert upload.ignores(Path(".git")) and upload.ignores(Path(".env"))


# -- without git: the same rules from the .gitignore files ---------------------------------------


def test_without_git_the_gitignore_files_decide(plain_project: Path) -> None:
    nested = plain_project / "data" / "raw"
    nested.mkdir()
    (plain_project / "data" / ".gitignore").write_text("raw/*\n!raw/keep.csv\n")
    for name in ("big.csv", "keep.csv"):
        (nested / name).write_text("1,2\n")
    upload = list_project_files(plain_project)

    assert upload.rules == ".gitignore"
    assert sorted(upload.files) == [
        ".gitignore", "build/generated.py", "data/.gitignore", "data/raw/keep.csv",
        "data/real.txt", "pkg.egg-info/PKG-INFO", "pytest.ini", "tests/test_upload.py",
    ]  # fmt: skip
    assert upload.left_out == (".venv/", "src/__pycache__/")


def test_without_git_links_follow_the_same_rules(plain_project: Path) -> None:
    upload = list_project_files(plain_project)
    # No .git here: the link to .git/config leads nowhere.
    assert refusals(plain_project) == {**REFUSED, "leak_config": DANGLING}
    assert set(upload.links) == {Link("alias.txt", "data/real.txt"), Link("linked_data", "data")}


def test_a_fifo_is_refused(plain_project: Path) -> None:
    os.mkfifo(plain_project / "pipe")
    assert refusals(plain_project)["pipe"] == SPECIAL


def test_a_linked_gitignore_is_not_read(plain_project: Path) -> None:
    (plain_project / "rules").write_text("tests/\n")
    (plain_project / "data" / ".gitignore").symlink_to("../rules")
    assert "data/real.txt" in list_project_files(plain_project).files


# -- what plan and the log show ------------------------------------------------------------------


def test_plan_lists_the_upload_and_every_refusal_with_its_reason(project: Path) -> None:
    out = describe_upload(list_project_files(project))
    assert out["files"] == 7 and out["rules"] == "git"
    assert out["first-paths"][:2] == [".gitignore", "build/generated.py"]
    assert {r["path"]: r["reason"] for r in out["refused"]} == REFUSED
    assert out["refused-count"] == 6
    assert {"path": "linked_data", "target": "data"} in out["links"]
    assert out["left-out"] == [".venv/", "src/__pycache__/"]


def test_the_plan_command_shows_the_upload(project: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "INPUT_", "GITHUB_"))}
    completed = subprocess.run(
        [sys.executable, "-m", "modal_gpu_action", "plan", "--backend", "modal",
         "--test-path", "tests"],
        cwd=project, capture_output=True, text=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    out = json.loads(completed.stdout)
    assert out["upload"]["refused-count"] == 6
    assert any(step.startswith("source: 7 files") for step in out["image"])
    assert TOKEN not in completed.stdout


def test_a_refused_path_in_the_log_cannot_start_a_workflow_command(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "x\n::error::forged").symlink_to("/etc/passwd")
    lines = upload_summary(list_project_files(folder))
    assert len(lines) == 2
    assert lines[1] == (
        "modal-gpu-action: refused 'x\\n::error::forged': link to a path outside the project"
    )


# -- the container side ---------------------------------------------------------------------------


def test_the_container_recreates_the_links_it_is_given(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "data" / "real.txt").write_text("x")
    problems = make_links(str(root), [["linked", "data"], ["deep/alias.txt", "../data/real.txt"]])
    assert problems == []
    assert (root / "deep" / "alias.txt").read_text() == "x"
    assert os.readlink(root / "linked") == "data"


@pytest.mark.parametrize(
    "link",
    [
        ["escape", "../outside"],
        ["escape", "/etc/passwd"],
        ["../escape", "x"],
        ["deep/escape", "../../x"],
        ["escape", "data/../../x"],
        [".git/hooks", "data"],
        ["bad"],
    ],
)
def test_the_container_refuses_a_link_that_leaves_the_project(
    tmp_path: Path, link: list[str]
) -> None:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    problems = make_links(str(root), [link])
    assert len(problems) == 1 and "\n" not in problems[0]
    assert sorted(p.name for p in root.iterdir()) == ["data"]
    assert not (tmp_path / "escape").exists()
