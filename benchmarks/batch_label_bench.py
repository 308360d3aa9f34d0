"""Does decoding several answers per llama.cpp batch make labelling cheaper here? (issue 17)

`BatchLabeller` (timebill/rlp/batch_label.py) on the first 48 prompts of the `asks` source (needs
`scripts/setup.sh --eval`), cap 384, at 1 / 8 / 16 slots: generated tokens per second. The
labeller's context has no AMX weight buffers (they crash llama.cpp on batches; see
LlamaCppModel), so compare its 1-slot figure with the serving path's ~100 tokens/s too.

    source scripts/env.sh
    python benchmarks/batch_label_bench.py        # ~5 minutes
"""
from __future__ import annotations

import time

from timebill import compute_thread
from timebill.config import load_config
from timebill.rlp.batch_label import BatchLabeller
from timebill.rlp.sources import load_source
from timebill.runtime import load_configured_model


def run(loaded, items, slots: int):
    lab = BatchLabeller(loaded.gguf, loaded.eos_token_ids, slots=slots, cap=384, max_prompt_tokens=256, threads=2)
    out = {}
    t0 = time.monotonic()
    lab.lengths(items, lambda key, n, stop, seconds: out.__setitem__(key, n))
    dt = time.monotonic() - t0
    lab.close()
    return sum(out.values()), dt


def main() -> int:
    loaded = load_configured_model(load_config())
    items = [(p.id, loaded.encode_chat(p.text, p.system)) for p in load_source("asks", loaded.tokenizer, limit=48)]
    for slots in (1, 8, 16):
        tokens, dt = compute_thread.run(run, loaded, items, slots)
        print(f"{slots:2d} slots: {tokens} tokens in {dt:.1f} s = {tokens / dt:.0f} tokens/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
