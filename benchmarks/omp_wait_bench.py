"""Torch prefill and llama.cpp decoding in one process, per OpenMP wait policy (prints; not a test).

Both torch and llama.cpp parallelise with OpenMP (one libgomp in the process). Runs the same
loop (a 300-token torch prefill, 10 llama.cpp decoding steps, the prefill again) in a fresh
process under each OMP_WAIT_POLICY (unset, ACTIVE, PASSIVE), since the policy is read when
libgomp loads, and how much CPU the process burns in 2 idle seconds afterwards (spinning
threads). ``timebill`` leaves the policy to the user (timebill/__init__.py says why); with the
policy unset it bounds the spin (GOMP_SPINCOUNT 30,000), so the "unset" row is timebill's default.

With ``--spin``, the same question for how long idle workers spin (``GOMP_SPINCOUNT``, also read
when libgomp loads): in a fresh process per value, the engine of the default configuration
answers the short prompt of served_vs_bare_bench.py (128 tokens, no eviction) --repeats times; per
value, the median decoding step and the CPU milliseconds the process's other threads (the OpenMP
workers) burn in the 30 ms after each job has returned, while its caller would be sending the
result.

  python benchmarks/omp_wait_bench.py [--threads 2]
  python benchmarks/omp_wait_bench.py --spin [--repeats 5] [--values 300000,30000] [--rounds 2] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
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

SPIN_CHILD = r"""
import os, resource, statistics, sys, time
sys.path.insert(0, sys.argv[2])
import served_vs_bare_bench as svb
engine = svb.bare_engine()
svb.bare_once(engine, svb.SHORT)  # warm
steps, burnt = [], []
for _ in range(int(sys.argv[1])):
    steps.append(svb.bare_once(engine, svb.SHORT)["step"])
    cpu0, own0 = resource.getrusage(resource.RUSAGE_SELF), time.thread_time()
    time.sleep(0.03)
    cpu1, own1 = resource.getrusage(resource.RUSAGE_SELF), time.thread_time()
    burnt.append(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime - (own1 - own0))
print(os.environ["GOMP_SPINCOUNT"], 1e3 * statistics.median(steps), 1e3 * statistics.median(burnt))
"""
# 300,000 is libgomp's own default; importing timebill sets 30,000 where the user set nothing
# (timebill/__init__.py), so every row names its value.
SPINCOUNTS = ("300000", "100000", "30000", "10000", "1000")


def spin_sweep(repeats: int, out: str | None, values=SPINCOUNTS, rounds: int = 2) -> None:
    """Part 2 (``--spin``): each GOMP_SPINCOUNT value in a fresh process, in ``rounds`` rounds so
    that a drift of the machine's speed shows as a difference between the rounds."""
    print("| round | GOMP_SPINCOUNT | median decoding step (ms) | CPU burnt in the 30 ms after a job (ms) |\n"
          "|---|---|---|---|", flush=True)
    rows = []
    for round_ in range(1, rounds + 1):
        for count in values:
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            env["GOMP_SPINCOUNT"] = count
            line = subprocess.run([sys.executable, "-c", SPIN_CHILD, str(repeats), os.path.dirname(os.path.abspath(__file__))],
                                  env=env, check=True, stderr=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, text=True).stdout.split()
            rows.append({"round": round_, "spincount": line[0], "step_ms": float(line[1]), "burnt_ms": float(line[2])})
            print(f"| {round_} | {line[0]} | {float(line[1]):.2f} | {float(line[2]):.1f} |", flush=True)
    for count in values:
        steps = [r["step_ms"] for r in rows if r["spincount"] == count]
        print(f"GOMP_SPINCOUNT={count}: median step over the rounds {statistics.median(steps):.2f} ms", flush=True)
    if out:
        with open(out, "w") as f:
            json.dump({"command": "python benchmarks/omp_wait_bench.py " + " ".join(sys.argv[1:]), "repeats": repeats,
                       "rows": rows}, f, indent=1)
        print(f"wrote {out}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spin", action="store_true", help="sweep GOMP_SPINCOUNT instead (see above)")
    ap.add_argument("--repeats", type=int, default=5, help="jobs per value with --spin")
    ap.add_argument("--out", default=None, help="with --spin: write the rows as JSON here")
    ap.add_argument("--values", default=",".join(SPINCOUNTS), help="with --spin: the GOMP_SPINCOUNT values")
    ap.add_argument("--rounds", type=int, default=2, help="with --spin: rounds over the values")
    args = ap.parse_args(argv)
    if args.spin:
        spin_sweep(args.repeats, args.out, args.values.split(","), args.rounds)
        return 0
    for policy in ("", "ACTIVE", "PASSIVE"):  # "": unset, timebill's default
        print(f"OMP_WAIT_POLICY={policy or '(unset)'}, {args.threads} threads", flush=True)
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        if policy:
            env["OMP_WAIT_POLICY"] = policy
        subprocess.run([sys.executable, "-c", CHILD, str(args.threads)], env=env, check=True, stderr=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
