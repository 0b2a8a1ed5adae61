"""The crash records the containers relay through their logs while the tests run
(container/relay.py), taken out of the output people see and kept per shard: a shard whose
container never answers (cancelled, stopped at Modal's time limit, preempted, killed) still
reports every test that finished.

    relay = LogRelay()
    shard_records = relay.new_shard()      # its .token goes to the container in the setup
    shown = relay.filter(fd, text)         # each piece of log text Modal streams, in order
    shard_records.records                  # what arrived, for record.py's synthesize_junit

The text arrives in pieces that need not end at a line's end, stdout and stderr apart, every
container's output on one stream (as Modal itself prints it); a frame line is taken whole or not
at all, the rest passes on unchanged and at once. No `modal` import here: backends/modal.py hooks
`filter` into Modal's output.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from modal_gpu_action.container.protocol import GpuFacts
from modal_gpu_action.container.relay import MARKER, decode


@dataclass
class ShardRecords:
    """What one shard's containers relayed: the latest attempt's frames, by their number."""

    token: str
    attempt: str = ""
    attempts: int = 0  # containers heard from (a retried shard has more than one)
    frames: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    earlier: set[str] = field(default_factory=set)  # attempts left behind

    def take(self, attempt: str, seq: int, records: list[dict[str, Any]]) -> None:
        if attempt != self.attempt:
            if attempt in self.earlier:
                return  # a late line of a container that was replaced: its run is not this one
            if self.attempt:
                self.earlier.add(self.attempt)
            self.attempt, self.frames = attempt, {}
            self.attempts += 1
        self.frames.setdefault(seq, records)

    @property
    def heard(self) -> bool:
        return bool(self.attempt)

    @property
    def missing(self) -> int:
        """Frames that did not arrive before the last one that did."""
        return (max(self.frames) + 1 - len(self.frames)) if self.frames else 0

    @property
    def records(self) -> list[dict[str, Any]]:
        """The crash record as far as it arrived, with a `note` (an error entry in the report)
        when part of it is missing or the shard was started again."""
        out = [record for seq in sorted(self.frames) for record in self.frames[seq]]
        if self.missing:
            out.append(
                _note(
                    f"{self.missing} of the {max(self.frames) + 1} batches of records relayed"
                    " while the tests ran did not arrive: the tests in them are missing from"
                    " this report."
                )
            )
        if self.attempts > 1:
            out.append(
                _note(
                    f"This shard ran in {self.attempts} containers (Modal started it again after"
                    " the container before was lost): these are the last one's tests."
                )
            )
        return out

    @property
    def gpu(self) -> GpuFacts | None:
        """The GPUs the container reported before pytest started."""
        for record in self.frames.get(0, [])[:1]:
            if record.get("e") == "gpu":
                try:
                    return GpuFacts.from_dict(record["facts"])
                except (KeyError, TypeError, ValueError):
                    return None
        return None


def _note(message: str) -> dict[str, Any]:
    return {"e": "note", "name": "relayed record", "message": message}


class LogRelay:
    """Every shard's records, and the filter that takes their frames out of the log."""

    def __init__(self) -> None:
        self.shards: dict[str, ShardRecords] = {}
        self.unreadable = 0  # frame lines of ours that arrived damaged (not shown)
        self._held: dict[int, str] = {}  # per file descriptor: a line start that may be a frame
        self._mid_line: dict[int, bool] = {}

    def new_shard(self) -> ShardRecords:
        records = ShardRecords(secrets.token_hex(12))
        self.shards[records.token] = records
        return records

    def filter(self, fd: int, text: str) -> str:
        """Take the frames out of `text` (the next piece of the stream `fd`); what is left, to
        show. A line that starts like a frame is held until its end; any other text passes at
        once."""
        buffer = self._held.pop(fd, "") + text
        shown: list[str] = []
        mid_line = self._mid_line.get(fd, False)
        while buffer:
            end = buffer.find("\n")
            if mid_line:
                if end < 0:
                    shown.append(buffer)
                    break
                shown.append(buffer[: end + 1])
                buffer, mid_line = buffer[end + 1 :], False
                continue
            if end < 0:
                if buffer.startswith(MARKER) or MARKER.startswith(buffer):
                    self._held[fd] = buffer
                else:
                    shown.append(buffer)
                    mid_line = True
                break
            line, buffer = buffer[: end + 1], buffer[end + 1 :]
            if not (line.startswith(MARKER + " ") and self._take(line)):
                shown.append(line)
        self._mid_line[fd] = mid_line
        return "".join(shown)

    def flush(self) -> str:
        """Text still held (a line that never ended): to show at the end."""
        held = "".join(self._held.values())
        self._held.clear()
        return held

    def _take(self, line: str) -> bool:
        """True when the line was one of ours (kept, or refused as damaged): not to show."""
        parts = line.split(" ", 2)
        shard = self.shards.get(parts[1]) if len(parts) > 2 else None
        if shard is None:
            return False  # not a frame of this run: the tests' own text
        frame = decode(line)
        if frame is None:
            self.unreadable += 1
            return True
        shard.take(frame.attempt, frame.seq, frame.records)
        return True
