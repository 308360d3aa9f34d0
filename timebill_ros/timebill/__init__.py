"""TimeBill core: time-budgeted LLM inference with no ROS dependency."""
import os

# torch and llama.cpp both parallelise with OpenMP (one libgomp in the process). With libgomp's
# default wait policy, idle threads spin and starve the working ones as soon as anything else
# runs on a 2-core machine: measured here (benchmarks/omp_wait_bench.py, load ~3.5), a 300-token
# torch prefill took 9.1 s and llama.cpp decoding steps up to 3.5 s; with PASSIVE, 1.0 s and 20 ms.
# It must be set before torch loads libgomp, hence here; a value set by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
