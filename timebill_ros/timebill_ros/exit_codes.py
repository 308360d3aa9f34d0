"""Exit codes of the `timebill_ros` commands, the same for all of them (scripts test for them)."""

EXIT_OK = 0
EXIT_GOAL_FAILED = 1   # the goal failed, was refused or lost; or bringup gave up on a node
EXIT_NO_SYSTEM = 2     # no node to talk to, or a file it needs is missing
