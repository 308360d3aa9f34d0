"""``timebill_ros``: the ROS 2 side from a terminal, for machines without the ``ros2`` CLI or ``launch``.

    timebill_ros demo ["prompt"] [--budget 3]    bring both nodes up on the embedded model, ask one
                                                 budgeted question, stream the answer, shut down
    timebill_ros bringup [--model M] [-p k:=v]   start both nodes from config/timebill.yaml (like
                                                 the launch file) until Ctrl-C; --demo "prompt" as above
    timebill_ros query "prompt" --budget 2.5 --policy kill     action client: stream tokens, print the result
    timebill_ros estimate "prompt" --budget 2.5                what-if: the predictor's estimate
    timebill_ros monitor                                       live view of jobs (estimates, feedback, reports)
"""
from __future__ import annotations

import argparse
import math
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

from timebill.cli import add_answer_args

DEFAULT_PROMPT = "In two sentences: why should a robot's language model answer within a time budget?"
EXIT_OK, EXIT_GOAL_FAILED, EXIT_NO_SYSTEM = 0, 1, 2


def _policy(s: str) -> str:
    key = s.strip().lower().replace("-", "_")
    if key not in ("default", "kill", "skip_next"):
        raise argparse.ArgumentTypeError("use kill, skip_next or default")
    return key


