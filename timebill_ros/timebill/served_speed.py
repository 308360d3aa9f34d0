"""The speed measured while serving, remembered across restarts.

A timing model is profiled with the machine otherwise idle. Served, the same model runs slower:
the action server, the predictor node and the client take their share of the CPU while it decodes
(on this 2-core machine, `timebill_ros bringup` took 1.36 s for its first 64-token goal against
0.57 s predicted; `benchmarks/served_speed_bench.py`). The online calibration corrects
that from the first job on, but it lived in memory, so every restart planned its first goals at
the idle speed. The generation node now writes the calibration's recent ratios next to the
timing model after each job, and both nodes start from them.

The ratios are relative to one profiled model: a file written against another (re-profiled,
another press or thread count) is ignored, and so is a damaged one; both are only a slower start.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile
import time

from .calibration import OnlineCalibration
from .time_model import TimeModel

SUFFIX = ".served.json"


def served_path(time_model_path: str | os.PathLike) -> pathlib.Path:
    """Where the served speed of the timing model at ``time_model_path`` is kept."""
    p = pathlib.Path(time_model_path)
    return p.with_name(p.name + SUFFIX)


def _identity(tm: TimeModel) -> dict:
    """What makes two timing models the same profile (the ratios only mean something against it)."""
    return {"a": tm.a, "b": tm.b, "c": tm.c, "p": tm.p, "q": tm.q, "r": tm.r, "s": tm.s, "model": tm.model,
            "machine": tm.machine, "date": tm.date, "threads": tm.threads}


def remember(path: str | os.PathLike, calibration: OnlineCalibration) -> None:
    """Write the calibration's recent ratios to ``path`` (atomically: a reader never sees half a file)."""
    path = pathlib.Path(path)
    text = json.dumps({"timing_model": _identity(calibration.base), **calibration.ratios()})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def recall(path: str | os.PathLike, calibration: OnlineCalibration) -> str:
    """Seed ``calibration`` from ``path`` when it was measured against the same timing model.
    Returns a line for the log saying what was done ("" when there is no file)."""
    path = pathlib.Path(path)
    if not path.is_file():
        return ""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("timing_model"), dict):
            raise ValueError("not a served-speed file")
        if data["timing_model"] != _identity(calibration.base):
            return f"served speed {path.name}: measured against another timing model, not used"
        calibration.seed(data["prefill"], data["decode"], data.get("prefill_tokens"), data.get("decode_total"),
                         data.get("prefill_tail"))  # older files lack the last three
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"served speed {path}: unreadable ({type(exc).__name__}: {exc}), not used; it is rewritten after the next job"
    jobs = len(calibration.ratios()["decode"])
    return (f"served speed: {jobs} recent jobs ran at {calibration.decode_scale:.2f}x the profiled decoding time "
            f"and {calibration.prefill_scale:.2f}x its prefill time; planning from there ({path.name})")


class Keeper:
    """Remembers the served speed after served jobs: at most every ``period`` seconds, since a
    write costs the goal whose result waits for it ~1-8 ms here, and the rest at ``flush`` (the
    node's shutdown). A file that cannot be written (e.g. a read-only folder) costs a slower start
    next time, not a goal: it is said once, through ``warn``."""

    def __init__(self, path: str | os.PathLike, calibration: OnlineCalibration, warn, period: float = 5.0):
        self.path, self.calibration, self.warn, self.period = pathlib.Path(path), calibration, warn, period
        self.warned = False
        self.written = -math.inf  # time.monotonic() of the last write
        self.dirty = False

    def keep(self) -> None:
        """A served job taught the calibration something: write it now, or at the next chance."""
        self.dirty = True
        if time.monotonic() - self.written >= self.period:
            self.flush()

    def flush(self) -> None:
        if not self.dirty:
            return
        self.dirty, self.written = False, time.monotonic()
        try:
            remember(self.path, self.calibration)
        except OSError as exc:
            if not self.warned:
                self.warned = True
                self.warn(f"cannot keep the served speed in {self.path} ({exc}); the next start plans its first "
                          f"goals at the profiled speed")
