"""The fast serving path: prefill and compress in torch (every kvpress press), decode in llama.cpp.

Why this split (measured, docs/BENCHMARKS.md): on this CPU torch prefills about twice as fast as
llama.cpp, and llama.cpp decodes the same model 5-7x faster than torch. The prompt's keys and
values, after the press has evicted what the plan says, are written into llama.cpp's sequence
state (``kv_state``); llama.cpp then decodes token by token from that compacted cache, so
eviction really shortens what each decoding step reads.

Three facts make the carried cache equivalent to the torch one:
- for a model whose llama.cpp rope type is NORM (Llama, Mistral), the GGUF converter permutes the
  q/k projection rows so that llama.cpp's rotary pairs (adjacent elements) are Hugging Face's (the
  two halves of a head): a torch key becomes a llama.cpp key by interleaving each head's halves.
  For NEOX models (Qwen2, Qwen3, Phi-3, Gemma) llama.cpp rotates the halves as Hugging Face does
  and the converter leaves the rows alone: the key goes over as it is. Any other rope type, or a
  cache layout ``kv_state`` cannot write (Gemma's sliding-window layers), is refused at start-up;
- what a model adds before the cache (biases, q/k norms, fused qkv, rope scaling) is computed by
  the torch side, so it is in the carried keys; ``check_carry`` proves it at start-up by comparing
  the next-token logits after a carried cache with llama.cpp's own prefill, and refuses a model
  where they disagree: an untested architecture fails loudly instead of answering garbage;
- the keys are stored already rotated, so a cell's position in llama.cpp is only a label for the
  causal mask. A press may keep different tokens in different heads and layers (SnapKV does):
  cell j holds, in each head, that head's j-th kept token, exactly as slot j of the torch cache
  does. The cells are labelled with the last ``kept`` positions of the prompt so that every label
  is below the first decoded position and llama.cpp's rule "a sequence's next position follows
  its last one" holds.
"""
from __future__ import annotations

import collections
import ctypes
import os
import pathlib

import numpy as np

from .base import BackendCannotApply
from .kv_state import SeqState, StateLayoutError, probe_prefix
from .torch_backend import TorchBackend

FLASH_ATTN_DISABLED = 0  # llama_flash_attn_type: V is then stored transposed (kv_state handles both)
CHUNK = 512              # tokens per llama_decode call in llama.cpp's own prefill


ROPE_NORM, ROPE_NEOX = 0, 2  # llama_rope_type: the rotary layouts the carry writes
# The start-up check (``check_carry``): the correlation of the next-token logits after a carried
# cache with llama.cpp's own prefill. Measured (benchmarks/architectures_bench.py): 0.9999+ for every
# family served right, the embedded Q4_1 model 0.9993-0.9997 (torch runs its dequantised weights);
# Qwen2/Qwen3/Phi-3 keys carried with Llama's interleave (before issue 19) gave 0.18.
CHECK_MIN_CORRELATION = 0.99
CHECK_TOKENS = 16  # enough for attention to mix positions; llama.cpp prefills it one token at a time on AMX
CHECK_TEXT = ("The robot checks the kitchen, then the hall, and reports what it saw: a red cup, two "
              "blue boots and an open window.")


class LlamaCppUnavailable(RuntimeError):
    """llama-cpp-python is not installed, or llama.cpp cannot load the model or serve it right."""


class CarryRefused(LlamaCppUnavailable):
    """The torch cache cannot be carried into llama.cpp right for this model: the message names the
    file, the architecture, why, and the fix (`backend: torch`)."""


def import_llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:
        raise LlamaCppUnavailable(
            "backend llamacpp needs llama-cpp-python 0.3.36: run scripts/setup.sh (it builds it once, ~6 min), "
            "or set `backend: torch` in config/timebill.yaml"
        ) from exc
    return llama_cpp


_LOG_CALLBACK = None
# llama.cpp's recent log lines. Its load and context details would drown a node's log, so they are
# not printed; but when a load fails, its reason is only there (e.g. "unknown model architecture"),
# so the last lines are kept for the error.
_LOG_LINES: collections.deque = collections.deque(maxlen=200)
GGML_LOG_LEVEL_WARN, GGML_LOG_LEVEL_CONT = 3, 5


def cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " amx_int8" in line for line in f)
    except OSError:
        return False


