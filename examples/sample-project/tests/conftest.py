"""Shared fixtures. GPU tests are marked `gpu` (see pyproject.toml) and skip themselves, saying
why, when there is no GPU library or no GPU: `pytest -m gpu` runs only them, `-m "not gpu"` the
rest."""

from __future__ import annotations

import random

import pytest


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


@pytest.fixture
def matrices(rng: random.Random) -> tuple[list[list[float]], list[list[float]]]:
    a = [[rng.uniform(-1, 1) for _ in range(48)] for _ in range(32)]
    b = [[rng.uniform(-1, 1) for _ in range(16)] for _ in range(48)]
    return a, b
