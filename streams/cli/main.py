"""`reco`: the command line. Settings are built once here: defaults < --config FILE (TOML) <
RECO_* environment variables < flags."""
from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import click

from online_models.evaluation.datasets import FORMATS, MOVIELENS_MAPPING
from streams.cli.evaluate import evaluate
from streams.cli.invocation import settings_for
from streams.cli.privacy import explain, forget, opt_in, opt_out
from streams.cli.reading import dlq, tail
from streams.settings import Settings


class _Reco(click.Group):
    """Failing to reach Kafka ends a command with one line that says where it looked, not a
    traceback (other Kafka errors keep theirs)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _hoist_global_options(self, args))

    def invoke(self, ctx: click.Context):
        from confluent_kafka import KafkaError, KafkaException

        reach = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT,
                 KafkaError._RESOLVE, KafkaError._AUTHENTICATION, KafkaError._SSL,
                 KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED,
                 KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED}
        try:
            return super().invoke(ctx)
        except KafkaException as e:
            error = e.args[0] if e.args else None
            if not isinstance(error, KafkaError) or error.code() not in reach:
                raise  # not about reaching Kafka: keep the traceback, it is a bug to report
            settings = ctx.meta.get("reco.settings")
            where = f" at {settings.bootstrap_servers}" if settings else ""
            text = error.str()
            raise click.ClickException(
                f"Kafka{where}: {text} (bootstrap servers: --bootstrap-servers / RECO_BOOTSTRAP_SERVERS; "
                "credentials: RECO_SECURITY_PROTOCOL, RECO_SASL_*)") from None


def _hoist_global_options(group: click.Group, args: list[str]) -> list[str]:
    """Settings flags are global options, and people type them after the command too (`reco run
    --bootstrap-servers X`, `reco state dump --state-dir X`): move those before the command, except
    where the command has an option of the same name (`reco bench --partitions`), which stays its own."""
    takes_value = {opt: not p.is_flag for p in group.params if isinstance(p, click.Option) for opt in p.opts}
    i = 0
    while i < len(args) and args[i].startswith("-"):  # global options already before the command
        name = args[i].split("=", 1)[0]
        i += 2 if takes_value.get(name) and "=" not in args[i] else 1
    if i >= len(args) or args[i] not in group.commands:
        return args
    command, j = group.commands[args[i]], i + 1
    while isinstance(command, click.Group) and j < len(args) and args[j] in command.commands:
        command, j = command.commands[args[j]], j + 1
    own = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    hoisted, rest, k = [], [], i
    while k < len(args):
        token, name = args[k], args[k].split("=", 1)[0]
        if token == "--":
            rest.extend(args[k:])
            break
        if k >= j and name in takes_value and name not in own:
            width = 2 if takes_value[name] and "=" not in token else 1
            hoisted.extend(args[k:k + width])
            k += width
            continue
        rest.append(token)
        k += 1
    return args[:i] + hoisted + rest


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@click.group(cls=_Reco, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(dir_okay=False), help="TOML settings file (keys = setting names).")
@click.option("--bootstrap-servers", help="Kafka bootstrap servers [env RECO_BOOTSTRAP_SERVERS; default 127.0.0.1:9092]")
@click.option("--state-dir", type=click.Path(file_okay=False),
              help="RocksDB state directory [env RECO_STATE_DIR; default ./state]")
@click.option("--metrics-port", type=int, help="Prometheus /metrics port, 0 = off [env RECO_METRICS_PORT; default 9100]")
@click.option("--group-id", help="consumer group of the workers [env RECO_GROUP_ID; default reco-engine]")
@click.option("--partitions", type=int, help="partitions of topics the engine creates [env RECO_PARTITIONS; default 4]")
@click.option("--k", type=int, help="recommendation list length [env RECO_K; default 20]")
@click.option("--interactions-topic", help="[env RECO_INTERACTIONS_TOPIC; default interactions]")
@click.option("--items-topic", help="[env RECO_ITEMS_TOPIC; default items]")
@click.option("--recommendations-topic", help="[env RECO_RECOMMENDATIONS_TOPIC; default recommendations]")
@click.option("--dlq-topic", help="[env RECO_DLQ_TOPIC; default interactions.dlq]")
@click.option("--log-level", help="[env RECO_LOG_LEVEL; default INFO]")
def cli(**_):
    """Streaming personalization engine: interactions in, fresh recommendations out.

    The options below are global settings: give them before or after the command (`reco
    --state-dir X run` = `reco run --state-dir X`), except where the command has an option of the
    same name (`reco bench --partitions`), which stays the command's. Every setting also has a
    RECO_* variable and a --config key; a flag wins."""


@cli.command()
@click.option("--port", type=int, default=9092, show_default=True, help="port to listen on")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (and advertise)")
def broker(port: int, host: str):
    """Run the embedded Kafka-protocol broker (Tansu, in memory) in the foreground."""
    from streams.broker import EmbeddedBroker

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops it like Ctrl-C
    b = EmbeddedBroker(port, host)
    try:
        b.start()
        click.echo(f"broker listening on {b.bootstrap} (memory only; Ctrl-C stops it)")
        b.proc.wait()
    except KeyboardInterrupt:  # also while it is still starting
        pass
    except (RuntimeError, TimeoutError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    finally:
        b.stop()


@cli.command()
@click.pass_context
def run(ctx: click.Context):
    """Run one engine worker (several share the work through the consumer group).

    It has no options of its own: the global ones (--bootstrap-servers, --state-dir, --group-id,
    --partitions, --metrics-port, --k, the topic names, --log-level; see `reco --help` for their
    defaults) may be given before or after `run`, e.g. `reco run --bootstrap-servers host:9092`,
    and every setting has a RECO_* variable. SIGTERM or SIGINT finishes the batch, checkpoints
    and leaves the group."""
    from online_models.engine import StateFormatError
    from streams.clients import TopologyError
    from streams.http import Health, PortInUse, serve
    from streams.metrics import Metrics
    from streams.worker.processor import Worker

    settings = settings_for(ctx)
    _setup_logging(settings)
    metrics = Metrics()
    health = Health(metrics)
    if settings.metrics_port:
        try:
            server = serve(metrics, health, settings.metrics_host, settings.metrics_port)
        except PortInUse as e:
            raise click.ClickException(str(e)) from None
        logging.getLogger("reco").info("metrics on http://%s:%d/metrics", settings.metrics_host, server.server_port)
    worker = Worker(settings, metrics, health)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    try:
        worker.run()
    except (TopologyError, StateFormatError) as e:  # the message says what to do
        raise click.ClickException(str(e)) from None


@cli.command()
@click.option("--port", type=int, help="HTTP port [env RECO_SERVE_PORT; default 6066]")
@click.pass_context
def serve(ctx: click.Context, port: int | None):
    """Serve the latest recommendations over HTTP and forward control requests (faust app).

    \b
    GET  /recommendations/{id}/  the user's current list (404: none)
    GET  /users/{id}/profile/    what is held about the user (= reco explain --json)
    POST /users/{id}/forget/     erase the user from every store (202)
    POST /users/{id}/opt-out/    objection to profiling (= reco opt-out)
    POST /users/{id}/opt-in/     end the opt-out (= reco opt-in)
    GET  /readyz                 200 once the table is restored and the agents are up
    GET  /healthz                200 while the process answers

    It also forwards every request written to the control topic (`reco forget`, `reco opt-out`,
    `reco opt-in`) to the workers: without a running `reco serve` none takes effect.

    Listens on RECO_SERVE_HOST (default 127.0.0.1; 0.0.0.0 for every interface) at --port /
    RECO_SERVE_PORT. Set RECO_SERVE_TOKEN: the POSTs and the profile then need `Authorization:
    Bearer <token>` (401 otherwise); without it anyone who can reach the port can read profiles
    and erase users. Writes and profiles past RECO_SERVE_WRITE_RATE per second get 429."""
    from streams.serve.app import serve as run_serve

    settings = settings_for(ctx, serve_port=port)
    _setup_logging(settings)
    run_serve(settings)


@cli.command(epilog=MOVIELENS_MAPPING)
@click.argument("file", type=click.Path(exists=True))
@click.option("--rate", type=float, help="events per second (default: as fast as possible)")
@click.option("--limit", type=click.IntRange(min=1), help="send only the first N events (after time ordering), "
              "and every catalogue record")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="FILE's format (auto: by name and first line; a directory is MovieLens)")
@click.option("--retime", is_flag=True, help="stamp each event with the current time (a historical file "
              "replayed as live traffic: lists, trending and sessions then follow today's clock)")
@click.option("--skip-invalid", is_flag=True, help="send the valid lines and list the others (default: "
              "a file with any line the worker would reject is refused and nothing is sent)")
@click.pass_context
def produce(ctx: click.Context, file: str, rate: float | None, limit: int | None, fmt: str, retime: bool,
            skip_invalid: bool):
    """Send events from FILE (contract JSONL, YOOCHOOSE TSV, OTTO JSONL, or a MovieLens directory or
    ratings file) to the interactions topic.

    Events go out in time order (`ts`). Catalogue records in a contract JSONL file (lines with
    `item_id` and none of `type`, `user_id`, `ts`, `event_id`, `session_id`; schemas/item.v1.json)
    and MovieLens movies go to the items topic, before the events. Every line is checked first as the worker would
    check it (schemas, ts in milliseconds, not ahead of now).

    An event without `event_id` is sent with one derived from its content ("p-" + 16 hex digits
    of a hash of its JSON, "-2", "-3"… for repeats of an identical event in FILE): the same file
    then gives the same lists on every fresh run, and sending it again to the same workers is
    ignored for the last 64 events per user (their event-id window). With --retime no id is
    derived: each run is new traffic. Events that carry an `event_id` are sent as they are."""
    from rich.progress import Progress

    from online_models.evaluation.datasets import is_item_record, sort_events
    from streams.cli.produce import check_records, produce_events, read_records, with_event_ids
    from streams.clients import ensure_topics

    settings = settings_for(ctx)
    try:
        numbered = read_records(file, fmt)
        bad = check_records(numbered, settings.max_event_ahead_s)
        if bad and not skip_invalid:
            for b in bad[:10]:
                click.echo(f"{file} {b.where}: {b.reason}", err=True)
            raise click.ClickException(f"{len(bad)} of {len(numbered)} records would be rejected by the worker; "
                                       "nothing was sent (fix them, or --skip-invalid to send the others)")
        skipped = {b.where for b in bad}
        kept = [(where, r) for where, r in numbered if where not in skipped]
        events = sort_events([r for _, r in (kept if retime else with_event_ids(kept))], file)
        if limit:  # catalogue records (no ts) come first: all of them, then the first N events
            catalogue = sum(1 for e in events if is_item_record(e))
            events = events[:catalogue + limit]
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    for b in bad[:10]:
        click.echo(f"skipped {file} {b.where}: {b.reason}", err=True)
    if len(bad) > 10:
        click.echo(f"skipped {len(bad) - 10} more invalid records", err=True)
    ensure_topics(settings)
    interrupted = threading.Event()

    def on_ctrl_c(*_):  # the first Ctrl-C stops sending and delivers what was sent; a second aborts
        interrupted.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGINT, on_ctrl_c)
    with Progress(transient=False) as progress:
        n_items = sum(1 for e in events if is_item_record(e))
        label = f"producing {len(events) - n_items} events" + (f" and {n_items} catalogue records" if n_items else "")
        task = progress.add_task(label, total=len(events))
        sent = produce_events(settings, events, rate=rate, retime=retime,
                              on_sent=lambda _: progress.advance(task), should_stop=interrupted.is_set)
    items = sum(1 for e in events[:sent] if is_item_record(e))
    counted = f"{sent - items} events to {settings.interactions_topic} and {items} catalogue records to " \
              f"{settings.items_topic} on {settings.bootstrap_servers}"
    if interrupted.is_set():
        click.echo(f"interrupted: sent {sent} of {len(events)} records ({counted})")
        return
    click.echo(f"sent {counted}" + (f"; skipped {len(bad)} invalid records" if bad else ""))


@cli.command()
@click.option("--rate", type=float, default=200.0, show_default=True, help="events per second to replay")
@click.option("--port", type=int, default=9092, show_default=True, help="embedded broker port")
@click.option("--data", type=click.Path(exists=True, dir_okay=False),
              help="events file (default: ../shared/data/yoochoose-sample/clicks.tsv)")
@click.option("--limit", type=int, help="replay only the first N events")
@click.option("--duration", type=float, help="stop after this many seconds")
@click.pass_context
def demo(ctx: click.Context, rate: float, port: int, data: str | None, limit: int | None, duration: float | None):
    """Start broker + engine, replay the real Yoochoose sample, show recommendations live.

    The worker's metrics are served as for `reco run`: on RECO_METRICS_HOST (default 127.0.0.1)
    at --metrics-port / RECO_METRICS_PORT (default 9100; 0 = off)."""
    from streams.cli.demo import run_demo

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill`: same clean stop as Ctrl-C

    settings = settings_for(ctx, bootstrap_servers=f"127.0.0.1:{port}")
    run_demo(settings, port=port, data=Path(data) if data else None, rate=rate, limit=limit, duration=duration)


@cli.command()
@click.option("--events", "n_events", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="synthetic events per round")
@click.option("--partitions", "n_partitions", type=click.IntRange(min=1), default=4, show_default=True,
              help="partitions of the benchmark topic")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="bare consumer + worker pairs")
@click.option("--users", "n_users", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="synthetic users")
@click.option("--items", "n_items", type=click.IntRange(min=1), default=5_000, show_default=True,
              help="synthetic items")
@click.option("--data", type=click.Path(exists=True), default=None,
              help="replay this file's events (any format `reco evaluate` reads; --events: the first N) "
                   "instead of the synthetic shop")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def bench(n_events: int, n_partitions: int, rounds: int, n_users: int, n_items: int, data: str | None,
          as_json: bool):
    """Worker throughput against a bare consumer, same broker, same data, same run; then the
    state's size per user and per item, peak memory, and kernel compile time cold and warm."""
    from streams.cli.bench import after_rounds, run_bench

    logging.basicConfig(level=logging.WARNING)
    events = None
    if data:
        from streams.cli.evaluate import load_interactions

        events, _ = load_interactions(data, n_events)
    result = run_bench(n_events, n_partitions, rounds, events, n_users, n_items)
    what = (f"{result['events']:,} events of {data}" if data else
            f"{result['events']:,} synthetic shop events ({n_users:,} users, {n_items:,} items)")
    _print_rounds(result, as_json,
                  f"{what}, {result['users_per_batch']:.0f} distinct users per "
                  f"{result['batch_size']}-event batch, {n_partitions} partitions, embedded broker",
                  lambda r: (f"bare consumer {r['bare_events_per_s']:>9,} ev/s   "
                             f"engine worker {r['worker_events_per_s']:>8,} ev/s   ratio {r['ratio']:.3f}"),
                  "median worker/bare ratio")
    if not as_json:
        for text in after_rounds(result):
            click.echo(text)


