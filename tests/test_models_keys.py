"""Ids and strings that look like the store's own encoding: the models' row keys must keep them
apart (rowkeys.py), and the schemas refuse control characters before they get that far."""
from __future__ import annotations

import fastjsonschema
import numpy as np
import orjson
import pytest

from online_models.catalog import Catalog
from online_models.engine import Engine
from online_models.evaluation import synthetic
from online_models.events import Interaction
from online_models.state import binrows
from online_models.state.store import MODEL, PartitionStore
from streams.schemas import validator
from streams.worker.decode import Rejected, decode_interaction

ODD_DEVICE = "a\x1fb"          # format 1 split trending keys at the first U+001F
ODD_CATEGORY = "x\x1fy"
ODD_ITEM = "\x00landmark"      # format 1 kept co-visitation's landmark under this key


def odd_catalog() -> Catalog:
    cat = Catalog()
    for record in synthetic.catalog_records():
        if record["item_id"] in ("i3", "i8"):
            record = {**record, "category": ODD_CATEGORY}
        cat.upsert(record)
    cat.upsert({"item_id": ODD_ITEM, "category": ODD_CATEGORY})
    return cat


def odd_events(n: int) -> list[dict]:
    """The synthetic stream with one event in three on the odd item and half on the odd device."""
    out = []
    for k, e in enumerate(synthetic.events(n)):
        e = dict(e)
        if k % 3 == 0:
            e["item_id"] = ODD_ITEM
        e["context"] = {"device": ODD_DEVICE if k % 2 else "mobile"}
        out.append(e)
    return out


def lists(engine: Engine, events: list[dict]) -> list[bytes]:
    out = []
    for e in events:
        engine.learn(Interaction.from_dict(e))
        out.append(orjson.dumps(engine.publish(e["user_id"]).to_dict()))
    return out


def test_colliding_ids_survive_a_save_and_load_of_the_model_rows(tmp_path):
    events = odd_events(500)
    store = PartitionStore(tmp_path / "s")
    original = Engine(store, odd_catalog())
    lists(original, events[:300])
    original.checkpoint(300)
    restored = Engine(store, odd_catalog())
    for model in ("trending", "context", "covisit", "mf"):
        assert (pickle_state(restored, model) == pickle_state(original, model)), model
    assert lists(restored, events[300:]) == lists(original, events[300:])
    assert restored.context.top("@" + ODD_DEVICE) and restored.covisit.neighbors(ODD_ITEM)


def pickle_state(engine: Engine, model: str) -> bytes:
    m = engine.models[model]
    if model == "mf":
        size = len(m.ids)
        return orjson.dumps([m.index, m.vectors[:size], m.bias[:size], m.seen, m.decay.landmark
                             if hasattr(m, "decay") else None], option=orjson.OPT_SERIALIZE_NUMPY)
    state = m.values if model in ("trending", "context") else m.as_dict()
    return orjson.dumps([sorted((k, sorted(v.items())) for k, v in state.items()), m.decay.landmark])


def test_a_format_1_store_is_read_and_rewritten_in_the_current_format(tmp_path):
    """State written before keys were encoded: read as it was meant, rewritten at the next checkpoint."""
    store = PartitionStore(tmp_path / "s")
    vec = np.full(16, 0.01).tolist()
    legacy = {("trending", "\x1fi1"): 2.0, ("trending", "shoes\x1fi1"): 2.0, ("trending", "\x00landmark"): 1_700_000_000_000,
              ("covisit", "i1"): {"i2": 1.0}, ("covisit", "i2"): {"i1": 0.5},
              ("covisit", "\x00landmark"): 1_700_000_000_000,
              ("mf", "i1"): [0, 0.1, *vec], ("mf", "i2"): [1, 0.2, *vec], ("bandit", "mf"): [3.0, 1.0]}
    store.write({MODEL + m.encode() + b"\x00" + k.encode(): orjson.dumps(v) for (m, k), v in legacy.items()}, 0)
    engine = Engine(store, odd_catalog())
    assert engine.trending.top() == [("i1", 1.0)] and engine.trending.top("shoes") == [("i1", 1.0)]
    assert engine.covisit.neighbors("i1") == [("i2", 1.0)] and engine.covisit.decay.landmark == 1_700_000_000_000
    assert engine.mf.index == {"i1": 0, "i2": 1} and engine.bandit.stats["mf"] == [3.0, 1.0]
    engine.checkpoint(0)
    keys = {k for k, _ in store.scan(MODEL)}
    assert not keys & {MODEL + m.encode() + b"\x00" + k.encode() for m, k in legacy}  # old rows gone
    assert MODEL + b'covisit\x00["i1"]' in keys and MODEL + b"covisit\x00#format" in keys
    again = Engine(store, odd_catalog())
    assert again.trending.top("shoes") == [("i1", 1.0)] and again.covisit.neighbors("i1") == [("i2", 1.0)]
    assert again.mf.index == {"i1": 0, "i2": 1} and again.pending_rows() == {}


