"""The Modal image's inputs: where the image starts (`image`, `dockerfile`, `python-version`) and
what it installs (`requirements`, `extras`, `groups`, `extra-packages`).

Paths and versions are checked for every backend; the rest only for backend `modal`, the one that
builds an image: one starting point at most, the project's dependency declarations readable and
naming the extras and groups asked for (settings/dependencies.py), packages that are requirements
and not options. backends/modal_image.py builds the recipe from what is here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from modal_gpu_action.settings.dependencies import DependencyFiles, read_dependency_files
from modal_gpu_action.settings.values import (
    SettingsError,
    existing_file,
    invalid,
    items,
    optional_file,
)

_PYTHON_VERSION = re.compile(r"^3\.(\d+)$")
_WHERE = "the working directory"


@dataclass(frozen=True, slots=True)
class ImageSettings:
    python_version: str = "3.12"  # debian_slim's, or the one added to an image without Python
    registry_image: str = ""  # input 'image': a registry reference to start from
    dockerfile: Path | None = None
    requirements: tuple[Path, ...] = ()
    extras: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    extra_packages: tuple[str, ...] = ()
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
    )
    if backend != "modal":
        return settings
    _check_starting_point(settings)
    files = read_dependency_files(
        working_directory, settings.requirements, settings.extras, settings.groups
    )
    for package in settings.extra_packages:
        if package.startswith("-"):
            raise SettingsError(
                f"invalid value {package!r} for input 'extra-packages': expected requirements"
                " such as `pytest-xdist` or `numpy>=2`, not options"
            )
    return replace(settings, dependency_files=files)


def _check_starting_point(settings: ImageSettings) -> None:
    if settings.registry_image and settings.dockerfile:
        raise SettingsError(
            "inputs 'image' and 'dockerfile' were both given: expected at most one of them"
        )
    if any(c.isspace() for c in settings.registry_image):
        raise invalid(
            "image",
            settings.registry_image,
            "an image reference such as nvcr.io/nvidia/pytorch:25.01-py3",
        )


def _python_version(text: str) -> str:
    value = text.strip()
    match = _PYTHON_VERSION.match(value)
    if not match or not 9 <= int(match.group(1)) <= 14:
        raise invalid("python-version", text, "a version from 3.9 to 3.14, such as 3.12")
    return value