def _keep_llama_cpp_log(L) -> None:
    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        def keep(level, text, user):
            _LOG_LINES.append((int(level), text.decode("utf-8", "replace") if text else ""))

        _LOG_CALLBACK = L.llama_log_callback(keep)
        L.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


def llama_cpp_reason() -> str:
    """llama.cpp's warnings and errors since the last call (its own words for why a load failed)."""
    lines, cont = [], False
    while _LOG_LINES:
        level, text = _LOG_LINES.popleft()
        if level != GGML_LOG_LEVEL_CONT:  # a continuation keeps the previous line's level
            cont = level >= GGML_LOG_LEVEL_WARN
        if cont:
            lines.append(text)
    return " ".join("".join(lines).split())


class LlamaCppModel:
    """One llama.cpp model and context on a GGUF file: one sequence, decode one token at a time
    (``seqs`` > 1: that many sequences, each in a cache stream of its own, for batched labelling)."""

    def __init__(self, gguf: str | os.PathLike, n_ctx: int, threads: int, extra_buffers: bool = True, seqs: int = 1):
        L = import_llama_cpp()
        self.L = L
        _keep_llama_cpp_log(L)
        L.llama_backend_init()
        path = pathlib.Path(gguf)
        mparams = L.llama_model_default_params()
        mparams.use_extra_bufts = bool(extra_buffers)
        # On a CPU with AMX, llama.cpp 0.3.36 (built with -march=native, as setup.sh does) puts
        # Q4/Q8 weights in its AMX buffers: decoding one token is fastest there (7.7 ms a step here
        # against 9.7 ms without them, benchmarks/thread_speed_bench.py), but any batch of more than one token crashes llama_decode
        # with a segmentation fault (measured 2026-12-01 on a Xeon with amx_int8). Such a context
        # takes its tokens one at a time; serving decodes one at a time anyway.
        self.one_token_batches = bool(extra_buffers) and cpu_has_amx()
        llama_cpp_reason()  # drop older lines: the error is to name this load's reason
        self.model = L.llama_model_load_from_file(str(path).encode(), mparams)
        if not self.model:
            raise LlamaCppUnavailable(f"llama.cpp cannot load {path}: {llama_cpp_reason() or 'it gave no reason'} "
                                      "(a GGUF this llama.cpp cannot read: serve it with `backend: torch`)")
        cparams = L.llama_context_default_params()
        cparams.n_ctx = int(n_ctx)
        cparams.n_batch = cparams.n_ubatch = CHUNK
        cparams.n_seq_max = int(seqs)
        if seqs > 1:
            cparams.kv_unified = False  # a stream per sequence: attention reads its own cells only
        cparams.n_threads = cparams.n_threads_batch = int(threads)
        cparams.flash_attn_type = FLASH_ATTN_DISABLED
        self.ctx = L.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            raise LlamaCppUnavailable(f"llama.cpp cannot create a context of {n_ctx} tokens for {path}: "
                                      f"{llama_cpp_reason() or 'it gave no reason'} (a smaller `context_tokens`, or `backend: torch`)")
        self.mem = L.llama_get_memory(self.ctx)
        self.n_vocab = int(L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model)))
        self.n_ctx = int(n_ctx)
        self.batch = L.llama_batch_init(CHUNK, 0, int(seqs))
        self.batch_seqs = int(seqs)
        self._prefix_u32 = None

    def close(self) -> None:
        if getattr(self, "ctx", None):
            self.L.llama_batch_free(self.batch)
            self.L.llama_free(self.ctx)
            self.L.llama_model_free(self.model)
            self.ctx = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def architecture(self) -> str:
        buf = ctypes.create_string_buffer(128)
        n = self.L.llama_model_meta_val_str(self.model, b"general.architecture", buf, len(buf))
        return buf.value.decode() if n > 0 else "unknown"

    # --- decoding ---------------------------------------------------------------------------------
    def clear(self) -> None:
        self.L.llama_memory_clear(self.mem, True)

    def forget(self, seq: int) -> None:
        """Drop one sequence's cells (the others stay)."""
        self.L.llama_memory_seq_rm(self.mem, int(seq), -1, -1)

    def _decode(self, tokens, start: int, seq: int = 0) -> None:
        if len(tokens) > 1 and self.one_token_batches:
            for i, t in enumerate(tokens):
                self._decode([t], start + i, seq)
            return
        n = len(tokens)
        self.decode_batch([(seq, t, start + i, i == n - 1) for i, t in enumerate(tokens)])

    def decode_batch(self, items) -> None:
        """One llama_decode of ``items``: (sequence, token, position, wants its logits), at most CHUNK."""
        b = self.batch
        for i, (seq, token, pos, wants_logits) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i] = int(token), int(pos), 1
            b.seq_id[i][0] = int(seq)
            b.logits[i] = bool(wants_logits)
        b.n_tokens = len(items)
        rc = self.L.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with code {rc} at position {items[0][2]} ({len(items)} tokens)")

    def logits(self, i: int = -1) -> np.ndarray:
        """A copy of the logits of the batch's ``i``-th token (default: its last)."""
        ptr = self.L.llama_get_logits_ith(self.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def decode_one(self, token: int, position: int) -> np.ndarray:
        self._decode([token], position)
        return self.logits()

    def prefill(self, ids, seq: int = 0) -> np.ndarray:
        """llama.cpp's own prefill (for comparisons, benchmarks and batched labelling; serving
        prefills in torch). With one sequence the cache is cleared first; otherwise ``seq`` must be empty."""
        if self.batch_seqs == 1:
            self.clear()
        for s in range(0, len(ids), CHUNK):
            self._decode(ids[s:s + CHUNK], s, seq)
        return self.logits()

    # --- the sequence state -----------------------------------------------------------------------
    def get_state(self) -> bytes:
        size = self.L.llama_state_seq_get_size(self.ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        n = self.L.llama_state_seq_get_data(self.ctx, buf, size, 0)
        return bytes(buf)[:n]

    def set_state(self, data: bytes | bytearray) -> None:
        self.clear()
        if isinstance(data, bytearray):  # no copy
            buf = (ctypes.c_uint8 * len(data)).from_buffer(data)
        else:
            buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if self.L.llama_state_seq_set_data(self.ctx, buf, len(data), 0) == 0:
            raise RuntimeError("llama_state_seq_set_data refused the cache (layout mismatch?)")

    def read_cache(self) -> SeqState:
        return SeqState.parse(self.get_state(), self.prefix_u32())

    def prefix_u32(self) -> int:
        """The state's header length, learnt once from a state llama.cpp wrote itself."""
        if self._prefix_u32 is None:
            self.prefill([0])
            n_layer = int(self.L.llama_model_n_layer(self.model))
            self._prefix_u32 = probe_prefix(self.get_state(), n_layer)
            self._prefix = self.get_state()[: 4 * self._prefix_u32]
            self.clear()
        return self._prefix_u32

    def write_cache(self, keys: np.ndarray, values: np.ndarray, positions: np.ndarray) -> None:
        """Replace the sequence with these cells ([n_layer, cells, n_kv_heads, head_dim] f16, llama.cpp order)."""
        self.prefix_u32()
        self.set_state(SeqState(self._prefix, positions, keys, values, v_trans=True).pack())


def hf_to_llama_keys(k):
    """Interleave each head's halves: llama.cpp's element 2j is HF's j, 2j+1 is HF's j + head_dim/2."""
    half = k.shape[-1] // 2
    return k.unflatten(-1, (2, half)).transpose(-1, -2).reshape(k.shape)


class LlamaCppBackend(TorchBackend):
    """Prefill (and press) in torch, then decode in llama.cpp on the model's own GGUF file.
    ``n_ctx``: llama.cpp's context (default: the model's ``max_context``, which the configuration's
    ``context_tokens`` caps: a cache of a model's full 131,072 positions costs GiB nobody uses)."""

    name = "llamacpp"

    def __init__(self, loaded, gguf: str | os.PathLike, threads: int, n_ctx: int | None = None, check: bool = True):
        super().__init__(loaded)
        self.gguf = pathlib.Path(gguf)
        self.llama = LlamaCppModel(self.gguf, n_ctx=n_ctx or loaded.max_context, threads=threads)
        try:
            if self.llama.n_vocab != loaded.model.config.vocab_size:
                raise LlamaCppUnavailable(
                    f"{self.gguf} has {self.llama.n_vocab} tokens but the torch model {loaded.name} has "
                    f"{loaded.model.config.vocab_size}: they are not the same model (use backend: torch)")
            self._check_servable(check)
        except Exception:
            self.llama.close()  # backend auto serves with torch next: free llama.cpp's copy of the model now
            raise

    def _check_servable(self, check: bool) -> None:
        self.architecture = self.llama.architecture()
        L, model = self.llama.L, self.llama.model
        rope = int(L.llama_model_rope_type(model))
        if rope not in (ROPE_NORM, ROPE_NEOX):
            raise self.refused(f"its llama.cpp rope type is {rope}, not NORM or NEOX")
        self.interleave = rope == ROPE_NORM  # see the module docstring
        if int(L.llama_model_n_swa(model)) > 0:
            # llama.cpp keeps sliding-window layers in a second cache of at most the window, which
            # kv_state does not write; and with eviction the relabelled positions would move the window.
            raise self.refused(f"it has sliding-window attention layers (window {int(L.llama_model_n_swa(model))})")
        if L.llama_model_is_recurrent(model) or L.llama_model_is_hybrid(model):
            raise self.refused("it keeps a recurrent state, not (only) keys and values")
        try:
            self.llama.prefix_u32()
        except StateLayoutError as exc:
            raise self.refused(f"llama.cpp keeps its cache in a layout the carry cannot write ({exc})") from None
        self.check = self.check_carry() if check else None

    def refused(self, why: str) -> CarryRefused:
        return CarryRefused(f"{self.gguf} (architecture {getattr(self, 'architecture', 'unknown')}): the fast path cannot carry the torch "
                            f"cache into llama.cpp: {why}. Serve it with `backend: torch` (--backend torch), "
                            "or `backend: auto`, which does so by itself")

    def check_carry(self) -> dict:
        """The next-token logits after a carried cache against llama.cpp's own prefill of the same
        tokens, on a short fixed text; refuses (``CarryRefused``, with the numbers) when they disagree."""
        with self.loaded.tokenizer_lock:
            ids = self.loaded._encode_text(CHECK_TEXT)[:CHECK_TOKENS]
        native = self.llama.prefill(ids)
        self.prefill(ids[:-1])
        carried = self.llama.decode_one(ids[-1], len(ids) - 1)
        self.llama.clear()
        corr = float(np.corrcoef(native, carried)[0, 1]) if np.all(np.isfinite(carried)) else float("nan")
        result = {"tokens": len(ids), "correlation": corr, "max_gap": float(np.max(np.abs(native - carried)))}
        if not corr >= CHECK_MIN_CORRELATION:
            raise self.refused(f"after a carried cache of {len(ids) - 1} tokens the next-token logits disagree with "
                               f"llama.cpp's own prefill (correlation {corr:.3f}, needs {CHECK_MIN_CORRELATION}; "
                               f"largest difference {result['max_gap']:.2f})")
        return result

    def prefill(self, ids, press=None):
        logits, cached = super().prefill(ids, press)
        self.carry_cache(self.cache, len(ids), press)
        self.cache = None  # decoding reads llama.cpp's copy; free the torch one
        return logits, cached

    def carry_cache(self, cache, prompt_tokens: int, press=None) -> None:
        import torch

        layers = cache.layers
        lengths = {int(layer.keys.shape[2]) for layer in layers}
        if len(lengths) != 1:
            raise BackendCannotApply(self.name, press, "it keeps a different number of positions in each layer")
        if any(getattr(m, "masked_key_indices", None) is not None for m in self.loaded.model.modules()):
            raise BackendCannotApply(self.name, press, "it masks keys instead of evicting them")
        kept = lengths.pop()
        with torch.inference_mode():
            # f16 first (half the bytes to move), then views only: pack() copies each layer once,
            # straight into the state buffer, as [cells, heads, dim] rows.
            k = torch.stack([layer.keys[0].to(torch.float16) for layer in layers])  # [L, heads, kept, dim]
            v = torch.stack([layer.values[0].to(torch.float16) for layer in layers])
            k = (hf_to_llama_keys(k) if self.interleave else k).permute(0, 2, 1, 3).numpy()  # [L, kept, heads, dim]
            v = v.permute(0, 2, 1, 3).numpy()
        positions = np.arange(prompt_tokens - kept, prompt_tokens, dtype=np.int32)
        self.llama.write_cache(k, v, positions)
        self._cached = kept

    def decode_one(self, token_id: int, position: int):
        import torch

        logits = torch.from_numpy(self.llama.decode_one(token_id, position))
        self._cached += 1
        return logits

