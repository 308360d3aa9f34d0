"""A cache folder written whole or not at all: the converted models (``gguf_cache``), the tiny
family GGUFs (``families``) and llama.cpp's converter (``llama_convert``) are each made once into
the cache folder (``models.default_cache_dir``), and several processes (nodes, tests) may make the
same one at the same time or crash half way.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import time

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


def discard_folder(folder: pathlib.Path) -> None:
    # Renamed first, so no other process takes the half-deleted folder for a whole one.
    aside = folder.with_name(f"{folder.name}.tmp-discarded-{os.getpid()}")
    try:
        folder.rename(aside)
    except FileNotFoundError:  # another process discarded it first
        return
    shutil.rmtree(aside, ignore_errors=True)
