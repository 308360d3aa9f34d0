"""The one place where ROS messages and TimeBill core objects are translated into each other.

Goal or what-if request -> core ``Request``; a predictor's response -> the core's one estimate
type, ``GoalEstimate`` (timebill/goal_estimate.py, which also makes it of a core ``Estimate`` and
re-estimates a running goal), and back to ``CompletionEstimate`` / ``EstimateCompletion``
response; core ``Result`` -> action result and ``JobReport``. Only translation lives here: no
TimeBill arithmetic. Outcome and policy codes come from the message constants, so a
code changed in timebill_msgs cannot drift from a number typed here. Times: ROS messages carry
int32 seconds, so every conversion saturates instead of wrapping (a budget of 1e9 s would
otherwise put a deadline in 1901).
"""
from __future__ import annotations

import math
import uuid as uuid_mod

from builtin_interfaces.msg import Duration, Time
from timebill_msgs.action import BudgetedQuery
from timebill_msgs.msg import CompletionEstimate, JobReport

from timebill.goal_estimate import GoalEstimate
from timebill.length_distribution import LengthDistribution
from timebill.request import InvalidRequest, Outcome, Policy, Request

Goal, Result, Feedback = BudgetedQuery.Goal, BudgetedQuery.Result, BudgetedQuery.Feedback

# --- codes ----------------------------------------------------------------------------------------
OUTCOME_CODES = {o: getattr(Result, o.name) for o in Outcome}   # core outcome -> Result constant
OUTCOME_NAMES = {Result.UNKNOWN: "UNKNOWN", **{code: o.name for o, code in OUTCOME_CODES.items()}}
POLICY_CODES = {"default": Goal.POLICY_DEFAULT, Policy.KILL.value: Goal.POLICY_KILL,
                Policy.SKIP_NEXT.value: Goal.POLICY_SKIP_NEXT}
# Outcomes that say nothing about whether the system meets deadlines.
NOT_SCORED = frozenset({Result.INVALID, Result.CANCELED, Result.FAILED})
# An error of the goal or the node (a CLI exits non-zero for these).
ERROR_OUTCOMES = frozenset({Result.INVALID, Result.FAILED})

INT32_MAX = 2**31 - 1


def policy_code(policy: str | int) -> int:
    """``"kill"``, ``"skip-next"``, ``"default"`` or a goal's integer code -> the goal's code."""
    if isinstance(policy, int):
        return policy
    key = str(policy).strip().lower().replace("-", "_")
    if key not in POLICY_CODES:
        raise ValueError(f"unknown overrun policy {policy!r}: use {', '.join(POLICY_CODES)}")
    return POLICY_CODES[key]


def policy_from_code(code: int, default: str) -> Policy:
    """Goal ``overrun_policy`` -> core Policy; unknown codes raise InvalidRequest."""
    if code == Goal.POLICY_DEFAULT:
        return Policy.parse(default)
    for name, c in POLICY_CODES.items():
        if c == code and name != "default":
            return Policy(name)
    raise InvalidRequest(f"unknown overrun_policy {code}: use {Goal.POLICY_DEFAULT} (node default), "
                         f"{Goal.POLICY_KILL} (kill) or {Goal.POLICY_SKIP_NEXT} (skip_next)")


LENGTH_CONTROL_CODES = {Goal.LENGTH_CONTROL_DEFAULT: None, Goal.LENGTH_CONTROL_OFF: False, Goal.LENGTH_CONTROL_ON: True}


def length_control_from_code(code: int) -> bool | None:
    """Goal ``length_control`` -> core Request.length_control (None = the node's); unknown codes raise InvalidRequest."""
    if code not in LENGTH_CONTROL_CODES:
        raise InvalidRequest(f"unknown length_control {code}: use {Goal.LENGTH_CONTROL_DEFAULT} (node default), "
                             f"{Goal.LENGTH_CONTROL_OFF} (off) or {Goal.LENGTH_CONTROL_ON} (on)")
    return LENGTH_CONTROL_CODES[code]


