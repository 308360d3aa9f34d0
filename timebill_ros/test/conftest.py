"""Shared test fixtures: an isolated ROS 2 domain per test, and subprocesses torn down cleanly.

Every test that touches ROS gets its own ROS_DOMAIN_ID, localhost-only discovery and a ROS_HOME
inside the checkout, so parallel runs never see each other and logs stay out of ~/.ros.
"""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

TEST_DIR = pathlib.Path(__file__).resolve().parent
PKG_DIR = TEST_DIR.parent
REPO = PKG_DIR.parent
ROS_HOME = REPO / ".ros" / "test"

_next_domain = [(os.getpid() % 50) * 2 + 1]


def _have_rclpy() -> bool:
    try:
        import rclpy  # noqa: F401
        from timebill_msgs.msg import CompletionEstimate  # noqa: F401
    except Exception:
        return False
    return True


HAVE_ROS = _have_rclpy()
needs_ros = pytest.mark.skipif(not HAVE_ROS, reason="rclpy / timebill_msgs not importable: source scripts/env.sh after scripts/setup.sh")


@pytest.fixture
def ros_env(monkeypatch):
    """An environment (also applied to this process) with a fresh ROS domain, localhost only."""
    domain = _next_domain[0]
    _next_domain[0] = domain % 100 + 1  # stay within 1..101 (valid on every RMW)
    ROS_HOME.mkdir(parents=True, exist_ok=True)
    values = {
        "ROS_DOMAIN_ID": str(domain),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_HOME": str(ROS_HOME),
        "ROS_LOG_DIR": str(ROS_HOME / "log"),
        "PYTHONUNBUFFERED": "1",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return dict(os.environ)


@pytest.fixture
def rclpy_context(ros_env):
    """An rclpy context in this process, on the test's domain; shut down afterwards."""
    import rclpy

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    yield ctx
    ctx.try_shutdown()


class Processes:
    """Subprocesses started in their own session; SIGINT at teardown, then SIGKILL after a timeout."""

    def __init__(self, env):
        self.env = env
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], log_name: str = "proc", **kw) -> subprocess.Popen:
        log = open(ROS_HOME / f"{log_name}-{self.env['ROS_DOMAIN_ID']}.log", "w")
        p = subprocess.Popen(
            [sys.executable, *args] if args[0].endswith(".py") or args[0] == "-m" else args,
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kw,
        )
        p.log_path = log.name  # type: ignore[attr-defined]
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 10.0) -> int:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        return p.returncode

    def stop_all(self):
        for p in self.procs:
            self.stop(p)


@pytest.fixture
def processes(ros_env):
    procs = Processes(ros_env)
    yield procs
    procs.stop_all()


def processes_with(marker: str) -> dict[int, list[str]]:
    """Running processes with ``marker`` as one of their arguments: pid -> argv. Read from /proc,
    because `ps` cuts command lines at its output width (the marker, often last, was cut off)."""
    found = {}
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = [a.decode(errors="replace") for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:  # ended meanwhile
            continue
        if any(marker in a for a in argv):
            found[int(proc.name)] = argv
    return found


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --- the TimeBill core on the tiny test model ----------------------------------------------------

@pytest.fixture(scope="session")
def tiny():
    """The random 2-layer test fixture model (timebill.testing): fast, says nothing about quality."""
    from timebill.testing import tiny_test_model

    return tiny_test_model()


@pytest.fixture(scope="session")
def tiny_time_model(tiny):
    """A timing model profiled on this machine for the tiny model (a second or so)."""
    from timebill.profiler import profile

    return profile(tiny, lengths=(16, 32, 64, 128, 256, 384), repeats=2, decode_steps=4, progress=False)


def slow_time_model(step: float = 0.05, prefill: float = 0.01):
    """A timing model that claims every decoding step takes ``step`` seconds: with the tiny model
    (about a millisecond a step) it makes deadline decisions deterministic and visible."""
    from timebill.time_model import TimeModel

    return TimeModel(a=0.0, b=0.0, c=prefill, p=0.0, q=step, model="tiny-test-model")


# --- the real embedded model and the fast path (backend llamacpp) --------------------------------

@pytest.fixture(scope="session")
def embedded():
    """SmolLM2-135M-Instruct, converted once into the user cache (~20 s the first time). One torch
    thread: the setting is process-wide, and the tiny model's timing tests need one (testing.py)."""
    from timebill.models import EMBEDDED, load_model

    return load_model(EMBEDDED, threads=1)


@pytest.fixture(scope="session")
def fast_backend(embedded):
    """The llamacpp backend on the embedded model (one llama.cpp context, shared: one job at a time)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: scripts/setup.sh builds it")
    from timebill.backends import make_backend

    # One thread, like the tiny model: on a busy machine a forward pass waiting for a descheduled
    # second thread takes far longer (steps of seconds were seen here; benchmarks/omp_wait_bench.py).
    return make_backend("llamacpp", embedded, threads=1)


@pytest.fixture(scope="session")
def embedded_fast_time_model(embedded, fast_backend):
    """A timing model of the fast path on this machine, profiled on short prompts (a few seconds)."""
    from timebill.profiler import profile

    return profile(embedded, lengths=(32, 64, 128, 256, 384), repeats=2, decode_steps=6, progress=False, backend=fast_backend)
