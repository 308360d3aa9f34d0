"""`rlp eval`: the shipped (or a given) head on the test split against other heads and a constant,
its bounds' coverage, per source out of fold, the reliability of its distribution, and the figures."""
from __future__ import annotations

import json
import pathlib

from .features import features_for
from .labelled import labelled, named_caps, split_indices


def evaluate_head(loaded, head_path, labels_path, work: pathlib.Path, out: pathlib.Path, folds: int = 5,
                  progress: bool = True) -> int:
    """The report of the head at ``head_path`` on the labels of ``labels_path``: printed, and written
    to ``out`` (data/rlp_eval.json and five figures)."""
    import numpy as np

    from .bounds import calibrated_bound, coverage_of, paper_bound
    from .calibration import plot_reliability, plot_remaining, reliability, reliability_table, remaining_error
    from .evaluate import (bounds_table, markdown_table, metrics, out_of_fold, per_source_rows, per_source_table, plot,
                           plot_per_source)
    from .model import HeadConfig, LengthHead, train_head
    from .sources import source_of

    head = LengthHead.load(head_path)
    hc = head.cfg
    cap = hc.max_tokens
    recs = labelled(labels_path)
    named = named_caps(recs)
    if named and named != {cap}:
        raise SystemExit(f"{labels_path} was labelled with cap {sorted(named)}, the head with {cap}: "
                         "give the labels the head was trained on (--labels)")
    sp = split_indices(recs)
    L = hc.layers
    feats = features_for(loaded, recs, [L], hc.max_input_tokens, work, progress=progress)[L]
    y = np.array([min(int(r["length"]), cap) for r in recs])
    tr, va, te = sp["train"], sp["val"], sp["test"]
    print(f"test split: {len(te)} prompts (train {len(tr)}, val {len(va)}); backbone L={L}; cap {cap}", flush=True)
    rows, preds = [], {}

    def add(name, p):
        m = metrics(y[te], p)
        rows.append({"name": name, **m})
        preds[name] = p

    main_name = f"{cap // hc.width} buckets (B={hc.width}, shipped head)"
    add(main_name, head.predict_lengths(feats[te]))
    # Coarser and finer bucket classifiers and a regression head: same backbone, same training recipe.
    for width in (8, 32, 64):
        if width == hc.width:
            continue
        c = HeadConfig(**{**hc.__dict__, "width": width, "bound_factor": 0.0, "extra": {}})
        h, _ = train_head(c, feats[tr], y[tr], feats[va], y[va])
        add(f"{cap // width} buckets (B={width})", h.predict_lengths(feats[te]))
    c = HeadConfig(**{**hc.__dict__, "kind": "regression", "bound_factor": 0.0, "extra": {}})
    h, _ = train_head(c, feats[tr], y[tr], feats[va], y[va])
    add("regression head", h.predict_lengths(feats[te]))
    med = int(np.median(y[tr]))
    add(f"constant (train median {med})", np.full(len(te), med))
    order = [main_name] + sorted([r["name"] for r in rows if "buckets" in r["name"] and r["name"] != main_name],
                                 key=lambda s: -int(s.split()[0]))
    rows.sort(key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))
    p = preds[main_name]
    brows = []
    for name, b in (
        (f"calibrated q={hc.bound_factor:.3f} (95 % quantile of actual/predicted on val)",
         [calibrated_bound(x, cap, hc.bound_factor) if x < cap else cap for x in p]),
        (f"paper k={hc.paper_k:g}", [paper_bound(x, cap, hc.paper_k) if x < cap else cap for x in p]),
        ("cap N_max (constant predictor's bound)", [cap] * len(p)),
    ):
        brows.append({"name": name, "coverage": coverage_of(y[te], b), "mean_bound": float(np.mean(b))})
    t1 = markdown_table(rows)
    t2 = bounds_table(brows)
    print(f"test split: {100 * np.mean(p >= cap):.0f} % of the predictions in the top bucket (labels at the cap: "
          f"{100 * np.mean(y[te] >= cap):.0f} %)")
    print(t1)
    print()
    print(t2)
    # Per source, out of fold: the test split holds too few prompts of each source for a table.
    print(f"\nper source, {folds}-fold out-of-fold predictions (same recipe as the shipped head):", flush=True)
    oof = out_of_fold([r["id"] for r in recs], feats, y, hc, train_head, folds=folds, coverage=hc.bound_coverage)
    src_rows = per_source_rows([r.get("source") or source_of(r["id"]) for r in recs], y, oof, cap)
    print(per_source_table(src_rows))
    # Is the distribution honest? Out of fold, as a planner reads it: P(length <= tokens that fit).
    ends, _ = head.distribution(feats[:1])
    rel = reliability(ends, oof["probs"], y, cap)
    rel_raw = reliability(ends, oof["probs_raw"], y, cap)
    print(f"\nreliability of P(length <= n), {folds}-fold out of fold, temperature fitted per fold:")
    print(reliability_table(rel))
    print(f"(at temperature 1: expected calibration error {rel_raw['ece']:.3f})")
    again = remaining_error(ends, oof["probs"], y)
    print("\nre-estimated while running (conditioned on the tokens generated), out of fold:")
    print("| tokens generated | answers still running | MAE at acceptance | MAE re-estimated |\n|---|---|---|---|")
    for r in again:
        print(f"| {r['tokens_generated']} | {r['answers']} | {r['mae_at_acceptance']:.1f} | {r['mae_reestimated']:.1f} |")
    out.mkdir(parents=True, exist_ok=True)
    plot_reliability(out / "rlp_reliability.png", {"temperature-scaled": rel, "temperature 1": rel_raw},
                     title=f"P(length <= tokens that fit), out of fold (n={len(recs)} prompts)")
    plot_remaining(out / "rlp_remaining.png", again, title=f"Re-estimating a running answer (out of fold, n={len(recs)})")
    result = {"labels": len(recs), "train": len(tr), "val": len(va), "test": len(te), "layers": L, "width": hc.width,
              "cap": cap, "max_input_tokens": hc.max_input_tokens, "table": rows, "bounds": brows,
              "test_length_mean": float(y[te].mean()), "test_at_cap": float(np.mean(y[te] >= cap)),
              "test_predicted_at_cap": float(np.mean(p >= cap)),
              "per_source": src_rows, "folds": folds, "labels_file": pathlib.Path(labels_path).name,
              "reliability": rel, "reliability_temperature_1": rel_raw, "temperature": hc.temperature,
              "reestimated": again}
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "data" / "rlp_eval.json").write_text(json.dumps(result, indent=1))
    plot(out / "rlp_eval.png", y[te], p, hc.width, cap, title=f"RLP on the test split (L={L}, B={hc.width}, n={len(te)})")
    plot_per_source(out / "rlp_per_source.png", src_rows,
                    title=f"RLP per source, {folds}-fold out of fold (n={len(recs)})")
    print(f"wrote {out / 'data' / 'rlp_eval.json'}, {out / 'rlp_eval.png'}, {out / 'rlp_per_source.png'}, "
          f"{out / 'rlp_reliability.png'} and {out / 'rlp_remaining.png'}")
    return 0
