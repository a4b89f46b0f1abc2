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
    """Time-ordered events; each user browses sessions that stay near one category."""
    rng = random.Random(seed)
    n_categories = 12
    ts = start_ts
    sessions: dict[int, tuple[int, int]] = {}  # user -> (session number, favourite category)
    events = []
    for n in range(n_events):
        ts += rng.randint(1, 400)
        u = int(rng.paretovariate(1.2)) % n_users
        session_no, cat = sessions.get(u, (0, rng.randrange(n_categories)))
        if rng.random() < 0.08:
            session_no, cat = session_no + 1, rng.randrange(n_categories)
        sessions[u] = (session_no, cat)
        if rng.random() < 0.8:
            item = cat + n_categories * rng.randrange(max(n_items // n_categories, 1))
        else:
            item = rng.randrange(n_items)
        events.append({
            "event_id": f"syn-{seed}-{n}", "user_id": f"user-{u}", "item_id": f"item-{item % n_items}",
            "type": rng.choices(TYPES, TYPE_P)[0], "ts": ts, "session_id": f"user-{u}-s{session_no}",
            "context": {"device": DEVICES[u % 3]},
        })
    return events


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
