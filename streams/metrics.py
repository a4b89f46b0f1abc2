"""Every Prometheus metric the engine exports, in one place. Labels are bounded: topic,
partition, event type, outcome, reason code, variant — never a user or item id."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# An event whose `ts` is further than this from the wall clock (a replay of historical data, a
# skewed producer clock) says nothing about freshness: it is counted, not observed.
FRESHNESS_RANGE_S = LATENCY_BUCKETS[-1]


class Metrics:
    """A fresh set of metrics on its own registry (tests make one each)."""

    def event(self, type_: str, outcome: str) -> Counter:
        """The events counter child, cached: `labels()` costs microseconds on the per-event path."""
        child = self._event_children.get((type_, outcome))
        if child is None:
            child = self._event_children[(type_, outcome)] = self.events.labels(type_, outcome)
        return child

    def event_age(self, age_s: float) -> None:
        """Event-to-publish for one list: observed only for a live event (a little clock skew
        ahead reads as 0); historical data would put years into +Inf and drown the live readings."""
        if abs(age_s) <= FRESHNESS_RANGE_S:
            self.event_latency.observe(max(age_s, 0.0))
        else:
            self.event_latency_skipped.inc()

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = r = registry or CollectorRegistry()
        self._event_children: dict[tuple[str, str], Counter] = {}
        self.events = Counter("reco_events_consumed_total", "Interaction events consumed",
                              ["type", "outcome"], registry=r)  # outcome: applied|invalid|duplicate|failed|opted_out
        self.dlq = Counter("reco_dlq_writes_total", "Records written to the dead-letter topic",
                           ["reason"], registry=r)
        self.published = Counter("reco_recommendations_published_total",
                                 "Recommendation lists published", ["variant"], registry=r)
        self.event_latency = Histogram("reco_event_to_publish_seconds",
                                       "Freshness for live traffic: from the event's own timestamp to the publish "
                                       f"of the list it changed (only events within {FRESHNESS_RANGE_S} s of the "
                                       "wall clock)",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.event_latency_skipped = Counter("reco_event_to_publish_out_of_range_total",
                                             "Lists published for an event whose ts is more than "
                                             f"{FRESHNESS_RANGE_S} s from the wall clock (replayed history, "
                                             "skewed clock): not in event-to-publish",
                                             registry=r)
        self.consume_latency = Histogram("reco_consume_to_publish_seconds",
                                         "From consuming a batch to publishing its lists (the headline latency: "
                                         "true for live traffic and replays alike)",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("reco_batch_size", "Messages per processed batch",
                                    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000), registry=r)
        self.batch_seconds = Histogram("reco_batch_processing_seconds", "Time to process one batch end to end",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.checkpoint_seconds = Histogram("reco_checkpoint_seconds",
                                            "Time one checkpoint takes (outputs flushed, state rows and offsets "
                                            "written); no batch is processed meanwhile", buckets=LATENCY_BUCKETS,
                                            registry=r)
        self.model_seconds = Histogram("reco_model_update_seconds", "Time spent learning from one batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.lag = Gauge("reco_consumer_lag_messages", "Messages behind the partition's end",
                         ["topic", "partition"], registry=r)
        self.lag_seconds = Gauge("reco_consumer_lag_seconds",
                                 "Age of the newest processed event relative to now (event time)",
                                 ["topic", "partition"], registry=r)
        self.rebalances = Counter("reco_rebalances_total", "Partition assignments and revocations",
                                  ["kind"], registry=r)  # kind: assigned|revoked|lost
        self.assigned = Gauge("reco_assigned_partitions", "Input partitions owned by this worker", registry=r)
        self.state_users = Gauge("reco_state_users", "Users stored per partition", ["partition"], registry=r)
        self.state_bytes = Gauge("reco_state_bytes", "On-disk size of the partition's state store",
                                 ["partition"], registry=r)
        self.restore_remaining = Gauge("reco_restore_remaining_records",
                                       "Changelog records left to restore", ["partition"], registry=r)
        self.restored = Counter("reco_restored_records_total", "Changelog records restored", registry=r)
        self.snapshots = Counter("reco_changelog_snapshots_total",
                                 "Changelog snapshots written (every row again, so restores stay bounded)",
                                 registry=r)
        self.topic_changes = Counter("reco_topic_recreated_total",
                                     "Topics found recreated (new topic id) under stored state", ["topic"],
                                     registry=r)
        self.offset_resets = Counter("reco_offset_resets_total",
                                     "Stored offsets found out of range and reset by policy", ["topic"], registry=r)
        self.live_targets = Counter("reco_live_targets_total",
                                    "Interactions of users who had a published list (live prequential)",
                                    ["variant"], registry=r)
        self.live_hits = Counter("reco_live_hits_total",
                                 "Interactions whose item was in the user's last published list",
                                 ["variant"], registry=r)
        self.recommended_items = Counter("reco_recommended_items_total",
                                         "Items placed in published lists, by source", ["variant", "source"],
                                         registry=r)  # source: exploit|explore
        self.coverage = Gauge("reco_catalog_coverage_ratio",
                              "Distinct items recommended in the last window / distinct items seen", registry=r)
        self.checkpoint_failures = Counter("reco_checkpoint_failures_total",
                                           "Checkpoints abandoned because outputs were not delivered "
                                           "(the interval is replayed)", registry=r)
        self.publish_failures = Counter("reco_publish_failures_total",
                                        "Lists not published because ranking raised (the events were learned)",
                                        registry=r)
        self.ready = Gauge("reco_ready", "1 when the worker is connected and processing", registry=r)
        self.kernel_warm_up = Gauge("reco_kernel_warm_up_seconds",
                                    "Seconds the engine's compiled kernels took to compile or load at start",
                                    registry=r)
        self.forgotten = Counter("reco_users_forgotten_total", "Forget-user requests applied", registry=r)
