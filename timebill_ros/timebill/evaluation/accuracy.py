"""How well TimeBill's predictions held on the recorded runs: the timing model, the length
bound, where the planner put the ratio, and the jobs it refused."""
from __future__ import annotations

from statistics import median

import numpy as np

from ..profiler import mape
from ..time_model import kept_positions
from .records import RATIO, Recorder, ratio_key


def timing_of_records(records: list[dict], tm, max_new_tokens: int) -> dict:
    """How well the profiled timing model (no online correction) predicts the recorded runs, given
    their real lengths; and how much time eviction can buy at all on this machine."""
    ratios = [r["total"] / tm.end_to_end(r["prompt_tokens"], r["tokens"], r[RATIO]) for r in records]
    n = int(median(r["prompt_tokens"] for r in records))
    full = tm.end_to_end(n, max_new_tokens, 0.0)
    saved = tm.decode(n, max_new_tokens) - tm.decode(kept_positions(n, 0.95), max_new_tokens)
    return {"runs": len(records), "ratio_median": float(median(ratios)), "ratio_p90": float(np.percentile(ratios, 90)),
            "median_prompt_tokens": n, "full_time_s": full, "saved_at_0.95_s": saved}


def none_durations_by_id(recorder: Recorder, items) -> dict:
    return {it.id: recorder.records[(it.id, ratio_key(0.0))]["total"] for it in items}


def infeasible_counts(jobs_by_budget: dict, none_time: dict) -> dict:
    """Per budget: jobs answered INFEASIBLE, and how many of them no eviction would have completed
    (the issue's criterion: none should be)."""
    out = {}
    for b, jobs in jobs_by_budget.items():
        refused = [j for j in jobs if j.get("infeasible")]
        out[b] = {"infeasible": len(refused), "of_which_no_eviction_completes": sum(none_time[j["item"]] <= b for j in refused)}
    return out


def eviction_ratio_counts(ratios: list[float], max_eviction_ratio: float) -> dict:
    """How often the planner kept everything, evicted the most it may, or chose a ratio between.
    (The keys, like planner_accuracy's "alpha_counts", are results-*.json's, kept as they were.)"""
    top = [a >= max_eviction_ratio - 1e-9 for a in ratios]
    return {"none": sum(a == 0 for a in ratios), "alpha_max": sum(top),
            "between": sum(0 < a and not t for a, t in zip(ratios, top))}


def planner_accuracy(jobs_by_budget: dict, max_eviction_ratio: float, none_time: dict) -> dict:
    """One planner's predictions against its replayed jobs, over every budget: the time (MAPE,
    how often the worst case was exceeded), the length and its bound, the ratios it chose, and the
    jobs it refused (``none_time``: item -> its time without eviction)."""
    jobs = [j for per_budget in jobs_by_budget.values() for j in per_budget]
    return {"jobs": len(jobs),
            "mape_pct": mape([j["predicted_total"] for j in jobs], [j["total"] for j in jobs]),
            "over_worst_case": float(np.mean([j["total"] > j["predicted_worst"] for j in jobs])),
            "length_mae": float(np.mean([abs(j["predicted_tokens"] - j["tokens"]) for j in jobs])),
            "mean_predicted_tokens": float(np.mean([j["predicted_tokens"] for j in jobs])),
            "mean_bound": float(np.mean([j["bound"] for j in jobs])),
            "mean_tokens": float(np.mean([j["tokens"] for j in jobs])),
            "bound_covers": float(np.mean([j["tokens"] <= j["bound"] for j in jobs])),
            "alpha_counts": eviction_ratio_counts([j["eviction_ratio"] for j in jobs], max_eviction_ratio),
            "infeasible": infeasible_counts(jobs_by_budget, none_time),
            "points": [[j["predicted_total"], j["total"]] for j in jobs]}


ODDS_BINS = 10


def completion_calibration(jobs_by_budget: dict) -> dict:
    """How well a planner's ``completion_probability`` held under Kill (a job completes when it
    runs and ends by its budget): the expected calibration error over ``ODDS_BINS`` equal bins of
    the probability, the bins themselves (for the reliability plot), and the timing model given
    each answer's real length (measured / predicted, median and p90), over all jobs and per ratio chosen."""
    rows = [(float(j["completion_probability"]), float(not j.get("infeasible") and j["total"] <= float(b)))
            for b, jobs in jobs_by_budget.items() for j in jobs]
    bins = []
    for k in range(ODDS_BINS):
        inside = [(p, y) for p, y in rows if k / ODDS_BINS <= p < (k + 1) / ODDS_BINS or (k == ODDS_BINS - 1 and p == 1.0)]
        if inside:
            bins.append({"from": k / ODDS_BINS, "jobs": len(inside), "predicted": float(np.mean([p for p, _ in inside])),
                         "completed": float(np.mean([y for _, y in inside]))})
    ece = sum(b["jobs"] * abs(b["predicted"] - b["completed"]) for b in bins) / max(len(rows), 1)

    def timing(jobs: list[dict]) -> dict:
        r = [j["total"] / j["predicted_given_length"] for j in jobs if not j.get("infeasible") and j["predicted_given_length"] > 0]
        return {"jobs": len(r), "median": float(median(r)) if r else None, "p90": float(np.percentile(r, 90)) if r else None}

    ran = [j for jobs in jobs_by_budget.values() for j in jobs]
    by_ratio = {}
    for j in ran:
        by_ratio.setdefault(f"{j['eviction_ratio']:.2f}", []).append(j)
    return {"jobs": len(rows), "ece": float(ece), "mean_probability": float(np.mean([p for p, _ in rows])),
            "completion_rate": float(np.mean([y for _, y in rows])), "bins": bins,
            "measured_over_predicted_given_length": timing(ran),
            "measured_over_predicted_by_ratio": {a: timing(js) for a, js in sorted(by_ratio.items())}}
