"""What the generation node shows people: the answer as an rviz text marker, and its /diagnostics
status with the goal counts behind it. Messages built from plain values, so the node only gathers
them and publishes."""
from __future__ import annotations

import collections
import math
import threading

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from timebill_msgs.action import BudgetedQuery
from visualization_msgs.msg import Marker

from .common import diagnostic_status
from .convert import NOT_SCORED, OUTCOME_NAMES, seconds

Result = BudgetedQuery.Result


def answer_marker(frame: str, stamp, state: str, elapsed: float, budget: float, tokens: int, estimate, text: str,
                  final=None) -> Marker:
    """A text marker above ``frame``: the goal's state, time and tokens, its estimate, the last of
    its text; red once a result missed its deadline."""
    head = f"[{state}] {elapsed:.2f} / {budget:.2f} s  {tokens} tok"
    if estimate is not None:
        head += f"  eviction {estimate.eviction_ratio:.2f}  predicted {estimate.predicted_total:.2f} s"
    if final is not None:
        head = (f"[{OUTCOME_NAMES.get(final.outcome, '?')}] {seconds(final.elapsed):.2f} / {budget:.2f} s  "
                f"{final.generated_tokens} tok  deadline {'met' if final.deadline_met else 'MISSED'}")
    m = Marker(type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, ns="timebill_answer", id=0, text=f"{head}\n{text}")
    m.header.frame_id = frame
    m.header.stamp = stamp
    m.pose.position.z = 1.5
    m.pose.orientation.w = 1.0
    m.scale.z = 0.12
    ok = final is None or final.deadline_met
    m.color.r, m.color.g, m.color.b, m.color.a = (1.0, 1.0, 1.0, 1.0) if ok else (1.0, 0.3, 0.3, 1.0)
    return m


def generation_diagnostics(name: str, values: dict, load_state: str, load_error: str, serving: bool,
                           predictor_problem: str | None) -> DiagnosticArray:
    """The node's status: ERROR when the model failed to load, WARN while loading, unconfigured,
    inactive or without its predictor, OK while serving (with the deadline hit rate)."""
    if load_state == "failed":
        level, msg = DiagnosticStatus.ERROR[0], f"model failed to load: {load_error}"
    elif load_state == "loading":
        level, msg = DiagnosticStatus.WARN[0], "loading the model (and profiling it if this machine has no timing model)"
    elif load_state == "unconfigured":
        level, msg = DiagnosticStatus.WARN[0], "unconfigured (lifecycle): no model loaded"
    elif not serving:
        level, msg = DiagnosticStatus.WARN[0], "inactive (lifecycle): model loaded, not serving goals"
    else:
        rate = values["deadline_hit_rate"]
        msg = (f"serving; queue {values['queue_length']}; deadline hit rate "
               + ("n/a" if math.isnan(rate) else f"{100 * rate:.0f} % of {values['deadline_window_goals']}"))
        level = DiagnosticStatus.OK[0]
        if predictor_problem is not None:
            level, msg = DiagnosticStatus.WARN[0], msg + f"; predictor unreachable ({predictor_problem}), using local estimates"
    return DiagnosticArray(status=[diagnostic_status(name, str(values["model"]), level, msg, values)])


class GoalTally:
    """What the generation node counts of its goals for /diagnostics: those finished, whether they
    met their deadlines (over the last ``window`` scored), those rejected and the last reason."""

    def __init__(self, window: int):
        self.lock = threading.Lock()
        self.scored = collections.deque(maxlen=max(1, int(window)))
        self.finished = 0
        self.rejected = 0
        self.last_rejection = ""
        self.last_plan = {}  # the last finished goal's plan: what the planner chose and why

    def reject(self, why: str):
        with self.lock:
            self.rejected += 1
            self.last_rejection = why

    def finish(self, res):
        """``res``: the goal's action result."""
        with self.lock:
            self.finished += 1
            if res.outcome not in NOT_SCORED:
                self.scored.append(bool(res.deadline_met and res.outcome == Result.COMPLETED))
            self.last_plan = {"last_goal_eviction_ratio": float(res.eviction_ratio),
                              "last_goal_completion_probability": float(res.completion_probability),
                              "last_goal_expected_quality": float(res.expected_quality)}

    def values(self, model: str, model_loaded: bool, queue_length: int, running_goal: str, predictor: dict,
               calibration: dict) -> dict:
        """The generation node's diagnostic values."""
        with self.lock:
            scored = list(self.scored)
            return {
                "model": model, "model_loaded": model_loaded, "queue_length": queue_length, "running_goal": running_goal,
                "goals_finished": self.finished,
                "deadline_hit_rate": (sum(scored) / len(scored)) if scored else float("nan"),
                "deadline_window_goals": len(scored),
                **predictor,
                "goals_rejected": self.rejected, "last_rejection": self.last_rejection,
                **self.last_plan,
                **calibration,
            }
