"""`reco bench`: worker throughput as a ratio of a bare consumer's, measured in the same run on
the same broker and the same topic (this machine is noisy: only the ratio is comparable)."""
from __future__ import annotations

import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition

from online_models.evaluation.synthetic import shop_traffic
from streams import clients
from streams.broker import EmbeddedBroker, free_port
from streams.metrics import Metrics
from streams.settings import Settings
from streams.worker.processor import Worker


def _fill(settings: Settings, events: list[dict]) -> None:
    producer = Producer({**settings.kafka_common(), "linger.ms": 20})
    for e in events:
        while True:
            try:
                producer.produce(settings.interactions_topic, key=e["user_id"], value=orjson.dumps(e))
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)


def bare_consumer(settings: Settings, n: int) -> float:
    """Events/s of a consumer that only fetches and parses JSON: the ceiling for any worker."""
    consumer = clients.consumer(settings, group_id=f"bench-bare-{uuid.uuid4().hex[:6]}")
    consumer.assign([TopicPartition(settings.interactions_topic, p, OFFSET_BEGINNING)
                     for p in range(settings.partitions)])
    seen, started = 0, None
    while seen < n:
        for msg in consumer.consume(settings.batch_size, 1.0):
            if msg.error() is None:
                started = started or time.perf_counter()
                orjson.loads(msg.value())
                seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return n / elapsed


def engine_worker(settings: Settings, n: int) -> float:
    """Events/s of the real worker (decode, validate, learn, rank, publish, checkpoint),
    from its first batch to the last event applied."""
    metrics = Metrics()
    worker = Worker(settings, metrics)
    first: list[float] = []
    process = worker.process

    def timed(msgs):
        if not first:
            first.append(time.perf_counter())
        process(msgs)

    worker.process = timed
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    applied = metrics.events.labels
    while sum(applied(t, "applied")._value.get() for t in
              ("view", "click", "skip", "add_to_cart", "purchase", "like", "dislike")) < n:
        time.sleep(0.01)
        if not thread.is_alive():
            raise RuntimeError("worker stopped during the benchmark")
    elapsed = time.perf_counter() - first[0]
    worker.stop()
    thread.join(30)
    return n / elapsed


def run_bench(n_events: int, partitions: int, rounds: int) -> dict:
    # A shop's user mix: most events of a batch come from different users, so the ranking of
    # every touched user costs as much as it does on real traffic (Yoochoose: ~148 per 500).
    events = shop_traffic(n_events, n_users=20_000, n_items=5_000, seed=3)
    batch = Settings().batch_size  # what the rounds below use
    users_per_batch = sum(len({e["user_id"] for e in events[i:i + batch]})
                          for i in range(0, n_events, batch)) / -(-n_events // batch)
    results = []
    with EmbeddedBroker(free_port()) as broker, tempfile.TemporaryDirectory() as state:
        for r in range(rounds):
            tag = uuid.uuid4().hex[:6]
            s = Settings(bootstrap_servers=broker.bootstrap, group_id=f"bench-{tag}", partitions=partitions,
                         interactions_topic=f"bench-in-{tag}", recommendations_topic=f"bench-recs-{tag}",
                         items_topic=f"bench-items-{tag}", dlq_topic=f"bench-dlq-{tag}",
                         control_topic=f"bench-ctl-{tag}", changelog_topic=f"bench-chg-{tag}",
                         state_dir=Path(state) / tag, session_timeout_ms=2000, metrics_port=0,
                         log_level="WARNING")
            clients.ensure_topics(s)
            _fill(s, events)
            bare = bare_consumer(s, n_events)
            worker = engine_worker(s, n_events)
            results.append({"round": r + 1, "bare_events_per_s": round(bare), "worker_events_per_s": round(worker),
                            "ratio": round(worker / bare, 4)})
    ratios = sorted(x["ratio"] for x in results)
    return {"events": n_events, "partitions": partitions, "users_per_batch": round(users_per_batch, 1),
            "batch_size": batch, "rounds": results,
            "median_ratio": ratios[len(ratios) // 2]}
