"""faust's worker as `reco serve` runs it: it says where it serves, ends with one line on a
crash it can name, and stops within a bounded time."""
from __future__ import annotations

import asyncio
import os
import sys
import threading

import click
import faust
from faust.exceptions import ConsistencyError

from streams.serve.health import ServeHealth
from streams.serve.startup import ServeError, broker_lost
from streams.settings import Settings

STOP_GRACE_S = 10.0


def _quiet_cancellation(args) -> None:
    if not issubclass(args.exc_type, asyncio.CancelledError):
        threading.__excepthook__(args)


class ServeWorker(faust.Worker):
    """faust's worker, saying where it serves once the table is restored and the web server up."""

    def __init__(self, app: faust.App, settings: Settings, health: ServeHealth, table_changelog: str, **kwargs):
        super().__init__(app, **kwargs)
        self.settings, self.health, self.table_changelog = settings, health, table_changelog
        self.spinner = None  # faust's progress spinner writes terminal escapes even to files

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        self.health.started = True
        click.echo(f"serving on http://{self.settings.serve_host}:{self.settings.serve_port}")

    def _schedule_shutdown(self, signal) -> None:
        """faust's stop waits for a consumer that retries an unreachable broker for good: past
        STOP_GRACE_S the process ends anyway (the table is in memory; the group drops the member
        at its session timeout)."""
        super()._schedule_shutdown(signal)

        def force() -> None:
            click.echo(f"stopped without leaving the group: the broker did not answer within {STOP_GRACE_S:.0f} s",
                       err=True)
            sys.stdout.flush()
            os._exit(0)
        timer = threading.Timer(STOP_GRACE_S, force)
        timer.daemon = True
        timer.start()
        # The consumer thread, cancelled while it retries, would print a traceback of the cancellation.
        threading.excepthook = _quiet_cancellation

    def _crash(self, reason: BaseException) -> None:
        """A crash `reco serve` can name ends the process with that one line, at once: there is
        nothing to save (the table is in memory and mirrors topics the broker lost), and a stop
        through faust prints the tracebacks of clients still retrying a broker that is gone."""
        if isinstance(reason, ConsistencyError):  # the table read further than its changelog now goes
            reason = ServeError(broker_lost(self.settings, f"{self.table_changelog} is behind what this "
                                            "process already read"))
        if isinstance(reason, ServeError):
            click.echo(f"Error: {reason}", err=True)
            sys.stdout.flush()
            os._exit(1)
        super()._crash(reason)
