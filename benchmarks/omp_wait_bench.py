"""Torch prefill and llama.cpp decoding in one process, per OpenMP wait policy (prints; not a test).

Both torch and llama.cpp parallelise with OpenMP (one libgomp in the process). Runs the same
loop (a 300-token torch prefill, 10 llama.cpp decoding steps, the prefill again) in a fresh
process under each OMP_WAIT_POLICY (unset, ACTIVE, PASSIVE), since the policy is read when
libgomp loads, and how much CPU the process burns in 2 idle seconds afterwards (spinning
threads). ``timebill`` leaves the policy to the user (timebill/__init__.py says why).

  python benchmarks/omp_wait_bench.py [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = r"""
import sys, time
import numpy as np
from timebill.backends import make_backend
from timebill.models import load_model
threads = int(sys.argv[1])
m = load_model("embedded", threads=threads)
fast, ref = make_backend("llamacpp", m, threads=threads), make_backend("torch", m)
ids = m.tokenizer("The robot left the dock. " * 60, add_special_tokens=False)["input_ids"][:300]
for rep in range(3):
    t0 = time.perf_counter(); ref.prefill(ids); t1 = time.perf_counter()
    fast.llama.prefill(ids[:10])
    steps = []
    for i in range(10):
        a = time.perf_counter(); fast.llama.decode_one(5, 10 + i); steps.append(time.perf_counter() - a)
    print(f"  torch prefill 300 tok {t1 - t0:6.3f} s | llama.cpp step median {1e3 * np.median(steps):7.1f} ms", flush=True)
import resource
before = resource.getrusage(resource.RUSAGE_SELF)
time.sleep(2.0)
after = resource.getrusage(resource.RUSAGE_SELF)
idle = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
print(f"  CPU seconds used in 2 s idle afterwards: {idle:.2f}", flush=True)
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    for policy in ("", "ACTIVE", "PASSIVE"):  # "": unset, libgomp's default
        print(f"OMP_WAIT_POLICY={policy or '(unset)'}, {args.threads} threads", flush=True)
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if policy:
            env["OMP_WAIT_POLICY"] = policy
        subprocess.run([sys.executable, "-c", CHILD, str(args.threads)], env=env, check=True, stderr=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
