"""The one configuration file (config/timebill.yaml), read by the nodes, the launch file and the CLIs.

It is a ROS 2 parameter file; the parameters under ``/**`` (and, for a node, under its own
name) are merged over the defaults below.
"""
from __future__ import annotations

import logging
import os
import pathlib

import yaml

from .feedback_pacing import DEFAULT_FEEDBACK_PERIOD
from .length_control import DEFAULT_LENGTH_CONTROL
from .planner import DEFAULT_MIN_USEFUL_TOKENS, DEFAULT_PLANNER
from .repetition import DEFAULT_LOOP_WINDOW

DEFAULTS = {
    "model": "embedded",
    "cache_dir": "",
    "threads": 2,
    "backend": "auto",
    "torch_dtype": "float32",
    "context_tokens": 8192,
    "time_model": "",
    "profile_max_tokens": 2048,
    "length_predictor": "rlp",
    "constant_expected_tokens": 64,
    "rlp_bound": "calibrated",
    "rlp_k": 5.0,
    "press": "snapkv",
    "max_eviction_ratio": 0.95,
    "fixed_eviction_ratio": -1.0,
    "worst_case_quantile": 0.5,
    "planner": DEFAULT_PLANNER,
    "retention": "auto",
    "min_useful_tokens": DEFAULT_MIN_USEFUL_TOKENS,
    "reject_infeasible": True,
    "length_control": DEFAULT_LENGTH_CONTROL,
    "default_max_new_tokens": 256,
    "default_policy": "kill",
    "loop_window_tokens": DEFAULT_LOOP_WINDOW,
    "action_name": "budgeted_query",
    "estimate_service": "estimate_completion",
    "estimates_topic": "estimates",
    "reports_topic": "job_reports",
    "queue_size": 8,
    "feedback_every_n_tokens": 1,
    "feedback_period": DEFAULT_FEEDBACK_PERIOD,
    "predictor_timeout": 1.0,
    "marker_frame": "base_link",
    "marker_topic": "answer_marker",
    "diagnostics_period": 1.0,
}

# Keys renamed since a configuration file could say them: old name -> current name. A file (or a
# node's parameters) with the old name still works; the first time it is seen, a warning says so.
RENAMED = {
    "alpha_max": "max_eviction_ratio",  # the paper's α_max; BudgetedQuery's name for it
}
log = logging.getLogger("timebill")
_warned: set = set()


def renamed_keys(params: dict, where: str = "configuration", warn=None) -> dict:
    """``params`` with each key in ``RENAMED`` under its current name (``where`` names the source
    in the warning). Given both names, the current one wins and the old one is ignored. ``warn``:
    where the warnings go (a node's logger); default the ``timebill`` logger, once per source and key."""
    out = dict(params)
    for old, new in RENAMED.items():
        if old not in out:
            continue
        value = out.pop(old)
        if new in out:
            message = (f"{where}: `{old}` is the old name of `{new}` and both are set: "
                       f"using {new}={out[new]!r}, ignoring {old}={value!r}")
        else:
            out[new] = value
            message = (f"{where}: `{old}` is now called `{new}`: using {new}={value!r} "
                       f"(rename it; the old name is still read)")
        if warn is not None:
            warn(message)
        else:
            warn_once((where, old), message)
    return out


def warn_once(key, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


def default_config_path() -> pathlib.Path | None:
    """$TIMEBILL_CONFIG, else the file installed with the ROS package, else the source tree's."""
    if os.environ.get("TIMEBILL_CONFIG"):
        return pathlib.Path(os.environ["TIMEBILL_CONFIG"])
    here = pathlib.Path(__file__).resolve().parent
    for cand in (here.parent / "config" / "timebill.yaml",):
        if cand.is_file():
            return cand
    try:
        from ament_index_python.packages import get_package_share_directory  # only where ROS is

        cand = pathlib.Path(get_package_share_directory("timebill_ros")) / "config" / "timebill.yaml"
        if cand.is_file():
            return cand
    except Exception:
        pass
    return None


def load_config(path: str | os.PathLike | None = None, node: str | None = None, overrides: dict | None = None) -> dict:
    """Defaults, then the file's ``/**`` parameters, then ``node``'s own, then ``overrides``.
    An old key name (``RENAMED``) is read as its current one, with a warning."""
    cfg = dict(DEFAULTS)
    path = pathlib.Path(path) if path else default_config_path()
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"configuration file not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        for key in ("/**", node, f"/{node}" if node else None):
            section = data.get(key) if key else None
            if isinstance(section, dict):
                cfg.update(renamed_keys(section.get("ros__parameters", {}) or {}, f"{path}, under {key}"))
    cfg.update(renamed_keys({k: v for k, v in (overrides or {}).items() if v is not None}, "overrides"))
    return cfg
