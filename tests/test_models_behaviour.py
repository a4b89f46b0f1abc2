"""Learning moves scores the right way, and the ranking obeys its rules."""
from __future__ import annotations

from online_models.catalog import Catalog
from online_models.config import Blend, EngineConfig, Variant
from online_models.engine import Engine
from online_models.events import Interaction
from online_models.models.content import ContentModel
from online_models.models.context import daypart, hour_of_day
from online_models.models.covisitation import CoVisitation
from online_models.models.mf import OnlineMF
from online_models.models.trending import Trending
from online_models.ranking.rules import Request, category_diversity, mmr
from online_models.state.store import PartitionStore
from online_models.state.user_state import UserState

T0 = 1_700_000_000_000
_n = iter(range(10**9))


def ev(user, item, kind="click", ts=T0, **context):
    return Interaction(f"e{next(_n)}", user, item, kind, ts, context=context)


def engine(tmp_path, blend=Blend(explore=0.0), records=(), **cfg) -> Engine:
    cat = Catalog()
    for r in records:
        cat.upsert(r)
    return Engine(PartitionStore(tmp_path), cat, EngineConfig(variants=(Variant(blend=blend),), **cfg))


def learn(e: Engine, events) -> None:
    for x in events:
        e.learn(x)


def ids(rec) -> list[str]:
    return [s.item_id for s in rec.items]


def background(n_sessions=30, ts=T0):
    """Sessions where a -> b -> c go together, and x, y are popular elsewhere."""
    out = []
    for s in range(n_sessions):
        for item in ("a", "b", "c") if s % 2 else ("x", "y", "x"):
            out.append(ev(f"s{s}", item, ts=ts + s * 1000))
    return out


def test_purchased_items_neighbours_rise_and_the_purchase_is_excluded(tmp_path):
    e = engine(tmp_path)
    learn(e, background())
    learn(e, [ev("u", "x", ts=T0 + 90_000)])
    before = ids(e.recommend("u"))
    learn(e, [ev("u", "a", "purchase", ts=T0 + 91_000)])
    after = ids(e.recommend("u"))
    assert "a" not in after  # bought: excluded by default
    assert after.index("b") < before.index("b")
    assert after.index("b") < after.index("y")


def test_purchases_can_stay_recommendable(tmp_path):
    e = engine(tmp_path, exclude_purchased=False)
    learn(e, background() + [ev("u", "a", "purchase", ts=T0 + 91_000)])
    assert "a" in ids(e.recommend("u"))


def test_seen_items_say_what_the_user_did_with_them(tmp_path):
    e = engine(tmp_path, exclude_purchased=False)
    learn(e, background() + [ev("u", "x", ts=T0 + 90_000), ev("u", "y", "add_to_cart", ts=T0 + 91_000),
                             ev("u", "y", ts=T0 + 92_000), ev("u", "a", "like", ts=T0 + 93_000),
                             ev("u", "b", "purchase", ts=T0 + 94_000), ev("u", "c", "view", ts=T0 + 95_000)])
    reasons = {s.item_id: s.reason for s in e.recommend("u").items if s.source == "recent"}
    assert reasons == {"x": "you clicked this recently", "y": "you added this to your cart",
                       "a": "you liked this", "b": "you bought this recently", "c": "you viewed this recently"}


def test_a_skipped_item_falls(tmp_path):
    mf = OnlineMF(factors=8)
    user = UserState()
    for n, item in enumerate(["a", "b", "c", "d"] * 5):
        x = ev("u", item, ts=T0 + n)
        mf.learn_one(x, user)
        user.apply(x)
    vec = mf.user_vector(user)
    before = float(mf.score_rows(vec, mf.rows_of(["c"]))[0])
    for n in range(5):
        mf.learn_one(ev("u", "c", "skip", ts=T0 + 100 + n), user)
    after = float(mf.score_rows(mf.user_vector(user), mf.rows_of(["c"]))[0])
    assert after < before
    # and the engine keeps it out of the list while the skip is fresh
    e = engine(tmp_path)
    learn(e, background() + [ev("u", "a", ts=T0 + 95_000)])
    assert "b" in ids(e.recommend("u"))
    learn(e, [ev("u", "b", "skip", ts=T0 + 96_000)])
    assert "b" not in ids(e.recommend("u"))


def test_covisitation_learns_transitions():
    cv = CoVisitation()
    user = UserState()
    for n, item in enumerate(["a", "b"]):
        x = ev("u", item, ts=T0 + n)
        cv.learn_one(x, user)
        user.apply(x)
    assert [i for i, _ in cv.neighbors("a")] == ["b"]
    assert cv.weight("a", "b") > cv.weight("b", "a") > 0  # forward counts more than backward


def test_events_years_older_than_the_first_ones_are_learned_without_error(tmp_path):
    """Forward decay weighs an event 9 years older than the landmark at exactly 0.0: the models
    take no signal from it (instead of dividing by a zero leader), and ranking still works."""
    e = engine(tmp_path, blend=Blend(explore=0.0, diversity=0.0))
    learn(e, [ev("new", "x", ts=T0), ev("new", "y", ts=T0 + 1000)])
    old = T0 - 9 * 365 * 24 * 3_600_000
    learn(e, [ev("old", item, ts=old + n, session_id="s") for n, item in enumerate("abcab")])
    assert e.covisit.neighbors("a") == [] and "a" not in [i for i, _ in e.trending.top()]
    assert ids(e.recommend("old"))[:2] == ["b", "a"]  # their own recent items, newest first
    assert "y" in ids(e.recommend("new"))
    e.checkpoint(1)