def length_control_code(on: bool | None) -> int:
    """Core Request.length_control -> the goal's code (the inverse of ``length_control_from_code``)."""
    return {value: code for code, value in LENGTH_CONTROL_CODES.items()}[on]


# --- time -----------------------------------------------------------------------------------------
def seconds(d) -> float:
    """builtin_interfaces/Duration (or Time) -> seconds."""
    return float(d.sec) + float(d.nanosec) * 1e-9


def duration(s: float) -> Duration:
    """Seconds -> Duration: negative and NaN clamp to 0, beyond int32 seconds (and +inf) saturate."""
    if math.isnan(s) or s <= 0:
        return Duration()
    if s >= INT32_MAX:
        return Duration(sec=INT32_MAX, nanosec=999_999_999)
    sec = int(s)
    nsec = min(int(round((s - sec) * 1e9)), 999_999_999)
    return Duration(sec=sec, nanosec=nsec)


def time_from_ns(ns: int) -> Time:
    """Nanoseconds since the clock's epoch -> Time, saturating at int32 seconds."""
    ns = max(0, int(ns))
    if ns // 1_000_000_000 > INT32_MAX:
        return Time(sec=INT32_MAX, nanosec=999_999_999)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def time_after(stamp_ns: int, s: float) -> Time:
    """The Time ``s`` seconds after ``stamp_ns`` (non-finite ``s`` = the stamp itself; +inf saturates)."""
    if math.isinf(s) and s > 0:
        return time_from_ns(2**63)
    return time_from_ns(stamp_ns + (min(s, 2.0 * INT32_MAX) * 1e9 if math.isfinite(s) else 0))


# --- goal ids -------------------------------------------------------------------------------------
def goal_key(goal_id) -> bytes:
    return bytes(bytearray(goal_id.uuid))


def short_id(goal_id) -> str:
    return uuid_mod.UUID(bytes=goal_key(goal_id)).hex[:8]


def is_zero_uuid(goal_id) -> bool:
    return not any(goal_key(goal_id))


# --- requests -------------------------------------------------------------------------------------
def to_request(msg, default_policy: str = "kill") -> Request:
    """A BudgetedQuery goal or an EstimateCompletion request -> core Request (raises InvalidRequest
    for what can be judged without the tokenizer). A negative ``max_eviction_ratio`` = the default."""
    from timebill.request import check_request

    code = int(getattr(msg, "overrun_policy", Goal.POLICY_DEFAULT))
    ratio = float(msg.max_eviction_ratio)
    req = Request(prompt=msg.prompt, budget=seconds(msg.time_budget), system_prompt=msg.system_prompt,
                  max_new_tokens=int(msg.max_new_tokens), policy=policy_from_code(code, default_policy),
                  max_eviction_ratio=ratio if (math.isnan(ratio) or ratio >= 0) else None,
                  length_control=length_control_from_code(int(msg.length_control)),
                  min_useful_tokens=int(msg.min_useful_tokens), choices=tuple(msg.choices),
                  json_schema=msg.json_schema, grammar=msg.grammar)
    check_request(req)
    return req


def estimate_request(goal, goal_id, already_elapsed: float, prompt_ids=()):
    """The EstimateCompletion request for an accepted goal (the predictor then tracks it), with the
    prompt ids tokenized at acceptance."""
    from timebill_msgs.srv import EstimateCompletion

    return EstimateCompletion.Request(
        prompt=goal.prompt, system_prompt=goal.system_prompt, time_budget=goal.time_budget,
        max_new_tokens=goal.max_new_tokens, max_eviction_ratio=goal.max_eviction_ratio,
        length_control=goal.length_control, min_useful_tokens=goal.min_useful_tokens,
        already_elapsed=duration(already_elapsed), goal_id=goal_id, prompt_ids=list(prompt_ids),
        choices=list(goal.choices), json_schema=goal.json_schema, grammar=goal.grammar)


