"""What a goal's end owes that its client does not wait for: its JobReport, its last marker, its log
line and the served-speed file. rclpy sends a goal's result only once the execute callback has
returned, so work done before that return is on the result's way: 1.4-1.7 ms a goal here for the
report, log line and served speed alone (benchmarks/node_cost_bench.py). ``AfterResult`` does it on
a thread of its own a few milliseconds later, once the result has left; ``drain`` at shutdown does
what is left, so no report is lost."""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable


class AfterResult:
    # Long enough for rclpy's executor to send the result the callback returned (2-3 ms from the
    # return to the client here), so that this work does not hold the GIL while it does.
    DELAY = 0.005

    def __init__(self, on_error: Callable[[str], None]):
        self._on_error = on_error
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="after-result", daemon=True)
        self._thread.start()

    def later(self, work: Callable[[], None]) -> None:
        """Do ``work`` once the result being returned now has had time to leave."""
        self._queue.put((time.monotonic() + self.DELAY, work))

    def drain(self, timeout: float = 3.0) -> bool:
        """Wait until everything handed to ``later`` so far is done (True), or ``timeout`` seconds."""
        done = threading.Event()
        self._queue.put((0.0, done.set))
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            due, work = self._queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                work()
            except Exception as exc:  # one goal's report is not worth the others'
                self._on_error(f"after a goal's result: {type(exc).__name__}: {exc}")
