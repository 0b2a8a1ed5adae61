"""A duration as people read it, in one format everywhere: `0.27s`, `12.3s`, `2m 05s`, `1h 02m`."""

from __future__ import annotations

import math


def format_duration(seconds: float) -> str:
    """Hundredths under 10 s, tenths under a minute, then whole seconds or minutes; "" for a
    value that is no duration (negative, NaN, infinite)."""
    if not math.isfinite(seconds) or seconds < 0:
        return ""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
