"""Are the estimates a planner gets at acceptance right? Held-out goals through the nodes.

Starts `timebill_ros bringup` on the default configuration, sends every prompt of a held-out set
as a Kill goal at each budget (one at a time, through `TimeBillClient`, as a planner does), and
compares what the result says was estimated at acceptance with what happened:

- completed goals: |estimated - real end-to-end time| / real, for the point estimate
  (`predicted_time`) and the distribution's expectation (`expected_time`);
- of the goals estimated to fit (point estimate <= budget), the share that completed;
- the completion probability against the share that completed, in bins (reliability, ECE);
- the time model alone: |what it predicts for the tokens really generated - real| / real, on the
  completed goals (the job reports' `predicted_total_given_length` against `measured_total`);
- the length: |predicted - generated| of completed goals, against the constant predictor's (the
  shipped head's labels' training median: what `rlp eval` calls the constant).

Held-out prompts: the `test` split (`timebill.rlp.data.split_of`) of the length predictor's
served-like mix (`timebill/rlp/sources.py`, `scripts/setup.sh --eval`): never used to train or
to choose anything. --per-source of each source, in a fixed order.

    source scripts/env.sh
    python benchmarks/estimate_bench.py --per-source 4 --budgets 1,3 --out docs/bench   # ~8 minutes
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time


def constant_prediction() -> int:
    """The constant predictor: the median length of the shipped head's training labels (as `rlp eval`)."""
    from timebill.rlp.cli import DEFAULT_LABELS
    from timebill.rlp.data import split_of
    from timebill.rlp.labelled import labelled

    return int(statistics.median(r["length"] for r in labelled(DEFAULT_LABELS) if split_of(r["id"]) == "train"))


def held_out_prompts(per_source: int, sources: list[str]):
    from timebill.config import load_config
    from timebill.rlp.data import split_of
    from timebill.rlp.sources import load_source
    from timebill.runtime import load_configured_model

    import hashlib

    tok = load_configured_model(load_config()).tokenizer
    out = []
    for name in sources:
        # a fixed spread of each source's test prompts (ids sort by kind: "asks/brief/..." first)
        test = sorted((p for p in load_source(name, tok) if split_of(p.id) == "test"),
                      key=lambda p: hashlib.sha256(p.id.encode()).hexdigest())
        out += test[:per_source]
    return out


