"""Ranking: gather candidates from every source, blend their scores, apply business rules,
re-rank for diversity, hand some slots to exploration, and say why each item is there.

Each candidate is described by the features of `ranker.py` and ordered by their weighted sum:
the shard's learned weights (docs/decisions/0016), or a variant's fixed blend (docs/decisions/0010).
"""
from __future__ import annotations

from dataclasses import replace
from itertools import islice
from operator import mul
from typing import Iterator, NamedTuple

import numpy as np

from .catalog import Catalog
from .config import Blend, EngineConfig
from .content import ContentModel
from .context import describe, scopes
from .covisitation import CoVisitation
from .events import TYPE_WEIGHT
from .exploration import SourceBandit, draws, slot_uniform
from .mf import OnlineMF
from .ranker import (
    F_CONTENT,
    F_CONTEXT,
    F_COVISIT,
    F_COVISIT_LONG,
    F_HISTORY,
    F_POPULAR,
    F_SESSION,
    F_SESSION_START,
    F_TRENDING,
    F_TRENDING_CATEGORY,
    F_TWO_HOP,
    MF,
    LearnedRanker,
    prior,
)
from .ranker import N as N_FEATURES
from .rules import NO_REQUEST, Request, Rules, everything, mmr
from .trending import START, Trending
from .user_state import UserState


class Scored(NamedTuple):
    item_id: str
    score: float
    reason: str
    source: str = "trending"   # recent | covisit | mf | content | context | trending
    explored: bool = False     # placed by the exploration bandit


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


NOT_PERSONALISED = "not personalised: "  # starts every reason of an opted-out user's list


def _strongest_kinds(user: UserState) -> dict[str, str]:
    """Item -> the strongest positive event type the user's recent history holds for it
    (ties by name, so a view and a click of equal weight read as "viewed"). One pass."""
    best: dict[str, tuple[float, str]] = {}
    for item, _, kind in user.recent:
        cand = (TYPE_WEIGHT.get(kind, 0.0), kind)
        cur = best.get(item)
        if cur is None or cand > cur:
            best[item] = cand
    return {item: kind if kind in RECENT_REASONS else "view" for item, (_, kind) in best.items()}


