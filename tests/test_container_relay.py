"""container/relay.py: the crash record relayed through the container's log while pytest runs,
and read back on the client's side (backends/modal_records.py)."""

from __future__ import annotations

import os
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from test_container_run import project, request_for

from modal_gpu_action.backends.modal_records import LogRelay
from modal_gpu_action.container import entry, relay
from modal_gpu_action.container.record import synthesize_junit
from modal_gpu_action.container.run import run_tests


def outcomes(junit_xml: str) -> dict[str, str]:
    found = {}
    for case in ET.fromstring(junit_xml).iter("testcase"):
        tags = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        found[f"{case.get('classname')}::{case.get('name')}"] = tags[0] if tags else "passed"
    return found


def test_a_run_relays_its_record_and_the_relay_gives_the_same_report(tmp_path: Path) -> None:
    batches: list[list[dict[str, Any]]] = []
    result = run_tests(
        request_for(project(tmp_path, "failing")), stream=None, on_records=batches.append
    )

    # the GPU facts once, as the probe found them beside pytest's start
    assert [b for b in batches if b[0]["e"] == "gpu"] == [
        [{"e": "gpu", "facts": result.gpu.to_dict()}]
    ]
    records = [record for batch in batches for record in batch if record["e"] != "gpu"]
    assert records[-1]["e"] == "sessionfinish"
    assert (
        outcomes(synthesize_junit(records))
        == outcomes(result.junit_xml)
        == {
            "tests.test_mixed::test_passes": "passed",
            "tests.test_mixed::test_fails": "failure",
        }
    )


def test_a_crash_leaves_the_tests_that_finished_relayed(tmp_path: Path) -> None:
    batches: list[list[dict[str, Any]]] = []
    run_tests(request_for(project(tmp_path, "crash")), stream=None, on_records=batches.append)

    records = [record for batch in batches for record in batch]
    found = outcomes(synthesize_junit(records, unfinished_reason="lost"))
    assert {test: outcome for test, outcome in found.items() if outcome != "skipped"} == {
        "tests.test_crash::test_first": "passed",
        "tests.test_crash::test_second": "passed",
        "tests.test_crash::test_dies": "error",
    }  # and the tests after it, when the record names them, are skipped as not run