def _budget(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {s!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"the budget must be a positive number of seconds, got {s}")
    return v


def _add_goal_args(p, prompt_required=True):
    if prompt_required:
        p.add_argument("prompt", help="the question")
    p.add_argument("--budget", "-b", type=_budget, default=3.0, help="time budget in seconds, end to end (default 3)")
    p.add_argument("--policy", type=_policy, default="default", help="overrun policy: kill | skip_next | default (the node's)")
    p.add_argument("--system", default="", help="system prompt")
    p.add_argument("--max-new-tokens", type=int, default=0, help="0 = the node's default")
    p.add_argument("--max-eviction-ratio", type=float, default=-1.0, help="negative = the node's default")
    add_answer_args(p)


def _add_ns(p):
    p.add_argument("--namespace", "-n", default="timebill", help="the nodes' namespace (default timebill)")
    p.add_argument("--config", default=None,
                   help="parameter file the nodes run with, for the action, service and topic names "
                        "(default: the package's config/timebill.yaml)")


def _names(args) -> dict:
    """The action, service and topic names the nodes were configured with."""
    from timebill.config import load_config

    cfg = load_config(args.config)
    return {k: cfg[k] for k in ("action_name", "estimate_service", "estimates_topic", "reports_topic")}


def _client(args, **kw):
    from .client import TimeBillClient

    names = _names(args)
    return TimeBillClient(namespace=args.namespace, action_name=names["action_name"],
                          estimate_service=names["estimate_service"], **kw)


# --- query / estimate -----------------------------------------------------------------------------
def print_result(result, status_name: str, budget: float, out=sys.stdout):
    from .convert import OUTCOME_NAMES, seconds

    name = OUTCOME_NAMES.get(result.outcome, str(result.outcome))
    print(f"\n--- {name} (goal status {status_name}) ---", file=out)
    print(f"deadline {'met' if result.deadline_met else 'MISSED'}: {seconds(result.elapsed):.3f} s of a "
          f"{budget:.3f} s budget (predicted {seconds(result.predicted_time):.3f} s, "
          f"prefill {seconds(result.prefill_time):.3f} s)", file=out)
    print(f"tokens: prompt {result.prompt_tokens}, generated {result.generated_tokens} "
          f"(predicted {result.predicted_tokens}, bound {result.predicted_tokens_bound}); "
          f"eviction ratio {result.eviction_ratio:.2f}", file=out)
    print(f"at acceptance: {100 * result.completion_probability:.0f} % likely to complete, expected "
          f"{seconds(result.expected_time):.3f} s, 90th percentile {seconds(result.p90_time):.3f} s", file=out)
    if result.answer_word_limit:
        print(f"length control: the predicted answer did not fit; asked for at most {result.answer_word_limit} words",
              file=out)
    if result.message:
        print(f"message: {result.message}", file=out)


def run_query(client, args, out=sys.stdout) -> int:
    def on_token(text, _fb):
        out.write(text)
        out.flush()

    h = client.query(args.prompt, args.budget, policy=args.policy, system_prompt=args.system,
                     max_new_tokens=args.max_new_tokens, max_eviction_ratio=args.max_eviction_ratio,
                     on_token=on_token, length_control=args.length_control, min_useful_tokens=args.min_useful_tokens)
    try:
        h.wait_accepted(timeout=10.0)
    except Exception as exc:
        print(f"goal not accepted: {exc}", file=sys.stderr)
        return EXIT_GOAL_FAILED
    from .liveness import GoalLost

    try:
        # Skip-Next may run past the budget; the queue may hold others: wait generously.
        result = h.result(timeout=args.budget + 120.0)
    except KeyboardInterrupt:
        print("\ncanceling...", file=sys.stderr)
        h.cancel()
        result = h.result(timeout=10.0)
    except GoalLost as exc:
        print(f"\ngoal lost: {exc}", file=sys.stderr)
        return EXIT_GOAL_FAILED
    print_result(result, h.status_name, args.budget, out)
    from .convert import ERROR_OUTCOMES

    return EXIT_GOAL_FAILED if result.outcome in ERROR_OUTCOMES else EXIT_OK


def cmd_query(args) -> int:
    with _client(args) as client:
        if not client.wait_until_ready(timeout=args.wait):
            print(f"no action server {client.action_name} within {args.wait} s: is the generation node running? "
                  f"(timebill_ros bringup)", file=sys.stderr)
            return EXIT_NO_SYSTEM
        return run_query(client, args)


def cmd_estimate(args) -> int:
    from .convert import seconds

    with _client(args) as client:
        try:
            r = client.estimate(args.prompt, args.budget, system_prompt=args.system,
                                max_new_tokens=args.max_new_tokens, max_eviction_ratio=args.max_eviction_ratio,
                                timeout=args.wait, length_control=args.length_control,
                                min_useful_tokens=args.min_useful_tokens)
        except TimeoutError as exc:
            print(f"{exc}: is the predictor node running? (timebill_ros bringup)", file=sys.stderr)
            return EXIT_NO_SYSTEM
    if not r.valid:
        print(r.message)
        return EXIT_GOAL_FAILED
    print(f"prompt tokens {r.prompt_tokens}; predicted {r.predicted_tokens} tokens (bound {r.predicted_tokens_bound})")
    print(f"eviction ratio {r.eviction_ratio:.2f}; predicted {seconds(r.predicted_total):.3f} s "
          f"(prefill {seconds(r.predicted_prefill):.3f} s, worst case {seconds(r.predicted_worst_case):.3f} s) "
          f"of {args.budget:.3f} s")
    print("worst case fits the budget" if r.feasible else f"worst case does not fit: {r.reason}")
    print(f"{100 * r.completion_probability:.0f} % likely to complete in the budget; expected "
          f"{seconds(r.expected_time):.3f} s, 90th percentile {seconds(r.p90_time):.3f} s")
    if r.answer_word_limit:
        print(f"length control would ask for at most {r.answer_word_limit} words (the estimate is for that prompt)")
    return EXIT_OK


# --- monitor --------------------------------------------------------------------------------------
class Monitor:
    """Jobs seen on the estimates, feedback and job_reports topics."""

    COLUMNS = f"{'goal':8}  {'state':10} {'budget':>7} {'predict':>7} {'elapsed':>7} {'tokens':>6} {'tok/s':>6} {'alpha':>5}  note"

    def __init__(self, node, namespace: str, plain: bool, names: dict, out=sys.stdout):
        """``names``: the configured action and topic names (relative ones resolve in ``namespace``)."""
        from rclpy.qos import QoSProfile
        from timebill_msgs.action import BudgetedQuery
        from timebill_msgs.msg import CompletionEstimate, JobReport

        from .convert import OUTCOME_NAMES, goal_key, seconds, short_id

        self._key, self._short, self._seconds, self._names = goal_key, short_id, seconds, OUTCOME_NAMES
        self.out, self.plain = out, plain
        self.jobs: dict[bytes, dict] = {}
        self.order: list[bytes] = []
        ns = "/" + namespace.strip("/") if namespace.strip("/") else ""

        def resolve(name: str) -> str:
            return name if name.startswith("/") else f"{ns}/{name}"

        qos = QoSProfile(depth=100)
        node.create_subscription(CompletionEstimate, resolve(names["estimates_topic"]), self.on_estimate, qos)
        node.create_subscription(JobReport, resolve(names["reports_topic"]), self.on_report, qos)
        node.create_subscription(BudgetedQuery.Impl.FeedbackMessage,
                                 f"{resolve(names['action_name'])}/_action/feedback", self.on_feedback,
                                 QoSProfile(depth=1000))

    def job(self, goal_id) -> dict:
        k = self._key(goal_id)
        if k not in self.jobs:
            self.jobs[k] = {"id": self._short(goal_id), "state": "accepted", "budget": float("nan"),
                            "predicted": float("nan"), "elapsed": 0.0, "tokens": 0, "alpha": float("nan"), "note": ""}
            self.order.append(k)
            self.order[:] = self.order[-20:]
        return self.jobs[k]

    def on_estimate(self, m):
        seconds = self._seconds
        j = self.job(m.goal_id)
        j["budget"], j["predicted"], j["alpha"] = seconds(m.time_budget), seconds(m.predicted_total), m.eviction_ratio
        if m.tokens_generated == 0:
            j["note"] = f"estimate ({m.source})" + ("" if m.feasible else ": worst case over budget")
            self.line(j)

    def on_feedback(self, m):
        j = self.job(m.goal_id)
        fb = m.feedback
        if j["state"] in ("accepted", "queued"):
            j["state"] = "running"
        j["elapsed"], j["tokens"], j["alpha"] = self._seconds(fb.elapsed), fb.tokens_generated, fb.eviction_ratio

    def on_report(self, m):
        seconds = self._seconds
        j = self.job(m.goal_id)
        j["state"] = self._names.get(m.outcome, "?").lower()
        j["budget"], j["elapsed"], j["tokens"] = seconds(m.time_budget), seconds(m.measured_total), m.generated_tokens
        j["predicted"], j["alpha"] = seconds(m.predicted_total), m.eviction_ratio
        j["note"] = ("deadline met" if m.deadline_met else "deadline MISSED") + (f"; {m.message}" if m.message else "")
        self.line(j)

    @staticmethod
    def fmt(j) -> str:
        decode = max(j["elapsed"], 1e-9)
        rate = j["tokens"] / decode if j["tokens"] else 0.0
        return (f"{j['id']:8}  {j['state'][:10]:10} {j['budget']:7.3f} {j['predicted']:7.3f} {j['elapsed']:7.3f} "
                f"{j['tokens']:6d} {rate:6.1f} {j['alpha']:5.2f}  {j['note'][:70]}")

    def line(self, j):
        if self.plain:
            print(self.fmt(j), file=self.out, flush=True)

    def render(self):
        if self.plain:
            return
        lines = ["timebill_ros monitor (Ctrl-C to quit)   budget/predict/elapsed in seconds", self.COLUMNS]
        lines += [self.fmt(self.jobs[k]) for k in self.order]
        self.out.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")
        self.out.flush()


def cmd_monitor(args) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=[])
    node = rclpy.create_node("timebill_monitor")
    plain = args.plain or not sys.stdout.isatty()
    mon = Monitor(node, args.namespace, plain, _names(args))
    if plain:
        print(Monitor.COLUMNS, flush=True)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    end = time.monotonic() + args.duration if args.duration else math.inf
    last = 0.0
    try:
        while time.monotonic() < end and rclpy.ok():
            ex.spin_once(timeout_sec=0.1)
            if time.monotonic() - last > 0.5:
                last = time.monotonic()
                mon.render()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return EXIT_OK


