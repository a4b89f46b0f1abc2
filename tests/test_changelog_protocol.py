"""The changelog's record protocol (decision 0014), record by record: a restore applies only the
complete intervals of the partition's chain of owners — never a partial interval, never a fenced
owner's writes — on a log as written and on the same log after compaction (latest per key)."""
from __future__ import annotations

import pytest

from streams.worker.changelog import (ROWS_FORMAT, ChainReader, Diverged, NotAChainStart, Ranges, claim_record,
                                      commit_record, fence_record, pack_rows, row_headers, rows_key, snapshot_record,
                                      unpack_rows)


class Log:
    """A changelog partition as a list of (key, value, headers) in offset order."""

    def __init__(self):
        self.records: list[tuple[bytes, bytes | None, list | None]] = []

    def fence(self, e):
        self.records.append((*fence_record(e), None))
        return len(self.records) - 1

    def claim(self, e, prev, committed, position, reseed=False):
        self.records.append((*claim_record(e, prev, committed, position, "in-1", reseed), None))

    def interval(self, e, seq, rows: dict, position, commit=True, packed: dict | None = None):
        for k, v in rows.items():
            self.records.append((k, v, row_headers(e, seq)))
        for n, value in enumerate(pack_rows((packed or {}).items(), limit=16)):
            self.records.append((rows_key(e, seq, n), value, row_headers(e, seq)))
        if commit:
            self.records.append((*commit_record(e, seq, position), row_headers(e, seq)))

    def snapshot(self, e, seq, rows: dict, position):
        self.records.append((*snapshot_record(e, seq), row_headers(e, seq)))
        self.interval(e, seq, rows, position)
        return len(self.records) - len(rows) - 2

    def compacted(self):
        last = {k: n for n, (k, _, _) in enumerate(self.records)}
        return [r for n, r in enumerate(self.records) if last[r[0]] == n]


def restore(records, **kw):
    state: dict = {}

    def apply(rows):
        for k, v in rows.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v

    reader = ChainReader(apply, state.clear, **kw)
    for key, value, headers in records:
        reader.feed(key, value, headers)
    reader.finish()
    return state, reader


def test_a_partial_interval_and_a_zombie_are_never_applied_also_after_compaction():
    log = Log()
    log.fence("A"); log.claim("A", None, None, None)
    log.interval("A", 0, {b"u1": b"1", b"u2": b"1"}, 10)
    log.interval("A", 1, {b"u1": b"2"}, 20)
    log.interval("A", 2, {b"u1": b"3", b"u3": b"3"}, 30, commit=False)   # kill -9 mid-checkpoint
    log.fence("B")                                                      # the next owner fences...
    log.interval("A", 2, {b"u2": b"zombie"}, 30)                        # ...a zombie A goes on
    log.claim("B", "A", 1, 20)                                          # B holds A up to seq 1
    # B's first interval rewrites what its restore found not applied (the corrections), so that
    # compaction keeps the committed value rather than a partial or zombie one.
    log.interval("B", 0, {b"u1": b"2", b"u2": b"1", b"u3": None, b"u4": b"4"}, 25)
    expected = {b"u1": b"2", b"u2": b"1", b"u4": b"4"}
    for records in (log.records, log.compacted()):
        state, reader = restore(records)
        assert state == expected
        assert reader.position == 25
    assert reader.last_owner() == ("B", 0)


def test_corrections_name_the_keys_whose_newest_record_was_not_applied():
    log = Log()
    log.fence("A"); log.claim("A", None, None, None)
    log.interval("A", 0, {b"u1": b"1"}, 10)
    log.interval("A", 1, {b"u1": b"2", b"u2": b"2"}, 20, commit=False)
    state, reader = restore(log.records)
    assert state == {b"u1": b"1"} and reader.position == 10
    assert reader.dirty == {b"u1", b"u2"}, "the next owner rewrites them so compaction keeps the truth"


