"""The records' prefills: each prompt's computed and timed once, evicted at every ratio recorded.

A served prefill scores the prompt's positions and keeps all of them until the ratio is known
(``DeferredPress``): the ratio changes what is carried into llama.cpp's decoding cache, never the
prefill's computation. The evaluation records every prompt at five fixed ratios and at each ratio
TimeBill plans (up to ~17 runs of one QASPER prompt, a 1,500-token prefill of ~3 s each: two
thirds of a run's time). ``PrefillOnce`` runs that prefill once per prompt, keeps its scores and
cache, and for each ratio evicts a view of that cache, carries it and lets the engine decode. A
record made from a kept prefill is charged the prefill's measured seconds (``reused_seconds``),
so its time is what the served job's would be: prefill, eviction, carry, decoding.

Only for the llamacpp backend (it decodes from a carried copy, so the kept torch cache is never
written to); the torch backend decodes into its cache and gets full prefills.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from types import SimpleNamespace

from ..backends.torch_backend import TorchBackend
from ..deferred_press import DeferredPress, evict


@dataclass
class _Prefilled:
    logits: object
    layers: list          # (keys, values) of every layer, nothing evicted
    scores: dict          # the press's scores per layer (empty: the prompt is too short to press)
    seconds: float        # the prefill's measured time


class _ScoresKept(DeferredPress):
    """Records like ``DeferredPress`` and evicts nothing: the scores stay for the views."""

    def _finish(self) -> None:
        self.ratio = 0.0


class PrefillOnce:
    """A backend for records: ``prefill`` of a prompt seen among the last ``keep`` reuses its
    computation; everything else is the wrapped llamacpp backend's."""

    def __init__(self, backend, press_name: str, keep: int = 4):
        if not hasattr(backend, "carry_cache"):
            raise ValueError(f"the {backend.name} backend decodes into its own cache: only llamacpp can share a prefill")
        self.backend = backend
        self.press_name = press_name
        self.keep = int(keep)
        self.reused_seconds = 0.0   # the kept prefill's seconds the last call did not spend
        self._kept: OrderedDict[tuple, _Prefilled] = OrderedDict()

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def prefill(self, ids, press=None):
        key = tuple(ids)
        kept = self._kept.pop(key, None)
        self.reused_seconds = 0.0 if kept is None else kept.seconds
        if kept is None:
            kept = self._prefill(ids)
        self._kept[key] = kept
        while len(self._kept) > self.keep:
            self._kept.popitem(last=False)
        ratio = float(getattr(press, "compression_ratio", 0.0)) if press is not None else 0.0
        view = SimpleNamespace(layers=[SimpleNamespace(keys=k, values=v) for k, v in kept.layers])
        if ratio > 0 and kept.scores:
            evict(view, kept.scores, ratio)  # gathers new tensors: the kept cache stays whole
        self.backend.carry_cache(view, len(ids), press)
        return kept.logits.clone(), self.backend.cached()

    def _prefill(self, ids) -> _Prefilled:
        recording = _ScoresKept(self.press_name, len(ids), 1, decide=lambda state: 0.0)
        t0 = time.monotonic()
        logits, _ = TorchBackend.prefill(self.backend, ids, recording)
        seconds = time.monotonic() - t0
        cache, self.backend.cache = self.backend.cache, None
        return _Prefilled(logits, [(layer.keys, layer.values) for layer in cache.layers], dict(recording._scores), seconds)
