"""`reco demo`: embedded broker + one engine worker + a replay of the real Yoochoose sample,
with recommendation updates shown live. Ctrl-C stops everything cleanly."""
from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import click
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from online_models.datasets import load_events

from .broker import EmbeddedBroker, free_port
from .clients import ensure_topics
from .http import Health, serve
from .metrics import Metrics
from .processor import Worker
from .produce import produce_events
from .settings import Settings
from .tail import follow

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "yoochoose-sample" / "clicks.tsv"


def _counter(metrics: Metrics, name: str, **labels) -> float:
    total = 0.0
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def run_demo(settings: Settings, port: int, data: Path | None, rate: float, limit: int | None,
             duration: float | None) -> None:
    data = data or DEFAULT_DATA
    if not data.exists():
        raise click.ClickException(f"sample data not found at {data}; pass --data FILE")
    logging.basicConfig(level=logging.WARNING)
    events = load_events(data)[:limit]
    try:
        broker = EmbeddedBroker(port).start()
    except RuntimeError as e:
        raise click.ClickException(str(e)) from e
    with tempfile.TemporaryDirectory(prefix="reco-demo-") as state_dir, broker:
        settings = settings.model_copy(update={"state_dir": Path(state_dir), "session_timeout_ms": 6000})
        ensure_topics(settings)
        metrics = Metrics()
        health = Health(metrics)
        server = serve(metrics, health, "127.0.0.1", settings.metrics_port or free_port())
        worker = Worker(settings, metrics, health)
        stop = threading.Event()
        sent = [0]
        threads = [
            threading.Thread(target=worker.run, name="worker", daemon=True),
            threading.Thread(target=produce_events, name="producer", daemon=True,
                             kwargs=dict(settings=settings, events=events, rate=rate, retime=True,
                                         on_sent=lambda _: sent.__setitem__(0, sent[0] + 1),
                                         should_stop=stop.is_set)),
        ]
        for t in threads:
            t.start()
        recent: deque[tuple[dict, float]] = deque(maxlen=12)
        progress = Progress(TextColumn("replaying Yoochoose"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]} ev/s"), TimeRemainingColumn())
        task = progress.add_task("replay", total=len(events), rate=f"{rate:g}")
        header = (f"broker 127.0.0.1:{port} (embedded)   metrics http://127.0.0.1:{server.server_port}/metrics"
                  f"   data {data.name}   Ctrl-C to stop")

        def render() -> Group:
            progress.update(task, completed=sent[0])
            applied = _counter(metrics, "reco_events_consumed_total", outcome="applied")
            hits = _counter(metrics, "reco_live_hits_total")
            targets = _counter(metrics, "reco_live_targets_total")
            stats = (f"events applied {applied:,.0f}   lists published "
                     f"{_counter(metrics, 'reco_recommendations_published_total'):,.0f}   "
                     f"invalid→DLQ {_counter(metrics, 'reco_dlq_writes_total'):,.0f}   "
                     f"live HR@{settings.k} {hits / targets if targets else 0:.3f} ({targets:,.0f} checked)")
            table = Table(expand=True, title="latest recommendation updates")
            table.add_column("user", justify="right")
            table.add_column("top items")
            table.add_column("why (first item)")
            table.add_column("event→list", justify="right")
            for rec, latency in reversed(recent):
                items = ", ".join(i["item_id"] for i in rec["items"][:4])
                reason = rec["items"][0]["reason"] if rec["items"] else "-"
                table.add_row(rec["user_id"], items, reason, f"{latency * 1000:.0f} ms")
            return Group(Panel(header), progress, stats, table)

        started = time.monotonic()
        try:
            with Live(render(), refresh_per_second=4, transient=False) as live:
                last_render = 0.0
                for update in follow(settings, should_stop=stop.is_set, idle=True):
                    if update is not None:
                        rec, published_ms = update
                        recent.append((rec, max(published_ms - rec["trigger"]["ts"], 0) / 1000))
                    if time.monotonic() - last_render > 0.25:  # the screen, not the stream, sets the pace
                        live.update(render())
                        last_render = time.monotonic()
                    if duration and time.monotonic() - started > duration:
                        break
                    if not threads[0].is_alive():
                        raise click.ClickException("the worker stopped unexpectedly; see the log above")
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            worker.stop()
            for t in threads:
                t.join(timeout=15)
            server.shutdown()
        click.echo(f"stopped: sent {sent[0]} events, applied "
                   f"{_counter(metrics, 'reco_events_consumed_total', outcome='applied'):,.0f}")
