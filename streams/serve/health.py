"""What `/readyz` of `reco serve` reports."""
from __future__ import annotations


class ServeHealth:
    """Ready once faust has restored the table and started the web server, and not while an
    agent is down: from its failure until it handles a record again (faust restarts a crashed
    agent at once, so a crash loop would otherwise look healthy)."""

    def __init__(self):
        self.started = False
        self.down: dict[str, str] = {}  # agent -> why

    def failed(self, agent: str, error: BaseException) -> None:
        self.down[agent] = f"agent {agent} failed: {type(error).__name__}: {error}"

    def waiting(self, agent: str, why: str) -> None:
        self.down[agent] = f"agent {agent} waiting: {why}"

    def handled(self, agent: str) -> None:
        self.down.pop(agent, None)

    def not_ready(self) -> str | None:
        if not self.started:
            return "starting"
        return "; ".join(self.down.values()) or None
