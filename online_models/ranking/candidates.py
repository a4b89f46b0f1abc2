"""Candidate gathering: every source's items for one user, each described by the features of
`ranker.py`, and the learned ranker's training pairs (the chosen item against the best others).

A candidate's features are a list in `ranker.FEATURES` order; candidates keep the order in which a
source first brought them (ties in the ranking keep it, and it is fixed by the model state).
"""
from __future__ import annotations

from itertools import accumulate, chain, islice, repeat
from operator import mul
from typing import Iterable

import numpy as np

from online_models.catalog import Catalog
from online_models.config import EngineConfig
from online_models.events import TYPE_WEIGHT
from online_models.models.content import ContentModel
from online_models.models.context import describe, scopes
from online_models.models.covisitation import CoVisitation
from online_models.models.mf import OnlineMF
from online_models.models.trending import START, Trending
from online_models.ranking.ranker import (F_CONTENT, F_CONTEXT, F_COVISIT, F_COVISIT_LONG, F_HISTORY,
                                          F_POPULAR, F_SESSION, F_SESSION_START, F_TRENDING,
                                          F_TRENDING_CATEGORY, F_TWO_HOP, MF)
from online_models.ranking.ranker import N as N_FEATURES
from online_models.state.user_state import UserState

# What the user did with an item, in words that are true for that event type. Skips and
# dislikes never reach these: they are not in `recent` and never seed candidates.
RECENT_REASONS = {  # the strongest thing the user recently did with an item they are shown again
    "purchase": "you bought this recently",
    "add_to_cart": "you added this to your cart",
    "like": "you liked this",
    "click": "you clicked this recently",
    "view": "you viewed this recently",
}
SEED_REASONS = {  # why a co-visited item is there: what the user did with the seed
    "purchase": "because you bought {}",
    "add_to_cart": "because you added {} to your cart",
    "like": "because you liked {}",
    "click": "because you clicked {}",
    "view": "because you viewed {}",
}
ZEROS = [0.0] * N_FEATURES


def strongest_kinds(user: UserState) -> dict[str, str]:
    """Item -> the strongest positive event type the user's recent history holds for it
    (ties by name, so a view and a click of equal weight read as "viewed"). One pass."""
    best: dict[str, tuple[float, str]] = {}
    for item, _, kind in user.recent:
        cand = (TYPE_WEIGHT.get(kind, 0.0), kind)
        cur = best.get(item)
        if cur is None or cand > cur:
            best[item] = cand
    return {item: kind if kind in RECENT_REASONS else "view" for item, (_, kind) in best.items()}


class Candidates:
    """One list's candidates: each source's items and values as added, then (`build`) the items
    in the order a source first brought them with their features as one matrix; item ->
    (source, reason) for the sources that name their own reason; the user's MF vector (None:
    the MF is off or knows nothing)."""

    __slots__ = ("_items", "_values", "_features", "items", "matrix", "tagged", "vec")

    def __init__(self) -> None:
        self._items: list[list[str]] = []
        self._values: list = []
        self._features: list[int] = []
        self.items: list[str] = []
        self.matrix = np.zeros((0, N_FEATURES))
        self.tagged: dict[str, tuple[str, str]] = {}
        self.vec: np.ndarray | None = None

    def add(self, f: int, items: list[str], values) -> None:
        """Add values[i] to feature `f` of items[i] (a list, or an array of the same length)."""
        if items:
            self._items.append(items)
            self._values.append(values)
            self._features.append(f)

    def known(self) -> dict[str, None]:
        """The items added so far, in first-added order."""
        return dict.fromkeys(chain.from_iterable(self._items))

    def tag(self, items: Iterable[str], reason: tuple[str, str]) -> None:
        """`reason` for each item no earlier source has named one for."""
        setdefault = self.tagged.setdefault
        for item in items:
            setdefault(item, reason)

    def build(self) -> None:
        """The feature matrix: each feature's values summed in the order they were added."""
        everything = list(chain.from_iterable(self._items))
        self.items = list(dict.fromkeys(everything))
        slot = {item: i for i, item in enumerate(self.items)}
        self.matrix = np.zeros((len(self.items), N_FEATURES))
        if everything:
            rows = np.fromiter(map(slot.__getitem__, everything), dtype=np.int64, count=len(everything))
            cols = np.repeat(self._features, [len(x) for x in self._items])
            np.add.at(self.matrix, (rows, cols), np.concatenate([np.asarray(v, dtype=float) for v in self._values]))

    def scores(self, w: list[float]) -> np.ndarray:
        """The weighted sum per candidate, features in their fixed order: plain sequential
        float arithmetic per candidate (no BLAS, no SIMD reduction), the same on every CPU."""
        m = self.matrix
        total = np.zeros(len(m))
        for f, wf in enumerate(w):
            if wf:
                total += m[:, f] * wf
        return total


