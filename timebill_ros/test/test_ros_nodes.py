"""The ROS layer end to end: both nodes as subprocesses on the tiny test model, driven through the
action, the service and the topics by the client API (timebill_ros.client) in this process.

The nodes start once for the module (loading torch costs seconds on this machine); each test
uses its own goals. The predictor-fallback and shutdown tests change the system, so they run last.
The tiny model decodes at roughly 1 ms a token: deadline tests use long max_new_tokens and short
budgets. Its output is random (often whitespace), so text is checked by bookkeeping, not meaning.
"""
from __future__ import annotations

import math
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

import conftest
from conftest import REPO, ROS_HOME, Processes, needs_ros, wait_for

pytestmark = needs_ros

BudgetedQuery = pytest.importorskip("timebill_msgs.action", reason="source scripts/env.sh").BudgetedQuery
GoalStatus = pytest.importorskip("action_msgs.msg", reason="source scripts/env.sh").GoalStatus

R = BudgetedQuery.Result
COMPLETED, KILLED, SKIPPED, CANCELED, INFEASIBLE, INVALID, FAILED = (
    R.COMPLETED, R.KILLED, R.SKIPPED, R.CANCELED, R.INFEASIBLE, R.INVALID, R.FAILED)
SUCCEEDED, STATUS_CANCELED, ABORTED = GoalStatus.STATUS_SUCCEEDED, GoalStatus.STATUS_CANCELED, GoalStatus.STATUS_ABORTED
LONG = 1500  # tokens: well over a second on the tiny model


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    """Both nodes on the tiny model in a fresh domain, a client, and everything it heard."""
    import rclpy

    from timebill_ros.client import TimeBillClient

    domain = conftest._next_domain[0]
    conftest._next_domain[0] = domain % 100 + 1
    ROS_HOME.mkdir(parents=True, exist_ok=True)
    env_values = {"ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                  "ROS_HOME": str(ROS_HOME), "ROS_LOG_DIR": str(ROS_HOME / "log"), "PYTHONUNBUFFERED": "1"}
    saved = {k: os.environ.get(k) for k in env_values}
    os.environ.update(env_values)
    cache = tmp_path_factory.mktemp("cache")
    params = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    params.write_text(f"""/**:
  ros__parameters:
    model: "test:tiny"
    cache_dir: "{cache}"
    profile_max_tokens: 256
    constant_expected_tokens: 400
    default_max_new_tokens: 64
    predictor_timeout: 0.5
    diagnostics_period: 0.5
    estimate_update_period: 0.1
    marker_frame: test_frame
    loop_window_tokens: 0  # the random test model repeats itself: deadline tests need its long answers (loops: test_repetition.py)
    feedback_period: 0.0   # a message per token: the streaming tests below count them
""")
    procs = Processes(dict(os.environ))
    ros_args = ["--ros-args", "-r", "__ns:=/timebill", "--params-file", str(params)]
    gen = procs.start(["-m", "timebill_ros.generation_node", *ros_args], log_name="generation_node")
    pred = procs.start(["-m", "timebill_ros.predictor_node", *ros_args], log_name="predictor_node")
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain, args=[])
    client = TimeBillClient(context=ctx)
    heard = Heard(client.node)
    s = System(procs, gen, pred, client, heard, params)
    s.cache = cache
    try:
        if not client.wait_until_ready(timeout=90, estimator=True):
            raise AssertionError(f"nodes not ready in 90 s; logs: {gen.log_path}, {pred.log_path}\n" + s.logs())
        yield s
    finally:
        client.close()
        ctx.try_shutdown()
        procs.stop_all()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Heard:
    """Estimates, job reports, diagnostics and markers, as they arrive."""

    def __init__(self, node):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile
        from timebill_msgs.msg import CompletionEstimate, JobReport
        from visualization_msgs.msg import Marker

        self.lock = threading.Lock()
        self.estimates, self.reports, self.diagnostics, self.markers = [], [], [], []
        qos = QoSProfile(depth=1000)
        node.create_subscription(CompletionEstimate, "/timebill/estimates", self._add(self.estimates), qos)
        node.create_subscription(JobReport, "/timebill/job_reports", self._add(self.reports), qos)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._add(self.diagnostics), qos)
        node.create_subscription(Marker, "/timebill/answer_marker", self._add(self.markers), qos)

    def _add(self, lst):
        def cb(msg):
            with self.lock:
                lst.append(msg)
        return cb

    def of(self, lst, goal_id):
        key = bytes(goal_id.uuid)
        with self.lock:
            return [m for m in lst if bytes(m.goal_id.uuid) == key]


