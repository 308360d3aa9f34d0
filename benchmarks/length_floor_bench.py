"""How well can any predictor that reads a request know its answer's length? The same request
written four ways that mean the same.

The held-out prompts of estimate_bench.py (the length predictor's test split, --per-source of each
source, the same fixed spread) are each run as written and with three changes that leave the
request as it was: a space at the end, a line break at the end, and the first letter's case
swapped. Each runs on the bare engine of the default configuration (`build_engine`: the served
backend, greedy, loops ended, the default token cap, no eviction, length control off, a 60 s Kill
budget), so the lengths are what the nodes would serve.

A predictor that reads what a request means cannot tell these four apart: it gives all four one
length. Two figures bracket what the best such predictor could do on them:

- the one length per request that is least wrong on its four answers, chosen knowing them: no
  predictor that gives the four one length does better (a bound, out of reach: it knows the answers);
- each answer predicted by the median of the other three's lengths: what three real answers to the
  same request tell about the fourth, more than any predictor reading the request has.

For each, and for the shipped head (the plan's point) and the constant predictor (the shipped
head's training median), it prints, against the lengths really generated:

- the length error (tokens, and as a share of the constant's);
- the end-to-end error of completed goals had each been planned at that length, everything else as
  planned (|the time the plan's model gives that length - real| / real: the time model's own error
  is in it, as in estimate_bench.py);
- how far apart the four lengths of one request are;

and, with --plot, a picture of the four lengths of each request beside the head's prediction and
the errors of the four predictors.

    source scripts/env.sh
    python benchmarks/length_floor_bench.py --per-source 8 --out docs/bench/length_floor.json   # ~8 minutes
    python benchmarks/length_floor_bench.py --summarise docs/bench/length_floor.json --plot docs/bench/length_floor.png
"""
from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import statistics
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BUDGET = 60.0  # seconds: every answer completes, so its whole length is seen

VARIANTS = {
    "as written": lambda t: t,
    "a space at the end": lambda t: t + " ",
    "a line break at the end": lambda t: t + "\n",
    "first letter's case swapped": lambda t: t[:1].swapcase() + t[1:],
}

# (name, the row's key of its predicted length)
PREDICTORS = [("best length per request, knowing all four answers (a bound)", "best_tokens"),
              ("the other three's median", "floor_tokens"), ("shipped head", "predicted_tokens"),
              ("constant", "constant_tokens")]


def bare_run(engine, text: str, system: str) -> dict:
    """One answer on the bare engine, what its plan said, and the time the plan's model gives any
    length (``at``: answer tokens -> end-to-end seconds, everything else as planned)."""
    from timebill.request import Request

    req = Request(prompt=text, budget=BUDGET, system_prompt=system, policy="kill", length_control=False,
                  max_eviction_ratio=0.0)
    plans = []
    r = engine.generate(req, on_plan=plans.append)
    est = plans[-1]
    extra = r.timed_tokens - r.generated_tokens  # the end of turn, a step like any other

    def at(n: int) -> float:
        return r.time_given_length + (est.time_model.end_to_end(len(est.prompt_ids), n + extra, est.plan.eviction_ratio)
                                      - est.time_model.end_to_end(len(est.prompt_ids), r.timed_tokens,
                                                                  est.plan.eviction_ratio))

    return {"prompt_tokens": r.prompt_tokens, "length": r.generated_tokens, "outcome": r.outcome.name,
            "stop": r.stop_reason, "total": r.total_time, "time_given_length": r.time_given_length,
            "predicted_tokens": est.plan.predicted_tokens, "predicted_total": est.plan.predicted_total, "at": at}


def node_run(client, reports: list, text: str, system: str) -> dict:
    """One goal through the nodes, sent as a planner sends it (the node's defaults, a BUDGET s Kill
    budget), with what its estimate and job report said. ``at``: the plan's time of any length, read
    as the time the model gave the real length plus the plan's decoding time per token for the
    difference (the job report carries the model's time of the real length only)."""
    from estimate_bench import next_report
    from timebill_ros.convert import OUTCOME_NAMES, seconds

    seen = len(reports)
    r = client.ask(text, BUDGET, system_prompt=system, policy="kill", timeout=BUDGET + 60)
    rep = next_report(reports, seen)
    if rep is None:
        raise SystemExit("no job report came for a goal: is the generation node publishing /timebill/job_reports?")
    given = seconds(rep.predicted_total_given_length)
    predicted, prefill = seconds(r.predicted_time), seconds(rep.predicted_prefill)
    per_token = (predicted - prefill) / max(r.predicted_tokens, 1)

    def at(n: int) -> float:
        return given + (n - r.generated_tokens) * per_token

    return {"prompt_tokens": r.prompt_tokens, "length": r.generated_tokens, "outcome": OUTCOME_NAMES[r.outcome],
            "stop": "loop" if "stopped a loop" in r.message else "", "total": seconds(rep.measured_total),
            "time_given_length": given, "predicted_tokens": r.predicted_tokens, "predicted_total": predicted, "at": at}


