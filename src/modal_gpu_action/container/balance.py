"""Shards balanced by a previous run's durations: planned once on the host, applied in each shard.

The host reads the durations JUnit file once (backends/shard_durations.py) and deals its known
tests out here (`ShardPlan.balance`): longest first (ties by key), each to the least loaded shard
(ties: fewer tests, then lower index). What every shard is sent is that plan, compactly: each
shard's known tests as 8-byte hashes of their JUnit names (`case_key`), each shard's load and
count of known tests, and the seconds a test the file does not know counts for (the mean of the
known ones; 1 s when none is known). In a shard, the sharding plugin looks each collected test up
(`ShardPlan.assign`): a known one goes where the plan put it, and the unknown ones, taken in
node-id order, each go to the least loaded shard on top of the known loads. Every shard computes
the same from the same plan and the same collection, so every test lands in exactly one shard.

Every shard needs every shard's known tests, not only its own: a collected test that is not its
own may be another shard's or unknown, and only the unknown ones are dealt out. Two tests whose
names hash alike (odds of 2^-64 a pair) count as one: both go to the same shard, still once.
A known test that is no longer collected still counts in its shard's load. Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib
import heapq
import math
import struct
from collections.abc import Iterable, Mapping
from typing import Any

KEY_BYTES = 8
UNKNOWN_DEFAULT_SECONDS = 1.0


def case_key(classname: str, name: str) -> int:
    """A test's key: the first 8 bytes of blake2b over its JUnit names (as junitxml writes them)."""
    data = f"{classname}\x00{name}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=KEY_BYTES).digest(), "big")


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """The known tests dealt out over `count` shards (see the module's docstring)."""

    count: int
    known: tuple[tuple[int, ...], ...]  # per shard: the keys of its known tests, sorted
    loads: tuple[float, ...]  # per shard: seconds of its known tests
    sizes: tuple[int, ...]  # per shard: how many known tests
    unknown_seconds: float  # what a test the file does not know counts for

    @classmethod
    def balance(cls, durations: Iterable[tuple[str, str, float]], count: int) -> ShardPlan:
        """Deal the known tests (classname, name, seconds; a repeated one's times added up)."""
        if count < 1:
            raise ValueError(f"shard count must be at least 1, got {count}")
        seconds: dict[int, float] = {}
        for classname, name, time in durations:
            if time >= 0 and math.isfinite(time):
                key = case_key(classname, name)
                seconds[key] = seconds.get(key, 0.0) + time
        unknown = sum(seconds.values()) / len(seconds) if seconds else UNKNOWN_DEFAULT_SECONDS
        known: list[list[int]] = [[] for _ in range(count)]
        heap = [(0.0, 0, index) for index in range(count)]
        for key, time in sorted(seconds.items(), key=lambda item: (-item[1], item[0])):
            load, size, index = heapq.heappop(heap)
            known[index].append(key)
            heapq.heappush(heap, (load + time, size + 1, index))
        loads, sizes = [0.0] * count, [0] * count
        for load, size, index in heap:
            loads[index], sizes[index] = load, size
        return cls(
            count, tuple(tuple(sorted(keys)) for keys in known), tuple(loads), tuple(sizes), unknown
        )

    @functools.cached_property
    def owner(self) -> dict[int, int]:
        """The shard of each known test's key."""
        owner: dict[int, int] = {}
        for index, shard_keys in enumerate(self.known):
            owner.update(dict.fromkeys(shard_keys, index))
        return owner

    def assign(self, keys: Mapping[str, int]) -> dict[str, int]:
        """The shard of every collected test: `keys` maps each node id to its `case_key`."""
        owner = self.owner
        assignment: dict[str, int] = {}
        unknown = []
        for nodeid, key in keys.items():
            shard = owner.get(key)
            if shard is None:
                unknown.append(nodeid)
            else:
                assignment[nodeid] = shard
        heap = [(self.loads[i], self.sizes[i], i) for i in range(self.count)]
        heapq.heapify(heap)
        for nodeid in sorted(unknown):
            load, size, index = heapq.heappop(heap)
            assignment[nodeid] = index
            heapq.heappush(heap, (load + self.unknown_seconds, size + 1, index))
        return assignment

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: each shard's keys packed (8 bytes each, big-endian) and base64-encoded."""
        return {
            "count": self.count,
            "known": [
                base64.b64encode(struct.pack(f">{len(keys)}Q", *keys)).decode("ascii")
                for keys in self.known
            ],
            "loads": list(self.loads),
            "sizes": list(self.sizes),
            "unknown_seconds": self.unknown_seconds,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ShardPlan:
        """ValueError when `data` is not a plan `to_dict` wrote."""
        try:
            count = int(data["count"])
            blobs = [base64.b64decode(text, validate=True) for text in data["known"]]
            loads = tuple(float(load) for load in data["loads"])
            sizes = tuple(int(size) for size in data["sizes"])
            unknown = float(data["unknown_seconds"])
        except (KeyError, TypeError, ValueError, binascii.Error) as error:
            raise ValueError(f"not a shard plan: {error!r}") from None
        if count < 1 or not len(blobs) == len(loads) == len(sizes) == count:
            raise ValueError(f"not a shard plan: {count} shards, {len(blobs)} lists of tests")
        if any(len(blob) % KEY_BYTES for blob in blobs):
            raise ValueError("not a shard plan: a list of tests is not whole keys")
        known = tuple(struct.unpack(f">{len(blob) // KEY_BYTES}Q", blob) for blob in blobs)
        return cls(count, known, loads, sizes, unknown)
