"""A person's own profile, gathered (online_models/profile.py says what it shows and how): the
user's state rows and opt-out marker, and their current list from `recommendations`.

Two sources of the rows, one profile:
- `from_stores`: the worker's RocksDB stores under the state directory, opened read-only (as `reco
  state dump` does: it works beside a running worker) — `reco explain`, on a worker's host;
- `from_changelog`: the state changelog topic — `GET /users/{user_id}/profile/` on `reco serve`,
  which owns no store. Each partition is read from its newest snapshot (the offset the workers
  commit, decision 0014) to its end, through the same ChainReader a restore uses, so only
  committed intervals of the partition's chain of owners count; rows of other users are never
  kept, only counted through the protocol.
Every partition is looked at: the engine cannot know how producers partitioned the user (a user
whose events went to two partitions has a profile in each, and both are shown). An opt-out marker
is kept by every shard.
"""
from __future__ import annotations

import time
import uuid

import orjson
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from online_models.profile import profile
from online_models.state.pseudonyms import Pseudonyms
from online_models.state.store import OPT_OUT, PSEUDONYM_KEY, USER, PartitionStore, partition_stores, user_key
from online_models.state.user_state import UserState
from online_models.variants import assign
from streams.clients import consumer, partition_for
from streams.settings import Settings
from streams.worker.changelog import ChainReader, NotAChainStart

OTHER_ROW = b"\x01"  # stands in for every row of another user: the protocol still sees each record


class ProfileError(RuntimeError):
    """The profile cannot be given (wrong key, unreadable changelog, too slow); one line."""


class _ReadAgain(Exception):
    """A read from a snapshot that turned out unusable: the partition is read from its start."""


def _keys(settings: Settings) -> Pseudonyms:
    return settings.engine_config().pseudonyms


def _rows_of(ids: Pseudonyms, user_id: str) -> tuple[bytes, bytes]:
    """The user's state row key and opt-out marker key (engine.py: by pseudonym with a key)."""
    row = user_key(ids.pseudonym(user_id))
    return row, OPT_OUT + row[len(USER):]


def _check_key(ids: Pseudonyms, stored: bytes | None, has_users: bool, where: str) -> None:
    """Looked up with another pseudonymisation key than the workers', a user would silently seem
    unknown: refuse instead (as the worker refuses such a store)."""
    if stored is not None and stored.decode() != ids.fingerprint:
        raise ProfileError(f"{where} is pseudonymised with the key of fingerprint {stored.decode()}, "
                           + ("not this RECO_PSEUDONYMIZE_KEY" if ids.keyed else "and RECO_PSEUDONYMIZE_KEY is not set")
                           + ": set the workers' key")
    if stored is None and ids.keyed and has_users:
        raise ProfileError(f"{where} is keyed by raw user ids but RECO_PSEUDONYMIZE_KEY is set: unset it, "
                           "as the workers have it")


def _found(rows: dict[bytes, bytes | None], row: bytes, opt: bytes) -> tuple[UserState | None, bool]:
    raw = rows.get(row)
    return (UserState.from_bytes(raw) if raw is not None else None), rows.get(opt) is not None


def from_stores(settings: Settings, user_id: str) -> tuple[dict[int, UserState], bool]:
    """(state per partition holding one, opted out?) from the stores under the state directory."""
    ids = _keys(settings)
    row, opt = _rows_of(ids, user_id)
    states, opted_out = {}, False
    for partition, path in partition_stores(settings.state_dir, settings.interactions_topic).items():
        store = PartitionStore(path, read_only=True)
        try:
            _check_key(ids, store.get(PSEUDONYM_KEY), next(store.scan(USER), None) is not None, f"the store {path}")
            state, marked = _found({row: store.get(row), opt: store.get(opt)}, row, opt)
        finally:
            store.close()
        if state is not None:
            states[partition] = state
        opted_out = opted_out or marked
    return states, opted_out


