"""`reco state dump`: every user's state from the stores under --state-dir, as deterministic
JSON (sorted keys): equal state gives byte-equal output, whatever worker or host wrote it.
With a pseudonymisation key the users are keyed by their pseudonyms, as the store is; `--models`
adds the retention index (pseudonym -> last event ts) and clock, never the sealed ids."""
from __future__ import annotations

from pathlib import Path

import orjson

from online_models.state import binrows
from online_models.state.store import (MODEL, RETENTION_CLOCK, RETENTION_INDEX, USER, PartitionStore,
                                       partition_stores, retention_ts)


def dump_state(state_dir: Path, topic: str, include_models: bool = False) -> bytes:
    users: dict[str, object] = {}
    positions: dict[str, int | None] = {}
    models: dict[str, dict[str, object]] = {}
    retention: dict[str, dict[str, object]] = {}
    for partition, path in partition_stores(state_dir, topic).items():
        store = PartitionStore(path, read_only=True)
        try:
            positions[str(partition)] = store.position
            for key, raw in store.scan(USER):
                users[key[len(USER):].decode()] = orjson.loads(raw)
            if include_models:
                rows = models.setdefault(str(partition), {})
                for key, raw in store.scan(MODEL):
                    rows[key[len(MODEL):].decode().replace("\x00", "/")] = binrows.readable(raw)
                clock = store.get(RETENTION_CLOCK)
                if clock is not None:
                    retention[str(partition)] = {"clock": int(clock), "last_ts": {
                        key[len(RETENTION_INDEX) + 8:].decode(): retention_ts(key)
                        for key, _ in store.scan(RETENTION_INDEX)}}
        finally:
            store.close()
    out: dict[str, object] = {"positions": positions, "users": users}
    if include_models:
        out["models"] = models
        if retention:
            out["retention"] = retention
    return orjson.dumps(out, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
