"""Is the default planner at least as good as the best fixed ratio, beyond what chance in the
choice of prompts explains?

For one data set, strategy and budget, the difference d = metric(default) - max over the fixed
methods (no eviction and each fixed ratio) of the same metric, for the completion rate and the
average score. The best fixed ratio is chosen afresh in every resample, as a reader of the
table would choose it, so the interval carries that selection too. Its 95 % interval comes from
a paired bootstrap over prompts: every method is replayed on the same resampled prompts (under
Skip-Next in the resampled order, since a late job skips the next ones). A cell counts as "worse"
only when the whole interval lies below zero.
"""
from __future__ import annotations

import numpy as np

from .schedule import replay_outcomes

RESAMPLES = 1000


def _metrics(replay, jobs: list[dict], budget: float, score) -> tuple[float, float]:
    outcomes = replay_outcomes(replay, jobs, budget)
    done = [o.completed for o in outcomes]
    return float(np.mean(done)), float(np.mean([score(j) if ok else 0.0 for j, ok in zip(jobs, done)]))


def versus_best_fixed(per_method: dict[str, list[dict]], default: str, fixed: list[str], replay, budget: float,
                      score, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """``per_method``: method -> its jobs at this budget, in prompt order (job i of every method is
    prompt i). ``score(job)`` scores a completed job. Returns the observed differences, their
    intervals and the verdict for completion rate and average score."""
    n = len(per_method[default])
    cache: dict = {}

    def score_of(job):  # scoring is the slow part and does not depend on the resample
        key = id(job)
        if key not in cache:
            cache[key] = score(job)
        return cache[key]

    def diffs(idx) -> np.ndarray:
        got = {m: _metrics(replay, [per_method[m][i] for i in idx], budget, score_of) for m in [default, *fixed]}
        best = np.max([got[m] for m in fixed], axis=0)
        return np.array(got[default]) - best

    observed = diffs(range(n))
    rng = np.random.default_rng(seed)
    boot = np.array([diffs(rng.integers(0, n, n)) for _ in range(resamples)])
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    out = {}
    for k, name in enumerate(("completion_rate", "avg_score")):
        verdict = "at_least" if observed[k] >= 0 else ("within_variation" if hi[k] >= 0 else "worse")
        out[name] = {"difference": float(observed[k]), "interval_95": [float(lo[k]), float(hi[k])], "verdict": verdict}
    return out
