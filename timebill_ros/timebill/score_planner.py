"""The expected-score planner (config ``planner: score``, the default): the eviction ratio whose
answer is expected to score best by the deadline.

Each candidate ratio is weighed by two numbers:

* P: the probability that the whole answer is ready by the deadline at that ratio, from the
  predicted length distribution and the timing model's measured spread of speeds (the answer
  tokens that fit at each of the calibration's equally likely speeds);
* R: the quality of a complete answer at that ratio relative to no eviction (``timebill.retention``,
  measured per model, press and kind of request).

Under Kill an answer cut at the deadline is scored as nothing (what the evaluation counts, and
what a planner that waits for a whole answer gets), so a candidate's expected score is P * R.
Under Skip-Next a late answer costs the goal after it as well: P * R - (1 - P) * V, V being what
a goal gets at this budget (the best candidate's P * R).

The candidates: no eviction, the ratios the evaluation compares against (``COMPARED``), the
largest allowed ratio, and the paper's closed form α* (the smallest ratio whose bounded length
fits, rounded up to ``RATIO_STEP``). The one with the highest expected score runs; among candidates
within ``NOISE`` of it, the one more likely to complete, then the one that evicts less. Because
every fixed ratio is a candidate, a planner whose odds and retention are right does no worse than
any fixed ratio on average.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

COMPARED = (0.25, 0.5, 0.75, 0.95)  # the fixed ratios the evaluation (and the paper) compare against
RATIO_STEP = 0.05                    # α* rounded up to this grid (a plan's ratio is whole positions anyway)
NOISE = 0.02                         # expected scores closer than this are ties (retention is measured to ~±0.03)


@dataclass(frozen=True)
class Candidate:
    eviction_ratio: float
    completion_probability: float   # P
    quality: float                  # R
    expected_score: float


def candidate_ratios(ceiling: float, closed_forms: Sequence[float] = ()) -> list[float]:
    """The ratios weighed for a job whose largest allowed ratio is ``ceiling`` (0: none but 0)."""
    if ceiling <= 0.0:
        return [0.0]
    ratios = {0.0, float(ceiling)} | {a for a in COMPARED if a <= ceiling}
    for a in closed_forms:
        if math.isfinite(a) and a > 0.0:
            ratios.add(min(float(ceiling), math.ceil(a / RATIO_STEP - 1e-9) * RATIO_STEP))
    return sorted(round(a, 6) for a in ratios)


def choose(ratios: Sequence[float], probability: Callable[[float], float], quality: Callable[[float], float],
           skip_next: bool = False) -> Candidate:
    """The candidate to run among ``ratios``: ``probability(a)`` is P at ratio a, ``quality(a)`` R."""
    odds = [(a, probability(a), quality(a)) for a in ratios]
    value = max(p * q for _, p, q in odds)  # what a goal gets at this budget: a late one costs the next that
    scored = [Candidate(a, p, q, p * q - ((1.0 - p) * value if skip_next else 0.0)) for a, p, q in odds]
    best = max(c.expected_score for c in scored)
    near = [c for c in scored if c.expected_score >= best - NOISE]
    return max(near, key=lambda c: (round(c.completion_probability, 3), -c.eviction_ratio))
