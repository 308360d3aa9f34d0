"""What both nodes and the clients share: parameters from the one YAML, time conversions,
outcome and policy mapping, and the start-up lock."""
from __future__ import annotations

import contextlib
import fcntl
import math
import pathlib
import threading
import uuid as uuid_mod

from timebill.config import load_config
from timebill.request import Outcome, Policy

# Parameters only the ROS layer reads; config/timebill.yaml carries them too.
ROS_DEFAULTS = {
    "diagnostics_window": 50,
    "estimate_update_period": 0.25,
}

# BudgetedQuery.Result outcome constants, by core outcome.
OUTCOME_CODES = {
    Outcome.COMPLETED: 1, Outcome.KILLED: 2, Outcome.SKIPPED: 3, Outcome.CANCELED: 4,
    Outcome.INFEASIBLE: 5, Outcome.INVALID: 6, Outcome.FAILED: 7,
}
OUTCOME_NAMES = {0: "UNKNOWN", **{code: o.name for o, code in OUTCOME_CODES.items()}}

POLICY_DEFAULT, POLICY_KILL, POLICY_SKIP_NEXT = 0, 1, 2
POLICY_CODES = {"default": POLICY_DEFAULT, "kill": POLICY_KILL, "skip_next": POLICY_SKIP_NEXT}


def declare_config(node, overrides: dict | None = None) -> dict:
    """Declare every configuration key as a parameter of ``node`` and return the values in force.

    Defaults come from config/timebill.yaml (what ``load_config`` finds), so a node started
    without a parameter file behaves like one started from the launch file; ``--params-file`` and
    ``-p`` override them. Types are dynamic and coerced to the default's type here, because
    ``-p alpha_max:=1`` would otherwise be refused as an integer for a double.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    cfg = {**ROS_DEFAULTS, **load_config(node=node.get_name(), overrides=overrides)}
    out = {}
    for name, default in cfg.items():
        value = node.declare_parameter(name, default, ParameterDescriptor(dynamic_typing=True)).value
        out[name] = coerce(value, default, name)
    return out


def coerce(value, default, name: str = "parameter"):
    if value is None:
        return default
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.strip().lower() in ("true", "1", "yes", "on"):
                return True
            if value.strip().lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(f"{name}: expected true/false, got {value!r}")
        return bool(value)
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, str):
        return str(value)
    return value


def seconds(duration) -> float:
    """builtin_interfaces/Duration to seconds."""
    return float(duration.sec) + float(duration.nanosec) * 1e-9


def duration(s: float):
    """Seconds to builtin_interfaces/Duration (negative and non-finite values clamp to 0)."""
    from builtin_interfaces.msg import Duration

    if not math.isfinite(s) or s <= 0:
        return Duration()
    sec = int(s)
    nsec = int(round((s - sec) * 1e9))
    if nsec >= 1_000_000_000:
        sec, nsec = sec + 1, nsec - 1_000_000_000
    return Duration(sec=sec, nanosec=nsec)


def time_after(stamp_ns: int, s: float):
    """builtin_interfaces/Time ``s`` seconds after ``stamp_ns`` (a clock reading in nanoseconds)."""
    from builtin_interfaces.msg import Time

    ns = int(stamp_ns + (s * 1e9 if math.isfinite(s) else 0))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def goal_key(goal_id) -> bytes:
    return bytes(bytearray(goal_id.uuid))


def short_id(goal_id) -> str:
    return uuid_mod.UUID(bytes=goal_key(goal_id)).hex[:8]


def is_zero_uuid(goal_id) -> bool:
    return not any(goal_key(goal_id))


def policy_from_code(code: int, default: str) -> Policy:
    """Goal ``overrun_policy`` to a core Policy; unknown codes raise InvalidRequest."""
    from timebill.request import InvalidRequest

    if code == POLICY_DEFAULT:
        return Policy.parse(default)
    if code == POLICY_KILL:
        return Policy.KILL
    if code == POLICY_SKIP_NEXT:
        return Policy.SKIP_NEXT
    raise InvalidRequest(f"unknown overrun_policy {code}: use 0 (node default), 1 (kill) or 2 (skip_next)")


def cache_dir(cfg: dict) -> pathlib.Path:
    from timebill.models import default_cache_dir

    return pathlib.Path(cfg["cache_dir"]).expanduser() if cfg.get("cache_dir") else default_cache_dir()


@contextlib.contextmanager
def startup_lock(cfg: dict):
    """Both nodes load the model and may profile the timing model at start-up: one at a time, so
    a missing timing model is profiled once (not twice, on a machine busy with the other) and a
    first GGUF conversion is not done by two processes at once."""
    folder = cache_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".startup.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_while_reporting(node, build):
    """Run a node's blocking start-up ``build()`` under the start-up lock, publishing its
    diagnostics meanwhile (loading can take minutes); a failure is recorded in the node's
    ``load_state``/``load_error``, published, and re-raised."""
    stop = threading.Event()

    def tick():
        period = max(0.1, float(node.cfg["diagnostics_period"]))
        while not stop.is_set():
            try:
                node._publish_diagnostics()
            except Exception:  # context shut down while loading: nothing to report to
                return
            stop.wait(period)

    threading.Thread(target=tick, daemon=True).start()
    try:
        import torch  # noqa: F401  (imported outside the lock: the other node can import meanwhile)
        import transformers  # noqa: F401

        with startup_lock(node.cfg):
            return build()
    except Exception as exc:
        node.load_state, node.load_error = "failed", f"{type(exc).__name__}: {exc}"
        node._publish_diagnostics()
        raise
    finally:
        stop.set()


def diagnostic_status(name: str, hardware_id: str, level: int, message: str, values: dict):
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    def fmt(v):
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.4g}"
        return str(v)

    return DiagnosticStatus(level=bytes([level]), name=name, hardware_id=hardware_id, message=message,
                            values=[KeyValue(key=k, value=fmt(v)) for k, v in values.items()])


def run_node(make_node, make_executor, args=None) -> int:
    """Run a node: load (blocking), spin, and on SIGINT/SIGTERM stop it gracefully.

    rclpy's own handlers shut the context down at the signal, after which a node can no longer
    answer its goals or publish their reports. Here the signal only asks the node to stop
    (``node.shutdown()``: cancel goals, wait for them to be answered) while the context is still up;
    a signal during loading interrupts the loading.
    """
    import signal
    import threading

    import rclpy
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    loaded = threading.Event()
    halt = threading.Event()

    def on_signal(signum, frame):
        if not loaded.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    node = make_node()
    executor = make_executor(node)
    executor.add_node(node)
    code = 0
    spinner = None

    def spin():
        # spin_once in a loop, ended from here: Executor.shutdown() from another thread while
        # spin() runs races inside rclpy (AttributeError on a guard condition, or an abort).
        while not halt.is_set() and node.context.ok():
            executor.spin_once(timeout_sec=0.1)

    try:
        node.load()
        loaded.set()
        spinner = threading.Thread(target=spin, daemon=True, name="spin")
        spinner.start()
        while not stop.wait(0.2):
            if not spinner.is_alive():
                node.get_logger().error("the executor stopped")
                code = 1
                break
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        node.get_logger().fatal(f"{type(exc).__name__}: {exc}")
        code = 1
    finally:
        loaded.set()  # a second signal during shutdown only sets the flag again
        try:
            node.shutdown()  # goals are still answered here: the spinner runs until halt
        finally:
            halt.set()
            if spinner is not None:
                spinner.join(timeout=5.0)
            executor.shutdown(timeout_sec=5.0)
            node.destroy_node()
            rclpy.try_shutdown()
    return code
