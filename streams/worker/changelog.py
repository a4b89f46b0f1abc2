"""The changelog's record protocol: which rows belong to a complete checkpoint interval and who
owns the partition, so that a restore applies committed state only — also on a broker that does
not honour read_committed (decision 0014).

Records of one changelog partition, in the order an owner `E` writes them:
  \\0fence\\0E      first thing a new owner writes, before it reads the changelog: every record
                   of an older owner that comes after it is a zombie's and never applied
  \\0claim\\0E      after E's restore: {"prev": epoch, "committed": seq, "position", "input_id",
                   "reseed"} — which of the previous owner's intervals E's state holds (the
                   previous owner's own commit markers may be compacted away, this stays)
  <row>  h: e=E s=n  a state row of E's interval n (user rows and the other rows that name a
                   user, as in the store: each on its own key, so compaction and forget reach it)
  \\0rows\\0E\\0n\\0p  h: e=E s=n  part p of interval n's model rows, packed (`pack_rows`): a few
                   records per checkpoint however many rows changed; the snapshot that makes
                   them unneeded deletes them one snapshot later (tombstones)
  \\0snapshot\\0E   {"seq": n}: interval n rewrites every row — a restore may start here
  \\0commit\\0E     {"seq": n, "position": P}: E's intervals up to n are complete; P is the next
                   input offset after them
Fence, claim and commit keys carry the epoch, so compaction keeps one of each per owner. Packed
rows have a key per interval: compaction never drops one, only their tombstones do.
Changelogs written before this protocol (rows without headers, `\\0position` markers) are read
as one legacy owner.
"""
from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import orjson

from online_models.state.store import MODEL
from online_models.state.store import POSITION as LEGACY_POSITION

FENCE = b"\x00fence\x00"
CLAIM = b"\x00claim\x00"
SNAPSHOT = b"\x00snapshot\x00"
COMMIT = b"\x00commit\x00"
ROWS = b"\x00rows\x00"
ROWS_FORMAT = b"R1"  # the packed rows' format and version: what `unpack_rows` reads
PACKED_BYTES = 256 << 10  # rows per packed record, by size: well under the brokers' 1 MiB record limit
_COUNT = struct.Struct("<I")
LEGACY = ""  # the epoch of records written before this protocol


def new_epoch() -> str:
    return uuid.uuid4().hex[:16]


def row_headers(epoch: str, seq: int) -> list[tuple[str, bytes]]:
    return [("e", epoch.encode()), ("s", str(seq).encode())]


def fence_record(epoch: str) -> tuple[bytes, bytes]:
    return FENCE + epoch.encode(), b"{}"


def claim_record(epoch: str, prev: str | None, committed: int | None, position: int | None,
                 input_id: str | None, reseed: bool) -> tuple[bytes, bytes]:
    return CLAIM + epoch.encode(), orjson.dumps({"prev": prev, "committed": committed, "position": position,
                                                "input_id": input_id, "reseed": reseed})


def snapshot_record(epoch: str, seq: int, garbage: list | None = None) -> tuple[bytes, bytes]:
    """`garbage`: the packed rows' ranges written before this snapshot (`Ranges`), which the
    next snapshot deletes."""
    return SNAPSHOT + epoch.encode(), orjson.dumps({"seq": seq, "garbage": garbage or []})


def rows_key(epoch: str, seq: int, part: int) -> bytes:
    return ROWS + f"{epoch}\x00{seq}\x00{part}".encode()


def pack_rows(rows: Iterable[tuple[bytes, bytes | None]], limit: int = PACKED_BYTES) -> Iterator[bytes]:
    """`rows` as packed records of about `limit` bytes each, in their order. Format R1, by
    column: row count (uint32), key lengths (uint32 each), value lengths (int32 each, -1: the
    row is deleted), the keys, the values; little-endian."""
    keys: list[bytes] = []
    values: list[bytes | None] = []
    size = 0
    for key, value in rows:
        keys.append(key)
        values.append(value)
        size += 8 + len(key) + (0 if value is None else len(value))
        if size > limit:
            yield _packed(keys, values)
            keys, values, size = [], [], 0
    if keys:
        yield _packed(keys, values)


