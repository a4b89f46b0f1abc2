"""The catalogue join is aligned on record timestamps (decision 0013): catalogue records and
events in one file, sent by `reco produce` to a worker that is already running, give the same
lists on every fresh stack — and a new item of the user's category is in their first list."""
from __future__ import annotations

import subprocess
import sys
import uuid

import orjson
from helpers import event, read_all, wait_until
from workers import worker_env

T = 1_700_000_000_000
SHOES = [f"shoe-{n}" for n in range(1, 5)]
SOCKS = [f"sock-{n}" for n in range(1, 5)]


def shop_file(path):
    """A small shop: the catalogue (with a shoe nobody has seen yet) and each user's first event."""
    lines = [{"item_id": i, "category": "shoes"} for i in SHOES + ["shoe-new"]]
    lines += [{"item_id": i, "category": "socks"} for i in SOCKS]
    users = {"alice": "shoe-1", "bob": "shoe-2", "carol": "sock-1", "dave": "shoe-3", "erin": "sock-2"}
    lines += [event(u, item, "view", ts=T + n * 1000) for n, (u, item) in enumerate(users.items())]
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in lines) + b"\n")
    return users


def one_stack(settings_factory, worker_factory, data) -> dict[str, list[bytes]]:
    """A fresh stack (topics, group, state): the worker first, then `reco produce`; every list
    published, in order, per user."""
    tag = uuid.uuid4().hex[:8]
    s = settings_factory(group_id=f"g-{tag}", interactions_topic=f"in-{tag}", items_topic=f"items-{tag}",
                         recommendations_topic=f"recs-{tag}", dlq_topic=f"dlq-{tag}", control_topic=f"ctl-{tag}",
                         changelog_topic=f"chg-{tag}", state_dir=data.parent / f"state-{tag}")
    w = worker_factory(s)
    wait_until(lambda: w.value("reco_assigned_partitions") >= 2, what="partition assignment")
    done = subprocess.run([sys.executable, "-m", "streams.cli.main", "produce", str(data)], env=worker_env(s),
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    wait_until(lambda: w.value("reco_events_consumed_total", outcome="applied") == 5, what="events applied")
    lists: dict[str, list[bytes]] = {}
    msgs = wait_until(lambda: (m := read_all(s, s.recommendations_topic, idle_s=0.3)) and len(m) >= 5 and m,
                      what="a list per user")
    for m in msgs:
        lists.setdefault(m.key().decode(), []).append(m.value())
    w.stop()
    assert w.error is None
    return lists


def test_catalogue_before_later_events_gives_identical_lists(settings_factory, worker_factory, tmp_path):
    data = tmp_path / "shop.jsonl"
    users = shop_file(data)
    first = one_stack(settings_factory, worker_factory, data)
    second = one_stack(settings_factory, worker_factory, data)
    assert set(first) == set(users)
    assert first == second, "two fresh stacks fed the same file published different lists"
    for user, item in users.items():
        assert len(first[user]) == 1, "one event, one list"
        shown = [i["item_id"] for i in orjson.loads(first[user][0])["items"]]
        if item.startswith("shoe"):
            assert "shoe-new" in shown, f"{user}'s first list lacks the new item of their category: {shown}"
