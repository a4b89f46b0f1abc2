"""Memory stays bounded under a 10x burst: the consumer prefetch and the producer queue are
bounded, so a burst waits in Kafka, not in the worker."""
from __future__ import annotations

import threading
import time

from helpers import produce, wait_until
from test_recovery import make_settings
from workers import progress, spawn, stop, wait_caught_up

from online_models.evaluation.synthetic import interactions
from streams.clients import ensure_topics

PAD = {f"note{n}": "x" * 120 for n in range(8)}  # ~1 KB of context per event: a heavy burst


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except OSError:
                return
            time.sleep(0.05)

    def close(self) -> float:
        self._stop.set()
        self.thread.join()
        return self.peak


def burst_run(broker, root, pad: dict) -> tuple[float, float, float]:
    """Normal load, then 10x that load at once. Returns (normal peak MB, burst peak MB, burst MB)."""
    s = make_settings(broker, root)
    ensure_topics(s)
    events = [{**e, "context": {**e["context"], **pad}}
              for e in interactions(88_000, n_users=2000, n_items=500, seed=21)]
    normal, burst = events[:8_000], events[8_000:]
    proc = spawn(s, log=root / f"worker-{len(pad)}.log")
    try:
        watch = PeakRss(proc.pid)
        ends = produce(s, [(e["user_id"], e) for e in normal])
        wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc])
        normal_peak = watch.close()

        watch = PeakRss(proc.pid)
        ends = produce(s, [(e["user_id"], e) for e in burst])     # 10x, all at once
        wait_until(lambda: progress([s.state_dir], s.interactions_topic) > 20_000, timeout=120,
                   what="processing the burst")
        wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc], timeout=300)
        burst_peak = watch.close()
    finally:
        assert stop(proc) == 0
    return normal_peak, burst_peak, sum(len(str(e)) for e in burst) / 2**20


def test_memory_bounded_under_ten_times_burst(broker, tmp_path):
    """The same 10x burst twice: once light (~14 MB), once heavy (~100 MB of input). The worker
    grows with its state (more users, rows, memtables) — equally in both runs — but not with the
    bytes of the burst, which wait in Kafka behind bounded prefetch and producer queues."""
    light = burst_run(broker, tmp_path, {})
    heavy = burst_run(broker, tmp_path, PAD)
    print("light", light, "heavy", heavy)
    assert heavy[2] > 80 and heavy[2] > 5 * light[2]
    light_growth, heavy_growth = light[1] - light[0], heavy[1] - heavy[0]
    extra_input = heavy[2] - light[2]
    assert heavy_growth < light_growth + 0.5 * extra_input, (light, heavy)
    # A ceiling on the growth, not on the peak: the baseline differs by ~50-60 MB between machines
    # (numba's runtime and loaded kernels are ~130 MB of it; CI measured normal peaks of 342 MB
    # against 280 MB here), while the growth is what a buffered burst would inflate. Measured:
    # heavy growth 121 MB here, 142 MB in CI, for ~94 MB of heavy input.
    assert heavy_growth < 250, heavy
