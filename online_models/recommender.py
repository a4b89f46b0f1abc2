"""Ranking: gather candidates from every source, blend their scores, apply business rules,
re-rank for diversity, hand some slots to exploration, and say why each item is there.

The blend is a fixed weighted sum tuned by prequential evaluation (docs/decisions/0010).
"""
from __future__ import annotations

from dataclasses import replace
from itertools import islice
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
                 mf: OnlineMF, content: ContentModel, context: Trending, bandit: SourceBandit):
        self.config = config
        self.catalog = catalog
        self.trending = trending
        self.covisit = covisit
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

    def rank(self, user: UserState, blend: Blend, k: int | None = None, user_id: str = "",
             request: Request = NO_REQUEST) -> list[Scored]:
        k = k or self.config.k
        cfg = self.config
        decay = cfg.recency_decay
        seeds = self.seeds(user)
        scores: dict[str, float] = {}
        get = scores.get
        tagged: dict[str, tuple[str, str]] = {}   # item -> (source, reason) for the smaller sources

        if blend.recent:
            w = blend.recent
            for item in seeds:
                scores[item] = get(item, 0.0) + w
                w *= decay
        if blend.covisit:
            w = blend.covisit
            n = self.covisit.score_neighbors
            for seed in seeds:  # older seeds count less, so they bring fewer neighbours
                for item, v in self.covisit.neighbors(seed)[:n]:
                    scores[item] = get(item, 0.0) + w * v
                w *= decay
                n = max(n // 2, cfg.min_seed_neighbors)
            if cfg.two_hop and seeds:  # neighbours of the latest item's neighbours
                hop = blend.covisit * cfg.two_hop
                for b, vb in self.covisit.neighbors(seeds[0])[:cfg.two_hop_neighbors]:
                    w = hop * vb
                    for item, v in self.covisit.neighbors(b)[:cfg.two_hop_breadth]:
                        scores[item] = get(item, 0.0) + w * v
        if blend.trending:
            cat = self.catalog.category(seeds[0]) if seeds else None
            if cat:
                self._add_trending(self.trending, cat, blend.trending, 2 * k, scores, tagged,
                                   ("trending", f"trending in {cat}"))
            self._add_trending(self.trending, None, 0.5 * blend.trending, k, scores, tagged, None)
            if not seeds:  # a new session: what sessions start with now
                self._add_trending(self.trending, START, blend.trending, k, scores, tagged, None)
        if blend.context:
            ctx = scopes(user.last_context.get("device"), user.last_ts, cfg.utc_offset_hours) \
                if user.last_ts else ()
            for scope in ctx:
                self._add_trending(self.context, scope, blend.context, k, scores, tagged,
                                   ("context", describe(scope)))
        if blend.content and user.taste:
            for item, reason in self.content.candidates(user, cfg.content_candidates):
                scores[item] = get(item, 0.0) + 0.5 * blend.content
                tagged.setdefault(item, ("content", reason))
            affinity = self.content.affinity
            for item in list(scores):
                a = affinity(user, item)
                if a:
                    scores[item] += blend.content * a
        vec = self.mf.user_vector(user) if blend.mf else None
        if vec is not None and cfg.mf_candidates:
            for item, _ in self.mf.top(vec, cfg.mf_candidates):
                if item not in scores:
                    scores[item] = 0.0
                    tagged.setdefault(item, ("mf", "similar to what you interacted with"))
        diversify = blend.diversity and len(self.catalog)
        want = 2 * k if diversify else k
        allowed = self.rules.allowed_fn(user, request)
        picked: list[tuple[str, float]] = []
        if scores:
            ranked = self._order(scores, vec, blend.mf, 2 * want)
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
        plain = replace(blend, recent=0.0, covisit=0.0, mf=0.0, content=0.0, explore=0.0,
                        trending=blend.trending or Blend.trending, context=blend.context or Blend.context)
        return [s._replace(reason=NOT_PERSONALISED + s.reason) for s in self.rank(probe, plain, k, "", request)]

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
    def _add_trending(model: Trending, scope: str | None, weight: float, n: int, scores: dict,
                      tagged: dict, tag: tuple[str, str] | None) -> None:
        entries, lead = model.top_raw(scope, n)
        w = -weight / lead
        get = scores.get
        for negv, item in entries:
            scores[item] = get(item, 0.0) + w * negv
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
