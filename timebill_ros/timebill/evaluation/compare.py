"""Is the default planner at least as good as a baseline, beyond what chance in the choice of
prompts explains?

For one data set, strategy and budget, the difference d = metric(default) - max over a baseline's
methods of the same metric, for the completion rate and the average score. The baseline is a
named list of methods: "the best fixed ratio" is no eviction and every fixed ratio, "no eviction"
is that method alone. The best of a list is chosen afresh in every resample, as a reader of the
table would choose it, so the interval carries that selection too. Its 95 % interval comes from a
paired bootstrap over prompts: every method is replayed on the same resampled prompts (under
Skip-Next in the resampled order, since a late job skips the next ones), and every baseline of one
call is compared on the same resamples. A cell counts as "worse" only when the whole interval lies
below zero.
"""
from __future__ import annotations

import numpy as np

from .schedule import replay_outcomes

RESAMPLES = 1000
METRICS = ("completion_rate", "avg_score")


def _metrics(replay, jobs: list[dict], budget: float, score) -> tuple[float, float]:
    outcomes = replay_outcomes(replay, jobs, budget)
    done = [o.completed for o in outcomes]
    return float(np.mean(done)), float(np.mean([score(j) if ok else 0.0 for j, ok in zip(jobs, done)]))


def _check_paired(per_method: dict[str, list[dict]], default: str, budget: float) -> int:
    """The pairing is by position: job i of every method must be prompt i."""
    n = len(per_method[default])
    if n == 0:
        raise ValueError(f"no jobs for {default!r} at budget {budget} s: a comparison needs at least one prompt")
    for m, jobs in per_method.items():
        if len(jobs) != n:
            raise ValueError(f"{m!r} has {len(jobs)} jobs at budget {budget} s and {default!r} has {n}: "
                             "give every method one job per prompt, in the same prompt order")
        for i, (a, b) in enumerate(zip(per_method[default], jobs)):
            if "item" in a and "item" in b and a["item"] != b["item"]:
                raise ValueError(f"job {i} is prompt {b['item']!r} for {m!r} but {a['item']!r} for {default!r}: "
                                 "order every method's jobs by prompt alike")
    return n


def paired_bootstrap(per_method: dict[str, list[dict]], default: str, against: dict[str, list[str]], replay,
                     budget: float, score, resamples: int = RESAMPLES, seed: int = 0) -> dict[str, dict]:
    """``per_method``: method -> its jobs at this budget, in prompt order (job i of every method is
    prompt i). ``against``: comparison name -> the methods whose best is the baseline. ``score(job)``
    scores a completed job. Returns, per comparison name and metric, the observed difference, the
    baseline method that is best on the prompts as drawn, the 95 % interval, its half-width and the
    verdict."""
    missing = sorted({m for ms in against.values() for m in ms} - set(per_method))
    if missing or not all(against.values()):
        raise ValueError(f"baselines {against} name methods without jobs ({missing}) or none at all; "
                         f"methods with jobs: {sorted(per_method)}")
    n = _check_paired(per_method, default, budget)
    methods = list(dict.fromkeys([default, *(m for ms in against.values() for m in ms)]))
    cache: dict = {}

    def score_of(job):  # scoring is the slow part and does not depend on the resample
        key = id(job)
        if key not in cache:
            cache[key] = score(job)
        return cache[key]

    def metrics_of(idx) -> dict[str, np.ndarray]:
        return {m: np.array(_metrics(replay, [per_method[m][i] for i in idx], budget, score_of)) for m in methods}

    def diffs(got: dict[str, np.ndarray]) -> np.ndarray:  # (comparison, metric)
        return np.array([got[default] - np.max([got[m] for m in ms], axis=0) for ms in against.values()])

    got = metrics_of(range(n))
    observed = diffs(got)
    rng = np.random.default_rng(seed)
    boot = np.array([diffs(metrics_of(rng.integers(0, n, n))) for _ in range(resamples)])
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    out = {}
    for c, (name, ms) in enumerate(against.items()):
        out[name] = {}
        for k, metric in enumerate(METRICS):
            d = observed[c, k]
            verdict = "at_least" if d >= 0 else ("within_variation" if hi[c, k] >= 0 else "worse")
            out[name][metric] = {"difference": float(d), "against": max(ms, key=lambda m: got[m][k]),
                                 "interval_95": [float(lo[c, k]), float(hi[c, k])],
                                 "half_width": float((hi[c, k] - lo[c, k]) / 2), "verdict": verdict}
    return out


def versus_best_fixed(per_method: dict[str, list[dict]], default: str, fixed: list[str], replay, budget: float,
                      score, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """The default against the best of ``fixed``: ``paired_bootstrap`` with that one comparison."""
    return paired_bootstrap(per_method, default, {"best": fixed}, replay, budget, score, resamples, seed)["best"]
