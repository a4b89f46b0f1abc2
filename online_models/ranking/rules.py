"""Business rules and diversity re-ranking, applied after blending."""
from __future__ import annotations

from dataclasses import dataclass

from online_models.catalog import Catalog
from online_models.config import EngineConfig
from online_models.state.user_state import UserState


@dataclass(frozen=True, slots=True)
class Request:
    """Per-request options: restrict to (include) or keep out (exclude) some categories."""
    include_categories: frozenset[str] = frozenset()
    exclude_categories: frozenset[str] = frozenset()


NO_REQUEST = Request()


def everything(item: str) -> bool:
    """The predicate when no rule applies (no catalogue restrictions, purchases or skips)."""
    return True


class Rules:
    def __init__(self, config: EngineConfig, catalog: Catalog):
        self.config = config
        self.catalog = catalog

    def allowed_fn(self, user: UserState, request: Request, leave_out_consumed: bool = False):
        """A predicate for this user and request: removed/unavailable items, purchases (if
        configured), recently skipped items and the request's category filters are out — and,
        with `leave_out_consumed`, every item the user ever had (a user who does not come back to
        things: docs/decisions/0019)."""
        recommendable = self.catalog.is_recommendable if self.catalog.restricts() else everything
        purchased = set(user.purchased) if self.config.exclude_purchased else ()
        horizon = user.last_ts - self.config.skip_window_ms
        skipped = {i for i, ts in user.skipped.items() if ts > horizon}
        had = user.had_before() if leave_out_consumed else None
        include, exclude = request.include_categories, request.exclude_categories
        category = self.catalog.category
        if not include and not exclude and had is None:
            if not purchased and not skipped:
                return recommendable  # `everything` when nothing applies: callers may skip the checks
            return lambda item: recommendable(item) and item not in purchased and item not in skipped

        def allowed(item: str) -> bool:
            if not recommendable(item) or item in purchased or item in skipped or (had is not None and had(item)):
                return False
            if not include and not exclude:
                return True
            cat = category(item)
            if include and cat not in include:
                return False
            return not (exclude and cat in exclude)
        return allowed


def mmr(ranked: list[tuple[str, float]], k: int, weight: float, catalog: Catalog) -> list[tuple[str, float]]:
    """Maximal marginal relevance with category identity as the similarity: repeatedly take the
    item maximising relevance/|top| - weight * [its category is already in the list].
    Uncategorised items are never near duplicates of anything. `ranked` is best first; each
    item comes back with the utility that placed it (times |top|, so unpenalised items keep
    their score): a penalty only ever switches on, so the utilities never increase down the list."""
    if weight <= 0 or len(ranked) <= 1:
        return ranked[:k]
    cats = [catalog.category(item) for item, _ in ranked]
    if not any(cats):
        return ranked[:k]
    lead = abs(ranked[0][1]) or 1.0  # a negative leader must not flip the order
    used: set[str] = set()
    remaining = list(range(len(ranked)))
    out: list[tuple[str, float]] = []
    while remaining and len(out) < k:
        best, best_val = -1, float("-inf")
        for pos in remaining:  # candidates are best-first: stop once no penalty-free one can win
            rel = ranked[pos][1] / lead
            if rel <= best_val:
                break
            val = rel - weight if cats[pos] in used else rel
            if val > best_val:
                best, best_val = pos, val
        remaining.remove(best)
        out.append((ranked[best][0], best_val * lead))
        if cats[best]:
            used.add(cats[best])
    return out


def category_diversity(items: list[str], catalog: Catalog) -> float | None:
    """Intra-list diversity by category: share of item pairs from different categories
    (None when fewer than two listed items have a category)."""
    cats = [c for c in (catalog.category(i) for i in items) if c]
    n = len(cats)
    if n < 2:
        return None
    same = 0
    counts: dict[str, int] = {}
    for c in cats:
        counts[c] = counts.get(c, 0) + 1
    for c in counts.values():
        same += c * (c - 1) // 2
    return 1.0 - same / (n * (n - 1) // 2)
