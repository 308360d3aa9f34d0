"""What ending loops does to the answers: two label files of the same prompts side by side, per
source (and per kind of ask): median length, the share at the cap, and the share that ended in a
loop. Nothing is generated; the labels are what the serving engine produced (`rlp label --mix`).

    source scripts/env.sh
    python benchmarks/loop_labels_report.py \
        --before docs/data/rlp_labels_mix_SmolLM2-135M-Instruct.jsonl \
        --after docs/data/rlp_labels_loops_SmolLM2-135M-Instruct.jsonl
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
from collections import defaultdict


def read(path) -> dict:
    from timebill.rlp.labelled import labelled

    return {r["id"]: r for r in labelled(path)}


def group_of(rec: dict) -> str:
    # "asks/<kind>/<question id>": the kind of ask is what matters there
    parts = rec["id"].split("/")
    return f"asks/{parts[1]}" if rec["source"] == "asks" and len(parts) > 2 else rec["source"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="labels made with loops running to the cap")
    ap.add_argument("--after", required=True, help="labels of the same prompts with loops ended")
    ap.add_argument("--json", default=None, help="also write the table here")
    args = ap.parse_args()
    before, after = read(args.before), read(args.after)
    both = sorted(set(before) & set(after))
    groups = defaultdict(list)
    for pid in both:
        groups[group_of(after[pid])].append(pid)
        groups["all"].append(pid)
    rows = []
    for name in sorted(groups, key=lambda g: (g == "all", g)):
        ids = groups[name]
        b, a = [before[i] for i in ids], [after[i] for i in ids]
        cap = a[0]["cap"]
        rows.append({
            "group": name, "prompts": len(ids),
            "median_before": statistics.median(r["length"] for r in b),
            "median_after": statistics.median(r["length"] for r in a),
            "mean_before": round(statistics.mean(r["length"] for r in b), 1),
            "mean_after": round(statistics.mean(r["length"] for r in a), 1),
            "at_cap_before_pct": round(100 * sum(r["length"] >= cap for r in b) / len(ids), 1),
            "at_cap_after_pct": round(100 * sum(r["length"] >= cap for r in a) / len(ids), 1),
            "loop_pct": round(100 * sum(r.get("stop") == "loop" for r in a) / len(ids), 1),
        })
    print("| group | prompts | median length: before / after | mean: before / after | at the cap: before / after "
          "| ended in a loop |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['group']} | {r['prompts']} | {r['median_before']:g} / {r['median_after']:g} | {r['mean_before']} / "
              f"{r['mean_after']} | {r['at_cap_before_pct']} % / {r['at_cap_after_pct']} % | {r['loop_pct']} % |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"before": args.before, "after": args.after, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
