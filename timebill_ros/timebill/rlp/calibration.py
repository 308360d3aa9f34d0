"""Is the predicted length distribution honest? Temperature scaling, and its reliability.

A planner reads P(answer complete by the deadline) = P(length <= tokens that fit). A classifier
trained with cross-entropy and stopped early on MAE is not calibrated by construction: one
temperature on its logits, fitted on the validation split, makes it so (or says how far it is).
It is fitted to what a planner reads, the reliability of P(length <= n) below: fitted by the
likelihood of the true bucket instead, it came out at 2.67 on the labels made since loops end
answers, and the out-of-fold ECE of P(length <= n) was 0.028 against 0.011 at temperature 1
(docs/RLP.md). Reliability is judged the way a planner uses the distribution: for every prompt
and each of a grid of "tokens that fit", the predicted P(length <= n) against whether the real
length was <= n, in bins of predicted probability; the expected calibration error (ECE) is the
bins' weighted mean gap.
"""
from __future__ import annotations

import numpy as np

# "Tokens that fit" a planner's budgets give on this CPU: from a yes/no to a long answer.
THRESHOLDS = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 320)
TEMPERATURES = np.exp(np.linspace(np.log(0.25), np.log(8.0), 61))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def fit_temperature(logits: np.ndarray, ends, lengths, cap: int) -> float:
    """The temperature whose P(length <= n) is best calibrated on these prompts (least ECE over
    ``THRESHOLDS``; a grid search: one parameter, a few hundred prompts). Among equally good ones
    the one nearest 1. A cap below the thresholds (a tiny test model's 8 tokens) is judged at
    every length under it."""
    thresholds = [n for n in THRESHOLDS if n < cap] or list(range(1, cap))
    if not thresholds:
        return 1.0
    eces = [reliability(ends, softmax(logits, t), lengths, cap, thresholds)["ece"] for t in TEMPERATURES]
    best = min(eces)
    near = [t for t, e in zip(TEMPERATURES, eces) if e <= best + 1e-9]
    return float(min(near, key=lambda t: abs(np.log(t))))


def calibrate_temperature(head, x, lengths) -> float:
    """Fit ``head``'s temperature on held-out features ``x`` and true ``lengths`` (not set here)."""
    import torch

    from .buckets import length_of_class

    c = head.cfg
    with torch.inference_mode():
        head.eval()
        logits = head(x.float()).float().numpy()
    ends = [length_of_class(k, c.width, c.max_tokens) for k in range(c.num_classes)]
    return fit_temperature(logits, ends, np.asarray(lengths), c.max_tokens)


def cdf_at(ends, probs: np.ndarray, n: float) -> np.ndarray:
    """P(length <= n) for each row of ``probs`` over buckets with upper ``ends`` (uniform inside)."""
    from ..length_distribution import LengthDistribution

    return np.array([LengthDistribution(tuple(ends), tuple(float(x) for x in row / row.sum())).p_at_most(n)
                     for row in probs])


def reliability(ends, probs: np.ndarray, lengths, cap: int, thresholds=THRESHOLDS, bins: int = 10) -> dict:
    """Predicted P(length <= n) against the share of answers that were, over prompts x thresholds
    below the label cap (a label at the cap says only "at least the cap")."""
    lengths = np.asarray(lengths)
    pred, real = [], []
    for n in thresholds:
        if n >= cap:
            continue
        pred.append(cdf_at(ends, probs, n))
        real.append((lengths <= n).astype(float))
    pred, real = np.concatenate(pred), np.concatenate(real)
    edges = np.linspace(0, 1, bins + 1)
    rows, ece = [], 0.0
    for i in range(bins):
        m = (pred >= edges[i]) & ((pred < edges[i + 1]) if i < bins - 1 else (pred <= 1.0))
        if not m.any():
            continue
        gap = abs(pred[m].mean() - real[m].mean())
        ece += m.mean() * gap
        rows.append({"bin": f"{edges[i]:.1f}-{edges[i + 1]:.1f}", "pairs": int(m.sum()),
                     "predicted": float(pred[m].mean()), "observed": float(real[m].mean())})
    return {"ece": float(ece), "pairs": int(len(pred)), "bins": rows, "thresholds": [n for n in thresholds if n < cap]}


def reliability_table(rel: dict) -> str:
    lines = ["| predicted P(complete) | pairs | mean predicted | share complete |", "|---|---|---|---|"]
    lines += [f"| {r['bin']} | {r['pairs']} | {r['predicted']:.3f} | {r['observed']:.3f} |" for r in rel["bins"]]
    return "\n".join(lines) + f"\n\nexpected calibration error {rel['ece']:.3f} over {rel['pairs']} (prompt, tokens that fit) pairs"


def plot_reliability(path, curves: dict, title: str) -> None:
    """``curves``: name -> reliability() result; one line each, against the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfectly calibrated")
    for name, rel in curves.items():
        xs = [r["predicted"] for r in rel["bins"]]
        ys = [r["observed"] for r in rel["bins"]]
        ax.plot(xs, ys, marker="o", label=f"{name} (ECE {rel['ece']:.3f})")
    _finish(fig, ax, path, title, "predicted P(length <= tokens that fit)", "share of answers that were")


def remaining_error(ends, probs: np.ndarray, lengths, ks=(0, 8, 16, 32, 64, 128, 256)) -> list[dict]:
    """How the re-estimate of a running answer improves as tokens come: for each k, over the answers
    at least k tokens long, |E[length | length >= k] - length| (the conditioned distribution's mean,
    ``LengthDistribution.given_at_least``, as the nodes re-estimate) against the same error of the
    estimate made at acceptance."""
    from ..length_distribution import LengthDistribution

    lengths = np.asarray(lengths)
    dists = [LengthDistribution(tuple(ends), tuple(float(x) for x in row / row.sum())) for row in probs]
    rows = []
    for k in ks:
        sel = [i for i in range(len(lengths)) if lengths[i] >= k]
        if not sel:
            continue
        again = [abs(dists[i].given_at_least(k).mean() - lengths[i]) for i in sel]
        first = [abs(dists[i].mean() - lengths[i]) for i in sel]
        rows.append({"tokens_generated": k, "answers": len(sel), "mae_reestimated": float(np.mean(again)),
                     "mae_at_acceptance": float(np.mean(first))})
    return rows


def plot_remaining(path, rows, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 4))
    ks = [r["tokens_generated"] for r in rows]
    ax.plot(ks, [r["mae_at_acceptance"] for r in rows], marker="o", label="estimate at acceptance")
    ax.plot(ks, [r["mae_reestimated"] for r in rows], marker="o", label="re-estimated from the tokens so far")
    for r in rows:
        ax.annotate(str(r["answers"]), (r["tokens_generated"], r["mae_reestimated"]), fontsize=7, xytext=(3, -10),
                    textcoords="offset points")
    _finish(fig, ax, path, title, "tokens generated (answers still running: the numbers)",
            "mean |predicted - real length| (tokens)")


def _finish(fig, ax, path, title: str, xlabel: str, ylabel: str) -> None:
    """Label, title and legend one plot of this module's, save it and free it."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