def test_a_format_2_store_is_read_and_rewritten_with_binary_rows(tmp_path):
    """Format 2 kept every model row as JSON: read as it is, every row rewritten at the next
    checkpoint (co-visitation and MF rows binary), the same model afterwards."""
    store = PartitionStore(tmp_path / "s")
    vec = np.full(16, 0.01).tolist()
    rows = {("covisit", '["i1"]'): {"i2": 1.0, "i3": 0.25}, ("covisit", '["i2"]'): {"i1": 0.5},
            ("covisit", "#landmark"): 1_700_000_000_000, ("covisit", "#format"): 2,
            ("mf", '["i1"]'): [0, 0.1, 1_700_000_000_000, *vec], ("mf", '["i2"]'): [1, 0.2, 5, *vec],
            ("mf", "#format"): 2}
    store.write({MODEL + m.encode() + b"\x00" + k.encode(): orjson.dumps(v) for (m, k), v in rows.items()}, 0)
    engine = Engine(store, odd_catalog())
    before = pickle_state(engine, "covisit"), pickle_state(engine, "mf")
    engine.checkpoint(0)
    stored = dict(store.scan(MODEL))
    assert binrows.is_binary(stored[MODEL + b'covisit\x00["i1"]']) and binrows.is_binary(stored[MODEL + b'mf\x00["i2"]'])
    assert stored[MODEL + b"covisit\x00#format"] == stored[MODEL + b"mf\x00#format"] == b"3"
    assert binrows.readable(stored[MODEL + b'covisit\x00["i1"]']) == {"i2": 1.0, "i3": 0.25}
    assert binrows.readable(stored[MODEL + b'mf\x00["i2"]']) == [1, 0.2, 5, *vec]
    again = Engine(store, odd_catalog())
    assert (pickle_state(again, "covisit"), pickle_state(again, "mf")) == before and again.pending_rows() == {}


def test_binary_rows_refuse_a_kind_they_do_not_know():
    row = binrows.pack_neighbours(["a", "\u00e9\x01"], np.array([1.0, 0.5]))
    assert binrows.unpack_neighbours(row) == {"a": 1.0, "\u00e9\x01": 0.5}
    with pytest.raises(ValueError, match="another version"):
        binrows.unpack_vector(row)


def test_a_store_from_a_newer_format_is_refused_with_a_clear_message(tmp_path):
    store = PartitionStore(tmp_path / "s")
    store.write({MODEL + b"covisit\x00#format": b"4", MODEL + b'covisit\x00["i1"]': b'{"i2":1.0}'}, 0)
    with pytest.raises(ValueError, match="format 4"):
        Engine(store, odd_catalog())


@pytest.mark.parametrize("field,value", [("user_id", "u\x001"), ("item_id", "i\x1f1"), ("session_id", "s\n"),
                                         ("event_id", "e\x7f")])
def test_control_characters_in_ids_go_to_the_dlq_as_schema(field, value):
    record = {"user_id": "u1", "item_id": "i1", "type": "view", "ts": 1_700_000_000_000, field: value}
    got = decode_interaction(record["user_id"].encode(), orjson.dumps(record), "interactions", 0, 7)
    assert isinstance(got, Rejected) and got.code == "schema"
    assert field in got.reason and "\n" not in got.reason


def test_control_characters_in_context_and_catalogue_fields_are_refused():
    record = {"user_id": "u1", "item_id": "i1", "type": "view", "ts": 1_700_000_000_000,
              "context": {"device": ODD_DEVICE}}
    assert decode_interaction(b"u1", orjson.dumps(record), "interactions", 0, 7).code == "schema"
    record["context"] = {"dev\x1fice": "mobile"}
    assert decode_interaction(b"u1", orjson.dumps(record), "interactions", 0, 7).code == "schema"
    record["context"] = {"device": "mobile tablet é"}  # printable text stays valid
    assert isinstance(decode_interaction(b"u1", orjson.dumps(record), "interactions", 0, 7), Interaction)
    item = validator("item")
    for bad in ({"item_id": "i\x001"}, {"item_id": "i1", "category": ODD_CATEGORY}, {"item_id": "i1", "tags": ["t\x1f"]}):
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            item(bad)
    item({"item_id": "i1", "category": "Shoes & boots", "tags": ["red"]})
