"""What transformers' GGUF loader (5.2.0) leaves out of a model, read back from the GGUF file.

Measured (issue 19): the loader never reads ``{arch}.attention.key_length``, so a Qwen3 whose head_dim
is not hidden/heads fails to load (or a head_dim of 128 only by luck matches); and it drops Llama-3
rope scaling, which llama.cpp's converter stores not as metadata but as the ``rope_freqs`` tensor
(one divisor per rotary frequency): the torch side then rotates with the wrong frequencies and
every logit is off. Both are put back here: head_dim into the config before the weights load, the
frequencies into the rotary embeddings after (they are not saved with the model, so this is done
at every load, from the GGUF).
"""
from __future__ import annotations

import logging
import pathlib
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("timebill")


@dataclass
class GGUFFacts:
    architecture: str
    head_dim: int | None           # {arch}.attention.key_length, when the file states it
    rope_freqs: np.ndarray | None  # Llama-3 style per-frequency divisors, when the file has them
    sliding_window: int = 0        # {arch}.attention.sliding_window


# llama.cpp 0.3.36 reads a sliding window for these architectures but turns it off (src/models/phi3.cpp).
SLIDING_WINDOW_IGNORED = ("phi3",)


def carry_blocker(facts: GGUFFacts, path: pathlib.Path) -> str | None:
    """Why the fast path cannot serve this file, as far as its metadata tells (None: try it). Read
    before any backend exists, so that every process serving the model (the generation and the
    predictor node) agrees on the path, and on its timing model, without loading llama.cpp; the
    backend's own checks at start-up (``LlamaCppBackend``) remain the authority."""
    if facts.sliding_window > 0 and facts.architecture not in SLIDING_WINDOW_IGNORED:
        return (f"{path} (architecture {facts.architecture}): the fast path cannot carry the torch cache into "
                f"llama.cpp: it has sliding-window attention layers (window {facts.sliding_window}). Serve it with "
                "`backend: torch` (--backend torch), or `backend: auto`, which does so by itself")
    return None


def read_facts(path: pathlib.Path) -> GGUFFacts:
    from gguf import GGUFReader

    r = GGUFReader(path)
    arch = str(r.fields["general.architecture"].contents())
    key_length = r.fields.get(f"{arch}.attention.key_length")
    window = r.fields.get(f"{arch}.attention.sliding_window")
    freqs = next((t for t in r.tensors if t.name == "rope_freqs.weight"), None)
    return GGUFFacts(arch, int(key_length.contents()) if key_length is not None else None,
                     np.array(freqs.data, dtype=np.float32).reshape(-1) if freqs is not None else None,
                     int(window.contents()) if window is not None else 0)


def fix_config(config, facts: GGUFFacts, path: pathlib.Path) -> None:
    """head_dim as the file states it (transformers derives hidden/heads, wrong for Qwen3 and Gemma)."""
    if facts.head_dim and getattr(config, "head_dim", None) not in (None, facts.head_dim):
        log.info("%s: head_dim %d from the GGUF metadata (transformers' loader had %s)", path.name, facts.head_dim, config.head_dim)
        config.head_dim = facts.head_dim


def apply_rope_freqs(model, facts: GGUFFacts, path: pathlib.Path) -> None:
    """Divide each rotary frequency by the file's factor, as llama.cpp does (``ggml_rope_ext``'s
    freq_factors): exact for any factors, where rebuilding Llama-3's four parameters would not be."""
    if facts.rope_freqs is None:
        return
    import torch

    ropes = [m for m in model.modules() if isinstance(getattr(m, "inv_freq", None), torch.Tensor)]
    config = model.config
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", "default") != "default":
        # The loader kept a scaling of its own: dividing again would scale twice.
        raise ValueError(f"{path} has rope_freqs and transformers also set rope_type {rope.get('rope_type')}: "
                         "cannot tell which applies (load the model from its Hugging Face folder instead)")
    factors = torch.from_numpy(facts.rope_freqs)
    for m in ropes:
        if m.inv_freq.shape != factors.shape:
            raise ValueError(f"{path}: rope_freqs has {factors.numel()} factors but the model rotates "
                             f"{m.inv_freq.numel()} frequencies (load the model from its Hugging Face folder instead)")
        m.inv_freq = m.inv_freq / factors.to(m.inv_freq.dtype)
        if hasattr(m, "original_inv_freq"):
            m.original_inv_freq = m.inv_freq.clone()
