"""What gets evaluated: the engine itself and the baselines it must beat, behind one interface.

The engine and the trending / co-visitation / MF-only baselines are the same `Engine` class over a
`PartitionStore` in a temporary directory, differing only in their blend — the code that serves
live traffic. The extra baseline is river's `reco.BiasedMF` fed the same stream.
"""
from __future__ import annotations

import tempfile
from dataclasses import replace

import numpy as np
from river import optim, reco

from online_models.catalog import Catalog
from online_models.config import Blend, EngineConfig, Variant
from online_models.engine import Engine
from online_models.events import TYPE_WEIGHT, Interaction
from online_models.state.store import PartitionStore
from online_models.variants import assign

OFF = Blend(recent=0, covisit=0, trending=0, mf=0, content=0, context=0, explore=0, diversity=0, learned=False)
BASELINE_BLENDS = {
    "trending": replace(OFF, trending=1.0),
    "covisit": replace(OFF, covisit=1.0),
    "mf": replace(OFF, mf=1.0),
}


class EngineSubject:
    """Test-then-train through the live path: `publish` is the list shown just before the event
    (and what the bandit and the live hit counter learn from), `learn` applies the event."""

    def __init__(self, config: EngineConfig | None = None, catalog: Catalog | None = None,
                 checkpoint_every: int = 5000):
        self._tmp = tempfile.TemporaryDirectory(prefix="reco-eval-")
        self.store = PartitionStore(self._tmp.name)
        self.engine = Engine(self.store, catalog or Catalog(), config)
        self.checkpoint_every = checkpoint_every
        self.n = 0
        variants = self.engine.config.variants
        self._split = len(variants) > 1

    def variant_of(self, user_id: str) -> str | None:
        """The user's A/B variant when the configuration splits users, else None."""
        return assign(user_id, self.engine.config.variants).name if self._split else None

    def recommend_ids(self, user_id: str, k: int) -> list[str]:
        return [s.item_id for s in self.engine.publish(user_id, k).items]

    def learn_event(self, event: dict) -> None:
        self.engine.learn(Interaction.from_dict(event))
        self.n += 1
        if self.n % self.checkpoint_every == 0:
            self.engine.checkpoint(self.n)

    def close(self) -> None:
        self.store.close()
        self._tmp.cleanup()


def baseline_config(base: EngineConfig, name: str) -> EngineConfig:
    blend = BASELINE_BLENDS[name]
    mf_candidates = max(base.mf_candidates, 2 * base.k) if name == "mf" else base.mf_candidates
    # the co-visitation baseline is plain item-to-item co-visitation of the session's items; the
    # two-hop expansion is part of the engine's session model (docs/decisions/0011)
    two_hop = 0.0 if name == "covisit" else base.two_hop
    return replace(base, variants=(Variant(name, 1.0, blend),), mf_candidates=mf_candidates, two_hop=two_hop)


class RiverBiasedMF:
    """river's BiasedMF learning every event (y = the type's weight, negatives for skips).

    Ranking asks river's model nothing per item: its item biases and latent vectors are mirrored
    into numpy arrays as they change, so the whole catalogue is scored with one product, and an
    unseen user is never inserted into river's defaultdicts (reads must not write)."""

    def __init__(self, factors: int = 10, seed: int = 42):
        self.model = reco.BiasedMF(n_factors=factors, seed=seed,
                                   bias_optimizer=optim.SGD(0.025), latent_optimizer=optim.SGD(0.05),
                                   l2_bias=0.0, l2_latent=0.0)
        self.factors = factors
        self.index: dict[str, int] = {}
        self.ids: list[str] = []
        self.vectors = np.zeros((1024, factors))
        self.bias = np.zeros(1024)

    def recommend_ids(self, user_id: str, k: int) -> list[str]:
        n = len(self.ids)
        if not n:
            return []
        m = self.model
        scores = self.bias[:n].copy()
        if user_id in m.u_latents:
            scores += self.vectors[:n] @ np.asarray(m.u_latents[user_id])
        top = np.argpartition(-scores, min(k, n - 1))[:k] if n > k else np.arange(n)
        order = top[np.lexsort((top, -scores[top]))]
        return [self.ids[i] for i in order]

    def learn_event(self, event: dict) -> None:
        user, item = event["user_id"], event["item_id"]
        self.model.learn_one(user, item, TYPE_WEIGHT[event["type"]])
        i = self.index.get(item)
        if i is None:
            i = self.index[item] = len(self.ids)
            self.ids.append(item)
            if i >= len(self.bias):
                self.vectors = np.vstack([self.vectors, np.zeros_like(self.vectors)])
                self.bias = np.concatenate([self.bias, np.zeros_like(self.bias)])
        self.bias[i] = self.model.i_biases[item]
        self.vectors[i] = self.model.i_latents[item]

    def close(self) -> None:
        pass
