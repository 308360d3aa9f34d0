"""The conversion module's rules, without nodes: codes from the message constants, times that
saturate instead of wrapping, an estimate through the predictor's response and back, and the cheap
admission of a goal by characters. (The estimate's own arithmetic is the core's: test_goal_estimate.py.)"""
from __future__ import annotations

import math

import pytest

from conftest import needs_ros

pytestmark = needs_ros


def test_outcome_and_policy_codes_come_from_the_message_constants():
    from timebill_msgs.action import BudgetedQuery

    from timebill.request import Outcome, Policy
    from timebill_ros.convert import OUTCOME_CODES, OUTCOME_NAMES, policy_code, policy_from_code

    for o in Outcome:
        assert OUTCOME_CODES[o] == getattr(BudgetedQuery.Result, o.name)
        assert OUTCOME_NAMES[OUTCOME_CODES[o]] == o.name
    g = BudgetedQuery.Goal
    assert policy_code("kill") == g.POLICY_KILL and policy_code("skip-next") == g.POLICY_SKIP_NEXT
    assert policy_from_code(g.POLICY_DEFAULT, "skip_next") is Policy.SKIP_NEXT
    assert policy_from_code(g.POLICY_KILL, "skip_next") is Policy.KILL
    from timebill.request import InvalidRequest

    with pytest.raises(InvalidRequest, match="unknown overrun_policy 9"):
        policy_from_code(9, "kill")
    with pytest.raises(ValueError, match="unknown overrun policy"):
        policy_code("sometimes")


def test_a_goals_length_control_and_useful_minimum_reach_the_core_request_and_back():
    from timebill_msgs.action import BudgetedQuery

    from timebill.request import InvalidRequest
    from timebill_ros.convert import duration, length_control_code, to_request

    g = BudgetedQuery.Goal
    goal = g(prompt="Is the door open?", time_budget=duration(2.0), max_eviction_ratio=-1.0)
    req = to_request(goal)
    assert req.length_control is None and req.min_useful_tokens == 0       # the node's defaults
    goal.length_control, goal.min_useful_tokens = g.LENGTH_CONTROL_OFF, 1
    req = to_request(goal)
    assert req.length_control is False and req.min_useful_tokens == 1
    goal.length_control = g.LENGTH_CONTROL_ON
    assert to_request(goal).length_control is True
    assert [length_control_code(v) for v in (None, False, True)] == [
        g.LENGTH_CONTROL_DEFAULT, g.LENGTH_CONTROL_OFF, g.LENGTH_CONTROL_ON]
    goal.length_control = 7
    with pytest.raises(InvalidRequest, match="unknown length_control 7"):
        to_request(goal)


def test_an_estimate_goes_through_the_predictors_response_and_back_as_it_was(tiny):
    # One estimate type, one conversion each way: what the predictor node answers is what the
    # generation node plans with (the limited prompt's ids and the distribution included).
    from timebill_msgs.srv import EstimateCompletion

    from timebill.estimator import Estimator
    from timebill.goal_estimate import GoalEstimate
    from timebill.length_distribution import LengthDistribution
    from timebill.length_predictor import LengthEstimate
    from timebill.request import Request
    from timebill.time_model import TimeModel
    from timebill_ros.convert import estimate_of_response, fill_response

    class Spread:
        name = "spread"

        def predict(self, ids, max_new_tokens):
            return LengthEstimate(predicted_tokens=100, predicted_tokens_bound=128,
                                  distribution=LengthDistribution.of((32, 96, 128), (0.2, 0.5, 0.3)))

    est = Estimator(tiny, TimeModel(a=0.0, b=0.0, c=0.01, p=0.0, q=0.01, model="x"), Spread())
    v = GoalEstimate.of_estimate(est.estimate(Request("Where is the red cup usually kept?", budget=0.5, max_new_tokens=128)),
                                 "predictor")
    assert v.answer_words > 0 and v.limited_ids and v.distribution is not None
    now = 1_795_000_000 * 10**9
    back = estimate_of_response(fill_response(EstimateCompletion.Response(), v, now, now, 0.5, limit=128))
    for f in ("source", "prompt_tokens", "predicted_tokens", "predicted_tokens_bound", "feasible", "reason",
              "tokens_that_fit", "answer_words", "limited_ids", "answer_format"):
        assert getattr(back, f) == getattr(v, f), f
    for f in ("eviction_ratio", "predicted_prefill", "predicted_total", "predicted_worst_case", "latency",
              "completion_probability", "expected_time", "p90_time"):
        assert getattr(back, f) == pytest.approx(getattr(v, f), abs=1e-6), f
    # the distribution travels capped at the job's token limit (the lengths it can produce)
    capped = v.distribution.capped(128)
    assert back.distribution.ends == capped.ends and back.distribution.probs == pytest.approx(capped.probs)


