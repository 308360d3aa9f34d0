"""llama.cpp's own Hugging Face -> GGUF converter (``convert_hf_to_gguf.py``), found or fetched.

The tests and ``benchmarks/architectures_bench.py`` check the fast path on GGUF files made by the
converter users make theirs with: a hand-written converter would only check itself. The converter
ships in the llama-cpp-python sdist (vendor/llama.cpp), with the ``gguf-py`` it is written against
(newer than PyPI's gguf 0.19.0, which transformers uses: the two never share a process, so it runs in
a subprocess). It is extracted once, from pip's cache or the package registry, into the cache folder
(~3 MB): a fresh CI machine needs nothing but the registry.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tarfile
import tempfile

from .cache_folder import write_folder_atomically
from .models import default_cache_dir

LLAMA_CPP_PYTHON = "0.3.36"  # requirements/llama.txt: the converter must match the llama.cpp that serves
_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")

# Run inside the subprocess. The converter recognises a BPE tokenizer by hashing its ids for one
# text against a table of published models; a tokenizer trained for a test is in no table, so the
# test names which of llama.cpp's pre-tokenizers to record instead (TIMEBILL_TOKENIZER_PRE).
_DRIVER = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
sys.argv = [os.path.join(sys.argv[1], "convert_hf_to_gguf.py")] + sys.argv[2:]
import convert_hf_to_gguf as c
pre = os.environ.get("TIMEBILL_TOKENIZER_PRE")
if pre:
    import conversion.base as b
    b.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
c.main()
"""


class ConverterUnavailable(RuntimeError):
    """llama.cpp's converter could not be found or fetched."""


def converter_dir(cache: str | os.PathLike | None = None) -> pathlib.Path:
    """The folder holding ``convert_hf_to_gguf.py`` (extracted once): $TIMEBILL_LLAMA_CONVERTER
    when set (a llama.cpp checkout), else the cache's copy, fetched with pip when missing."""
    if os.environ.get("TIMEBILL_LLAMA_CONVERTER"):
        path = pathlib.Path(os.environ["TIMEBILL_LLAMA_CONVERTER"]).expanduser()
        if not (path / "convert_hf_to_gguf.py").is_file():
            raise ConverterUnavailable(f"TIMEBILL_LLAMA_CONVERTER={path} has no convert_hf_to_gguf.py (point it at a llama.cpp checkout)")
        return path
    base = pathlib.Path(cache).expanduser() if cache else default_cache_dir()
    folder = base / f"llama.cpp-convert-{LLAMA_CPP_PYTHON}"
    if not (folder / "convert_hf_to_gguf.py").is_file():
        write_folder_atomically(folder, _extract_converter)
    return folder


def _extract_converter(dest: pathlib.Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # pip answers from its cache when setup.sh built llama-cpp-python on this machine.
        cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps",
               "--no-binary", ":all:", f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(pathlib.Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not sdists:
            raise ConverterUnavailable(f"cannot fetch the llama-cpp-python {LLAMA_CPP_PYTHON} sdist for llama.cpp's "
                                       f"converter ({' '.join(cmd)}): {done.stderr.strip()[-500:]}; or set "
                                       "TIMEBILL_LLAMA_CONVERTER to a llama.cpp checkout")
        prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
        with tarfile.open(sdists[0]) as tar:
            for m in tar.getmembers():
                rel = m.name[len(prefix):] if m.name.startswith(prefix) else None
                if rel and (m.isfile() and any(rel == p or rel.startswith(p) for p in _PARTS)):
                    m.name = rel
                    tar.extract(m, dest, filter="data")


def convert_to_gguf(hf_folder: str | os.PathLike, out: str | os.PathLike, outtype: str = "f16",
                    tokenizer_pre: str | None = None, cache: str | os.PathLike | None = None) -> pathlib.Path:
    """Convert a Hugging Face model folder into the GGUF file ``out`` with llama.cpp's converter.
    ``tokenizer_pre``: the llama.cpp pre-tokenizer to record for a tokenizer the converter does not
    recognise (tests' trained tokenizers), e.g. ``gpt-2``."""
    out = pathlib.Path(out)
    env = dict(os.environ, TIMEBILL_TOKENIZER_PRE=tokenizer_pre or "")
    cmd = [sys.executable, "-c", _DRIVER, str(converter_dir(cache)), str(hf_folder), "--outfile", str(out),
           "--outtype", outtype]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not out.is_file():
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"llama.cpp's converter failed on {hf_folder} (exit {done.returncode}):\n{tail}")
    return out
