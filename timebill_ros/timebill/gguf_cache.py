"""The cache of converted GGUF models: a GGUF file is converted to a transformers folder once
(~18 s for the embedded model), kept in the cache folder under a key of its content, and read back
on later loads (well under a second).

The cache is derived data: a folder that no longer loads is removed and converted again. What
transformers' converter leaves out of a model is put back from the GGUF file itself (``gguf_meta``).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import pathlib

from .cache_folder import discard_folder, write_folder_atomically
from .models import ModelLoadError, load_hf_folder

log = logging.getLogger("timebill")

HASH_WHOLE_BELOW = 64 << 20  # bytes: smaller files are hashed whole (~0.1 s); larger ones sampled
_SAMPLE, _SAMPLES = 1 << 20, 32


def gguf_content_key(gguf: pathlib.Path) -> str:
    """A hash of a GGUF file's content (not its name): another model of the same name and size, or
    the same file re-downloaded, must not reuse or miss a conversion. Large files are sampled: the
    header (architecture, shapes, the tokenizer: the first 16 MiB), 32 slices of 1 MiB spread over
    the weights, the last MiB and the size; two different models differ in nearly all of them,
    and hashing a 4 GB file whole would cost seconds at every start."""
    size = gguf.stat().st_size
    h = hashlib.blake2b(str(size).encode(), digest_size=8)
    with open(gguf, "rb") as f:
        if size <= HASH_WHOLE_BELOW:
            h.update(f.read())
        else:
            h.update(f.read(16 << 20))
            for i in range(_SAMPLES + 1):
                f.seek(min(size - _SAMPLE, (16 << 20) + i * (size - (16 << 20)) // _SAMPLES))
                h.update(f.read(_SAMPLE))
    return h.hexdigest()


def converted_folder(gguf: pathlib.Path, cache: pathlib.Path) -> pathlib.Path:
    """Where the conversion of a GGUF file is cached: by its content (``gguf_content_key``)."""
    return cache / "models" / f"{gguf.stem}-{gguf_content_key(gguf)}"


def load_gguf_cached(gguf: pathlib.Path, cache: pathlib.Path, dtype: str = "float32"):  # -> (model, tokenizer, GGUFFacts)
    """Convert a GGUF file to a transformers folder once; later loads read the folder.

    A cached conversion that no longer loads (seen: a truncated model.safetensors, "incomplete
    metadata") is derived data: it is removed with a warning and converted again from the GGUF.
    What transformers' loader leaves out (head_dim, Llama-3 rope frequencies) comes from the file
    itself (``gguf_meta``).
    """
    from .gguf_meta import read_facts

    try:
        facts = read_facts(gguf)
    except Exception as exc:  # the gguf reader raises many kinds; all mean "not a GGUF file it can read"
        raise ModelLoadError(f"cannot read the GGUF file {gguf}: {exc}") from exc
    folder = converted_folder(gguf, cache)
    # A copy in a smaller dtype, kept by an earlier start: reading the float32 folder would hold its
    # pages (twice the weights) in memory while loading.
    small = folder.with_name(f"{folder.name}-{dtype}") if dtype != "float32" else None
    loaded = small and _load_cached(small, dtype, "made again from the float32 conversion")
    if loaded:
        return _with_rope_freqs(loaded[0], facts, gguf), loaded[1], facts
    loaded = _load_cached(folder, dtype, f"the cache is converted again from {gguf} (about 20 s)")
    if not loaded:
        _convert_gguf(gguf, folder, facts)
        loaded = load_hf_folder(folder, dtype)
    model, tok = loaded
    if small:
        try:
            _save_folder(small, model, tok)
        except OSError as exc:  # a full disk: the next start reads the float32 folder again
            log.warning("cannot keep a %s copy of %s in %s (%s)", dtype, gguf, small, exc)
    return _with_rope_freqs(model, facts, gguf), tok, facts


def _load_cached(folder: pathlib.Path, dtype: str, then: str):
    """(model, tokenizer) from a cached folder, or None: absent, or no longer loading (seen: a
    truncated model.safetensors), when it is removed with a warning saying what happens ``then``."""
    if not folder.is_dir():
        return None
    try:
        return load_hf_folder(folder, dtype)
    except ModelLoadError as exc:
        log.warning("%s; %s", exc, then)
        discard_folder(folder)
        return None


def _save_folder(folder: pathlib.Path, model, tok) -> None:
    def save(tmp: pathlib.Path) -> None:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    write_folder_atomically(folder, save)


def _with_rope_freqs(model, facts, gguf):
    from .gguf_meta import apply_rope_freqs

    try:
        apply_rope_freqs(model, facts, gguf)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None
    return model


def _convert_gguf(gguf: pathlib.Path, folder: pathlib.Path, facts) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from .gguf_meta import fix_config

    hf_logging.enable_progress_bar()
    try:
        with transformers_report() as report:
            try:
                tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
                config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
                fix_config(config, facts, gguf)
                model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, config=config, dtype="float32")
            except Exception as exc:  # the gguf reader raises many kinds; all mean "not a usable model"
                # transformers often says why only in a log record ("see the above report"): show it.
                why = f"{exc}" + (f"; transformers reported: {report()}" if report() else "")
                raise ModelLoadError(f"cannot convert the GGUF file {gguf} (architecture {facts.architecture}): {why}. "
                                     "Load its Hugging Face folder instead (model: <folder>), if you have one") from exc
    finally:
        hf_logging.disable_progress_bar()
    _fix_end_of_turn(tok)
    _save_folder(folder, model, tok)


@contextlib.contextmanager
def transformers_report():
    """Collect transformers' warnings and errors meanwhile (its log is otherwise silenced, see
    ``load_model``); yields a function giving them as one line."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    root = logging.getLogger("transformers")  # the library's root logger: every module's records pass it
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers = [Keep()]
    root.setLevel(logging.WARNING)
    try:
        yield lambda: " | ".join(" ".join(line.split()) for line in lines)[-2000:]
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)




def _fix_end_of_turn(tok) -> None:
    # The GGUF conversion sets eos to <|im_start|>; ChatML models end a turn with <|im_end|>.
    if "<|im_end|>" in tok.get_vocab():
        tok.eos_token = "<|im_end|>"
