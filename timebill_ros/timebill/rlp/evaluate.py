"""Accuracy metrics (MAE, RMSE, R^2), the table of the paper's Table 1 for our model, and the figure."""
from __future__ import annotations

import hashlib
import pathlib

import numpy as np


def metrics(actual, predicted) -> dict:
    a = np.asarray(actual, dtype=float)
    p = np.asarray(predicted, dtype=float)
    err = p - a
    ss_res = float(np.sum(err ** 2))
    ss_tot = float(np.sum((a - a.mean()) ** 2))
    return {
        "n": int(a.size),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
    }


def fold_of(prompt_id: str, folds: int) -> int:
    return int.from_bytes(hashlib.sha256(("timebill-rlp-fold:" + prompt_id).encode("utf-8")).digest()[:8], "big") % folds


def fold_splits(ids, folds: int = 5):
    """For each fold: (held out, train, early-stopping) indices. An eighth of the rest of each fold
    stops training early (and calibrates); the folds and that eighth are fixed by the prompt ids."""
    fold = np.array([fold_of(i, folds) for i in ids])
    inner = np.array([fold_of("inner:" + i, 8) == 0 for i in ids])
    for k in range(folds):
        yield np.where(fold == k)[0], np.where((fold != k) & ~inner)[0], np.where((fold != k) & inner)[0]


def out_of_fold(ids, x, y, cfg, train_head, folds: int = 5, coverage: float = 0.95) -> dict:
    """Every labelled prompt predicted by heads that never saw it (``folds``-fold cross-fitting; in
    each fold an eighth of the rest stops training early and calibrates the bound): the shipped
    recipe's classifier, the regression head and the constant predictor (the training median),
    plus the calibrated bound. Enough predictions per source for a per-source table, where the
    test split alone holds a dozen prompts of a source."""
    import copy

    from .bounds import calibrate_factor, calibrated_bound
    from .calibration import calibrate_temperature

    y = np.asarray(y)
    cap = cfg.max_tokens
    out = {k: np.zeros(len(y), dtype=int) for k in ("classifier", "regression", "constant", "bound")}
    out["probs"] = np.zeros((len(y), cfg.num_classes))        # the classifier's calibrated distribution
    out["probs_raw"] = np.zeros((len(y), cfg.num_classes))    # the same at temperature 1
    for te, tr, va in fold_splits(ids, folds):
        c = copy.deepcopy(cfg)
        c.kind, c.bound_factor, c.extra = "classifier", 0.0, {}
        head, _ = train_head(c, x[tr], y[tr], x[va], y[va])
        head.cfg.temperature = 1.0
        out["probs_raw"][te] = head.distribution(x[te])[1]
        head.cfg.temperature = calibrate_temperature(head, x[va], y[va])
        out["probs"][te] = head.distribution(x[te])[1]
        out["classifier"][te] = head.predict_lengths(x[te])  # its median point reads the calibrated distribution
        q = calibrate_factor(y[va], head.predict_lengths(x[va]), coverage)
        out["bound"][te] = [cap if p >= cap else calibrated_bound(p, cap, q) for p in out["classifier"][te]]
        c = copy.deepcopy(c)
        c.kind = "regression"
        reg, _ = train_head(c, x[tr], y[tr], x[va], y[va])
        out["regression"][te] = reg.predict_lengths(x[te])
        out["constant"][te] = int(np.median(y[tr]))
    return out


def per_source_rows(sources, y, oof: dict, cap: int) -> list[dict]:
    """MAE of each predictor, the bound's coverage, and how the labels sit, per source (and all)."""
    sources = np.asarray(sources)
    y = np.asarray(y)
    rows = []
    for name in list(dict.fromkeys(sources)) + ["all"]:
        m = np.ones(len(y), bool) if name == "all" else sources == name
        a = y[m]
        rows.append({"source": name, "n": int(m.sum()), "mean_label": float(a.mean()), "median_label": float(np.median(a)),
                     "at_cap": float(np.mean(a >= cap)),
                     **{f"mae_{k}": float(np.mean(np.abs(oof[k][m] - a))) for k in ("classifier", "regression", "constant")},
                     "mean_predicted": float(oof["classifier"][m].mean()),
                     "bound_coverage": float(np.mean(a <= oof["bound"][m])), "mean_bound": float(oof["bound"][m].mean())})
    return rows


