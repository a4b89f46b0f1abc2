"""What every `reco` command needs from its invocation: the settings, built once from the global
options (defaults < --config FILE < RECO_* env < flags)."""
from __future__ import annotations

import click

from streams.settings import Settings, SettingsProblem, load_settings, unknown_env


def settings_for(ctx: click.Context, **overrides) -> Settings:
    """The settings of this invocation. A subcommand invoked on its own (tests, `python -m`)
    has no global options: defaults, RECO_* env and `overrides` only."""
    top = ctx.find_root()
    root = top.params if isinstance(top.command, click.Group) else {}
    merged = {**{k: v for k, v in root.items() if k != "config"}, **overrides}
    for warning in unknown_env():
        click.echo(f"warning: {warning}", err=True)
    flagged = {name for name in root if name != "config"}  # the settings with a global flag
    try:
        settings = load_settings(root.get("config"), flagged=flagged, **merged)
    except (SettingsProblem, FileNotFoundError) as e:
        raise click.UsageError(f"invalid settings: {e}") from None
    top.meta["reco.settings"] = settings  # for the Kafka error message below
    return settings
