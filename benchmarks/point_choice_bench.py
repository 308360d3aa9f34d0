"""Which point of the length head's distribution should the estimate name? Offline, on labels.

For each labelled prompt of a split (its real answer length on the serving engine), the shipped
head's distribution is read and each candidate point timed by this machine's profiled timing model
(prefill + decode, no eviction); the real answer is timed the same way. At each budget a goal
"completes" when its real time fits and is "estimated to fit" when the point's time does. Printed
per rule: the mean and median relative error of the completed goals' estimates (issue 17's first
target) and the share of the goals estimated to fit that complete (its second), then the same per
source. Rules: quantiles of the distribution (0.5: the median the head was trained to give), the
length of least expected relative error (`LengthDistribution.least_relative_error`), and that point
where the median fits, the median elsewhere (what `Estimator._reported_point` tells a planner).

This isolates the choice of the point: no queueing, word limits, stopped loops or timing noise
(those are in benchmarks/estimate_bench.py, through the nodes). The `limited/` prompts (asked for a
word limit) are left out: the shipped head was not trained with them.

    source scripts/env.sh
    python benchmarks/point_choice_bench.py --split test      # seconds, with the features cached
"""
from __future__ import annotations

import argparse
import pathlib
import statistics


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--budgets", default="1,3")
    ap.add_argument("--work", default=None, help="the prompts' features are cached here (default: runs/rlp, as `rlp train`)")
    args = ap.parse_args()

    from timebill.config import load_config
    from timebill.length_distribution import LengthDistribution
    from timebill.rlp.cli import DEFAULT_LABELS, DEFAULT_WORK
    from timebill.rlp.features import features_for
    from timebill.rlp.labelled import labelled, split_indices
    from timebill.rlp.model import LengthHead
    from timebill.rlp.predictor import default_head_path
    from timebill.runtime import load_configured_model, time_model_path
    from timebill.time_model import TimeModel

    cfg = load_config()
    loaded = load_configured_model(cfg)
    tm = TimeModel.load(time_model_path(cfg, loaded))
    head = LengthHead.load(default_head_path())
    recs = labelled(DEFAULT_LABELS)
    recs = [recs[i] for i in split_indices(recs)[args.split] if not recs[i]["id"].startswith("limited/")]
    L, cap = head.cfg.layers, head.cfg.max_tokens
    feats = features_for(loaded, recs, [L], head.cfg.max_input_tokens, pathlib.Path(args.work) if args.work else DEFAULT_WORK)[L]
    ends, probs = head.distribution(feats)
    print(f"{len(recs)} {args.split} prompts of {DEFAULT_LABELS.name}; head {default_head_path().name} (cap {cap}); "
          f"timing model {time_model_path(cfg, loaded).name}")

    def seconds(m, n):
        return tm.end_to_end(m, n, 0.0)

    goals = []  # (source, prompt tokens, real length, {rule: point} without the budget-dependent one)
    for r, p in zip(recs, probs):
        d = LengthDistribution.of(ends, p)
        m = int(r["prompt_tokens"])
        points = {f"quantile {q}": d.quantile(q) for q in (0.3, 0.4, 0.6)}
        points["median (the head's point)"] = d.median()
        points["least relative error"] = d.least_relative_error(lambda n, m=m: seconds(m, n))
        goals.append((r["source"], m, min(int(r["length"]), cap), points))

    def points_at(budget):
        out = []
        for source, m, n, points in goals:
            pts = dict(points)
            med, lre = points["median (the head's point)"], points["least relative error"]
            pts["least rel. error where the median fits (served)"] = lre if seconds(m, med) <= budget else med
            out.append((source, m, n, pts))
        return out

    def score(rows, rule, budget):
        errors, fit, fit_done = [], 0, 0
        for _source, m, n, pts in rows:
            real, est = seconds(m, n), seconds(m, pts[rule])
            if real <= budget:
                errors.append(abs(est - real) / real)
            if est <= budget:
                fit += 1
                fit_done += real <= budget
        return errors, fit, fit_done

    budgets = [float(b) for b in args.budgets.split(",")]
    rules = list(points_at(budgets[0])[0][3])
    print("\n| budget | rule | completed | mean error | median error | estimated to fit | of those completed |")
    print("|---|---|---|---|---|---|---|")
    for budget in budgets:
        rows = points_at(budget)
        for rule in rules:
            errors, fit, fit_done = score(rows, rule, budget)
            print(f"| {budget:g} s | {rule} | {len(errors)} | {100 * statistics.mean(errors):.1f} % | "
                  f"{100 * statistics.median(errors):.1f} % | {fit} | {100 * fit_done / max(fit, 1):.1f} % |")
    print("\nper source, the budgets pooled: mean error of the completed goals' estimates (completed goals)")
    shown = ("median (the head's point)", "least relative error", "least rel. error where the median fits (served)")
    print("| source | " + " | ".join(shown) + " |")
    print("|---|" + "---|" * len(shown))
    for source in sorted({g[0] for g in goals}):
        cells = []
        for rule in shown:
            errors = []
            for budget in budgets:
                errors += score([g for g in points_at(budget) if g[0] == source], rule, budget)[0]
            cells.append(f"{100 * statistics.mean(errors):.1f} % ({len(errors)})" if errors else "-")
        print(f"| {source} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