def _print_rounds(result: dict, as_json: bool, title: str, line, summary: str) -> None:
    """A benchmark's result: as JSON, or a title, a line per round and the median ratio."""
    import orjson

    if as_json:
        click.echo(orjson.dumps(result).decode())
        return
    click.echo(title)
    for r in result["rounds"]:
        click.echo(f"  round {r['round']}: {line(r)}")
    click.echo(f"{summary}: {result['median_ratio']:.3f}")


@cli.command("bench-evaluate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--limit", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="the first N events (after time ordering)")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="engine + models-off pairs")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def bench_evaluate(file: str, limit: int, rounds: int, as_json: bool):
    """Evaluation throughput: the engine beside its own per-event path with the models off."""
    from online_models.evaluation.throughput import measure
    from streams.cli.evaluate import load_interactions

    events, _ = load_interactions(file, limit)
    _print_rounds(measure(events, rounds), as_json, f"{len(events):,} events of {file}, prequential, one process",
                  lambda r: (f"models off {r['models_off_events_per_s']:>7,} ev/s ({r['path_us_per_event']} µs/event)"
                             f"   engine {r['engine_events_per_s']:>6,} ev/s   ratio {r['ratio']:.3f}   "
                             f"models {r['models_us_per_event']} µs/event"),
                  "median engine/models-off ratio")


@cli.group()
def state():
    """Inspect the engine's state stores."""


@state.command("dump")
@click.option("--models", is_flag=True, help="include model rows too")
@click.pass_context
def state_dump(ctx: click.Context, models: bool):
    """Print every user's state under --state-dir as deterministic JSON (works beside a running worker)."""
    from streams.cli.state_dump import dump_state

    settings = settings_for(ctx)
    if not Path(settings.state_dir).is_dir():
        raise click.ClickException(f"no state directory at {settings.state_dir}")
    click.echo(dump_state(settings.state_dir, settings.interactions_topic, models).decode())


for command in (evaluate, forget, opt_out, opt_in, explain, tail, dlq):
    cli.add_command(command)


def main() -> None:
    cli(auto_envvar_prefix=None)


if __name__ == "__main__":
    main()
