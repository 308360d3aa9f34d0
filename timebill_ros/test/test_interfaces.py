"""Every timebill_msgs interface crosses a process boundary with every field intact.

The other side is a test fixture server (fixtures/interface_echo_server.py) in a subprocess;
this process is a plain rclpy client on an isolated domain.
"""
import importlib.util
import time

import pytest

from conftest import TEST_DIR, needs_ros, wait_for

pytestmark = needs_ros

FIXTURE = str(TEST_DIR / "fixtures" / "interface_echo_server.py")


def _load_fixture():
    spec = importlib.util.spec_from_file_location("interface_echo_server", FIXTURE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def echo(processes, rclpy_context):
    server = processes.start([FIXTURE], log_name="echo")
    from rclpy.node import Node

    node = Node("interface_test_client", context=rclpy_context)
    yield node, _load_fixture(), server
    node.destroy_node()


def _spin_until(node, ctx, done, timeout, what):
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    try:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.05)
            if done():
                return
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    finally:
        ex.remove_node(node)


def test_completion_estimate_and_job_report_arrive_intact(echo, rclpy_context):
    from timebill_msgs.msg import CompletionEstimate, JobReport

    node, fixture, _ = echo
    got = {}
    node.create_subscription(CompletionEstimate, "estimates", lambda m: got.setdefault("est", m), 10)
    node.create_subscription(JobReport, "job_reports", lambda m: got.setdefault("rep", m), 10)
    _spin_until(node, rclpy_context, lambda: len(got) == 2, 20.0, "an estimate and a report from the other process")
    assert got["est"] == fixture.sample_estimate()
    assert got["rep"] == fixture.sample_report()


def test_estimate_completion_service_round_trip(echo, rclpy_context):
    from builtin_interfaces.msg import Duration
    from timebill_msgs.srv import EstimateCompletion

    node, _, _ = echo
    cli = node.create_client(EstimateCompletion, "estimate_completion")
    wait_for(lambda: cli.wait_for_service(timeout_sec=0.1), 20.0, what="the estimate service")
    req = EstimateCompletion.Request(prompt="where is the cup?", system_prompt="be brief",
                                     time_budget=Duration(sec=2, nanosec=250_000_000), max_new_tokens=64,
                                     max_eviction_ratio=0.5, already_elapsed=Duration(nanosec=123))
    fut = cli.call_async(req)
    _spin_until(node, rclpy_context, fut.done, 10.0, "the service response")
    res = fut.result()
    assert res.valid and res.message == "where is the cup?|be brief"
    assert res.header.frame_id == "fixture"
    assert (res.prompt_tokens, res.predicted_tokens, res.predicted_tokens_bound) == (17, 32, 64)
    assert res.eviction_ratio == pytest.approx(0.5) and res.feasible and res.reason == "ok"
    assert res.time_budget == Duration(sec=2, nanosec=250_000_000)
    assert res.predicted_prefill == Duration(nanosec=123)
    assert res.predicted_total.sec == 3 and res.predicted_worst_case.sec == 4
    assert (res.predicted_completion.sec, res.predicted_completion.nanosec) == (7, 250_000_000)
    assert (res.deadline.sec, res.deadline.nanosec) == (8, 9)
    assert res.predictor_latency == Duration(nanosec=10)


def test_budgeted_query_action_goal_feedback_result(echo, rclpy_context):
    from action_msgs.msg import GoalStatus
    from builtin_interfaces.msg import Duration
    from rclpy.action import ActionClient
    from timebill_msgs.action import BudgetedQuery

    node, _, _ = echo
    client = ActionClient(node, BudgetedQuery, "budgeted_query")
    wait_for(lambda: client.wait_for_server(timeout_sec=0.1), 20.0, what="the action server")
    goal = BudgetedQuery.Goal(prompt="go to the kitchen", system_prompt="robot", time_budget=Duration(sec=4, nanosec=5),
                              max_new_tokens=77, overrun_policy=BudgetedQuery.Goal.POLICY_SKIP_NEXT,
                              max_eviction_ratio=0.75)
    feedback = []
    send = client.send_goal_async(goal, feedback_callback=lambda f: feedback.append(f.feedback))
    _spin_until(node, rclpy_context, send.done, 10.0, "goal acceptance")
    handle = send.result()
    assert handle.accepted
    res_fut = handle.get_result_async()
    _spin_until(node, rclpy_context, res_fut.done, 10.0, "the result")
    wrapped = res_fut.result()
    r = wrapped.result
    assert wrapped.status == GoalStatus.STATUS_SUCCEEDED
    assert r.outcome == BudgetedQuery.Result.KILLED
    assert r.text == "nehctik eht ot og" and r.deadline_met
    assert r.message == "robot|policy=2"
    assert (r.prompt_tokens, r.generated_tokens, r.predicted_tokens, r.predicted_tokens_bound) == (17, 77, 11, 22)
    assert r.eviction_ratio == pytest.approx(0.75)
    assert r.predicted_time == Duration(sec=4, nanosec=5)
    assert r.prefill_time == Duration(sec=1, nanosec=2) and r.elapsed == Duration(sec=3, nanosec=4)
    # Feedback may still be in flight when the result arrives; it is sent before the result.
    _spin_until(node, rclpy_context, lambda: len(feedback) == 4, 5.0, "all feedback")
    assert [f.text for f in feedback] == ["go", "to", "the", "kitchen"]
    assert [f.tokens_generated for f in feedback] == [1, 2, 3, 4]
    assert [f.elapsed.nanosec for f in feedback] == [1, 2, 3, 4]
    assert [f.predicted_remaining.sec for f in feedback] == [0, 1, 2, 3]
    assert all(f.eviction_ratio == pytest.approx(0.75) for f in feedback)


def test_server_process_shuts_down_cleanly_on_sigint(echo, processes):
    _, _, server = echo
    time.sleep(0.5)
    assert server.poll() is None, "the fixture server died early"
    assert processes.stop(server, timeout=10) is not None
