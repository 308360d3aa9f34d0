"""Online calibration: the profiled timing model (``timebill.time_model``) scaled to the speed the
jobs are really served at, and the spread of that speed, from the recent jobs' measurements."""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, fields
from statistics import median

from .time_model import TimeModel

MIN_JOBS_FOR_QUANTILE = 8

# Recent jobs whose prompts were within this factor of a prompt's length set its prefill scale,
# once there are at least MIN_SIMILAR_JOBS of them: served prefills slow down unevenly with length.
SIMILAR_LENGTH = 2.0
MIN_SIMILAR_JOBS = 3


@dataclass
class ServedTimeModel(TimeModel):
    """A profiled model scaled to the speed served, whose prefill scale follows the prompt's length.

    One scale for every length did not fit the served prefills: after a run of 800-token prompts
    whose prefills took 1.3x the profile's, 40-token prompts were planned up to 64 % too slow, and
    with short prompts in the window 760-token ones came out 25-48 % too fast (docs/RLP.md). So a
    prompt's prefill scale (``a, b, c, r, s``: from all recent jobs) is multiplied by how much
    slower the recent jobs whose prompts were within ``SIMILAR_LENGTH``x of its length ran than all
    recent jobs (medians), where there are enough of them."""

    similar: tuple = ()      # (prompt tokens, measured/profiled prefill ratio) of recent jobs
    reference: float = 1.0   # the median ratio of all recent jobs

    def _length_factor(self, prompt_tokens: int) -> float:
        n = max(float(prompt_tokens), 1.0)
        near = [ratio for m, ratio in self.similar if n / SIMILAR_LENGTH <= m <= n * SIMILAR_LENGTH]
        return median(near) / self.reference if len(near) >= MIN_SIMILAR_JOBS and self.reference > 0 else 1.0

    def modelled_prefill(self, prompt_tokens: int) -> float:
        return super().modelled_prefill(prompt_tokens) * self._length_factor(prompt_tokens)

    def evict_overhead(self, prompt_tokens: int, eviction_ratio: float) -> float:
        return super().evict_overhead(prompt_tokens, eviction_ratio) * self._length_factor(prompt_tokens)


def quantile(xs, q: float) -> float:
    """The q-quantile of ``xs`` with linear interpolation (numpy's default), without numpy."""
    v = sorted(xs)
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