def best_lengths(runs) -> dict:
    """The one length for all four ways of writing a request that is least wrong on them, chosen
    knowing their answers: for the length error (``length``) and for the end-to-end error of the
    completed ones (``e2e``). No predictor that cannot tell the four apart does better on them."""
    rs = [r for _, r in runs]
    lengths = sorted({r["length"] for r in rs})

    def length_error(c):
        return sum(abs(c - r["length"]) for r in rs)

    def e2e_error(c):
        return sum(abs(r["at"](c) - r["total"]) / r["total"] for r in rs if r["outcome"] == "COMPLETED")

    return {"length": min(lengths, key=length_error), "e2e": min(lengths, key=e2e_error)}


def e2e_error(row: dict, key: str) -> float:
    """|the time planned at predictor ``key``'s length - the real time| / the real time."""
    return abs(row[key + "_e2e"] - row["total"]) / row["total"]


def interval(completed: list[dict], key: str, draws: int = 2000) -> list[float]:
    """A 90 % bootstrap interval of the mean end-to-end error, drawing requests (all four ways of
    writing one together: they are not independent)."""
    import random

    by_request: dict[str, list[float]] = {}
    for r in completed:
        by_request.setdefault(r["id"], []).append(e2e_error(r, key))
    groups = list(by_request.values())
    if not groups:
        return []
    rng = random.Random(0)
    means = []
    for _ in range(draws):
        pick = [e for _ in groups for e in rng.choice(groups)]
        means.append(100 * sum(pick) / len(pick))
    means.sort()
    return [round(means[int(0.05 * draws)], 1), round(means[int(0.95 * draws) - 1], 1)]


def summarise(rows: list[dict], constant: int) -> dict:
    """The floor (each variant from the median of the others) against the shipped head and the constant."""
    def mean(xs):
        return statistics.mean(xs) if xs else float("nan")

    completed = [r for r in rows if r["outcome"] == "COMPLETED"]
    out = {"answers": len(rows), "completed": len(completed), "constant_prediction": constant}
    for name, key in PREDICTORS:
        mae = mean([abs(r[key] - r["length"]) for r in rows])
        errors = [e2e_error(r, key) for r in completed]
        out[name] = {"length_mae": round(mae, 1), "e2e_error_completed_pct": round(100 * mean(errors), 1),
                     "e2e_error_completed_median_pct": round(100 * statistics.median(errors), 1) if errors else None}
    for name, key in PREDICTORS:
        out[name]["e2e_error_completed_pct_90_interval"] = interval(completed, key)
    for name, _ in PREDICTORS[:-1]:
        out[name]["length_mae_of_constant"] = round(out[name]["length_mae"] / out["constant"]["length_mae"], 2)
    out["time_model_given_length_pct"] = round(100 * mean([abs(r["time_given_length"] - r["total"]) / r["total"]
                                                           for r in completed]), 1)
    spreads = []
    for pid in {r["id"] for r in rows}:
        ls = [r["length"] for r in rows if r["id"] == pid]
        if len(ls) == len(VARIANTS):
            spreads.append((max(ls) - min(ls)) / max(statistics.median(ls), 1))
    out["requests"] = len(spreads)
    out["spread_median"] = round(statistics.median(spreads), 2) if spreads else None
    out["requests_with_all_four_equal"] = sum(s == 0 for s in spreads)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-source", type=int, default=8)
    ap.add_argument("--sources", default="sharegpt,narrativeqa,qasper,everyday,piqa,nq_open,brief,asks")
    ap.add_argument("--nodes", action="store_true", help="send the goals through `timebill_ros bringup` (default: the bare engine)")
    ap.add_argument("--domain", type=int, default=74, help="ROS domain of the bringup (--nodes)")
    ap.add_argument("--out", default=None, help="write the answers and the summary here (JSON)")
    ap.add_argument("--plot", default=None, help="draw the lengths and the errors here (PNG)")
    ap.add_argument("--summarise", default=None, metavar="JSON",
                    help="only summarise (and plot) an earlier run's file again (rewrites its summary)")
    args = ap.parse_args()
    if args.summarise:  # recomputed from the answers as recorded, written back with the run's command and duration
        path = pathlib.Path(args.summarise)
        data = json.loads(path.read_text())
        data["summary"] = {**summarise(data["answers"], data["summary"]["constant_prediction"]),
                           **{k: data["summary"][k] for k in ("where", "duration_s", "command") if k in data["summary"]}}
        path.write_text(json.dumps(data, indent=1))
        report(data["summary"])
        if args.plot:
            plot(args.plot, data["answers"], data["summary"])
        return 0

    from estimate_bench import constant_prediction, held_out_prompts

    prompts = held_out_prompts(args.per_source, args.sources.split(","))
    constant = constant_prediction()
    with runner(args.nodes, args.domain) as run:
        print(f"{len(prompts)} held-out prompts x {len(VARIANTS)} ways of writing them, "
              f"{'through the nodes' if args.nodes else 'on the bare engine'}", flush=True)
        t0 = time.monotonic()
        rows = measure(run, prompts, constant)
    summary = summarise(rows, constant)
    summary["where"] = "through the nodes" if args.nodes else "the bare engine"
    summary["duration_s"] = round(time.monotonic() - t0, 1)
    summary["command"] = "python benchmarks/length_floor_bench.py " + " ".join(sys.argv[1:])
    report(summary)
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps({"summary": summary, "answers": rows}, indent=1))
        print(f"wrote {args.out}")
    if args.plot:
        plot(args.plot, rows, summary)
    return 0


