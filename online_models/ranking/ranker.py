"""A ranker that learns, from the traffic, how much each signal counts (docs/decisions/0016).

Every candidate of a list is described by the same few features — how it was found (the
session's items, co-visitation at a 72-hour and an unbounded horizon, two hops, trending now,
popular this month, on this device and hour, the user's categories, their MF taste) and what the
user did with it before (in their history at all). A list is ordered by a weighted sum of
them. The weights start at the fixed blend's (decision 0010) and are learned online, pairwise:
before an event is learned, the item the user chose is compared with the candidates the engine
ranked highest for them at that moment, and every weight moves so the chosen item would have
scored higher (logistic loss on the score difference, AdaGrad steps per feature, so features of
any scale learn at the same pace). In a shop, returning to the session's items earns its
weight; on movie ratings, where nobody rates a movie twice, the history weight turns negative
and the long horizon takes over from the short one.

Learning reads the model state before the event and nothing else, in plain sequential float
arithmetic: a function of the input, so replays and restores give the same weights.
"""
from __future__ import annotations

import math
import zlib

from online_models.config import Blend, EngineConfig
from online_models.state import rowkeys

FEATURES = ("session", "covisit", "two_hop", "trending_category", "trending", "session_start",
            "context", "content", "mf", "history", "covisit_long", "popular")
N = len(FEATURES)
(F_SESSION, F_COVISIT, F_TWO_HOP, F_TRENDING_CATEGORY, F_TRENDING, F_SESSION_START, F_CONTEXT, F_CONTENT,
 MF, F_HISTORY, F_COVISIT_LONG, F_POPULAR) = range(N)

LEARNING_RATE = 0.02
NEGATIVES = 60         # the chosen item is compared with this many of the best-ranked others
WEIGHT_BOUND = 20.0    # no weight runs away on a degenerate stream
TRAIN_EVERY = 4         # learn from one event in 4 (chosen by event id): a quarter of the cost, about the same weights
# Coming back to things (docs/decisions/0019): a user's lists leave out what they already had when
# their rate of returning to a recent item, their own events weighed with the traffic's rate as
# RETURN_PRIOR events' worth, is below RETURN_FLOOR. The traffic's counts are halved past RETURN_WINDOW.
RETURN_FLOOR = 0.05
RETURN_PRIOR = 10
RETURN_WINDOW = 100_000


def prior(blend: Blend, config: EngineConfig) -> list[float]:
    """The fixed blend as feature weights: a learned ranker starts as the tuned blend ranks."""
    w = [0.0] * N
    w[F_SESSION] = blend.recent
    w[F_COVISIT] = blend.covisit
    w[F_TWO_HOP] = blend.covisit * config.two_hop
    w[F_TRENDING_CATEGORY] = blend.trending
    w[F_TRENDING] = 0.5 * blend.trending
    w[F_SESSION_START] = blend.trending
    w[F_CONTEXT] = blend.context
    w[F_CONTENT] = blend.content
    w[MF] = blend.mf
    return w


def score(weights: list[float], features: list[float]) -> float:
    """The weighted sum, one product at a time in feature order: no SIMD reduction, and not
    `sum()`, which adds floats with compensation from Python 3.12 on (other bits)."""
    total = 0.0
    for w, x in zip(weights, features):
        total += w * x
    return total


class LearnedRanker:
    """The shard's learned feature weights, and their online training."""

    name = "ranker"
    WEIGHTS_KEY = rowkeys.key("weights")

    def __init__(self, start: list[float], features_of=None):
        self.start = list(start)
        self.weights = list(start)
        self.squares = [0.0] * N  # AdaGrad: sum of squared gradients per feature
        self.updates = 0
        self.returns = 0    # the traffic's positive events on an item the user had recently ...
        self.positives = 0  # ... out of its positive events (both halved past RETURN_WINDOW)
        # (user state before the event, item) -> (features of the item, of the hard negatives)
        self.features_of = features_of
        self._dirty = False

    def return_rate(self) -> float:
        """The traffic's rate of returning to an item just had (1/2 before any event)."""
        return (self.returns + 1) / (self.positives + 2)

    def leaves_out_consumed(self, user) -> bool:
        """Whether this user's list leaves out every item they already had: they (and, until they
        have many events, the traffic) rarely come back to one."""
        rate = (user.returns + RETURN_PRIOR * self.return_rate()) / (user.positives() + RETURN_PRIOR)
        return rate < RETURN_FLOOR

    def learn_one(self, ev, user) -> None:
        if ev.is_negative:
            return
        self.positives += 1
        self.returns += user.had_recently(ev.item_id)
        if self.positives >= RETURN_WINDOW:
            self.positives //= 2
            self.returns //= 2
        self._dirty = True
        if self.features_of is None:
            return
        if zlib.crc32(ev.event_id.encode()) % TRAIN_EVERY:  # deterministic, unsalted sample
            return
        pair = self.features_of(user, ev.item_id, self.weights, NEGATIVES, self.leaves_out_consumed(user))
        if pair is None:  # the chosen item was not among the candidates: nothing to compare
            return
        chosen, others = pair
        w, g2 = self.weights, self.squares
        # Listwise: softmax over the chosen item and the others; the gradient of its log-likelihood
        # is the chosen item's features minus the probability-weighted mean of all of them.
        group = [chosen] + others
        scores = [score(w, x) for x in group]
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        total = math.fsum(exps)
        for f in range(N):
            g = chosen[f] - math.fsum(e * x[f] for e, x in zip(exps, group)) / total
            if g:
                g2[f] += g * g
                v = w[f] + LEARNING_RATE * g / math.sqrt(g2[f])
                w[f] = WEIGHT_BOUND if v > WEIGHT_BOUND else max(v, -WEIGHT_BOUND)
        self.updates += 1
        self._dirty = True

    def describe(self) -> dict[str, float]:
        return dict(zip(FEATURES, self.weights))

    # -- persistence ----------------------------------------------------------------------
    def export_dirty(self) -> dict[str, object]:
        if not self._dirty:
            return {}
        self._dirty = False
        return {self.WEIGHTS_KEY: {"features": list(FEATURES), "weights": self.weights,
                                   "squares": self.squares, "updates": self.updates,
                                   "returns": self.returns, "positives": self.positives}}

    def mark_all_dirty(self) -> None:
        self._dirty = bool(self.updates or self.positives)

    def import_rows(self, rows: dict[str, object]) -> None:
        row = rows.get(self.WEIGHTS_KEY)
        if not isinstance(row, dict) or row.get("features") != list(FEATURES):
            return  # another feature set: start again from the blend (a model change, like any)
        self.weights = [float(v) for v in row["weights"]]
        self.squares = [float(v) for v in row["squares"]]
        self.updates = int(row["updates"])
        self.returns = int(row.get("returns", 0))
        self.positives = int(row.get("positives", 0))
