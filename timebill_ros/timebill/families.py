"""Tiny random-weight models of each architecture family robots run, as GGUF files made by
llama.cpp's own converter. NOT models: for checking that the fast path serves each family right
(tests, ``benchmarks/architectures_bench.py``); their output is gibberish.

Each family keeps what makes it different for the carried cache: GQA, tied embeddings, Llama-3
rope scaling, attention biases (Qwen2), a head_dim that is not hidden/heads (Qwen3), fused qkv
(Phi-3), sliding-window layers (Gemma3). A model is built from its transformers config with a
fixed seed, saved beside the test tokenizer (``testing.tiny_tokenizer``) and converted once; the
GGUF is cached under the cache folder by a hash of everything that made it.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import pathlib

from .cache_folder import write_folder_atomically
from .llama_convert import LLAMA_CPP_PYTHON, convert_to_gguf
from .models import default_cache_dir

HIDDEN, LAYERS, HEADS, KV_HEADS = 128, 2, 4, 2
_COMMON = dict(initializer_range=0.1, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=LAYERS,
               num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=4096)

# initializer_range 0.1 (not 0.02): sharper attention, so that a wrong key shows in the logits.
# family -> (transformers config class, its arguments beyond _COMMON). Llama-3's rope scaling is
# set so that it changes most frequencies (original context 256): a loader that drops it is seen.
FAMILIES: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", dict(tie_word_embeddings=True)),
    "llama3-rope-scaling": ("LlamaConfig", dict(rope_parameters=dict(
        rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=256))),
    "mistral": ("MistralConfig", dict(sliding_window=None)),
    "qwen2": ("Qwen2Config", dict(tie_word_embeddings=True)),
    "qwen3": ("Qwen3Config", dict(head_dim=64)),  # 64 != 128 / 4
    "phi3": ("Phi3Config", dict(pad_token_id=0)),
    # Both layers sliding (window 16): llama.cpp's gemma3 takes the layer pattern of the real models
    # (5 sliding, then 1 full), not the config's layer_types.
    "gemma3": ("Gemma3TextConfig", dict(head_dim=64, sliding_window=16, query_pre_attn_scalar=64)),
}
TOKENIZER_PRE = "gpt-2"  # llama.cpp's pre-tokenizer for the test tokenizer (byte-level BPE, GPT-2 style)
# The families the carried cache serves (README, "Your own model"); Gemma3 is refused and served with torch.
CARRIED = ("llama", "llama3-rope-scaling", "mistral", "qwen2", "qwen3", "phi3")


def _spec_key(family: str, seed: int) -> str:
    import transformers

    # Everything that makes the file: a change to any of it makes a new one.
    spec = json.dumps([family, FAMILIES[family], _COMMON, seed, transformers.__version__, LLAMA_CPP_PYTHON,
                       TOKENIZER_PRE, inspect.getsource(build_hf)], sort_keys=True, default=str)
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def build_hf(family: str, folder: pathlib.Path, seed: int = 0) -> None:
    """Save a random model of ``family`` with the test tokenizer into ``folder``."""
    import torch
    import transformers

    from .testing import tiny_tokenizer

    tok = tiny_tokenizer()
    cls_name, extra = FAMILIES[family]
    config = getattr(transformers, cls_name)(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                             eos_token_id=tok.eos_token_id, **{**_COMMON, **extra})
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # random init leaves norms at 1 and biases at 0: make them matter
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    if family == "phi3":  # the converter reads a Phi tokenizer as sentencepiece unless told it is GPT-2's (as Phi-4's is)
        cfg_path = folder / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["tokenizer_class"] = "GPT2Tokenizer"
        cfg_path.write_text(json.dumps(cfg, indent=2))


def family_model(family: str, cache: str | os.PathLike | None = None, seed: int = 0) -> tuple[pathlib.Path, pathlib.Path]:
    """(the Hugging Face folder, its f32 GGUF made by llama.cpp's converter), made once and cached."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family '{family}' (known: {', '.join(FAMILIES)})")
    base = pathlib.Path(cache).expanduser() if cache else default_cache_dir()
    folder = base / "families" / f"{family}-{_spec_key(family, seed)}"
    if not (folder / "model.gguf").is_file():
        def make(tmp: pathlib.Path) -> None:
            build_hf(family, tmp / "hf", seed)
            # f32: the comparison is then about the carry, not about the rounding of f16 weights.
            convert_to_gguf(tmp / "hf", tmp / "model.gguf", outtype="f32", tokenizer_pre=TOKENIZER_PRE, cache=cache)
        write_folder_atomically(folder, make)
    return folder / "hf", folder / "model.gguf"
