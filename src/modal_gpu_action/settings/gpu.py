"""GPU specs: Modal's GPU types, counts, fallback lists, per-second prices for cost estimates, and
each type's memory, to name a cheaper type that a run's memory peak fits (`cheaper_gpu`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Modal's GPU types as its guide lists them (https://modal.com/docs/guide/gpu), upper-cased the way
# Modal's client sends them. Aliases map to the canonical spelling Modal documents.
GPU_TYPES: tuple[str, ...] = (
    "T4",
    "L4",
    "A10G",
    "A10",
    "L40S",
    "A100",
    "A100-40GB",
    "A100-80GB",
    "RTX-PRO-6000",
    "H100",
    "H100!",
    "H200",
    "B200",
    "B200+",
)

# Most GPUs per container that Modal allows for each type (same guide: A10 up to 4, the rest 8).
MAX_COUNT: dict[str, int] = {"A10G": 4, "A10": 4}
DEFAULT_MAX_COUNT = 8

# USD per GPU-second from https://modal.com/pricing, read 2026-11-23 (same figures as published
# since 2025; e.g. H100 $0.001097/s = $3.9492/h). `H100!` and `B200+` are priced as their base type
# (Modal bills the GPU it gives); `A100` is the 40 GB card.
PRICE_PER_SECOND: dict[str, float] = {
    "B200": 0.001736,
    "H200": 0.001261,
    "H100": 0.001097,
    "RTX-PRO-6000": 0.000842,
    "A100-80GB": 0.000694,
    "A100-40GB": 0.000583,
    "L40S": 0.000542,
    "A10G": 0.000306,
    "L4": 0.000222,
    "T4": 0.000164,
}
_PRICE_ALIASES = {"H100!": "H100", "B200+": "B200", "A100": "A100-40GB", "A10": "A10G"}

# Memory per GPU in MiB, as nvidia-smi's memory.total lists it for each card (Modal's GPU guide
# gives GB: T4 16, L4 and A10 24, L40S 48, A100 40 or 80, RTX-PRO-6000 96, H100 80, H200 141,
# B200 192); the card keeps a little of it for itself. Priced types only, by their price names.
MEMORY_MIB: dict[str, int] = {
    "T4": 15360,
    "L4": 23034,
    "A10G": 23028,
    "L40S": 46068,
    "A100-40GB": 40960,
    "A100-80GB": 81920,
    "RTX-PRO-6000": 97887,
    "H100": 81559,
    "H200": 143771,
    "B200": 183359,
}
# Room a cheaper GPU must have above the measured peak: a peak sampled every 0.2 s can miss a
# brief higher one, and another GPU's CUDA context and allocator may take a little more.
MEMORY_MARGIN = 0.20

# nvidia-smi's name for each priced type ("Tesla T4", "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB
# HBM3", "NVIDIA RTX PRO 6000 Blackwell Server Edition"), most specific first.
_CARD_NAMES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (gpu_type, re.compile(rf"(?<![A-Z0-9]){pattern}(?![0-9])"))
    for gpu_type, pattern in (
        ("RTX-PRO-6000", r"RTX[ -]?PRO[ -]?6000"),
        ("A100-80GB", r"A100\b.*80GB"),
        ("A100-40GB", r"A100"),
        ("A10G", r"A10G?"),
        ("L40S", r"L40S"),
        ("L4", r"L4"),
        ("T4", r"T4"),
        ("H200", r"H200"),
        ("H100", r"H100"),
        ("B200", r"B200"),
    )
)

_ONE = re.compile(r"^(?P<type>[A-Z0-9!+-]+?)(?::(?P<count>[^:]*))?$")


class GpuSpecError(ValueError):
    """A GPU spec that Modal would not accept; the message names what is accepted."""


@dataclass(frozen=True, slots=True)
class GpuChoice:
    """One GPU type and how many of it a container gets (`H100:2`)."""

    type: str
    count: int = 1

    def __str__(self) -> str:
        return self.type if self.count == 1 else f"{self.type}:{self.count}"

    @property
    def price_per_second(self) -> float | None:
        """USD per second for the whole container's GPUs, or None when the type has no price."""
        base = _PRICE_ALIASES.get(self.type, self.type)
        price = PRICE_PER_SECOND.get(base)
        return None if price is None else price * self.count


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """An ordered fallback list of GPU choices; Modal takes the first it can schedule."""

    choices: tuple[GpuChoice, ...]

    def __str__(self) -> str:
        return ",".join(str(c) for c in self.choices)

    @property
    def primary(self) -> GpuChoice:
        return self.choices[0]

    @property
    def is_fallback_list(self) -> bool:
        return len(self.choices) > 1

    def modal_argument(self) -> str | list[str]:
        """What `@app.function(gpu=...)` takes: one string, or a list for fallbacks."""
        names = [str(c) for c in self.choices]
        return names if self.is_fallback_list else names[0]

    def price_per_second(self) -> float | None:
        """Worst case over the fallbacks: the run's type is only known after it starts."""
        prices = [c.price_per_second for c in self.choices]
        known = [p for p in prices if p is not None]
        return max(known) if known else None


