"""Overrun strategies over recorded runs: which jobs complete, under Kill and under Skip-Next.

A recorded run is a job run to completion with its real end-to-end time (acceptance to last
token). Replaying it against a budget T is exact for the outcome when the run does not depend on
T (fixed ratios): under Kill it completes iff its time <= T (otherwise it is killed and scores as
empty); under Skip-Next, jobs are released one per budget T, an overrunning job finishes and
every job released while it still runs is skipped (the rule of ``timebill.overrun.SkipNext``,
which the live scheduler uses too).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..overrun import SkipNext
from ..request import Outcome, Policy


@dataclass(frozen=True)
class Replayed:
    completed: bool   # finished within its budget
    delivered: bool   # an answer was returned (late answers too under Skip-Next)
    skipped: bool


def kill(durations: list[float], budget: float) -> list[Replayed]:
    return [Replayed(completed=d <= budget, delivered=d <= budget, skipped=False) for d in durations]


def skip_next(durations: list[float], budget: float) -> list[Replayed]:
    """Jobs released one per budget: a job that is not skipped starts at its release, since a job
    ahead of it either ended by then or overran (and then this one is skipped)."""
    rule, out = SkipNext(), []
    for i, d in enumerate(durations):
        release = i * budget
        if rule.skips(release):
            out.append(Replayed(completed=False, delivered=False, skipped=True))
            continue
        on_time = d <= budget
        rule.job_ended(Policy.SKIP_NEXT, Outcome.COMPLETED, on_time, at=release + d)
        out.append(Replayed(completed=on_time, delivered=True, skipped=False))
    return out


def replay_outcomes(replay, jobs: list[dict], budget: float) -> list:
    """Replay ``jobs`` under a strategy; a job answered INFEASIBLE completes nothing and takes no time."""
    outcomes = replay([0.0 if j.get("infeasible") else j["total"] for j in jobs], budget)
    return [Replayed(completed=False, delivered=o.delivered, skipped=o.skipped) if j.get("infeasible") else o
            for j, o in zip(jobs, outcomes)]
