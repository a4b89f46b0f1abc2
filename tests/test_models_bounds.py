"""Every model's memory is bounded by a capacity, and eviction is a function of the input alone:
the same events give the same rows whether or not the engine was saved and reloaded between."""
from __future__ import annotations

import orjson
import pytest

from online_models.catalog import Catalog
from online_models.config import EngineConfig
from online_models.engine import Engine
from online_models.events import Interaction
from online_models.models.context import EventScopes
from online_models.models.covisitation import CoVisitation
from online_models.models.mf import OnlineMF
from online_models.models.trending import GLOBAL, Trending
from online_models.state import binrows
from online_models.state.store import MODEL, PartitionStore
from online_models.state.user_state import UserState

N = 50_000
CAP = 1_000
T0 = 1_700_000_000_000


def unique_items(n: int, users: int = 1, device: bool = False):
    """One event per unique 128-character item id (or device), a few users browsing sessions."""
    for k in range(n):
        ctx = {"device": f"device-{k:08d}"} if device else {}
        yield Interaction(f"e{k}", f"u{k % users}", f"{k:0128d}", "view", T0 + 1_000 * k, f"s{k // 20}", ctx)


def apply(store: dict, rows: dict) -> None:
    """What the partition store does with exported rows: None deletes."""
    for key, value in rows.items():
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value


def test_trending_holds_at_most_its_capacity_per_scope_and_its_rows_shrink_too():
    model, rows = Trending(Catalog(), max_items=CAP), {}
    for k, ev in enumerate(unique_items(N)):
        model.learn_one(ev)
        if k % 5_000 == 0:
            apply(rows, model.export_dirty())
    apply(rows, model.export_dirty())
    assert len(model.values[GLOBAL]) <= CAP and len(rows) <= CAP + 1  # + the landmark
    assert model.top()[0][0] == f"{N - 1:0128d}"  # the newest is the hottest, and kept


def test_context_holds_at_most_its_capacity_of_scopes():
    model, rows = Trending(Catalog(), 72.0, top_n=50, name="context", scopes_of=EventScopes(),
                           max_items=CAP, max_scopes=100), {}
    for ev in unique_items(N, device=True):
        model.learn_one(ev)
    apply(rows, model.export_dirty())
    assert len(model.values) <= 100 and len(rows) <= 100 * 1 + 4 * CAP + 1
    assert {"@night", "@morning", "@afternoon", "@evening"} <= set(model.values)  # busy scopes stay
    assert f"@device-{N - 1:08d}" in model.values


def test_covisitation_holds_at_most_its_capacity_of_rows():
    model, user, rows = CoVisitation(max_items=CAP), UserState(), {}
    for ev in unique_items(N):
        model.learn_one(ev, user)
        user.apply(ev)
    apply(rows, model.export_dirty())
    assert len(model) <= CAP and len(rows) <= CAP + 1
    assert len(model.ids) <= 2 * CAP + 2  # ids no kept row refers to are let go: memory follows the rows
    assert model.neighbors(f"{N - 2:0128d}")[0][0] == f"{N - 1:0128d}"


def test_mf_holds_at_most_its_capacity_of_item_factors_and_stays_dense():
    model, users, rows = OnlineMF(max_items=CAP), [UserState() for _ in range(7)], {}
    for ev in unique_items(N // 2, users=7):
        user = users[int(ev.user_id[1:])]
        model.learn_one(ev, user)
        user.apply(ev)
    apply(rows, model.export_dirty())
    assert len(model.ids) <= CAP and len(rows) == len(model.ids)
    assert all(model.index[item] == r for r, item in enumerate(model.ids))
    assert sorted(binrows.readable(r)[0] for r in rows.values()) == list(range(len(model.ids)))
    assert not model.vectors[len(model.ids):].any()


SMALL = EngineConfig(trending_max_items=300, trending_max_scopes=5, context_max_items=100, context_max_scopes=6,
                     covisit_max_items=300, mf_max_items=300)


def events(n: int) -> list[Interaction]:
    """Mostly unique items and devices, with a few repeated ones so the caps bite on real state."""
    out = []
    for k in range(n):
        item = f"hot-{k % 7}" if k % 3 == 0 else f"item-{k}"
        out.append(Interaction(f"e{k}", f"u{k % 13}", item, ("view", "click", "skip", "purchase")[k % 4],
                               T0 + 60_000 * k, f"s{k % 13}-{k // 40}", {"device": f"d{k % 50}"}))
    return out


def catalog() -> Catalog:
    cat = Catalog()
    for k in range(0, 3_000, 2):
        cat.upsert({"item_id": f"item-{k}", "category": f"cat-{k % 23}"})
    return cat


def run(engine: Engine, evs: list[Interaction]) -> list[bytes]:
    out = []
    for k, ev in enumerate(evs):
        engine.learn(ev)
        out.append(orjson.dumps(engine.publish(ev.user_id).to_dict()))
        if k % 250 == 0:
            engine.checkpoint(k)
    engine.checkpoint(len(evs))
    return out


def model_rows(store: PartitionStore) -> list[tuple[bytes, bytes]]:
    return list(store.scan(MODEL))


@pytest.mark.parametrize("split", [1_111, 2_222])
def test_eviction_is_the_same_with_a_save_and_reload_in_the_middle(tmp_path, split):
    evs = events(3_000)
    straight = PartitionStore(tmp_path / "straight")
    straight_out = run(Engine(straight, catalog(), SMALL), evs)
    broken = PartitionStore(tmp_path / "broken")
    broken_out = run(Engine(broken, catalog(), SMALL), evs[:split])
    broken_out += run(Engine(broken, catalog(), SMALL), evs[split:])  # a fresh engine from the store
    assert broken_out == straight_out
    assert model_rows(broken) == model_rows(straight)
    counts: dict[bytes, int] = {}
    for key, _ in model_rows(straight):
        counts[key.split(b"\x00")[1]] = counts.get(key.split(b"\x00")[1], 0) + 1
    assert counts[b"covisit"] <= 300 + 2 and counts[b"mf"] <= 300 + 1  # + landmark and format rows
    assert counts[b"trending"] <= 5 * 300 + 2 and counts[b"context"] <= 6 * 100 + 2
    assert min(counts[m] for m in (b"covisit", b"mf", b"trending", b"context")) > 250  # bounds reached: eviction ran
