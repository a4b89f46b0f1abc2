"""Memory stays bounded under a 10x burst: the consumer prefetch and the producer queue are
bounded, so a burst waits in Kafka, not in the worker."""
from __future__ import annotations

import threading
import time

from online_models.synthetic import interactions
from streams.clients import ensure_topics

from helpers import produce, wait_until
from test_recovery import make_settings
from workers import progress, spawn, stop, wait_caught_up

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


def test_memory_bounded_under_ten_times_burst(broker, tmp_path):
    s = make_settings(broker, tmp_path)
    ensure_topics(s)
    events = [{**e, "context": {**e["context"], **PAD}}
              for e in interactions(88_000, n_users=2000, n_items=500, seed=21)]
    normal, burst = events[:8_000], events[8_000:]
    proc = spawn(s, log=tmp_path / "worker.log")
    try:
        watch = PeakRss(proc.pid)
        ends = produce(s, [(e["user_id"], e) for e in normal])
        wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc])
        normal_peak = watch.close()

        watch = PeakRss(proc.pid)
        ends = produce(s, [(e["user_id"], e) for e in burst])     # 10x, all at once (~100 MB)
        wait_until(lambda: progress([s.state_dir], s.interactions_topic) > 20_000, timeout=120,
                   what="processing the burst")
        wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc], timeout=300)
        burst_peak = watch.close()
    finally:
        assert stop(proc) == 0
    burst_mb = sum(len(str(e)) for e in burst) / 2**20
    assert burst_mb > 80
    # The burst is ~100 MB of input; the worker's footprint may grow a little (more state), not by the burst.
    assert burst_peak < normal_peak + 60, (normal_peak, burst_peak, burst_mb)
