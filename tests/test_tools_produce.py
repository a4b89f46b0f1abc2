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
