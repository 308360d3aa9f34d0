"""The methods compared, built as they are served (timebill/runtime.py) from the configuration.

* No eviction and fixed ratios: generated once per (prompt, ratio) by the recorder engine (a
  constant length predictor: the ratio is fixed, nothing is planned) and replayed.
* TimeBill plans its ratio live with the trained RLP (calibrated bound) and the machine's timing
  model corrected online, as served, by the recorded runs of the prompts before: `timebill` is the
  default (`planner: score`, `length_control: true`), `timebill_budget` the budget planner (the
  smallest ratio that makes the expected answer fit) with length control, `timebill_paper` the
  paper's closed form (`planner: paper`). All three share one calibration and one RLP; every other
  setting (max_eviction_ratio, retention, min_useful_tokens, ...) is the configuration's.
* The paper's k sweep: its planner with its bound k x predicted length (k set per row).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..engine import BudgetedEngine
from ..estimator import Estimator
from ..length_predictor import ConstantLengthPredictor
from ..calibration import OnlineCalibration
from .served_order import PromptStates, served_states

FIXED = (0.0, 0.25, 0.5, 0.75, 0.95)
K_SWEEP = (1.0, 2.0, 3.0, 5.0, 8.0)
DEFAULT = "timebill"  # the method as served by default: the one the bar judges (bar.py)
PLANNERS = {  # method -> the settings it fixes
    "timebill": {"planner": "score", "length_control": True},
    "timebill_budget": {"planner": "budget", "length_control": True},
    "timebill_paper": {"planner": "paper", "length_control": False},
}


@dataclass
class Methods:
    recorder: BudgetedEngine          # runs to completion at a fixed ratio, for the records
    calibration: OnlineCalibration    # the profiled timing model, taught by the records as they come
    planners: dict[str, Estimator]    # PLANNERS' methods
    k_planner: Estimator              # the paper's planner and bound, for the k sweep
    states: PromptStates | None       # the head's state of each prompt, when it reads the served prefill's (served_order.py)

    @property
    def time_model(self):
        """The profiled timing model, without the online correction."""
        return self.calibration.base


def recorder_engine(cfg: dict, loaded, say=print) -> BudgetedEngine:
    """The engine records are made with: every record is a complete run at the ratio asked for (the
    paper's setting), nothing refused, nothing planned, nothing learnt online."""
    from ..runtime import build_engine

    return build_engine({**cfg, "reject_infeasible": False}, loaded, say=say,
                        length_predictor=ConstantLengthPredictor(), learn_online=False)


def build_methods(cfg: dict, loaded, say=print) -> Methods:
    """``cfg``: the configuration the evaluation runs with (its ``threads`` the run's)."""
    from ..rlp.predictor import default_head_path
    from ..runtime import build_estimator, make_length_predictor

    recorder = recorder_engine(cfg, loaded, say)
    calibration = OnlineCalibration(recorder.estimator.calibration.base)
    # The head file by name, not `rlp`: the evaluation measures the RLP, so a head that does not fit
    # the model stops it instead of falling back to the constant predictor.
    rlp = {**cfg, "length_predictor": str(default_head_path())}
    calibrated_rlp = make_length_predictor({**rlp, "rlp_bound": "calibrated"}, loaded)
    planners = {m: build_estimator({**cfg, **fixes}, loaded, time_model=calibration, length_predictor=calibrated_rlp)
                for m, fixes in PLANNERS.items()}
    k_planner = build_estimator({**rlp, **PLANNERS["timebill_paper"], "rlp_bound": "paper", "rlp_k": 5.0}, loaded,
                                time_model=calibration)
    return Methods(recorder, calibration, planners, k_planner, served_states(cfg, calibrated_rlp))
