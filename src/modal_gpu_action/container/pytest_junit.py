"""The JUnit report a run hands back: pytest's own file when it is whole, else the one
synthesised from the crash record (record.py).

pytest's file can be rewritten by the tests (a conftest can), so it is read capped and never
through a link, a pipe or a device, and it is not used when it declares a document type
(entities), has another root element or declares an encoding pytest never writes: each refusal
becomes an error case saying why, and the record stands in. Whether it is whole is judged from
its ends alone: the host parses it, once, and reports any damage inside it.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import IO, BinaryIO

from .record import _note, _open_plain_file, _Refused, _why, read_progress, synthesize_junit

# Past the cap, pytest's JUnit file is replaced by the report synthesised from the record, with
# an error case saying so. The host's cap on a report (report/junit_reader.py; a test checks they
# agree): a file the host reads whole is used whole. Below it, a run of more than about 280,000
# tests (about 230 bytes a passing case with its node id) lost pytest's report to the record.
MAX_JUNIT_BYTES = 256 * 1024 * 1024
MAX_JUNIT_BYTES_ENV = "MODAL_GPU_ACTION_MAX_JUNIT_BYTES"  # a lower cap, in bytes (tests use it)


def choose_junit(
    path: Path, progress: Path, reason: str, tail: str, *, open_file: bool = False
) -> bytes | BinaryIO:
    """pytest's XML when it is a whole JUnit report (its bytes as read: the host parses them as
    they are); else the one synthesised from the crash record at `progress` (read only then);
    else whatever pytest left (possibly half a file, possibly nothing).

    With `open_file` (the local backend, whose host is this process), a whole file of pytest's
    comes back open at its start, judged by its ends alone, for the host to read a chunk at a
    time as `report` reads a file: never held whole (25 MB at 100,000 tests, each page of a new
    buffer a fault), and readable after its folder is removed. The caller closes it. What binds
    it from then on is the host reader's own checks (its 256 MiB cap, entities refused): a
    process the tests left running could rewrite it after its ends were judged, as it could
    have written anything before pytest ended.

    The tests can rewrite pytest's file. One that is no regular file, is larger than the cap
    (MAX_JUNIT_BYTES, or the lower one MAX_JUNIT_BYTES_ENV asks for), declares a document type
    (entities), has another root element or declares an encoding pytest never writes is not
    used: the record stands in, with an error case saying why and what it was.
    """
    cap = _junit_cap()
    data = b""
    try:
        with _open_plain_file(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > cap:
                raise _Refused(errno.EFBIG, f"it is {size:,} bytes, more than the {cap:,} read")
            if open_file and _whole_junit(handle.read(_ENDS), _last_bytes(handle, size)):
                handle.seek(0)
                return os.fdopen(os.dup(handle.fileno()), "rb")  # the `with` closes its own
            handle.seek(0)
            data = handle.read(cap + 1)
            if len(data) > cap:  # it grew since
                size = max(os.fstat(handle.fileno()).st_size, len(data))
                raise _Refused(errno.EFBIG, f"it is {size:,} bytes, more than the {cap:,} read")
        if _whole_junit(data, data[-_ENDS:]):
            return data
    except FileNotFoundError:
        pass  # pytest wrote none: it crashed, was stopped or never started
    except OSError as error:
        note = _note(
            "pytest's JUnit report",
            f"pytest's JUnit report was not used: {_why(error)}. The results come from the"
            " action's record of the run instead.",
            "A conftest or a test can rewrite the file pytest writes; the action's pytest plugin"
            " records each test's outcome as it ends, and that record stands in for the file.",
        )
        records = read_progress(progress)
        return synthesize_junit([*records, note], unfinished_reason=reason, output_tail=tail)
    records = read_progress(progress)
    if any(record.get("e") != "note" for record in records) or not data.strip():
        return synthesize_junit(records, unfinished_reason=reason, output_tail=tail)
    return data


# Of pytest's file, what is judged at each end: its prolog and root element, its root's end.
_ENDS = 64 * 1024


def _last_bytes(handle: IO[bytes], size: int) -> bytes:
    handle.seek(max(size - _ENDS, 0))
    return handle.read(_ENDS)


def _junit_cap() -> int:
    """MAX_JUNIT_BYTES, or the lower cap that MODAL_GPU_ACTION_MAX_JUNIT_BYTES asks for."""
    text = os.environ.get(MAX_JUNIT_BYTES_ENV, "").strip()
    if text.isdigit() and 0 < int(text) < MAX_JUNIT_BYTES:
        return int(text)
    return MAX_JUNIT_BYTES


def _whole_junit(data: bytes, last: bytes) -> bool:
    """True for what pytest writes when it finishes its report, False for a file cut short
    (pytest killed while writing it), judged from its ends alone (`data` from its start, `last`
    its last bytes; a prolog longer than `data` is not whole), without parsing it (the host
    parses it once, and reports any damage inside as a problem of the run): a prolog of an XML
    declaration, comments and processing instructions, then <testsuites> or <testsuite>, and at
    the end the closing tag of that root. _Refused for what pytest never writes: a document
    type declaration (its entities could expand into gigabytes or read local files), another
    root element, an encoding other than UTF-8 (or its ASCII subset)."""
    position = 0
    while True:
        position = _skip_space(data, position)
        if data.startswith(b"<?", position):
            end = data.find(b"?>", position)
            if end < 0:
                return False
            declaration = data[position : end + 2]
            encoding = _ENCODING.search(declaration) if position == 0 else None
            if encoding and encoding.group(1).lower() not in _ENCODINGS:
                name = encoding.group(1).decode("ascii", "replace")[:40]
                raise _Refused(errno.EINVAL, f"it declares the encoding {name}, not UTF-8")
            position = end + 2
        elif data.startswith(b"<!--", position):
            end = data.find(b"-->", position + 4)
            if end < 0:
                return False
            position = end + 3
        elif data.startswith(b"<!", position):
            if data[position : position + 9].upper() == b"<!DOCTYPE":
                raise _Refused(
                    errno.EINVAL, "it declares a document type (entities), as pytest never does"
                )
            return False
        else:
            break
    root = _ROOT.match(data, position)
    if root is None:
        if data.startswith(b"<", position) and len(data) > position + 1:
            name = _NAME.match(data, position + 1)
            text = (name.group() if name else data[position + 1 : position + 20]).decode(
                "utf-8", "replace"
            )
            raise _Refused(errno.EINVAL, f"its root element is <{text[:100]}>, not <testsuites>")
        return False  # nothing, or only the start of a prolog
    # pytest writes the root with its suites inside, never as an empty element
    return last.rstrip().endswith(b"</" + root.group(1) + b">")


_ENCODING = re.compile(rb"""encoding\s*=\s*["']([^"']*)["']""")
_ENCODINGS = (b"utf-8", b"utf8", b"us-ascii", b"ascii")
_ROOT = re.compile(rb"<(testsuites|testsuite)(?=[\s/>])")
_NAME = re.compile(rb"[^\s/>]+")
_SPACE = re.compile(rb"[ \t\r\n]*")


def _skip_space(data: bytes, position: int) -> int:
    return _SPACE.match(data, position).end()  # type: ignore[union-attr]  # matches nothing too
