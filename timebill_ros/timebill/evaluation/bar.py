"""The evaluation's bar, per data set, strategy and budget cell, for the default method.

A planner wants the model's own answer whenever it fits, so the bar depends on whether the budget
presses at all:

* Under time pressure (no eviction completes fewer than 95 % of the cell's jobs, under the cell's
  strategy): the default's completion rate and average score are each at least the best fixed
  ratio's (no eviction included), or the difference's 95 % paired bootstrap interval reaches zero.
* Without time pressure: the default's average score is at least no eviction's (the same
  allowance), and its fidelity to the model's own answer is at least 0.9: the mean ROUGE-L of the
  default's completed answers against no eviction's answer to the same prompt (a fixed ratio that
  scores higher only by changing an answer that fits is not a target). Fidelity is a point value:
  the issue sets it as a floor, not a difference.

On a set scored against the model's own answer (``Task.scored_against_own_answer``), the
completion side compares with no eviction and only the fixed ratios whose completed answers in the
cell keep a fidelity of at least ``MIN_COMPLETION_FIDELITY``: a completion bought by damaging the
question is not one a user would take.

The differences and intervals are ``compare.paired_bootstrap``'s, one resampling per cell.
"""
from __future__ import annotations

import numpy as np

from . import compare, metrics
from .schedule import replay_outcomes

PRESSURE_BELOW = 0.95   # no eviction's completion rate under which a cell is under time pressure
MIN_FIDELITY = 0.9      # the default's fidelity to the model's own answer, without time pressure
MIN_COMPLETION_FIDELITY = 0.5  # a fixed ratio's completions count against the default only above this (own-answer sets)
NO_EVICTION = "none"    # the method whose answers are the model's own
RULES = {"time_pressure": "completion rate and average score >= the best fixed ratio's (within the 95 % interval)",
         "no_time_pressure": f"average score >= no eviction's (within the 95 % interval), fidelity >= {MIN_FIDELITY}"}


def rule_for(no_eviction_completion_rate: float) -> str:
    return "time_pressure" if no_eviction_completion_rate < PRESSURE_BELOW else "no_time_pressure"


def fidelity(jobs: list[dict], completed: list[bool], own_answer: dict[str, str]) -> dict:
    """Mean ROUGE-L of the completed jobs' answers against ``own_answer[job item]`` (no eviction's
    answer to the same prompt); ``value`` is None when no job completed."""
    got = [metrics.rouge_l(j["text"], own_answer[j["item"]]) for j, ok in zip(jobs, completed) if ok]
    return {"value": float(np.mean(got)) if got else None, "answers": len(got)}


def _difference_check(c: dict) -> dict:
    """At least the baseline, or zero within the difference's interval (compare's verdict is not "worse")."""
    return {**{k: c[k] for k in ("against", "difference", "interval_95", "half_width")},
            "passed": c["verdict"] != "worse"}


def judge(no_eviction_completion_rate: float, versus_best_fixed: dict, versus_none: dict, fid: dict,
          versus_completion: dict | None = None) -> dict:
    """The bar for one cell from its comparisons (``compare.paired_bootstrap``'s per-metric dicts)
    and the default's fidelity (``fidelity``'s dict). ``versus_completion``: the comparison the
    completion rate is judged by, where it is not the best fixed ratio (own-answer sets)."""
    rule = rule_for(no_eviction_completion_rate)
    completion = (versus_completion or versus_best_fixed)["completion_rate"]
    if rule == "time_pressure":
        checks = {"completion_rate_vs_best_fixed": _difference_check(completion),
                  "avg_score_vs_best_fixed": _difference_check(versus_best_fixed["avg_score"])}
    else:
        # No completed answer has no fidelity to show: the cell fails (its score check fails too).
        checks = {"avg_score_vs_none": _difference_check(versus_none["avg_score"]),
                  "fidelity": {**fid, "threshold": MIN_FIDELITY,
                               "passed": fid["value"] is not None and fid["value"] >= MIN_FIDELITY}}
    return {"no_eviction_completion_rate": float(no_eviction_completion_rate), "rule": rule, "checks": checks,
            "fidelity": fid, "passed": all(c["passed"] for c in checks.values())}


