"""Recorded runs: each (prompt, eviction ratio) generated to completion once with the serving
engine, cached as JSON lines (resumable), and what a replayed job reads from them."""
from __future__ import annotations

import json
import pathlib

from ..engine import BudgetedEngine
from ..length_control import system_prompt_of
from ..request import Request
from ..time_model import OnlineCalibration


def alpha_key(alpha: float) -> str:
    return f"{alpha:.4f}"


class Recorder:
    """Runs each (item, ratio) once to completion and caches the record as a JSON line."""

    def __init__(self, engine: BudgetedEngine, path: pathlib.Path):
        self.engine = engine
        self.path = path
        self.records: dict[tuple[str, str], dict] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.records[(rec["item"], rec["alpha_key"])] = rec

    def get(self, item_id: str, prompt: str, system: str, alpha: float, max_new: int, variant: str = "") -> dict:
        """``variant`` names a prompt other than the task's own for this item (length control)."""
        key = (item_id, alpha_key(alpha) + variant)
        if key not in self.records:
            r = self.engine.generate(Request(prompt, budget=3600.0, system_prompt=system, max_new_tokens=max_new,
                                             policy="skip_next", fixed_alpha=float(alpha_key(alpha))))
            rec = {"item": item_id, "alpha_key": key[1], "variant": variant, "alpha": r.alpha, "text": r.text, "total": r.total_time,
                   "prefill": r.prefill_time, "tokens": r.generated_tokens, "prompt_tokens": r.prompt_tokens,
                   "stop": r.stop_reason, "cached": r.cached_tokens, "steps": [round(t, 6) for t in r.step_times]}
            with self.path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            self.records[key] = rec
        return self.records[key]


def observe_record(calibration: OnlineCalibration, rec: dict) -> None:
    """Teach the online calibration one recorded job, as the engine does after serving it.
    (Records made before step times were kept teach nothing.)"""
    if rec.get("steps") and rec["tokens"]:
        calibration.observe(rec["prompt_tokens"], rec["prefill"], rec["cached"], rec["steps"])


def planned_record(recorder: Recorder, item_id: str, prompt: str, est, max_new: int) -> dict:
    """The recorded run of what ``est`` planned: its ratio and its request's prompt (with length
    control's word limit, a variant of the item's prompt recorded on its own)."""
    words = est.request.answer_words
    return recorder.get(item_id, prompt, system_prompt_of(est.request), est.plan.alpha, max_new,
                        variant=f"/w{words}" if words else "")


def timebill_time(estimate, rec: dict) -> float:
    """A replayed TimeBill job's end-to-end time: its own measured length-prediction latency (both
    predictions under length control; they run inside the budget) plus the recorded run of its plan."""
    return estimate.predictor_latency + rec["total"]
