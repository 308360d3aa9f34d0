"""Upper bounds N_W on the response length for the worst-case time.

- Paper: N_W = min(k * N_hat, N_max), k = 5.
- Calibrated: N_W = min(ceil(q * N_hat), N_max), q = the ``coverage`` quantile (default 95 %) of
  actual / predicted on the validation split. Its coverage (fraction of actual <= N_W) is then
  measured on the test split, never used to choose q.
"""
from __future__ import annotations

import math

import numpy as np

PAPER_K = 5.0
DEFAULT_COVERAGE = 0.95


def paper_bound(expected: int, max_tokens: int, k: float = PAPER_K) -> int:
    return int(min(max_tokens, math.ceil(k * max(int(expected), 1))))


def calibrated_bound(expected: int, max_tokens: int, factor: float) -> int:
    return int(min(max_tokens, math.ceil(factor * max(int(expected), 1))))


def calibrate_factor(actual, predicted, coverage: float = DEFAULT_COVERAGE) -> float:
    """Smallest factor q with actual <= ceil(q * predicted) for a ``coverage`` share of the pairs.

    The empirical ``coverage`` quantile (``method='higher'``: an observed ratio, never interpolated
    downwards) of actual / max(predicted, 1), and at least 1.
    """
    a = np.asarray(actual, dtype=float)
    p = np.maximum(np.asarray(predicted, dtype=float), 1.0)
    if a.size == 0:
        raise ValueError("no pairs to calibrate on")
    ratio = a / p
    q = float(np.quantile(ratio, coverage, method="higher"))
    return max(1.0, q)


def coverage_of(actual, bounds) -> float:
    a = np.asarray(actual, dtype=float)
    b = np.asarray(bounds, dtype=float)
    return float(np.mean(a <= b)) if a.size else float("nan")