def test_times_saturate_at_int32_seconds_instead_of_wrapping():
    from timebill_ros.convert import INT32_MAX, duration, seconds, time_after

    assert duration(1.25).sec == 1 and duration(1.25).nanosec == 250_000_000
    assert duration(-3.0).sec == 0 and duration(math.nan).sec == 0
    assert duration(1e12).sec == INT32_MAX and duration(math.inf).sec == INT32_MAX
    assert duration(1.9999999999).nanosec <= 999_999_999
    now_ns = 1_795_000_000 * 10**9
    assert time_after(now_ns, 3.6e8).sec == INT32_MAX          # wrapped to a negative year before
    assert time_after(now_ns, math.inf).sec == INT32_MAX
    assert time_after(now_ns, 2.0).sec == 1_795_000_002
    assert seconds(duration(2.5)) == 2.5


def test_admission_refuses_prompts_the_context_cannot_hold_by_characters(tiny):
    from timebill.request import InvalidRequest, Request
    from timebill_ros.admission import Admission, has_normalizer, max_chars_per_token

    per_token = max_chars_per_token(tiny.tokenizer)
    # The bound is sound: no prompt's token count is below its characters over per_token (the
    # tiny tokenizer has no normalizer, so no margin is needed).
    assert not has_normalizer(tiny.tokenizer)
    for text in ("kitchen " * 200, "0123456789" * 50, "The robot moves to the kitchen.", "日本語のロボット" * 20):
        assert len(tiny.encode_chat(text)) >= len(text) / per_token
    adm = Admission(tiny.max_context, per_token, default_max_new_tokens=64)
    limit = adm.max_prompt_chars(64)
    assert limit == (tiny.max_context - 64) * per_token
    adm.check(Request(prompt="x" * limit, budget=1.0))
    with pytest.raises(InvalidRequest, match="characters: more than the model's context"):
        adm.check(Request(prompt="x" * (limit + 1), budget=1.0))
    with pytest.raises(InvalidRequest, match="leaves no room for the prompt"):
        adm.check(Request(prompt="hi", budget=1.0, max_new_tokens=tiny.max_context))


def test_admission_refuses_a_goal_message_with_the_reason_but_not_for_a_malformed_answer_format(tiny):
    from timebill_msgs.action import BudgetedQuery
    from timebill_ros.admission import Admission, max_chars_per_token
    from timebill_ros.convert import duration

    adm = Admission(tiny.max_context, max_chars_per_token(tiny.tokenizer), default_max_new_tokens=64)

    def goal(prompt, **kw):
        return BudgetedQuery.Goal(prompt=prompt, time_budget=duration(1.0), max_eviction_ratio=-1.0, **kw)

    assert adm.refusal(goal("Where is the red cup?"), "kill") is None
    assert adm.refusal(goal("  "), "kill") == "invalid goal: the prompt is empty"
    assert adm.refusal(goal("x" * (adm.max_prompt_chars(64) + 1)), "kill").startswith("invalid goal: the prompt is")
    # Accepted: its result (INVALID) then tells the planner what is wrong with its schema.
    assert adm.refusal(goal("Where is the red cup?", json_schema="{"), "kill") is None


def test_the_monitor_listens_on_the_configured_names(rclpy_context):
    import rclpy

    from timebill_ros.monitor import Monitor

    node = rclpy.create_node("monitor_names", context=rclpy_context)
    try:
        Monitor(node, "robot1", plain=True, names={"estimates_topic": "my_estimates", "reports_topic": "/abs/reports",
                                                   "action_name": "ask", "estimate_service": "x"})
        topics = {s.topic_name for s in node.subscriptions}
        assert topics == {"/robot1/my_estimates", "/abs/reports", "/robot1/ask/_action/feedback"}
    finally:
        node.destroy_node()


@pytest.mark.parametrize("given,expected", [
    ({"alpha_max": 0.4}, 0.4),                              # the old name still sets it (a warning says so)
    ({"alpha_max": 0.4, "max_eviction_ratio": 0.7}, 0.7),   # given both, the current name wins
    ({"max_eviction_ratio": 1}, 1.0),                       # an integer for the double
])
def test_a_node_given_alpha_max_takes_it_as_max_eviction_ratio(rclpy_context, given, expected):
    import rclpy
    from rclpy.parameter import Parameter

    from timebill_ros.common import declare_config

    node = rclpy.create_node("renamed_params", context=rclpy_context,
                             parameter_overrides=[Parameter(k, value=v) for k, v in given.items()])
    try:
        cfg = declare_config(node)
        assert cfg["max_eviction_ratio"] == expected and isinstance(cfg["max_eviction_ratio"], float)
        assert node.get_parameter("max_eviction_ratio").value == expected
        assert "alpha_max" not in cfg and not node.has_parameter("alpha_max")
    finally:
        node.destroy_node()