def _no_tag(items, reason) -> None:
    pass


class CandidateSources:
    """The models a list's candidates come from, and how many each brings (the configuration)."""

    def __init__(self, config: EngineConfig, catalog: Catalog, trending: Trending, covisit: CoVisitation,
                 mf: OnlineMF, content: ContentModel, context: Trending, popular: Trending,
                 covisit_long: CoVisitation):
        self.config = config
        self.catalog = catalog
        self.trending = trending
        self.popular = popular
        self.covisit = covisit
        self.covisit_long = covisit_long
        self.mf = mf
        self.content = content
        self.context = context

    def seeds(self, user: UserState) -> list[str]:
        """The current session's distinct items, newest first — except those the user skipped or
        disliked since (a negative is never the reason for a recommendation)."""
        seeds: list[str] = []
        limit = self.config.recent_window
        skipped = user.skipped
        for item in reversed(user.session_items):
            if item not in seeds and item not in skipped:
                seeds.append(item)
                if len(seeds) >= limit:
                    break
        return seeds

    def gather(self, user: UserState, seeds: list[str], w: list[float], every: bool, k: int,
               reasons: bool = True) -> Candidates:
        """Every candidate and its features (all but the MF score, which the ranking adds for its
        shortlist), from every source whose weight in `w` is not 0 — or from all of them
        (`every`: the learned ranker needs each signal). Without `reasons` (training), no
        candidate is tagged with one."""
        cfg = self.config
        decay = cfg.recency_decay
        out = Candidates()
        add, tag = out.add, (out.tag if reasons else _no_tag)
        on = [every or bool(x) for x in w]
        if on[F_SESSION]:
            add(F_SESSION, seeds, list(accumulate(repeat(decay, len(seeds) - 1), mul, initial=1.0)))
        kinds = strongest_kinds(user) if reasons and every and user.recent else {}  # for the reasons below
        for f, model in ((F_COVISIT, self.covisit), (F_COVISIT_LONG, self.covisit_long)):
            if not on[f]:
                continue
            v = 1.0
            n = model.score_neighbors
            for seed in seeds:  # older seeds count less, so they bring fewer neighbours
                items, values = model.strongest(seed)
                near = items[:n]
                add(f, near, values[:n] * v)
                if f == F_COVISIT_LONG and reasons:  # not in the 72 h rows `explain` reads: say which seed brought it
                    tag(near, ("covisit", SEED_REASONS[kinds.get(seed, "view")].format(seed)))
                v *= decay
                n = max(n // 2, cfg.min_seed_neighbors)
        if on[F_TWO_HOP] and cfg.two_hop and seeds:  # neighbours of the latest item's neighbours
            strongest, breadth = self.covisit.strongest, cfg.two_hop_breadth
            for b, vb in self.covisit.neighbors(seeds[0])[:cfg.two_hop_neighbors]:
                items, values = strongest(b)
                add(F_TWO_HOP, items[:breadth], values[:breadth] * vb)
        cat = self.catalog.category(seeds[0]) if seeds else None
        if on[F_TRENDING_CATEGORY] and cat:
            self._add_trending(out, tag, self.trending, cat, 2 * k, F_TRENDING_CATEGORY, ("trending", f"trending in {cat}"))
        if on[F_TRENDING]:
            self._add_trending(out, tag, self.trending, None, k, F_TRENDING)
        if on[F_SESSION_START] and not seeds:  # a new session: what sessions start with now
            self._add_trending(out, tag, self.trending, START, k, F_SESSION_START)
        if on[F_CONTEXT] and user.last_ts:
            for scope in scopes(user.last_context.get("device"), user.last_ts, cfg.utc_offset_hours):
                self._add_trending(out, tag, self.context, scope, k, F_CONTEXT, ("context", describe(scope)))
        popular = self._add_trending(out, tag, self.popular, None, 2 * k, F_POPULAR) if on[F_POPULAR] else []
        if on[F_HISTORY] and user.recent:
            history = list({item: None for item, _, _ in reversed(user.recent)})  # newest first, once
            add(F_HISTORY, history, [1.0] * len(history))
            if reasons:
                for item in history:
                    tag((item,), ("recent", RECENT_REASONS[kinds.get(item, "view")]))
        if on[F_CONTENT] and user.taste:
            for item, reason in self.content.candidates(user, cfg.content_candidates):
                add(F_CONTENT, [item], [0.5])
                tag((item,), ("content", reason))
            liked = self.content.liked(user, out.known())
            add(F_CONTENT, [item for item, _ in liked], [a for _, a in liked])
        tag(popular, ("trending", "popular this month"))  # last: the reasons above are more specific
        vec = out.vec = self.mf.user_vector(user) if on[MF] else None
        if vec is not None and cfg.mf_candidates:
            known = out.known()
            extra = [item for item, _ in self.mf.top(vec, cfg.mf_candidates) if item not in known]
            add(MF, extra, [0.0] * len(extra))
            tag(extra, ("mf", "similar to what you interacted with"))
        out.build()
        return out

    @staticmethod
    def _add_trending(out: Candidates, tag, model: Trending, scope: str | None, n: int, f: int,
                      reason: tuple[str, str] | None = None) -> list[str]:
        """A trending scope's n best, normalised so its leader is 1.0; returns their ids."""
        entries, lead = model.top_raw(scope, n)
        items = [item for _, item in entries]
        out.add(f, items, [-negv / lead for negv, _ in entries])
        if reason is not None:
            tag(items, reason)
        return items

    def training_pair(self, user: UserState, item: str, w: list[float], negatives: int,
                      leave_out_consumed: bool = False):
        """For the learned ranker, before the event is learned: the features of `item` (the one
        the user chose) and of the `negatives` candidates ranked best without it, MF included —
        or None when the item was not a candidate."""
        cands = self.gather(user, self.seeds(user), w, True, self.config.k, reasons=False)
        at = {i: n for n, i in enumerate(cands.items)}.get(item)
        if at is None:
            return None
        scores = cands.scores(w)
        order = np.argsort(-scores, kind="stable").tolist()
        others = (i for i in order if i != at)
        if leave_out_consumed:  # as the list would: none of the others is an item the user already had
            had, items = user.had_before(), cands.items
            others = (i for i in others if not had(items[i]))
        group = [at, *islice(others, negatives)]
        if len(group) == 1:
            return None
        rows = cands.matrix[group].tolist()
        if cands.vec is not None:
            ids = self.mf.rows_of([cands.items[i] for i in group])
            known = ids >= 0
            if known.any():
                p = self.mf.probability_rows(cands.vec, ids[known]).tolist()
                for x, v in zip((r for r, ok in zip(rows, known.tolist()) if ok), p):
                    x[MF] = v
        return rows[0], rows[1:]
