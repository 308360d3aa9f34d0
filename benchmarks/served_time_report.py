"""Where the time model's error through the nodes comes from, read from estimate_bench.py's JSON.

For each run given (the `estimate_bench.json` of `benchmarks/estimate_bench.py`, goals in the order
they were sent): the completed goals' prefill as planned against as measured (mean and largest
error, goals more than 30 % off), and how well the recent jobs' speed predicts the next job's:
each job's seconds per decoding step (its measured decoding over its steps, jobs of 6 tokens or
more) against the median of the k jobs before it, mean error for several k (the calibration plans
from such a median; if a short window followed the machine better, it would show here). Then, over
all the runs given, the time model's signed error given the real length by answer length.

    python benchmarks/served_time_report.py docs/bench/estimate_bench_s17_prefill_*.json
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics

WINDOWS = (1, 2, 4, 8, 16, 32)
LENGTHS = (16, 32, 64, 128)  # answer-length bins (generated tokens) for the time model's bias
SKIP_FIRST = 8  # the first jobs of a run have no window to speak of


def prefill_errors(goals: list[dict]) -> list[float]:
    return [abs(g["predicted_prefill"] - g["measured_prefill"]) / g["measured_prefill"]
            for g in goals if g["outcome"] == "COMPLETED" and g["measured_prefill"] > 0]


def window_errors(goals: list[dict]) -> dict[int, float]:
    step = [g["measured_decode"] / (g["generated_tokens"] - 1) for g in goals
            if g["generated_tokens"] >= 6 and g["measured_decode"] > 0]
    return {k: statistics.mean(abs(statistics.median(step[max(0, i - k):i]) - step[i]) / step[i]
                               for i in range(SKIP_FIRST, len(step))) for k in WINDOWS}


def _labels() -> list[str]:
    starts = (0, *LENGTHS)
    return [f"{a}-{b - 1}" for a, b in zip(starts, LENGTHS)] + [f">= {LENGTHS[-1]}"]


def bias_by_length(goals: list[dict]) -> dict[str, list[float]]:
    """The time model's signed error given the real length, (predicted - real) / real, of the
    completed goals, by answer length."""
    out: dict[str, list[float]] = {}
    for g in goals:
        if g["outcome"] != "COMPLETED" or g["measured_total"] <= 0:
            continue
        n = g["generated_tokens"]
        key = next((label for label, b in zip(_labels(), LENGTHS) if n < b), _labels()[-1])
        out.setdefault(key, []).append((g["time_given_length"] - g["measured_total"]) / g["measured_total"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=pathlib.Path, help="estimate_bench.json files")
    args = ap.parse_args()
    print("| run | prefill as planned: mean error (max) | goals > 30 % off | next job's step from the median of the last k: "
          + ", ".join(f"k={k}" for k in WINDOWS) + " |")
    print("|---|---|---|---|")
    for path in args.runs:
        goals = json.loads(path.read_text())["goals"]
        pe, we = prefill_errors(goals), window_errors(goals)
        print(f"| {path.name} | {100 * statistics.mean(pe):.1f} % ({100 * max(pe):.0f} %) | {sum(e > 0.3 for e in pe)} | "
              + ", ".join(f"{100 * we[k]:.1f} %" for k in WINDOWS) + " |")
    pooled: dict[str, list[float]] = {}
    for path in args.runs:
        for key, errors in bias_by_length(json.loads(path.read_text())["goals"]).items():
            pooled.setdefault(key, []).extend(errors)
    print("\nThe time model given the real length, completed goals of all runs, by answer length (tokens):")
    print("| answer tokens | goals | mean signed error | mean error |\n|---|---|---|---|")
    for key in _labels():
        e = pooled.get(key, [])
        if e:
            print(f"| {key} | {len(e)} | {100 * statistics.mean(e):+.1f} % | {100 * statistics.mean(abs(x) for x in e):.1f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
