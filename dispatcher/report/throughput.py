"""Throughput over time, from the progress samples of run records (`run_record.add_sample`).

A record holds `(seconds since start, items settled, items failed)` every heartbeat and at
the end; a shard's run is the curve through them from `(start, 0, 0)`. Shards run side by
side, each at its own times, so their throughput is summed per time bin: the items each
curve gained inside the bin (linearly between samples), over the bin's width.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

Point = tuple[float, float, float]
"""(POSIX time, items settled, items failed) of one run."""


def curve(record: dict[str, Any]) -> list[Point]:
    """The run's points, from its start; empty when its record has no readable start."""
    try:
        start = dt.datetime.fromisoformat(str(record.get("start"))).timestamp()
    except ValueError:
        return []
    points = [(start, 0.0, 0.0)]
    for sample in record.get("samples") or []:
        if not (isinstance(sample, list) and len(sample) == 3):
            continue
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sample):
            continue
        at = start + sample[0]
        if at >= points[-1][0] and sample[1] >= points[-1][1]:
            points.append((at, float(sample[1]), float(sample[2])))
    return points


def value_at(points: list[Point], at: float, column: int) -> float:
    """`column` (1: settled, 2: failed) of the curve at time `at`: 0 before its start,
    its last value after its end, linear in between."""
    if not points or at <= points[0][0]:
        return 0.0
    if at >= points[-1][0]:
        return points[-1][column]
    i = bisect.bisect_right(points, at, key=itemgetter(0))
    (t0, *a), (t1, *b) = points[i - 1], points[i]
    share = (at - t0) / (t1 - t0) if t1 > t0 else 1.0
    return a[column - 1] + share * (b[column - 1] - a[column - 1])


@dataclass
class Throughput:
    """Items per second of all runs together, in `len(settled)` equal bins from `start`."""

    start: float
    width: float
    """Seconds per bin."""
    settled: list[float]
    failed: list[float]

    @property
    def end(self) -> float:
        return self.start + self.width * len(self.settled)


def throughput(curves: list[list[Point]], bins: int = 60) -> Throughput | None:
    """The summed throughput of `curves`; None when no run has two points in time."""
    curves = [c for c in curves if len(c) > 1 and c[-1][0] > c[0][0]]
    if not curves:
        return None
    start = min(c[0][0] for c in curves)
    width = (max(c[-1][0] for c in curves) - start) / bins
    rates: dict[int, list[float]] = {1: [], 2: []}
    for i in range(bins):
        a, b = start + i * width, start + (i + 1) * width
        for column, out in rates.items():
            gained = sum(value_at(c, b, column) - value_at(c, a, column) for c in curves)
            out.append(gained / width)
    return Throughput(start, width, rates[1], rates[2])