def judge_cell(per_method: dict[str, list[dict]], default: str, fixed: list[str], replay, budget: float, score,
               own_answer: dict[str, str], also: dict[str, list[str]] | None = None,
               resamples: int = compare.RESAMPLES, seed: int = 0, faithful_completion: bool = False) -> tuple[dict, dict]:
    """One cell: ``per_method`` as ``compare.paired_bootstrap`` takes it, ``fixed`` the fixed
    methods (no eviction among them), ``own_answer`` item -> no eviction's answer. ``also``: more
    comparisons to draw on the same resamples (their results come back, they are not judged).
    ``faithful_completion``: judge the completion rate against no eviction and the fixed ratios
    whose completed answers keep ``MIN_COMPLETION_FIDELITY`` (``faithful_fixed``).
    Returns (the cell's judgement, every comparison by name)."""
    if NO_EVICTION not in fixed:
        raise ValueError(f"the fixed methods {fixed} lack {NO_EVICTION!r}: the bar compares with no eviction")

    def completed(m: str) -> list[bool]:
        return [o.completed for o in replay_outcomes(replay, per_method[m], budget)]

    against = {"best_fixed": list(fixed), NO_EVICTION: [NO_EVICTION], **(also or {})}
    if faithful_completion:
        kept = {m: fidelity(per_method[m], completed(m), own_answer)["value"] for m in fixed}
        against["faithful_fixed"] = [m for m in fixed if m == NO_EVICTION or (kept[m] or 0.0) >= MIN_COMPLETION_FIDELITY]
    cmp = compare.paired_bootstrap(per_method, default, against, replay, budget, score, resamples, seed)
    none_rate = float(np.mean(completed(NO_EVICTION)))
    return judge(none_rate, cmp["best_fixed"], cmp[NO_EVICTION], fidelity(per_method[default], completed(default), own_answer),
                 versus_completion=cmp.get("faithful_fixed")), cmp


def half_widths(cells: list[dict]) -> dict:
    """Median and largest half-width of the cells' judged intervals, per check."""
    out = {}
    for name in ("completion_rate_vs_best_fixed", "avg_score_vs_best_fixed", "avg_score_vs_none"):
        hw = [c["checks"][name]["half_width"] for c in cells if name in c["checks"]]
        if hw:
            out[name] = {"cells": len(hw), "median": float(np.median(hw)), "max": float(np.max(hw))}
    return out


def _diff(c: dict | None) -> str:
    if c is None:
        return "-"
    lo, hi = c["interval_95"]
    return f"{c['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}] vs {c['against']}"


def table(name: str, cells: list[dict]) -> list[str]:
    """The bar of one data set as Markdown table lines (printed as they are, and written to bar-*.md)."""
    lines = [f"| {name} | strategy | budget (s) | no eviction completes | rule | completion rate: difference "
             "[95 % interval] | average score: difference [95 % interval] | fidelity | pass | planner expected / got: "
             "completion; quality |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        k = c["checks"]
        score = k.get("avg_score_vs_best_fixed") or k.get("avg_score_vs_none")
        fid = c["fidelity"]["value"]
        fid_s = "-" if fid is None else f"{fid:.3f}"
        fid_s = f"{fid_s} (>= {MIN_FIDELITY})" if "fidelity" in k else f"{fid_s} (not judged)"
        rule = "time pressure" if c["rule"] == "time_pressure" else "no time pressure"
        lines.append(f"| | {c['strategy']} | {c['budget']:.2f} | {c['no_eviction_completion_rate']:.2f} | {rule} | "
                     f"{_diff(k.get('completion_rate_vs_best_fixed'))} | {_diff(score)} | {fid_s} | "
                     f"{'yes' if c['passed'] else '**no**'} | {_view(c.get('planner_view'))} |")
    return lines


def _view(v: dict | None) -> str:
    if not v:
        return "-"

    def q(x):
        return "-" if x is None else f"{x:.2f}"
    return (f"{v['predicted_completion']:.2f} / {v['completion']:.2f}; {q(v['predicted_quality'])} / {q(v['quality'])} "
            f"(ratio {v['mean_ratio']:.2f})")


def summary(cells: list[dict]) -> str:
    hw = half_widths(cells)
    widths = "; ".join(f"{k}: median {v['median']:.3f}, max {v['max']:.3f} ({v['cells']} cells)" for k, v in hw.items())
    return (f"{sum(c['passed'] for c in cells)} of {len(cells)} cells pass. Half-width of the 95 % intervals: "
            f"{widths or 'none judged'}.")


def markdown(report: dict) -> str:
    """The whole run's bar (every data set), for bar-<preset>.md beside the results."""
    out = [f"# The bar, preset {report['preset']}: `{report['default_method']}` on {report['model']}",
           "", f"{report['date']}, {report['machine']}, {report['threads']} threads.", "",
           f"- Under time pressure (no eviction completes < {100 * PRESSURE_BELOW:.0f} % of the cell's jobs): {RULES['time_pressure']}.",
           f"- Without: {RULES['no_time_pressure']}; fidelity is the mean ROUGE-L of the default's completed answers "
           "against no eviction's answer to the same prompt.",
           "- Differences are the default minus the baseline named after `vs` (the best on these prompts); intervals "
           "are paired bootstraps over prompts.",
           "- On a set scored against the model's own answer, the completion rate is compared with no eviction and the "
           f"fixed ratios whose completed answers keep a fidelity of at least {MIN_COMPLETION_FIDELITY}.",
           "- The last column: what the default planner expected against what happened, the completion rate (mean "
           "completion probability / completed) and the quality of its completed answers relative to no eviction's "
           "(mean retention / measured score ratio), with its mean eviction ratio.", ""]
    everything = []
    for name, t in report["tasks"].items():
        out += table(name, t["bar"]) + ["", summary(t["bar"]), ""]
        everything += t["bar"]
    out.append(f"All data sets: {summary(everything)}")
    return "\n".join(out) + "\n"
