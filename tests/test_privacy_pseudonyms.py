"""Pseudonymised state (issue 15): with RECO_PSEUDONYMIZE_KEY, no raw user id in the state
dump or in the changelog topic, forget still works, and the key is never printed — real broker,
real RocksDB, real processes."""
from __future__ import annotations

import re
import subprocess
import sys
import time

import orjson
import pytest
from helpers import latest_by_key, produce, read_all, wait_until
from test_recovery_changelog import make_settings, records
from workers import positions, spawn, stop, wait_caught_up, worker_env

from online_models.catalog import Catalog
from online_models.config import EngineConfig
from online_models.engine import Engine, StateFormatError
from online_models.events import Interaction
from online_models.state.pseudonyms import Pseudonyms
from online_models.state.store import PartitionStore, partition_stores
from streams import clients
from streams.clients import ensure_topics
from streams.serve.app import forget_request
from streams.worker.decode import CONTROL_HEADER, FORGET_USER

KEY = "test-pseudonymisation-key-7c1e93a0"
USERS = [f"person-{n:02d}-e5b0" for n in range(12)]
FORGOTTEN = USERS[0]
T0 = 1_700_000_000_000


def _events() -> list[dict]:
    # Event ids and session ids are kept as given (documented): these carry no user id.
    return [{"event_id": f"ev{n}", "user_id": USERS[n % len(USERS)], "item_id": f"i{n % 9}",
             "type": "view" if n % 3 else "add_to_cart", "ts": T0 + n * 1000,
             "session_id": f"s{n // 40}", "context": {"device": "mobile"}} for n in range(240)]


def forget(s, user: str) -> int:
    """A forget marker in the partition that holds the user's events; returns that partition."""
    partition = next(m.partition() for m in read_all(s, s.interactions_topic, idle_s=0.2) if m.key() == user.encode())
    p = clients.producer(s)
    p.produce(s.interactions_topic, key=user, value=forget_request(user), partition=partition,
              headers=[(CONTROL_HEADER, FORGET_USER)])
    assert p.flush(10) == 0
    return partition


def _state_dump(s, models: bool = True) -> bytes:
    args = ["state", "dump"] + (["--models"] if models else [])
    out = subprocess.run([sys.executable, "-m", "streams.cli.main", *args], env={**worker_env(s), "RECO_PSEUDONYMIZE_KEY": KEY},
                         capture_output=True, timeout=60, check=True)
    return out.stdout


def test_pseudonymised_state_holds_no_user_id_and_forget_still_works(broker, tmp_path):
    s = make_settings(broker, tmp_path)
    ensure_topics(s)
    ends = produce(s, records(_events()))
    log = tmp_path / "worker.log"
    env = {"RECO_PSEUDONYMIZE_KEY": KEY}
    proc = spawn(s, log=log, env=env)
    wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc])
    partition = forget(s, FORGOTTEN)
    wait_until(lambda: (positions(s.state_dir, s.interactions_topic).get(partition) or 0) > ends[partition],
               timeout=60, what="the forget marker checkpointed")
    time.sleep(1)
    assert stop(proc) == 0

    ids = Pseudonyms(KEY)
    dump = _state_dump(s)
    users = orjson.loads(dump)["users"]
    assert set(users) == {ids.pseudonym(u) for u in USERS[1:]}, "every user but the forgotten one, by pseudonym"
    assert all(re.fullmatch(r"[0-9a-f]{32}", u) for u in users)
    assert orjson.loads(dump)["models"], "models dumped too"
    for user in USERS:
        assert user.encode() not in dump, f"{user} in reco state dump --models"

    changelog = read_all(s, s.changelog_topic, idle_s=0.5, timeout=60)
    assert len(changelog) > len(USERS)
    for m in changelog:
        for user in USERS:
            assert user.encode() not in (m.key() or b"") + (m.value() or b""), f"{user} in the changelog"
    forgotten_row = b"u\x00" + ids.pseudonym(FORGOTTEN).encode()
    assert [m.value() for m in changelog if m.key() == forgotten_row][-1] is None, "a changelog tombstone"

    # `recommendations` stays keyed by the real id; the forgotten user's list is withdrawn.
    recs = latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.5, timeout=60))
    assert set(recs) == set(USERS[1:])
    assert KEY not in log.read_text(), "the key is never logged"
    files = [f for path in partition_stores(s.state_dir, s.interactions_topic).values() for f in path.iterdir()]
    assert not any(u.encode() in f.read_bytes() for f in files if f.is_file() for u in USERS)


@pytest.mark.parametrize("then", [None, "another-key-0123456789"])
def test_a_store_pseudonymised_with_one_key_is_refused_with_another_or_none(tmp_path, then):
    store = PartitionStore(tmp_path / "p0")
    engine = Engine(store, Catalog(), EngineConfig(pseudonyms=Pseudonyms(KEY)))
    engine.learn(Interaction.from_dict(_events()[0]))
    engine.checkpoint(1)
    store.close()
    store = PartitionStore(tmp_path / "p0")
    with pytest.raises(StateFormatError, match="pseudonymised with the key of fingerprint [0-9a-f]{16}"):
        Engine(store, Catalog(), EngineConfig(pseudonyms=Pseudonyms(then)))
    store.close()


def test_the_key_is_never_printed():
    from streams.settings import Settings
    s = Settings(pseudonymize_key=KEY)
    assert KEY not in repr(s) and KEY not in repr(s.engine_config()) and KEY not in str(s.model_dump())
