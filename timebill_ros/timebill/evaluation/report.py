"""The evaluation's report: the tables printed per task, and the figures."""
from __future__ import annotations

import pathlib

import numpy as np

from . import bar


def print_task(name: str, t: dict) -> None:
    context = f"context cap {t['context_cap']} tokens" if t["context_cap"] else "no context"
    print(f"\n=== {name}: {t['items']} prompts, {context}, max {t['max_new_tokens']} new tokens, "
          f"no-eviction median time {t['no_eviction_time_median']:.2f} s")
    for strategy in ("kill", "skip_next"):
        print(f"-- {strategy}: completion rate / average {t['score']} per budget (s)")
        print(f"{'method':>14} " + " ".join(f"{b:>11.1f}" for b in t["budgets"]))
        methods = sorted({r["method"] for r in t["table"]}, key=list(dict.fromkeys(r["method"] for r in t["table"])).index)
        for m in methods:
            cells = []
            for b in t["budgets"]:
                r = next(x for x in t["table"] if x["strategy"] == strategy and x["method"] == m and x["budget"] == b)
                cells.append(f"{r['completion_rate']:.2f}/{r['avg_score']:.3f}")
            print(f"{m:>14} " + " ".join(f"{c:>11}" for c in cells))
    print_versus(t.get("versus_best_fixed", []))
    if t.get("bar"):
        print(f"-- the bar ({bar.RULES['time_pressure']} when no eviction completes < {100 * bar.PRESSURE_BELOW:.0f} %; "
              f"else {bar.RULES['no_time_pressure']})")
        print("\n".join(bar.table(name, t["bar"])))
        print(bar.summary(t["bar"]))
    print_odds(t)
    print("fidelity (ROUGE-L vs the uncompressed answer): " + ", ".join(f"{m} {v:.3f}" for m, v in t["fidelity_rouge_l"].items()))
    for m, acc in t["time_model"].items():
        print(f"time model, {m}: MAPE {acc['mape_pct']:.1f} % over {acc['jobs']} jobs; measured > predicted worst case "
              f"in {100 * acc['over_worst_case']:.1f} %; length MAE {acc['length_mae']:.1f} tokens")
    tg = t["timing"]
    print(f"timing model on the {tg['runs']} recorded runs (their real lengths): measured/predicted median "
          f"{tg['ratio_median']:.3f}, p90 {tg['ratio_p90']:.3f}; at the median prompt ({tg['median_prompt_tokens']} tokens) "
          f"a {t['max_new_tokens']}-token answer takes {tg['full_time_s']:.2f} s and evicting 95 % of the cache saves "
          f"{tg['saved_at_0.95_s']:.2f} s of it")
    cal = t["calibration"]
    print(f"online calibration after the run: prefill x{cal['prefill_scale']:.3f}, decode x{cal['decode_scale']:.3f}")
    for m, acc in t["time_model"].items():
        c = acc["alpha_counts"]
        print(f"{m}: predicted length {acc['mean_predicted_tokens']:.1f} (bound {acc['mean_bound']:.1f}) vs generated "
              f"{acc['mean_tokens']:.1f} tokens on average, bound covers {100 * acc['bound_covers']:.0f} %; "
              f"eviction ratio 0 in {c['none']}, = max_eviction_ratio in {c['alpha_max']}, between in {c['between']} jobs")
        refused = acc["infeasible"]
        print(f"{m}: INFEASIBLE (nothing useful fits) per budget: " + ", ".join(
            f"{float(b):g} s: {r['infeasible']} ({r['of_which_no_eviction_completes']} that no eviction completes)"
            for b, r in refused.items()))
    if t["k_sweep"]:
        print(f"k sweep (paper bound, Kill, budget {t['k_sweep'][0]['budget']:.1f} s): " + ", ".join(
            f"k={r['k']:g}: {r['completion_rate']:.2f}/{r['avg_score']:.3f} (eviction ratio {r['mean_alpha']:.2f})" for r in t["k_sweep"]))
    lc = t["live_check"]
    if lc.get("jobs"):
        print(f"live Kill check: {lc['jobs']} jobs, replay agrees with live in {100 * lc['agreement']:.0f} %")