def test_a_local_store_catches_up_and_a_zombie_store_is_refused():
    log = Log()
    fence_a = log.fence("A"); log.claim("A", None, None, None)
    log.interval("A", 0, {b"u1": b"1"}, 10)
    log.fence("B"); log.claim("B", "A", 0, 10)
    log.interval("B", 0, {b"u2": b"2"}, 20)
    # A's disk holds seq 0: it catches up with B's interval on top.
    state, reader = restore(log.records[fence_a + 1:], local="A", skip=0)
    assert state == {b"u2": b"2"} and reader.position == 20
    # A's disk holds seq 1, which B's claim did not keep (A was a zombie): not trusted.
    with pytest.raises(Diverged):
        restore(log.records[fence_a + 1:], local="A", skip=1)


def test_a_restore_starts_at_a_snapshot_and_refuses_a_truncated_log():
    log = Log()
    log.fence("A"); log.claim("A", None, None, None)
    log.interval("A", 0, {b"u1": b"1", b"u2": b"1"}, 10)
    log.interval("A", 1, {b"u2": None}, 15)
    at = log.snapshot("A", 2, {b"u1": b"1"}, 15)
    log.interval("A", 3, {b"u3": b"3"}, 20)
    assert restore(log.records[at:])[0] == restore(log.records)[0] == {b"u1": b"1", b"u3": b"3"}
    log.fence("B"); log.claim("B", "A", 3, 20)
    truncated = log.records[len(log.records) - 2:]                       # retention ate the start
    truncated_mid = log.records[3:]                                      # starts with a row
    for records in (truncated, truncated_mid):
        with pytest.raises(NotAChainStart):
            restore(records)


def test_a_reseed_replaces_everything_only_once_its_snapshot_committed():
    log = Log()
    log.fence("A"); log.claim("A", None, None, None)
    log.interval("A", 0, {b"old": b"1"}, 10)
    log.fence("B"); log.claim("B", None, None, 99, reseed=True)         # B's disk had other state
    half = list(log.records)
    log.snapshot("B", 0, {b"u1": b"x"}, 99)
    state, reader = restore(log.records)
    assert state == {b"u1": b"x"} and reader.position == 99
    with pytest.raises(NotAChainStart):  # B died while copying: refuse rather than restore less
        restore(half + [(b"u1", b"x", row_headers("B", 0))])


def test_packed_rows_keep_order_and_deletes_across_parts_and_refuse_an_unknown_format():
    rows = {f"m\x00covisit\x00[\"i{n}\"]".encode(): (None if n % 3 == 0 else b"x" * n) for n in range(40)}
    parts = list(pack_rows(rows.items(), limit=64))
    assert len(parts) > 5 and all(p.startswith(ROWS_FORMAT) for p in parts)
    merged: dict = {}
    for p in parts:
        merged.update(unpack_rows(p))
    assert list(merged.items()) == list(rows.items())
    assert list(pack_rows([])) == []
    with pytest.raises(ValueError, match="unknown format"):
        unpack_rows(b"R9" + parts[0][2:])


def test_packed_model_rows_apply_at_their_commit_only_and_say_which_records_exist():
    log = Log()
    log.fence("A"); log.claim("A", None, None, None)
    log.interval("A", 0, {b"u1": b"1"}, 10, packed={b"m1": b"a", b"m2": b"a", b"m3": b"a"})
    log.interval("A", 1, {}, 20, packed={b"m1": b"b", b"m2": None})
    log.interval("A", 2, {}, 30, packed={b"m1": b"partial"}, commit=False)   # kill -9 mid-checkpoint
    log.fence("B")
    log.interval("A", 2, {}, 30, packed={b"m3": b"zombie"})                   # a zombie A goes on
    log.claim("B", "A", 1, 20)
    log.interval("B", 0, {}, 25, packed={b"m4": b"4"})
    expected = {b"u1": b"1", b"m1": b"b", b"m3": b"a", b"m4": b"4"}
    state, reader = restore(log.records)
    assert state == expected and reader.position == 25
    assert b"m3" not in reader.dirty, "a fenced owner's packed record has its own key: nothing to correct"
    assert {(e, s) for e, s, *_ in reader.packed_ranges()} >= {("A", 0), ("B", 0)}
    assert reader.rows > reader.records, "a packed record counts every row it holds"
    # A snapshot makes everything packed before it garbage for the snapshot after it; the
    # tombstones that snapshot writes are skipped by a later read.
    at = log.snapshot("B", 1, {b"u1": b"1"}, 25)
    log.records[at] = (*snapshot_record("B", 1, reader.packed_ranges()), row_headers("B", 1))
    log.interval("B", 2, {}, 40, packed={b"m5": b"5"})
    tombstones = [(k, None, None) for k in Ranges.keys(reader.packed_ranges())]
    assert rows_key("A", 0, 0) in {k for k, _, _ in tombstones}
    later, after = restore(log.records[at:] + tombstones)
    assert later == {b"u1": b"1", b"m5": b"5"}
    assert after.garbage == reader.packed_ranges() and after.packed_ranges() == [["B", 2, 2, 1, 1]]


