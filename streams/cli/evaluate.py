"""`reco evaluate FILE`: prequential replay of a time-ordered event file through the engine and
its baselines, no broker needed. Registered in streams/cli/main.py."""
from __future__ import annotations

import os
from datetime import datetime, timezone

import click
import orjson
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from online_models.evaluation.datasets import FORMATS, MOVIELENS_MAPPING, is_item_record, sort_events
from online_models.evaluation.prequential import BASELINES
from online_models.evaluation.prequential import evaluate as run_evaluation
from online_models.events import EVENT_TYPES
from streams.cli.invocation import settings_for
from streams.cli.produce import check_records, read_records
from streams.clients import partition_for
from streams.worker.decode import PLAUSIBLE_RECORD_TS

COLUMNS = ("coverage", "intra_list_diversity", "category_diversity", "events_per_s")  # after the @K ones


def _engine_config(ctx: click.Context):
    """The engine as configured (--config, RECO_* env: variants, blends, exclusions), so what is
    evaluated is what would be deployed."""
    return settings_for(ctx).engine_config()


def load_interactions(file: str, limit: int | None = None, fmt: str = "auto") -> tuple[list[dict], list[dict]]:
    """(interactions, catalogue records) of FILE, time-ordered, for an offline replay. Every record
    is checked as `reco produce` checks it (streams/cli/produce.py, the worker's own decoding; no
    check against the clock) and the first 10 bad ones are named with their line number and
    reason: an unknown event type stops here with the known ones; other records the worker would
    dead-letter are left out with a warning. `limit` keeps the first N interactions."""
    try:
        numbered = read_records(file, fmt)
        sort_events([r for _, r in numbered], file)  # a `ts` that is not a number: one error for the file
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    bad = check_records(numbered, max_event_ahead_s=None)
    records = [r for _, r in numbered]
    n_items = sum(1 for r in records if is_item_record(r))
    unknown = sorted({t for r in records if not is_item_record(r) and isinstance(t := r.get("type"), str)}
                     - set(EVENT_TYPES))
    prefix = "" if unknown else "warning: "
    for b in bad[:10]:
        click.echo(f"{prefix}{file} {b.where}: {b.reason}", err=True)
    if len(bad) > 10:
        click.echo(f"{prefix}… and {len(bad) - 10} more", err=True)
    if unknown:
        raise click.ClickException(f"{file}: unknown event type(s) {', '.join(map(repr, unknown[:5]))}; "
                                   f"known: {', '.join(EVENT_TYPES)} ({len(bad)} of {len(records)} records "
                                   "would be rejected by the worker)")
    left_out = {b.where for b in bad}
    bad_items = sum(1 for where, r in numbered if where in left_out and is_item_record(r))
    if len(bad) > bad_items:
        click.echo(f"warning: {len(bad) - bad_items} of {len(records) - n_items} events are not valid interactions "
                   "and are left out, as the worker would send them to the DLQ", err=True)
    if bad_items:
        click.echo(f"warning: {bad_items} of {n_items} catalogue records are not valid (item.v1) and are left out",
                   err=True)
    events = sort_events([r for where, r in numbered if where not in left_out], file)
    items = [r for r in events if is_item_record(r)]
    events = [r for r in events if not is_item_record(r)]
    events = events[:limit] if limit else events
    if not events:
        raise click.ClickException(f"{file}: no valid interactions to evaluate")
    return events, items


class EventTime(click.ParamType):
    """An event time: epoch milliseconds, or an ISO date / date-time (UTC unless it says otherwise)."""
    name = "TS"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text.lstrip("-").isdigit():
            ms = int(text)
            if ms < PLAUSIBLE_RECORD_TS:
                self.fail(f"{text} is not epoch milliseconds from 1995 on (seconds? then {text}000), "
                          "nor an ISO date such as 2018-01-01", param, ctx)
            return ms
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{text!r} is neither epoch milliseconds nor an ISO date (2018-01-01, "
                      "2018-01-01T12:00:00+02:00)", param, ctx)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return int(when.timestamp() * 1000)


def iso(ms: int) -> str:
    """2018-01-01, or 2018-01-01 12:30:00 when not at midnight (UTC)."""
    when = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return when.strftime("%Y-%m-%d" if when == when.replace(hour=0, minute=0, second=0, microsecond=0)
                         else "%Y-%m-%d %H:%M:%S")


def _quarter_lines(name: str, total: int):
    """Progress for a log or a pipe: a line per subject at each quarter of the events."""
    done, step = [0], max(total // 4, 1)

    def tick(n: int) -> None:
        before = done[0] // step
        done[0] += n
        if done[0] // step > before:
            click.echo(f"{name}: {min(done[0], total):,}/{total:,} events", err=True)
    return tick


@click.command("evaluate", epilog=MOVIELENS_MAPPING)
@click.argument("file", type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="FILE's format (auto: by name and first line; a directory is MovieLens)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.option("--k", "ks", type=click.IntRange(min=1), multiple=True, default=(10, 20), show_default=True,
              help="cut-offs (repeatable); the lists are as long as the largest (the global --k / RECO_K "
                   "is not used here)")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="only the first N events (after time ordering)")
