"""The lifecycle's way down, the same for both nodes: deactivate and shutdown stop serving, cleanup
drops what configure loaded. Each node says how: ``shutdown``, ``drop_model`` and
``_publish_diagnostics`` are its own."""
from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn


class ManagedNode(LifecycleNode):
    load_state = "unconfigured"  # unconfigured | loading | ready | failed

    def on_deactivate(self, state):
        self.shutdown()
        return super().on_deactivate(state)

    def on_cleanup(self, state):
        self.drop_model()
        self.load_state = "unconfigured"
        self._publish_diagnostics()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state):
        self.shutdown()
        return TransitionCallbackReturn.SUCCESS