class OnlineCalibration:
    """Follows the machine's real speed from served jobs, with bounded memory.

    Each served job gives measured/predicted ratios for its prefill and for its decoding. The
    correction applied to the profiled model is the median of the last ``window`` jobs' ratios, so
    a single outlier job moves nothing. The recent absolute percentage errors of the
    *uncorrected-at-the-time* predictions are kept so the current error is observable.

    A job's decoding gives two ratios. Its whole decoding time over the profile's sets the scale
    (the point the plan is made at): a served job's tokens carry the node's periodic work (a
    feedback message every few tokens, a status update every 0.25 s) as spikes that the median
    token skips, and planned from the median the time model was 4 % optimistic through the nodes
    (docs/RLP.md). Its median token sets how the recent jobs' speeds spread (``model_at``, the
    planner's equally likely speeds): the whole times carry every stall inside a job, and taken as
    the spread too they widened it (calibration error 0.020 -> 0.050 through the nodes).
    """

    def __init__(self, base: TimeModel, window: int = 32):
        self.base = base
        self._prefill_ratios: deque[float] = deque(maxlen=window)
        self._prefill_lengths: deque[int] = deque(maxlen=window)  # 0 for a ratio seeded without its length
        self._decode_ratios: deque[float] = deque(maxlen=window)   # each job's median token: the spread
        self._decode_totals: deque[float] = deque(maxlen=window)   # each job's whole decoding time: the scale
        self._prefill_errors: deque[float] = deque(maxlen=window)
        self._decode_errors: deque[float] = deque(maxlen=window)
        self._tails: deque[tuple[int, float]] = deque(maxlen=window)  # (prompt tokens, seconds): see whole_prefill
        self._current = base
        # Jobs are observed on the engine's thread while diagnostics and the served-speed file
        # read the windows from others: iterating a deque that is appended to meanwhile raises.
        self._lock = threading.RLock()

    @property
    def model(self) -> TimeModel:
        """The profiled model with the current correction applied: use this for planning."""
        return self._current

    # The most slowdown against the profile that refusals believe. A load that slowed the machine
    # 50x and has passed would otherwise refuse every goal as too slow, and a refused goal runs
    # nothing that could show the load is gone; judged at no more than 2x, short goals still run
    # and teach the calibration the real speed. Below it, refusals use the speed really served:
    # judged at the profile's speed, goals of 800-token prompts whose served prefill took 1.3x
    # the profile's were started at 1.5 s budgets and all ended 0.3 s late
    # (benchmarks/answer_format_bench.py, docs/RESULTS.md "Answer formats").
    TRUSTED_SLOWDOWN = 2.0

    @property
    def for_refusals(self) -> TimeModel:
        """What refusals (INFEASIBLE, Kill before the prefill) are judged with: the current model,
        its slowdown against the profile capped at ``TRUSTED_SLOWDOWN``."""
        cap = self.TRUSTED_SLOWDOWN
        return self._served(min(cap, self.prefill_scale), min(cap, self.decode_scale), cap)

    @property
    def prefill_scale(self) -> float:
        with self._lock:
            return median(self._prefill_ratios) if self._prefill_ratios else 1.0

    @property
    def decode_scale(self) -> float:
        with self._lock:
            if self._decode_totals:
                return median(self._decode_totals)
            return median(self._decode_ratios) if self._decode_ratios else 1.0

    def observe(self, prompt_tokens: int, prefill_s: float, cached_first: int, step_times: list[float],
                forward_s: float = 0.0) -> None:
        """Add one served job: its measured prefill, and step i's time with cached_first + i positions.
        ``forward_s`` > 0: the job was planned inside its prefill, that many seconds in."""
        with self._lock:
            if 0 < forward_s <= prefill_s and prompt_tokens > 0:
                self._tails.append((int(prompt_tokens), prefill_s - forward_s))
            self._observe(prompt_tokens, prefill_s, cached_first, step_times)

    # Recent jobs whose part of the prefill after the plan times that part for a prompt: the nearest
    # in length (it grows with the cache carried: 11-13 ms at 40 tokens, 44 ms at 983 here,
    # benchmarks/prefill_split_bench.py), and a median, so that one stall moves nothing.
    NEAREST_TAILS = 3

    def whole_prefill(self, prompt_tokens: int, forward_s: float) -> float:
        """The seconds of a prefill of ``prompt_tokens`` planned inside it, ``forward_s`` seconds
        in: the part after the plan (the plan, evicting, carrying the cache into llama.cpp) as it
        took in the recent jobs nearest in prompt length; none before a job has been served."""
        with self._lock:
            newest_first = list(reversed(self._tails))
        near = sorted(newest_first, key=lambda t: abs(t[0] - prompt_tokens))[:self.NEAREST_TAILS]  # stable: newest among equals
        return forward_s + (median(t for _, t in near) if near else 0.0)

    def _observe(self, prompt_tokens: int, prefill_s: float, cached_first: int, step_times: list[float]) -> None:
        if prompt_tokens > 0 and prefill_s > 0 and math.isfinite(prefill_s):
            # Fewer positions cached than prompted: a press evicted, and its overhead is in the prefill.
            evicted = 1.0 if 0 < cached_first < prompt_tokens else 0.0
            pred_now = self._current.prefill(prompt_tokens) + self._current.evict_overhead(prompt_tokens, evicted)
            if pred_now > 0:
                self._prefill_errors.append(abs(prefill_s - pred_now) / prefill_s)
            base = self.base.prefill(prompt_tokens) + self.base.evict_overhead(prompt_tokens, evicted)
            if base > 0:
                self._prefill_ratios.append(prefill_s / base)
                self._prefill_lengths.append(int(prompt_tokens))
        ratios, errors, spent, profiled = [], [], 0.0, 0.0
        for i, t in enumerate(step_times):
            if not (t > 0 and math.isfinite(t)):
                continue
            base = self.base.decode_step(cached_first + i)
            now = self._current.decode_step(cached_first + i)
            if base > 0:
                ratios.append(t / base)
                spent, profiled = spent + t, profiled + base
            if now > 0:
                errors.append(abs(t - now) / t)
        if ratios:
            self._decode_ratios.append(median(ratios))
            self._decode_totals.append(spent / profiled)
            self._decode_errors.append(median(errors))
        self._current = self._served(self.prefill_scale, self.decode_scale)

    def _served(self, prefill_scale: float, decode_scale: float, cap: float = math.inf) -> ServedTimeModel:
        """The profiled model at these scales, its prefill following the recent jobs of similar length
        (their ratios capped at ``cap``)."""
        scaled = self.base.scaled(prefill_scale, decode_scale)
        with self._lock:
            similar = tuple((n, min(cap, r)) for n, r in zip(self._prefill_lengths, self._prefill_ratios) if n > 0)
            reference = median([min(cap, r) for r in self._prefill_ratios]) if self._prefill_ratios else 1.0
        return ServedTimeModel(**{f.name: getattr(scaled, f.name) for f in fields(TimeModel)},
                               similar=similar, reference=reference)

    def ratios(self) -> dict:
        """The recent jobs' measured/predicted ratios against the profiled model, oldest first, and
        the prompt length of each prefill ratio (0: seeded without one)."""
        with self._lock:
            return {"prefill": list(self._prefill_ratios), "decode": list(self._decode_ratios),
                    "prefill_tokens": list(self._prefill_lengths), "decode_total": list(self._decode_totals),
                    "prefill_tail": [list(t) for t in self._tails]}

    def seed(self, prefill: list[float], decode: list[float], prefill_tokens: list[int] | None = None,
             decode_total: list[float] | None = None, prefill_tail: list | None = None) -> None:
        """Take ratios measured earlier against this same profiled model as if their jobs had just
        run (the newest ``window`` of them); non-finite or non-positive ones are skipped.
        ``prefill_tokens``: each prefill ratio's prompt length (without them, or where one is not
        a positive count, the ratio sets only the scale of all lengths). ``decode_total``: the
        jobs' whole-decoding ratios; a file written before they were kept has none, and its median
        tokens stand in for them, so that the first new job does not set the scale alone.
        ``prefill_tail``: [prompt tokens, seconds] of what followed the plan in prefills planned
        inside them (``whole_prefill``)."""
        def sane(x):
            return isinstance(x, (int, float)) and math.isfinite(x) and x > 0

        tokens = list(prefill_tokens or [])
        tokens += [0] * (len(prefill) - len(tokens))
        with self._lock:
            for ratio, n in zip(prefill, tokens):
                if sane(ratio):
                    self._prefill_ratios.append(float(ratio))
                    self._prefill_lengths.append(int(n) if isinstance(n, int) and n > 0 else 0)
            self._decode_ratios.extend(float(x) for x in decode if sane(x))
            self._decode_totals.extend(float(x) for x in (decode if decode_total is None else decode_total) if sane(x))
            for t in prefill_tail or []:
                if isinstance(t, (list, tuple)) and len(t) == 2 and isinstance(t[0], int) and t[0] > 0 and sane(t[1]):
                    self._tails.append((t[0], float(t[1])))
            self._current = self._served(self.prefill_scale, self.decode_scale)

    def model_at(self, q: float) -> TimeModel:
        """The profiled model scaled by the q-quantile of the recent jobs' measured/predicted ratios.

        ``model_at(0.5)`` is ``model``. A worst case planned with ``model_at(0.9)`` would have held
        for 9 in 10 of the recent jobs' speeds; the median alone leaves about half of the answers
        that run to the length bound over their "worst case". Until ``MIN_JOBS_FOR_QUANTILE`` jobs
        are in, there is no measure of the spread and the median correction is used.
        """
        if not 0.0 < q < 1.0:
            raise ValueError(f"the quantile must be in (0, 1), got {q}")

        def scale(ratios, median_scale):
            # the spread of ``ratios`` around the scale planned at
            if len(ratios) < MIN_JOBS_FOR_QUANTILE:
                return median_scale
            return quantile(ratios, q) * median_scale / median(ratios)

        if q == 0.5:
            return self._current
        with self._lock:
            return self._served(scale(self._prefill_ratios, self.prefill_scale),
                                scale(self._decode_ratios, self.decode_scale))

    def errors(self) -> dict:
        """Recent mean absolute percentage errors (%) of the predictions that were in force."""
        def mape(xs):
            return 100.0 * sum(xs) / len(xs) if xs else float("nan")

        with self._lock:
            return {
                "prefill_mape_pct": mape(self._prefill_errors),
                "decode_step_mape_pct": mape(self._decode_errors),
                "jobs": len(self._decode_ratios),
                "prefill_scale": self.prefill_scale,
                "decode_scale": self.decode_scale,
            }

