"""Overrun strategies over recorded runs: which jobs complete, under Kill and under Skip-Next.

A recorded run is a job run to completion with its real end-to-end time (acceptance to last
token). Replaying it against a budget T is exact for the outcome when the run does not depend on
T (fixed ratios): under Kill it completes iff its time <= T (otherwise it is killed and scores as
empty); under Skip-Next, jobs are released one per period T, an overrunning job finishes and
every job released while it still runs is skipped.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Replayed:
    completed: bool   # finished within its budget
    delivered: bool   # an answer was returned (late answers too under Skip-Next)
    skipped: bool


def kill(durations: list[float], budget: float) -> list[Replayed]:
    return [Replayed(completed=d <= budget, delivered=d <= budget, skipped=False) for d in durations]


def skip_next(durations: list[float], budget: float, period: float | None = None) -> list[Replayed]:
    period = budget if period is None else period
    out, busy_until = [], float("-inf")
    for i, d in enumerate(durations):
        release = i * period
        if release < busy_until:  # released while an overrunning job still ran
            out.append(Replayed(completed=False, delivered=False, skipped=True))
            continue
        # No job ahead of it ran late (else it would be skipped), so it starts at its release.
        busy_until = release + d
        out.append(Replayed(completed=d <= budget, delivered=True, skipped=False))
    return out