# --- bringup / demo -------------------------------------------------------------------------------
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int):
    """A node's preexec_fn: the kernel sends it SIGTERM when bringup ends, however it ends (also
    SIGKILL, which bringup cannot catch). Made in the parent; the child (between fork and exec,
    where taking a lock another thread held at the fork could hang) only calls prctl."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def in_child():
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # bringup died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return in_child


class Bringup:
    """Both nodes as child processes, from the same YAML and arguments as the launch file.

    A node never outlives bringup: it gets SIGTERM from the kernel when bringup's process ends
    (Linux parent-death signal) and watches bringup's pid itself (``TIMEBILL_PARENT_PID``).
    """

    NODES = ("generation_node", "predictor_node")
    # Restarting a crashed node (``supervise``), as launch's respawn does: the delay doubles from
    # RESTART_DELAY up to RESTART_DELAY_MAX; a node that crashes RESTART_LIMIT times, each within
    # STABLE_AFTER seconds of its start, is given up on.
    RESTART_DELAY, RESTART_DELAY_MAX, RESTART_LIMIT, STABLE_AFTER = 1.0, 30.0, 5, 60.0

    def __init__(self, config=None, model=None, namespace="timebill", log_level="info", params=(),
                 predictor=True, log_path=None, echo=True):
        from timebill.config import default_config_path

        self.config = str(config or default_config_path() or "")
        if self.config and not pathlib.Path(self.config).is_file():
            raise FileNotFoundError(f"configuration file not found: {self.config}")
        self.model, self.namespace, self.log_level = model, namespace.strip("/"), log_level
        self.params = list(params)
        self.nodes = self.NODES if predictor else self.NODES[:1]
        self.log_path = log_path
        self.echo = echo            # copy the nodes' output to the terminal
        self.quiet_after_ready = False
        self.procs: dict[str, subprocess.Popen] = {}
        self.started: dict[str, float] = {}
        self.crashes: dict[str, int] = {}
        self.restarts: dict[str, int] = {}
        self._log = None

    def command(self, node: str) -> list[str]:
        cmd = [sys.executable, "-m", f"timebill_ros.{node}", "--ros-args", "-r", f"__ns:=/{self.namespace}",
               "--log-level", self.log_level]
        if self.config:
            cmd += ["--params-file", self.config]
        if self.model:
            cmd += ["-p", f"model:={self.model}"]
        for p in self.params:
            cmd += ["-p", p]
        return cmd

    def start(self):
        if self.log_path is not None:
            pathlib.Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "a")
        for name in self.nodes:
            self.start_node(name)

    def start_node(self, name: str):
        from .common import PARENT_ENV

        me = os.getpid()
        env = dict(os.environ, PYTHONUNBUFFERED="1", **{PARENT_ENV: str(me)})
        piped = self._log is not None
        # Own session: a terminal's Ctrl-C reaches only us, and we stop the nodes in order.
        p = subprocess.Popen(self.command(name), env=env, start_new_session=True,
                             stdout=subprocess.PIPE if piped else None,
                             stderr=subprocess.STDOUT if piped else None, text=True, bufsize=1,
                             preexec_fn=_die_with_parent(me))
        self.procs[name] = p
        self.started[name] = time.monotonic()
        if piped:
            threading.Thread(target=self._pump, args=(name, p), daemon=True).start()

    def _pump(self, name, p):
        for line in p.stdout:
            self._log.write(f"[{name}] {line}")
            self._log.flush()
            loud = any(w in line for w in ("WARN", "ERROR", "FATAL", "Traceback"))
            if self.echo and (not self.quiet_after_ready or loud):
                sys.stderr.write(f"  [{name}] {line}")
                sys.stderr.flush()

    def dead(self) -> list[str]:
        return [f"{n} (exit code {p.returncode})" for n, p in self.procs.items() if p.poll() is not None]

    def supervise(self, stop: threading.Event, say=None) -> bool:
        """Restart crashed nodes until ``stop`` is set; False when a node crashed too often."""
        say = say or (lambda msg: print(f"[bringup] {msg}", file=sys.stderr, flush=True))
        due: dict[str, float] = {}  # node -> when to restart it
        while not stop.wait(0.2):
            now = time.monotonic()
            for name, p in self.procs.items():
                if name in due or p.poll() is None:
                    continue
                if now - self.started[name] >= self.STABLE_AFTER:
                    self.crashes[name] = 0  # it ran long enough: a new failure, not the same one
                self.crashes[name] = self.crashes.get(name, 0) + 1
                n = self.crashes[name]
                if n > self.RESTART_LIMIT:
                    say(f"{name} ended (exit code {p.returncode}) {n} times in a row, each within "
                        f"{self.STABLE_AFTER:.0f} s of its start: giving up; stopping the others")
                    return False
                delay = min(self.RESTART_DELAY * 2 ** (n - 1), self.RESTART_DELAY_MAX)
                say(f"{name} ended (exit code {p.returncode}); restarting it in {delay:.0f} s "
                    f"(restart {n} of at most {self.RESTART_LIMIT} in a row)")
                due[name] = now + delay
            for name, when in list(due.items()):
                if now >= when:
                    del due[name]
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    self.start_node(name)
                    say(f"{name} restarted (pid {self.procs[name].pid})")
        return True

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGINT (as Ctrl-C would), then SIGKILL after ``timeout``. True when all ended on SIGINT."""
        clean = True
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        end = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                clean = False
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)
        if self._log:
            time.sleep(0.1)  # let the pumps write the last lines
            self._log.close()
        return clean


