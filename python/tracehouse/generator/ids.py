"""Deterministic ids and small vectorised helpers: hashing, hex rendering, Arrow builders."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tracehouse.contract.schemas import TIMESTAMP

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def mix64(*parts: np.ndarray | int) -> np.ndarray:
    """A splitmix64-style hash of the parts, element-wise: stable across runs and platforms."""
    arrays = [np.asarray(p).astype(np.uint64) for p in parts]
    n = max((a.size for a in arrays), default=1)
    h = np.full(n, 0x243F6A8885A308D3, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for a in arrays:
            h = h ^ (a + _GOLD + (h << np.uint64(6)) + (h >> np.uint64(2)))
            h = (h ^ (h >> np.uint64(30))) * _M1
            h = (h ^ (h >> np.uint64(27))) * _M2
            h = h ^ (h >> np.uint64(31))
    return h


# byte -> its two hex characters, as one uint16 whose bytes (in memory) are the text
_HEX_PAIRS = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), np.uint16)


def hex_matrix(*words: np.ndarray, prefix: str = "") -> np.ndarray:
    """The text of :func:`hex_ids` as an (n, width) uint8 matrix, one row per id."""
    n = words[0].size
    pre = np.frombuffer(prefix.encode(), np.uint8)
    out = np.empty((n, pre.size + 16 * len(words)), np.uint8)
    out[:, : pre.size] = pre
    for k, w in enumerate(words):
        b = np.asarray(w, np.uint64).astype(">u8").view(np.uint8).reshape(n, 8)
        a = pre.size + 16 * k
        out[:, a : a + 16] = _HEX_PAIRS[b].view(np.uint8)
    return out


def fixed_strings(matrix: np.ndarray) -> pa.StringArray:
    """One string per row of an (n, width) uint8 matrix of ASCII text."""
    n, width = matrix.shape
    data = np.ascontiguousarray(matrix)
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def hex_ids(*words: np.ndarray, prefix: str = "") -> pa.StringArray:
    """Lowercase hex strings, 16 characters per uint64 word, optionally after a prefix."""
    return fixed_strings(hex_matrix(*words, prefix=prefix))


def labels(values: Sequence[str], idx: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """``values[idx]`` as an Arrow string array, null where ``mask`` is false."""
    arr = pc.take(pa.array(list(values), pa.string()), pa.array(np.asarray(idx, np.int64)))
    if mask is not None:
        arr = pc.if_else(pa.array(mask), arr, pa.scalar(None, pa.string()))
    return arr


def timestamps(t_us: np.ndarray) -> pa.Array:
    """µs since the Unix epoch as the contract's UTC timestamp type."""
    return pa.array(np.asarray(t_us, np.int64), type=pa.int64()).view(TIMESTAMP)


def list_array(offsets: np.ndarray, values: pa.Array) -> pa.ListArray:
    """A list array from int32 offsets (length n + 1) and the flat values."""
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)


def ragged(matrix: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise lists of ``matrix[i, j]`` where ``keep[i, j]``: (int32 offsets, flat values)."""
    counts = keep.sum(axis=1)
    offsets = np.zeros(len(counts) + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    return offsets, matrix[keep]


def choice_rows(rng: np.random.Generator, cum: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Sample a column per element from the cumulative weight rows ``cum[row]``."""
    u = rng.random(len(row))
    return (u[:, None] >= cum[row]).sum(axis=1).clip(0, cum.shape[1] - 1)


def cumulative(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """Row-normalised cumulative weights, padded to equal width with 1.0."""
    width = max(len(r) for r in rows)
    out = np.ones((len(rows), width))
    for i, r in enumerate(rows):
        w = np.asarray(r, float)
        out[i, : len(r)] = np.cumsum(w / w.sum())
        out[i, len(r) - 1 :] = 1.0
    return out
