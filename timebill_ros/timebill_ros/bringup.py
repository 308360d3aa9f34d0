"""`timebill_ros bringup`: both nodes as child processes, for machines without `ros2 launch`.

The nodes run from the same YAML and with the same arguments as launch/timebill.launch.py, and a
node that ends is started again by the same rule (timebill_ros/respawn.py).
"""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

from .exit_codes import EXIT_GOAL_FAILED, EXIT_OK
from .respawn import RESPAWN, RespawnRule

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

    def __init__(self, config=None, model=None, namespace="timebill", log_level="info", params=(),
                 predictor=True, log_path=None, echo=True, respawn: RespawnRule = RESPAWN):
        """``respawn``: when ``supervise`` restarts a node that ended (the launch file's rule)."""
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
        self.respawn = respawn
        self.procs: dict[str, subprocess.Popen] = {}
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
        """Restart nodes that end, by ``self.respawn``, until ``stop`` is set; False when a node ended
        after the last restart the rule gives it (bringup then stops the others: a supervisor above
        it, systemd say, sees the failure and can start the whole system again)."""
        say = say or (lambda msg: print(f"[bringup] {msg}", file=sys.stderr, flush=True))
        due: dict[str, float] = {}  # node -> when to restart it
        while not stop.wait(0.2):
            now = time.monotonic()
            for name, p in self.procs.items():
                if name in due or p.poll() is None:
                    continue
                n = self.restarts.get(name, 0)
                delay = self.respawn.restart_delay(n)
                if delay is None:
                    say(f"{name} ended (exit code {p.returncode}) after {n} restarts, the most the respawn "
                        f"rule allows: giving up; stopping the others")
                    return False
                say(f"{name} ended (exit code {p.returncode}); restarting it in {delay:g} s "
                    f"(restart {n + 1} of at most {self.respawn.max_retries})")
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




def bringup_from_args(args, log_path=None, echo=True) -> Bringup:
    return Bringup(config=args.config, model=args.model, namespace=args.namespace, log_level=args.log_level,
                   params=args.param or [], predictor=not args.no_predictor, log_path=log_path, echo=echo)


def stop_on_signals(stop: threading.Event):
    """SIGTERM (systemd, docker stop) and SIGHUP (the terminal closed) stop bringup as Ctrl-C does."""
    def on_signal(signum, frame):
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)


def cmd_bringup(args) -> int:
    """Start the nodes, restart those that end, stop them all on Ctrl-C, SIGTERM or SIGHUP."""
    b = bringup_from_args(args)
    print(f"starting {', '.join(b.nodes)} in /{b.namespace} (config {b.config or 'built-in defaults'}); "
          f"Ctrl-C stops them", file=sys.stderr)
    stop = threading.Event()
    stop_on_signals(stop)
    b.start()
    code = EXIT_OK if b.supervise(stop) else EXIT_GOAL_FAILED
    clean = b.stop()
    print("nodes stopped" + ("" if clean else " (some had to be killed)"), file=sys.stderr)
    return code
