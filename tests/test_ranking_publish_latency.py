"""Latency metrics that are true for replays too (issue 12 item 8): a worker replaying
historical events (the README's own 2023 timestamps) reports consume-to-publish as usual and
keeps event-to-publish for live events only, counting the rest instead of filling +Inf."""
from __future__ import annotations

import time

from helpers import event, latest_by_key, produce, read_all, wait_until


def test_historical_events_stay_out_of_event_to_publish(settings_factory, worker_factory):
    s = settings_factory(partitions=1)
    w = worker_factory(s)
    wait_until(lambda: w.value("reco_assigned_partitions") >= 1, what="partition assignment")
    old = [event(f"hist-{u}", "a", ts=1_700_000_000_000 + u) for u in range(3)]
    produce(s, [(e["user_id"], e) for e in old])
    wait_until(lambda: w.value("reco_recommendations_published_total") >= 3, what="lists for the replay")

    assert w.value("reco_event_to_publish_out_of_range_total") == 3
    assert w.value("reco_event_to_publish_seconds_count") == 0
    assert w.value("reco_event_to_publish_seconds_bucket", le="+Inf") == 0  # was 3: "years"
    assert w.value("reco_consume_to_publish_seconds_count") == 3           # the headline is there
    assert w.value("reco_consume_to_publish_seconds_bucket", le="30.0") == 3

    live = event("live", "a", ts=int(time.time() * 1000))
    produce(s, [("live", live)])
    wait_until(lambda: "live" in latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.3)),
               what="the live user's list")
    wait_until(lambda: w.value("reco_event_to_publish_seconds_count") == 1, what="the live observation")
    assert w.value("reco_event_to_publish_seconds_bucket", le="30.0") == 1  # seconds, not years
    assert w.value("reco_event_to_publish_out_of_range_total") == 3
