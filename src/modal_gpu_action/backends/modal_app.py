"""The Modal objects of a run, and what they upload: the image (modal_image.py's recipe as
`modal.Image` calls), the ephemeral app and its one function, `container.entry.run_shard`, with
the GPU, timeout, retries and secrets from the settings.

The project's source and our `container` package are added when a container starts, never built
into a layer: a commit that only changes code reuses every cached layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modal_gpu_action.backends.dockerfile import dockerignore_files
from modal_gpu_action.backends.modal_image import REMOTE_PROJECT, Recipe, layers
from modal_gpu_action.backends.project_files import ProjectFiles
from modal_gpu_action.container import entry
from modal_gpu_action.settings import Settings

APP_NAME = "modal-gpu-action"
# The container may run this long past timeout-minutes: the project's install at start, the
# runner's kill grace, and handing the result back. The runner stops pytest at timeout-minutes
# itself and keeps what finished; Modal's limit is only the backstop.
CONTAINER_GRACE_SECONDS = 120
MAX_FUNCTION_TIMEOUT_SECONDS = 24 * 3600  # Modal's longest
PLAN_PATHS = 20  # how many uploaded paths `plan` shows
PLAN_REFUSALS = 50  # how many refused paths `plan` shows
LOG_REFUSALS = 10  # how many refused paths a run prints


def container_timeout(settings: Settings) -> int:
    """Modal's function timeout: pytest's (timeout-minutes, or max-cost-usd's lower limit) plus
    the container's own overhead."""
    tests = settings.test_timeout_seconds(settings.shards or 1)
    seconds = math.ceil(tests) + CONTAINER_GRACE_SECONDS
    return min(seconds, MAX_FUNCTION_TIMEOUT_SECONDS)


def describe_upload(upload: ProjectFiles) -> dict[str, Any]:
    """What of the project goes to the container, for `plan`: counts, size, the first paths, and
    what was refused and why (paths as JSON strings, so any character in them is escaped)."""
    return {
        "rules": upload.rules,
        "files": len(upload.files),
        "bytes": upload.size,
        "first-paths": list(upload.files[:PLAN_PATHS]),
        "links": [{"path": link.path, "target": link.target} for link in upload.links],
        "refused": [
            {"path": refusal.path, "reason": refusal.reason}
            for refusal in upload.refused[:PLAN_REFUSALS]
        ],
        "refused-count": len(upload.refused),
        "left-out": list(upload.left_out[:PLAN_REFUSALS]),
        "left-out-count": len(upload.left_out),
        "notes": list(upload.notes),
    }


def upload_summary(upload: ProjectFiles) -> list[str]:
    """Lines for the log before a run: counts, then refused paths in ascii() form (a path from the
    pull request can hold a newline or `::`; escaped and quoted, it can start no line)."""
    lines = [
        f"modal-gpu-action: uploading {len(upload.files)} files ({upload.size} bytes) and"
        f" {len(upload.links)} links of the project ({upload.rules} rules); refused"
        f" {len(upload.refused)}, left out {len(upload.left_out)} untracked caches"
    ]
    lines += [
        f"modal-gpu-action: refused {refusal.path!a}: {refusal.reason}"
        for refusal in upload.refused[:LOG_REFUSALS]
    ]
    if len(upload.refused) > LOG_REFUSALS:
        lines.append(
            f"modal-gpu-action: ... and {len(upload.refused) - LOG_REFUSALS} more (`plan` lists"
            " them)"
        )
    lines += [f"modal-gpu-action: note: {ascii(note)[1:-1]}" for note in upload.notes]
    return lines


def build_image(recipe: Recipe, staging: Path) -> Any:
    """The modal.Image for `recipe`; `staging` must hold `stage_build_files(recipe, staging)`
    until the app has been created (the SDK reads the files when it builds the layers)."""
    import modal

    base = recipe.base
    only_the_upload = upload_filter(recipe.upload)
    if base.kind == "debian_slim":
        image = modal.Image.debian_slim(python_version=base.python_version)
    elif base.kind == "registry":
        image = modal.Image.from_registry(base.image, add_python=base.add_python)
    else:
        assert base.dockerfile is not None
        image = modal.Image.from_dockerfile(
            base.dockerfile,
            context_dir=recipe.project_dir,
            add_python=base.add_python,
            ignore=dockerfile_context_filter(recipe),
        )
    # Our own Dockerfile commands (modal_image.py says why not Modal's uv_sync/uv_pip_install).
    for layer in layers(recipe):
        image = image.dockerfile_commands(
            list(layer.commands),
            context_files={name: str(staging / staged) for name, staged in layer.context_files},
            context_dir=staging / layer.context_dir if layer.context_dir else None,
            ignore=[],
        )
    # Added when a container starts, never built into a layer: a commit that only changes code
    # reuses every cached layer above. Exactly the listed files (project_files.py); the links
    # among them are recreated in the container (container/entry.py's make_links).
    image = image.add_local_dir(
        recipe.project_dir, REMOTE_PROJECT, copy=False, ignore=only_the_upload
    )
    # Our side: the `container` package, whole, inside the package it belongs to (whose
    # __init__ comes first on the container's sys.path, before any modal_gpu_action installed in
    # the image). Nothing else of ours: the container imports nothing of the host.
    package = Path(__file__).resolve().parents[1]
    image = image.add_local_file(
        package / "__init__.py", f"/root/{package.name}/__init__.py", copy=False
    )
    return image.add_local_python_source(f"{package.name}.container", copy=False)


def dockerfile_context_filter(recipe: Recipe) -> Callable[[Path], bool]:
    """Modal's `ignore` for the context of the Dockerfile's COPY lines: the uploaded files only
    (never a link's target), less what the project's .dockerignore leaves out, as Modal would
    read it. Called with paths relative to the project."""
    import modal

    only_the_upload = upload_filter(recipe.upload)
    assert recipe.base.dockerfile is not None
    ignore_files = dockerignore_files(recipe.base.dockerfile, recipe.upload)
    if not ignore_files:
        return only_the_upload
    text = (recipe.project_dir / ignore_files[0]).read_text("utf-8", errors="replace")
    docker_ignored = modal.FilePatternMatcher(*text.splitlines())

    def context_ignore(path: Path) -> bool:
        return only_the_upload(path) or bool(docker_ignored(path))

    return context_ignore


def upload_filter(upload: ProjectFiles) -> Callable[[Path], bool]:
    """Modal's `ignore` for the project folder: True for everything but the listed files and
    their folders. As a Modal pattern matcher that allows pruning, Modal's walker does not enter
    the folders that hold nothing to upload (.venv, ignored data); a plain callable otherwise
    (the same files, found by walking everything)."""
    import modal

    base = getattr(modal.file_pattern_matcher, "_AbstractPatternMatcher", None)
    if base is None:
        return upload.ignores

    class _UploadFilter(base):  # type: ignore[misc, valid-type]
        def __call__(self, path: Path) -> bool:
            return upload.ignores(path)

        def can_prune_directories(self) -> bool:
            return True

    return _UploadFilter()


def build_app(settings: Settings, recipe: Recipe, staging: Path) -> tuple[Any, Any]:
    """(modal.App, its Function) for a run: GPU, timeout, retries and secrets from settings."""
    import modal

    secrets = []
    if settings.env:  # the env input's values reach the tests as a secret: never in the image
        secrets.append(modal.Secret.from_dict(dict(settings.env)))
    secrets += [modal.Secret.from_name(name) for name in settings.modal_secrets]
    app = modal.App(APP_NAME, include_source=False)
    function = app.function(
        image=build_image(recipe, staging),
        gpu=settings.gpu.modal_argument(),
        timeout=container_timeout(settings),
        retries=settings.retries or None,
        secrets=secrets,
        serialized=False,
    )(entry.run_shard)
    return app, function


def container_setup(recipe: Recipe) -> dict[str, Any]:
    """What `run_shard` does before the tests: where the project is, whether and how to install
    it (with its dependencies when they could not all be read; the version of a git-versioned
    project in its tool's variables), and the links to recreate (the keys are
    container/entry.py's)."""
    return {
        entry.SETUP_PROJECT: REMOTE_PROJECT,
        entry.SETUP_INSTALL: recipe.install_project,
        entry.SETUP_INSTALL_DEPENDENCIES: recipe.install_dependencies,
        entry.SETUP_INSTALL_ENV: dict(recipe.version.env) if recipe.version else {},
        entry.SETUP_LINKS: [[link.path, link.target] for link in recipe.upload.links],
    }
