"""All model work of a process on one thread: loading, profiling, prediction, prefill, decoding.

Why (measured, ``benchmarks/thread_speed_bench.py``, docs/BENCHMARKS.md): torch and llama.cpp
share one OpenMP runtime (libgomp). Every thread that runs an OpenMP region gets a team of worker
threads of its own that stays for the thread's lifetime. Once a process holds more such workers
than there are cores, libgomp stops letting idle workers spin and puts them to sleep between
regions, and a llama.cpp decoding step (a region per token) pays a wake-up each time: on this
2-core machine a step took 8.6 ms when one thread ran model code and ~13 ms once a second one had
(a ROS node runs goals on executor threads, so every goal could bring a new team). Running every
call on one long-lived thread keeps one team. ``OMP_WAIT_POLICY`` cannot fix it: PASSIVE makes
every step pay the wake-up (~15 ms), ACTIVE lets an idle team spin on the cores the decoder needs
(31 ms).

A call made on the compute thread itself runs inline, so wrapped functions may call each other.
Callers that hold a lock the compute thread may also want must take it *before* handing work
over (see ``BudgetedEngine.generate``), never inside the handed-over function.
"""
from __future__ import annotations

import functools
import queue
import threading
from concurrent.futures import Future

_lock = threading.Lock()
_thread: threading.Thread | None = None
_jobs: "queue.SimpleQueue[tuple]" = queue.SimpleQueue()


def _loop() -> None:
    while True:
        fut, fn, args, kw = _jobs.get()
        if not fut.set_running_or_notify_cancel():
            continue
        try:
            fut.set_result(fn(*args, **kw))
        except BaseException as exc:  # handed to the caller, whatever it is
            fut.set_exception(exc)
        del fut, fn, args, kw  # drop references now: a job's result must not live until the next job


def on_compute_thread() -> bool:
    return threading.current_thread() is _thread


def run(fn, *args, **kw):
    """``fn(*args, **kw)`` on the compute thread; its result, or its exception re-raised here."""
    global _thread
    if threading.current_thread() is _thread:
        return fn(*args, **kw)
    with _lock:
        if _thread is None:
            # A daemon: a process that ends while a job runs (Ctrl-C in a CLI) must not wait for it.
            _thread = threading.Thread(target=_loop, name="timebill-compute", daemon=True)
            _thread.start()
    fut: Future = Future()
    _jobs.put((fut, fn, args, kw))
    return fut.result()


def compute(fn):
    """Decorator: the function always runs on the compute thread."""
    @functools.wraps(fn)
    def wrapper(*args, **kw):
        return run(fn, *args, **kw)

    return wrapper
