"""A project's Dockerfile, read as far as the Modal recipe needs it: whether its image has Python,
which files of the build context its COPY and ADD lines take (for the dependency key), and which
.dockerignore Modal would read. Never built here: Modal builds it.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path, PurePosixPath

from modal_gpu_action.backends.project_files import ProjectFiles
from modal_gpu_action.settings.image import image_has_python


def dockerfile_has_python(path: Path) -> bool:
    """Whether the final stage starts from an image with Python or installs one in a RUN line."""
    stages: dict[str, bool] = {}
    has = False
    for instruction, args in dockerfile_instructions(path.read_text(encoding="utf-8")):
        if instruction == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            image = words[0] if words else ""
            has = stages.get(image.lower(), image_has_python(image))
            if len(words) >= 3 and words[1].lower() == "as":
                stages[words[2].lower()] = has
        elif instruction == "RUN" and re.search(r"\bpython3?(\.\d+)?\b", args):
            has = True  # e.g. apt-get install python3 python3-pip
    return has


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        current += (" " if current else "") + line.rstrip("\\").strip()
        if line.endswith("\\"):
            continue
        instruction, _, args = current.partition(" ")
        out.append((instruction.upper(), args.strip()))
        current = ""
    return out


def dockerfile_copies(dockerfile: Path, upload: ProjectFiles) -> tuple[Path, ...]:
    """Files of the build context that the Dockerfile's COPY/ADD lines take (the project folder
    itself, when one copies it whole), among the files that are uploaded (project_files.py): the
    context holds nothing else. Follows Docker's rules closely enough for a cache key."""
    context = upload.root
    found: list[Path] = []
    text = dockerfile.read_text(encoding="utf-8", errors="replace")
    for instruction, args in dockerfile_instructions(text):
        if instruction not in ("COPY", "ADD"):
            continue
        if args.startswith("["):
            try:
                parts = [str(p) for p in json.loads(args)]
            except ValueError:
                continue
        else:
            parts = shlex.split(args)
        if any(p.startswith("--from") for p in parts):
            continue
        sources = [p for p in parts if not p.startswith("--")][:-1]
        for source in sources:
            if "://" in source:
                continue
            pattern = source.lstrip("/") or "."
            if pattern in (".", "./"):
                found.append(context)
                found.extend(context / f for f in upload.files)
                continue
            if ".." in PurePosixPath(pattern).parts:
                continue  # outside the context: Modal refuses it
            for match in sorted(context.glob(pattern)):
                relative = match.relative_to(context).as_posix()
                if upload.holds(relative):
                    found.append(match)
                else:
                    found.extend(context / f for f in upload.files_under(relative))
    for ignore_file in dockerignore_files(dockerfile, upload):
        found.append(upload.root / ignore_file)
    return tuple(dict.fromkeys(found))


def dockerignore_files(dockerfile: Path, upload: ProjectFiles) -> list[str]:
    """The .dockerignore that Modal would read for `dockerfile` (`<name>.dockerignore` or
    `.dockerignore` beside it, else the context's), when it is an uploaded file; at most one."""
    beside = dockerfile.parent.relative_to(upload.root).as_posix()
    beside = "" if beside == "." else beside + "/"
    for name in (
        f"{beside}{dockerfile.name}.dockerignore",
        f"{beside}.dockerignore",
        ".dockerignore",
    ):
        if upload.holds(name):
            return [name]
    return []
