"""Recorded runs: each (prompt, eviction ratio) generated to completion once with the serving
engine, cached as JSON lines (resumable), and what a replayed job reads from them."""
from __future__ import annotations

import json
import pathlib

from ..engine import BudgetedEngine
from ..length_control import system_prompt_of
from ..request import Request
from ..calibration import OnlineCalibration
from .prefill_once import PrefillOnce


# A record's field names are an on-disk format (docs/eval/records-*.jsonl), kept from before the
# eviction ratio had one name: "alpha" is the ratio the run used, "alpha_key" its ``ratio_key``
# (plus the prompt's variant). Read and written as they are, so that old records still load.
RATIO = "alpha"
RATIO_KEY = "alpha_key"


def ratio_key(eviction_ratio: float) -> str:
    return f"{eviction_ratio:.4f}"


class Recorder:
    """Runs each (item, ratio) once to completion and caches the record as a JSON line."""

    def __init__(self, engine: BudgetedEngine, path: pathlib.Path):
        self.engine = engine
        self.path = path
        # Each prompt's prefill once for all its ratios, where the backend allows (prefill_once.py).
        backend = getattr(engine, "backend", None)
        self.prefills = PrefillOnce(backend, engine.estimator.press) if hasattr(backend, "carry_cache") else None
        self.records: dict[tuple[str, str], dict] = {}
        self.stale = 0  # records made by an engine that ended loops otherwise: generated again
        window = getattr(engine, "loop_window", None)  # None: only reading records, all are taken
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    # a record's answer is what the engine served; one that let loops run (records
                    # from before it ended them have no "loop_window") is another answer
                    if window is not None and rec.get("loop_window", 0) != window:
                        self.stale += 1
                        continue
                    self.records[(rec["item"], rec[RATIO_KEY])] = rec
        if self.stale:
            print(f"{path.name}: {self.stale} records were made with loops ended after another window than "
                  f"{window} tokens (loop_window_tokens); those prompts are generated again", flush=True)

    def get(self, item_id: str, prompt: str, system: str, eviction_ratio: float, max_new: int, variant: str = "") -> dict:
        """``variant`` names a prompt other than the task's own for this item (length control)."""
        key = (item_id, ratio_key(eviction_ratio) + variant)
        if key not in self.records:
            req = Request(prompt, budget=3600.0, system_prompt=system, max_new_tokens=max_new, policy="skip_next",
                          fixed_eviction_ratio=float(ratio_key(eviction_ratio)))
            r, reused = self._generate(req)
            rec = {"item": item_id, RATIO_KEY: key[1], "variant": variant, RATIO: r.eviction_ratio, "text": r.text,
                   "total": r.total_time + reused, "prefill": r.prefill_time + reused, "prefill_reused": reused > 0,
                   "tokens": r.generated_tokens, "prompt_tokens": r.prompt_tokens,
                   "stop": r.stop_reason, "cached": r.cached_tokens, "steps": [round(t, 6) for t in r.step_times],
                   "loop_window": self.engine.loop_window}
            with self.path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            self.records[key] = rec
        return self.records[key]

    def _generate(self, req: Request):
        """The engine's run of ``req`` and the seconds of a kept prefill it did not spend again
        (added to the record's times). Only the records share prefills: the engine's backend is
        its own again afterwards, for the live check."""
        if self.prefills is None:
            return self.engine.generate(req), 0.0
        own, self.engine.backend = self.engine.backend, self.prefills
        try:
            return self.engine.generate(req), self.prefills.reused_seconds
        finally:
            self.engine.backend = own


def observe_record(calibration: OnlineCalibration, rec: dict) -> None:
    """Teach the online calibration one recorded job, as the engine does after serving it.
    (Records made before step times were kept teach nothing.)"""
    if rec.get("steps") and rec["tokens"]:
        calibration.observe(rec["prompt_tokens"], rec["prefill"], rec["cached"], rec["steps"])


def planned_record(recorder: Recorder, item_id: str, prompt: str, est, max_new: int) -> dict:
    """The recorded run of what ``est`` planned: its ratio and its request's prompt (with length
    control's word limit, a variant of the item's prompt recorded on its own)."""
    words = est.request.answer_words
    return recorder.get(item_id, prompt, system_prompt_of(est.request), est.plan.eviction_ratio, max_new,
                        variant=f"/w{words}" if words else "")
