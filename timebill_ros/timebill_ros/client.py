"""A plain Python client for planners, in the spirit of nav2_simple_commander.

    from timebill_ros.client import TimeBillClient

    with TimeBillClient() as tb:                      # own node, spun in a background thread
        tb.wait_until_ready(timeout=60)
        est = tb.estimate("Where is the red cup?", budget=2.5)     # what-if, nothing generated
        q = tb.query("Where is the red cup?", budget=2.5, policy="kill",
                     on_token=lambda text, fb: print(text, end="", flush=True))
        result = q.result(timeout=10)                 # a BudgetedQuery.Result; q.status, q.text too
        # q.cancel() stops it within one decoding step; q.done(), q.feedback, q.future
        room = tb.choose("Which room first?", ["kitchen", "hall"], budget=1.0)   # one of the options
        action = tb.ask_json("Pick up the red cup.", {"type": "object", ...}, budget=2.0)  # parsed

Everything is thread-safe; callbacks run on the client's spin thread, so keep them short.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import threading
import time
from typing import Callable

from .convert import duration, length_control_code, policy_code
from .liveness import ALIVE_QOS, ALIVE_TOPIC, NodeWatch
from .orphaned_futures import forget_orphaned_futures
from .query_handle import QueryHandle, QueryRejected  # noqa: F401 - QueryRejected: part of the client's API


class NoAnswer(RuntimeError):
    """A query for a formatted answer (``choose``, ``ask_json``) that came back without one: refused
    as INFEASIBLE or INVALID, skipped, failed, or killed before its first token. ``result`` is the
    BudgetedQuery.Result; its ``message`` says why."""

    def __init__(self, result):
        from .convert import OUTCOME_NAMES

        super().__init__(f"no answer ({OUTCOME_NAMES.get(result.outcome, result.outcome)}): {result.message}")
        self.result = result


def answer_format(choices=(), json_schema=None, grammar: str = "") -> dict:
    """A goal's answer-format fields; ``json_schema`` may be a dict (sent as JSON text)."""
    schema = json.dumps(json_schema) if isinstance(json_schema, (dict, list, bool)) else (json_schema or "")
    return {"choices": [str(c) for c in choices], "json_schema": schema, "grammar": grammar or ""}


