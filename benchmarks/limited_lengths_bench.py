"""How a length head predicts the prompts length control sends: "Answer in at most W words."

Length control limits a goal by adding that line to its system prompt, and the goal is then
planned from the head's prediction for the limited prompt. This reads the labelled `limited/...`
prompts of the labels file (`timebill/rlp/sources.py`, labelled on the serving engine) and prints,
per word limit, the head's point prediction against the length really generated (median of
their ratio, MAE, share over-predicted), for the head given (--head, default the shipped one) on
the prompts of --split (default all: a head trained before these labels has seen none of them; a
head trained with them has seen the train split's).

    source scripts/env.sh
    python benchmarks/limited_lengths_bench.py --head /path/to/head.pt --split all
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--head", default=None, help="head file (default: the shipped one)")
    ap.add_argument("--split", default="all", choices=["all", "train", "val", "test", "heldout"],
                    help="heldout: val and test")
    ap.add_argument("--labels", default=None, help="labels file (default: the shipped head's)")
    ap.add_argument("--work", default=None, help="feature cache (default: runs/rlp, as `rlp train`)")
    a = ap.parse_args()

    import pathlib

    from timebill.config import load_config
    from timebill.rlp.cli import DEFAULT_LABELS, DEFAULT_WORK
    from timebill.rlp.data import split_of
    from timebill.rlp.features import features_for
    from timebill.rlp.labelled import labelled
    from timebill.rlp.model import LengthHead
    from timebill.rlp.predictor import default_head_path
    from timebill.runtime import load_configured_model

    head = LengthHead.load(a.head or default_head_path())
    keep = {"all": ("train", "val", "test"), "heldout": ("val", "test")}.get(a.split, (a.split,))
    recs = [r for r in labelled(a.labels or DEFAULT_LABELS)
            if r["id"].startswith("limited/") and split_of(r["id"]) in keep]
    if not recs:
        print("no labelled limited prompts in that split: python -m timebill.rlp label --mix limited=N ...")
        return 1
    loaded = load_configured_model(load_config())
    x = features_for(loaded, recs, [head.cfg.layers], head.cfg.max_input_tokens,
                     pathlib.Path(a.work) if a.work else DEFAULT_WORK)[head.cfg.layers]
    predicted = head.predict_lengths(x)
    limits = [int(r["id"].split("/")[1]) for r in recs]  # ids are limited/<words>/<request id>
    rows = []
    for words in sorted(set(limits)):
        sel = [(int(p), int(r["length"])) for p, r, w in zip(predicted, recs, limits) if w == words]
        rows.append({"words": words, "prompts": len(sel),
                     "median_predicted": statistics.median(p for p, _ in sel),
                     "median_real": statistics.median(y for _, y in sel),
                     "median_ratio": statistics.median(p / max(y, 1) for p, y in sel),
                     "mae": statistics.mean(abs(p - y) for p, y in sel),
                     "over_predicted_pct": 100 * sum(p > y for p, y in sel) / len(sel)})
    print(f"head {a.head or default_head_path()}, split {a.split}, {len(recs)} limited prompts")
    print("| word limit | prompts | median predicted | median real | median predicted/real | MAE | over-predicted |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['words']} | {r['prompts']} | {r['median_predicted']:.0f} | {r['median_real']:.0f} | "
              f"{r['median_ratio']:.2f} | {r['mae']:.1f} | {r['over_predicted_pct']:.0f} % |")
    print(json.dumps({"head": str(a.head or "shipped"), "split": a.split, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