def _bringup_from_args(args, log_path=None, echo=True) -> Bringup:
    return Bringup(config=args.config, model=args.model, namespace=args.namespace, log_level=args.log_level,
                   params=args.param or [], predictor=not args.no_predictor, log_path=log_path, echo=echo)


def _stop_on_signals(stop: threading.Event):
    """SIGTERM (systemd, docker stop) and SIGHUP (the terminal closed) stop bringup as Ctrl-C does."""
    def on_signal(signum, frame):
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)


def cmd_bringup(args) -> int:
    if args.demo is not None:
        return run_demo(args, args.demo)
    b = _bringup_from_args(args)
    print(f"starting {', '.join(b.nodes)} in /{b.namespace} (config {b.config or 'built-in defaults'}); "
          f"Ctrl-C stops them", file=sys.stderr)
    stop = threading.Event()
    _stop_on_signals(stop)
    b.start()
    code = EXIT_OK if b.supervise(stop) else EXIT_GOAL_FAILED
    clean = b.stop()
    print("nodes stopped" + ("" if clean else " (some had to be killed)"), file=sys.stderr)
    return code


def run_demo(args, prompt: str) -> int:
    """Bring the system up, ask one budgeted question, stream the answer, shut everything down."""
    from .client import TimeBillClient

    ros_home = pathlib.Path(os.environ.get("ROS_HOME") or pathlib.Path.home() / ".ros")
    log_path = ros_home / "log" / f"timebill_demo-{time.strftime('%Y%m%d-%H%M%S')}.log"
    b = _bringup_from_args(args, log_path=log_path, echo=True)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):  # as Ctrl-C: stop the nodes, then exit
        signal.signal(sig, interrupt)
    print(f"[demo] starting the nodes on model '{args.model or 'from ' + (b.config or 'defaults')}' "
          f"(node output: {log_path})", file=sys.stderr)
    print("[demo] the first run converts the embedded model and profiles this machine (a minute or two)",
          file=sys.stderr)
    b.start()
    code = EXIT_NO_SYSTEM
    client = None
    try:
        client = TimeBillClient(namespace=b.namespace, node_name="timebill_demo")
        start = time.monotonic()
        end = start + args.startup_timeout
        ready = False
        beat = start
        while time.monotonic() < end and not b.dead():
            if client.wait_until_ready(timeout=0.5, estimator="predictor_node" in b.nodes):
                ready = True
                break
            if time.monotonic() - beat >= 20.0:
                beat = time.monotonic()
                print(f"[demo] still starting ({beat - start:.0f} s)", file=sys.stderr, flush=True)
        if not ready:
            why = f"ended: {', '.join(b.dead())}" if b.dead() else f"not ready within {args.startup_timeout:.0f} s"
            print(f"[demo] the nodes {why}; see {log_path}", file=sys.stderr)
            return code
        b.quiet_after_ready = True
        print(f"[demo] ready. Question (budget {args.budget:.2f} s, policy {args.policy}): {prompt}\n",
              file=sys.stderr, flush=True)
        args.prompt = prompt
        code = run_query(client, args)
    except KeyboardInterrupt:
        print("\n[demo] interrupted", file=sys.stderr)
        code = EXIT_GOAL_FAILED
    finally:
        if client is not None:
            client.close()
        clean = b.stop()
        print(f"[demo] nodes stopped {'cleanly' if clean else '(some had to be killed)'}", file=sys.stderr)
    return code


