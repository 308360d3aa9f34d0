"""Budgeted generation: plan alpha, prefill with a kvpress press, decode token by token to a deadline.

The decode loop is our own (not ``model.generate``): a compressed cache is physically shorter
than the logical positions, which ``generate`` cannot handle, and we must be able to stop
between any two tokens. Under Kill no decoding step is started that the time model says would
end after the deadline; a cancel stops before the next step.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from .estimator import Estimate, Estimator
from .length_predictor import LengthEstimate
from .planner import Plan
from .presses import make_press
from .request import InvalidRequest, Outcome, Policy, Request


@dataclass(frozen=True)
class TokenEvent:
    index: int         # 0-based index of this token in the answer
    token_id: int
    text: str          # text added by this token (may be empty mid-character)
    elapsed: float     # seconds since the job was accepted


@dataclass
class Result:
    outcome: Outcome
    text: str
    message: str
    deadline_met: bool
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    alpha: float = 0.0
    plan: Plan | None = None
    predictor_time: float = 0.0
    queue_wait: float = 0.0
    prefill_time: float = 0.0
    decode_time: float = 0.0
    total_time: float = 0.0     # acceptance to result
    step_times: list = field(default_factory=list)   # seconds of each decoding step
    token_times: list = field(default_factory=list)  # elapsed seconds at each token
    stop_reason: str = ""       # eos, max_tokens, deadline, cancel, infeasible

    @property
    def completed(self) -> bool:
        return self.outcome is Outcome.COMPLETED


TokenCallback = Callable[[TokenEvent], None]


class BudgetedEngine:
    def __init__(self, estimator: Estimator, reject_infeasible: bool = True, learn_online: bool = True):
        """``reject_infeasible``: answer INFEASIBLE without generating when even the *expected*
        length cannot fit at the largest allowed ratio; otherwise run at that ratio and let the
        overrun policy decide (the paper's behaviour)."""
        self.estimator = estimator
        self.loaded = estimator.loaded
        self.reject_infeasible = reject_infeasible
        self.learn_online = learn_online
        self._lock = threading.Lock()  # one model: one generation at a time

    def warm_up(self) -> None:
        """Run one short job untimed: the first forward passes after loading are several times slower."""
        from .request import Request

        req = Request(prompt="Hello. " * 24, budget=3600.0, max_new_tokens=4, fixed_alpha=0.5)
        with self._lock:  # not through generate(): these times must not teach the calibration
            self._run(req, self.estimator.estimate(req), time.monotonic(), 0.0, None, None)

    def generate(
        self,
        req: Request,
        on_token: TokenCallback | None = None,
        cancel: threading.Event | None = None,
        accepted_at: float | None = None,
        length: LengthEstimate | None = None,
        on_plan: Callable[[Estimate], None] | None = None,
        prompt_ids: list | None = None,
    ) -> Result:
        """Run one job. ``accepted_at`` (time.monotonic()) is when its budget started; default now.

        ``length``: a length prediction already made for this job (not repeated in the budget).
        ``on_plan`` is called with the estimate once the ratio is planned, before the prefill.
        ``prompt_ids``: the request's prompt already tokenized (and checked) by ``Estimator.encode``.
        Raises InvalidRequest for a bad request; every other problem is a Result.
        """
        accepted_at = time.monotonic() if accepted_at is None else accepted_at
        with self._lock:
            queue_wait = time.monotonic() - accepted_at
            est = self.estimator.estimate(req, already_elapsed=queue_wait, length=length, prompt_ids=prompt_ids)
            if on_plan is not None:
                on_plan(est)
            result = self._run(req, est, accepted_at, queue_wait, on_token, cancel)
        if self.learn_online and result.generated_tokens:
            self.estimator.calibration.observe(result.prompt_tokens, result.prefill_time, result.cached_tokens, result.step_times)
        return result

    # ---------------------------------------------------------------------------------------------
    def _run(self, req, est: Estimate, accepted_at, queue_wait, on_token, cancel) -> Result:
        import torch
        from transformers import DynamicCache

        plan = est.plan
        policy = Policy.parse(req.policy)
        deadline = accepted_at + float(req.budget)
        ids = est.prompt_ids
        max_new = self.estimator.max_new_tokens(req)
        tm = self.estimator.time_model

        def finish(outcome, message, stop, text="", **kw):
            now = time.monotonic()
            return Result(
                outcome=outcome, text=text, message=message, deadline_met=now <= deadline,
                prompt_tokens=len(ids), alpha=plan.alpha, plan=plan, predictor_time=est.predictor_latency,
                queue_wait=queue_wait, total_time=now - accepted_at, stop_reason=stop, **kw,
            )

        if self.reject_infeasible and not plan.useful_fits:
            return finish(Outcome.INFEASIBLE, f"infeasible: {plan.reason or 'the expected time does not fit'}", "infeasible")
        if cancel is not None and cancel.is_set():
            return finish(Outcome.CANCELED, "canceled before generation started", "cancel")
        if policy is Policy.KILL and time.monotonic() + tm.prefill(len(ids)) > deadline:
            return finish(Outcome.KILLED, "killed: the prefill alone would end after the deadline", "deadline")

        model = self.loaded.model
        eos = set(self.loaded.eos_token_ids)
        generator = None
        if req.temperature > 0 and req.seed is not None:
            generator = torch.Generator().manual_seed(int(req.seed))
        press = make_press(self.estimator.press, plan.alpha, len(ids))
        cache = DynamicCache()
        out_ids: list[int] = []
        step_times: list[float] = []
        token_times: list[float] = []
        emitted = ""

        def emit(token_id: int) -> bool:
            """Record a token; return True when it ends the answer."""
            nonlocal emitted
            token_times.append(time.monotonic() - accepted_at)
            if token_id in eos:
                return True
            out_ids.append(token_id)
            text = self.loaded.decode(out_ids)
            # Hold back a trailing replacement char: the next token may complete the character.
            stable = text[:-1] if text.endswith("\ufffd") else text
            delta = ""
            if stable.startswith(emitted):
                delta, emitted = stable[len(emitted):], stable
            if on_token is not None:
                on_token(TokenEvent(index=len(out_ids) - 1, token_id=token_id, text=delta, elapsed=token_times[-1]))
            return False

        with torch.inference_mode():
            t0 = time.monotonic()
            input_ids = torch.tensor([ids], dtype=torch.long)
            with press(model) if press is not None else contextlib.nullcontext():
                logits = model(input_ids=input_ids, past_key_values=cache, logits_to_keep=1).logits
            prefill_time = time.monotonic() - t0
            cached = cache.get_seq_length()
            stop, outcome, message = "", Outcome.COMPLETED, ""
            done = emit(self._sample(logits[0, -1], req, generator))
            if done:
                stop = "eos"
            position = len(ids)
            recent: deque[float] = deque(maxlen=4)
            last_check = None
            while not done:
                if len(out_ids) >= max_new:
                    stop = "max_tokens"
                    break
                if cancel is not None and cancel.is_set():
                    stop, outcome, message = "cancel", Outcome.CANCELED, "canceled by the client"
                    break
                nkv = cache.get_seq_length()
                now = time.monotonic()
                if last_check is not None:
                    recent.append(now - last_check)
                last_check = now
                # The next step costs what the model says, or what the last few whole iterations
                # (step + sampling + callbacks) really took, whichever is longer: jitter and
                # per-token overhead are not in the time model.
                if policy is Policy.KILL and now + max(tm.decode_step(nkv), max(recent, default=0.0)) > deadline:
                    stop, outcome = "deadline", Outcome.KILLED
                    message = f"killed at the deadline after {len(out_ids)} tokens (budget {float(req.budget):.3f} s)"
                    break
                t1 = time.monotonic()
                logits = model(
                    input_ids=torch.tensor([[out_ids[-1]]], dtype=torch.long),
                    past_key_values=cache,
                    position_ids=torch.tensor([[position]], dtype=torch.long),
                    logits_to_keep=1,
                ).logits
                step_times.append(time.monotonic() - t1)
                position += 1
                if emit(self._sample(logits[0, -1], req, generator)):
                    stop = "eos"
                    break
        result = finish(
            outcome, message, stop, text=self.loaded.decode(out_ids),
            cached_tokens=cached, generated_tokens=len(out_ids), prefill_time=prefill_time,
            decode_time=sum(step_times), step_times=step_times, token_times=token_times,
        )
        if outcome is Outcome.COMPLETED and not result.deadline_met:
            result.message = (f"completed {result.total_time - float(req.budget):.3f} s after the deadline "
                              f"(policy {policy.value})")
        return result

    @staticmethod
    def _sample(logits, req: Request, generator) -> int:
        import torch

        if req.temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float() / req.temperature, dim=-1)
        if req.top_p < 1.0:
            sorted_p, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < req.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
        return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


__all__ = ["BudgetedEngine", "Result", "TokenEvent", "InvalidRequest"]