class System:
    def __init__(self, procs, gen, pred, client, heard, params):
        self.procs, self.gen, self.pred, self.client, self.heard, self.params = procs, gen, pred, client, heard, params
        self.order: list[str] = []  # goals by first feedback = by the order they ran

    def send(self, prompt="Where is the red cup?", budget=10.0, name=None, **kw):
        fbs = []

        def on_feedback(fb):
            if not fbs and name:
                self.order.append(name)
            fbs.append(fb)

        h = self.client.query(prompt, budget, on_feedback=on_feedback, **kw)
        h.fbs = fbs
        h.wait_accepted(10)
        return h

    def logs(self) -> str:
        out = []
        for p in (self.gen, self.pred):
            with open(p.log_path) as f:
                out.append(f"--- {p.log_path}\n" + f.read()[-3000:])
        return "\n".join(out)


def _result(h, timeout=30):
    return h.result(timeout)


# --- streaming ------------------------------------------------------------------------------------
def test_tokens_stream_in_order_and_add_up_to_the_result(system):
    h = system.send("Tell me about the kitchen.", budget=10.0, max_new_tokens=200, policy="kill")
    r = _result(h)
    assert r.outcome == COMPLETED, r.message
    assert h.status == SUCCEEDED and r.deadline_met
    assert 0 < r.generated_tokens <= 200
    counts = [fb.tokens_generated for fb in h.fbs]
    assert counts == sorted(set(counts)), "feedback out of order or repeated"
    assert counts[-1] == r.generated_tokens
    elapsed = [fb.elapsed.sec + fb.elapsed.nanosec * 1e-9 for fb in h.fbs]
    assert elapsed == sorted(elapsed)
    assert "".join(fb.text for fb in h.fbs) == r.text == h.text
    # Every token by default: one feedback per token (the last may carry the held-back rest).
    assert len(h.fbs) >= r.generated_tokens - 1
    wait_for(lambda: system.heard.of(system.heard.reports, h.goal_id), 5, what="the job report")
    rep = system.heard.of(system.heard.reports, h.goal_id)[0]
    assert rep.outcome == COMPLETED and rep.generated_tokens == r.generated_tokens
    assert len(rep.decode_step_times) == r.generated_tokens - 1 or rep.generated_tokens == 0
    assert rep.measured_total.sec + rep.measured_total.nanosec * 1e-9 > 0


def test_the_client_keeps_nothing_per_finished_goal(system):
    # rclpy 9.1's ActionClient kept a never-completed future per goal sent (ros2/rclpy#1532), which
    # the executor walks at every feedback message: a planner's client grew slower with every goal.
    action = system.client._action
    for i in range(5):
        assert _result(system.send(f"Goal {i}?", budget=10.0, max_new_tokens=2)).outcome == COMPLETED
    wait_for(lambda: not action._futures, 5, what="the client to hold no futures once its goals are done")


def test_the_generation_node_keeps_the_speed_it_serves_at_for_its_next_start(system):
    # The timing model is profiled on an idle machine; served, the model runs slower. The node
    # writes the online calibration's ratios next to the timing model after each job.
    import json

    assert _result(system.send("How fast are you?", budget=10.0, max_new_tokens=8)).outcome == COMPLETED
    files = list(pathlib.Path(system.cache).rglob("*.served.json"))
    assert len(files) == 1 and files[0].name.endswith(".yaml.served.json"), files
    wait_for(lambda: json.loads(files[0].read_text())["decode"], 5, what="the served speed to include a job")
    saved = json.loads(files[0].read_text())
    assert saved["timing_model"]["model"] == "tiny-test-model" and all(r > 0 for r in saved["decode"])


def test_a_fast_models_whole_stream_reaches_the_client(system):
    # The tiny model streams about 800 tokens a second, and a 1,500-token answer is longer than the
    # feedback queue (depth 1,000): a client that falls behind loses pieces (benchmarks/feedback_bench.py).
    h = system.send("Say as much as you can.", budget=30.0, max_new_tokens=LONG, policy="kill")
    r = _result(h)
    assert r.outcome == COMPLETED, r.message
    counts = [fb.tokens_generated for fb in h.fbs]
    missing = sorted(set(range(1, r.generated_tokens + 1)) - set(counts))
    assert len(missing) <= 1, f"{len(missing)} of {r.generated_tokens} tokens' feedback never arrived"
    assert "".join(fb.text for fb in h.fbs) == r.text == h.text


