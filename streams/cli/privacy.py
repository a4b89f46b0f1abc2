"""`reco forget`, `opt-out`, `opt-in`, `explain`: a user's rights, as requests to the workers
(through the control topic and `reco serve`) and as a read of what the engine holds."""
from __future__ import annotations

from pathlib import Path

import click

from streams.cli.invocation import settings_for
from streams.settings import Settings


@click.command()
@click.argument("user_id")
@click.pass_context
def forget(ctx: click.Context, user_id: str):
    """Ask the engine to forget USER_ID everywhere.

    Writes a request to the control topic; `reco serve` forwards it to the workers, so nothing
    happens until a `reco serve` runs (a request written before waits for it)."""
    from streams.clients import ensure_topics, producer
    from streams.serve.app import forget_request

    settings = settings_for(ctx)
    ensure_topics(settings)
    p = producer(settings)
    p.produce(settings.control_topic, key=user_id.encode(), value=forget_request(user_id))
    if p.flush(settings.delivery_timeout_s):
        raise click.ClickException("the forget-user request was not delivered")
    _control_sent(settings, "forget-user", user_id)


def _control_sent(settings: Settings, what: str, user_id: str) -> None:
    """Say where the request went and, on stderr, whether a `reco serve` is there to forward it."""
    from streams.clients import group_active

    click.echo(f"{what} request for {user_id!r} sent to {settings.control_topic}; "
               "`reco serve` forwards it to the workers")
    active = group_active(settings, settings.serve_group_id)
    if active is False:
        click.echo(f"warning: no `reco serve` is running (group {settings.serve_group_id} has no members): "
                   f"the request waits in {settings.control_topic} until one starts", err=True)
    elif active is None:
        click.echo(f"note: written to {settings.control_topic}; `reco serve` (group {settings.serve_group_id}) "
                   "forwards it to the workers (is it running?)", err=True)


def _send_control(ctx: click.Context, user_id: str, action: str) -> None:
    from streams.clients import ensure_topics, producer
    from streams.control import control_request, request_problem

    problem = request_problem(user_id, action)
    if problem is not None:
        raise click.ClickException(f"invalid user id: {problem}")
    settings = settings_for(ctx)
    ensure_topics(settings)
    p = producer(settings)
    p.produce(settings.control_topic, key=user_id.encode(), value=control_request(user_id, action))
    if p.flush(settings.delivery_timeout_s):
        raise click.ClickException(f"the {action} request was not delivered")
    _control_sent(settings, action, user_id)


@click.command("opt-out")
@click.argument("user_id")
@click.pass_context
def opt_out(ctx: click.Context, user_id: str):
    """USER_ID objects to profiling: their profile is deleted, none is kept from then on, and
    their lists are non-personalised (trending, popular on their device) until they opt in.

    Writes a request to the control topic; `reco serve` forwards it to the workers, so nothing
    happens until a `reco serve` runs (a request written before waits for it)."""
    _send_control(ctx, user_id, "opt_out")


@click.command("opt-in")
@click.argument("user_id")
@click.pass_context
def opt_in(ctx: click.Context, user_id: str):
    """End USER_ID's opt-out: their next events build a profile again, starting from an empty one.

    Writes a request to the control topic; `reco serve` forwards it to the workers, so nothing
    happens until a `reco serve` runs (a request written before waits for it)."""
    _send_control(ctx, user_id, "opt_in")


@click.command()
@click.argument("user_id")
@click.option("--json", "as_json", is_flag=True, help="print the profile as one JSON object (sorted keys)")
@click.pass_context
def explain(ctx: click.Context, user_id: str, as_json: bool):
    """Show what the engine holds about USER_ID (their right of access), in words: recent items
    and event types, session, purchases, skips, taste categories, A/B variant, opt-out status
    and the current list with its reasons.

    Reads the worker's stores under --state-dir read-only (it works beside a running worker; run
    it on each worker's host, or ask `reco serve`: GET /users/{user_id}/profile/) and the user's
    latest list on the recommendations topic. A user the engine holds nothing about (never
    seen, forgotten, deleted after the retention period) is answered so, with exit status 0;
    with --json, "held" is then false."""
    from online_models.profile import lines
    from streams.control import request_problem
    from streams.profile import ProfileError, build, current_list, from_stores, to_json

    problem = request_problem(user_id, "forget_user")
    if problem is not None:
        raise click.ClickException(f"invalid user id: {problem}")
    settings = settings_for(ctx)
    if not Path(settings.state_dir).is_dir():
        raise click.ClickException(f"no state directory at {settings.state_dir} (--state-dir / RECO_STATE_DIR: "
                                   "a worker's; or ask `reco serve`: GET /users/{user_id}/profile/)")
    try:
        states, opted_out = from_stores(settings, user_id)
        found = build(settings, user_id, states, opted_out, current_list(settings, user_id))
    except ProfileError as e:
        raise click.ClickException(str(e)) from None
    click.echo(to_json(found, indent=True).decode() if as_json else "\n".join(lines(found)))
