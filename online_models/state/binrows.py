"""Binary model rows: the two big shapes (an item's vector, an item's neighbours) as fixed-layout
little-endian bytes instead of JSON, so a checkpoint serialises them in a few numpy calls and
stores them in about half the bytes.

Every binary row starts with TAG, a byte no JSON value starts with, then its kind and version
in one byte; the other rows (counters, bookkeeping) stay JSON. A reader tells the two apart
row by row, so a store holding rows of both (format 2 rows not rewritten yet) reads as one.

  vector row    TAG b"v" | index int64 | bias float64 | last ts int64 | n × float64
  neighbours    TAG b"n" | count uint32 | count × id length uint32 | count × weight float64 | ids (UTF-8)
"""
from __future__ import annotations

import struct

import numpy as np
import orjson

TAG = b"\xb1"
VECTOR = TAG + b"v"
NEIGHBOURS = TAG + b"n"
_HEAD = struct.Struct("<qdq")
_COUNT = struct.Struct("<I")


def is_binary(raw: bytes) -> bool:
    return raw[:1] == TAG


def encode(value: object) -> bytes:
    """A model row's value as the store keeps it: binary rows as they are, the rest as JSON."""
    return value if isinstance(value, bytes) else orjson.dumps(value)


def decode(raw: bytes) -> object:
    """What `encode` wrote, as the model's import_rows takes it (binary rows stay bytes)."""
    return raw if is_binary(raw) else orjson.loads(raw)


def pack_vector(index: int, bias: float, last_ts: int, vector: np.ndarray) -> bytes:
    return VECTOR + _HEAD.pack(index, bias, last_ts) + np.asarray(vector, dtype="<f8").tobytes()


def unpack_vector(raw: bytes) -> tuple[int, float, int, np.ndarray]:
    _expect(raw, VECTOR)
    index, bias, last_ts = _HEAD.unpack_from(raw, 2)
    return index, bias, last_ts, np.frombuffer(raw, dtype="<f8", offset=2 + _HEAD.size).astype(float)


def pack_neighbours(ids: list[str], weights: np.ndarray) -> bytes:
    encoded = [i.encode() for i in ids]
    return b"".join((NEIGHBOURS, _COUNT.pack(len(encoded)), np.array([len(e) for e in encoded], dtype="<u4").tobytes(),
                     np.asarray(weights, dtype="<f8").tobytes(), *encoded))


def unpack_neighbours(raw: bytes) -> dict[str, float]:
    _expect(raw, NEIGHBOURS)
    (n,) = _COUNT.unpack_from(raw, 2)
    at = 2 + _COUNT.size
    lengths = np.frombuffer(raw, dtype="<u4", count=n, offset=at).tolist()
    at += 4 * n
    weights = np.frombuffer(raw, dtype="<f8", count=n, offset=at).tolist()
    at += 8 * n
    out: dict[str, float] = {}
    for length, weight in zip(lengths, weights):
        out[raw[at:at + length].decode()] = weight
        at += length
    return out


def readable(raw: bytes) -> object:
    """A stored model row as plain data (binary rows decoded too), for `reco state dump` and tests."""
    if raw[:2] == VECTOR:
        index, bias, last_ts, vector = unpack_vector(raw)
        return [index, bias, last_ts, *vector.tolist()]
    return unpack_neighbours(raw) if is_binary(raw) else orjson.loads(raw)


def _expect(raw: bytes, kind: bytes) -> None:
    if raw[:2] != kind:
        raise ValueError(f"a binary model row of kind {raw[:2]!r} where {kind!r} was expected: "
                         "written by another version of the engine")