class Recommender:
    def __init__(self, config: EngineConfig, catalog: Catalog, trending: Trending, covisit: CoVisitation,
                 mf: OnlineMF, content: ContentModel, context: Trending, bandit: SourceBandit,
                 popular: Trending, covisit_long: CoVisitation, ranker: LearnedRanker):
        self.config = config
        self.catalog = catalog
        self.trending = trending
        self.popular = popular
        self.covisit = covisit
        self.covisit_long = covisit_long
        self.ranker = ranker
        self.mf = mf
        self.content = content
        self.context = context
        self.bandit = bandit
        self.rules = Rules(config, catalog)

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

    def weights(self, blend: Blend) -> list[float]:
        """The feature weights a list of this variant is ranked with."""
        return self.ranker.weights if blend.learned else prior(blend, self.config)

    def rank(self, user: UserState, blend: Blend, k: int | None = None, user_id: str = "",
             request: Request = NO_REQUEST) -> list[Scored]:
        k = k or self.config.k
        cfg = self.config
        w = self.weights(blend)
        seeds = self.seeds(user)
        scores, _, tagged, vec = self._gather(user, seeds, w, blend.learned, k)
        diversify = blend.diversity and len(self.catalog)
        want = 2 * k if diversify else k
        allowed = self.rules.allowed_fn(user, request)
        picked: list[tuple[str, float]] = []
        if scores:
            ranked = self._order(scores, vec, w[MF], 2 * want)
            if allowed is everything:
                picked = list(islice(ranked, want))
            else:
                for item, score in ranked:
                    if allowed(item):
                        picked.append((item, score))
                        if len(picked) >= want:
                            break
        if diversify:
            picked = mmr(picked, k, blend.diversity, self.catalog)
        explain = self._explainer(user, seeds, tagged)
        out = [explain(item, score) for item, score in picked]
        if len(out) < k:
            self._fill(out, k, user, allowed)
        if blend.explore and len(out) > cfg.explore_from:
            self._explore(out, user, user_id, blend, allowed, vec, seeds)
        return out

    def rank_anonymous(self, blend: Blend, device: str | None, ts: int, k: int | None = None,
                       request: Request = NO_REQUEST) -> list[Scored]:
        """A list for a user who opted out of profiling: trending, and popular on `device` and
        at the time of day of `ts` — ranked from a throwaway state holding only those two, so
        nothing about the user is read; no exploration (its draws are seeded by the user)."""
        probe = UserState(last_ts=ts, last_context={"device": device} if device else {})
        plain = replace(blend, recent=0.0, covisit=0.0, mf=0.0, content=0.0, explore=0.0, learned=False,
                        trending=blend.trending or Blend.trending, context=blend.context or Blend.context)
        return [s._replace(reason=NOT_PERSONALISED + s.reason) for s in self.rank(probe, plain, k, "", request)]

    # -- candidates and their features ------------------------------------------------------
    def _gather(self, user: UserState, seeds: list[str], w: list[float], every: bool, k: int):
        """Every candidate's features (ranker.FEATURES) and its score under the weights `w`
        (all but the MF's, which `_order` adds for the shortlist), from every source whose
        weight is not 0 — or from all of them (`every`: the learned ranker needs each signal).
        Returns (scores, features, tagged, the user's MF vector or None)."""
        cfg = self.config
        decay = cfg.recency_decay
        feats: dict[str, list[float]] = {}
        tagged: dict[str, tuple[str, str]] = {}   # item -> (source, reason) for the smaller sources
        on = [every or bool(x) for x in w]
        zeros = [0.0] * N_FEATURES

        def add(item: str, f: int, v: float) -> None:
            x = feats.get(item)
            if x is None:
                x = feats[item] = zeros[:]
            x[f] += v

        if on[F_SESSION]:
            v = 1.0
            for item in seeds:
                add(item, F_SESSION, v)
                v *= decay
        kinds = _strongest_kinds(user) if every and user.recent else {}  # for the reasons below
        for f, model in ((F_COVISIT, self.covisit), (F_COVISIT_LONG, self.covisit_long)):
            if not on[f]:
                continue
            v = 1.0
            n = model.score_neighbors
            for seed in seeds:  # older seeds count less, so they bring fewer neighbours
                for item, value in model.neighbors(seed)[:n]:  # add(), inlined: the hottest loop
                    x = feats.get(item)
                    if x is None:
                        x = feats[item] = zeros[:]
                    x[f] += v * value
                if f == F_COVISIT_LONG:  # not in the 72 h rows `explain` reads: say which seed brought it
                    reason = ("covisit", SEED_REASONS[kinds.get(seed, "view")].format(seed))
                    for item, _ in model.neighbors(seed)[:n]:
                        tagged.setdefault(item, reason)
                v *= decay
                n = max(n // 2, cfg.min_seed_neighbors)
        if on[F_TWO_HOP] and cfg.two_hop and seeds:  # neighbours of the latest item's neighbours
            for b, vb in self.covisit.neighbors(seeds[0])[:cfg.two_hop_neighbors]:
                for item, value in self.covisit.neighbors(b)[:cfg.two_hop_breadth]:
                    add(item, F_TWO_HOP, vb * value)
        cat = self.catalog.category(seeds[0]) if seeds else None
        if on[F_TRENDING_CATEGORY] and cat:
            self._add_trending(self.trending, cat, 2 * k, add, F_TRENDING_CATEGORY, tagged,
                               ("trending", f"trending in {cat}"))
        if on[F_TRENDING]:
            self._add_trending(self.trending, None, k, add, F_TRENDING, tagged, None)
        if on[F_SESSION_START] and not seeds:  # a new session: what sessions start with now
            self._add_trending(self.trending, START, k, add, F_SESSION_START, tagged, None)
        if on[F_CONTEXT] and user.last_ts:
            for scope in scopes(user.last_context.get("device"), user.last_ts, cfg.utc_offset_hours):
                self._add_trending(self.context, scope, k, add, F_CONTEXT, tagged, ("context", describe(scope)))
        popular = self.popular.top_raw(None, 2 * k) if on[F_POPULAR] else ([], 1.0)
        for negv, item in popular[0]:  # tagged last: the reasons above are more specific
            add(item, F_POPULAR, -negv / popular[1])
        if on[F_HISTORY] and user.recent:
            for item in {item: None for item, _, _ in reversed(user.recent)}:  # newest first, once
                add(item, F_HISTORY, 1.0)
                tagged.setdefault(item, ("recent", RECENT_REASONS[kinds.get(item, "view")]))
        if on[F_CONTENT] and user.taste:
            for item, reason in self.content.candidates(user, cfg.content_candidates):
                add(item, F_CONTENT, 0.5)
                tagged.setdefault(item, ("content", reason))
            affinity = self.content.affinity
            for item in list(feats):
                a = affinity(user, item)
                if a:
                    add(item, F_CONTENT, a)
        for _, item in popular[0]:
            tagged.setdefault(item, ("trending", "popular this month"))
        vec = self.mf.user_vector(user) if on[MF] else None
        if vec is not None and cfg.mf_candidates:
            for item, _ in self.mf.top(vec, cfg.mf_candidates):
                if item not in feats:
                    add(item, MF, 0.0)
                    tagged.setdefault(item, ("mf", "similar to what you interacted with"))
        # The weighted sum, features in their fixed order: plain sequential float arithmetic.
        scores = {item: sum(map(mul, w, x)) for item, x in feats.items()}
        return scores, feats, tagged, vec

    def training_pair(self, user: UserState, item: str, w: list[float], negatives: int):
        """For the learned ranker, before the event is learned: the features of `item` (the one
        the user chose) and of the `negatives` candidates ranked best without it, MF included —
        or None when the item was not a candidate."""
        seeds = self.seeds(user)
        scores, feats, _, vec = self._gather(user, seeds, w, True, self.config.k)
        chosen = feats.get(item)
        if chosen is None:
            return None
        best = sorted(scores, key=scores.__getitem__, reverse=True)[:negatives + 1]
        others = [i for i in best if i != item][:negatives]
        if not others:
            return None
        group = [item] + others
        rows = [list(feats[i]) for i in group]
        if vec is not None:
            ids = self.mf.rows_of(group)
            known = ids >= 0
            if known.any():
                mf = (1.0 / (1.0 + np.exp(-self.mf.score_rows(vec, ids[known])))).tolist()
                for x, v in zip((r for r, ok in zip(rows, known.tolist()) if ok), mf):
                    x[MF] = v
        return rows[0], rows[1:]

    # -- steps ----------------------------------------------------------------------------
    def _fill(self, out: list[Scored], k: int, user: UserState, allowed) -> None:
        """Complete a short list (a thin partition, a small shop) from, in order: the user's
        liked categories (the partition's trending there, then the shared catalogue), new
        catalogue items, the partition's trending, then the rest of the catalogue — all in a
        fixed order, so the same state gives the same list. Fill items were not scored by the
        blend: they carry min(last score, 0), so scores still never increase down the list."""
        shown = {s.item_id for s in out}
        score = min(out[-1].score, 0.0) if out else 0.0
        catalog = self.catalog
        tiers: list[tuple[Iterator[str], str, str]] = []
        for cat in self.content.liked_categories(user):
            tiers.append(((i for _, i in self.trending.top_raw(cat, self.trending.top_n)[0]),
                          "content", f"popular in {cat}, a category you like"))
            tiers.append((iter(catalog.members(cat)), "content", f"more in {cat}, a category you like"))
        tiers.append((iter(catalog.new_items(None, user.last_ts)), "content", "new in the catalogue"))
        tiers.append(((i for _, i in self.trending.top_raw(None, self.trending.top_n)[0]),
                      "trending", "trending now"))
        tiers.append((iter(catalog.members()), "catalogue", "from the catalogue"))
        for items, source, reason in tiers:
            for item in items:
                if item not in shown and allowed(item):
                    out.append(Scored(item, score, reason, source))
                    shown.add(item)
                    if len(out) >= k:
                        return

    @staticmethod
    def _add_trending(model: Trending, scope: str | None, n: int, add, feature: int, tagged: dict,
                      tag: tuple[str, str] | None) -> None:
        entries, lead = model.top_raw(scope, n)
        for negv, item in entries:
            add(item, feature, -negv / lead)
            if tag is not None and item not in tagged:
                tagged[item] = tag

    def _order(self, scores: dict[str, float], vec: np.ndarray | None, mf_weight: float,
               shortlist: int) -> Iterator[tuple[str, float]]:
        """Items best first; ties keep candidate order, which is fixed by the model state.
        The MF re-scores the shortlist of the other sources' best (vectorised), then the rest
        follow in their blended order."""
        items = sorted(scores, key=scores.__getitem__, reverse=True)
        if vec is None:
            yield from ((i, scores[i]) for i in items)
            return
        head = items[:shortlist]
        total = np.array([scores[i] for i in head])
        rows = self.mf.rows_of(head)
        if rows.min() >= 0:
            total += mf_weight / (1.0 + np.exp(-self.mf.score_rows(vec, rows)))
        else:
            known = rows >= 0
            total[known] += mf_weight / (1.0 + np.exp(-self.mf.score_rows(vec, rows[known])))
        order = np.argsort(-total, kind="stable").tolist()
        totals = total.tolist()
        for i in order:
            yield head[i], totals[i]
        yield from ((i, scores[i]) for i in items[shortlist:])

    def _explainer(self, user: UserState, seeds: list[str], tagged: dict[str, tuple[str, str]]):
        """`explain(item, score) -> Scored` for this list: the first reason that holds, in order —
        a seed itself, a seed's co-visitation row, a two-hop row, the source that added it."""
        seed_set = set(seeds)
        rows = self.covisit.rows
        seed_rows = [(seed, row) for seed in seeds if (row := rows.get(seed)) is not None]
        hops: list[tuple[str, dict]] | None = None  # built on first need
        kinds: dict[str, str] | None = None

        def kind(item: str) -> str:
            nonlocal kinds
            if kinds is None:
                kinds = _strongest_kinds(user)
            return kinds.get(item, "view")

        def explain(item: str, score: float) -> Scored:
            nonlocal hops
            if item in seed_set:
                return Scored(item, score, RECENT_REASONS[kind(item)], "recent")
            for seed, row in seed_rows:
                if item in row:
                    return Scored(item, score, SEED_REASONS[kind(seed)].format(seed), "covisit")
            if item not in tagged and seeds and self.config.two_hop:
                if hops is None:
                    hops = [(b, rows.get(b, {})) for b, _ in
                            self.covisit.neighbors(seeds[0])[:self.config.two_hop_neighbors]]
                for b, row in hops:
                    if item in row:
                        return Scored(item, score, f"often seen together with {b}", "covisit")
            source, reason = tagged.get(item, ("trending", "trending now"))
            return Scored(item, score, reason, source)
        return explain

    def _explore(self, out: list[Scored], user: UserState, user_id: str, blend: Blend, allowed,
                 vec: np.ndarray | None, seeds: list[str]) -> None:
        noise = draws(user, user_id)
        for slot in range(self.config.explore_from, len(out)):
            if slot_uniform(noise, slot) >= blend.explore:
                continue
            shown = {s.item_id for s in out}
            pools = self._pools(vec, seeds, user.last_ts)
            while pools:
                source = self.bandit.choose(noise + bytes([slot]), sorted(pools))
                pick = next(((i, r) for i, r in pools.pop(source)() if i not in shown and allowed(i)), None)
                if pick is not None:
                    out[slot] = Scored(pick[0], out[slot].score, pick[1], source, True)
                    break

    def offered(self, user: UserState, item: str) -> dict[str, bool]:
        """For the bandit's feedback: which sources' exploration pools hold `item` for this user
        now (the same pools `_explore` draws from; the MF one by rank, without listing it)."""
        seeds = self.seeds(user)
        vec = self.mf.user_vector(user)
        n = self._pool_size()
        out = {}
        for source, pool in self._pools(None, seeds, user.last_ts).items():
            out[source] = any(i == item for i, _ in pool())
        if vec is not None:
            out["mf"] = self.mf.in_top(vec, item, n)
        return out

    def _pool_size(self) -> int:
        return 3 * self.config.k

    def _pools(self, vec: np.ndarray | None, seeds: list[str], now: int) -> dict:
        """Exploration candidates per source, built only for the source the bandit picks:
        a little past what the blend would show."""
        n = self._pool_size()
        pools = {"trending": lambda: ((i, "trending now — something different")
                                      for _, i in self.trending.top_raw(None, n)[0])}
        if vec is not None:
            pools["mf"] = lambda: ((i, "you might like this") for i, _ in self.mf.top(vec, n))
        if len(self.catalog):
            pools["content"] = lambda: ((i, "new in the catalogue") for i in self.catalog.new_items(None, now)[:n])
        if seeds:
            nb = self.covisit.neighbors
            pools["covisit"] = lambda: ((i, f"often seen together with {b}")
                                        for b, _ in nb(seeds[0])[:3] for i, _ in nb(b))
        return pools