def test_a_plain_rclpy_client_gets_every_feedback_message_from_the_feedback_topic(system):
    # The README's recipe for a third-party client: rclpy's ActionClient drops a goal's feedback
    # once its result is in, so its feedback_callback can miss the stream's tail; a subscription
    # to the action's feedback topic (depth 1000), filtered by goal id, gets every message, and
    # the stream is whole once its token count reaches the result's generated_tokens.
    import rclpy
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile

    node = rclpy.create_node("third_party_client", context=system.client.node.context)
    got, via_callback = [], []
    ac = ActionClient(node, BudgetedQuery, "/timebill/budgeted_query")
    node.create_subscription(BudgetedQuery.Impl.FeedbackMessage, "/timebill/budgeted_query/_action/feedback",
                             lambda m: got.append(m), QoSProfile(depth=1000))
    ex = SingleThreadedExecutor(context=node.context)
    ex.add_node(node)
    stop = threading.Event()
    spinner = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)],
                               daemon=True)
    spinner.start()
    try:
        assert ac.wait_for_server(timeout_sec=10)
        goal = BudgetedQuery.Goal(prompt="Say as much as you can.", max_new_tokens=LONG, max_eviction_ratio=-1.0,
                                  overrun_policy=BudgetedQuery.Goal.POLICY_KILL)
        goal.time_budget.sec = 30
        sent = ac.send_goal_async(goal, feedback_callback=via_callback.append)
        handle = wait_for(lambda: sent.done() and sent.result(), 10, what="the goal response")
        res = handle.get_result_async()
        r = wait_for(lambda: res.done() and res.result(), 30, what="the result").result
        assert r.outcome == COMPLETED, r.message
        key = bytes(handle.goal_id.uuid)
        mine = lambda: [m.feedback for m in got if bytes(m.goal_id.uuid) == key]  # noqa: E731
        wait_for(lambda: mine() and mine()[-1].tokens_generated >= r.generated_tokens, 5,
                 what="the stream to catch up with the result")
        assert "".join(fb.text for fb in mine()) == r.text
    finally:
        stop.set()
        spinner.join(timeout=5)
        ex.shutdown(timeout_sec=1)
        node.destroy_node()


def test_kill_ends_by_the_deadline_with_partial_text(system):
    budget = 0.4
    h = system.send("Describe everything you see.", budget=budget, max_new_tokens=LONG, policy="kill")
    r = _result(h)
    assert r.outcome == KILLED, r.message
    assert h.status == ABORTED
    assert 0 < r.generated_tokens < LONG
    assert r.text and r.text == h.text
    elapsed = r.elapsed.sec + r.elapsed.nanosec * 1e-9
    # No decoding step is started that the time model says would end late; allow one slow step
    # on this shared machine.
    assert elapsed <= budget + 0.15, f"killed {elapsed - budget:.3f} s after the deadline"
    assert r.deadline_met == (elapsed <= budget)
    assert "killed" in r.message
    # The stream said up front how much of the answer the budget holds.
    assert 0 < h.fbs[0].tokens_that_fit < LONG


# --- Skip-Next ------------------------------------------------------------------------------------
def test_skip_next_chain_skips_the_goals_queued_behind_an_overrun(system):
    first = system.send("Long answer please.", budget=0.3, max_new_tokens=LONG, policy="skip_next")
    wait_for(lambda: first.fbs, 10, what="the first goal to run")
    behind = [system.send(f"Queued question {i}?", budget=20.0, max_new_tokens=5, policy="skip_next")
              for i in range(2)]
    r0 = _result(first)
    assert r0.outcome == COMPLETED and not r0.deadline_met, "Skip-Next lets an overrunning job finish"
    assert first.status == SUCCEEDED
    for h in behind:
        r = _result(h)
        assert r.outcome == SKIPPED, r.message
        assert h.status == ABORTED and r.generated_tokens == 0 and "skipped" in r.message
    after = system.send("A question after the overrun.", budget=20.0, max_new_tokens=5, policy="skip_next")
    assert _result(after).outcome == COMPLETED


# --- cancel ---------------------------------------------------------------------------------------
def test_cancel_running_and_queued_goals(system):
    running = system.send("Keep talking.", budget=30.0, max_new_tokens=LONG, policy="kill")
    # Sent together, either could reach the model first (each is estimated on its own thread).
    wait_for(lambda: running.fbs, 10, what="the first goal to run")
    queued = system.send("Waiting in line.", budget=30.0, max_new_tokens=5, policy="kill")
    wait_for(lambda: len(running.fbs) >= 20, 10, what="20 tokens")
    t0 = time.monotonic()
    assert queued.cancel()
    assert running.cancel()
    r = _result(running)
    assert time.monotonic() - t0 < 2.0
    assert r.outcome == CANCELED and running.status == STATUS_CANCELED
    assert 20 <= r.generated_tokens < LONG and r.text == running.text
    rq = _result(queued)
    assert rq.outcome == CANCELED and queued.status == STATUS_CANCELED and rq.generated_tokens == 0


