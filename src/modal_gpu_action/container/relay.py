"""The crash record relayed to the client while pytest runs, through the container's own log.

A Modal call hands its value back only when the function returns: a container that is cancelled,
stopped at its time limit, preempted or killed returns nothing, and what its tests did would be
lost with it. Its output, though, reaches the client as it is printed (Modal streams a running
container's logs to `app.run()`). So, while pytest runs, `follow` reads the progress plugin's
record as it grows and `Relay` prints each new batch of records to stderr as one framed line:

    modal-gpu-action-records TOKEN ATTEMPT SEQ PAYLOAD CRC

TOKEN is the shard's (the client makes one per shard, so a line names its shard and the tests'
own output cannot pass for one by chance), ATTEMPT is this container's (a retried shard starts
another), SEQ counts this attempt's frames from 0 (a gap is a frame that did not arrive),
PAYLOAD is base64 of zlib-compressed JSON (a list of records) and CRC its crc32 in hex: a line
cut or mixed with another container's output in transit is refused whole. The client takes
these lines out of the output it shows (backends/modal_records.py) and, for a shard that never
answered, builds the report from them as record.py does from the file.

What travels is the record less the bulk: a failure's text is cut to RELAY_TEXT characters (the
whole text comes with the container's answer when there is one). Standard library only.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import stat
import threading
import uuid
import zlib
from typing import Any, Callable

MARKER = "modal-gpu-action-records"
RELAY_TEXT = 1500  # characters of a failure's text that travel
RELAY_MESSAGE = 300  # characters of its message
FRAME_JSON_BYTES = 6000  # of records (uncompressed JSON) gathered into one frame
# A frame line longer than this is split in two (unless it holds one record): a write of at most
# PIPE_BUF bytes (4096) is never mixed with another, and a reader that keeps up reads it whole.
FRAME_LINE_BYTES = 3800
MAX_RELAY_BYTES = 8 * 1024 * 1024  # of frames per attempt; past it, one note says so
MAX_RECORD_BYTES = 64 * 1024 * 1024  # of the record file read
MAX_FRAME_RECORDS_BYTES = 4 * 1024 * 1024  # a frame's decompressed size, read side
FOLLOW_SECONDS = 0.1  # how often the record is read while pytest runs

Record = dict[str, Any]


def clip(record: Record) -> Record:
    """The record as it travels: long texts cut (the record itself when nothing is long)."""
    out = record
    for key, limit in (("text", RELAY_TEXT), ("message", RELAY_MESSAGE)):
        value = out.get(key)
        if isinstance(value, str) and len(value) > limit:
            out = dict(out) if out is record else out
            out[key] = value[:limit] + f"\n[... {len(value) - limit:,} more characters not relayed]"
    return out


def _json(record: Record) -> str:
    return json.dumps(record, separators=(",", ":"), default=str)


def encode(token: str, attempt: str, seq: int, records: list[Record]) -> str:
    """One frame line (no newline)."""
    return _frame(token, attempt, seq, [_json(record) for record in records])


def _frame(token: str, attempt: str, seq: int, texts: list[str]) -> str:
    """One frame line of records already written as JSON (each serialised once)."""
    data = ("[" + ",".join(texts) + "]").encode("utf-8")
    payload = base64.b64encode(zlib.compress(data, 6)).decode("ascii")
    crc = zlib.crc32(payload.encode("ascii")) & 0xFFFFFFFF
    return f"{MARKER} {token} {attempt} {seq} {payload} {crc:08x}"


class Frame:
    """A frame line read back."""

    __slots__ = ("attempt", "records", "seq", "token")

    def __init__(self, token: str, attempt: str, seq: int, records: list[Record]) -> None:
        self.token, self.attempt, self.seq, self.records = token, attempt, seq, records


def decode(line: str) -> Frame | None:
    """The frame a line holds, or None when it is not a whole, intact one."""
    parts = line.strip().split(" ")
    if len(parts) != 6 or parts[0] != MARKER or not parts[3].isdigit():
        return None
    token, attempt, seq, payload, crc = parts[1:]
    try:
        if int(crc, 16) != zlib.crc32(payload.encode("ascii")) & 0xFFFFFFFF:
            return None
        inflater = zlib.decompressobj()
        data = inflater.decompress(
            base64.b64decode(payload, validate=True), MAX_FRAME_RECORDS_BYTES
        )
        if inflater.unconsumed_tail:
            return None
        records = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeError, zlib.error, RecursionError):
        return None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        return None
    return Frame(token, attempt, int(seq), records)


class Relay:
    """The container's side: `send(records)` prints them as frames on stderr (one `write` each),
    up to MAX_RELAY_BYTES; never raises."""

    def __init__(self, token: str, write: Callable[[bytes], Any] | None = None) -> None:
        self.token = token
        self.attempt = uuid.uuid4().hex[:12]
        self.seq = 0
        self.sent = 0
        self.full = False
        self._write = write or (lambda data: os.write(2, data))
        self._lock = threading.Lock()

    def send(self, records: list[Record]) -> None:
        if not records:
            return
        with self._lock:
            for batch in _batches([_json(clip(r)) for r in records]):
                self._send(batch)

    def _send(self, batch: list[str]) -> None:
        """Send records written as JSON, in as many frames as their size needs."""
        if self.full:
            return
        line = _frame(self.token, self.attempt, self.seq, batch) + "\n"
        if len(line) > FRAME_LINE_BYTES and len(batch) > 1:
            self._send(batch[: len(batch) // 2])
            self._send(batch[len(batch) // 2 :])
            return
        record: Any = json.loads(batch[0]) if len(line) > FRAME_LINE_BYTES else {}
        items = record.get("items") if isinstance(record, dict) else None
        if isinstance(items, list) and len(items) > 1:  # the tests collected, in one record
            half = len(items) // 2
            halves = (items[:half], items[half:])
            self._send([_json({**record, "items": part}) for part in halves])
            return
        if self.sent + len(line) > MAX_RELAY_BYTES:
            self.full = True
            note = {
                "e": "note",
                "name": "relayed record",
                "message": f"The record relayed while the tests ran stopped at"
                f" {MAX_RELAY_BYTES:,} bytes: tests that ended later are missing from this"
                " report.",
            }
            line = encode(self.token, self.attempt, self.seq, [note]) + "\n"
        try:
            data = line.encode("ascii")
            while data:  # a pipe may take a long line in parts
                data = data[self._write(data) :]
        except (OSError, ValueError, TypeError):
            self.full = True
            return
        self.sent += len(line)
        self.seq += 1


def _batches(texts: list[str]) -> list[list[str]]:
    batches: list[list[str]] = [[]]
    size = 0
    for text in texts:
        if batches[-1] and size + len(text) > FRAME_JSON_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(text)
        size += len(text)
    return batches


def follow(
    path: str, on_records: Callable[[list[Record]], None], stop: threading.Event
) -> threading.Thread:
    """A thread that reads the record at `path` as it grows (every FOLLOW_SECONDS) and calls
    `on_records` with each batch of new whole lines, until `stop` is set; then it reads what is
    left once more and ends. The tests can replace the file: a link, a pipe or a device in its
    place is not read (the run's own report says so: record.py)."""
    thread = threading.Thread(
        target=_follow, args=(path, on_records, stop), name="record-relay", daemon=True
    )
    thread.start()
    return thread


def _follow(path: str, on_records: Callable[[list[Record]], None], stop: threading.Event) -> None:
    fd: int | None = None
    pending = b""
    read = 0
    try:
        while True:
            last = stop.wait(FOLLOW_SECONDS)
            if fd is None:
                fd = _open(path)
            if fd is not None and read < MAX_RECORD_BYTES:
                chunk = _read_new(fd, MAX_RECORD_BYTES - read)
                read += len(chunk)
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                records = []
                for line in lines:
                    try:
                        record = json.loads(line.decode("utf-8", "replace"))
                    except (ValueError, RecursionError):
                        continue
                    if isinstance(record, dict):
                        records.append(record)
                if records:
                    with contextlib.suppress(Exception):  # the relay never stops the run
                        on_records(records)
            if last:
                return
    finally:
        if fd is not None and fd >= 0:
            os.close(fd)


def _open(path: str) -> int | None:
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ENOENT:
            return None  # not written yet
        return -1  # refused (a link): never read
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return -1
    return fd


def _read_new(fd: int, limit: int) -> bytes:
    if fd < 0:
        return b""
    chunks = []
    while limit > 0:
        try:
            chunk = os.read(fd, min(limit, 1 << 20))
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        limit -= len(chunk)
    return b"".join(chunks)
