"""Ranking: blend the candidates' scores (candidates.py gathers them), apply business rules,
re-rank for diversity, hand some slots to exploration, and say why each item is there.

Each candidate is described by the features of `ranker.py` and ordered by their weighted sum:
the shard's learned weights (docs/decisions/0016), or a variant's fixed blend (docs/decisions/0010).
"""
from __future__ import annotations

from dataclasses import replace
from itertools import islice
from typing import Iterator, NamedTuple

import numpy as np

from online_models.config import Blend
from online_models.models.exploration import SourceBandit, draws, slot_uniform
from online_models.ranking.candidates import RECENT_REASONS, SEED_REASONS, CandidateSources, strongest_kinds
from online_models.ranking.ranker import MF, LearnedRanker, prior
from online_models.ranking.rules import NO_REQUEST, Request, Rules, everything, mmr
from online_models.state.user_state import UserState


class Scored(NamedTuple):
    item_id: str
    score: float
    reason: str
    source: str = "trending"   # recent | covisit | mf | content | context | trending
    explored: bool = False     # placed by the exploration bandit


NOT_PERSONALISED = "not personalised: "  # starts every reason of an opted-out user's list


class Recommender:
    """Ranks a user's list from the candidates `sources` gathers; `bandit` takes the exploration
    slots and `ranker` holds the learned weights."""

    def __init__(self, sources: CandidateSources, bandit: SourceBandit, ranker: LearnedRanker):
        self.sources = sources
        self.config, self.catalog = sources.config, sources.catalog
        self.trending, self.covisit, self.mf, self.content = sources.trending, sources.covisit, sources.mf, sources.content
        self.bandit = bandit
        self.ranker = ranker
        self.rules = Rules(self.config, self.catalog)
        self.seeds = sources.seeds
        self.training_pair = sources.training_pair

    def weights(self, blend: Blend) -> list[float]:
        """The feature weights a list of this variant is ranked with."""
        return self.ranker.weights if blend.learned else prior(blend, self.config)

    def rank(self, user: UserState, blend: Blend, k: int | None = None, user_id: str = "",
             request: Request = NO_REQUEST) -> list[Scored]:
        k = k or self.config.k
        cfg = self.config
        w = self.weights(blend)
        seeds = self.seeds(user)
        cands = self.sources.gather(user, seeds, w, blend.learned, k)
        tagged, vec = cands.tagged, cands.vec
        diversify = blend.diversity and len(self.catalog)
        want = 2 * k if diversify else k
        allowed = self.rules.allowed_fn(user, request, blend.learned and self.ranker.leaves_out_consumed(user))
        picked: list[tuple[str, float]] = []
        if cands.items:
            ranked = self._order(cands.items, cands.scores(w), vec, w[MF], 2 * want)
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
        out = self._explain(user, seeds, tagged, picked)
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

    def _order(self, items: list[str], scores: np.ndarray, vec: np.ndarray | None, mf_weight: float,
               shortlist: int) -> Iterator[tuple[str, float]]:
        """Items best first; ties keep candidate order, which is fixed by the model state.
        The MF re-scores the shortlist of the other sources' best (vectorised), then the rest
        follow in their blended order."""
        order = np.argsort(-scores, kind="stable")
        if vec is None:
            totals = scores.tolist()
            yield from ((items[i], totals[i]) for i in order.tolist())
            return
        head = order[:shortlist]
        total = scores[head]
        rows = self.mf.rows_of([items[i] for i in head.tolist()])
        if rows.min() >= 0:
            total += self.mf.probability_rows(vec, rows, mf_weight)
        else:
            known = rows >= 0
            total[known] += self.mf.probability_rows(vec, rows[known], mf_weight)
        totals = total.tolist()
        head = head.tolist()
        for i in np.argsort(-total, kind="stable").tolist():
            yield items[head[i]], totals[i]
        rest = scores.tolist()
        yield from ((items[i], rest[i]) for i in order[shortlist:].tolist())

    def _explain(self, user: UserState, seeds: list[str], tagged: dict[str, tuple[str, str]],
                 picked: list[tuple[str, float]]) -> list[Scored]:
        """Each picked item with the first reason that holds, in order — a seed itself, a seed's
        co-visitation row, a two-hop row, the source that added it."""
        items = [item for item, _ in picked]
        covisit = self.covisit
        by_seed = covisit.first_row_holding(seeds, items)
        hops = [b for b, _ in covisit.neighbors(seeds[0])[:self.config.two_hop_neighbors]] \
            if seeds and self.config.two_hop else []
        by_hop = covisit.first_row_holding(hops, items) if hops else [-1] * len(items)
        seed_set = set(seeds)
        kinds = strongest_kinds(user) if seed_set.intersection(items) or max(by_seed, default=-1) >= 0 else {}
        out = []
        for (item, score), s, h in zip(picked, by_seed, by_hop):
            if item in seed_set:
                out.append(Scored(item, score, RECENT_REASONS[kinds.get(item, "view")], "recent"))
            elif s >= 0:
                out.append(Scored(item, score, SEED_REASONS[kinds.get(seeds[s], "view")].format(seeds[s]), "covisit"))
            elif h >= 0 and item not in tagged:
                out.append(Scored(item, score, f"often seen together with {hops[h]}", "covisit"))
            else:
                source, reason = tagged.get(item, ("trending", "trending now"))
                out.append(Scored(item, score, reason, source))
        return out

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
