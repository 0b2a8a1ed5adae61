"""How long publishing may take: the budgets and waits (`Timing`) and the one deadline that the
comment and the label share (`Deadline`). Standard library only: the engine holds the deadline
from the start of every GitHub-mode run, and PyGithub (`github_requests`) is imported only when
something is published.

All of a run's publishing has one deadline: 60 s from its first request
(MODAL_GPU_ACTION_PUBLISH_SECONDS, 1 to 600, changes it), retries, waits and checks included.
The comment stops when the last quarter is left, which the label keeps; once the run is cancelled
the comment stops at once and the label gets `cancel_seconds` more.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

PUBLISH_SECONDS_ENV = "MODAL_GPU_ACTION_PUBLISH_SECONDS"


@dataclass(frozen=True, slots=True)
class Timing:
    """Budgets, waits and the clock: the defaults are for GitHub, tests pass fast ones."""

    max_seconds: float = 60.0  # all of publishing (comment and label), retries and checks included
    label_share: float = 0.25  # the end of it kept for the label: the comment stops before
    cancel_seconds: float = 3.0  # what the label gets once the run is cancelled
    request_seconds: float = 15.0  # one request, whole: connecting, sending, the last byte read
    backoff_base: float = 1.0
    backoff_cap: float = 16.0
    # The shared comment (github_comment): waits before re-reading it after a write.
    guard: float = 0.2  # other jobs' sections beside ours, none seen writing: the least wait
    settle: tuple[float, float] = (1.0, 2.5)  # once another writer is seen: a random wait
    confirmations: int = 2  # once another writer is seen: reads in a row showing ours in place
    max_writes: int = 8
    # Wait up to so many seconds, or until the event (the run's cancel) is set: True if it is.
    wait: Callable[[threading.Event, float], bool] = threading.Event.wait
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], float] = time.time  # wall clock, for the sections' write times
    random: Callable[[], float] = random.random


DEFAULT_TIMING = Timing()


class Deadline:
    """One deadline for all of a run's publishing, and the run's cancel event.

    It ends `seconds` (default `Timing.max_seconds`) after the first request that uses it, for
    the comment and the label together: the comment stops `Timing.label_share` of it early, so
    the label keeps that much. Once `cancel` is set the comment stops at once and the label gets
    at most `Timing.cancel_seconds` more.
    """

    def __init__(self, cancel: threading.Event | None = None, *, seconds: float | None = None):
        self.cancel = cancel if cancel is not None else threading.Event()
        self._seconds = seconds
        self._end: float | None = None

    @classmethod
    def for_run(cls, cancel: threading.Event | None, environ: Mapping[str, str]) -> Deadline:
        """The run's deadline: MODAL_GPU_ACTION_PUBLISH_SECONDS (1 to 600) if set, else 60 s."""
        seconds = number(environ.get(PUBLISH_SECONDS_ENV))
        return cls(cancel, seconds=min(max(seconds, 1.0), 600.0) if seconds is not None else None)

    def seconds(self, timing: Timing) -> float:
        return self._seconds if self._seconds is not None else timing.max_seconds

    def end(self, timing: Timing) -> float:
        """When publishing must be over: fixed by the first call."""
        if self._end is None:
            self._end = timing.clock() + self.seconds(timing)
        return self._end


def number(text: str | None) -> float | None:
    """A finite number from a header or a variable, else None."""
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None
