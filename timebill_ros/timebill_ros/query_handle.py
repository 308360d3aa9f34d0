"""One budgeted query as a client holds it (``TimeBillClient.query`` returns one): its streamed
text, feedback, status and result, and the goal status names."""
from __future__ import annotations

import concurrent.futures
import threading

from action_msgs.msg import GoalStatus

from .liveness import GoalLost

# STATUS_SUCCEEDED -> "SUCCEEDED", from the message's own constants.
GOAL_STATUS_NAMES = {getattr(GoalStatus, name): name.removeprefix("STATUS_")
                     for name in dir(GoalStatus) if name.startswith("STATUS_")}


def _settle(future, value) -> None:
    """Complete ``future`` unless it already is (a goal failed as lost whose answer came after all)."""
    try:
        future.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass


class QueryRejected(RuntimeError):
    """The server refused the goal: its queue is full, it is shutting down, or the goal is invalid
    in a way judged before queueing (empty prompt, bad budget or policy, a prompt longer than the
    context can hold). The generation node logs the reason and counts it in /diagnostics."""


class QueryHandle:
    """One budgeted query: its streamed text, feedback, status and result."""

    def __init__(self, client: "TimeBillClient", on_token=None, on_feedback=None):
        self._client = client
        self._on_token = on_token
        self._on_feedback = on_feedback
        self._lock = threading.Lock()
        self._streamed = threading.Condition(self._lock)  # notified as feedback brings tokens
        self._chunks: list[str] = []
        self._tokens = 0
        self.goal_handle = None
        self._uuid = None
        self.feedback = None          # the latest BudgetedQuery.Feedback
        self.status = GoalStatus.STATUS_UNKNOWN   # a GoalStatus code
        self.accepted = concurrent.futures.Future()   # -> True, or raises QueryRejected
        self.future = concurrent.futures.Future()     # -> BudgetedQuery.Result

    # --- what a planner reads -----------------------------------------------------------------------
    @property
    def text(self) -> str:
        """The answer so far (the streamed feedback text)."""
        with self._lock:
            return "".join(self._chunks)

    @property
    def tokens_generated(self) -> int:
        return self._tokens

    @property
    def goal_id(self):
        return self._uuid

    @property
    def status_name(self) -> str:
        return GOAL_STATUS_NAMES.get(self.status, str(self.status))

    def done(self) -> bool:
        return self.future.done()

    def result(self, timeout: float | None = None):
        """Block until the result (a BudgetedQuery.Result); raises TimeoutError."""
        try:
            return self.future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"no result within {timeout} s") from None

    def wait_accepted(self, timeout: float | None = None) -> bool:
        try:
            return self.accepted.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"the goal was not answered within {timeout} s") from None

    def cancel(self, timeout: float = 5.0) -> bool:
        """Ask the server to cancel; True when it accepted. The result then says CANCELED with the partial text."""
        self.wait_accepted(timeout)
        done = concurrent.futures.Future()
        fut = self.goal_handle.cancel_goal_async()
        fut.add_done_callback(lambda f: done.set_result(f.result()))
        try:
            response = done.result(timeout)
        except concurrent.futures.TimeoutError:
            return False
        return bool(response is not None and len(response.goals_canceling) > 0)

    # --- called on the spin thread -----------------------------------------------------------------
    def _feedback(self, msg):
        fb = msg.feedback
        with self._lock:
            self._chunks.append(fb.text)
            self._tokens = fb.tokens_generated
            self.feedback = fb
            self._streamed.notify_all()
        # A caller's callback that raises must not end the spin thread (every later query would
        # hang): log it with its traceback and go on.
        if self._on_token is not None and fb.text:
            self._call(self._on_token, fb.text, fb)
        if self._on_feedback is not None:
            self._call(self._on_feedback, fb)

    def _call(self, callback, *args):
        try:
            callback(*args)
        except Exception:
            import traceback

            self._client.node.get_logger().error(
                f"{getattr(callback, '__name__', 'callback')} raised (the query goes on):\n{traceback.format_exc()}")

    def _lost(self, why: str) -> None:
        """The node that had this goal is gone: fail it (both futures), unless it was answered."""
        exc = GoalLost(why)
        for f in (self.accepted, self.future):
            try:
                f.set_exception(exc)
            except concurrent.futures.InvalidStateError:  # answered meanwhile
                pass
        self._client._forget(self)

    def _goal_response(self, fut):
        try:
            handle = fut.result()
        except Exception as exc:
            self.accepted.set_exception(exc)
            self.future.set_exception(exc)
            self._client._forget(self)
            return
        self.goal_handle = handle
        if not handle.accepted:
            exc = QueryRejected("the generation node rejected the goal (queue full, shutting down, or an invalid "
                                "goal; its log and /diagnostics 'last_rejection' say which)")
            self.accepted.set_exception(exc)
            self.future.set_exception(exc)
            self._client._forget(self)
            return
        _settle(self.accepted, True)
        handle.get_result_async().add_done_callback(self._result_response)

    def _result_response(self, fut):
        try:
            wrapped = fut.result()
        except Exception as exc:
            self.future.set_exception(exc)
            return
        self.status = wrapped.status
        result = wrapped.result

        def finish():
            # Feedback and result travel on different channels: give the last feedback time to land,
            # so `text` is the whole stream when the future completes (up to 5 s: on a loaded
            # machine a client can be seconds behind a fast model). Not on the spin thread, which
            # is the one that delivers that feedback. Woken by that feedback, not polled.
            with self._lock:
                self._streamed.wait_for(lambda: self._tokens >= result.generated_tokens, timeout=5.0)
            _settle(self.future, result)
            self._client._forget(self)

        threading.Thread(target=finish, daemon=True).start()
