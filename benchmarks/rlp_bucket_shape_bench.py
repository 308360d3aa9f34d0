"""Does the shipped head's distribution gain from the labels' shape inside each bucket?

The head gives a probability per 16-token bucket, and `LengthDistribution` reads lengths inside a
bucket as uniform; but a 2-token answer (yes / no) is a fifth of the first bucket's labels. This
reads each bucket instead with the training labels' own shape inside it (counts per length, plus
--alpha smoothing; the top bucket, "at least the cap", kept whole) and compares, on the validation
and test splits of the shipped head's labels, with the served cap (256):

- the point: the distribution's median, and the length of least expected relative error (what the
  planner tells, timed by this machine's timing model): MAE in tokens and the end-to-end time's
  relative error at that point (prefill and decoding of the timing model, no queueing);
- the calibration of P(length <= n) at n = 2 ... 192 (ECE over 10 bins), and the negative log
  likelihood of the exact length.

The prompts' states after the head's layer are computed once (each prompt's whole prefill, as the
served prefill reads it; ~10 minutes here) and kept in --states for later runs.

    source scripts/env.sh
    python benchmarks/rlp_bucket_shape_bench.py            # --states defaults to <timebill cache>/rlp/
"""
from __future__ import annotations

import argparse
import collections
import pathlib
import statistics
import sys
import time

CAP = 256  # the served token cap (default_max_new_tokens)
THRESHOLDS = (2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192)


def compute_states(path: pathlib.Path) -> dict:
    """{prompt id: {x, length, split, prompt_tokens}} for the labels' val and test prompts."""
    import torch
    from tqdm import tqdm

    from timebill import compute_thread
    from timebill.config import load_config
    from timebill.request import InvalidRequest, Request
    from timebill.rlp.cli import DEFAULT_LABELS
    from timebill.rlp.data import split_of
    from timebill.rlp.labelled import labelled
    from timebill.rlp.sources import prompts_by_id
    from timebill.runtime import build_engine

    engine = build_engine(load_config(), progress=False)
    rlp = engine.estimator.length_predictor
    labels = [r for r in labelled(DEFAULT_LABELS) if split_of(r["id"]) in ("val", "test")]
    prompts = prompts_by_id([r["id"] for r in labels], engine.loaded.tokenizer)
    out = {}
    for r in tqdm(labels, unit="prompt", desc="states"):
        p = prompts.get(r["id"])
        if p is None:
            continue
        try:
            ids = engine.estimator.encode(Request(p.text, budget=3600.0, system_prompt=p.system))
        except InvalidRequest:
            continue
        state = compute_thread.run(lambda: rlp.state(ids))
        out[r["id"]] = {"x": state.half(), "length": r["length"], "split": split_of(r["id"]),
                        "prompt_tokens": len(ids)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--states", default=None, help="the prompts' states (computed when missing)")
    ap.add_argument("--alpha", type=float, default=1.0, help="added to every length's count inside a bucket")
    args = ap.parse_args()

    import numpy as np
    import torch

    from timebill.config import load_config
    from timebill.length_distribution import LengthDistribution
    from timebill.models import default_cache_dir
    from timebill.rlp.cli import DEFAULT_LABELS
    from timebill.rlp.data import split_of
    from timebill.rlp.labelled import labelled
    from timebill.rlp.model import LengthHead
    from timebill.rlp.predictor import default_head_path
    from timebill.runtime import load_configured_model, load_or_profile_time_model

    cfg = load_config()
    head = LengthHead.load(default_head_path())
    c = head.cfg
    path = pathlib.Path(args.states) if args.states else default_cache_dir(cfg.get("cache_dir")) / "rlp" / \
        f"states_val_test_L{c.layers}_{c.model_name}.pt"
    t0 = time.monotonic()
    states = torch.load(path, weights_only=True) if path.is_file() else compute_states(path)
    tm = load_or_profile_time_model(cfg, load_configured_model(cfg), progress=True, say=print)

    # the training labels' lengths inside each bucket
    width, k_top = c.width, c.num_classes - 1
    counts = np.full((c.num_classes, width), args.alpha)
    train = [r for r in labelled(DEFAULT_LABELS) if split_of(r["id"]) == "train"]
    for r in train:
        n = max(1, min(int(r["length"]), c.max_tokens))
        k = min((n - 1) // width, k_top)
        counts[k, n - 1 - k * width] += 1
    shape = counts / counts.sum(1, keepdims=True)
    print(f"{len(train)} training labels; the first bucket's shape (lengths 1-{width}): "
          + " ".join(f"{x:.2f}" for x in shape[0]))

    def shaped(ends, probs) -> LengthDistribution:
        e2, p2 = [], []
        for k, (e, p) in enumerate(zip(ends, probs)):
            if k == k_top:
                e2.append(e)
                p2.append(p)
                continue
            e2 += [k * width + j + 1 for j in range(width)]
            p2 += [p * shape[k, j] for j in range(width)]
        return LengthDistribution.of(e2, p2)

    constant = statistics.median(r["length"] for r in train)
    print("\n| split | reading inside a bucket | point | MAE (tokens) | of the constant's | end-to-end relative error: mean / median | ECE of P(length <= n) | NLL of the length |")
    print("|---|---|---|---|---|---|---|---|")
    for split in ("val", "test"):
        ids = [i for i, v in states.items() if v["split"] == split]
        ends, probs = head.distribution(torch.stack([states[i]["x"].float() for i in ids]))
        const_mae = statistics.mean(abs(min(states[i]["length"], CAP) - constant) for i in ids)
        res = collections.defaultdict(list)
        for i, pr in zip(ids, probs):
            n, pt = min(states[i]["length"], CAP), states[i]["prompt_tokens"]

            def seconds(m, pt=pt):
                return tm.end_to_end(pt, max(1, int(round(m))))

            for reading, d in (("uniform", LengthDistribution.of(ends, pr).capped(CAP)), ("labels' shape", shaped(ends, pr).capped(CAP))):
                for point, m in (("median", d.median()), ("least relative error", d.least_relative_error(seconds))):
                    res[reading, point, "mae"].append(abs(m - n))
                    res[reading, point, "rel"].append(abs(seconds(m) - seconds(n)) / seconds(n))
                res[reading, "cal"] += [(d.p_at_most(t), float(n <= t)) for t in THRESHOLDS]
                res[reading, "nll"].append(-np.log(max(1e-9, d.p_at_most(n) - d.p_at_most(n - 1))))
        for reading in ("uniform", "labels' shape"):
            bins = collections.defaultdict(list)
            for p, y in res[reading, "cal"]:
                bins[min(int(p * 10), 9)].append((p, y))
            ece = sum(len(b) * abs(statistics.mean(p for p, _ in b) - statistics.mean(y for _, y in b))
                      for b in bins.values()) / len(res[reading, "cal"])
            for point in ("median", "least relative error"):
                mae = statistics.mean(res[reading, point, "mae"])
                rel = res[reading, point, "rel"]
                print(f"| {split} ({len(ids)}) | {reading} | {point} | {mae:.1f} | {mae / const_mae:.2f}x | "
                      f"{100 * statistics.mean(rel):.1f} % / {100 * statistics.median(rel):.1f} % | {ece:.4f} | "
                      f"{statistics.mean(res[reading, 'nll']):.3f} |")
    print(f"\n{time.monotonic() - t0:.0f} s; states in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
