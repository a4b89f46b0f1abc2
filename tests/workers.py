"""Engine workers as real processes (`python -m streams.cli.main run`), for crash and rebalance tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from online_models.state.store import PartitionStore, partition_stores
from streams.settings import Settings


def worker_env(s: Settings, state_dir: Path | None = None) -> dict:
    return {**os.environ,
            "RECO_BOOTSTRAP_SERVERS": s.bootstrap_servers, "RECO_GROUP_ID": s.group_id,
            "RECO_INTERACTIONS_TOPIC": s.interactions_topic, "RECO_ITEMS_TOPIC": s.items_topic,
            "RECO_RECOMMENDATIONS_TOPIC": s.recommendations_topic, "RECO_DLQ_TOPIC": s.dlq_topic,
            "RECO_CONTROL_TOPIC": s.control_topic, "RECO_CHANGELOG_TOPIC": s.changelog_topic,
            "RECO_STATE_DIR": str(state_dir or s.state_dir), "RECO_PARTITIONS": str(s.partitions),
            "RECO_SESSION_TIMEOUT_MS": str(s.session_timeout_ms), "RECO_METRICS_PORT": "0",
            "RECO_LOG_LEVEL": "INFO"}


def spawn(s: Settings, state_dir: Path | None = None, log: Path | None = None, command: str = "run",
          env: dict | None = None) -> subprocess.Popen:
    """`reco COMMAND` (a worker by default) as a real process configured like `s`."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "streams.cli.main", command],
                            env={**worker_env(s, state_dir), **(env or {})}, stdout=out, stderr=out)


def stop(proc: subprocess.Popen, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
    return proc.returncode


def kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def positions(state_dir: Path, topic: str) -> dict[int, int | None]:
    out = {}
    for partition, path in partition_stores(state_dir, topic).items():
        try:
            store = PartitionStore(path, read_only=True)
        except Exception:
            continue  # being created right now
        out[partition] = store.position
        store.close()
    return out


def wait_caught_up(state_dirs: list[Path], topic: str, ends: dict[int, int], timeout: float = 180,
                   procs: list[subprocess.Popen] = ()) -> None:
    """Until, for every partition, some store's checkpointed position reached the end offset."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        best: dict[int, int] = {}
        for d in state_dirs:
            for p, pos in positions(d, topic).items():
                best[p] = max(best.get(p, 0), pos or 0)
        if all(best.get(p, 0) >= end for p, end in ends.items()):
            return
        for proc in procs:
            assert proc.poll() is None, f"worker exited with {proc.returncode}"
        time.sleep(0.25)
    raise AssertionError(f"not caught up after {timeout}s: {best} vs {ends}")


def progress(state_dirs: list[Path], topic: str) -> int:
    return sum((pos or 0) for d in state_dirs for pos in positions(d, topic).values())
