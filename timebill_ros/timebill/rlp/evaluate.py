"""Accuracy metrics (MAE, RMSE, R^2), the table of the paper's Table 1 for our model, and the figure."""
from __future__ import annotations

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
