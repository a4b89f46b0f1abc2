"""One partition's durable state in its own RocksDB (rocksdict): user states, model rows and
the input position, always written together in one WriteBatch.

Key layout (bytes):
  u\\0<user_id>          -> UserState JSON (user_id: its pseudonym when a key is set, pseudonyms.py)
  r\\0i<ts><user_id>     -> the user's id, sealed: the retention index by last event time (ts:
                           8 bytes big-endian, so key order is time order); only with a TTL
  r\\0clock             -> the partition's newest event ts, the retention clock (decimal)
  k\\0pseudonym         -> fingerprint of the pseudonymisation key the user rows are keyed with
  m\\0<model>\\0<key>     -> model row JSON
  o\\0<user key>         -> the user opted out of profiling (engine.py: kept until they opt in)
  \\0position            -> next input offset to process (decimal)
  \\0meta                -> JSON: where this state sits in its changelog and which topics
                           (ids) it was built from — see streams/worker/changelog.py
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Iterator

import orjson
from rocksdict import AccessType, Options, Rdict, WriteBatch

USER = b"u\x00"
MODEL = b"m\x00"
OPT_OUT = b"o\x00"   # + what follows USER in the user's key: an opted-out user's marker row
POSITION = b"\x00position"
RESTORING = b"\x00restoring"  # present while a restore from the changelog is incomplete
META = b"\x00meta"
RETENTION = b"r\x00"
RETENTION_INDEX = RETENTION + b"i"
RETENTION_CLOCK = RETENTION + b"clock"
KEYS = b"k\x00"
PSEUDONYM_KEY = KEYS + b"pseudonym"


def user_key(user_id: str) -> bytes:
    """The user's row; `user_id` is the pseudonym when state is pseudonymised."""
    return USER + user_id.encode()


def retention_key(last_ts: int, user_id: str) -> bytes:
    return RETENTION_INDEX + max(last_ts, 0).to_bytes(8, "big") + user_id.encode()


def retention_ts(key: bytes) -> int:
    return int.from_bytes(key[len(RETENTION_INDEX):len(RETENTION_INDEX) + 8], "big")


def model_key(model: str, key: str) -> bytes:
    return MODEL + model.encode() + b"\x00" + key.encode()


STORE_DIR = re.compile(r"^(?P<topic>.+)-(?P<partition>\d+)$")


def store_path(state_dir: Path | str, topic: str, partition: int) -> Path:
    """Where the store of one input partition lives: `<state_dir>/<topic>-<partition>`."""
    return Path(state_dir) / f"{topic}-{partition}"


def partition_stores(state_dir: Path | str, topic: str) -> dict[int, Path]:
    """The stores under `state_dir` that belong to `topic`, by partition."""
    out = {}
    for path in sorted(Path(state_dir).glob(f"{topic}-*")):
        match = STORE_DIR.match(path.name)
        if match and match["topic"] == topic and path.is_dir():
            out[int(match["partition"])] = path
    return out


class PartitionStore:
    def __init__(self, path: str | Path, read_only: bool = False):
        self.path = Path(path)
        opts = Options(raw_mode=True)
        # Bounded memory per partition: two 8 MiB memtables instead of RocksDB's 64 MiB default.
        opts.set_write_buffer_size(8 << 20)
        opts.set_max_write_buffer_number(2)
        if read_only:  # inspection beside a running worker (RocksDB allows one writer)
            self._db = Rdict(str(self.path), options=opts, access_type=AccessType.read_only())
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            opts.create_if_missing(True)
            self._db = Rdict(str(self.path), options=opts)
        self._opts = opts
        self.position: int | None = None
        self.meta: dict = {}
        self.reload_position()

    def reload_position(self) -> None:
        raw = self._db.get(POSITION)
        self.position = int(raw) if raw is not None else None
        meta = self._db.get(META)
        self.meta = orjson.loads(meta) if meta is not None else {}

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def write(self, rows: dict[bytes, bytes | None], position: int | None, meta: dict | None = None) -> None:
        """Atomically apply `rows` (None deletes) together with the new input position and meta."""
        batch = WriteBatch(raw_mode=True)
        for key, value in rows.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if position is not None:
            batch.put(POSITION, str(position).encode())
        if meta is not None:
            batch.put(META, orjson.dumps(meta, option=orjson.OPT_SORT_KEYS))
        self._db.write(batch)
        if position is not None:
            self.position = position
        if meta is not None:
            self.meta = meta

    def erase(self, keys: list[bytes]) -> None:
        """Make deleted rows unreadable on disk too: flush the memtable (the WAL that held the
        values is dropped) and compact the keys' range, so no file keeps the old values."""
        if not keys:
            return
        self._db.flush()
        self._db.compact_range(min(keys), max(keys) + b"\x00")
        # The MANIFEST still names the removed files' first and last keys: reopening writes a new
        # one listing the live files only.
        self._db.close()
        self._db = Rdict(str(self.path), options=self._opts)

    def rows(self, prefixes: tuple[bytes, ...] = (USER, MODEL, RETENTION, KEYS, OPT_OUT)) -> Iterator[tuple[bytes, bytes]]:
        """Every data row (users, models, retention, key fingerprint, opt-outs), by prefix, in key
        order: what a snapshot copies."""
        for prefix in prefixes:
            yield from self.scan(prefix)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        it = self._db.iter()
        it.seek(prefix)
        while it.valid():
            key = it.key()
            if not key.startswith(prefix):
                break
            yield key, it.value()
            it.next()

    def count(self, prefix: bytes) -> int:
        return sum(1 for _ in self.scan(prefix))

    def is_empty(self) -> bool:
        it = self._db.iter()
        it.seek_to_first()
        return not it.valid()

    def needs_restore(self) -> bool:
        """Empty, or a restore was cut short (crash, SIGTERM): rebuild it from the changelog."""
        return self.is_empty() or self._db.get(RESTORING) is not None

    def begin_restore(self) -> None:
        """Wipe whatever a cut-short restore left and mark the store as being restored."""
        it = self._db.iter()
        it.seek_to_first()
        keys = []
        while it.valid():
            keys.append(it.key())
            it.next()
        self.write({**dict.fromkeys(keys), RESTORING: b"1"}, None)
        self.position, self.meta = None, {}

    def end_restore(self) -> None:
        self.write({RESTORING: None}, None)
        self.reload_position()

    def approximate_size(self) -> int:
        return sum(f.stat().st_size for f in self.path.glob("*") if f.is_file())

    def close(self) -> None:
        self._db.close()

    def destroy(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
