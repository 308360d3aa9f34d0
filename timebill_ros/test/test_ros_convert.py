"""The conversion module's rules, without nodes: codes from the message constants, times that
saturate instead of wrapping, and the cheap admission of a goal by characters."""
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


def test_an_estimate_with_a_word_limit_carries_the_limited_prompts_ids_to_run(tiny):
    # A goal is tokenized once: the limited prompt's ids travel with the estimate, from the core
    # (the local path) or the service response (the predictor's), and stay with it while it runs.
    from timebill.estimator import Estimator
    from timebill.length_predictor import ConstantLengthPredictor
    from timebill.request import Request
    from timebill.time_model import TimeModel
    from timebill_ros.convert import EstimateView, running_view

    est = Estimator(tiny, TimeModel(a=0.0, b=0.0, c=0.01, p=0.0, q=0.01, model="x"), ConstantLengthPredictor(expected=100))
    req = Request("Where is the red cup usually kept?", budget=0.5, max_new_tokens=128)
    limited = est.estimate(req)
    assert limited.plan.answer_words > 0
    v = EstimateView.of_estimate(limited, "local")
    assert v.limited_ids == tuple(limited.prompt_ids) and len(v.limited_ids) == v.prompt_tokens
    assert running_view(v, est.time_model, 3, 0.2, 0.5, 128).limited_ids == v.limited_ids
    plain = EstimateView.of_estimate(est.estimate(Request(**{**req.__dict__, "budget": 60.0})), "local")
    assert plain.answer_words == 0 and plain.limited_ids == ()


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


def test_remaining_time_uses_the_bound_past_the_expected_length(tiny_time_model):
    from timebill_ros.convert import remaining

    tm = tiny_time_model
    exp_left, worst_left = remaining(tm, 100, 0.0, expected=10, bound=50, generated=4)
    assert exp_left == pytest.approx(tm.decode(103, 7)) and worst_left == pytest.approx(tm.decode(103, 47))
    past, _ = remaining(tm, 100, 0.0, expected=10, bound=50, generated=20)
    assert past == pytest.approx(tm.decode(119, 31))


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