# --- invalid goals --------------------------------------------------------------------------------
# Judged in the goal callback, before a goal takes a queue slot: rejected, the reason logged.
REJECTED_GOALS = {
    "empty prompt": (dict(prompt=""), "the prompt is empty"),
    "blank prompt": (dict(prompt="   \n"), "the prompt is empty"),
    "zero budget": (dict(budget=0.0), "budget"),
    "negative budget": (dict(budget="negative"), "budget"),
    "unknown policy": (dict(policy=7), "overrun_policy"),
    "eviction ratio 1.5": (dict(max_eviction_ratio=1.5), "max_eviction_ratio"),
    "eviction ratio NaN": (dict(max_eviction_ratio=math.nan), "max_eviction_ratio"),
    "no room to answer": (dict(max_new_tokens=5000), "leaves no room for the prompt"),
    "prompt of megabytes": (dict(prompt="kitchen " * 250_000), "characters: more than the model's context"),
}
# Judged by the tokenizer once the goal is taken: answered INVALID with the reason.
INVALID_GOALS = {
    # 12,600 characters, about 4,900 tokens: under the character bound (13 x 2,040), over the context.
    "prompt over the context": (dict(prompt="kitchen cup robot " * 700), "context"),
}


def _goal_kw(over):
    from builtin_interfaces.msg import Duration

    kw = dict(prompt="Where is the cup?", budget=5.0, max_new_tokens=8)
    kw.update(over)
    if kw["budget"] == "negative":
        kw["budget"] = Duration(sec=-2)
    return kw.pop("prompt"), kw.pop("budget"), kw


def test_goals_judged_invalid_before_queueing_are_rejected_with_the_reason_logged(system):
    from timebill_ros.client import QueryRejected

    for kind, (over, why) in REJECTED_GOALS.items():
        prompt, budget, kw = _goal_kw(over)
        h = system.client.query(prompt, budget, **kw)
        with pytest.raises(QueryRejected):
            h.wait_accepted(10)
        wait_for(lambda: f"goal rejected: invalid goal: " in open(system.gen.log_path).read(), 5,
                 what=f"the rejection of '{kind}' in the log")
        with open(system.gen.log_path) as f:
            assert why in f.read(), f"{kind}: no '{why}' in the generation node's log"
    assert _result(system.send("Still there?", 10.0, max_new_tokens=5)).outcome == COMPLETED


def test_goal_judged_invalid_by_the_tokenizer_is_answered_invalid(system):
    handles = {}
    for kind, (over, _) in INVALID_GOALS.items():
        prompt, budget, kw = _goal_kw(over)
        handles[kind] = system.send(prompt, budget, **kw)
    for kind, h in handles.items():
        r = _result(h)
        assert r.outcome == INVALID, f"{kind}: {r.outcome} {r.message}"
        assert h.status == ABORTED
        assert INVALID_GOALS[kind][1] in r.message, f"{kind}: {r.message!r}"
        assert r.generated_tokens == 0 and not h.fbs
    assert _result(system.send("Still there?", 10.0, max_new_tokens=5)).outcome == COMPLETED
    for h in handles.values():
        wait_for(lambda: system.heard.of(system.heard.reports, h.goal_id), 5, what="a report of an invalid goal")
        assert system.heard.of(system.heard.reports, h.goal_id)[0].outcome == INVALID


def test_a_flood_of_oversized_prompts_does_not_lock_out_a_normal_goal(system):
    # Issue 12, failure 3: ten 2 MB prompts were queued and tokenized (~2.5 s each), so a normal
    # goal sent meanwhile was rejected (queue full). Judged by length in characters, they never
    # take a slot.
    from timebill_ros.client import QueryRejected

    t0 = time.monotonic()
    flood = [system.client.query("x" * 2_000_000, 30.0, max_new_tokens=8) for _ in range(10)]
    normal = system.send("Where is the red cup?", 30.0, max_new_tokens=5)
    for h in flood:
        with pytest.raises(QueryRejected):
            h.wait_accepted(30)
    r = _result(normal)
    assert r.outcome == COMPLETED, r.message
    assert time.monotonic() - t0 < 15.0


