"""A model of Qwen2.5-1.5B's shape on this machine: memory and speed of the default path against
llama.cpp alone on the same GGUF (prints a table; not a test).

Random weights (speed and memory do not depend on them): Qwen2 with hidden 1536, 28 layers,
12 heads / 2 KV heads, intermediate 8960, vocabulary 151,936, tied embeddings (1.54 B parameters),
saved by transformers and converted by llama.cpp's own converter to Q8_0 (the converter writes no
Q4_K; a Q4_K_M file would make llama.cpp's side smaller still). Each measurement runs in a fresh
process, so its peak RSS is its own:
- ``llama.cpp alone``: the GGUF in llama.cpp, its own prefill, then decoding;
- ``timebill (llamacpp backend)``: the model as timebill serves it: the torch side (fp32 weights,
  converted once from the GGUF and cached) beside llama.cpp, the start-up check, torch prefill
  carried into llama.cpp, llama.cpp decoding.

  python benchmarks/scale_bench.py [--prompt 512] [--new 32] [--threads 2] [--out docs/bench]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import resource
import subprocess
import sys
import time

import numpy as np

SHAPE = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
             num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=32768,
             rope_theta=1000000.0)


def make(cache: pathlib.Path) -> pathlib.Path:
    """The Q8_0 GGUF of a random model of Qwen2.5-1.5B's shape, made once (a few minutes)."""
    from timebill.llama_convert import convert_to_gguf

    folder = cache / "scale" / "qwen2.5-1.5b-shape"
    gguf = folder / "model-q8_0.gguf"
    if gguf.is_file():
        return gguf
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from timebill.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = Qwen2ForCausalLM(Qwen2Config(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **SHAPE))
    model.to(torch.bfloat16).save_pretrained(folder / "hf")  # bf16 on disk: half the bytes to convert
    tok.save_pretrained(folder / "hf")
    del model
    convert_to_gguf(folder / "hf", gguf, outtype="q8_0", tokenizer_pre="gpt-2")
    return gguf


def rss_gib() -> float:
    """The process's peak resident memory so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def rss_now_gib() -> float:
    """Its resident memory now (the peak includes what loading held only for a while)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 2**20


def child(kind: str, gguf: str, prompt: int, new: int, threads: int, torch_dtype: str = "float32") -> dict:
    ids = [int(t) for t in np.random.default_rng(0).integers(3, 390, prompt)]
    if kind == "convert":  # the one-off conversion, outside the measured processes
        from timebill.models import load_model

        t = time.perf_counter()
        load_model(gguf, threads=threads)
        return {"convert_s": time.perf_counter() - t, "peak_rss_gib": rss_gib()}
    if kind in ("load-amx", "load-plain"):  # llama.cpp's load alone, with and without its AMX weight buffers
        from timebill.backends.llamacpp import LlamaCppModel

        t = time.perf_counter()
        LlamaCppModel(gguf, n_ctx=prompt + new + 16, threads=threads, extra_buffers=kind == "load-amx")
        return {"rss_after_load_gib": rss_gib(), "load_s": time.perf_counter() - t}
    if kind == "llama":
        from timebill.backends.llamacpp import LlamaCppModel

        llama = LlamaCppModel(gguf, n_ctx=prompt + new + 16, threads=threads)
        loaded_rss = rss_gib()
        loaded_now = rss_now_gib()
        t = time.perf_counter()
        logits = llama.prefill(ids)
        prefill = time.perf_counter() - t
        step = lambda i, tok: llama.decode_one(tok, prompt + i)  # noqa: E731
    else:
        from timebill.backends import make_backend
        from timebill.runtime import load_configured_model

        loaded = load_configured_model({"model": gguf, "threads": threads, "context_tokens": prompt + new + 16,
                                        "torch_dtype": torch_dtype})
        backend = make_backend("llamacpp", loaded, threads=threads)
        loaded_rss = rss_gib()
        loaded_now = rss_now_gib()
        t = time.perf_counter()
        logits = backend.prefill(ids)[0].numpy()
        prefill = time.perf_counter() - t
        step = lambda i, tok: backend.decode_one(tok, prompt + i).numpy()  # noqa: E731
    token, steps = int(np.argmax(logits)), []
    for i in range(new):
        t = time.perf_counter()
        token = int(np.argmax(step(i, token)))
        steps.append(time.perf_counter() - t)
    return {"rss_after_load_gib": loaded_rss, "rss_now_after_load_gib": loaded_now, "rss_now_end_gib": rss_now_gib(),
            "peak_rss_gib": rss_gib(), "prefill_s": prefill,
            "decode_ms_median": 1000 * float(np.median(steps))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="folder for scale.json")
    ap.add_argument("--rows", default="convert,llama,timebill",
                    help="which measurements (convert, llama, timebill); llama takes ~13 minutes here (its own prefill)")
    ap.add_argument("--torch-dtype", default="float32", help="the timebill row's torch side: float32 or bfloat16")
    ap.add_argument("--load-only", action="store_true",
                    help="only llama.cpp's load, with and without its AMX weight buffers (seconds; prints RSS)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--gguf", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.gguf, args.prompt, args.new, args.threads, args.torch_dtype)))
        return 0
    from timebill.models import default_cache_dir

    t = time.perf_counter()
    gguf = make(default_cache_dir())
    print(f"model: {gguf} ({gguf.stat().st_size / 2**30:.2f} GiB), made in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    rows = {}
    for kind in ("load-amx", "load-plain") if args.load_only else args.rows.split(","):
        cmd = [sys.executable, __file__, "--child", kind, "--gguf", str(gguf), "--prompt", str(args.prompt),
               "--new", str(args.new), "--threads", str(args.threads), "--torch-dtype", args.torch_dtype]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        rows[kind] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{kind}: {rows[kind]}", file=sys.stderr, flush=True)
    if args.load_only:
        print(f"llama.cpp load alone: {rows['load-amx']['rss_after_load_gib']:.2f} GiB RSS with its AMX weight buffers, "
              f"{rows['load-plain']['rss_after_load_gib']:.2f} GiB without (use_extra_bufts off)")
        return 0
    print(f"| path ({args.prompt}-token prompt, {args.new} new tokens, {args.threads} threads) | peak RSS after load "
          f"| RSS at the end | peak RSS | prefill | decode step (median) |")
    print("|---|---|---|---|---|---|")
    for kind, label in (("llama", "llama.cpp alone"), ("timebill", f"timebill (llamacpp backend, torch side {args.torch_dtype})")):
        if kind not in rows:
            continue
        r = rows[kind]
        print(f"| {label} | {r['rss_after_load_gib']:.2f} GiB | {r.get('rss_now_end_gib', float('nan')):.2f} GiB | "
              f"{r['peak_rss_gib']:.2f} GiB | {r['prefill_s']:.2f} s | "
              f"{r['decode_ms_median']:.1f} ms |")
    if "convert" in rows:
        print(f"(the one-off conversion to the torch side: {rows['convert']['convert_s']:.0f} s, peak RSS "
              f"{rows['convert']['peak_rss_gib']:.2f} GiB)")
    if args.out:
        pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
        name = "scale.json" if args.torch_dtype == "float32" else f"scale-{args.torch_dtype}.json"
        (pathlib.Path(args.out) / name).write_text(json.dumps({"shape": SHAPE, "gguf_bytes": gguf.stat().st_size,
                                                                "prompt": args.prompt, "new": args.new,
                                                                "torch_dtype": args.torch_dtype, **rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