def test_a_new_catalogue_item_appears_at_once(tmp_path):
    records = [{"item_id": f"s{n}", "category": "shoes"} for n in range(5)]
    e = engine(tmp_path, blend=Blend(explore=0.0, diversity=0.0), records=records)
    learn(e, [ev("u", f"s{n}", "purchase" if n == 0 else "click", ts=T0 + n) for n in range(5)])
    assert "brand-new" not in ids(e.recommend("u"))
    e.catalog.upsert({"item_id": "brand-new", "category": "shoes"})
    rec = e.recommend("u")
    new = [s for s in rec.items if s.item_id == "brand-new"]
    assert new and new[0].reason == "new in shoes, a category you like" and new[0].source == "content"
    # in the catalogue from the start: never called new
    assert not [s for s in rec.items if s.item_id != "brand-new" and "new" in s.reason]


def test_content_taste_follows_categories_and_negatives():
    cat = Catalog()
    cat.upsert({"item_id": "s", "category": "shoes", "tags": ["red"]})
    cat.upsert({"item_id": "b", "category": "books"})
    model, user = ContentModel(cat), UserState()
    model.learn_one(ev("u", "s", "purchase"), user)
    model.learn_one(ev("u", "b", "dislike"), user)
    assert model.affinity(user, "s") > 0 > model.affinity(user, "b")
    assert model.liked_categories(user) == ["shoes"]


def test_removed_unavailable_and_category_filters(tmp_path):
    records = [{"item_id": i, "category": c} for i, c in
               (("a", "shoes"), ("b", "books"), ("c", "games"), ("x", "shoes"), ("y", "books"))]
    e = engine(tmp_path, records=records)
    learn(e, background() + [ev("u", "a", ts=T0 + 95_000)])
    assert {"b", "c"} <= set(ids(e.recommend("u")))
    e.catalog.remove("b")
    e.catalog.upsert({"item_id": "c", "category": "games", "available": False})
    got = ids(e.recommend("u"))
    assert "b" not in got and "c" not in got
    only_shoes = ids(e.recommend("u", request=Request(include_categories=frozenset({"shoes"}))))
    assert only_shoes and set(only_shoes) <= {"a", "x"}
    no_shoes = ids(e.recommend("u", request=Request(exclude_categories=frozenset({"shoes"}))))
    assert no_shoes and not {"a", "x"} & set(no_shoes)


def test_mmr_spreads_categories():
    cat = Catalog()
    for n in range(6):
        cat.upsert({"item_id": f"s{n}", "category": "shoes"})
    cat.upsert({"item_id": "b0", "category": "books"})
    ranked = [(f"s{n}", 1.0 - n * 0.01) for n in range(6)] + [("b0", 0.8)]
    plain = [i for i, _ in mmr(ranked, 3, 0.0, cat)]
    diverse = [i for i, _ in mmr(ranked, 3, 0.5, cat)]
    assert "b0" not in plain and "b0" in diverse
    assert category_diversity(diverse, cat) > category_diversity(plain, cat) == 0.0


def test_context_device_and_daypart_shape_the_list(tmp_path):
    assert hour_of_day(T0) == 22 and daypart(T0) == "evening"
    e = engine(tmp_path, blend=Blend(recent=0, covisit=0, trending=0, mf=0, content=0, context=1.0,
                                     explore=0.0))
    learn(e, [ev(f"m{n}", "phone-case", ts=T0 + n, device="mobile") for n in range(5)]
          + [ev(f"d{n}", "monitor", ts=T0 + n, device="desktop") for n in range(5)])
    learn(e, [ev("pm", "z", ts=T0 + 10, device="mobile"), ev("pd", "z", ts=T0 + 10, device="desktop")])
    mobile, desktop = e.recommend("pm"), e.recommend("pd")
    assert ids(mobile)[0] == "phone-case" and ids(desktop)[0] == "monitor"
    assert mobile.items[0].reason == "popular on mobile"


def test_trending_per_category():
    cat = Catalog()
    cat.upsert({"item_id": "s", "category": "shoes"})
    t = Trending(cat)
    for n in range(3):
        t.learn_one(ev("u", "s", ts=T0 + n))
    t.learn_one(ev("u", "other", ts=T0 + 5))
    assert [i for i, _ in t.top("shoes")] == ["s"]
    assert {i for i, _ in t.top()} == {"s", "other"}


def test_variants_are_stable_and_reported(tmp_path):
    cfg = dict(variants=(Variant("a", 1.0, Blend()), Variant("b", 1.0, Blend(covisit=0.0))))
    e = Engine(PartitionStore(tmp_path), Catalog(), EngineConfig(**cfg))
    names = {f"user{n}": e.recommend(f"user{n}").variant for n in range(200)}
    assert set(names.values()) == {"a", "b"}
    assert all(e.recommend(u).variant == v for u, v in names.items())
