"""Seeded synthetic interactions and catalogue, for load and for what the public samples lack
(skips, purchases, catalogue metadata, context). Same seed, same events."""
from __future__ import annotations

import random

TYPES = ("view", "click", "skip", "add_to_cart", "purchase", "like", "dislike")
TYPE_P = (0.45, 0.30, 0.10, 0.07, 0.03, 0.03, 0.02)
DEVICES = ("mobile", "desktop", "tablet")


def catalogue(n_items: int = 500, n_categories: int = 12, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    return [{"item_id": f"item-{i}", "category": f"cat-{i % n_categories}",
             "tags": sorted(rng.sample([f"tag-{t}" for t in range(30)], 3)), "available": True}
            for i in range(n_items)]


def interactions(n_events: int, n_users: int = 2000, n_items: int = 500, seed: int = 7,
                 start_ts: int = 1_700_000_000_000) -> list[dict]:
    """Time-ordered events; each user browses sessions that stay near one category. Users are
    drawn from a Pareto law: few distinct users per batch (~29 per 500 events at 20k users)."""
    rng = random.Random(seed)
    world = _World(rng, n_items, seed, start_ts)
    return [world.event(n, lambda: int(rng.paretovariate(1.2)) % n_users) for n in range(n_events)]


def shop_traffic(n_events: int, n_users: int = 20_000, n_items: int = 5_000, seed: int = 7,
                 start_ts: int = 1_700_000_000_000, active: int = 30, mean_session: float = 4.0) -> list[dict]:
    """A shop's mix of users: `active` sessions browse at once, each lasting `mean_session`
    events on average, new visitors (and some returning ones) taking the place of those who
    leave. At the defaults a 500-event batch touches ~146 distinct users, as the Yoochoose
    sample does (~148): what makes ranking, not learning, most of a worker's cost."""
    rng = random.Random(seed)
    world = _World(rng, n_items, seed, start_ts)
    pool: list[int] = []
    arrived = 0
    events = []
    for n in range(n_events):
        while len(pool) < active:
            returning = arrived and rng.random() < 0.2
            pool.append(rng.randrange(min(arrived, n_users)) if returning else arrived % n_users)
            arrived += not returning
        k = rng.randrange(len(pool))
        events.append(world.event(n, lambda: pool[k]))
        if rng.random() < 1 / mean_session:
            pool[k] = pool[-1]
            pool.pop()
    return events


class _World:
    """The items, types and clock both generators share: each user's sessions stay near one
    category, 80 % of the time."""
    N_CATEGORIES = 12

    def __init__(self, rng: random.Random, n_items: int, seed: int, start_ts: int):
        self.rng, self.n_items, self.seed, self.ts = rng, n_items, seed, start_ts
        self.sessions: dict[int, tuple[int, int]] = {}  # user -> (session number, favourite category)

    def event(self, n: int, pick_user) -> dict:
        rng, n_categories = self.rng, self.N_CATEGORIES
        self.ts += rng.randint(1, 400)
        u = pick_user()
        session_no, cat = self.sessions.get(u, (0, rng.randrange(n_categories)))
        if rng.random() < 0.08:
            session_no, cat = session_no + 1, rng.randrange(n_categories)
        self.sessions[u] = (session_no, cat)
        if rng.random() < 0.8:
            item = cat + n_categories * rng.randrange(max(self.n_items // n_categories, 1))
        else:
            item = rng.randrange(self.n_items)
        return {
            "event_id": f"syn-{self.seed}-{n}", "user_id": f"user-{u}", "item_id": f"item-{item % self.n_items}",
            "type": rng.choices(TYPES, TYPE_P)[0], "ts": self.ts, "session_id": f"user-{u}-s{session_no}",
            "context": {"device": DEVICES[u % 3]},
        }


# -- a small, dense world for the model unit tests ------------------------------------------
TEST_CATEGORIES = ("shoes", "shirts", "books", "games", "garden")


def catalog_records(n_items: int = 60, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    return [{"item_id": f"i{n}", "category": TEST_CATEGORIES[n % len(TEST_CATEGORIES)],
             "tags": [f"t{rng.randrange(6)}"], "available": True} for n in range(n_items)]


def events(n_events: int = 600, n_users: int = 25, n_items: int = 60, seed: int = 7,
           start_ts: int = 1_700_000_000_000) -> list[dict]:
    """Few users with a favourite category each, so every model has something to learn within a
    few hundred events: carts, purchases, skips and dislikes included; time-ordered."""
    rng = random.Random(seed)
    fav = {f"u{u}": rng.randrange(len(TEST_CATEGORIES)) for u in range(n_users)}
    device = {u: rng.choice(DEVICES) for u in fav}
    out = []
    ts = start_ts
    for n in range(n_events):
        user = f"u{rng.randrange(n_users)}"
        ts += rng.randrange(1_000, 120_000)
        if rng.random() < 0.8:
            item = rng.randrange(fav[user], n_items, len(TEST_CATEGORIES))
        else:
            item = rng.randrange(n_items)
        r = rng.random()
        kind = ("purchase" if r < 0.05 else "add_to_cart" if r < 0.12 else "skip" if r < 0.2
                else "dislike" if r < 0.22 else "view" if r < 0.5 else "click")
        out.append({"event_id": f"e{n}", "user_id": user, "item_id": f"i{item}", "type": kind,
                    "ts": ts, "context": {"device": device[user]}})
    return out