def cmd_demo(args) -> int:
    return run_demo(args, args.prompt or DEFAULT_PROMPT)


def _add_bringup_args(p):
    p.add_argument("--model", default=None, help="model parameter: embedded, an HF folder or a .gguf file")
    _add_ns(p)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warn", "error", "fatal"])
    p.add_argument("--param", "-p", action="append", metavar="NAME:=VALUE", help="a node parameter (repeatable)")
    p.add_argument("--no-predictor", action="store_true", help="start only the generation node")
    p.add_argument("--startup-timeout", type=float, default=900.0, help="seconds to wait for the nodes (demo)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="timebill_ros", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("query", help="send a budgeted query, stream tokens, print the result")
    _add_goal_args(p)
    _add_ns(p)
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the action server")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("estimate", help="ask the predictor how long a query would take (nothing is generated)")
    _add_goal_args(p)
    _add_ns(p)
    p.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the service")
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("monitor", help="live terminal view of jobs")
    _add_ns(p)
    p.add_argument("--plain", action="store_true", help="one line per event instead of a redrawn table")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser("bringup", help="start both nodes from the YAML (like the launch file)")
    _add_bringup_args(p)
    p.add_argument("--demo", metavar="PROMPT", default=None,
                   help="bring up, ask PROMPT once (see --budget/--policy), stream the answer, shut down")
    _add_goal_args(p, prompt_required=False)
    p.set_defaults(func=cmd_bringup)

    p = sub.add_parser("demo", help="bring up on the embedded model, ask one budgeted question, shut down")
    p.add_argument("prompt", nargs="?", default=None, help=f"the question (default: {DEFAULT_PROMPT!r})")
    _add_goal_args(p, prompt_required=False)
    _add_bringup_args(p)
    # Budget: long enough for a complete short answer from the embedded model on a small CPU.
    # Tokens: a two-sentence answer fits in 64 tokens; with the node default (256) and no trained length
    # predictor the worst case cannot fit 8 s on 2 CPU cores and the planner evicts 95 % of the prompt.
    p.set_defaults(func=cmd_demo, budget=8.0, max_new_tokens=64)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except FileNotFoundError as exc:
        print(f"timebill_ros: {exc}", file=sys.stderr)
        return EXIT_NO_SYSTEM


if __name__ == "__main__":
    sys.exit(main())
