"""TimeBill core: time-budgeted LLM inference with no ROS dependency."""
import os

# No OpenMP wait policy is set here on purpose: torch and llama.cpp share libgomp, and its default
# (spin briefly, then sleep) is the fastest that does not burn idle cores. Measured on a quiet
# 2-core machine (benchmarks/omp_wait_bench.py): llama.cpp steps 7.3 ms with the default, 22.9 ms
# with OMP_WAIT_POLICY=PASSIVE, and ACTIVE kept both cores busy while idle.
#
# How long "briefly" lasts is bounded, though. libgomp's default of 300,000 spins kept a worker
# busy for ~9 ms of CPU after every job here (`omp_wait_bench.py --spin`): a core taken from the
# node and the client exactly while a goal's result is sent, and from the next job's start. 30,000
# spins still outlast the pause between two decoding steps (the steps were no slower) and burn
# nothing measurable once a job ends. libgomp reads the value when it loads, so this works for
# whoever imports timebill before torch or llama_cpp (the nodes and the command line do); a value
# or a wait policy the user set wins.
if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "30000"