def per_source_table(rows: list[dict]) -> str:
    out = ["| source | prompts | mean label | at cap | predicted (mean) | MAE classifier | MAE regression | MAE constant "
           "| bound coverage | mean bound |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['source']} | {r['n']} | {r['mean_label']:.1f} | {100 * r['at_cap']:.0f} % | {r['mean_predicted']:.1f} "
                   f"| {r['mae_classifier']:.1f} | {r['mae_regression']:.1f} | {r['mae_constant']:.1f} "
                   f"| {100 * r['bound_coverage']:.1f} % | {r['mean_bound']:.1f} |")
    return "\n".join(out)


def plot_per_source(path, rows: list[dict], title: str = "") -> None:
    """Left: MAE per source for the three predictors. Right: actual vs predicted mean length, and the bound's coverage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["source"] for r in rows]
    xs = np.arange(len(rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (k, label) in enumerate((("classifier", "RLP classifier"), ("regression", "regression head"),
                                    ("constant", "constant (median)"))):
        ax1.bar(xs + (i - 1) * 0.27, [r[f"mae_{k}"] for r in rows], width=0.27, label=label)
    ax1.set_xticks(xs, names, rotation=30)
    ax1.set_ylabel("mean absolute error (tokens, out of fold)")
    ax1.legend(fontsize=8)
    ax1.set_title(title or "length prediction error per source")
    ax2.bar(xs - 0.2, [r["mean_label"] for r in rows], width=0.4, label="actual (mean)")
    ax2.bar(xs + 0.2, [r["mean_predicted"] for r in rows], width=0.4, label="predicted (mean)")
    for x, r in zip(xs, rows):
        ax2.text(x, max(r["mean_label"], r["mean_predicted"]), f"{100 * r['bound_coverage']:.0f}%", ha="center",
                 va="bottom", fontsize=7)
    ax2.set_xticks(xs, names, rotation=30)
    ax2.set_ylabel("response length (tokens)")
    ax2.set_title("mean length per source; numbers: calibrated bound's coverage")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(rows: list[dict]) -> str:
    out = ["| predictor | MAE | RMSE | R² |", "|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['name']} | {r['mae']:.2f} | {r['rmse']:.2f} | {r['r2']:.3f} |")
    return "\n".join(out)


def bounds_table(rows: list[dict]) -> str:
    out = ["| bound | coverage (actual ≤ bound) | mean bound (tokens) |", "|---|---|---|"]
    for r in rows:
        out.append(f"| {r['name']} | {100 * r['coverage']:.1f} % | {r['mean_bound']:.1f} |")
    return "\n".join(out)


def plot(path: str | pathlib.Path, actual, predicted, width: int, max_tokens: int, title: str = "") -> None:
    """Left: predicted vs actual (test split). Right: mean absolute error per actual-length bucket."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = np.asarray(actual)
    p = np.asarray(predicted)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-width * 0.3, width * 0.3, size=p.size)
    ax1.scatter(a, p + jitter, s=6, alpha=0.4)
    ax1.plot([0, max_tokens], [0, max_tokens], "k--", lw=1, label="predicted = actual")
    ax1.set_xlabel("actual response length (tokens)")
    ax1.set_ylabel("predicted length (bucket upper edge, jittered)")
    ax1.set_xlim(0, max_tokens + 5)
    ax1.set_ylim(0, max_tokens + width)
    ax1.legend(loc="upper left")
    ax1.set_title(title or "predicted vs actual")
    edges = np.arange(0, max_tokens + width, width)
    idx = np.clip(np.ceil(np.maximum(a, 1) / width).astype(int), 1, len(edges) - 1)
    maes, counts = [], []
    for b in range(1, len(edges)):
        m = idx == b
        counts.append(int(m.sum()))
        maes.append(float(np.mean(np.abs(p[m] - a[m]))) if m.any() else 0.0)
    centers = edges[1:] - width / 2
    ax2.bar(centers, maes, width=width * 0.9)
    for c, m, n in zip(centers, maes, counts):
        ax2.text(c, m, str(n), ha="center", va="bottom", fontsize=7)
    ax2.set_xlabel(f"actual length bucket (width {width}); numbers: test prompts per bucket")
    ax2.set_ylabel("mean absolute error (tokens)")
    ax2.set_title("error per bucket")
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