# --- estimates ------------------------------------------------------------------------------------
def estimate_of_response(r) -> GoalEstimate:
    """An EstimateCompletion response -> the core's ``GoalEstimate`` (the predictor node's)."""
    dist = None
    if len(r.length_bucket_ends) and len(r.length_bucket_ends) == len(r.length_probabilities):
        try:
            dist = LengthDistribution.of(list(r.length_bucket_ends), list(r.length_probabilities))
        except ValueError:
            dist = None  # malformed: plan with the point, as for a predictor without a distribution
    return GoalEstimate(source="predictor", prompt_tokens=r.prompt_tokens, predicted_tokens=r.predicted_tokens,
                        predicted_tokens_bound=r.predicted_tokens_bound, eviction_ratio=r.eviction_ratio,
                        predicted_prefill=seconds(r.predicted_prefill), predicted_total=seconds(r.predicted_total),
                        predicted_worst_case=seconds(r.predicted_worst_case), feasible=r.feasible, reason=r.reason,
                        tokens_that_fit=r.tokens_that_fit, latency=seconds(r.predictor_latency),
                        answer_words=int(r.answer_word_limit), limited_ids=tuple(r.limited_prompt_ids),
                        completion_probability=float(r.completion_probability), expected_time=seconds(r.expected_time),
                        p90_time=seconds(r.p90_time), distribution=dist, answer_format=r.answer_format)


def fill_estimate(msg, v: GoalEstimate, now_ns: int, accepted_ns: int, budget: float, offset: float = 0.0):
    """Set the estimate fields shared by CompletionEstimate and the EstimateCompletion response.

    ``offset``: seconds between ``accepted_ns`` and when ``v`` was made (its times count from
    then); a CompletionEstimate counts from acceptance, so it passes the time already elapsed.
    """
    msg.header.stamp = time_from_ns(now_ns)
    msg.prompt_tokens = v.prompt_tokens
    msg.predicted_tokens, msg.predicted_tokens_bound = v.predicted_tokens, v.predicted_tokens_bound
    msg.eviction_ratio, msg.feasible, msg.reason = float(v.eviction_ratio), bool(v.feasible), v.reason
    msg.tokens_that_fit, msg.answer_word_limit = int(v.tokens_that_fit), int(v.answer_words)
    msg.time_budget = duration(budget)
    msg.predicted_prefill = duration(v.predicted_prefill)
    msg.predicted_total = duration(offset + v.predicted_total)
    msg.predicted_worst_case = duration(offset + v.predicted_worst_case)
    msg.predicted_completion = time_after(now_ns, v.predicted_total)
    msg.deadline = time_after(accepted_ns, budget)
    msg.predictor_latency = duration(v.latency)
    msg.completion_probability = float(v.completion_probability)
    msg.expected_time = duration(offset + v.expected_time)
    msg.p90_time = duration(offset + v.p90_time)
    msg.answer_format = v.answer_format
    return msg


def fill_response(res, v: GoalEstimate, now_ns: int, accepted_ns: int, budget: float, limit: int):
    """An EstimateCompletion response of ``v`` (the inverse of ``estimate_of_response``): its
    estimate, the limited prompt's ids (a goal is tokenized once) and the length distribution,
    capped at the job's token limit ``limit``."""
    fill_estimate(res, v, now_ns, accepted_ns, budget)
    res.limited_prompt_ids = [int(i) for i in v.limited_ids]
    if v.distribution is not None:
        d = v.distribution.capped(limit)
        res.length_bucket_ends, res.length_probabilities = [int(e) for e in d.ends], [float(p) for p in d.probs]
    return res


def estimate_msg(goal_id, v: GoalEstimate, now_ns: int, accepted_ns: int, budget: float,
                 tokens: int = 0) -> CompletionEstimate:
    """A CompletionEstimate of a goal; ``v``'s times count from now."""
    m = CompletionEstimate(goal_id=goal_id, tokens_generated=int(tokens), source=v.source)
    return fill_estimate(m, v, now_ns, accepted_ns, budget, offset=(now_ns - accepted_ns) * 1e-9)