def _packed(keys: list[bytes], values: list[bytes | None]) -> bytes:
    n = len(keys)
    key_lengths = np.fromiter(map(len, keys), dtype="<u4", count=n)
    value_lengths = np.fromiter((-1 if v is None else len(v) for v in values), dtype="<i4", count=n)
    return b"".join((ROWS_FORMAT, _COUNT.pack(n), key_lengths.tobytes(), value_lengths.tobytes(), b"".join(keys),
                     b"".join(v for v in values if v is not None)))


def unpack_rows(raw: bytes) -> dict[bytes, bytes | None]:
    if raw[:2] != ROWS_FORMAT:
        raise ValueError(f"packed changelog rows of an unknown format {raw[:2]!r} (this worker reads "
                         f"{ROWS_FORMAT!r}): a newer version wrote them")
    (n,) = _COUNT.unpack_from(raw, 2)
    at = 2 + _COUNT.size
    key_lengths = np.frombuffer(raw, dtype="<u4", count=n, offset=at).astype(np.int64)
    value_lengths = np.frombuffer(raw, dtype="<i4", count=n, offset=at + 4 * n).astype(np.int64)
    key_ends = (at + 8 * n + np.cumsum(key_lengths)).tolist()
    value_ends = (key_ends[-1] + np.cumsum(np.maximum(value_lengths, 0))).tolist() if n else []
    rows: dict[bytes, bytes | None] = {}
    key_at, value_at = at + 8 * n, key_ends[-1] if n else 0
    for key_end, value_end, deleted in zip(key_ends, value_ends, (value_lengths < 0).tolist()):
        rows[raw[key_at:key_end]] = None if deleted else raw[value_at:value_end]
        key_at, value_at = key_end, value_end
    return rows


class Ranges:
    """Which packed-rows records exist, as [epoch, first seq, last seq, most parts, fewest parts]
    runs: what a snapshot needs to delete them without a list of every key."""

    @staticmethod
    def add(ranges: list, epoch: str, seq: int, parts: int) -> None:
        if parts <= 0:
            return
        last = ranges[-1] if ranges else None
        # A run may span gaps and round every seq's parts up to its most (a tombstone of no record
        # costs a few bytes), as long as its most stays within twice its fewest: at most about
        # twice the tombstones of the records that exist, and a snapshot's many parts apart.
        if last is not None and last[0] == epoch and seq >= last[2] \
                and max(parts, last[3]) <= 2 * min(parts, last[4]):
            last[2] = seq
            last[3], last[4] = max(last[3], parts), min(last[4], parts)
        else:
            ranges.append([epoch, seq, seq, parts, parts])

    @staticmethod
    def keys(ranges: list) -> list[bytes]:
        return [rows_key(epoch, seq, part) for epoch, first, last, parts, *_ in ranges
                for seq in range(first, last + 1) for part in range(parts)]


def parse_rows_key(key: bytes) -> tuple[str, int, int]:
    epoch, seq, part = key[len(ROWS):].decode().split("\x00")
    return epoch, int(seq), int(part)


def commit_record(epoch: str, seq: int, position: int | None) -> tuple[bytes, bytes]:
    return COMMIT + epoch.encode(), orjson.dumps({"seq": seq, "position": position})


class Diverged(Exception):
    """A local store holds intervals the changelog's chain of owners dropped (it was a zombie)."""


class NotAChainStart(Exception):
    """The changelog does not begin with a complete state: recreated, truncated or foreign."""