def from_changelog(settings: Settings, user_id: str, timeout_s: float) -> tuple[dict[int, UserState], bool]:
    """(state per partition holding one, opted out?) from the committed state in the changelog."""
    ids = _keys(settings)
    row, opt = _rows_of(ids, user_id)
    wanted = {row, opt, PSEUDONYM_KEY}
    deadline = time.monotonic() + timeout_s
    topic = settings.changelog_topic
    # The workers' group: where they commit each partition's newest snapshot offset. This client
    # only reads those offsets; it never joins the group.
    client = consumer(settings, group_id=settings.group_id, **{"enable.partition.eof": True})
    states, opted_out = {}, False
    try:
        meta = client.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return {}, False
        parts = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        snapshots = {tp.partition: tp.offset for tp in client.committed(parts, timeout=10)}
        for tp in parts:
            since = max(snapshots.get(tp.partition, 0), 0)
            try:
                rows, users = _read(client, tp.partition, since, wanted, topic, deadline)
            except _ReadAgain:
                rows, users = _read(client, tp.partition, 0, wanted, topic, deadline)
            _check_key(ids, rows.get(PSEUDONYM_KEY), users, f"changelog {topic} partition {tp.partition}")
            state, marked = _found(rows, row, opt)
            if state is not None:
                states[tp.partition] = state
            opted_out = opted_out or marked
    finally:
        client.close()
    return states, opted_out


def _read(client, partition: int, since: int, wanted: set[bytes], topic: str,
          deadline: float) -> tuple[dict[bytes, bytes], bool]:
    """The committed values of `wanted` in one changelog partition, read from `since` to its end,
    and whether it holds any user row at all."""
    held: dict[bytes, bytes | None] = {}
    users = False

    def apply(rows: dict[bytes, bytes | None]) -> None:
        held.update((k, v) for k, v in rows.items() if k in wanted)

    reader = ChainReader(apply, held.clear)
    client.assign([TopicPartition(topic, partition, since if since > 0 else OFFSET_BEGINNING)])
    while True:
        if time.monotonic() > deadline:
            raise ProfileError(f"reading the state changelog {topic} took too long (partition {partition}); "
                               "try again, or run `reco explain` on a worker's host")
        for msg in client.consume(1000, 0.2):
            if msg.partition() != partition:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    try:
                        reader.finish()
                    except NotAChainStart as e:
                        raise _unreadable(topic, partition, since, e) from None
                    return {k: v for k, v in held.items() if v is not None}, users
                if err.code() == KafkaError._AUTO_OFFSET_RESET and since > 0:
                    raise _ReadAgain()  # the snapshot's offset is gone (retention, compaction)
                raise ProfileError(f"reading the state changelog {topic} partition {partition}: {err.str()}")
            key, value = msg.key() or b"", msg.value()
            if not key.startswith(b"\x00"):  # a state row (protocol records start with \0)
                users = users or key.startswith(USER)
                if key not in wanted:
                    key, value = OTHER_ROW, None
            try:
                reader.feed(key, value, msg.headers())
            except NotAChainStart as e:
                raise _unreadable(topic, partition, since, e) from None
            if reader.suspect and since > 0:
                raise _ReadAgain()


def _unreadable(topic: str, partition: int, since: int, why: Exception) -> Exception:
    if since > 0:
        return _ReadAgain()
    return ProfileError(f"the state changelog {topic} partition {partition} does not hold a complete state ({why})")


def current_list(settings: Settings, user_id: str, timeout_s: float = 30.0) -> dict | None:
    """The user's latest value on `recommendations` (None: no list, or a deleted one): their
    partition, as the workers' producer chose it, read to its end."""
    topic = settings.recommendations_topic
    client = consumer(settings, group_id=f"reco-explain-{uuid.uuid4().hex[:8]}", **{"enable.partition.eof": True})
    deadline = time.monotonic() + timeout_s
    key, latest = user_id.encode(), None
    try:
        meta = client.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return None
        partition = partition_for(user_id, len(meta.partitions))
        client.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        while time.monotonic() < deadline:
            for msg in client.consume(1000, 0.2):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return orjson.loads(latest) if latest is not None else None
                    raise ProfileError(f"reading {topic} partition {partition}: {err.str()}")
                if msg.key() == key:
                    latest = msg.value()
        raise ProfileError(f"reading {topic} partition {partition} took over {timeout_s:g} s")
    finally:
        client.close()


def build(settings: Settings, user_id: str, states: dict[int, UserState], opted_out: bool,
          recommendation: dict | None) -> dict:
    """The profile of `user_id` from what was gathered (online_models/profile.py)."""
    config = settings.engine_config()
    ids = config.pseudonyms
    return profile(user_id, states, opted_out, assign(user_id, config.variants).name, recommendation,
                   ids.pseudonym(user_id) if ids.keyed else None)


def to_json(p: dict, indent: bool = False) -> bytes:
    """Stable JSON: sorted keys (equal profiles, equal bytes)."""
    return orjson.dumps(p, option=orjson.OPT_SORT_KEYS | (orjson.OPT_INDENT_2 if indent else 0))
