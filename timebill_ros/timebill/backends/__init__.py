"""Serving paths behind one small interface (``base.Backend``), chosen by the ``backend`` key.

- ``torch``: transformers fp32, the reference (any Hugging Face model, the tests' tiny model).
- ``llamacpp``: the fast path, torch prefill + press, then llama.cpp decoding on the model's
  GGUF file (``llamacpp.py``). Needs llama-cpp-python and a model loaded from a GGUF file.
- ``auto``: ``llamacpp`` when the model came from a GGUF file and llama-cpp-python is
  installed, else ``torch``; also ``torch`` (said once, as a warning) when llama.cpp cannot load
  the file or cannot be given the torch cache right (``llamacpp.CarryRefused``): the answer is
  slower, never wrong. ``llamacpp`` named explicitly refuses such a model with the reason.
"""
from __future__ import annotations

import importlib.util
import logging

from .base import Backend, BackendCannotApply

BACKENDS = ("auto", "torch", "llamacpp")
log = logging.getLogger("timebill")


def resolve_backend(name: str, loaded) -> str:
    """The concrete backend ``name`` means for ``loaded``; raises ValueError naming the fix."""
    name = str(name or "auto").strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)}; set it in config/timebill.yaml)")
    gguf = getattr(loaded, "gguf", None)
    have_llama = importlib.util.find_spec("llama_cpp") is not None
    if name == "auto":
        if getattr(loaded, "carry_refused", None):  # make_backend found the fast path wrong for it
            return "torch"
        if gguf is not None and not have_llama:
            log.warning("backend auto: llama-cpp-python is not installed, serving with torch (5-7x slower decoding); "
                        "scripts/setup.sh installs it")
        return "llamacpp" if gguf is not None and have_llama else "torch"
    if name == "llamacpp" and gguf is None:
        raise ValueError(f"backend llamacpp needs a model loaded from a GGUF file; {loaded.name} is not "
                         "(use model: embedded or a .gguf path, or backend: torch)")
    return name


def make_backend(name: str, loaded, threads: int | None = None) -> Backend:
    """The backend ``name`` means for ``loaded``; ``threads`` for llama.cpp, default torch's (set
    from the config's ``threads`` when the model was loaded)."""
    kind = resolve_backend(name, loaded)
    if kind == "llamacpp":
        import torch

        from .llamacpp import LlamaCppBackend, LlamaCppUnavailable

        try:
            return LlamaCppBackend(loaded, loaded.gguf, threads=threads or torch.get_num_threads())
        except LlamaCppUnavailable as exc:
            if str(name or "auto").strip().lower() != "auto":
                raise
            # Recorded on the model: resolve_backend then says torch too (the timing model's file
            # and its backend check follow the path really served).
            loaded.carry_refused = str(exc)
    if str(name or "auto").strip().lower() == "auto" and getattr(loaded, "carry_refused", None):
        log.warning("backend auto: serving %s with torch (correct, 5-7x slower decoding), because %s",
                    loaded.name, loaded.carry_refused)
    from .torch_backend import TorchBackend

    return TorchBackend(loaded)


__all__ = ["BACKENDS", "Backend", "BackendCannotApply", "make_backend", "resolve_backend"]
