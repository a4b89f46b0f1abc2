"""`reco bench`: worker throughput as a ratio of a bare consumer's, measured in the same run on
the same broker and the same topic (this machine is noisy: only the ratio is comparable); then
what the state weighs per user and per item, the latency from producing an event to its list
being readable (beside the same Kafka path with no engine, `Echo`), the process's peak memory, and
how long the compiled kernels take to compile from nothing and to load from numba's cache."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition

from online_models.evaluation.synthetic import shop_traffic
from online_models.state.store import MODEL, USER, PartitionStore, partition_stores
from streams import clients
from streams.broker import EmbeddedBroker, free_port
from streams.metrics import Metrics
from streams.settings import Settings
from streams.worker.processor import Worker


def fresh_settings(bootstrap: str, partitions: int, state: Path) -> Settings:
    """A measurement's own group, topics (created) and state directory on the bench's broker."""
    tag = uuid.uuid4().hex[:6]
    s = Settings(bootstrap_servers=bootstrap, group_id=f"bench-{tag}", partitions=partitions,
                 interactions_topic=f"bench-in-{tag}", recommendations_topic=f"bench-recs-{tag}",
                 items_topic=f"bench-items-{tag}", dlq_topic=f"bench-dlq-{tag}",
                 control_topic=f"bench-ctl-{tag}", changelog_topic=f"bench-chg-{tag}",
                 state_dir=state / tag, session_timeout_ms=2000, metrics_port=0, log_level="WARNING")
    clients.ensure_topics(s)
    return s


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


def _consumed(metrics: Metrics) -> float:
    """Every event the worker has finished with, whatever the outcome (applied, a duplicate, sent
    to the DLQ...): a file's events need not all be applied for the round to end."""
    return sum(sample.value for metric in metrics.events.collect() for sample in metric.samples
               if sample.name.endswith("_total"))


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
    while _consumed(metrics) < n:
        time.sleep(0.01)
        if not thread.is_alive():
            raise RuntimeError("worker stopped during the benchmark")
    elapsed = time.perf_counter() - first[0]
    worker.stop()
    thread.join(30)
    return n / elapsed


def state_sizes(settings: Settings, events: list[dict]) -> dict:
    """What the workers' stores hold after a round, as the rows are written (key + value bytes):
    per user (their state row) and per item the events name (every model row, divided by them)."""
    users = user_bytes = model_bytes = 0
    for path in partition_stores(settings.state_dir, settings.interactions_topic).values():
        store = PartitionStore(path, read_only=True)
        try:
            for key, value in store.scan(USER):
                users += 1
                user_bytes += len(key) + len(value)
            model_bytes += sum(len(key) + len(value) for key, value in store.scan(MODEL))
        finally:
            store.close()
    items = len({e["item_id"] for e in events})
    return {"users": users, "users_in_events": len({e["user_id"] for e in events}),
            "bytes_per_user": round(user_bytes / max(users, 1)),
            "items": items, "model_bytes_per_item": round(model_bytes / max(items, 1))}


