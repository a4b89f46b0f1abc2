"""The engine worker: consume a batch → decode → validate → learn → rank → publish →
checkpoint. One Engine shard per assigned input partition, each with its own RocksDB store."""
from __future__ import annotations

import heapq
import logging
import threading
import time
from dataclasses import dataclass, field

import orjson
from confluent_kafka import (OFFSET_BEGINNING, TIMESTAMP_NOT_AVAILABLE, KafkaError, KafkaException, Message,
                             TopicPartition)

from online_models.catalog import Catalog
from online_models.compiled import warm_up
from online_models.engine import Engine
from online_models.events import Interaction
from online_models.state.store import USER, PartitionStore, partition_stores, store_path
from online_models.variants import assign
from streams import clients
from streams.http import Health
from streams.metrics import Metrics
from streams.settings import Settings
from streams.worker.catalog_feed import CatalogFeed
from streams.worker.changelog import claim_record, fence_record, new_epoch
from streams.worker.checkpoint import Checkpointer, DeliveryFailed
from streams.worker.decode import (CONTROL_ACTIONS, PLAUSIBLE_RECORD_TS, Rejected, UserControl, control_kind,
                                   decode_control, decode_interaction, dlq_headers)
from streams.worker.quality import CoverageWindow
from streams.worker.record_time import RecordClock
from streams.worker.restore import RestoreJob, packed_records, topic_ids

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0
GAUGE_INTERVAL_S = 5.0
TOPIC_GONE_AFTER_S = 20.0  # the input topic unknown to the broker this long: deleted, not a blip


def _catalog_time(msg: Message) -> int | None:
    """The time at which a record meets the catalogue: its Kafka timestamp, or None when it has
    no plausible one (then it meets the catalogue as read so far)."""
    ts_type, ts = msg.timestamp()
    return ts if ts_type != TIMESTAMP_NOT_AVAILABLE and ts >= PLAUSIBLE_RECORD_TS else None


@dataclass
class Acquiring:
    """A partition assigned but not yet processed: its store is being fenced, restored, claimed."""
    store: PartitionStore
    epoch: str | None = None
    fence: int | None = None
    ids: dict = field(default_factory=dict)
    job: RestoreJob | None = None
    local: bool = False    # the disk kept the store: only the changelog since its fence is read
    reseed: bool = False   # the changelog does not hold the store's history: write it all again


