"""A predicted distribution over an answer's length, and what a deadline makes of it.

The length predictor's classifier gives a probability per bucket of B tokens; a planner wants the
probability that the answer is complete by its deadline, and the expected and 90th-percentile
completion times. Lengths inside a bucket are taken as uniform; the top bucket is "at least the
label cap": its mass sits at the job's token limit (the answer runs to its cap), the pessimistic
reading.

A running answer is re-estimated by conditioning: after ``generated`` tokens without an end of
turn, every length below that is ruled out (``LengthDistribution.given_at_least``).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Sequence

COMPLETION_QUANTILE = 0.9  # the "p90" completion time planners are given


@dataclass(frozen=True)
class LengthDistribution:
    """P(length in (ends[i-1], ends[i]]) = probs[i] (ends[-1] of -1 start at 0); lengths are answer tokens."""

    ends: tuple     # increasing bucket upper ends (tokens)
    probs: tuple    # one probability per bucket, summing to 1

    def __post_init__(self):
        if len(self.ends) != len(self.probs) or not self.ends:
            raise ValueError("a length distribution needs one probability per bucket end")
        if any(b <= a for a, b in zip(self.ends, self.ends[1:])) or self.ends[0] < 1:
            raise ValueError(f"bucket ends must increase from at least 1, got {self.ends[:8]}...")
        total = sum(self.probs)
        if not math.isfinite(total) or total <= 0 or min(self.probs) < 0:
            raise ValueError("bucket probabilities must be finite, non-negative and not all zero")

    @classmethod
    def of(cls, ends: Sequence[int], probs: Sequence[float]) -> "LengthDistribution":
        """Normalised; buckets of zero probability are kept (the ends are the predictor's grid)."""
        total = float(sum(probs))
        return cls(tuple(int(e) for e in ends), tuple(float(p) / total for p in probs))

    @classmethod
    def point(cls, length: int) -> "LengthDistribution":
        """All mass at one length (a predictor without a distribution, e.g. the constant one)."""
        length = max(int(length), 1)
        return cls((length - 1, length), (0.0, 1.0)) if length > 1 else cls((1,), (1.0,))

    def capped(self, limit: int) -> "LengthDistribution":
        """The lengths a job with token limit ``limit`` produces: min(N, limit)."""
        limit = max(int(limit), 1)
        i = bisect.bisect_left(self.ends, limit)   # the first bucket that reaches the limit
        if i == len(self.ends):
            return self
        ends, probs = list(self.ends[:i]), list(self.probs[:i])
        start, end = self._start(i), self.ends[i]
        below = self.probs[i] * (limit - 1 - start) / (end - start)  # its lengths under the limit stay
        if below > 0:
            ends.append(limit - 1)
            probs.append(below)
        ends.append(limit)
        probs.append(max(0.0, sum(self.probs[i:]) - below))
        return LengthDistribution.of(ends, probs)

    def _start(self, i: int) -> int:
        return self.ends[i - 1] if i > 0 else 0

    def p_at_most(self, n: float) -> float:
        """P(length <= n), uniform inside a bucket."""
        if n < 1:
            return 0.0
        i = bisect.bisect_left(self.ends, n)
        below = sum(self.probs[:i])
        if i < len(self.ends):
            start, end = self._start(i), self.ends[i]
            below += self.probs[i] * max(0.0, min(n, end) - start) / (end - start)
        return min(1.0, below)

    def quantile(self, q: float) -> int:
        """The smallest length n with P(length <= n) >= q."""
        acc = 0.0
        for i, (e, p) in enumerate(zip(self.ends, self.probs)):
            if acc + p >= q - 1e-12 and p > 0:
                start = self._start(i)
                return max(1, min(e, start + math.ceil((q - acc) / p * (e - start))))
            acc += p
        return self.ends[-1]

    def median(self) -> int:
        """The point prediction: half the mass at or below it, read inside its bucket; in the top
        bucket, whose mass means "at least the label cap", the cap itself."""
        n = self.quantile(0.5)
        return self.ends[-1] if len(self.ends) > 1 and n > self.ends[-2] else n

    def least_relative_error(self, seconds) -> int:
        """The length whose time has the least expected relative error |estimate - real| / real,
        ``seconds(n)`` being the end-to-end time of an answer of n tokens: the median of the
        distribution weighted by 1 / seconds (a median minimises the absolute error; dividing by
        the real time weighs each length by how much an error costs it, relative to its time).
        Below the median where lengths spread: an answer that stops early is off by more,
        relative to its time, than one that runs long."""
        times = [seconds(max(1.0, (self._start(i) + 1 + e) / 2)) for i, e in enumerate(self.ends)]
        if not all(t > 0 and math.isfinite(t) for t in times):  # a timing model that cannot weigh: the plain median
            return self.median()
        return LengthDistribution.of(self.ends, [p / t for p, t in zip(self.probs, times)]).quantile(0.5)

    def mean(self) -> float:
        return sum(p * (self._start(i) + e + 1) / 2 for i, (e, p) in enumerate(zip(self.ends, self.probs)))

    def given_at_least(self, generated: int) -> "LengthDistribution":
        """The distribution once ``generated`` tokens came without an end of turn: length >= generated."""
        if generated <= 0:
            return self
        ends, probs = [], []
        for i, (e, p) in enumerate(zip(self.ends, self.probs)):
            if e < generated:
                continue
            start = self._start(i)
            keep = p * (e - max(start, generated - 1)) / (e - start)
            if not ends and generated > 1:  # the bucket now starts at the tokens already generated
                ends.append(generated - 1)
                probs.append(0.0)
            ends.append(e)
            probs.append(keep)
        if not ends or sum(probs) <= 0:
            return LengthDistribution.point(max(generated, self.ends[-1]))
        return LengthDistribution.of(ends, probs)


@dataclass(frozen=True)
class CompletionOdds:
    """What the distribution says about one planned job."""

    probability: float      # P(the answer is complete by the deadline at the planned ratio)
    expected_time: float    # expected end to end seconds (predictor + prefill + decode of min(N, limit))
    p90_time: float         # 90th percentile of the same


def completion_odds(end_to_end, dist: LengthDistribution, tokens_that_fit, limit: int,
                    quantile: float = COMPLETION_QUANTILE) -> CompletionOdds:
    """``end_to_end(n)``: modelled seconds of an answer of n tokens (the plan's ratio and predictor
    time included). ``tokens_that_fit``: the most tokens the budget holds (the plan's figure), or
    one such count per equally likely machine speed (the timing model's uncertainty: the
    probability is then averaged over them)."""
    d = dist.capped(limit)
    fits = [tokens_that_fit] if isinstance(tokens_that_fit, int) else list(tokens_that_fit)
    prob = sum(d.p_at_most(f) for f in fits) / len(fits)
    expected = 0.0
    for i, (e, p) in enumerate(zip(d.ends, d.probs)):
        if p > 0:
            start = d.ends[i - 1] if i > 0 else 0
            expected += p * end_to_end(max(1, (start + 1 + e) / 2))
    return CompletionOdds(probability=prob, expected_time=expected, p90_time=end_to_end(d.quantile(quantile)))


def running_odds(tm, prompt_tokens: int, eviction_ratio: float, dist: LengthDistribution, generated: int, elapsed: float,
                 budget: float, limit: int) -> CompletionOdds:
    """A running answer's odds after ``generated`` tokens, ``elapsed`` seconds after acceptance:
    the distribution conditioned on an answer at least this long, the steps left timed by ``tm``
    (a ``TimeModel``) from the cache the job decodes with. Times count from acceptance."""
    from .time_model import kept_positions

    kv = kept_positions(prompt_tokens, eviction_ratio) + max(generated - 1, 0)

    def end_to_end(n: float) -> float:
        return elapsed + tm.decode(kv, max(n - generated, 0) + 1)

    lo, hi = generated, max(int(limit), generated)  # lo always fits: nothing more to decode
    if end_to_end(hi) <= budget:
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if end_to_end(mid) <= budget else (lo, mid)
    fit = lo if end_to_end(lo) <= budget else generated - 1
    return completion_odds(end_to_end, dist.given_at_least(generated), fit, limit)