class Echo:
    """The worker's Kafka path with no engine: the same consumer and producer settings and the
    same way of taking a batch (what has arrived, else a wait of up to the batch timeout), and
    for each user's last event of a batch a record naming it as the trigger, keyed by the user,
    on `recommendations` — no decoding past the event id, no state, no checkpoints. Its latency
    is the floor the broker and the clients alone set (measured beside the worker's)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._stop = threading.Event()

    def run(self) -> None:
        s = self.settings
        consumer = clients.consumer(s, **{"auto.offset.reset": "earliest"})  # a new group, a new topic
        producer = clients.producer(s)
        consumer.subscribe([s.interactions_topic])
        try:
            while not self._stop.is_set():
                msgs = consumer.consume(s.batch_size, 0)
                if not msgs:
                    first = consumer.poll(s.batch_timeout_s)
                    msgs = [] if first is None else [first, *consumer.consume(s.batch_size - 1, 0)]
                last: dict[bytes, str] = {}
                for msg in msgs:
                    if msg.error() is None:
                        last[msg.key()] = orjson.loads(msg.value())["event_id"]
                for user, event_id in last.items():
                    producer.produce(s.recommendations_topic, key=user,
                                     value=orjson.dumps({"trigger": {"event_id": event_id}}))
                producer.poll(0)
        finally:
            producer.flush(10)
            consumer.close()

    def stop(self) -> None:
        self._stop.set()


def latency(settings: Settings, events: list[dict], rate: float, seconds: float = 10.0,
            echo: bool = False) -> dict:
    """Produce to list: `events` sent at `rate` per second (stamped with the time of sending) to a
    running worker (`echo`: to an `Echo`), and for every list published on `recommendations`, the
    time from sending the event it answers (its `trigger`) to a consumer reading it —
    p50/p95/p99 in ms. A list answers its user's last event of a batch; earlier events of that
    user in the batch are in it too."""
    metrics = Metrics()
    worker = Echo(settings) if echo else Worker(settings, metrics)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    reader = clients.consumer(settings, group_id=f"bench-latency-{uuid.uuid4().hex[:6]}",
                              **{"auto.offset.reset": "earliest"})
    reader.subscribe([settings.recommendations_topic])
    producer = Producer({**settings.kafka_common(), "linger.ms": 1})
    sent: dict[str, float] = {}
    took: list[float] = []
    answered: set[str] = set()

    def send(e: dict, tag: str) -> None:
        ev = {**e, "event_id": f"{tag}-{len(sent)}", "ts": int(time.time() * 1000)}
        sent[ev["event_id"]] = time.perf_counter()
        producer.produce(settings.interactions_topic, key=ev["user_id"], value=orjson.dumps(ev))
        producer.poll(0)

    def read(timeout: float) -> None:
        for msg in reader.consume(500, timeout):
            if msg.error() is None and msg.value():
                trigger = orjson.loads(msg.value()).get("trigger", {}).get("event_id")
                at = sent.get(trigger)
                if at is not None:
                    took.append(time.perf_counter() - at)
                    answered.add(trigger)

    try:
        deadline = time.monotonic() + 60  # the worker joins its group and warms up: not measured
        while not took and time.monotonic() < deadline:
            send(events[0], "warm")
            producer.flush(5)
            read(1.0)
        if not took:
            raise RuntimeError("no list came back within 60 s")
        sent.clear()
        took.clear()
        answered.clear()
        start = time.perf_counter()
        n = min(len(events), int(rate * seconds))
        for i, e in enumerate(events[:n]):
            while (wait := start + i / rate - time.perf_counter()) > 0:
                read(min(wait, 0.005))  # lists are read while the events are paced
            send(e, "lat")
        producer.flush(30)
        deadline = time.monotonic() + 30
        while f"lat-{n - 1}" not in answered and time.monotonic() < deadline:  # the last event's list
            read(0.2)
    finally:
        reader.close()
        worker.stop()
        thread.join(30)
    took.sort()

    def pct(q: float) -> float:
        return round(1000 * took[min(len(took) - 1, int(q * len(took)))], 1) if took else float("nan")
    measured = {"rate_events_per_s": round(rate), "events": n, "lists": len(took),
                "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99)}
    if echo:
        return measured
    checkpoints = {sample.name: sample.value for metric in metrics.checkpoint_seconds.collect()
                   for sample in metric.samples}
    count = checkpoints.get("reco_checkpoint_seconds_count", 0.0)
    return {**measured,
            # the worker's checkpoints over the whole phase (warm-up included): nothing is processed meanwhile
            "checkpoints": int(count),
            "checkpoint_mean_ms": round(1000 * checkpoints.get("reco_checkpoint_seconds_sum", 0.0) / count, 1)
            if count else None}


def _worker_process(settings: Settings, consumed, assigned, stop) -> None:
    """One worker in a process of its own (spawned): reports what it has consumed and how many
    partitions it holds until `stop` is set."""
    metrics = Metrics()
    worker = Worker(settings, metrics)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    while not stop.is_set() and thread.is_alive():
        consumed.value = _consumed(metrics)
        assigned.value = int(metrics.assigned._value.get())
        time.sleep(0.01)
    worker.stop()
    thread.join(30)


def workers_rate(settings: Settings, events: list[dict], processes: int) -> float:
    """Events/s of `processes` worker processes in one group, from the first event consumed to the
    last: they join and share the partitions before the events are produced."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    counters = [(ctx.Value("d", 0.0), ctx.Value("i", 0)) for _ in range(processes)]
    children = [ctx.Process(target=_worker_process, args=(settings, c, a, stop), daemon=True) for c, a in counters]
    for child in children:
        child.start()
    try:
        deadline, stable_since = time.monotonic() + 120, None
        while True:  # every process holds partitions, all of them are held, and it stays so for 2 s
            held = [a.value for _, a in counters]
            if min(held) > 0 and sum(held) == settings.partitions:
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since >= 2:
                    break
            else:
                stable_since = None
            if time.monotonic() > deadline or not all(c.is_alive() for c in children):
                raise RuntimeError(f"{processes} workers did not share {settings.partitions} partitions in 120 s")
            time.sleep(0.05)
        filler = threading.Thread(target=_fill, args=(settings, events), daemon=True)
        filler.start()
        started = None
        while (total := sum(c.value for c, _ in counters)) < len(events):
            if started is None and total > 0:
                started = time.perf_counter()
            if not all(c.is_alive() for c in children):
                raise RuntimeError("a worker process stopped during the benchmark")
            time.sleep(0.01)
        filler.join(60)
        return len(events) / (time.perf_counter() - started)
    finally:
        stop.set()
        for child in children:
            child.join(60)


COMPILE = "from online_models.compiled import warm_up; w = warm_up(); print(w.seconds, w.compiled, w.loaded)"