# --- bursts ---------------------------------------------------------------------------------------
def test_every_goal_of_a_burst_of_200_gets_a_response(system):
    # Issue 12, failure 1: at rclpy's default service depth (10), a burst of more than ~10 goals
    # lost goal requests: no accept, no reject, nothing logged. A plain rclpy ActionClient (no
    # TimeBillClient), 200 goals at once: each is accepted or rejected, and the accepted complete.
    # The client's side of the services needs the depth too (its request writer and response
    # reader keep only `depth` messages): at the default, this client lost 155 of the 200
    # responses the node sent.
    import rclpy
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile

    node = rclpy.create_node("burst_client", context=system.client.node.context)
    ex = SingleThreadedExecutor(context=node.context)
    ex.add_node(node)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ex.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        deep = QoSProfile(depth=1000)
        ac = ActionClient(node, BudgetedQuery, "/timebill/budgeted_query", goal_service_qos_profile=deep,
                          result_service_qos_profile=deep, cancel_service_qos_profile=deep)
        assert ac.wait_for_server(timeout_sec=10)
        goal = BudgetedQuery.Goal(prompt="Burst?", max_new_tokens=2, max_eviction_ratio=-1.0)
        goal.time_budget.sec = 60
        futures = [ac.send_goal_async(goal) for _ in range(200)]
        try:
            wait_for(lambda: all(f.done() for f in futures), 30, interval=0.1)
        except AssertionError:
            raise AssertionError(f"{sum(not f.done() for f in futures)} of 200 goals got no response") from None
        handles = [f.result() for f in futures]
        accepted = [h for h in handles if h.accepted]
        assert len(accepted) >= 1 and len(accepted) + sum(not h.accepted for h in handles) == 200
        results = [h.get_result_async() for h in accepted]
        wait_for(lambda: all(f.done() for f in results), 60, interval=0.1, what="the accepted goals' results")
        assert all(f.result().result.outcome == COMPLETED for f in results)
    finally:
        stop.set()
        spinner.join(timeout=5)
        ex.shutdown(timeout_sec=1)
        node.destroy_node()
    with open(system.gen.log_path) as f:
        rejections = f.read().count("goal rejected: the queue is full")
    assert rejections >= 200 - len(accepted)


def test_infeasible_goal_is_answered_at_once(system):
    # A budget shorter than the predicted prefill plus the expected tokens cannot be met at any ratio.
    h = system.send("Where is the cup?", 0.001, max_new_tokens=64)
    r = _result(h)
    assert r.outcome in (INFEASIBLE, KILLED), r.message
    if r.outcome == INFEASIBLE:
        assert "infeasible" in r.message and r.generated_tokens == 0
    # "At once" as the node measured it, from acceptance to answer: the round trip through the
    # middleware is not the node's to promise (in one CI run it took 4.2 s while the node's log
    # showed the goal answered 4 ms after acceptance).
    assert r.elapsed.sec + r.elapsed.nanosec * 1e-9 < 3.0


# --- queue ----------------------------------------------------------------------------------------
def test_queue_runs_goals_earliest_deadline_first(system):
    system.order.clear()
    blocker = system.send("Block the model for a while.", budget=30.0, max_new_tokens=1000, name="blocker")
    wait_for(lambda: blocker.fbs, 10, what="the blocker to run")
    late = system.send("Question B.", 25.0, max_new_tokens=4, name="B25")
    soon = system.send("Question C.", 10.0, max_new_tokens=4, name="C10")
    mid = system.send("Question D.", 17.0, max_new_tokens=4, name="D17")
    for h in (blocker, late, soon, mid):
        assert _result(h).outcome == COMPLETED
    assert system.order == ["blocker", "C10", "D17", "B25"]
    # The queued goals waited for the blocker: their reports say so.
    for h in (late, soon, mid):
        wait_for(lambda: system.heard.of(system.heard.reports, h.goal_id), 5, what="a report")
        rep = system.heard.of(system.heard.reports, h.goal_id)[0]
        assert rep.queue_wait.sec + rep.queue_wait.nanosec * 1e-9 > 0.05


# --- estimates, diagnostics, marker -----------------------------------------------------------------
def test_estimates_published_for_every_goal_and_updated_while_running(system):
    hs = [system.send("Long one.", 30.0, max_new_tokens=1000),
          system.send("Short one.", 30.0, max_new_tokens=3),
          system.send("Another short one.", 30.0, max_new_tokens=3)]
    for h in hs:
        assert _result(h).outcome == COMPLETED
    for h in hs:
        wait_for(lambda: system.heard.of(system.heard.estimates, h.goal_id), 5, what="an estimate")
        first = system.heard.of(system.heard.estimates, h.goal_id)[0]
        assert first.tokens_generated == 0 and first.source == "predictor"
        assert first.prompt_tokens > 0 and first.time_budget.sec == 30
        assert first.tokens_that_fit > 0
        assert first.predicted_total.sec + first.predicted_total.nanosec > 0
    updates = [e for e in system.heard.of(system.heard.estimates, hs[0].goal_id) if e.tokens_generated > 0]
    assert updates, "no estimate updates while the long goal ran"
    counts = [e.tokens_generated for e in updates]
    assert counts == sorted(counts)


