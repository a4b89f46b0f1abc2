"""Fixtures are factories over real things: the embedded broker, RocksDB in tmp dirs, workers
running the production code in threads or subprocesses."""
from __future__ import annotations

import gc
import threading
import uuid
from pathlib import Path
from typing import Callable

import pytest

from streams.broker import EmbeddedBroker, free_port
from streams.metrics import Metrics
from streams.settings import Settings
from streams.worker.processor import Worker

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels():
    """Compile the engine's kernels into numba's cache once, before any worker process starts —
    as the Docker image does at build — so workers spawned by tests load them in a fraction of a
    second instead of each compiling for ~10 s until the first one has written the cache."""
    from online_models.compiled import warm_up
    return warm_up()


@pytest.fixture(scope="session")
def broker():
    with EmbeddedBroker(free_port()) as b:
        yield b


@pytest.fixture
def settings_factory(broker, tmp_path) -> Callable[..., Settings]:
    """Settings with topics and group unique to the test, state under tmp_path."""
    tag = uuid.uuid4().hex[:8]

    def make(**overrides) -> Settings:
        values = dict(
            bootstrap_servers=broker.bootstrap,
            group_id=f"g-{tag}",
            interactions_topic=f"interactions-{tag}",
            items_topic=f"items-{tag}",
            recommendations_topic=f"recommendations-{tag}",
            dlq_topic=f"dlq-{tag}",
            control_topic=f"control-{tag}",
            changelog_topic=f"changelog-{tag}",
            state_dir=tmp_path / "state",
            partitions=2,
            session_timeout_ms=2000,
            metrics_port=0,
        )
        values.update(overrides)
        return Settings(**values)

    return make


class RunningWorker:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = Metrics()
        self.worker = Worker(settings, self.metrics)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.worker.run()
        except BaseException as e:  # surfaced by the test through .error
            self.error = e

    def value(self, name: str, **labels) -> float:
        total = 0.0
        for family in self.metrics.registry.collect():
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def stop(self, timeout: float = 20):
        self.worker.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"


@pytest.fixture
def worker_factory():
    started: list[RunningWorker] = []

    def make(settings: Settings) -> RunningWorker:
        w = RunningWorker(settings)
        started.append(w)
        return w

    yield make
    for w in started:
        if w.thread.is_alive():
            w.stop()
    started.clear()
    gc.collect()  # release the workers' Kafka clients before the broker goes away
