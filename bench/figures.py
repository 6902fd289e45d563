"""Figures of several rounds, and how the report shows them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Figure:
    """Several rounds of one measurement."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def show(self, unit: str = "", digits: int = 0) -> str:
        lo, hi = min(self.values), max(self.values)
        return f"{self.median:,.{digits}f}{unit} ({lo:,.{digits}f}–{hi:,.{digits}f})"


@dataclass
class Load:
    """One server under one load (wrk's answer), over the rounds."""

    rps: Figure = field(default_factory=Figure)
    p50_ms: Figure = field(default_factory=Figure)
    p99_ms: Figure = field(default_factory=Figure)

    def add(self, wrk: dict[str, float]) -> None:
        self.rps.values.append(wrk["rps"])
        self.p50_ms.values.append(wrk["p50_ms"])
        self.p99_ms.values.append(wrk["p99_ms"])


def ratio(a: Figure | float, b: Figure | float) -> str:
    x = a.median if isinstance(a, Figure) else a
    y = b.median if isinstance(b, Figure) else b
    return f"{x / y:.2f}×" if y else "—"
