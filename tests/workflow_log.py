"""The workflow commands GitHub's runner would act on in a step's log, read as the runner reads
them: one command per line (leading spaces ignored), and nothing but the matching `::TOKEN::`
between `::stop-commands::TOKEN` and it."""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMMAND = re.compile(r"::([A-Za-z-]+)(?: ([^:]*))?::(.*)")


@dataclass(frozen=True)
class Command:
    name: str
    properties: str
    message: str


def processed_commands(log: str) -> list[Command]:
    commands: list[Command] = []
    stop_token: str | None = None
    for line in re.split(r"\r\n|\r|\n", log):
        text = line.lstrip()
        if stop_token is not None:
            if text == f"::{stop_token}::":
                stop_token = None
            continue
        match = _COMMAND.fullmatch(text)
        if not match:
            continue
        command = Command(match.group(1), match.group(2) or "", match.group(3))
        if command.name == "stop-commands":
            stop_token = command.message
        commands.append(command)
    return commands
