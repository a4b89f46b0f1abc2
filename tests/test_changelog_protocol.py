"""The changelog's record protocol (decision 0014), record by record: a restore applies only the
complete intervals of the partition's chain of owners — never a partial interval, never a fenced
owner's writes — on a log as written and on the same log after compaction (latest per key)."""
from __future__ import annotations

import pytest

from streams.worker.changelog import (ChainReader, Diverged, NotAChainStart, claim_record, commit_record,
                                      fence_record, row_headers, snapshot_record)


class Log:
    """A changelog partition as a list of (key, value, headers) in offset order."""

    def __init__(self):
        self.records: list[tuple[bytes, bytes | None, list | None]] = []

    def fence(self, e):
        self.records.append((*fence_record(e), None))
        return len(self.records) - 1

    def claim(self, e, prev, committed, position, reseed=False):
        self.records.append((*claim_record(e, prev, committed, position, "in-1", reseed), None))

    def interval(self, e, seq, rows: dict, position, commit=True):
        for k, v in rows.items():
            self.records.append((k, v, row_headers(e, seq)))
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