def ece(pairs, bins: int = 5) -> tuple[float, list]:
    """pairs: (predicted probability, completed 0/1)."""
    rows, total = [], 0.0
    for i in range(bins):
        lo, hi = i / bins, (i + 1) / bins
        sel = [(p, c) for p, c in pairs if lo <= p < hi or (i == bins - 1 and p == 1.0)]
        if sel:
            mp, mc = statistics.mean(p for p, _ in sel), statistics.mean(c for _, c in sel)
            total += len(sel) / len(pairs) * abs(mp - mc)
            rows.append((f"{lo:.1f}-{hi:.1f}", len(sel), mp, mc))
    return total, rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-source", type=int, default=4)
    ap.add_argument("--sources", default="sharegpt,narrativeqa,qasper,everyday,piqa,nq_open,brief,asks")
    ap.add_argument("--budgets", default="1,3")
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE", help="a node parameter")
    ap.add_argument("--domain", type=int, default=75)
    ap.add_argument("--out", default=None, help="folder for estimate_bench.json and estimate_bench.png")
    ap.add_argument("--summarise", default=None, metavar="JSON",
                    help="only summarise the goals of an earlier run's file again (rewrites its summary and plot)")
    args = ap.parse_args()
    if args.summarise:  # recomputed from the goals as recorded, written back with the run's command and duration
        path = pathlib.Path(args.summarise)
        data = json.loads(path.read_text())
        summary = {**summarise(data["goals"]), **{k: data["summary"][k] for k in ("duration_s", "command")
                                                    if k in data["summary"]}}
        print(json.dumps(summary, indent=1))
        path.write_text(json.dumps({"summary": summary, "goals": data["goals"]}, indent=1))
        plot(path.with_suffix(".png"), data["goals"], summary)
        return 0
    budgets = [float(b) for b in args.budgets.split(",")]
    prompts = held_out_prompts(args.per_source, args.sources.split(","))
    print(f"{len(prompts)} held-out prompts x budgets {budgets} (Kill)", flush=True)

    from bringup_session import ready_session
    from timebill_ros.convert import OUTCOME_NAMES, seconds

    rows = []
    t_start = time.monotonic()
    with ready_session(args.domain, args.param) as (client, _log):
        reports = watch_reports(client)
        client.ask("Hello!", 5.0, policy="kill", timeout=60)  # the first job teaches the served speed
        n = len(prompts) * len(budgets)
        for i, (p, budget) in enumerate(((p, b) for p in prompts for b in budgets), 1):
            seen = len(reports)
            r = client.ask(p.text, budget, system_prompt=p.system, policy="kill", timeout=budget + 60)
            rep = next_report(reports, seen)
            row = {"id": p.id, "source": p.source, "budget": budget, "outcome": OUTCOME_NAMES[r.outcome],
                   "elapsed": seconds(r.elapsed), "predicted_time": seconds(r.predicted_time),
                   "expected_time": seconds(r.expected_time), "p90_time": seconds(r.p90_time),
                   "probability": float(r.completion_probability), "predicted_tokens": r.predicted_tokens,
                   "generated_tokens": r.generated_tokens, "prompt_tokens": r.prompt_tokens,
                   "word_limit": r.answer_word_limit,
                   "time_given_length": seconds(rep.predicted_total_given_length) if rep else None,
                   "measured_total": seconds(rep.measured_total) if rep else None,
                   "measured_prefill": seconds(rep.measured_prefill) if rep else None,
                   "measured_decode": seconds(rep.measured_decode) if rep else None,
                   "predicted_prefill": seconds(rep.predicted_prefill) if rep else None,
                   "queue_wait": seconds(rep.queue_wait) if rep else None,
                   "stopped_loop": "stopped a loop" in r.message}
            rows.append(row)
            print(f"[{i}/{n}] {p.id[:40]:40s} {budget:4.1f} s {row['outcome']:10s} took {row['elapsed']:.2f} s, "
                  f"estimated {row['predicted_time']:.2f} s (expected {row['expected_time']:.2f}), "
                  f"P {row['probability']:.2f}, tokens {row['generated_tokens']} / predicted {row['predicted_tokens']}",
                  flush=True)
    summary = summarise(rows)
    summary["duration_s"] = round(time.monotonic() - t_start, 1)
    summary["command"] = "python benchmarks/estimate_bench.py " + " ".join(sys.argv[1:])
    print(json.dumps(summary, indent=1))
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "estimate_bench.json").write_text(json.dumps({"summary": summary, "goals": rows}, indent=1))
        plot(out / "estimate_bench.png", rows, summary)
        print(f"wrote {out / 'estimate_bench.json'} and {out / 'estimate_bench.png'}")
    return 0


def watch_reports(client) -> list:
    """The job reports the generation node publishes, in arrival order (goals run one at a time)."""
    from rclpy.qos import QoSProfile
    from timebill_msgs.msg import JobReport

    reports: list = []
    client.node.create_subscription(JobReport, "/timebill/job_reports", reports.append, QoSProfile(depth=100))
    return reports


def next_report(reports: list, seen: int, timeout: float = 2.0):
    """The report of the goal just answered (published with its result), or None."""
    t_end = time.monotonic() + timeout
    while len(reports) <= seen and time.monotonic() < t_end:
        time.sleep(0.01)
    return reports[-1] if len(reports) > seen else None