def modal_type_named(card: str) -> str | None:
    """The priced Modal type of a card as nvidia-smi names it, or None (not a Modal GPU)."""
    name = card.upper()
    return next((gpu_type for gpu_type, pattern in _CARD_NAMES if pattern.search(name)), None)


def cheaper_gpu(peak_mib: int, current: GpuChoice) -> GpuChoice | None:
    """The cheapest type, with as many GPUs as `current`, whose memory per GPU holds `peak_mib`
    plus MEMORY_MARGIN and that costs less per second than `current`; None when none does."""
    price = current.price_per_second
    if price is None:
        return None
    needed = peak_mib * (1 + MEMORY_MARGIN)
    fitting = [
        GpuChoice(gpu_type, current.count)
        for gpu_type, memory in MEMORY_MIB.items()
        if memory >= needed and current.count <= MAX_COUNT.get(gpu_type, DEFAULT_MAX_COUNT)
    ]
    cheaper = [c for c in fitting if (c.price_per_second or price) < price]
    return min(cheaper, key=lambda c: c.price_per_second or price, default=None)


def accepted_values() -> str:
    return (
        ", ".join(GPU_TYPES) + " (case-insensitive), TYPE:COUNT, or a comma-separated fallback list"
    )


def parse_gpu_spec(text: str) -> GpuSpec:
    """Parse `L4`, `h100:8` or `H100,A100-80GB`; raise GpuSpecError naming what is accepted."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise GpuSpecError(f"invalid value {text!r} for input 'gpu': expected {accepted_values()}")
    choices: list[GpuChoice] = []
    for part in parts:
        choice = _parse_one(part, text)
        if choice in choices:
            raise GpuSpecError(f"invalid value {text!r} for input 'gpu': {part} is listed twice")
        choices.append(choice)
    return GpuSpec(tuple(choices))


def _parse_one(part: str, whole: str) -> GpuChoice:
    match = _ONE.match(part.upper().replace(" ", ""))
    gpu_type = match.group("type") if match else ""
    if gpu_type not in GPU_TYPES:
        raise GpuSpecError(
            f"invalid value {whole!r} for input 'gpu': unknown GPU type {part.split(':')[0]!r};"
            f" expected {accepted_values()}"
        )
    count_text = part.split(":", 1)[1].strip() if ":" in part else None
    if count_text is None:
        return GpuChoice(gpu_type)
    limit = MAX_COUNT.get(gpu_type, DEFAULT_MAX_COUNT)
    if not count_text.isdigit() or not 1 <= int(count_text) <= limit:
        raise GpuSpecError(
            f"invalid value {whole!r} for input 'gpu': count {count_text!r} for {gpu_type}"
            f" must be a whole number from 1 to {limit}"
        )
    return GpuChoice(gpu_type, int(count_text))
