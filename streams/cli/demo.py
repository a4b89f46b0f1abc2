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
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from online_models.evaluation.datasets import load_events
from streams.broker import EmbeddedBroker
from streams.cli.produce import produce_events
from streams.cli.tail import follow, format_line
from streams.clients import ensure_topics
from streams.http import Health, PortInUse, serve
from streams.metrics import Metrics
from streams.settings import Settings
from streams.worker.processor import Worker

SAMPLE = Path("shared") / "data" / "yoochoose-sample" / "clicks.tsv"
# where the sample is looked for without --data: beside the directory the demo runs in (the
# README runs it from the repository), then beside the source checkout
DEFAULT_DATA = (Path("..") / SAMPLE, Path(__file__).resolve().parents[3] / SAMPLE)
PLAIN_EVERY_S = 2.0  # without a terminal: a status line this often, and the updates in between


def _counter(metrics: Metrics, name: str, **labels) -> float:
    total = 0.0
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def run_demo(settings: Settings, port: int, data: Path | None, rate: float, limit: int | None,
             duration: float | None) -> None:
    if data is None:
        data = next((d for d in DEFAULT_DATA if d.exists()), None)
        if data is None:
            raise click.ClickException(f"sample data not found at {' or '.join(map(str, DEFAULT_DATA))}; "
                                       "pass --data FILE (contract JSONL, YOOCHOOSE TSV or OTTO JSONL)")
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
        try:  # the same meaning as for `reco run`: RECO_METRICS_PORT 0 switches the endpoint off
            server = serve(metrics, health, settings.metrics_host, settings.metrics_port) \
                if settings.metrics_port else None
        except PortInUse as e:
            raise click.ClickException(str(e)) from None
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
        where = f"metrics http://{settings.metrics_host}:{server.server_port}/metrics" if server else "metrics off"
        header = f"broker 127.0.0.1:{port} (embedded)   {where}   data {data.name}   Ctrl-C to stop"

        def status() -> str:
            hits = _counter(metrics, "reco_live_hits_total")
            targets = _counter(metrics, "reco_live_targets_total")
            return (f"sent {sent[0]:,}/{len(events):,}   events applied "
                    f"{_counter(metrics, 'reco_events_consumed_total', outcome='applied'):,.0f}   lists published "
                    f"{_counter(metrics, 'reco_recommendations_published_total'):,.0f}   "
                    f"invalid→DLQ {_counter(metrics, 'reco_dlq_writes_total'):,.0f}   "
                    f"live HR@{settings.k} {hits / targets if targets else 0:.3f} ({targets:,.0f} checked)")

        def render() -> Group:
            progress.update(task, completed=sent[0])
            table = Table(expand=True, title="latest recommendation updates")
            # one line per update, whatever the terminal's width
            table.add_column("user", justify="right", no_wrap=True, min_width=6)
            table.add_column("top items", no_wrap=True, overflow="ellipsis", ratio=3)
            table.add_column("why (first item)", no_wrap=True, overflow="ellipsis", ratio=2)
            table.add_column("event→list", justify="right", no_wrap=True, min_width=10)
            for rec, latency in list(reversed(recent))[:rows]:
                items = ", ".join(i["item_id"] for i in rec["items"][:4])
                reason = rec["items"][0]["reason"] if rec["items"] else "-"
                table.add_row(rec["user_id"], items, reason, f"{latency * 1000:.0f} ms")
            return Group(Panel(header), progress, status(), table)

        console = Console()
        rows = max(3, console.size.height - 14)  # the table fits the terminal (a 24-line one too)
        if not console.is_terminal:  # a pipe or a log file: plain lines, as they happen
            click.echo(header)
        started = time.monotonic()
        live = Live(render(), console=console, refresh_per_second=4, transient=False) \
            if console.is_terminal else None
        try:
            if live is not None:
                live.start()
            last_render = last_status = 0.0
            for update in follow(settings, should_stop=stop.is_set, idle=True):
                if update is not None and update[1] is not None:
                    _, rec, published_ms = update
                    latency = max(published_ms - rec["trigger"]["ts"], 0) / 1000
                    recent.append((rec, latency))
                    if live is None and time.monotonic() - last_render > PLAIN_EVERY_S / 8:
                        click.echo(f"{format_line(rec)}  ({latency * 1000:.0f} ms)")
                        last_render = time.monotonic()
                if live is not None and time.monotonic() - last_render > 0.25:  # the screen sets the pace
                    live.update(render())
                    last_render = time.monotonic()
                if live is None and time.monotonic() - last_status > PLAIN_EVERY_S:
                    click.echo(status())
                    last_status = time.monotonic()
                if duration and time.monotonic() - started > duration:
                    break
                if not threads[0].is_alive():
                    raise click.ClickException("the worker stopped unexpectedly; see the log above")
        except KeyboardInterrupt:
            pass
        finally:
            if live is not None:
                live.update(render())
                live.stop()
            stop.set()
            worker.stop()
            for t in threads:
                t.join(timeout=15)
            if server:
                server.shutdown()
        click.echo(f"\nstopped: sent {sent[0]:,} events, applied "
                   f"{_counter(metrics, 'reco_events_consumed_total', outcome='applied'):,.0f}")
