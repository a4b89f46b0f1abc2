"""A person's own profile (issue 15, right of access): `reco explain USER [--json]` and `GET
/users/{user_id}/profile/` on `reco serve` show what the engine holds about the user — real
broker, a real worker and serve process, real RocksDB, real HTTP."""
from __future__ import annotations

import subprocess
import sys

import orjson
from confluent_kafka import TopicPartition
from helpers import event, latest_by_key, produce, read_all, wait_until
from pydantic import SecretStr
from test_privacy_opt_out import list_after, marker, send
from test_serve_edges import request, spawn_serve, wait_serving
from workers import spawn, stop, wait_caught_up, worker_env

from online_models.profile import FIELDS, state_profile
from online_models.state.pseudonyms import Pseudonyms
from online_models.state.user_state import UserState
from online_models.variants import assign
from streams.broker import free_port
from streams.clients import consumer, ensure_topics
from streams.profile import from_changelog
from streams.settings import Settings

KEY = "explain-test-pseudonym-key-4b2f"
TOKEN = "pr0file-t0ken"
VARIANTS = '[{"name": "red"}, {"name": "blue"}]'
T = 1_700_000_000_000
CATALOGUE = {"i1": "shoes", "i2": "shoes", "i3": "socks", "i4": "socks", "i5": "hats", "i6": "hats"}
ALICE = [("i1", "view"), ("i2", "view"), ("i2", "add_to_cart"), ("i2", "purchase"), ("i5", "skip"), ("i3", "click")]


def explain(s, *args: str, key: str | None = KEY) -> subprocess.CompletedProcess:
    env = {**worker_env(s), "RECO_VARIANTS": VARIANTS, **({"RECO_PSEUDONYMIZE_KEY": key} if key else {})}
    return subprocess.run([sys.executable, "-m", "streams.cli.main", "explain", *args], check=False, env=env,
                          capture_output=True, text=True, timeout=60)