@contextlib.contextmanager
def runner(nodes: bool, domain: int):
    """A function (text, system prompt) -> one answer's record: through `timebill_ros bringup` on the
    default configuration from a `TimeBillClient`, or on the bare engine of the same configuration."""
    if nodes:
        from bringup_session import ready_session
        from estimate_bench import watch_reports

        with ready_session(domain) as (client, _log):
            reports = watch_reports(client)
            client.ask("Hello!", 10.0, policy="kill", timeout=60)  # the first goal of a start is not typical
            yield lambda text, system: node_run(client, reports, text, system)
        return
    from timebill.config import load_config
    from timebill.request import Request
    from timebill.runtime import build_engine

    engine = build_engine(load_config(), progress=False)
    engine.warm_up()
    engine.generate(Request(prompt="Hello!", budget=10.0))  # the first job of a start is not typical
    yield lambda text, system: bare_run(engine, text, system)


def measure(run, prompts, constant: int) -> list[dict]:
    """Every prompt written each way, one after the other; each answer with the lengths the
    predictors give it and the time its plan gives those lengths."""
    rows, t0 = [], time.monotonic()
    for i, p in enumerate(prompts, 1):
        runs = [(name, run(change(p.text), p.system)) for name, change in VARIANTS.items()]
        lengths = [r["length"] for _, r in runs]
        best = best_lengths(runs)
        for j, (name, r) in enumerate(runs):
            floor = round(statistics.median(lengths[:j] + lengths[j + 1:]))
            at = r.pop("at")
            rows.append({"id": p.id, "source": p.source, "variant": name, **r, "floor_tokens": floor,
                         "constant_tokens": constant, "best_tokens": best["length"], "floor_tokens_e2e": at(floor),
                         "predicted_tokens_e2e": at(r["predicted_tokens"]), "constant_tokens_e2e": at(constant),
                         "best_tokens_e2e": at(best["e2e"])})
        print(f"[{i}/{len(prompts)}] {p.id[:44]:44s} lengths {lengths}, head predicted "
              f"{[r['predicted_tokens'] for _, r in runs]} ({time.monotonic() - t0:.0f} s)", flush=True)
    return rows


def report(summary: dict) -> None:
    print(json.dumps(summary, indent=1))
    print("\n| predictor | length MAE (tokens) | of the constant's | end-to-end error, completed: mean (90 % interval) / median |")
    print("|---|---|---|---|")
    for name, _ in PREDICTORS:
        s = summary[name]
        print(f"| {name} | {s['length_mae']} | {s.get('length_mae_of_constant', 1.0)}x | "
              f"{s['e2e_error_completed_pct']} % ({s['e2e_error_completed_pct_90_interval'][0]}-"
              f"{s['e2e_error_completed_pct_90_interval'][1]} %) / {s['e2e_error_completed_median_pct']} % |")


def plot(path, rows: list[dict], summary: dict) -> None:
    """Left: each request's four lengths (dots) and the head's predictions (crosses), requests in
    order of their median length. Right: the four predictors' end-to-end error, mean and median."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = sorted({r["id"] for r in rows}, key=lambda i: statistics.median(r["length"] for r in rows if r["id"] == i))
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [2.2, 1]})
    for x, pid in enumerate(ids):
        rs = [r for r in rows if r["id"] == pid]
        a.plot([x] * len(rs), [r["length"] for r in rs], "o", color="tab:blue", ms=3.5, alpha=0.7)
        a.plot([x] * len(rs), [r["predicted_tokens"] for r in rs], "x", color="tab:red", ms=4, alpha=0.7)
    a.plot([], [], "o", color="tab:blue", label="answer length, each of the four ways of writing the request")
    a.plot([], [], "x", color="tab:red", label="shipped head's prediction")
    a.set_xlabel("held-out request (in order of its median answer length)")
    a.set_ylabel("tokens")
    a.set_yscale("log")
    a.legend(loc="upper left", fontsize=8)
    a.set_title("The same request written four ways: answer lengths")
    names = [n for n, _ in PREDICTORS]
    short = ["best per request\n(knows the answers)", "other three's\nmedian", "shipped head", "constant"]
    means = [summary[n]["e2e_error_completed_pct"] for n in names]
    medians = [summary[n]["e2e_error_completed_median_pct"] for n in names]
    xs = range(len(names))
    b.bar([x - 0.2 for x in xs], means, 0.4, label="mean")
    b.bar([x + 0.2 for x in xs], medians, 0.4, label="median")
    b.axhline(20, color="k", ls="--", lw=1, label="issue 17's target (mean)")
    b.set_xticks(list(xs), short, fontsize=8)
    b.set_ylabel("end-to-end estimate error, completed goals (%)")
    b.legend(fontsize=8)
    b.set_title("Planned at each predictor's length")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
