"""Bucket arithmetic of the fine-grained classifier (paper: width B, label ceil(N / B)).

With a cap N_max and width B there are K = ceil(N_max / B) classes. A length N in 1..N_max falls in
bucket n = ceil(N / B) (1-based); class index = n - 1 (0-based, for cross-entropy). N = 0 (the model
ends its turn at once) is put in bucket 1. The prediction is the bucket's upper edge,
N_hat = min(N_max, n * B).
"""
from __future__ import annotations

import math


def num_buckets(max_tokens: int, width: int) -> int:
    if width <= 0 or max_tokens <= 0:
        raise ValueError("width and max_tokens must be positive")
    return math.ceil(max_tokens / width)


def bucket_of(length: int, width: int, max_tokens: int) -> int:
    """1-based bucket n = ceil(N / B), clamped to 1..K."""
    n = math.ceil(max(int(length), 0) / width)
    return min(max(n, 1), num_buckets(max_tokens, width))


def class_of(length: int, width: int, max_tokens: int) -> int:
    """0-based class index for cross-entropy."""
    return bucket_of(length, width, max_tokens) - 1


def length_of_class(cls: int, width: int, max_tokens: int) -> int:
    """Upper edge of a 0-based class: min(N_max, (cls + 1) * B)."""
    return min(int(max_tokens), (int(cls) + 1) * int(width))