def test_what_if_estimate_service(system):
    r = system.client.estimate("Where is the red cup?", budget=2.5, max_new_tokens=32)
    assert r.valid and r.prompt_tokens > 0 and r.predicted_tokens_bound == 32
    assert 0 < r.tokens_that_fit <= 32
    assert 0.0 <= r.eviction_ratio < 1.0 and r.time_budget.sec == 2
    bad = system.client.estimate("", budget=2.5)
    assert not bad.valid and "empty" in bad.message


def test_a_planner_gets_one_of_its_options_a_parsed_json_value_and_invalid_for_a_bad_schema(system, tiny):
    # Issue 21 through the nodes (the random tiny model: any token it wants, the format holds).
    import json

    import jsonschema

    from timebill_ros.client import NoAnswer

    rooms = ["kitchen", "hall", "bedroom"]
    assert system.client.choose("Which room first?", rooms, budget=10.0) in rooms
    schema = {"type": "object", "properties": {"action": {"enum": ["pick", "place"]}, "object": {"type": "string"}},
              "required": ["action", "object"]}
    jsonschema.validate(system.client.ask_json("Pick up the cup.", schema, budget=10.0, max_new_tokens=40), schema)
    # cut by the token cap: closed, still valid, and said so
    r = system.client.ask("Pick up the cup.", 10.0, json_schema=schema, max_new_tokens=3)
    assert r.closed_early and "closed with the shortest ending" in r.message
    jsonschema.validate(json.loads(r.text), schema)
    bad = system.client.ask("Pick up the cup.", 5.0, json_schema='{"type": "object",')
    assert bad.outcome == INVALID and "json_schema is not valid JSON" in bad.message
    bad = system.client.ask("Where?", 5.0, grammar='root ::= "a')
    assert bad.outcome == INVALID and "grammar line 1, column 10: the literal is never closed" in bad.message
    # no time for any answer: refused up front, or its deadline passed in the queue; never a broken answer
    with pytest.raises(NoAnswer, match="INFEASIBLE|KILLED"):
        system.client.choose("Which room first?", rooms, budget=0.002)
    est = system.client.estimate("Which room first?", 5.0, choices=rooms)
    assert est.valid and est.answer_format == "choices"
    assert est.predicted_tokens_bound == max(len(tiny.encode_text(r)) for r in rooms)