def compile_times() -> dict:
    """Seconds to compile every kernel into an empty numba cache (a fresh machine), then to load
    them from it (every later start): two fresh interpreters with a cache directory of their own."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="reco-bench-numba-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for name in ("cold", "warm"):
            done = subprocess.run([sys.executable, "-c", COMPILE], env=env, capture_output=True, text=True,
                                  check=True)
            seconds, compiled, loaded = done.stdout.split()
            out[f"{name}_seconds"] = round(float(seconds), 2)
            out[f"{name}_compiled"], out[f"{name}_loaded"] = int(compiled), int(loaded)
    return out


def run_bench(n_events: int, partitions: int, rounds: int, events: list[dict] | None = None,
              n_users: int = 20_000, n_items: int = 5_000) -> dict:
    """`rounds` pairs of a bare consumer and the worker over the same events: `events` (a file's),
    or a synthetic shop of `n_users` users and `n_items` items."""
    # A shop's user mix: most events of a batch come from different users, so the ranking of
    # every touched user costs as much as it does on real traffic (Yoochoose: ~148 per 500).
    if events is None:
        events = shop_traffic(n_events, n_users=n_users, n_items=n_items, seed=3)
    n_events = len(events)
    batch = Settings().batch_size  # what the rounds below use
    users_per_batch = sum(len({e["user_id"] for e in events[i:i + batch]})
                          for i in range(0, n_events, batch)) / -(-n_events // batch)
    results = []
    with EmbeddedBroker(free_port()) as broker, tempfile.TemporaryDirectory() as state:
        for r in range(rounds):
            s = fresh_settings(broker.bootstrap, partitions, Path(state))
            _fill(s, events)
            bare = bare_consumer(s, n_events)
            worker = engine_worker(s, n_events)
            results.append({"round": r + 1, "bare_events_per_s": round(bare), "worker_events_per_s": round(worker),
                            "ratio": round(worker / bare, 4)})
        sizes = state_sizes(s, events)  # the last round's stores: every round learns the same events
        half = sorted(x["worker_events_per_s"] for x in results)[len(results) // 2] / 2
        delay = latency(fresh_settings(broker.bootstrap, partitions, Path(state)), events, half)
        # the same pacing through the same Kafka path with no engine: what the broker and clients cost
        delay["echo"] = latency(fresh_settings(broker.bootstrap, partitions, Path(state)), events, half, echo=True)
        scaling = {}
        for processes in (1, 2) if partitions > 1 else ():  # one worker process, then two in one group
            s = fresh_settings(broker.bootstrap, partitions, Path(state))
            scaling[f"workers_{processes}_events_per_s"] = round(workers_rate(s, events, processes))
        if scaling:
            scaling["speedup"] = round(scaling["workers_2_events_per_s"] / scaling["workers_1_events_per_s"], 2)
    ratios = sorted(x["ratio"] for x in results)
    return {"events": n_events, "partitions": partitions, "users_per_batch": round(users_per_batch, 1),
            "batch_size": batch, "rounds": results,
            "median_ratio": ratios[len(ratios) // 2],
            "state": sizes,
            "latency": delay,
            "scaling": scaling or None,  # None: one partition cannot be shared
            # ru_maxrss is in KiB on Linux: the broker is another process, the events list is in here
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "compile": compile_times()}


def after_rounds(result: dict) -> list[str]:
    """The lines `reco bench` prints after the rounds: state size, latency, scaling, compile time."""
    st, lat, sc, c = result["state"], result["latency"], result["scaling"], result["compile"]
    return [
        f"state: {st['bytes_per_user']:,} bytes per user ({st['users']:,} users), "
        f"{st['model_bytes_per_item']:,} bytes of model rows per item ({st['items']:,} items); "
        f"peak RSS of this process {result['peak_rss_mib']:,} MiB",
        f"latency at half the worker's rate ({lat['rate_events_per_s']:,} ev/s, {lat['events']:,} events, "
        f"{lat['lists']:,} lists): produce to list readable p50 {lat['p50_ms']} ms, "
        f"p95 {lat['p95_ms']} ms, p99 {lat['p99_ms']} ms; {lat['checkpoints']} checkpoints meanwhile, "
        f"{lat['checkpoint_mean_ms']} ms each on average",
        f"latency of the same Kafka path with no engine (an echo of each user's last event of a batch, "
        f"same rate): p50 {lat['echo']['p50_ms']} ms, p95 {lat['echo']['p95_ms']} ms, p99 {lat['echo']['p99_ms']} ms",
        f"scaling: 1 worker process {sc['workers_1_events_per_s']:,} ev/s, 2 in one group "
        f"{sc['workers_2_events_per_s']:,} ev/s ({sc['speedup']}x)" if sc else
        "scaling: not measured (two workers need --partitions 2 or more)",
        f"kernels: compiled from nothing in {c['cold_seconds']} s ({c['cold_compiled']} kernels), "
        f"loaded from the cache in {c['warm_seconds']} s ({c['warm_loaded']} kernels, "
        f"{c['warm_compiled']} compiled again)",
    ]
