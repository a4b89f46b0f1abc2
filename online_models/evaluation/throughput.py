"""How much of the per-event time is the models'? The engine's prequential events/s beside the
same per-event path with the models switched off, measured in the same run (this machine is
noisy: only the ratio and the per-event difference are comparable).

"Models off" keeps everything around them: the event dict turned into an Interaction, the user
state (idempotency check, history), variant assignment, publishing a 20-item list, checkpoints
and the evaluation's bookkeeping; it learns nothing and publishes a fixed list (no candidates,
no reasons to build). No JSON decoding or schema check: `reco evaluate` has none either. Its rate is the ceiling any
engine with this per-event path can reach, whatever its models cost (docs/decisions/0012).
"""
from __future__ import annotations

from online_models.evaluation.baselines import EngineSubject
from online_models.evaluation.prequential import prequential
from online_models.ranking.recommender import Scored


class ModelsOff(EngineSubject):
    """The engine's per-event path with no learning and a constant list of `k` items."""

    def __init__(self, k: int = 20):
        super().__init__()
        self.engine._learners = ()
        fixed = [Scored(f"fixed-{n}", 1.0, "trending now") for n in range(k)]
        self.engine.recommender.rank = lambda *args, **kwargs: list(fixed)


def measure(events: list[dict], rounds: int = 3) -> dict:
    """Alternating runs of the engine and of the models-off path over the same events."""
    results = []
    for r in range(rounds):
        rates = {}
        for name, make in (("engine", EngineSubject), ("models_off", ModelsOff)):
            subject = make()
            try:
                report = prequential(subject, events)
            finally:
                subject.close()
            rates[name] = report.events / report.seconds
        results.append({
            "round": r + 1,
            "engine_events_per_s": round(rates["engine"]),
            "models_off_events_per_s": round(rates["models_off"]),
            "ratio": round(rates["engine"] / rates["models_off"], 4),
            "models_us_per_event": round(1e6 / rates["engine"] - 1e6 / rates["models_off"], 1),
            "path_us_per_event": round(1e6 / rates["models_off"], 1),
        })
    ratios = sorted(x["ratio"] for x in results)
    return {"events": len(events), "rounds": results, "median_ratio": ratios[len(ratios) // 2]}