class TimeBillClient:
    """Action and service client of the TimeBill nodes.

    ``node``: an existing rclpy node to create the clients on (you spin it); otherwise the client
    makes its own node in ``context`` and spins it in a background thread.
    """

    def __init__(self, namespace: str = "timebill", action_name: str = "budgeted_query",
                 estimate_service: str = "estimate_completion", node=None, context=None,
                 node_name: str = "timebill_client"):
        import rclpy
        from rclpy.action import ActionClient
        from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile
        from timebill_msgs.action import BudgetedQuery
        from timebill_msgs.srv import EstimateCompletion

        self._own_init = False
        if node is None:
            if context is None and not rclpy.ok():
                rclpy.init(args=[])  # not sys.argv: a CLI's own arguments are no ROS arguments
                self._own_init = True
            node = rclpy.create_node(node_name, context=context)
            self._own_node = True
        else:
            self._own_node = False
        self.node = node
        ns = namespace.strip("/")

        def resolve(name):
            return name if name.startswith("/") or not ns else f"/{ns}/{name}"

        self.action_name = resolve(action_name)
        self.service_name = resolve(estimate_service)
        # Deep service queues, as on the server: a burst of goals must not lose responses here.
        services = QoSProfile(depth=1000)
        self._action = ActionClient(node, BudgetedQuery, self.action_name,
                                    callback_group=MutuallyExclusiveCallbackGroup(),
                                    goal_service_qos_profile=services, result_service_qos_profile=services,
                                    cancel_service_qos_profile=services)
        # Our own feedback subscription: rclpy's ActionClient drops a goal's feedback once its
        # result is in, and the last feedback (the tail of the answer) may arrive after the result.
        # One callback at a time, or two threads (a caller's own multi-threaded executor) could
        # append a goal's pieces out of order; depth 1000 because the default of 10 loses tokens
        # when this process falls behind a fast model.
        self._handles: dict[bytes, QueryHandle] = {}
        self._handles_lock = threading.Lock()
        self._feedback_sub = node.create_subscription(
            BudgetedQuery.Impl.FeedbackMessage, f"{self.action_name}/_action/feedback", self._on_feedback,
            QoSProfile(depth=1000), callback_group=MutuallyExclusiveCallbackGroup())
        self._estimate = node.create_client(EstimateCompletion, self.service_name,
                                            callback_group=MutuallyExclusiveCallbackGroup())
        # The generation node's liveliness (timebill_ros/liveness.py): when it is lost, no goal
        # sent before will be answered.
        from rclpy.event_handler import SubscriptionEventCallbacks
        from std_msgs.msg import Empty

        self._watch = NodeWatch(self._fail_pending)
        self._alive_sub = node.create_subscription(
            Empty, resolve(ALIVE_TOPIC), lambda _m: None, ALIVE_QOS,
            event_callbacks=SubscriptionEventCallbacks(
                liveliness=lambda info: self._watch.event(info.alive_count_change, info.not_alive_count_change)),
            callback_group=MutuallyExclusiveCallbackGroup())
        self._BudgetedQuery = BudgetedQuery
        self._EstimateCompletion = EstimateCompletion
        self._executor = None
        self._thread = None
        if self._own_node:
            # One thread: no callback here blocks, and rclpy's multi-threaded executor takes
            # feedback at about half the rate (benchmarks/feedback_bench.py: 466 vs 857 messages/s),
            # slower than a fast model streams (the tiny test model: ~820 tokens/s), so a client fell
            # behind and lost tokens past the queue's depth.
            self._executor = SingleThreadedExecutor(context=node.context)
            self._executor.add_node(node)
            self._thread = threading.Thread(target=self._spin, daemon=True, name="timebill_client_spin")
            self._thread.start()

    def _spin(self):
        from rclpy.executors import ExternalShutdownException

        while self.node.context.ok():
            try:
                self._executor.spin()
                return  # the executor was shut down (close())
            except ExternalShutdownException:
                return
            except Exception:  # one callback's error must not stop every later query's delivery
                if not self.node.context.ok():
                    return
                import traceback

                self.node.get_logger().error(f"callback error on the client's spin thread:\n{traceback.format_exc()}")

    # --- readiness ---------------------------------------------------------------------------------
    def wait_until_ready(self, timeout: float = 30.0, estimator: bool = False) -> bool:
        """Wait for the action server (and the estimate service with ``estimator``)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._action.server_is_ready() and (not estimator or self._estimate.service_is_ready()):
                return True
            time.sleep(0.05)
        return False

    # --- queries -----------------------------------------------------------------------------------
    def query(self, prompt: str, budget: float, policy: str | int = "default", system_prompt: str = "",
              max_new_tokens: int = 0, max_eviction_ratio: float = -1.0,
              on_token: Callable[[str, object], None] | None = None,
              on_feedback: Callable[[object], None] | None = None,
              length_control: bool | None = None, min_useful_tokens: int = 0,
              choices=(), json_schema=None, grammar: str = "") -> QueryHandle:
        """Send a budgeted query; returns at once. ``on_token(text, feedback)`` gets each streamed piece.

        ``policy``: "default" (the node's), "kill", "skip_next" or the goal's integer code.
        ``length_control``: None (the node's), False (never ask for a shorter answer) or True.
        ``min_useful_tokens``: the least answer worth starting, e.g. 1 for a yes/no question (0 = the node's).
        ``choices`` / ``json_schema`` (a dict or JSON text) / ``grammar`` (GBNF): the answer's
        format, at most one (see ``choose`` and ``ask_json``).
        """
        from unique_identifier_msgs.msg import UUID

        goal = self.make_goal(prompt, budget, policy, system_prompt, max_new_tokens, max_eviction_ratio,
                              length_control, min_useful_tokens, choices, json_schema, grammar)
        handle = QueryHandle(self, on_token, on_feedback)
        uuid = UUID(uuid=list(os.urandom(16)))
        with self._handles_lock:
            self._handles[bytes(uuid.uuid)] = handle
        handle._uuid = uuid
        fut = self._action.send_goal_async(goal, goal_uuid=uuid)
        forget_orphaned_futures(self._action)
        fut.add_done_callback(handle._goal_response)
        return handle

    def _on_feedback(self, msg):
        with self._handles_lock:
            handle = self._handles.get(bytes(msg.goal_id.uuid))
        if handle is not None:
            handle._feedback(msg)

    def _fail_pending(self):
        with self._handles_lock:
            pending = [h for h in self._handles.values() if not h.future.done()]
        for h in pending:
            h._lost("the generation node stopped while this goal was queued or running, so it will not be answered "
                    "(a restarted node does not know it): send it again")

    def _forget(self, handle):
        with self._handles_lock:
            self._handles.pop(bytes(handle._uuid.uuid), None)

    def make_goal(self, prompt, budget, policy="default", system_prompt="", max_new_tokens=0,
                  max_eviction_ratio=-1.0, length_control: bool | None = None, min_useful_tokens: int = 0,
                  choices=(), json_schema=None, grammar: str = ""):
        goal = self._BudgetedQuery.Goal(prompt=prompt, system_prompt=system_prompt,
                                        max_new_tokens=int(max_new_tokens),
                                        max_eviction_ratio=float(max_eviction_ratio),
                                        length_control=length_control_code(length_control),
                                        min_useful_tokens=int(min_useful_tokens),
                                        **answer_format(choices, json_schema, grammar))
        goal.overrun_policy = policy_code(policy)
        goal.time_budget = budget if hasattr(budget, "nanosec") else duration(float(budget))
        return goal

    def ask(self, prompt: str, budget: float, timeout: float | None = None, **kw):
        """Blocking: send a query and return its result."""
        h = self.query(prompt, budget, **kw)
        return h.result(timeout if timeout is not None else float(budget) + 30.0)

    def choose(self, prompt: str, options, budget: float, **kw) -> str:
        """Blocking: ask ``prompt`` and get exactly one of ``options`` back, within ``budget``.
        An answer the deadline cut is closed to the option it began (the result's closed_early;
        use ``ask(..., choices=options)`` to see it). Raises NoAnswer when none came (e.g.
        INFEASIBLE: not even the shortest option fits the budget)."""
        result = self.ask(prompt, budget, choices=list(options), **kw)
        if result.text not in options:
            raise NoAnswer(result)
        return result.text

    def ask_json(self, prompt: str, schema, budget: float, **kw):
        """Blocking: ask ``prompt`` for a JSON value valid against ``schema`` (a dict or JSON text)
        and get it parsed, within ``budget``. An answer the deadline cut is closed with the
        shortest ending the schema allows (missing required fields get their shortest values).
        Raises NoAnswer when none came."""
        result = self.ask(prompt, budget, json_schema=schema, **kw)
        try:
            return json.loads(result.text)
        except ValueError:
            raise NoAnswer(result) from None

    def estimate(self, prompt: str, budget: float, system_prompt: str = "", max_new_tokens: int = 0,
                 max_eviction_ratio: float = -1.0, timeout: float = 5.0, prompt_ids=(),
                 length_control: bool | None = None, min_useful_tokens: int = 0,
                 choices=(), json_schema=None, grammar: str = ""):
        """What-if: the predictor's EstimateCompletion response for this prompt and budget.
        ``prompt_ids``: the prompt already tokenized by this model's tokenizer (chat template
        applied); the predictor then estimates those ids instead of tokenizing ``prompt``.
        ``choices`` / ``json_schema`` / ``grammar``: the answer format, as for ``query``."""
        req = self._EstimateCompletion.Request(prompt=prompt, system_prompt=system_prompt,
                                               time_budget=duration(float(budget)),
                                               max_new_tokens=int(max_new_tokens),
                                               max_eviction_ratio=float(max_eviction_ratio),
                                               length_control=length_control_code(length_control),
                                               min_useful_tokens=int(min_useful_tokens),
                                               prompt_ids=[int(i) for i in prompt_ids],
                                               **answer_format(choices, json_schema, grammar))
        if not self._estimate.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"the estimate service {self.service_name} is not available")
        done = concurrent.futures.Future()
        fut = self._estimate.call_async(req)
        fut.add_done_callback(lambda f: done.set_result(f.result()))
        try:
            return done.result(timeout)
        except concurrent.futures.TimeoutError:
            self._estimate.remove_pending_request(fut)
            raise TimeoutError(f"no estimate from {self.service_name} within {timeout} s") from None

    # --- teardown ----------------------------------------------------------------------------------
    def close(self):
        if self._executor is not None:
            self._executor.shutdown(timeout_sec=2.0)
            # Join the spin thread before the node and the context go: a thread still inside
            # rclpy's wait when the interpreter exits aborts the process ("terminate called
            # without an active exception", exit -6).
            self._thread.join(timeout=2.0)
        self._action.destroy()
        self.node.destroy_client(self._estimate)
        self.node.destroy_subscription(self._feedback_sub)
        if self._own_node:
            self.node.destroy_node()
        if self._own_init:
            import rclpy

            rclpy.try_shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