def summarise(rows: list[dict]) -> dict:
    done = [r for r in rows if r["outcome"] == "COMPLETED"]
    scored = [r for r in rows if r["outcome"] in ("COMPLETED", "KILLED", "INFEASIBLE")]

    def err(key, average=statistics.mean):
        e = [abs(r[key] - r["elapsed"]) / r["elapsed"] for r in done if r["elapsed"] > 0]
        return round(100 * average(e), 1) if e else None

    timed = [r for r in done if r.get("time_given_length") and r.get("measured_total")]
    fit = [r for r in scored if r["predicted_time"] <= r["budget"] and r["outcome"] != "INFEASIBLE"]
    # what a planner told "90 % sure" reads: the 90th-percentile time within the budget
    p90_fit = [r for r in scored if r["p90_time"] <= r["budget"] and r["outcome"] != "INFEASIBLE"]
    e, bins = ece([(r["probability"], r["outcome"] == "COMPLETED") for r in scored])
    lengths = [r["generated_tokens"] for r in done]
    const = constant_prediction()
    return {
        "goals": len(rows), "completed": len(done), "killed": sum(r["outcome"] == "KILLED" for r in rows),
        "infeasible": sum(r["outcome"] == "INFEASIBLE" for r in rows),
        "estimate_error_completed_pct": err("predicted_time"),
        "expected_time_error_completed_pct": err("expected_time"),
        "estimate_error_completed_median_pct": err("predicted_time", statistics.median),
        "likely_goals": sum(r["probability"] >= 0.9 for r in scored),
        "of_likely_completed_pct": round(100 * statistics.mean(r["outcome"] == "COMPLETED" for r in scored
                                                               if r["probability"] >= 0.9), 1)
        if any(r["probability"] >= 0.9 for r in scored) else None,
        "time_model_error_completed_pct": round(100 * statistics.mean(
            abs(r["time_given_length"] - r["measured_total"]) / r["measured_total"] for r in timed), 1) if timed else None,
        "time_model_bias_completed_pct": round(100 * statistics.median(
            (r["time_given_length"] - r["measured_total"]) / r["measured_total"] for r in timed), 1) if timed else None,
        "estimated_to_fit": len(fit), "of_those_completed_pct": round(100 * sum(r["outcome"] == "COMPLETED" for r in fit)
                                                                    / len(fit), 1) if fit else None,
        "p90_within_budget": len(p90_fit), "of_p90_within_completed_pct": round(
            100 * sum(r["outcome"] == "COMPLETED" for r in p90_fit) / len(p90_fit), 1) if p90_fit else None,
        "stopped_loops": sum(bool(r.get("stopped_loop")) for r in rows),
        **time_parts(timed),
        "completion_probability_ece": round(e, 3), "reliability_bins": bins,
        "length_mae_completed": round(statistics.mean(abs(r["predicted_tokens"] - r["generated_tokens"]) for r in done), 1)
        if done else None,
        "constant_length_mae_completed": round(statistics.mean(abs(const - n) for n in lengths), 1) if done else None,
        "constant_prediction": const,
        "word_limited_goals": sum(r["word_limit"] > 0 for r in rows),
    }


def time_parts(timed: list[dict]) -> dict:
    """Where the time model's error on completed goals lies: the prefill's own error, and the time
    that is neither queueing, prefill nor decoding steps (planning, the first sample, the result)."""
    parts = [r for r in timed if r.get("measured_prefill") is not None and r.get("predicted_prefill")]
    if not parts:
        return {}
    return {
        "prefill_error_median_pct": round(100 * statistics.median(
            (r["predicted_prefill"] - r["measured_prefill"]) / r["measured_prefill"] for r in parts), 1),
        "outside_prefill_and_steps_median_s": round(statistics.median(
            r["measured_total"] - r["measured_prefill"] - r["measured_decode"] - r["queue_wait"] for r in parts), 4),
    }


def plot(path, rows, summary) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.4))
    for outcome, colour in (("COMPLETED", "tab:green"), ("KILLED", "tab:red")):
        sel = [r for r in rows if r["outcome"] == outcome]
        a.scatter([r["predicted_time"] for r in sel], [r["elapsed"] for r in sel], s=14, c=colour, label=outcome)
    top = max([r["elapsed"] for r in rows] + [r["predicted_time"] for r in rows] + [1.0])
    a.plot([0, top], [0, top], color="grey", lw=1, ls="--")
    a.set_xlabel("estimated at acceptance (s)")
    a.set_ylabel("real end to end (s)")
    a.set_title(f"completed: estimate off by {summary['estimate_error_completed_pct']} % on average", fontsize=9)
    a.legend(fontsize=8)
    bins = summary["reliability_bins"]
    b.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    b.plot([x[2] for x in bins], [x[3] for x in bins], marker="o")
    for x in bins:
        b.annotate(str(x[1]), (x[2], x[3]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    b.set_xlabel("completion probability at acceptance")
    b.set_ylabel("share completed")
    b.set_title(f"reliability over {summary['goals']} goals (ECE {summary['completion_probability_ece']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
