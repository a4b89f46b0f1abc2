"""Coming back to things (issue 14, docs/decisions/0019): users who rarely return to an item they
already had (movie ratings) are not shown what they had, however long ago; users who do (a shop's
sessions) still are. The traffic teaches which is which: no setting."""
from __future__ import annotations


from online_models.catalog import Catalog
from online_models.config import Blend, EngineConfig, Variant
from online_models.engine import Engine
from online_models.events import Interaction
from online_models.ranking.ranker import LearnedRanker
from online_models.state import consumed
from online_models.state.store import PartitionStore
from online_models.state.user_state import MAX_RECENT, MAX_SKIPPED, UserState

T0 = 1_700_000_000_000
MOVIES = 400


def test_the_filter_holds_every_item_added_and_few_others():
    added = [f"movie-{n}" for n in range(400)]
    encoded = consumed.add(consumed.EMPTY, added)
    assert consumed.add(consumed.EMPTY, added) == encoded  # a function of the ids alone
    holds = consumed.holds(encoded)
    assert all(holds(item) for item in added)  # never a false "no"
    false_yes = sum(holds(f"other-{n}") for n in range(10_000)) / 10_000
    assert false_yes < 0.03  # ~1.6 % at 400 items in 4096 bits with 3 hashes
    assert not consumed.holds(consumed.EMPTY)("movie-0")
    assert 0.2 < consumed.fill(encoded) < 0.3 and consumed.fill(consumed.EMPTY) == 0.0


def test_items_leaving_the_recent_window_and_the_skips_go_into_the_filter():
    user = UserState()
    for n in range(MAX_RECENT + 10):
        user.apply(Interaction(f"v{n}", "u", f"item-{n}", "view", T0 + n))
    for n in range(MAX_SKIPPED + 5):
        user.apply(Interaction(f"s{n}", "u", f"skipped-{n}", "skip", T0 + 1000 + n))
    assert len(user.recent) == MAX_RECENT and user.older
    holds = consumed.holds(user.older)
    assert all(holds(f"item-{n}") for n in range(10))          # left `recent`
    assert all(holds(f"skipped-{n}") for n in range(5))        # left the skip list
    had = user.had_before()
    assert all(had(f"item-{n}") for n in range(MAX_RECENT + 10)) and had(f"skipped-{MAX_SKIPPED}")
    assert user.returns == 0
    user.apply(Interaction("again", "u", "item-55", "click", T0 + 5000))  # back to a recent item
    user.apply(Interaction("old", "u", "item-0", "click", T0 + 5001))     # only in the filter: not counted
    assert user.returns == 1 and user.positives() == MAX_RECENT + 12
    assert UserState.from_bytes(user.to_bytes()) == user


def engine(tmp_path, name: str, config: EngineConfig | None = None) -> Engine:
    catalog = Catalog()
    for n in range(MOVIES):
        catalog.upsert({"item_id": f"m{n}", "category": ("drama", "comedy", "horror")[n % 3]})
    return Engine(PartitionStore(tmp_path / name), catalog, config or EngineConfig())


def ratings(eng: Engine, users: int = 40, per_user: int = 120) -> None:
    """Raters who each rate `per_user` distinct movies, most popular first — nobody comes back."""
    n = 0
    for step in range(per_user):
        for u in range(users):
            movie = (step * 7 + u * 3) % MOVIES
            n += 1
            eng.learn(Interaction(f"r{n}", f"rater{u}", f"m{movie}", "like" if n % 3 else "view", T0 + n * 60_000))


def test_raters_are_not_shown_what_they_rated_even_long_ago(tmp_path):
    eng = engine(tmp_path, "movies")
    ratings(eng)
    assert eng.ranker.return_rate() < 0.01
    user = eng.user("rater7")
    assert len(user.recent) == MAX_RECENT and user.older  # 70 of the 120 are only in the filter
    rated = {f"m{(step * 7 + 7 * 3) % MOVIES}" for step in range(120)}
    rec = eng.publish("rater7", 20)
    got = [s.item_id for s in rec.items]
    assert len(got) == 20 and not rated & set(got), sorted(rated & set(got))
    assert not any(s.source == "recent" for s in rec.items)
    # the fixed blend (decision 0010) is kept as it was: it shows them again
    fixed = engine(tmp_path, "fixed", EngineConfig(variants=(Variant("fixed", 1.0, Blend(learned=False)),)))
    ratings(fixed)
    assert rated & {s.item_id for s in fixed.publish("rater7", 20).items}


def test_shoppers_who_come_back_still_see_their_recent_items(tmp_path):
    eng = engine(tmp_path, "shop")
    n = 0
    for session in range(60):
        user = f"shopper{session}"
        for item in (session, session + 1, session, session + 2, session + 1):  # back and forth
            n += 1
            eng.learn(Interaction(f"s{n}", user, f"m{item}", "view", T0 + n * 1000))
    assert eng.ranker.return_rate() > 0.3
    got = [s.item_id for s in eng.publish("shopper59", 20).items]
    assert {"m59", "m60", "m61"} <= set(got)


def test_one_returning_user_among_raters_keeps_their_items(tmp_path):
    eng = engine(tmp_path, "mixed")
    ratings(eng, users=20, per_user=60)
    assert eng.ranker.leaves_out_consumed(eng.user("rater3"))
    n = 0
    for step in range(40):  # a re-watcher: comes back to their favourites all the time
        n += 1
        eng.learn(Interaction(f"w{n}", "rewatcher", f"m{(0, 1, 2, 3)[step % 4]}", "like", T0 + 10**9 + n * 1000))
    user = eng.user("rewatcher")
    assert user.returns == 36 and not eng.ranker.leaves_out_consumed(user)
    assert {"m0", "m1", "m2", "m3"} <= {s.item_id for s in eng.publish("rewatcher", 20).items}


def test_the_traffic_rate_is_part_of_the_ranker_row():
    ranker = LearnedRanker([0.0] * 12)
    user = UserState()
    for n, item in enumerate(("a", "b", "a", "c")):
        ev = Interaction(f"e{n}", "u", item, "view", T0 + n)
        ranker.learn_one(ev, user)
        user.apply(ev)
    assert (ranker.returns, ranker.positives) == (1, 4)
    rows = ranker.export_dirty()
    restored = LearnedRanker([0.0] * 12)
    restored.import_rows(rows)
    assert (restored.returns, restored.positives) == (1, 4) and restored.return_rate() == ranker.return_rate()


def test_a_person_s_profile_shows_both_new_fields():
    from online_models.profile import lines, profile, state_profile

    user = UserState()
    for n in range(MAX_RECENT + 3):
        user.apply(Interaction(f"v{n}", "u", f"item-{n}", "view", T0 + n))
    user.apply(Interaction("back", "u", f"item-{MAX_RECENT}", "click", T0 + 999))
    shown = state_profile(0, user)
    assert shown["came_back"] == 1 and shown["older_items"]["bits"] == consumed.BITS
    assert 0 < shown["older_items"]["share_set"] < 0.01 and shown["older_items"]["filter"] == user.older
    text = "\n".join(lines(profile("u", {0: user}, False, "control", None)))
    assert "Came back 1 time to an item just had" in text
    assert "Earlier items, as a filter of 4096 bits" in text
    assert state_profile(0, UserState())["older_items"] is None