@click.option("--baseline", "baselines", multiple=True, show_default=True,
              type=click.Choice(BASELINES), default=BASELINES, help="baselines to run (repeatable)")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="subjects evaluated at once, one process each  [default: the number of CPUs]")
@click.option("--partitions", type=click.IntRange(min=1), default=1, show_default=True,
              help="score a deployment with this many input partitions: users are split by the "
                   "producer's partitioner and each partition's models learn from its users only")
@click.option("--score-from", type=EventTime(), default=None,
              help="learn the events before TS (epoch ms or an ISO date, e.g. 2018-01-01, UTC) "
                   "without scoring them, then score the rest: train on history, test on what follows")
@click.option("--warm-up", type=click.IntRange(min=0), default=0,
              help="learn the first N events (after time ordering and --limit) without scoring them; "
                   "with --score-from, scoring starts at the later of the two")
@click.pass_context
def evaluate(ctx: click.Context, file: str, fmt: str, as_json: bool, ks: tuple[int, ...], limit: int | None,
             baselines: tuple[str, ...], jobs: int | None, partitions: int, score_from: int | None,
             warm_up: int) -> None:
    """Prequential evaluation of FILE (contract JSONL, YOOCHOOSE TSV, OTTO JSONL, or a MovieLens
    directory or ratings file).

    The engine is the configured one (--config, RECO_* variables); with several A/B variants
    configured, each variant's users also get their own row."""
    config = _engine_config(ctx)
    events, items = load_interactions(file, limit, fmt)
    if warm_up >= len(events) or (score_from is not None and events[-1]["ts"] < score_from):
        cut = f"after the first {warm_up:,}" if warm_up >= len(events) else f"from {iso(score_from)}"
        raise click.ClickException(f"{file}: no event to score {cut} (its {len(events):,} events end "
                                   f"{iso(events[-1]['ts'])})")
    ks = tuple(sorted(set(ks)))
    console = Console(stderr=True)
    quiet = as_json or len(events) < 5000
    with Progress(TextColumn("{task.description:>16}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=True,
                  disable=quiet or not console.is_terminal) as bar:
        def progress(name: str, total: int):
            name = SUBJECTS.get(name, name)
            if console.is_terminal:
                task = bar.add_task(name, total=total)
                return lambda n: bar.advance(task, n)
            return None if quiet else _quarter_lines(name, total)
        report = run_evaluation(events, ks, config=config, catalog_records=items, baselines=baselines,
                                progress=progress,
                                jobs=jobs or os.cpu_count() or 1, partitions=partitions,
                                partition_of=partition_for, warm_up=warm_up, score_from=score_from)
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    shards = f", {partitions} partitions" if partitions > 1 else ""
    rows = [("engine", report["engine"])]
    rows += [(f"engine · {name}", r) for name, r in report["engine"].get("variants", {}).items()]
    rows += [(SUBJECTS.get(name, name), r) for name, r in report["baselines"].items()]
    console = Console(width=100)  # fits a 100-column terminal: ranking quality, then the rest
    console.print(f"prequential evaluation of {file} ({report['engine']['events']:,} events{shards})")
    scored = report["scored"]
    if scored["warm_up"]:
        since = iso(scored["score_from"] if scored["score_from"] is not None else scored["from_ts"])
        console.print(f"scored {scored['events']:,} of {scored['of']:,} events, from {since} "
                      f"(the {scored['warm_up']:,} before were learned only)")
    for cols in ([f"{m}@{k}" for k in ks for m in ("hr", "mrr", "ndcg")], list(COLUMNS)):
        table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True)
        table.add_column("subject", no_wrap=True)
        for c in cols:
            table.add_column(HEADERS.get(c, c.upper()), justify="right", no_wrap=True)
        for name, r in rows:
            table.add_row(name, *("-" if r.get(c) is None else _cell(c, r[c]) for c in cols))
        console.print(table)
    console.print(FOOTNOTE)
    lift = report["engine"].get("lift_over_best_baseline")
    if lift is not None:
        click.echo(f"engine HR@20 / best baseline HR@20 = {lift}")


# The names the README's tables use.
SUBJECTS = {"covisit": "co-visitation only", "trending": "trending only", "mf": "online MF only",
            "river_biased_mf": "river reco.BiasedMF"}
HEADERS = {"coverage": "coverage", "intra_list_diversity": "ILD", "category_diversity": "cat-div",
           "events_per_s": "ev/s"}


FOOTNOTE = ("ILD: intra-list diversity in the engine's MF space (0–2, 1 = unrelated). cat-div: share of "
            "listed item pairs from different categories. ev/s: events per second. -: not measured — "
            "cat-div needs catalogue records with a category in FILE and a subject that reads them "
            "(not river), ILD lists of two or more items the engine's MF knows.")


def _cell(column: str, value) -> str:
    if column == "events_per_s":
        return f"{value:,.0f}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    evaluate()
