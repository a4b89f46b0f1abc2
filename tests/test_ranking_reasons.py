"""Every reason on a list is true (issue 12 item 5): each event type has its own wording,
negatives are never given as a reason, and "new" means described after traffic began and
within the catalogue's new-item window of event time."""
from __future__ import annotations

import pytest

from online_models.catalog import NEW_WINDOW_MS, Catalog
from online_models.config import Blend, EngineConfig, Variant
from online_models.engine import Engine
from online_models.events import Interaction
from online_models.state.store import PartitionStore

T0 = 1_700_000_000_000
_n = iter(range(10**9))


def ev(user, item, kind="click", ts=T0):
    return Interaction(f"r{next(_n)}", user, item, kind, ts)


def engine(tmp_path, records=()) -> Engine:
    cat = Catalog()
    for r in records:
        cat.upsert(r)
    blend = Blend(explore=0.0)
    return Engine(PartitionStore(tmp_path), cat, EngineConfig(exclude_purchased=False,
                                                              variants=(Variant(blend=blend),)))


def reasons(e: Engine, user: str) -> dict[str, str]:
    return {s.item_id: s.reason for s in e.recommend(user).items}


@pytest.mark.parametrize("kind, recent, seeded", [
    ("view", "you viewed this recently", "because you viewed a"),
    ("click", "you clicked this recently", "because you clicked a"),
    ("add_to_cart", "you added this to your cart", "because you added a to your cart"),
    ("purchase", "you bought this recently", "because you bought a"),
    ("like", "you liked this", "because you liked a"),
])
def test_each_event_type_has_its_own_true_wording(tmp_path, kind, recent, seeded):
    e = engine(tmp_path)
    for s in range(6):  # others go a -> b
        for n, item in enumerate("ab"):
            e.learn(ev(f"s{s}", item, ts=T0 + 10 * s + n))
    e.learn(ev("u", "a", kind, ts=T0 + 1000))
    got = reasons(e, "u")
    assert got["a"] == recent and got["b"] == seeded


@pytest.mark.parametrize("negative", ["skip", "dislike"])
def test_negatives_are_never_a_reason(tmp_path, negative):
    e = engine(tmp_path, [{"item_id": i, "category": "shoes"} for i in ("a", "b", "c")])
    for s in range(6):
        for n, item in enumerate("abc" if s % 2 else "bd"):  # d goes only with b
            e.learn(ev(f"s{s}", item, ts=T0 + 10 * s + n))
    e.learn(ev("u", "c", ts=T0 + 1000))
    e.learn(ev("u", "a", negative, ts=T0 + 1001))
    got = reasons(e, "u")
    assert "a" not in got  # skipped / disliked: out of the list
    assert not [r for r in got.values() if "skip" in r or "dislike" in r or r.endswith(" a")]
    assert got["c"] == "you clicked this recently"
    e.learn(ev("u", "b", ts=T0 + 1002))
    e.learn(ev("u", "b", negative, ts=T0 + 1003))  # viewed, then turned down: not a seed any more
    got = reasons(e, "u")
    assert "b" not in got and not [r for r in got.values() if r.endswith(" b")]
    assert "d" in got  # still shown (popular), but not "because you clicked b"


def test_new_means_described_after_traffic_began_and_recently(tmp_path):
    e = engine(tmp_path, [{"item_id": f"old{n}", "category": "shoes"} for n in range(3)])
    e.learn(ev("u", "old0", ts=T0))
    e.catalog.upsert({"item_id": "fresh", "category": "shoes"})
    got = reasons(e, "u")
    assert got["fresh"] == "new in shoes, a category you like"
    assert not [i for i, r in got.items() if "new" in r and i != "fresh"]  # in the catalogue from the start
    e.learn(ev("u", "old1", ts=T0 + NEW_WINDOW_MS + 1))  # a week of event time later: no longer new
    got = reasons(e, "u")
    assert not [r for r in got.values() if "new" in r]
    assert "fresh" in got  # still in the list (it is in a category the user likes), truthfully
    assert got["fresh"] == "more in shoes, a category you like"