class Worker:
    def __init__(self, settings: Settings, metrics: Metrics | None = None, health: Health | None = None):
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.health = health or Health(self.metrics)
        self.config = settings.engine_config()
        self.catalog = Catalog()
        self.shards: dict[int, Engine] = {}
        self.restoring: dict[int, Acquiring] = {}   # assigned, paused until fenced, restored and claimed
        self._unowned_since: dict[int, float] = {}   # stores on disk of partitions owned elsewhere
        self.next_offset: dict[int, int] = {}       # per partition: first offset not yet applied
        self.uncheckpointed: dict[int, int] = {}    # per partition: position to write at the next checkpoint
        self.last_event_ts: dict[int, int] = {}
        self.stop_requested = threading.Event()
        self.coverage = CoverageWindow()
        self._producer = clients.producer(settings)
        self._consumer = clients.consumer(settings, error_cb=self._on_client_error)
        self._admin = clients.admin(settings)
        self.checkpointer = Checkpointer(self._producer, settings.changelog_topic,
                                         settings.interactions_topic, self.metrics, settings.delivery_timeout_s,
                                         settings.fault_kill_in_checkpoint, settings.snapshot_min_records,
                                         settings.snapshot_max_age_s)
        self._catalog_feed: CatalogFeed | None = None
        self._last_checkpoint = time.monotonic()
        self._last_gauges = 0.0
        self._outage = False                      # set by a client error, cleared by a good probe
        self._topic_missing_since: float | None = None
        self.fatal: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def run(self) -> None:
        """Process until stop() (or SIGTERM via the CLI); then checkpoint and leave the group."""
        s = self.settings
        self.health.set_ready(False, "loading the engine's compiled kernels")
        kernels = warm_up()  # before joining the group: a cold compile must not stall a rebalance
        self.metrics.kernel_warm_up.set(kernels.seconds)
        log.info("%s", kernels.describe())
        self.health.tick()
        clients.ensure_topics(s)
        clients.check_copartitioned(s)
        self._record_clock = RecordClock(s)
        self._catalog_feed = CatalogFeed(s, self.catalog, self._dead_letter)
        self._catalog_feed.catch_up()
        self._consumer.subscribe([s.interactions_topic], on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("worker started: group %s, topic %s, state in %s", s.group_id, s.interactions_topic, s.state_dir)
        clean = False
        try:
            while not self.stop_requested.is_set():
                self.health.tick()
                self._catalog_feed.fetch()
                if self.restoring:
                    self._advance_acquisitions()
                msgs = self._next_batch()
                if msgs:
                    self.process(msgs)
                if time.monotonic() - self._last_checkpoint >= CHECKPOINT_INTERVAL_S:
                    self._checkpoint_or_rewind()
                if time.monotonic() - self._last_gauges >= GAUGE_INTERVAL_S:
                    self._update_gauges()
            clean = True
        finally:
            # After an unexpected error the shards may hold part of a batch whose positions are
            # already taken: checkpointing that would skip the rest of the batch for good. The
            # store keeps the last checkpoint; the next start replays from there.
            self._shutdown(checkpoint=clean)
        if self.fatal is not None:
            raise RuntimeError("worker stopped after a rebalance failure") from self.fatal

    def stop(self) -> None:
        self.stop_requested.set()

    def _next_batch(self) -> list[Message]:
        """What has arrived, up to a batch: waiting only while nothing has (up to the batch
        timeout), never to fill a batch, so a worker that keeps up answers each event at once and
        one that falls behind gets full batches from its prefetched queue."""
        s = self.settings
        msgs = self._consumer.consume(s.batch_size, 0)
        if msgs or self.restoring:
            return msgs
        first = self._consumer.poll(s.batch_timeout_s)
        return [] if first is None else [first, *self._consumer.consume(s.batch_size - 1, 0)]

    def _shutdown(self, checkpoint: bool = True) -> None:
        if checkpoint:
            log.info("stopping: final checkpoint, leaving the group")
        else:
            log.error("stopping after an error: no checkpoint, the next start replays from the last one")
        try:
            if checkpoint:
                self.checkpoint()
            else:  # drop the shards first, or leaving the group (on_revoke) would checkpoint them
                self._close_shards(list(self.shards))
        finally:
            self._close_shards(list(self.restoring))  # mid-restore: the next owner restores again
            self._consumer.close()  # leaves the group; on_revoke closes the stores
            for engine in self.shards.values():
                engine.store.close()
            self.shards.clear()
            if self._catalog_feed:
                self._catalog_feed.close()
            self._producer.flush(10)
            self.health.set_ready(False, "stopped")

    # -- the batch path -------------------------------------------------------------------
    def process(self, msgs: list[Message]) -> None:
        """Learn from a batch and publish one list per touched user.

        A user's list is ranked right after their *last* event in the batch, not at the end of
        the batch: the list then depends only on the partition's event sequence, never on where
        batch boundaries fall — so a replay after a crash publishes byte-identical lists."""
        started = time.time()
        m = self.metrics
        events = self._in_time_order(self._decode(msgs))
        feed = self._catalog_feed
        stamps = [s for s in (_catalog_time(msg) for _, _, msg in events) if s is not None]
        if feed is not None and stamps:
            feed.read_past(max(stamps))
        last_of_user = {(p, ev.user_id): n for n, (p, ev, _) in enumerate(events)}
        changed: set[tuple[int, str]] = set()
        for n, (partition, ev, msg) in enumerate(events):
            if feed is not None:
                feed.apply_up_to(_catalog_time(msg))
            if isinstance(ev, UserControl):
                if ev.action == "opt_out":
                    self._opt_out(partition, ev.user_id)
                elif ev.action == "opt_in":
                    self._opt_in(partition, ev.user_id)
                else:
                    self._forget(partition, ev.user_id)
                changed.discard((partition, ev.user_id))  # only events after it publish again
                continue
            try:
                learned = self.shards[partition].learn(ev)
            except Exception as e:  # an engine bug met by a valid event: the event is not lost
                log.exception("partition %d: learning an event failed; it goes to the DLQ", partition)
                self._dead_letter(msg, "engine_error", f"{type(e).__name__}: {e}"[:300])
                learned = None
            m.event(ev.type, "failed" if learned is None else "applied" if learned.applied
                    else "opted_out" if learned.opted_out else "duplicate").inc()
            if learned is not None and learned.opted_out:  # a non-personalised list answers it
                self.last_event_ts[partition] = ev.ts
                changed.add((partition, ev.user_id))
            if learned is not None and learned.applied:
                if learned.hit is not None:
                    variant = assign(ev.user_id, self.config.variants).name
                    m.live_targets.labels(variant).inc()
                    if learned.hit:
                        m.live_hits.labels(variant).inc()
                self.coverage.seen(ev.item_id)
                self.last_event_ts[partition] = ev.ts
                changed.add((partition, ev.user_id))
            if self.config.user_ttl_ms:  # a late event alone is not kept (retention): no list either
                changed.difference_update((partition, u) for u in self._withdraw_expired(partition))
            if last_of_user[(partition, ev.user_id)] == n and (partition, ev.user_id) in changed:
                try:
                    self._publish(partition, ev.user_id, started, ev)
                except Exception:  # an engine bug: the events are learned, the next one publishes
                    log.exception("partition %d: ranking failed; no list published this time", partition)
                    m.publish_failures.inc()
        if self.config.user_ttl_ms:  # after the batch: nobody idle past the TTL at the new clock
            for partition, engine in self.shards.items():
                if engine.expire_idle():
                    self._withdraw_expired(partition)
        m.model_seconds.observe(time.time() - started)
        self._producer.poll(0)
        m.batch_size.observe(len(msgs))
        m.batch_seconds.observe(time.time() - started)

    @staticmethod
    def _in_time_order(events: list[tuple[int, Interaction | UserControl, Message]]) -> list:
        """The batch's partitions merged by record timestamp, each partition's own order kept (as
        Kafka Streams picks the partition with the oldest head): the one catalogue all shards
        share then only moves forward in time and each event meets the catalogue of its time."""
        by_partition: dict[int, list] = {}
        for item in events:
            by_partition.setdefault(item[0], []).append(item)
        if len(by_partition) < 2:
            return events
        return list(heapq.merge(*by_partition.values(), key=lambda e: (_catalog_time(e[2]) or 0, e[0])))

    def _decode(self, msgs: list[Message]) -> list[tuple[int, Interaction | UserControl, Message]]:
        """Valid events of owned partitions, in order; the rest go to the DLQ or are skipped."""
        out = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._AUTO_OFFSET_RESET:
                    self._reset_out_of_range(msg.partition(), err.str())
                elif err.code() != KafkaError._PARTITION_EOF:
                    clients.CLIENT_LOG.warning("consume error: %s", err.str())
                continue
            partition, offset = msg.partition(), msg.offset()
            if partition not in self.shards or offset < self.next_offset.get(partition, 0):
                continue  # revoked meanwhile, or already applied: the new owner / the store has it
            self.next_offset[partition] = self.uncheckpointed[partition] = offset + 1
            control = control_kind(msg.headers())
            if control is None:
                ts_type, record_ts = msg.timestamp()
                ev = decode_interaction(msg.key(), msg.value(), msg.topic(), partition, offset,
                                        self.settings.max_event_bytes,
                                        None if ts_type == TIMESTAMP_NOT_AVAILABLE else record_ts,
                                        int(self.settings.max_event_ahead_s * 1000),
                                        self._record_clock.now_ms(ts_type))
            elif control in CONTROL_ACTIONS:
                ev = decode_control(msg.key(), msg.value(), control)
            else:
                ev = Rejected("unknown_control", f"unknown control marker {control[:40]!r}")
            if isinstance(ev, Rejected):
                self.metrics.event("unknown", "invalid").inc()
                self._dead_letter(msg, ev.code, ev.reason)
            else:
                out.append((partition, ev, msg))
        return out

    def _reset_out_of_range(self, partition: int, why: str) -> None:
        """Policy for a stored position the broker no longer has (topic recreated, retention ran
        past it): keep the state, restart at the earliest offset the broker has, and rely on
        event-id idempotency against re-applying events the state already holds."""
        topic = self.settings.interactions_topic
        self.metrics.offset_resets.labels(topic).inc()
        log.warning("partition %d: stored position %s is out of range (%s); "
                    "resetting to the earliest available offset, keeping state",
                    partition, self.next_offset.get(partition), why)
        self.next_offset[partition] = 0
        self._consumer.seek(TopicPartition(topic, partition, OFFSET_BEGINNING))

    def _forget(self, partition: int, user_id: str) -> None:
        """The user's state row goes (a changelog tombstone follows at the checkpoint) and, if
        this shard knew them, so does their list: a tombstone on the compacted output topic."""
        if self.shards[partition].forget_user(user_id):
            self.checkpointer.produce(self.settings.recommendations_topic, user_id, None)
            self.metrics.forgotten.inc()
            log.info("partition %d: forgot a user", partition)

    def _withdraw_expired(self, partition: int) -> list[str]:
        """Users the shard deleted for retention lose their list too, as on forget."""
        expired = self.shards[partition].take_expired()
        for user_id in expired:
            self.checkpointer.produce(self.settings.recommendations_topic, user_id, None)
        if expired:
            log.info("partition %d: %d user(s) idle past RECO_USER_TTL_DAYS deleted", partition, len(expired))
        return expired

    def _opt_out(self, partition: int, user_id: str) -> None:
        """As `_forget`, and the shard keeps a marker so that no later event builds a profile
        (their events then get non-personalised lists); every shard keeps it, known user or not."""
        if self.shards[partition].opt_out(user_id):
            self.checkpointer.produce(self.settings.recommendations_topic, user_id, None)
            self.metrics.forgotten.inc()
        log.info("partition %d: a user opted out of profiling", partition)

    def _opt_in(self, partition: int, user_id: str) -> None:
        if self.shards[partition].opt_in(user_id):
            log.info("partition %d: a user opted in again", partition)

    def _publish(self, partition: int, user_id: str, consumed_at: float, trigger: Interaction | None = None) -> None:
        m = self.metrics
        rec = self.shards[partition].publish(user_id, trigger=trigger)
        self.checkpointer.produce(self.settings.recommendations_topic, user_id, orjson.dumps(rec.to_dict()),
                                  headers=[("schema", b"recommendation.v1")])
        m.published.labels(rec.variant).inc()
        now = time.time()
        m.consume_latency.observe(now - consumed_at)
        m.event_age(now - rec.trigger_ts / 1000)
        explored = sum(1 for s in rec.items if getattr(s, "explored", False))
        if explored:
            m.recommended_items.labels(rec.variant, "explore").inc(explored)
        m.recommended_items.labels(rec.variant, "exploit").inc(len(rec.items) - explored)
        self.coverage.recommended(s.item_id for s in rec.items)

    def _dead_letter(self, msg: Message, code: str, reason: str) -> None:
        headers = dlq_headers(code, reason, msg.topic(), msg.partition(), msg.offset())
        self.checkpointer.produce(self.settings.dlq_topic, msg.key(), msg.value(), headers=headers)
        self.metrics.dlq.labels(code).inc()
        log.debug("dead-lettered %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), reason)

    def _checkpoint_or_rewind(self) -> None:
        try:
            with self.metrics.checkpoint_seconds.time():
                self.checkpoint()
        except DeliveryFailed as e:
            # Outputs of the interval may be missing: forget the interval and replay it from the
            # store's position. Deterministic models re-publish the same lists.
            self.metrics.checkpoint_failures.inc()
            self.health.set_ready(False, f"checkpoint failed: {e}")
            log.warning("checkpoint failed (%s); rewinding to the last checkpoint", e)
            self._producer = clients.producer(self.settings)
            self.checkpointer.replace_producer(self._producer)
            self._rewind()

    def _rewind(self) -> None:
        """Every partition is taken again as if newly assigned (a new epoch: the failed interval's
        records that did land are then a fenced owner's), from the store's last checkpoint."""
        for partition, engine in list(self.shards.items()):
            del self.shards[partition]
            self.next_offset.pop(partition, None)
            self.uncheckpointed.pop(partition, None)
            self.checkpointer.corrections.pop(partition, None)
            self.restoring[partition] = Acquiring(engine.store)
        self._assign_shards()

    def checkpoint(self, partitions: list[int] | None = None) -> None:
        shards = self.shards if partitions is None else {p: self.shards[p] for p in partitions if p in self.shards}
        positions = {p: self.uncheckpointed.pop(p) for p in list(self.uncheckpointed) if p in shards}
        self.checkpointer.checkpoint(shards, positions, self._commit_offsets)
        self._last_checkpoint = time.monotonic()

    def _commit_offsets(self, offsets: list[TopicPartition]) -> None:
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except Exception as e:  # informational only: the store holds the authoritative position
            log.debug("offset commit skipped: %s", e)

    # -- partition ownership --------------------------------------------------------------
    # A new partition is assigned paused; the main loop then fences the changelog, restores or
    # catches up the store in steps between polls, claims it, and resumes the partition at the
    # store's position (decision 0014).
    def _on_assign(self, consumer, partitions: list[TopicPartition]) -> None:
        try:
            self.metrics.rebalances.labels("assigned").inc()
            fresh = []
            for tp in partitions:
                if tp.partition in self.shards:  # kept across a rejoin: resume where memory is
                    tp.offset = self.next_offset.get(tp.partition, OFFSET_BEGINNING)
                    continue
                path = store_path(self.settings.state_dir, self.settings.interactions_topic, tp.partition)
                self.restoring[tp.partition] = Acquiring(PartitionStore(path))
                fresh.append(tp)
            # Only partitions with a ready shard are fetched; the rest join once claimed.
            consumer.assign([tp for tp in partitions if tp.partition in self.shards])
            self.metrics.assigned.set(len(self.shards))
            if not self.restoring:
                self.health.set_ready(True)
            log.info("assigned partitions %s", sorted(tp.partition for tp in partitions))
        except BaseException as e:  # librdkafka would swallow it: stop loudly instead
            self._callback_error(e)

    def _callback_error(self, e: BaseException) -> None:
        log.exception("rebalance handling failed; stopping the worker")
        self.fatal = e
        self.stop()

    def _advance_acquisitions(self) -> None:
        """One step of every pending fence → restore → claim; a partition that finishes resumes."""
        for partition, acq in list(self.restoring.items()):
            try:
                if acq.epoch is None:
                    self._fence(partition, acq)
                result = acq.job.step() if acq.job is not None else None
                if acq.job is None or result is not None:
                    self._claim(partition, acq, result)
            except DeliveryFailed as e:  # the changelog did not take the fence or claim: start over
                log.warning("partition %d: taking over the changelog failed (%s); trying again", partition, e)
                if acq.job is not None:
                    acq.job.close()
                self.restoring[partition] = Acquiring(acq.store)
                self._producer = clients.producer(self.settings)
                self.checkpointer.replace_producer(self._producer)
        if not self.restoring and self.shards and not self._outage:
            self.health.set_ready(True)

    def _fence(self, partition: int, acq: "Acquiring") -> None:
        s, store = self.settings, acq.store
        acq.ids = topic_ids(self._admin, [s.interactions_topic, s.changelog_topic])
        epoch = new_epoch()
        acq.fence = self.checkpointer.write_marker(partition, *fence_record(epoch))
        acq.epoch = epoch
        meta = store.meta
        stale_changelog = (meta.get("changelog_id") != acq.ids[s.changelog_topic]
                           and None not in (meta.get("changelog_id"), acq.ids[s.changelog_topic]))
        if store.needs_restore():
            acq.job = RestoreJob(s, store, partition, self.metrics, acq.fence, self._snapshot_offset(partition),
                                 stall_timeout_s=s.restore_stall_s)
        elif "epoch" not in meta or stale_changelog:
            # The changelog does not hold this store's history (recreated, or written before
            # decision 0014): the claim re-seeds it with the whole local state.
            log.warning("partition %d: changelog %s does not hold the local state (%s); re-seeding it from "
                        "the local store", partition, s.changelog_topic,
                        "recreated" if stale_changelog else "older format")
            if stale_changelog:
                self.metrics.topic_changes.labels(s.changelog_topic).inc()
            acq.reseed = True
        else:
            acq.local = True
            acq.job = RestoreJob(s, store, partition, self.metrics, acq.fence,
                                 local=(meta["epoch"], meta["seq"], meta.get("next", meta["fence"] + 1)),
                                 stall_timeout_s=s.restore_stall_s)

    def _snapshot_offset(self, partition: int) -> int:
        try:
            tp = self._consumer.committed([TopicPartition(self.settings.changelog_topic, partition)], timeout=10)[0]
            return max(tp.offset, 0)
        except KafkaException as e:
            log.debug("no committed snapshot offset for partition %d: %s", partition, e)
            return 0

    def _claim(self, partition: int, acq: "Acquiring", restored) -> None:
        s, store = self.settings, acq.store
        if acq.job is not None:
            acq.job.close()
            acq.job = None
        input_id = acq.ids[s.interactions_topic]
        stored_input = restored.input_id if restored is not None and restored.input_id else store.meta.get("input_id")
        log_records = (store.meta.get("log_records", 0) if acq.local else 0) + (restored.rows if restored else 0)
        snapshot_rows = store.meta.get("snapshot_rows", 0) if acq.local else 0
        if None not in (stored_input, input_id) and stored_input != input_id and store.position:
            # Policy for a recreated input topic: its offsets are a new log. Keep the state
            # (event ids are not offsets alone) and read the new topic from its start.
            log.warning("partition %d: input topic %s was recreated (its id changed); keeping the state and "
                        "reading the new topic from its start (stored position %s)", partition,
                        s.interactions_topic, store.position)
            self.metrics.topic_changes.labels(s.interactions_topic).inc()
            self.metrics.offset_resets.labels(s.interactions_topic).inc()
            store.write({}, 0)
        prev, committed = (restored.prev, restored.committed) if restored is not None else (None, None)
        claimed_at = self.checkpointer.write_marker(partition, *claim_record(acq.epoch, prev, committed, store.position,
                                                                             input_id, acq.reseed))
        store.write({}, None, {"epoch": acq.epoch, "seq": -1, "fence": acq.fence, "next": claimed_at + 1,
                               "changelog_id": acq.ids[s.changelog_topic], "input_id": input_id,
                               "log_records": log_records, "snapshot_rows": snapshot_rows,
                               **packed_records(store.meta if acq.local else {}, restored)})
        if restored is not None and restored.corrections:
            self.checkpointer.corrections[partition] = restored.corrections
        engine = Engine(store, self.catalog, self.config)
        self.shards[partition] = engine
        del self.restoring[partition]
        if acq.reseed:
            self._commit_offsets([TopicPartition(s.changelog_topic, partition,
                                                 self.checkpointer.snapshot(partition, engine))])
        self.next_offset[partition] = store.position or 0
        self._assign_shards()

    def _assign_shards(self) -> None:
        """Fetch exactly the partitions with a ready shard, each from its next offset."""
        topic = self.settings.interactions_topic
        self._consumer.assign([TopicPartition(topic, p, self.next_offset[p] if p in self.next_offset else OFFSET_BEGINNING)
                               for p in sorted(self.shards)])
        self.metrics.assigned.set(len(self.shards))

    def _on_revoke(self, consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("revoked").inc()
        owned = [tp.partition for tp in partitions if tp.partition in self.shards]
        try:
            self.checkpoint(owned)  # finish what we did before someone else takes over
        except DeliveryFailed as e:  # the next owner replays from the last checkpoint
            log.warning("checkpoint on revoke failed: %s", e)
        self._close_shards([tp.partition for tp in partitions])

    def _on_lost(self, consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("lost").inc()
        self._close_shards([tp.partition for tp in partitions])

    def _close_shards(self, partitions: list[int]) -> None:
        for p in partitions:
            acq = self.restoring.pop(p, None)
            if acq is not None:  # mid-restore: the store keeps its restoring mark, the next owner redoes it
                if acq.job is not None:
                    acq.job.close()
                acq.store.close()
            engine = self.shards.pop(p, None)
            if engine is None:
                continue
            engine.store.close()
            self.next_offset.pop(p, None)
            self.uncheckpointed.pop(p, None)
            self.checkpointer.corrections.pop(p, None)
            for gauge in (self.metrics.lag, self.metrics.lag_seconds):
                try:
                    gauge.remove(self.settings.interactions_topic, str(p))
                except KeyError:
                    pass  # never set for this partition
        self.metrics.assigned.set(len(self.shards))

    # -- observability --------------------------------------------------------------------
    def _on_client_error(self, err: KafkaError) -> None:
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self._outage = True
            self.health.set_ready(False, f"broker unreachable: {err.str()}")
        clients.CLIENT_LOG.warning("kafka client: %s", err.str())

    def _probe_broker(self) -> None:
        """Readiness comes back by itself once the broker answers again — and the worker stops
        if the broker keeps saying the input topic does not exist (deleted, or a broker that lost
        its data): the group would otherwise sit on zero partitions for good, looking healthy.
        Only that answer counts, and only when it persists for TOPIC_GONE_AFTER_S: a brief stale
        answer never stops the worker, a missing leader or an authorisation error never does."""
        topic = self.settings.interactions_topic
        try:
            meta = self._consumer.list_topics(topic, timeout=2).topics.get(topic)
        except KafkaException:
            return
        unknown = meta is None or (meta.error is not None
                                   and meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART)
        now = time.monotonic()
        if not unknown:
            self._topic_missing_since = None
        elif self._topic_missing_since is None:
            self._topic_missing_since = now
        elif now - self._topic_missing_since >= TOPIC_GONE_AFTER_S:
            raise clients.TopologyError(
                f"input topic {topic} has not existed on {self.settings.bootstrap_servers} for "
                f"{TOPIC_GONE_AFTER_S:.0f} s (deleted, or the broker lost its data); start the worker again "
                "to recreate the topics — its stores keep the state")
        if unknown or self.health.ready or not (self._outage or self.shards):
            return  # (before the first assignment, readiness is the assignment's to give)
        if self._outage:
            log.info("broker reachable again")
        self._outage = False
        self.health.set_ready(True)

    def _remove_stale_stores(self) -> None:
        """A store this worker does not own is a copy of state that moved elsewhere (forgotten users
        included): kept for RECO_STALE_STORE_DELAY_S for a quick return (it catches up from its
        fence), then removed — as Kafka Streams' state.cleanup.delay.ms does."""
        now = time.monotonic()
        for partition, path in partition_stores(self.settings.state_dir, self.settings.interactions_topic).items():
            if partition in self.shards or partition in self.restoring:
                self._unowned_since.pop(partition, None)
                continue
            if now - self._unowned_since.setdefault(partition, now) < self.settings.stale_store_delay_s:
                continue
            try:
                store = PartitionStore(path)
            except Exception:  # noqa: BLE001 — locked by another worker on this state dir: theirs
                continue
            store.destroy()
            self._unowned_since.pop(partition, None)
            log.info("removed the store of partition %d: owned elsewhere for over %.0f s", partition,
                     self.settings.stale_store_delay_s)

    def _update_gauges(self) -> None:
        self._last_gauges = time.monotonic()
        topic = self.settings.interactions_topic
        self._probe_broker()
        self._remove_stale_stores()
        now_ms = time.time() * 1000
        for p, engine in self.shards.items():
            _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)
            nxt = self.next_offset.get(p, 0)
            if 0 <= high < nxt:  # some brokers answer such fetches with no error, only no data
                self._reset_out_of_range(p, f"the partition ends at {high}")
                continue
            if high >= 0:
                lag = max(high - nxt, 0)
                self.metrics.lag.labels(topic, str(p)).set(lag)
                ts = self.last_event_ts.get(p)
                self.metrics.lag_seconds.labels(topic, str(p)).set(
                    0.0 if lag == 0 or ts is None else max(now_ms - ts, 0) / 1000)
            self.metrics.state_bytes.labels(str(p)).set(engine.store.approximate_size())
            self.metrics.state_users.labels(str(p)).set(engine.store.count(USER))
        self.metrics.coverage.set(self.coverage.ratio())
