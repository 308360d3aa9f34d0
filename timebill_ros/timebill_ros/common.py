"""What both nodes share: parameters from the one YAML, diagnostics, the start-up lock, and how
a node runs and stops. Message conversions live in convert.py."""
from __future__ import annotations

import contextlib
import fcntl
import math
import os
import pathlib
import threading
import time

from timebill.config import RENAMED, load_config, renamed_keys

# Parameters only the ROS layer reads; config/timebill.yaml carries them too (or the default here).
ROS_DEFAULTS = {
    "diagnostics_window": 50,
    "estimate_update_period": 0.25,
    "predictor_probe_period": 1.0,  # generation node: seconds between probes of a predictor known to be gone
    "autostart": True,  # a node takes itself through configure and activate; false: a lifecycle manager does
}
# Set by `timebill_ros bringup` for its nodes: the pid a node must not outlive.
PARENT_ENV = "TIMEBILL_PARENT_PID"


def declare_config(node, overrides: dict | None = None) -> dict:
    """Declare every configuration key as a parameter of ``node`` and return the values in force.

    Defaults come from config/timebill.yaml (what ``load_config`` finds), so a node started
    without a parameter file behaves like one started from the launch file; ``--params-file`` and
    ``-p`` override them. Types are dynamic and coerced to the default's type here, because
    ``-p max_eviction_ratio:=1`` would otherwise be refused as an integer for a double.
    A parameter given under an old name (``timebill.config.RENAMED``: ``alpha_max``) sets its
    current one, with a warning, unless the current one is given too.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    cfg = {**ROS_DEFAULTS, **load_config(node=node.get_name(), overrides=overrides)}
    cfg.update(renamed_parameters(node, cfg))
    out = {}
    for name, default in cfg.items():
        value = node.declare_parameter(name, default, ParameterDescriptor(dynamic_typing=True)).value
        out[name] = coerce(value, default, name)
    return out


def renamed_parameters(node, cfg: dict) -> dict:
    """Current name -> value, for each old name given to ``node`` (--params-file, -p) whose current
    name is not (``timebill.config.renamed_keys``' rule, warnings in the node's log). ROS ignores a
    given parameter the node does not declare, and the old names are not declared (they would list
    as parameters of their own), so they are read from what the node was given: rclpy keeps it in
    ``_parameter_overrides``, with no public view."""
    given = {name: p.value for name, p in (getattr(node, "_parameter_overrides", None) or {}).items()
             if name in RENAMED or name in RENAMED.values()}
    renamed = renamed_keys(given, f"parameters of {node.get_name()}", warn=node.get_logger().warning)
    return {new: coerce(renamed[new], cfg[new], old) for old, new in RENAMED.items()
            if old in given and new not in given and new in cfg}


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
            except Exception as exc:
                if not node.context.ok():  # shut down while loading: nothing left to report to
                    return
                node.get_logger().warning(f"diagnostics not published: {type(exc).__name__}: {exc}")
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


def calibration_values(estimator) -> dict:
    """The online calibration of the timing model, as diagnostic values (both nodes publish them)."""
    errs = estimator.calibration.errors()
    return {"time_model_prefill_mape_pct": errs["prefill_mape_pct"],
            "time_model_decode_step_mape_pct": errs["decode_step_mape_pct"],
            "time_model_jobs": errs["jobs"], "prefill_scale": errs["prefill_scale"],
            "decode_scale": errs["decode_scale"], "planner": estimator.planner, "retention": estimator.retention.source}


def diagnostic_status(name: str, hardware_id: str, level: int, message: str, values: dict):
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    def fmt(v):
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.4g}"
        return str(v)

    return DiagnosticStatus(level=bytes([level]), name=name, hardware_id=hardware_id, message=message,
                            values=[KeyValue(key=k, value=fmt(v)) for k, v in values.items()])


class NodeStartError(RuntimeError):
    """A node could not be configured or activated (its load error says why)."""


def parent_gone(expected: int) -> bool:
    """True once the process that started this one (``expected``) has ended: we were re-parented."""
    return bool(expected) and os.getppid() != expected


def run_node(make_node, make_executor, args=None, shutdown_timeout: float = 2.5, exit_process: bool = True) -> int:
    """Run a managed node: with its ``autostart`` parameter, configure (load, blocking) and
    activate it; spin; and on SIGINT/SIGTERM/SIGHUP stop it gracefully. Without ``autostart`` it
    spins unconfigured until a lifecycle manager (launch, nav2's lifecycle manager,
    ``ros2 lifecycle set``) drives it.

    rclpy's own handlers shut the context down at the signal, after which a node can no longer
    answer its goals or publish their reports. Here the signal only asks the node to stop
    (``node.shutdown()``: cancel goals, wait for them to be answered) while the context is still up;
    a signal during loading interrupts the loading. Started by ``timebill_ros bringup``
    (``TIMEBILL_PARENT_PID`` set), the node also stops when bringup is gone, however it ended.
    Stopping is bounded, within launch's 5 s before it escalates to SIGTERM: whatever is still
    blocked ``shutdown_timeout`` + 1.5 s after the signal is cut short by exiting the process.
    (MultiThreadedExecutor.shutdown joins its worker threads with no timeout, so a goal callback
    still running at that point, e.g. one waiting for a predictor that stopped at the same
    moment, held the whole process.) With ``exit_process`` it ends the process itself once done.
    """
    import signal

    import rclpy
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    loaded = threading.Event()
    halt = threading.Event()
    parent = int(os.environ.get(PARENT_ENV) or 0)

    def on_signal(signum, frame):
        if not loaded.is_set():
            raise KeyboardInterrupt
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
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

    def watch_parent():
        # Loading can take minutes: a bringup that dies meanwhile must not leave a node behind.
        while not stop.wait(0.5):
            if parent_gone(parent):
                node.get_logger().warning(f"bringup (pid {parent}) is gone: stopping")
                if not loaded.is_set():
                    os.kill(os.getpid(), signal.SIGINT)  # interrupts the loading in the main thread
                stop.set()
                return

    if parent:
        threading.Thread(target=watch_parent, daemon=True, name="parent_watch").start()
    try:
        if node.cfg["autostart"]:
            from rclpy.lifecycle import TransitionCallbackReturn

            for step in (node.trigger_configure, node.trigger_activate):
                if step() != TransitionCallbackReturn.SUCCESS:
                    raise NodeStartError(node.load_error or f"{step.__name__} failed")
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
    except NodeStartError as exc:
        node.get_logger().fatal(str(exc))
        code = 1
    except Exception as exc:
        node.get_logger().fatal(f"{type(exc).__name__}: {exc}")
        code = 1
    finally:
        loaded.set()  # a second signal during shutdown only sets the flag again

        def hard_exit():
            node.get_logger().error(f"still stopping {shutdown_timeout + 1.5:.1f} s after the signal: exiting now")
            os._exit(code or 1)

        guard = threading.Timer(shutdown_timeout + 1.5, hard_exit)
        guard.daemon = True
        guard.start()
        t0 = time.monotonic()
        log = node.get_logger()
        try:
            node.shutdown(timeout=shutdown_timeout)  # goals are still answered here: the spinner runs until halt
        finally:
            log.debug(f"stopping: goals answered after {time.monotonic() - t0:.3f} s")
            halt.set()
            if spinner is not None:
                spinner.join(timeout=1.0)
            log.debug(f"stopping: spinner joined after {time.monotonic() - t0:.3f} s")
            try:
                executor.shutdown(timeout_sec=1.0, wait_for_threads=False)
            except TypeError:  # a single-threaded executor has no threads to wait for
                executor.shutdown(timeout_sec=1.0)
            log.debug(f"stopping: executor shut down after {time.monotonic() - t0:.3f} s")
            node.destroy_node()
            rclpy.try_shutdown()
            guard.cancel()
            log.debug(f"stopping: done after {time.monotonic() - t0:.3f} s")
    if exit_process:
        # Every goal is answered and the node torn down: skip the interpreter's own teardown,
        # which with torch and transformers loaded took 2.6 to 4.8 s on a 2-core machine (the node
        # itself stopped in 0.1 s), so launch's 5 s SIGTERM escalation sometimes fired.
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
