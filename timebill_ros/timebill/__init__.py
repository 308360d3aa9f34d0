"""TimeBill core: time-budgeted LLM inference with no ROS dependency."""
