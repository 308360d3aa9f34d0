"""A behaviour-tree condition that asks the robot's language model a yes/no question within the
time its tree can wait (py_trees, https://pypi.org/project/py-trees/).

The question goes out when the condition starts; each tick only looks whether the answer is in,
so the tree never blocks. The answer is exactly "yes" or "no" (an answer format: the goal's
`choices`), ready by the budget under Kill: SUCCESS for yes, FAILURE for no, and FAILURE when
no answer could be had in time (INFEASIBLE: not even one token fits; the result's message says why).

    python examples/yes_no_condition.py "Is the door open?" --budget 1.0   # with `timebill_ros bringup` running
"""
from __future__ import annotations

import py_trees

from timebill_ros.client import TimeBillClient


class AskYesNo(py_trees.behaviour.Behaviour):
    def __init__(self, name: str, client: TimeBillClient, question: str, budget: float):
        super().__init__(name)
        self.client, self.question, self.budget = client, question, budget
        self.query = None
        self.answer = ""   # "yes", "no", or "" (no answer in time)

    def initialise(self) -> None:
        self.query = self.client.query(self.question, self.budget, policy="kill", choices=["yes", "no"])

    def update(self) -> py_trees.common.Status:
        if not self.query.done():
            return py_trees.common.Status.RUNNING
        result = self.query.result(timeout=0)
        self.answer = result.text
        self.feedback_message = result.message or result.text
        return py_trees.common.Status.SUCCESS if result.text == "yes" else py_trees.common.Status.FAILURE

    def terminate(self, new_status: py_trees.common.Status) -> None:
        if new_status == py_trees.common.Status.INVALID and self.query is not None and not self.query.done():
            self.query.cancel()  # preempted by a higher-priority branch: stop the model at once


def main() -> int:
    import argparse
    import time

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("question")
    ap.add_argument("--budget", type=float, default=1.0)
    args = ap.parse_args()
    with TimeBillClient() as client:
        if not client.wait_until_ready(timeout=60):
            print("no generation node: start `timebill_ros bringup` first")
            return 2
        condition = AskYesNo("Door open?", client, args.question, args.budget)
        tree = py_trees.trees.BehaviourTree(condition)
        while True:
            tree.tick()
            if condition.status != py_trees.common.Status.RUNNING:
                break
            time.sleep(0.05)  # a 20 Hz tree
        print(f"{condition.name}: {condition.status.value} ({condition.feedback_message})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
