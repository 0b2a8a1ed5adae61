"""What the run's GPUs used and what its cost cap did, for the report: the memory peak per shard
(per GPU when a shard had several), a cheaper Modal GPU type that the peak would fit, and whether
`max-cost-usd` stopped the tests. Rows of the facts table (job summary, PR comment, console),
notes under the headline, and the values of the step's outputs.

The cheaper type's cost is the run's GPU seconds at that type's price: an estimate that ignores
speed differences (a slower card runs longer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modal_gpu_action.backends.base import BackendResult
from modal_gpu_action.container.protocol import RunResult
from modal_gpu_action.render.durations import format_duration
from modal_gpu_action.settings import Settings
from modal_gpu_action.settings.gpu import (
    MEMORY_MARGIN,
    MEMORY_MIB,
    GpuChoice,
    cheaper_gpu,
    modal_type_named,
)


@dataclass(frozen=True, slots=True)
class GpuUsage:
    facts: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    peak_mib: int | None = None  # the highest peak of any GPU; None when none was measured
    cheaper: GpuChoice | None = None
    stopped_at_cost_cap: bool = False


def gpu_usage(result: BackendResult, settings: Settings) -> GpuUsage:
    shards = result.shards
    facts = _memory_rows(shards)
    measured = [p.peak_mib for s in shards for p in s.gpu_memory]
    peak = max(measured) if measured else None
    cheaper = None
    current = _current_choice(shards)
    if peak is not None and current is not None:
        cheaper = cheaper_gpu(peak, current)
    if cheaper is not None and current is not None:
        facts.append(("Cheaper GPU", _cheaper_text(cheaper, current, result)))
    count = max((s.shard_count for s in shards), default=settings.shards or 1)
    cap = settings.cost_cap_seconds(count)
    stopped = False
    notes: tuple[str, ...] = ()
    if cap is not None:
        binds = settings.cost_cap_binds(count)
        stopped = binds and any(s.timed_out for s in shards)
        facts.append(("Cost cap", _cap_text(settings, cap, count, binds)))
        if stopped:
            notes = (
                f"The tests were stopped at the cost cap: max-cost-usd ${settings.max_cost_usd:g}"
                f" buys {format_duration(cap)} of tests per shard ({_price_text(settings, count)});"
                " the tests that had not finished by then did not run.",
            )
    return GpuUsage(tuple(facts), notes, peak, cheaper, stopped)


def _memory_rows(shards: Sequence[RunResult]) -> list[tuple[str, str]]:
    rows = []
    for shard in shards:
        if not shard.gpu_memory:
            continue
        totals = {str(gpu.index): gpu.memory_total_mib for gpu in shard.gpu.gpus}
        parts = []
        for peak in shard.gpu_memory:
            total = totals.get(str(peak.index))
            which = f"GPU {peak.index}: " if len(shard.gpu_memory) > 1 else ""
            parts.append(f"{which}{peak.peak_mib:,} MiB" + (f" of {total:,} MiB" if total else ""))
        text = ", ".join(parts)
        before = sum(peak.baseline_mib for peak in shard.gpu_memory)
        if before:
            text += f" (above the {before:,} MiB in use before the tests)"
        if len(shards) > 1:
            text = f"Shard {shard.shard_index + 1}/{shard.shard_count}: {text}"
        rows.append(("GPU memory peak", text))
    return rows


def _current_choice(shards: Sequence[RunResult]) -> GpuChoice | None:
    """The Modal type (and count) of the GPUs the tests ran on, from their names; None when they
    are not a Modal type or were not measured."""
    for shard in shards:
        if shard.gpu_memory and shard.gpu.gpus:
            gpu_type = modal_type_named(shard.gpu.gpus[0].name)
            return GpuChoice(gpu_type, len(shard.gpu.gpus)) if gpu_type else None
    return None


def _cheaper_text(cheaper: GpuChoice, current: GpuChoice, result: BackendResult) -> str:
    per_gpu = (cheaper.price_per_second or 0) / cheaper.count
    now_per_gpu = (current.price_per_second or 0) / current.count
    there = result.gpu_seconds * per_gpu
    now = result.cost_usd if result.cost_usd is not None else result.gpu_seconds * now_per_gpu
    return (
        f"{cheaper} would do ({MEMORY_MIB[cheaper.type]:,} MiB per GPU holds the peak"
        f" + {MEMORY_MARGIN:.0%}): about ${there:.4f} instead of ${now:.4f} on {current} for the"
        f" same {format_duration(result.gpu_seconds)} of GPU time (an estimate that ignores speed"
        " differences)"
    )


def _cap_text(settings: Settings, cap: float, count: int, binds: bool) -> str:
    text = (
        f"${settings.max_cost_usd:g}: {format_duration(cap)} of tests per shard"
        f" ({_price_text(settings, count)})"
    )
    return text if binds else text + "; timeout-minutes is the lower limit"


def _price_text(settings: Settings, count: int) -> str:
    price = settings.gpu.price_per_second() or 0
    shards = f" x {count} shards" if count > 1 else ""
    where = "the dearest of " if settings.gpu.is_fallback_list else ""
    on_modal = " on Modal" if settings.backend == "local" else ""  # this machine has no price
    return f"{where}{settings.gpu}{on_modal} at ${price:.6f}/s{shards}"
