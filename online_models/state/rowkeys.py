"""How a model's row keys are spelled in the store, so that no id can collide with another row.

A data row's key is the JSON array of its parts (`["scope","item"]`, `["item"]`): JSON escapes
every quote, backslash and control character, so any strings give a distinct, reversible key.
A model's own bookkeeping rows start with `#`, which no JSON array does.

Format 1 (before the `#format` row existed) joined parts with U+001F and kept the landmark
under "\\x00landmark": a category containing U+001F or an item called "\\x00landmark" corrupted
it. A store in format 1 is still read, and rewritten in the current format at the next checkpoint.
Format 3 keeps format 2's keys and stores co-visitation and MF rows as binary values
(binrows.py); a format 2 store is read and rewritten whole at its next checkpoint.
"""
from __future__ import annotations

import orjson

FORMAT = "#format"          # value: FORMAT_VERSION, written with a model's first rows
FORMAT_VERSION = 3
LANDMARK = "#landmark"      # a decayed model's landmark (see decay.py)

LEGACY_SEPARATOR = "\x1f"
LEGACY_LANDMARK = "\x00landmark"


def key(*parts: str) -> str:
    return orjson.dumps(parts).decode()


def parts(row_key: str) -> list[str]:
    return orjson.loads(row_key)


def is_data(row_key: str) -> bool:
    return row_key.startswith("[")


def from_legacy(rows: dict[str, object], split: bool) -> dict[str, object]:
    """Format-1 rows in format 2, read as format 1 read them (`split`: at the first U+001F)."""
    out: dict[str, object] = {}
    for old, value in rows.items():
        if old == LEGACY_LANDMARK:
            out[LANDMARK] = value
        elif split:
            out[key(*old.split(LEGACY_SEPARATOR, 1))] = value
        else:
            out[key(old)] = value
    return out
