"""`reco produce` checks every line as the worker would before sending anything, names each bad
line and why, and counts events and catalogue records apart — real broker, the CLI as a process."""
from __future__ import annotations

import subprocess

import orjson
from helpers import read_all
from test_cli import RECO, env_for

GOOD = [{"item_id": f"shoe-{n}", "category": "shoes"} for n in range(12)] + \
       [{"user_id": f"u{n % 5}", "item_id": f"shoe-{n % 12}", "type": "view", "ts": 1_700_000_000_000 + n}
        for n in range(24)]
BAD = [{"user_id": "u1", "item_id": "shoe-1", "type": "view", "ts": 1_700_000_000},   # seconds
       {"user_id": "u1", "item_id": "shoe-1", "type": "VIEW", "ts": 1_700_000_000_000},
       {"user_id": "u1", "item_id": "shoe-1", "type": "wishlist", "ts": 1_700_000_000_000},
       {"user_id": "u1", "type": "view", "ts": 1_700_000_000_000},                    # no item_id
       {"user_id": "u1", "item_id": "typo-item"}]                                     # no type


def write(path, records):
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in records) + b"\n")
    return path


def test_a_file_with_lines_the_worker_would_reject_is_refused_line_by_line(settings_factory, tmp_path):
    s = settings_factory()
    path = write(tmp_path / "mixed.jsonl", GOOD[:20] + BAD + GOOD[20:])
    done = subprocess.run(RECO + ["produce", str(path)], env=env_for(s), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    for line, word in zip(range(21, 26), ("seconds", "type", "type", "item_id", "missing `type`")):
        assert f"line {line}: " in done.stderr and word in done.stderr.split(f"line {line}: ")[1].splitlines()[0]
    assert "5 of 41 records would be rejected" in done.stderr and "nothing was sent" in done.stderr
    assert "Traceback" not in done.stderr
    assert read_all(s, s.interactions_topic, idle_s=0.3, timeout=10) == []


def test_skip_invalid_sends_the_rest_and_counts_events_and_catalogue_apart(settings_factory, tmp_path):
    s = settings_factory()
    path = write(tmp_path / "mixed.jsonl", GOOD + BAD)
    done = subprocess.run(RECO + ["produce", "--skip-invalid", str(path)], env=env_for(s), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"sent 24 events to {s.interactions_topic} and 12 catalogue records to {s.items_topic}" in done.stdout
    assert "skipped 5 invalid records" in done.stdout and "skipped " in done.stderr
    assert len(read_all(s, s.interactions_topic, idle_s=0.3)) == 24
    assert len(read_all(s, s.items_topic, idle_s=0.3)) == 12


NO_IDS = [{"user_id": f"u{n % 4}", "item_id": f"shoe-{n % 7}", "type": ("view", "click", "add_to_cart")[n % 3],
           "ts": 1_700_000_000_000 + 1000 * n, "context": {"device": "mobile"}} for n in range(40)]
NO_IDS.append(dict(NO_IDS[-1]))  # the same event twice in the file: an id of its own each
WITH_ID = {"event_id": "mine-1", "user_id": "u0", "item_id": "hat-1", "type": "view", "ts": 1_700_000_100_000}


def test_ids_derived_from_content_fit_the_schema_and_leave_given_ids_and_catalogue_alone():
    import jsonschema

    from streams.cli.produce import with_event_ids
    from streams.schemas import load_schema

    records = [(f"line {n}", r) for n, r in enumerate([GOOD[0], *NO_IDS, WITH_ID, {**WITH_ID, "event_id": None}], 1)]
    first, again = with_event_ids(records), with_event_ids(records)
    assert first == again
    assert first[0][1] == GOOD[0] and first[-2][1] == WITH_ID and first[-1][1]["event_id"] is None
    ids = [r["event_id"] for _, r in first[1:-2]]
    assert len(set(ids)) == len(ids) == 41 and ids[-1] == ids[-2] + "-2"
    assert all(i.startswith("p-") and len(i) in (18, 20) for i in ids)
    for (_, derived), original in zip(first[1:-2], NO_IDS):
        assert {k: v for k, v in derived.items() if k != "event_id"} == original
        jsonschema.validate(derived, load_schema("interaction"))
    # the content decides, not the key order nor the line
    shuffled = with_event_ids([("line 9", dict(reversed(list(NO_IDS[0].items()))))])
    assert shuffled[0][1]["event_id"] == ids[0]


def test_the_same_id_less_file_gives_byte_identical_lists_on_two_fresh_stacks(settings_factory, worker_factory,
                                                                              tmp_path):
    from helpers import wait_until

    path = write(tmp_path / "no-ids.jsonl", GOOD[:7] + NO_IDS)
    base = settings_factory()
    stacks = [settings_factory(**{name: f"{getattr(base, name)}-{run}" for name in
                                  ("group_id", "interactions_topic", "items_topic", "recommendations_topic",
                                   "dlq_topic", "control_topic", "changelog_topic")},
                               state_dir=tmp_path / f"state-{run}") for run in "ab"]
    sent, lists = [], []
    for s in stacks:  # a new set of topics, a new state directory: a fresh stack each time
        done = subprocess.run(RECO + ["produce", str(path)], env=env_for(s), capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        sent.append(sorted(orjson.loads(m.value())["event_id"] for m in read_all(s, s.interactions_topic,
                                                                                   idle_s=0.3)))
        w = worker_factory(s)
        wait_until(lambda: w.value("reco_events_consumed_total") >= len(NO_IDS), timeout=90,
                   what="every event consumed")
        w.stop()
        assert w.error is None and w.value("reco_events_consumed_total", outcome="applied") == len(NO_IDS)
        lists.append({m.key(): m.value() for m in read_all(s, s.recommendations_topic, idle_s=0.3)})
    assert sent[0] == sent[1] and all(i.startswith("p-") for i in sent[0])
    assert len(lists[0]) == 4 and lists[0] == lists[1], "the same file, the same lists, byte for byte"
    assert all(orjson.loads(v)["trigger"]["event_id"].startswith("p-") for v in lists[0].values())

    # sending the file again to the same stack changes nothing: every event is a duplicate
    s = stacks[0]
    done = subprocess.run(RECO + ["produce", str(path)], env=env_for(s), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    w = worker_factory(s)
    wait_until(lambda: w.value("reco_events_consumed_total") >= len(NO_IDS), timeout=90, what="the resent events")
    w.stop()
    assert w.value("reco_events_consumed_total", outcome="duplicate") == len(NO_IDS)
    assert {m.key(): m.value() for m in read_all(s, s.recommendations_topic, idle_s=0.3)} == lists[0]


def test_the_progress_label_counts_events_and_catalogue_records_apart(settings_factory, tmp_path):
    s = settings_factory()
    path = write(tmp_path / "good.jsonl", GOOD)
    done = subprocess.run(RECO + ["produce", str(path)], env=env_for(s), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "producing 24 events and 12 catalogue records" in done.stdout
    assert "producing 36" not in done.stdout


def test_evaluate_names_each_bad_line_as_produce_does(tmp_path):
    from click.testing import CliRunner

    from streams.cli.main import cli

    path = write(tmp_path / "bad.jsonl", GOOD[:20] + BAD + GOOD[20:])
    result = CliRunner().invoke(cli, ["evaluate", str(path), "--baseline", "covisit", "--jobs", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    for line, word in zip(range(21, 26), ("seconds", "type", "type", "item_id", "missing `type`")):
        assert f"bad.jsonl line {line}: " in result.stderr
        assert word in result.stderr.split(f"line {line}: ")[1].splitlines()[0]
    assert "unknown event type(s) 'VIEW', 'wishlist'" in result.stderr
    assert "5 of 41 records would be rejected" in result.stderr
    many = write(tmp_path / "many.jsonl", GOOD + [{**GOOD[-1], "ts": 1_700_000_000 + n} for n in range(12)])
    result = CliRunner().invoke(cli, ["evaluate", str(many), "--baseline", "covisit", "--jobs", "1", "--json"])
    assert result.exit_code == 0, result.output
    named = [line for line in result.stderr.splitlines() if "many.jsonl line " in line]
    assert len(named) == 10 and all("looks like seconds" in line for line in named)
    assert "… and 2 more" in result.stderr and "12 of 36 events are not valid interactions" in result.stderr
    assert orjson.loads(result.stdout)["engine"]["events"] == 24