def print_versus(rows: list[dict]) -> None:
    """timebill minus the best fixed ratio per cell, with its 95 % bootstrap interval over prompts."""
    if not rows:
        return

    def interval(c: dict) -> str:
        return f"{c['difference']:+.3f} [{c['interval_95'][0]:+.3f}, {c['interval_95'][1]:+.3f}]"

    print("-- timebill minus the best fixed ratio (completion rate; average score), 95 % bootstrap interval over prompts")
    for r in rows:
        cells = []
        for k in ("completion_rate", "avg_score"):
            c = r[k]
            mark = {"at_least": "", "within_variation": " (within)", "worse": " WORSE"}[c["verdict"]]
            cells.append(interval(c) + mark)
        print(f"{r['strategy']:>9} {r['budget']:>5.2f} s: " + "; ".join(cells))
    worse = sum(r[k]["verdict"] == "worse" for r in rows for k in ("completion_rate", "avg_score"))
    print(f"cells where timebill is worse beyond the interval: {worse} of {2 * len(rows)}")
    print("-- the score planner against the budget planner: timebill minus timebill_budget (completion rate; average score), "
          "95 % bootstrap interval")
    for r in rows:
        c = r.get("versus_budget_planner")
        if c:
            print(f"{r['strategy']:>9} {r['budget']:>5.2f} s: " + "; ".join(interval(c[k]) for k in ("completion_rate", "avg_score")))


