"""The Modal image's inputs: where the image starts (`image`, `dockerfile`, `python-version`) and
what it installs (`requirements`, `extras`, `groups`, `test-dependencies`, `extra-packages`).

Paths and versions are checked for every backend; the rest only for backend `modal`, the one that
builds an image, and all of it before any network call: one starting point at most, an image
reference Docker would accept, the project's dependency declarations readable and naming the
extras and groups asked for (settings/dependencies.py), packages that are PEP 508 requirements,
and a python-version the project's requires-python allows (when the image's Python is ours to
choose). backends/modal_image.py builds the recipe from what is here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from modal_gpu_action.settings.dependencies import (
    TEST_DEPENDENCY_CHOICES,
    DependencyFiles,
    TestDependencies,
    read_dependency_files,
)
from modal_gpu_action.settings.values import (
    SettingsError,
    choice,
    existing_file,
    invalid,
    items,
    optional_file,
)

_PYTHON_VERSION = re.compile(r"^3\.(\d+)$")
_PYTHON_MINORS = range(9, 15)  # what python-version accepts: 3.9 to 3.14
_WHERE = "the working directory"
# Registry images whose name says they carry Python (and pip); the others get Modal's standalone
# Python (`add_python=`). Modal cannot tell offline either; `plan` shows the choice.
_PYTHON_IMAGE_HINTS = ("python", "pytorch", "tensorflow", "jax", "conda", "py3", "huggingface")
# Docker's reference grammar (github.com/distribution/reference): [host[:port]/]path[:tag][@digest]
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)


@dataclass(frozen=True, slots=True)
class ImageSettings:
    python_version: str = "3.12"  # debian_slim's, or the one added to an image without Python
    registry_image: str = ""  # input 'image': a registry reference to start from
    dockerfile: Path | None = None
    requirements: tuple[Path, ...] = ()
    extras: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    extra_packages: tuple[str, ...] = ()
    test_dependencies: TestDependencies = "auto"
    # The project's declarations, read for backend `modal` (None for `local`: no image is built).
    dependency_files: DependencyFiles | None = None


def load_image_settings(
    raw: Mapping[str, str], working_directory: Path, *, backend: str
) -> ImageSettings:
    settings = ImageSettings(
        python_version=_python_version(raw["python-version"]),
        registry_image=raw["image"].strip(),
        dockerfile=optional_file(raw, "dockerfile", working_directory, _WHERE),
        requirements=tuple(
            existing_file(item, "requirements", working_directory, _WHERE)
            for item in items(raw["requirements"])
        ),
        extras=items(raw["extras"]),
        groups=items(raw["groups"]),
        extra_packages=tuple(
            line.strip() for line in raw["extra-packages"].splitlines() if line.strip()
        ),
        test_dependencies=choice(raw, "test-dependencies", TEST_DEPENDENCY_CHOICES),  # type: ignore[arg-type]
    )
    if backend != "modal":
        return settings
    _check_starting_point(settings)
    for package in settings.extra_packages:
        _check_requirement(package)
    files = read_dependency_files(
        working_directory,
        settings.requirements,
        settings.extras,
        settings.groups,
        settings.test_dependencies,
    )
    if not settings.dockerfile and not (
        settings.registry_image and image_has_python(settings.registry_image)
    ):
        _check_requires_python(settings.python_version, files)
    return replace(settings, dependency_files=files)


def image_has_python(reference: str) -> bool:
    """Whether a registry image's name says it carries Python (python:3.12, pytorch/pytorch,
    nvcr.io/nvidia/pytorch:25.01-py3); CUDA or OS images (nvidia/cuda, ubuntu) do not."""
    name = reference.lower().rsplit("@", 1)[0]
    return any(hint in name for hint in _PYTHON_IMAGE_HINTS)


def _check_requirement(line: str) -> None:
    """One `extra-packages` line: a PEP 508 requirement of a package index (or a URL Modal's
    builder can reach), not a pip option nor a file of this machine."""
    from packaging.requirements import InvalidRequirement, Requirement  # backend modal only

    expected = "a requirement a line (PEP 508) such as `pytest-xdist` or `numpy>=2`"
    if line.startswith("-"):
        raise invalid("extra-packages", line, expected + ", not options")
    try:
        requirement = Requirement(line)
    except InvalidRequirement as error:
        reason = str(error).splitlines()[0]
        raise invalid("extra-packages", line, f"{expected} ({reason})") from None
    if requirement.url and requirement.url.startswith("file:"):
        raise invalid(
            "extra-packages", line, expected + ", not a file: the image is built on Modal"
        )


def _check_requires_python(version: str, files: DependencyFiles) -> None:
    """python-version must be one the project's requires-python allows (pyproject.toml's, or
    setup.cfg's/setup.py's python_requires): else uv and pip refuse the project at build time."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet  # backend modal only

    declared = files.metadata.requires_python
    if not declared:
        return
    try:
        allowed = SpecifierSet(declared)
    except InvalidSpecifier:
        return  # not ours to judge: the installer says what it makes of it

    def allows(minor: str) -> bool:
        return any(allowed.contains(f"{minor}.{patch}", prereleases=True) for patch in range(31))

    if allows(version):
        return
    fits = [f"3.{m}" for m in _PYTHON_MINORS if allows(f"3.{m}")]
    raise invalid(
        "python-version",
        version,
        f"a version the project's requires-python {declared!r} ({files.metadata.where}) allows: "
        + (", ".join(fits) if fits else f"none of 3.{_PYTHON_MINORS[0]} to 3.{_PYTHON_MINORS[-1]}"),
    )


def _check_starting_point(settings: ImageSettings) -> None:
    if settings.registry_image and settings.dockerfile:
        raise SettingsError(
            "inputs 'image' and 'dockerfile' were both given: expected at most one of them"
        )
    reference = settings.registry_image
    if reference and (len(reference) > 255 or not _IMAGE_REFERENCE.match(reference)):
        raise invalid(
            "image",
            reference,
            "an image reference such as nvcr.io/nvidia/pytorch:25.01-py3"
            " ([registry[:port]/]name[:tag][@sha256:digest], the name in lowercase)",
        )


def _python_version(text: str) -> str:
    value = text.strip()
    match = _PYTHON_VERSION.match(value)
    if not match or int(match.group(1)) not in _PYTHON_MINORS:
        raise invalid("python-version", text, "a version from 3.9 to 3.14, such as 3.12")
    return value
