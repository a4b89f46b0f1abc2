"""`reco tail`, `reco dlq`: print what the workers wrote to the recommendations topic and the DLQ."""
from __future__ import annotations

from typing import Iterator

import click

from streams.cli.invocation import settings_for


def echo_lines(lines: Iterator[str], count: int | None) -> int:
    """Print `lines` as they come, stopping after `count` of them (Ctrl-C ends quietly); returns
    how many were printed."""
    shown = 0
    try:
        for text in lines:
            click.echo(text)
            shown += 1
            if count and shown >= count:
                break
    except KeyboardInterrupt:
        pass
    return shown


@click.command()
@click.option("--from-beginning", is_flag=True,
              help="first replay every update still in the topic (compaction keeps at least each "
                   "user's latest; older ones may include users forgotten since)")
@click.option("--user", "user_id", help="only this user")
@click.option("--json", "as_json", is_flag=True, help="print raw JSON values, one recommendation per line; a deleted "
              "list prints as null (use --user to know whose)")
@click.option("--timeout", type=float, help="stop after this many seconds")
@click.option("--count", type=int, help="stop after this many updates")
@click.pass_context
def tail(ctx: click.Context, from_beginning: bool, user_id: str | None, as_json: bool,
         timeout: float | None, count: int | None):
    """Print recommendation updates as they arrive; a deleted list (the user was forgotten, opted
    out or deleted after the retention period: the tombstone does not say which) prints as
    "USER  list deleted (forgotten, opted out or expired)"."""
    import orjson

    from streams.cli.tail import NotARecommendation, follow, format_deleted, format_line

    def line(user: str, rec: dict | None) -> str:
        if rec is None:  # a tombstone: forgotten, opted out or expired
            # --json: the tombstone's value, null, so every other line stays a recommendation
            return "null" if as_json else format_deleted(user)
        return orjson.dumps(rec).decode() if as_json else format_line(rec)

    updates = follow(settings_for(ctx), from_beginning=from_beginning, timeout_s=timeout)
    try:
        echo_lines((line(user, rec) for user, rec, _ in updates if not user_id or user == user_id), count)
    except NotARecommendation as e:
        raise click.ClickException(str(e)) from None


@click.command()
@click.option("--from-beginning", is_flag=True, help="every record still in the DLQ, not only new ones")
@click.option("--follow", is_flag=True, help="keep waiting for new records (default: stop at the end)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per record")
@click.option("--timeout", type=float, help="stop after this many seconds")
@click.option("--count", type=click.IntRange(min=1), help="stop after this many records")
@click.pass_context
def dlq(ctx: click.Context, from_beginning: bool, follow: bool, as_json: bool, timeout: float | None,
        count: int | None):
    """Print what the worker rejected: each dead-lettered record's reason, the topic, partition and
    offset it came from, and a preview of its original bytes."""
    import orjson

    from streams.cli.dlq import format_line, rejected

    settings = settings_for(ctx)
    records = rejected(settings, from_beginning=from_beginning, follow=follow, timeout_s=timeout)
    shown = echo_lines((orjson.dumps(rec).decode() if as_json else format_line(rec) for rec in records), count)
    if not as_json and not follow:
        click.echo(f"{shown} rejected record{'s' if shown != 1 else ''} in {settings.dlq_topic}", err=True)