def plot(report: dict, out: pathlib.Path, preset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(report["tasks"])
    fig, axes = plt.subplots(len(tasks) * 2, 2, figsize=(11, 4.2 * len(tasks) * 2), squeeze=False)
    for ti, tname in enumerate(tasks):
        t = report["tasks"][tname]
        for si, strategy in enumerate(("kill", "skip_next")):
            rows = [r for r in t["table"] if r["strategy"] == strategy]
            for m in dict.fromkeys(r["method"] for r in rows):
                rs = [r for r in rows if r["method"] == m]
                style = "-o" if m.startswith("timebill") else "--."
                axes[ti * 2 + si][0].plot([r["budget"] for r in rs], [r["completion_rate"] for r in rs], style, label=m)
                axes[ti * 2 + si][1].plot([r["budget"] for r in rs], [r["avg_score"] for r in rs], style, label=m)
            axes[ti * 2 + si][0].set_title(f"{tname}, {strategy}: completion rate")
            axes[ti * 2 + si][1].set_title(f"{tname}, {strategy}: average {t['score']}")
            for ax in axes[ti * 2 + si]:
                ax.set_xlabel("time budget (s)")
                ax.grid(alpha=0.3)
            axes[ti * 2 + si][1].legend(fontsize=7)
    fig.suptitle(f"TimeBill on {report['model']}, CPU ({report['threads']} threads), preset {preset}")
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # leave the suptitle its own band above the top panels
    fig.savefig(out / f"completion_score-{preset}.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 5))
    for tname in tasks:
        for m, acc in report["tasks"][tname]["time_model"].items():
            pts = np.array(acc["points"])
            if len(pts):
                ax.scatter(pts[:, 1], pts[:, 0], s=10, label=f"{tname} {m}")
    lim = ax.get_xlim()[1]
    ax.plot([0, lim], [0, lim], "k--", lw=1)
    ax.set_xlabel("measured end-to-end time (s)")
    ax.set_ylabel("predicted (expected) time (s)")
    ax.legend(fontsize=7)
    ax.set_title("TimeBill: predicted vs measured time")
    fig.tight_layout()
    fig.savefig(out / f"predicted_vs_measured-{preset}.png", dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for tname in tasks:
        rows = report["tasks"][tname]["k_sweep"]
        label = f"{tname} ({rows[0]['budget']:.1f} s)" if rows else tname
        axes[0].plot([r["k"] for r in rows], [r["completion_rate"] for r in rows], "-o", label=label)
        axes[1].plot([r["k"] for r in rows], [r["avg_score"] for r in rows], "-o", label=label)
    axes[0].set_title("completion rate vs k (Kill)")
    axes[1].set_title("average score vs k (Kill)")
    for ax in axes:
        ax.set_xlabel("k (worst case = k x predicted length)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"k_sweep-{preset}.png", dpi=110)
    plt.close(fig)


def plot_bar(report: dict, out: pathlib.Path, preset: str) -> None:
    """The bar per cell: the default's difference from its baseline (the best fixed ratio under time
    pressure, no eviction without) with the 95 % interval, completion rate and average score, per
    data set and strategy; a cell that fails is drawn red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    tasks = [t for t in report["tasks"] if report["tasks"][t].get("bar")]
    if not tasks:
        return
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 3.6 * len(tasks)), squeeze=False)
    for ti, tname in enumerate(tasks):
        for ci, (label, names) in enumerate((("completion rate", ("completion_rate_vs_best_fixed",)),
                                             ("average score", ("avg_score_vs_best_fixed", "avg_score_vs_none")))):
            ax = axes[ti][ci]
            for si, (strategy, marker) in enumerate((("kill", "o"), ("skip_next", "s"))):
                for c in report["tasks"][tname]["bar"]:
                    check = next((c["checks"][n] for n in names if n in c["checks"]), None)
                    if c["strategy"] != strategy or check is None:
                        continue
                    lo, hi = check["interval_95"]
                    x = c["budget"] * (1 + 0.015 * (2 * si - 1))  # kill and skip_next side by side
                    color = "tab:green" if c["passed"] else "tab:red"
                    # a percentile interval need not contain the point: the line and the point apart
                    ax.vlines(x, lo, hi, color=color, lw=1.2)
                    ax.plot([x], [check["difference"]], marker, color=color, ms=4)
            ax.axhline(0, color="k", lw=0.8)
            budgets = report["tasks"][tname]["budgets"]
            if max(budgets) > 4 * min(budgets):  # 0.5-10 s: log, with the seconds written out
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
                ax.set_xticks(budgets)
            ax.set_xlabel("time budget (s); o kill, s skip_next; red: the cell fails")
            ax.set_title(f"{tname}: {report['default_method']} minus its baseline, {label}")
            ax.grid(alpha=0.3)
    fig.suptitle(f"The bar, preset {preset}: differences and 95 % paired bootstrap intervals")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(out / f"bar-{preset}.png", dpi=110)
    plt.close(fig)


def plot_reliability(report: dict, out: pathlib.Path, preset: str) -> None:
    """Per data set: each planner's completion probability against how often its jobs completed
    under Kill (bins of the probability; on the diagonal = calibrated)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in report["tasks"] if report["tasks"][t].get("odds")]
    if not tasks:
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 4), squeeze=False)
    for ax, tname in zip(axes[0], tasks):
        for m, odds in report["tasks"][tname]["odds"].items():
            xs = [b["predicted"] for b in odds["bins"]]
            ys = [b["completed"] for b in odds["bins"]]
            ax.plot(xs, ys, "o-", ms=3, label=f"{m} (ECE {odds['ece']:.3f})")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_xlabel("completion probability at acceptance")
        ax.set_ylabel("completed under Kill")
        ax.set_title(tname)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Are the odds right? preset {preset}, every budget")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(out / f"reliability-{preset}.png", dpi=110)
    plt.close(fig)


def print_odds(t: dict) -> None:
    for m, o in t.get("odds", {}).items():
        g = o["measured_over_predicted_given_length"]
        per = ", ".join(f"{a}: {v['median']:.3f} ({v['jobs']})" for a, v in o["measured_over_predicted_by_ratio"].items()
                        if v["median"] is not None)
        print(f"odds, {m}: ECE {o['ece']:.3f} over {o['jobs']} jobs (mean probability {o['mean_probability']:.3f}, "
              f"completed {o['completion_rate']:.3f}); timing given the real length, measured/predicted median "
              f"{g['median']:.3f}, p90 {g['p90']:.3f}; by ratio chosen: {per}")
