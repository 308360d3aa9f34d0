"""Why model work stays on one thread: the decoding step by the thread that runs it (one process).

The llamacpp backend (torch prefill, llama.cpp decoding) on the embedded model; each row prefills
a short prompt and times 64 decoding steps (median), called:
  1. on the compute thread (`timebill/compute_thread.py`: where the engine runs everything);
  2. on another long-lived thread, calling the backend directly (as the generation node's executor
     threads did);
  3. on the compute thread again, that other thread (and its OpenMP team) still alive.

    source scripts/env.sh
    python benchmarks/thread_speed_bench.py
    OMP_WAIT_POLICY=PASSIVE python benchmarks/thread_speed_bench.py   # the environment cannot fix it
    OMP_WAIT_POLICY=ACTIVE python benchmarks/thread_speed_bench.py
    python benchmarks/thread_speed_bench.py --no-extra-buffers   # llama.cpp without its AMX/repacked weights
"""
from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from timebill import compute_thread
from timebill.backends import make_backend
from timebill.config import load_config
from timebill.runtime import configured_threads, load_configured_model

PROMPT = "Write a long story about a robot that cleans a warehouse at night."


def steps_ms(backend, ids, n: int = 64) -> float:
    backend.prefill(ids)
    times, token, pos = [], ids[-1], len(ids)
    for _ in range(n):
        t0 = time.perf_counter()
        logits = backend.decode_one(token, pos)
        times.append(time.perf_counter() - t0)
        token, pos = int(logits.numpy().argmax()), pos + 1
    return 1e3 * statistics.median(times)


def main() -> int:
    import sys

    cfg = load_config()
    loaded = load_configured_model(cfg)
    backend = compute_thread.run(make_backend, cfg.get("backend"), loaded, threads=configured_threads(cfg))
    if "--no-extra-buffers" in sys.argv[1:]:
        from timebill.backends.llamacpp import LlamaCppModel

        backend.llama.close()
        backend.llama = compute_thread.run(LlamaCppModel, backend.gguf, n_ctx=loaded.max_context,
                                           threads=configured_threads(cfg), extra_buffers=False)
        print("llama.cpp without extra weight buffers (use_extra_bufts = false)")
    ids = loaded.encode_chat(PROMPT)
    compute_thread.run(steps_ms, backend, ids)  # warm-up
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; median ms per decoding step, "
          f"{configured_threads(cfg)} threads", flush=True)
    rows = [("compute thread", compute_thread.run(steps_ms, backend, ids)),
            ("compute thread", compute_thread.run(steps_ms, backend, ids))]
    other = ThreadPoolExecutor(1)  # a worker that stays, like an executor's
    rows.append(("a second thread", other.submit(steps_ms, backend, ids).result()))
    rows.append(("compute thread, the second alive", compute_thread.run(steps_ms, backend, ids)))
    rows.append(("a second thread again", other.submit(steps_ms, backend, ids).result()))
    for name, ms in rows:
        print(f"{name:34s} {ms:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
