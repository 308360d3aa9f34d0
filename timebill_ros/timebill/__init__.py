"""TimeBill core: time-budgeted LLM inference with no ROS dependency."""
# No OpenMP wait policy is set here on purpose: torch and llama.cpp share libgomp, and its default
# (spin briefly, then sleep) is the fastest that does not burn idle cores. Measured on a quiet
# 2-core machine (benchmarks/omp_wait_bench.py): llama.cpp steps 7.3 ms with the default, 22.9 ms
# with OMP_WAIT_POLICY=PASSIVE, and ACTIVE kept both cores busy while idle.