def test_explain_and_the_profile_endpoint_show_what_was_produced(settings_factory, tmp_path):
    s = settings_factory()
    ensure_topics(s)
    env = {"RECO_PSEUDONYMIZE_KEY": KEY, "RECO_VARIANTS": VARIANTS}
    worker = spawn(s, log=tmp_path / "worker.log", env={**env, "RECO_SNAPSHOT_MIN_RECORDS": "1"})
    port, serve_log = free_port(), tmp_path / "serve.log"
    serve = spawn_serve(s, port, serve_log, RECO_SERVE_TOKEN=TOKEN, **env)
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    try:
        produce(s, [(i, {"item_id": i, "category": c}) for i, c in CATALOGUE.items()], topic=s.items_topic)
        alice = [event("alice", item, kind, ts=T + 10_000 + 1000 * n, session_id="s1", context={"device": "mobile"})
                 for n, (item, kind) in enumerate(ALICE)]
        crowd = [event(f"bob{n}", f"i{1 + n % 6}", ts=T + 100 * n) for n in range(12)]
        carol = event("carol", "i4", ts=T + 30_000, context={"device": "tv"})
        ends = send(s, crowd + alice + [marker("carol", "opt_out"), carol])
        published = list_after(s, "alice", alice[-1]["event_id"])
        list_after(s, "carol", carol["event_id"])
        wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[worker])

        # `reco explain --json` beside the running worker: what was produced, field by field.
        done = explain(s, "alice", "--json")
        assert done.returncode == 0, done.stderr
        found = orjson.loads(done.stdout)
        assert done.stdout == orjson.dumps(found, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode() + "\n"
        pseudonym = Pseudonyms(KEY).pseudonym("alice")
        variant = assign("alice", Settings(variants=orjson.loads(VARIANTS)).engine_config().variants).name
        assert (found["user_id"], found["held"], found["opted_out"], found["pseudonym"]) == ("alice", True, False, pseudonym)
        assert found["variant"] == variant == published["variant"]
        assert found["recommendations"] == published, "the current list as published, with its reasons"
        (prof,) = found["profiles"]
        kept = [e for e in alice if e["type"] != "skip"]
        assert [(r["item_id"], r["type"], r["ts"]) for r in prof["recent"]] == \
            [(e["item_id"], e["type"], e["ts"]) for e in reversed(kept)], "newest first"
        assert [r["action"] for r in prof["recent"]] == ["clicked", "bought", "added to cart", "viewed", "viewed"]
        assert prof["recent"][0]["at"] == "2023-11-14T22:13:35.000Z"
        assert prof["event_counts"] == {"view": 2, "add_to_cart": 1, "purchase": 1, "skip": 1, "click": 1}
        assert prof["session"] == {"id": "s1", "implicit": False, "items": ["i1", "i2", "i2", "i2", "i3"]}
        assert prof["purchased"] == ["i2"]
        assert [(k["item_id"], k["ts"]) for k in prof["skipped"]] == [("i5", alice[4]["ts"])]
        assert [c["category"] for c in prof["taste_categories"]] == ["shoes", "socks", "hats"]
        assert prof["taste_categories"][-1]["affinity"] < 0 < prof["taste_categories"][1]["affinity"]
        assert prof["last_context"] == {"device": "mobile"} and prof["last_event_at"] == prof["recent"][0]["at"]
        assert prof["last_list_shown"] == [i["item_id"] for i in published["items"]]
        assert prof["recent_event_ids"] == [e["event_id"] for e in alice]
        # ... and equal to the stored row (`reco state dump`, keyed by the pseudonym).
        dump = subprocess.run([sys.executable, "-m", "streams.cli.main", "state", "dump"], check=True, capture_output=True,
                              env={**worker_env(s), "RECO_PSEUDONYMIZE_KEY": KEY}, timeout=60).stdout
        row = orjson.loads(dump)["users"][pseudonym]
        assert prof["taste_vector"] == row["factors"] and len(row["factors"]) == 16
        assert {c["category"]: c["affinity"] for c in prof["taste_categories"]} == row["taste"]

        # In words.
        text = explain(s, "alice")
        assert text.returncode == 0, text.stderr
        for words in ("What the engine holds about alice:", f"pseudonym (a keyed hash of the id): {pseudonym}",
                      "2023-11-14T22:13:35.000Z  clicked i3", "bought i2", "added to cart i2", "viewed i1",
                      "Bought: i2", "Skipped or disliked", "i5 (2023-11-14T22:13:34.000Z)",
                      "Taste categories, strongest first: shoes (+", "Current session: s1",
                      "Last seen on: device mobile", "A learned taste vector of 16 numbers",
                      "Not opted out of profiling", f"A/B variant: {variant}", f"— {published['items'][0]['reason']}"):
            assert words in text.stdout, (words, text.stdout)
        assert str(row["factors"][0]) not in text.stdout, "the vector is described, not printed"

        # Opted out, unknown, an invalid id, the wrong key.
        opted = explain(s, "carol")
        assert opted.returncode == 0 and \
            "Opted out of profiling: no profile is kept; lists are not personalised." in opted.stdout, opted.stdout
        carol_json = orjson.loads(explain(s, "carol", "--json").stdout)
        assert carol_json["opted_out"] is True and carol_json["profiles"] == []
        assert carol_json["recommendations"]["personalized"] is False
        nobody = explain(s, "nobody")
        assert nobody.returncode == 0 and "nothing: no profile, no opt-out, no current list" in nobody.stdout
        assert orjson.loads(explain(s, "nobody", "--json").stdout)["held"] is False
        bad = explain(s, "a\x01b")
        assert bad.returncode == 1 and bad.stderr.startswith("Error: invalid user id"), bad.stderr
        unkeyed = explain(s, "alice", key=None)
        assert unkeyed.returncode == 1 and "pseudonymised with the key of fingerprint" in unkeyed.stderr
        assert len(unkeyed.stderr.strip().splitlines()) == 1 and KEY not in unkeyed.stdout + unkeyed.stderr

        # Over HTTP, from the changelog (the serve process owns no store): the same object.
        client = consumer(s, group_id=s.group_id)
        committed = client.committed([TopicPartition(s.changelog_topic, p) for p in range(s.partitions)], timeout=10)
        client.close()
        assert any(tp.offset > 0 for tp in committed), "a snapshot offset: the read starts there"
        # Read from the start instead (no snapshot offset known): the same committed state.
        elsewhere = s.model_copy(update={"group_id": f"{s.group_id}-none", "pseudonymize_key": SecretStr(KEY)})
        states, opted_out = from_changelog(elsewhere, "alice", timeout_s=30)
        assert [state_profile(p, st) for p, st in states.items()] == found["profiles"] and not opted_out
        wait_serving(serve, serve_log, port)
        def profile(user):
            status, body = request(f"{base}/users/{user}/profile/", headers=auth)
            return orjson.loads(body) if status == 200 else None
        wait_until(lambda: profile("alice") == found, timeout=60, interval=0.5,
                   what="the served profile equal to reco explain's")
        assert request(f"{base}/users/alice/profile", headers=auth)[0] == 200  # no trailing slash
        assert profile("carol") == carol_json
        assert request(f"{base}/users/nobody/profile/", headers=auth)[0] == 404
        assert request(f"{base}/users/alice/profile/")[0] == 401
        assert request(f"{base}/users/alice/profile/", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert request(f"{base}/users/{'x' * 5000}/profile/", headers=auth)[0] == 400
        assert KEY not in serve_log.read_text() and TOKEN not in serve_log.read_text()
    finally:
        codes = stop(serve), stop(worker)
    assert codes == (0, 0)
    assert "alice" in latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.2))


def test_every_field_of_the_state_is_in_the_profile():
    assert set(FIELDS) == set(UserState.__slots__)