def test_the_container_prints_frames_that_the_client_takes_out_of_the_log(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """entry.run_shard as Modal calls it, with a shard's token: its stderr, read as the client
    reads the log, gives the shard's records and nothing to show."""
    client = LogRelay()
    shard = client.new_shard()
    folder = project(tmp_path, "failing")
    setup = {entry.SETUP_PROJECT: str(folder), entry.SETUP_RELAY: shard.token}

    answer = entry.run_shard(request_for(folder).to_dict(), setup)
    out, err = capfd.readouterr()

    assert "result" in answer
    assert relay.MARKER in err and relay.MARKER not in out
    assert client.filter(2, err) == ""
    assert client.filter(1, out) == out
    assert client.unreadable == 0 and shard.attempts == 1 and shard.missing == 0
    assert shard.gpu is not None
    assert outcomes(synthesize_junit(shard.records)) == outcomes(answer["result"]["junit_xml"])


def test_without_a_token_nothing_is_relayed(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    folder = project(tmp_path, "failing")
    entry.run_shard(request_for(folder).to_dict(), {entry.SETUP_PROJECT: str(folder)})
    assert relay.MARKER not in capfd.readouterr().err


def test_a_frame_round_trips_with_long_texts_cut() -> None:
    records = [{"e": "report", "nodeid": "t::x", "text": "x" * 50_000, "message": "m" * 1000}]
    line = relay.encode("token", "attempt", 7, [relay.clip(r) for r in records])
    frame = relay.decode(line)

    assert frame is not None
    assert (frame.token, frame.attempt, frame.seq) == ("token", "attempt", 7)
    text, message = frame.records[0]["text"], frame.records[0]["message"]
    assert text.startswith("x" * relay.RELAY_TEXT) and text.endswith(
        "48,500 more characters not relayed]"
    )
    assert message.endswith("700 more characters not relayed]")
    assert len(line) < 4096  # fifty thousand x's compress well; a frame line stays small


def test_damaged_or_oversized_frames_are_refused() -> None:
    line = relay.encode("token", "attempt", 0, [{"e": "gpu"}])
    marker, token, attempt, seq, payload, crc = line.split(" ")
    assert relay.decode(" ".join([marker, token, attempt, seq, payload[::-1], crc])) is None
    assert relay.decode(line[:-1]) is None
    assert relay.decode(line.replace(" 0 ", " -1 ")) is None
    bomb = relay.encode(
        "token", "a", 0, [{"e": "x", "text": "0" * (relay.MAX_FRAME_RECORDS_BYTES)}]
    )
    assert len(bomb) < 20_000 and relay.decode(bomb) is None


def test_the_relay_sends_small_frames_and_stops_at_its_limit_with_a_note(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written: list[bytes] = []
    sender = relay.Relay("token", write=lambda data: written.append(data) or len(data))
    many = [{"e": "report", "nodeid": f"tests/t.py::test_{n}", "text": os.urandom(200).hex()}
            for n in range(200)]  # fmt: skip
    sender.send(many)

    frames = [relay.decode(line.decode()) for line in written]
    assert len(frames) > 10 and all(f is not None for f in frames)
    assert [f.seq for f in frames if f] == list(range(len(frames)))
    assert [r for f in frames if f for r in f.records] == many
    assert all(len(line) < 4096 for line in written)

    names = [f"tests/test_{os.urandom(8).hex()}.py" for _ in range(500)]
    collected = {"e": "collected", "items": [[f"{name}::test", name, 1] for name in names]}
    written.clear()
    sender.send([collected])
    parts = [relay.decode(line.decode()) for line in written]
    assert len(parts) > 1 and all(len(line) < 4096 for line in written)
    assert [i for f in parts if f for r in f.records for i in r["items"]] == collected["items"]

    monkeypatch.setattr(relay, "MAX_RELAY_BYTES", sender.sent + 100)
    sender.send(many)
    sender.send(many)
    last = relay.decode(written[-1].decode())
    assert last is not None and last.records[0]["e"] == "note"
    assert "stopped at" in last.records[0]["message"]
    assert sender.full and len(written) == len(parts) + 1


def test_the_record_is_followed_as_it_grows_and_read_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    batches: list[list[dict[str, Any]]] = []
    stop = threading.Event()
    thread = relay.follow(str(path), batches.append, stop)
    time.sleep(0.3)  # not there yet: waited for
    with path.open("a") as handle:
        handle.write('{"e": "start", "nodeid": "a"}\n{"e": "rep')
        handle.flush()
        time.sleep(0.4)
        handle.write('ort", "nodeid": "a"}\nnot json\n[1]\n{"e": "sessionfinish"}\n')
    stop.set()
    thread.join(5)

    assert not thread.is_alive()
    assert [r for batch in batches for r in batch] == [
        {"e": "start", "nodeid": "a"},
        {"e": "report", "nodeid": "a"},
        {"e": "sessionfinish"},
    ]
    assert len(batches) == 2


def test_a_record_replaced_by_a_link_or_a_pipe_is_not_read(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.jsonl"
    target.write_text('{"e": "start", "nodeid": "a"}\n')
    (tmp_path / "link.jsonl").symlink_to(target)
    os.mkfifo(tmp_path / "pipe.jsonl")
    for name in ("link.jsonl", "pipe.jsonl"):
        batches: list[list[dict[str, Any]]] = []
        stop = threading.Event()
        thread = relay.follow(str(tmp_path / name), batches.append, stop)
        time.sleep(0.25)
        stop.set()
        thread.join(5)
        assert not thread.is_alive() and batches == [], name
