"""`rlp train`: choose the backbone depth L on the validation split, train the bucket classifier,
pick its point prediction, calibrate its distribution and its bound, and save the head where the
caller says (the test split is never read here)."""
from __future__ import annotations

import json
import pathlib
import sys

from .features import features_for, predictor_latency
from .labelled import label_cap, labelled, split_indices


def choose_layers(errors: dict, tolerance: float | None = None) -> tuple[int, int, float, str]:
    """The smallest L not measurably worse than the best: within one standard error of the best
    validation MAE (or within ``tolerance`` x the best). Validation MAEs of neighbouring L differ by
    less than their noise, and every layer costs predictor time inside every budget.

    ``errors``: L -> absolute errors on the validation split. Returns (chosen, best L, best MAE, rule).
    """
    import numpy as np

    best_layers = min(errors, key=lambda L: float(np.mean(errors[L])))
    e = np.asarray(errors[best_layers], dtype=float)
    best = float(e.mean())
    se = float(e.std(ddof=1) / np.sqrt(len(e))) if len(e) > 1 else 0.0
    if tolerance is None:
        slack, rule = se, f"within one standard error ({se:.2f}) of"
    else:
        slack, rule = best * tolerance, f"within {100 * tolerance:.0f} % of"
    chosen = min(L for L in errors if float(np.mean(errors[L])) <= best + slack)
    return chosen, best_layers, best, rule


def train(loaded, cfg: dict, labels_path, out: pathlib.Path, work: pathlib.Path, *, layers: list[int],
          width: int = 16, max_new_tokens: int | None = None, coverage: float = 0.95, max_input_tokens: int = 512,
          tolerance: float | None = None, progress: bool = True) -> int:
    """Train on ``labels_path`` and save the head to ``out``; the sweep goes to ``work``/sweep.json."""
    import numpy as np

    from .bounds import calibrate_factor, coverage_of, calibrated_bound
    from .calibration import calibrate_temperature
    from .model import HeadConfig, train_head

    recs = labelled(labels_path)
    cap = label_cap(recs, max_new_tokens, cfg)
    sp = split_indices(recs)
    print(f"{len(recs)} labelled prompts: train {len(sp['train'])}, val {len(sp['val'])}, test {len(sp['test'])} "
          f"(test not used here); label cap {cap}", flush=True)
    if not sp["train"] or not sp["val"]:
        print("need labelled train and val prompts", file=sys.stderr)
        return 1
    feats = features_for(loaded, recs, layers, max_input_tokens, work, progress=progress)
    y = np.array([min(int(r["length"]), cap) for r in recs])
    tr, va = sp["train"], sp["val"]
    base = HeadConfig(kind="classifier", width=width, max_tokens=cap, max_input_tokens=max_input_tokens,
                      model_name=loaded.name, model_hidden=int(loaded.model.config.hidden_size),
                      bound_coverage=coverage)
    sweep = []
    heads = {}
    for L in layers:
        c = HeadConfig(**{**base.__dict__, "layers": L})
        head, info = train_head(c, feats[L][tr], y[tr], feats[L][va], y[va], progress=progress)
        lat128 = predictor_latency(loaded, L, 128)
        # a head that reads whole prompts (bound 0) is timed at 512 tokens, the longest timed here
        long = max_input_tokens if max_input_tokens > 0 else 512
        lat512 = predictor_latency(loaded, L, long)
        row = {"layers": L, "val_mae": round(info["val_mae"], 2), "best_epoch": info["best_epoch"],
               "latency_128_s": round(lat128, 4), f"latency_{long}_s": round(lat512, 4)}
        print(json.dumps(row), flush=True)
        sweep.append(row)
        heads[L] = head
    val_predictions = {L: heads[L].predict_lengths(feats[L][va]) for L in layers}
    chosen, best_layers, best, rule = choose_layers({L: np.abs(p - y[va]) for L, p in val_predictions.items()}, tolerance)
    head = heads[chosen]
    # The distribution first: the median point is read from it.
    head.cfg.temperature = calibrate_temperature(head, feats[chosen][va], y[va])
    print(f"distribution: softmax temperature {head.cfg.temperature:.3f} (best calibrated P(length <= n) on validation)", flush=True)
    # The point prediction, chosen on validation MAE: the likeliest bucket or the distribution's median.
    point_mae = {}
    for point in ("argmax", "median"):
        head.cfg.point = point
        point_mae[point] = float(np.mean(np.abs(head.predict_lengths(feats[chosen][va]) - y[va])))
    head.cfg.point = min(point_mae, key=point_mae.get)
    print("validation MAE by point prediction: " + ", ".join(f"{k} {v:.2f}" for k, v in point_mae.items())
          + f" -> {head.cfg.point}", flush=True)
    pred_val = head.predict_lengths(feats[chosen][va])
    q = calibrate_factor(y[va], pred_val, coverage)
    head.cfg.bound_factor = q
    cov_val = coverage_of(y[va], [calibrated_bound(p, cap, q) for p in pred_val])
    head.cfg.extra = {"train_prompts": len(tr), "val_prompts": len(va), "labels_file": pathlib.Path(labels_path).name,
                      "val_mae": float(np.mean(np.abs(pred_val - y[va]))), "val_coverage": cov_val}
    head.save(out)
    print(f"chose L={chosen} (smallest L with validation MAE {rule} the best {best:.2f}, L={best_layers}); "
          f"calibrated factor q={q:.3f} (validation coverage {100 * cov_val:.1f} %)")
    print(f"saved {out} ({out.stat().st_size / 1024:.0f} KiB)")
    (work / "sweep.json").write_text(json.dumps({"sweep": sweep, "chosen": chosen, "factor": q,
                                                 "rule": rule + f" the best (L={best_layers}, {best:.2f})"}, indent=1))
    return 0