def test_ranges_cover_each_written_key_and_keep_a_snapshot_run_apart():
    ranges: list = []
    for seq, parts in ((0, 2), (1, 1), (3, 2), (4, 40), (5, 1)):
        Ranges.add(ranges, "A", seq, parts)
    Ranges.add(ranges, "B", 0, 1)
    keys = set(Ranges.keys(ranges))
    assert {rows_key("A", 0, 1), rows_key("A", 3, 1), rows_key("A", 4, 39), rows_key("B", 0, 0)} <= keys
    assert len(ranges) == 4 and len(keys) < 60, "the snapshot's 40 parts are not multiplied by every interval"
    ramp: list = []
    for seq in range(1000):
        Ranges.add(ramp, "A", seq, 1)
    for n, parts in enumerate((2, 4, 8, 16, 32, 64)):
        Ranges.add(ramp, "A", 1000 + n, parts)
    written = 1000 + 2 + 4 + 8 + 16 + 32 + 64
    assert len(Ranges.keys(ramp)) <= 2 * written, "a gradual ramp of parts does not multiply the tombstones"


def test_a_complete_snapshot_replaces_every_model_row_so_a_deleted_packed_record_resurrects_nothing():
    """Model rows written on their own keys (before packing) stay the newest record of their key;
    the packed record that deleted one is itself deleted after two snapshots. A read from the
    start must still not bring the row back: a committed snapshot holds every model row."""
    x, y = b"m\x00mf\x00x", b"m\x00mf\x00y"
    log = Log()
    log.fence("A"); log.claim("A", None, None, None)
    log.interval("A", 0, {x: b"x-old", y: b"y-old", b"u\x00u": b"1"}, 10)    # written per key
    log.fence("B"); log.claim("B", "A", 0, 10)
    log.interval("B", 0, {}, 20, packed={x: None, y: b"y-new"})              # x evicted, packed
    log.snapshot("B", 1, {b"u\x00u": b"1"}, 20)
    snapshot_rows = list(pack_rows([(y, b"y-new")]))
    at = len(log.records) - 1                                                  # before its commit
    log.records[at:at] = [(rows_key("B", 1, 0), snapshot_rows[0], row_headers("B", 1))]
    expected = {y: b"y-new", b"u\x00u": b"1"}
    gone = {rows_key("B", 0, 0)}
    compacted = [r for r in log.compacted() if r[0] not in gone]
    for records in (log.records, compacted):
        assert restore(records)[0] == expected


def test_a_snapshot_that_never_committed_moves_nothing_to_garbage():
    log = Log()
    log.fence("A"); log.claim("A", None, None, None)
    log.interval("A", 0, {}, 10, packed={b"m\x00a": b"1"})
    log.records.append((*snapshot_record("A", 1, []), row_headers("A", 1)))   # kill -9 mid-snapshot
    log.records.append((rows_key("A", 1, 0), next(pack_rows([(b"m\x00a", b"1")])), row_headers("A", 1)))
    state, reader = restore(log.records)
    assert state == {b"m\x00a": b"1"}
    assert reader.boundaries == 0 and reader.garbage == []
    assert reader.packed_ranges() == [["A", 0, 1, 1, 1]], "both intervals stay live: the snapshot before them is the fallback"
