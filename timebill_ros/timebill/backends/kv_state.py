"""llama.cpp's sequence-state bytes (``llama_state_seq_get_data`` / ``_set_data``), read and written.

This is how a KV cache computed (and compressed) by the torch prefill is handed to llama.cpp.
The layout is the one ``llama_kv_cache::state_write`` writes in the llama.cpp vendored by
llama-cpp-python 0.3.36 (src/llama-kv-cache.cpp), for one sequence of a model without
M-RoPE: a header, one (pos, n_seq_id=1, seq_id) triple per cell, then per layer the K rows
(one row of n_kv_heads*head_dim f16 per cell), then per layer V: transposed (n_kv_heads*head_dim
rows of one f16 per cell) when flash attention is off, else one row per cell like K. ``SeqState.parse`` of a state llama.cpp wrote
and ``pack`` of what it parsed give back the same bytes (tested), so the layout is checked
against the library in use, not assumed.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

GGML_TYPE_F16 = 1
_CELL = np.dtype([("pos", "<i4"), ("n_seq", "<u4"), ("seq", "<i4")])


class StateLayoutError(ValueError):
    """The bytes are not a sequence state this module understands (another llama.cpp version?)."""


@dataclass
class SeqState:
    """One sequence's cache: ``prefix`` (the bytes before the cell count), the cells' positions,
    and ``keys``/``values`` as [n_layer, cells, n_kv_heads*head_dim] float16 in llama.cpp's order
    (to ``pack``, any [n_layer, cells, ...] float16 arrays whose trailing dimensions make a row)."""

    prefix: bytes
    positions: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    v_trans: bool = True

    @classmethod
    def parse(cls, buf: bytes, n_prefix_u32: int) -> "SeqState":
        """Read a state; ``n_prefix_u32`` is how many u32 come before the cell count (see ``probe_prefix``)."""
        mv = memoryview(buf)
        off = 4 * n_prefix_u32
        (cells,) = struct.unpack_from("<I", mv, off)
        off += 4
        meta = np.frombuffer(mv, _CELL, cells, off)
        if cells and (np.any(meta["n_seq"] != 1)):
            raise StateLayoutError("a cell belongs to more than one sequence: not a single-sequence state")
        off += meta.nbytes
        v_trans, n_layer = struct.unpack_from("<II", mv, off)
        off += 8
        if v_trans not in (0, 1):
            raise StateLayoutError(f"unexpected v_trans {v_trans}")

        def rows(off):
            typ, row = struct.unpack_from("<iQ", mv, off)
            if typ != GGML_TYPE_F16:
                raise StateLayoutError(f"cache type {typ} is not f16")
            data = np.frombuffer(mv, np.float16, cells * row // 2, off + 12).reshape(cells, row // 2)
            return data, off + 12 + cells * row

        keys, values = [], []
        for _ in range(n_layer):
            k, off = rows(off)
            keys.append(k)
        for _ in range(n_layer):
            if not v_trans:
                v, off = rows(off)
                values.append(v)
                continue
            v_type, el, n_embd = struct.unpack_from("<iII", mv, off)
            off += 12
            if v_type != GGML_TYPE_F16 or el != 2:
                raise StateLayoutError(f"V cache type {v_type} (element size {el}) is not f16")
            values.append(np.frombuffer(mv, np.float16, n_embd * cells, off).reshape(n_embd, cells).T)
            off += n_embd * cells * 2
        if off != len(buf):
            raise StateLayoutError(f"{len(buf) - off} bytes left over after the last layer")
        return cls(bytes(mv[: 4 * n_prefix_u32]), meta["pos"].copy(), np.stack(keys), np.stack(values), bool(v_trans))

    def pack(self) -> bytearray:
        """The state's bytes, written in place into one buffer (a 1,500-token cache is ~35 MB:
        every extra copy costs milliseconds of the prefill)."""
        n_layer, cells = self.keys.shape[:2]
        row_shape = self.keys.shape[2:]
        width = int(np.prod(row_shape))
        v_head = 12  # i32 type + (u32 element size + u32 n_embd) or u64 row size: 12 bytes either way
        size = len(self.prefix) + 4 + _CELL.itemsize * cells + 8 + n_layer * (12 + cells * width * 2) * 2
        buf = bytearray(size)
        buf[: len(self.prefix)] = self.prefix
        off = len(self.prefix)
        struct.pack_into("<I", buf, off, cells)
        off += 4
        meta = np.frombuffer(buf, _CELL, cells, off)
        meta["pos"], meta["n_seq"], meta["seq"] = self.positions, 1, 0
        off += meta.nbytes
        struct.pack_into("<II", buf, off, int(self.v_trans), n_layer)
        off += 8
        for layer in self.keys:
            struct.pack_into("<iQ", buf, off, GGML_TYPE_F16, width * 2)
            np.frombuffer(buf, np.float16, cells * width, off + 12).reshape(cells, *row_shape)[:] = layer
            off += 12 + cells * width * 2
        for layer in self.values:
            if self.v_trans:  # one row per embedding element, one f16 per cell
                struct.pack_into("<iII", buf, off, GGML_TYPE_F16, 2, width)
                np.frombuffer(buf, np.float16, cells * width, off + v_head).reshape(*row_shape, cells)[:] = np.moveaxis(layer, 0, -1)
            else:
                struct.pack_into("<iQ", buf, off, GGML_TYPE_F16, width * 2)
                np.frombuffer(buf, np.float16, cells * width, off + v_head).reshape(cells, *row_shape)[:] = layer
            off += v_head + cells * width * 2
        return buf


def probe_prefix(buf: bytes, n_layer: int) -> int:
    """How many u32 precede the cell count in a state holding at least one cell.

    The stream header (n_stream, and in some builds a magic and a version before it) varies
    between llama.cpp versions; the rest does not. Each candidate is tried and the one that
    parses to the end with ``n_layer`` layers wins.
    """
    for n in range(1, 6):
        try:
            st = SeqState.parse(buf, n)
        except (StateLayoutError, struct.error, ValueError):
            continue
        if st.keys.shape[0] == n_layer and len(st.positions):
            return n
    raise StateLayoutError("cannot read llama.cpp's sequence state: unknown layout (llama-cpp-python is not 0.3.36?)")