# --- results --------------------------------------------------------------------------------------
def unrun_result(outcome: Outcome, message: str, elapsed: float, v: GoalEstimate | None = None, **kw):
    """The action result of a goal answered without generating."""
    res = Result(outcome=OUTCOME_CODES[outcome], message=message, elapsed=duration(elapsed), **kw)
    if v is not None:
        res.prompt_tokens = v.prompt_tokens
        res.predicted_tokens, res.predicted_tokens_bound = v.predicted_tokens, v.predicted_tokens_bound
        res.eviction_ratio, res.predicted_time = float(v.eviction_ratio), duration(v.predicted_total)
        res.completion_probability = float(v.completion_probability)
        res.expected_time, res.p90_time = duration(v.expected_time), duration(v.p90_time)
    return res


def result_msg(core, v: GoalEstimate | None = None):
    """Core ``Result`` -> action result; ``v`` (the estimate at acceptance) fills what the engine
    did not plan (a goal answered while it waited)."""
    plan = core.plan
    res = Result(
        outcome=OUTCOME_CODES[core.outcome], text=core.text, deadline_met=bool(core.deadline_met),
        message=core.message, prompt_tokens=int(core.prompt_tokens), generated_tokens=int(core.generated_tokens),
        eviction_ratio=float(core.eviction_ratio), prefill_time=duration(core.prefill_time), elapsed=duration(core.total_time),
        closed_early=bool(core.closed_early))
    if plan is not None:
        res.predicted_tokens, res.predicted_tokens_bound = int(plan.predicted_tokens), int(plan.predicted_tokens_bound)
        # the plan's times count from when it was made (after queueing, or a prefill of another
        # prompt): from acceptance here
        res.predicted_time = duration(core.planned_at + plan.predicted_total)
        res.answer_word_limit = int(plan.answer_words)
        res.completion_probability = float(plan.completion_probability)
        res.expected_quality = float(plan.expected_quality)
        res.expected_time = duration(core.planned_at + plan.expected_time)
        res.p90_time = duration(core.planned_at + plan.p90_time)
    elif v is not None:
        res.predicted_tokens, res.predicted_tokens_bound = v.predicted_tokens, v.predicted_tokens_bound
    return res


def job_report(goal_id, res, budget: float, now_ns: int, core=None, v: GoalEstimate | None = None,
               waited: float = 0.0) -> JobReport:
    """The JobReport of a finished goal from its action result ``res`` and, when it reached the
    engine, the core ``Result``; ``waited``: seconds from acceptance to the answer otherwise."""
    plan = core.plan if core is not None else None
    rep = JobReport(goal_id=goal_id, outcome=res.outcome, message=res.message, deadline_met=res.deadline_met,
                    time_budget=duration(budget), eviction_ratio=res.eviction_ratio,
                    prompt_tokens=res.prompt_tokens or (v.prompt_tokens if v else 0),
                    generated_tokens=res.generated_tokens, predicted_tokens=res.predicted_tokens,
                    predicted_tokens_bound=res.predicted_tokens_bound, answer_word_limit=res.answer_word_limit,
                    completion_probability=res.completion_probability, expected_quality=res.expected_quality)
    rep.header.stamp = time_from_ns(now_ns)
    if plan is not None:
        rep.predicted_prefill = duration(plan.predicted_prefill)
        rep.predicted_decode = duration(plan.predicted_total - plan.predicted_prefill - plan.predictor_time)
        rep.predicted_total = duration(plan.predicted_total)
    elif v is not None:
        rep.predicted_prefill, rep.predicted_total = duration(v.predicted_prefill), duration(v.predicted_total)
    if core is not None:
        rep.cached_tokens = int(core.cached_tokens)
        rep.queue_wait = duration(core.queue_wait)
        rep.measured_prefill, rep.measured_decode = duration(core.prefill_time), duration(core.decode_time)
        rep.measured_total = duration(core.total_time)
        rep.predicted_total_given_length = duration(core.time_given_length)
        rep.decode_step_times = [float(t) for t in core.step_times]
        rep.token_intervals = [float(t) for t in core.token_intervals]
    else:
        rep.queue_wait = rep.measured_total = duration(waited)
    return rep