def test_the_readmes_behaviour_tree_condition_answers_yes_or_no_within_its_budget(system):
    # examples/yes_no_condition.py, ticked as a tree does (the README shows it).
    import importlib.util

    import py_trees

    spec = importlib.util.spec_from_file_location("yes_no_condition", REPO / "examples" / "yes_no_condition.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    condition = example.AskYesNo("door open?", system.client, "Is the door open?", budget=2.0)
    tree = py_trees.trees.BehaviourTree(condition)
    started = time.monotonic()
    while True:
        tree.tick()
        if condition.status != py_trees.common.Status.RUNNING:
            break
        time.sleep(0.01)
    assert condition.answer in ("yes", "no")
    assert condition.status == (py_trees.common.Status.SUCCESS if condition.answer == "yes" else py_trees.common.Status.FAILURE)
    assert time.monotonic() - started < 2.0 + 0.5  # the budget, and a tick or so of the tree


def test_a_budget_too_short_for_the_expected_answer_asks_for_fewer_words(system):
    # Issue 11, part 4. The tiny system predicts 400 tokens (constant_expected_tokens); at a budget
    # that holds about a quarter of them the prompt is planned, and run, with "Answer in at most W words.".
    # Not half: the constant predictor does not read the limit, so the limited prompt (a few tokens
    # longer) is chosen only while the prompt as sent has no better odds. At half, the fastest of
    # the recent jobs' speeds on a loaded machine can fit the whole answer and give the prompt as
    # sent a chance its limited version lacks (clean-clone CI twice saw such a goal run unlimited).
    from timebill.length_control import WORD_LIMITS
    from timebill_ros.convert import seconds

    prompt = "Where is the red cup usually kept in a kitchen?"
    plain = system.client.estimate(prompt, budget=60.0, max_new_tokens=LONG)
    assert plain.answer_word_limit == 0 and plain.predicted_tokens == 400
    per_token = (seconds(plain.predicted_total) - seconds(plain.predicted_prefill)) / plain.predicted_tokens
    budget = seconds(plain.predicted_prefill) + 100 * per_token
    limited = system.client.estimate(prompt, budget=budget, max_new_tokens=LONG)
    assert limited.valid, limited.message
    assert limited.answer_word_limit in WORD_LIMITS and limited.prompt_tokens > plain.prompt_tokens, \
        (plain.completion_probability, limited.completion_probability, limited.message)
    # The limited prompt comes tokenized, so the generation node runs those ids as they are.
    assert len(limited.limited_prompt_ids) == limited.prompt_tokens and not plain.limited_prompt_ids
    off = system.client.estimate(prompt, budget=budget, max_new_tokens=LONG, length_control=False)
    assert off.answer_word_limit == 0 and off.prompt_tokens == plain.prompt_tokens
    # A goal: the node runs the limited prompt, and the stream, the result and the report say so.
    h = system.send(prompt, budget, max_new_tokens=LONG, policy="kill")
    r = _result(h)
    assert r.answer_word_limit in WORD_LIMITS, (r.message, r.completion_probability)
    assert r.prompt_tokens > plain.prompt_tokens
    assert h.fbs and all(fb.answer_word_limit == r.answer_word_limit for fb in h.fbs)
    wait_for(lambda: system.heard.of(system.heard.reports, h.goal_id), 5, what="a report")
    assert system.heard.of(system.heard.reports, h.goal_id)[0].answer_word_limit == r.answer_word_limit
    # A goal that turns it off runs its prompt as sent.
    r = _result(system.send(prompt, budget, max_new_tokens=LONG, policy="kill", length_control=False))
    assert r.answer_word_limit == 0 and r.prompt_tokens == plain.prompt_tokens


def test_the_predictor_estimates_the_ids_it_is_sent_instead_of_tokenizing_again(system):
    # Issue 12: a goal's prompt is tokenized once, by the generation node, which sends the ids.
    r = system.client.estimate("Hi", budget=30.0, max_new_tokens=8, prompt_ids=[5] * 150)
    assert r.valid, r.message
    assert r.prompt_tokens == 150
    # Ids no tokenizer of this model makes are refused (the model would index out of its table).
    bad = system.client.estimate("Hi", budget=30.0, max_new_tokens=8, prompt_ids=[5, 10**9])
    assert not bad.valid and "outside the model's vocabulary" in bad.message


def test_a_huge_budget_saturates_the_deadline_instead_of_wrapping(system):
    # Issue 12, failure 7: builtin_interfaces/Time has int32 seconds; a deadline past 2038 wrapped
    # around (budgets above ~3.5e8 s). It saturates at the largest representable time.
    r = system.client.estimate("Where is the red cup?", budget=2.0e9, max_new_tokens=8)
    assert r.valid, r.message
    assert r.deadline.sec == 2**31 - 1
    assert r.time_budget.sec == 2_000_000_000
    now = time.time()
    assert now - 60 < r.predicted_completion.sec < now + 60


def test_nodes_print_no_progress_bars(system):
    # Issue 12, failure 7: a GGUF conversion's "Loading weights" bar was hundreds of lines in the
    # predictor node's log under launch. A node module silences tqdm, however transformers sets it.
    code = ("import io, timebill_ros.predictor_node\n"
            "from transformers.utils import logging as hf\n"
            "hf.enable_progress_bar()\n"
            "buf = io.StringIO()\n"
            "with hf.tqdm(total=3, desc='Loading weights', file=buf) as bar:\n"
            "    bar.update(3)\n"
            "print(repr(buf.getvalue()))\n")
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "''", out.stdout
    for p in (system.gen, system.pred):
        with open(p.log_path) as f:
            assert "it/s]" not in f.read()


def test_diagnostics_and_marker(system):
    def status(suffix):
        with system.heard.lock:
            for arr in reversed(system.heard.diagnostics):
                for st in arr.status:
                    if st.name.endswith(suffix):
                        return st
        return None

    gen = wait_for(lambda: status("budgeted generation"), 5, what="generation diagnostics")
    pred = wait_for(lambda: status("completion estimates"), 5, what="predictor diagnostics")
    gv = {kv.key: kv.value for kv in gen.values}
    pv = {kv.key: kv.value for kv in pred.values}
    assert gv["model_loaded"] == "True" and gv["model"] == "tiny-test-model"
    assert gv["predictor_reachable"] == "yes" and int(gv["goals_finished"]) > 0
    for key in ("queue_length", "deadline_hit_rate", "time_model_decode_step_mape_pct"):
        assert key in gv
    assert pv["model_loaded"] == "True" and int(pv["reports_observed"]) > 0
    assert "time_model_decode_step_mape_pct" in pv
    with system.heard.lock:
        markers = list(system.heard.markers)
    assert markers and markers[-1].header.frame_id == "test_frame" and markers[-1].type == 9


def test_cli_query_and_monitor(system):
    env = dict(os.environ)
    mon = subprocess.Popen([sys.executable, "-m", "timebill_ros.cli", "monitor", "--plain", "--duration", "25"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        time.sleep(6.0)  # the monitor's start-up and discovery (3 s was too short on a busy machine)
        q = subprocess.run([sys.executable, "-m", "timebill_ros.cli", "query", "Hello robot", "--budget", "5",
                            "--max-new-tokens", "12", "--policy", "kill"],
                           env=env, capture_output=True, text=True, timeout=60)
        assert q.returncode == 0, q.stdout + q.stderr
        assert "--- COMPLETED (goal status SUCCEEDED) ---" in q.stdout
        assert "generated 12" in q.stdout
        os.killpg(mon.pid, signal.SIGINT)
        out, _ = mon.communicate(timeout=10)
    finally:
        if mon.poll() is None:
            os.killpg(mon.pid, signal.SIGKILL)
            mon.wait()
    assert mon.returncode == 0, out
    assert "estimate (predictor)" in out and "completed" in out, out


# --- the predictor goes away ----------------------------------------------------------------------
def test_predictor_stopped_mid_run_falls_back_to_local_estimates(system):
    from timebill_ros.convert import short_id

    running = system.send("Keep going.", 30.0, max_new_tokens=1000)
    wait_for(lambda: running.fbs, 10, what="the goal to run")
    code = system.procs.stop(system.pred, timeout=10)
    assert code == 0, f"the predictor did not stop cleanly (exit code {code})\n" + system.logs()
    assert _result(running).outcome == COMPLETED
    t0 = time.monotonic()
    h = system.send("Anyone predicting?", 10.0, max_new_tokens=8)
    r = _result(h)
    assert r.outcome == COMPLETED and h.status == SUCCEEDED
    assert "predictor unreachable" in r.message and "local estimate" in r.message
    assert time.monotonic() - t0 < 5.0
    wait_for(lambda: system.heard.of(system.heard.estimates, h.goal_id), 5, what="the local estimate")
    assert system.heard.of(system.heard.estimates, h.goal_id)[0].source == "local"

    def warned():
        with system.heard.lock:
            for arr in reversed(system.heard.diagnostics):
                for st in arr.status:
                    if st.name.endswith("budgeted generation"):
                        return st if st.level == b"\x01" else None
        return None

    st = wait_for(warned, 5, what="a WARN diagnostic from the generation node")
    assert "predictor unreachable" in st.message
    assert {kv.key: kv.value for kv in st.values}["predictor_reachable"] == "no"
    with open(system.gen.log_path) as f:
        assert "predictor unreachable" in f.read()
    # Once it is known to be gone, later goals say so in their result, not in a warning each.
    later = system.send("Still nobody?", 10.0, max_new_tokens=4)
    assert "local estimate" in _result(later).message
    sid = short_id(later.goal_id)
    with open(system.gen.log_path) as f:
        assert not [line for line in f if "WARN" in line and sid in line], system.logs()


def test_generation_node_shuts_down_cleanly_mid_goal(system):
    h = system.send("Talk until I stop you.", 30.0, max_new_tokens=LONG)
    wait_for(lambda: h.fbs, 10, what="the goal to run")
    pgid = system.gen.pid
    t0 = time.monotonic()
    assert system.procs.stop(system.gen, timeout=10) == 0
    # Well within launch's 5 s before it escalates to SIGTERM (issue 12: once in three
    # launch_testing runs it was not). The node itself stopped in 0.1 s; the interpreter's teardown
    # with torch loaded took another 2.6 to 4.8 s, until the node skipped it.
    stopped = time.monotonic() - t0
    assert stopped < 3.0, f"the generation node took {stopped:.2f} s to stop on SIGINT"
    # The goal in progress was answered before the node went away.
    r = _result(h, timeout=5)
    assert r.outcome == CANCELED and h.status == ABORTED and "shutting down" in r.message
    assert 0 < r.generated_tokens < LONG and r.text == h.text
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)  # nothing left in the node's process group
    with open(system.gen.log_path) as f:
        log = f.read()
    assert "Traceback" not in log, log[-3000:]
    assert "exiting now" not in log, "the shutdown had to be cut short:\n" + log[-3000:]