@dataclass
class ChainReader:
    """Reads changelog records in offset order and applies exactly the committed intervals of
    the partition's chain of owners through `apply(rows)`.

    `local`/`skip` continue from a local store: its owner's epoch and the last seq its store
    already holds (those intervals are skipped, the rest of the chain goes on top). A read from
    the start of the log or from a snapshot leaves them unset."""
    apply: Callable[[dict[bytes, bytes | None]], None]
    reset: Callable[[], None] = lambda: None  # wipe what was applied so far
    local: str | None = None
    skip: int = -1
    current: str | None = None
    mid_log: bool = False  # started at a snapshot: a record of an owner not seen since is suspect
    pending: dict[int, dict[bytes, bytes | None]] = field(default_factory=dict)
    held: tuple[str | None, dict[int, dict[bytes, bytes | None]]] | None = None  # the last owner's, at a fence
    committed: dict[str, int] = field(default_factory=dict)
    known: set = field(default_factory=set)
    dirty: set = field(default_factory=set)  # keys whose newest record was not applied
    position: int | None = None
    input_id: str | None = None
    suspect: bool = False
    reseeding: str | None = None  # an owner that re-seeds the changelog, until its snapshot commits
    records: int = 0
    rows: int = 0  # rows read: a record of packed rows counts them all
    packed: dict = field(default_factory=dict)   # (epoch, seq) -> parts of packed rows since the last snapshot read
    garbage: list = field(default_factory=list)  # packed-rows ranges before it: the next snapshot deletes them
    boundaries: int = 0  # complete snapshots of the chain read (not a fenced owner's)
    model_keys: set = field(default_factory=set)  # model rows applied: a complete snapshot replaces them all
    _snapshot_at: tuple | None = None  # (epoch, seq, packed before it, its garbage) until its commit

    def __post_init__(self):
        if self.local is not None:
            self.current = self.local
            self.known.add(self.local)
            self.committed[self.local] = self.skip

    def feed(self, key: bytes, value: bytes | None, headers: list | None) -> None:
        if key.startswith(ROWS) and value is None:
            return  # a deleted packed record: a snapshot made it unneeded
        self.records += 1
        self.rows += 1
        first = self.records == 1 and self.current is None
        if key.startswith(FENCE):
            epoch = key[len(FENCE):].decode()
            if not first:
                if self.held is None:  # an owner that never claimed leaves the last real one held
                    self.held = (self.current, self.pending)
                else:
                    self._drop(self.pending)
            self.known.add(epoch)
            self.current, self.pending = epoch, {}
            return
        if key.startswith(CLAIM):
            epoch, claim = key[len(CLAIM):].decode(), orjson.loads(value)
            if first:
                raise NotAChainStart(f"the first record is the claim of owner {epoch}, not a fence")
            if epoch != self.current:
                return  # a claim after a newer fence: that owner was fenced during its restore
            if self.local is None and not self.mid_log and claim["prev"] is not None \
                    and claim["prev"] not in self.known and claim["prev"] != LEGACY:
                raise NotAChainStart(f"its first owner's state came from owner {claim['prev']}, whose "
                                     "records are not in it")
            if claim.get("reseed"):  # the owner's state came from elsewhere: its snapshot replaces all
                self.reseeding = epoch
                return
            if self.held is not None:
                prev, held = self.held
                kept = claim["committed"] if claim["prev"] == prev and claim["committed"] is not None else -1
                if self.local is not None and prev == self.local and kept < self.skip:
                    raise Diverged(f"the next owner kept intervals up to {kept} of owner {self.local}; "
                                   f"the local store holds up to {self.skip}")
                if kept >= 0:
                    self._apply_upto(held, kept, prev)
                self._drop(held)
                self.held = None
            self.position = claim["position"]
            if claim.get("input_id") is not None:
                self.input_id = claim["input_id"]
            return
        if key.startswith(SNAPSHOT):
            epoch, snapshot = key[len(SNAPSHOT):].decode(), orjson.loads(value)
            if first:
                self.current, self.mid_log = epoch, True
                self.known.add(epoch)
                self.committed[epoch] = snapshot["seq"] - 1
            if epoch == self.current:  # a fenced owner's snapshot is no boundary; this one is, once committed
                self._snapshot_at = (epoch, snapshot["seq"], set(self.packed), snapshot.get("garbage", []))
            return
        if key.startswith(COMMIT):
            epoch, commit = key[len(COMMIT):].decode(), orjson.loads(value)
            if first:
                raise NotAChainStart(f"the first record is a commit of owner {epoch}, not a fence")
            if epoch == self.current:
                if epoch == self.local and commit["seq"] <= self.skip:
                    return  # the local store holds it already
                if self.reseeding == epoch:  # the re-seeding owner's snapshot landed: it is the state
                    self.reseeding = None
                    if self.held is not None:
                        self._drop(self.held[1])
                        self.held = None
                    self.reset()
                    self.model_keys = set()
                self._apply_upto(self.pending, commit["seq"], epoch)
                self.position = commit["position"]
            elif self.mid_log and epoch not in self.known:
                self.suspect = True
            return
        if key == LEGACY_POSITION and not headers:
            if first or self.current == LEGACY:
                self.current = LEGACY
                self.known.add(LEGACY)
                self._apply_upto(self.pending, max(self.pending, default=0), LEGACY)
                self.position = int(value)
            return
        epoch, seq = _row_tag(headers)
        if key.startswith(ROWS):
            if first:
                raise NotAChainStart(f"the first record is packed rows of owner {epoch}, not a fence or a snapshot")
            written_by, written_in, part = parse_rows_key(key)
            self.packed[written_by, written_in] = max(self.packed.get((written_by, written_in), 0), part + 1)
            if epoch == self.current and not (epoch == self.local and seq <= self.skip):
                rows = unpack_rows(value)
                self.rows += len(rows) - 1
                self.pending.setdefault(seq, {}).update(rows)
            elif epoch != self.current and self.mid_log and epoch not in self.known:
                self.suspect = True
            return  # a fenced owner's packed rows shadow nothing: its own key, never compacted onto
        if first and epoch == LEGACY:
            self.current = LEGACY
            self.known.add(LEGACY)
        elif first:
            raise NotAChainStart(f"the first record is a row of owner {epoch}, not a fence or a snapshot")
        if epoch == self.current:
            if epoch == self.local and seq <= self.skip:
                return  # the local store holds it already
            self.pending.setdefault(seq, {})[key] = value
        else:
            if self.mid_log and epoch not in self.known:
                self.suspect = True
            self.dirty.add(key)

    def finish(self) -> None:
        """End of the read (the reader's own fence): what is still pending never committed."""
        if self.reseeding is not None:
            raise NotAChainStart(f"owner {self.reseeding} began re-seeding the changelog from its local "
                                 "store and died before the copy was complete")
        if self.held is not None:
            self._drop(self.held[1])
        self._drop(self.pending)

    def _boundary(self, snapshot: tuple) -> None:
        """A snapshot committed: what was packed before it is garbage for the next one."""
        _, _, before, garbage = snapshot
        earlier = {k: v for k, v in self.packed.items() if k in before}
        self.packed = {k: v for k, v in self.packed.items() if k not in before}
        self.garbage += self._ranges(earlier) + garbage
        self.boundaries += 1
        self._snapshot_at = None

    def packed_ranges(self) -> list:
        """The packed-rows records read since the last snapshot, as `Ranges`."""
        return self._ranges(self.packed)

    @staticmethod
    def _ranges(packed: dict) -> list:
        ranges: list = []
        for (epoch, seq), parts in packed.items():
            Ranges.add(ranges, epoch, seq, parts)
        return ranges

    def last_owner(self) -> tuple[str | None, int | None]:
        """The owner whose state this is and its last committed seq, for the next claim."""
        epoch = self.held[0] if self.held is not None else self.current
        return epoch, self.committed.get(epoch) if epoch is not None else None

    def _apply_upto(self, intervals: dict[int, dict], upto: int, epoch: str) -> None:
        rows: dict[bytes, bytes | None] = {}
        snapshot = self._snapshot_at
        for seq in sorted(intervals):
            if seq <= upto:
                interval = intervals.pop(seq)
                if snapshot is not None and snapshot[:2] == (epoch, seq):
                    # A complete snapshot holds every model row: any other applied so far is gone
                    # (its deletion may have been in a packed record since deleted itself).
                    applied = self.model_keys.union(k for k in rows if k.startswith(MODEL))
                    rows.update(dict.fromkeys(applied.difference(interval)))
                    self._boundary(snapshot)
                rows.update(interval)
        for key, value in rows.items():
            if key.startswith(MODEL):
                if value is None:
                    self.model_keys.discard(key)
                else:
                    self.model_keys.add(key)
        self.committed[epoch] = max(self.committed.get(epoch, -1), upto)
        if rows:
            self.apply(rows)
            self.dirty.difference_update(rows)

    def _drop(self, intervals: dict[int, dict]) -> None:
        for rows in intervals.values():
            self.dirty.update(rows)
        intervals.clear()


def _row_tag(headers: list | None) -> tuple[str, int]:
    epoch, seq = LEGACY, 0
    for name, raw in headers or ():
        if name == "e":
            epoch = raw.decode()
        elif name == "s":
            seq = int(raw)
    return epoch, seq
