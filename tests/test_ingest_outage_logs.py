"""A broker outage must not flood the worker's log (issue 12 item 7): librdkafka and the error
callback report every reconnect attempt; each distinct message is shown once per 30 s, and the
next time it is shown it says how often it repeated meanwhile."""
from __future__ import annotations

import collections
import logging
import re
import signal
import subprocess
import sys
import time

from helpers import http, wait_until
from test_recovery import make_settings
from workers import worker_env

from streams.broker import EmbeddedBroker, free_port
from streams.clients import _FirstOfEachMessage

OUTAGE_S = 8  # the worker used to print about 20 identical lines a second


def test_an_outage_logs_each_message_once_not_per_retry(tmp_path):
    port, metrics_port = free_port(), free_port()
    broker = EmbeddedBroker(port).start()
    s = make_settings(broker, tmp_path)
    log = tmp_path / "worker.log"
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli.main", "run"],
                            env={**worker_env(s), "RECO_METRICS_PORT": str(metrics_port)},
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: http(f"http://127.0.0.1:{metrics_port}/readyz")[0] == 200, what="ready")
        before = len(log.read_text().splitlines())
        broker.stop()
        time.sleep(OUTAGE_S)
        during = log.read_text().splitlines()[before:]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        broker.stop()
    assert any("Connect to" in line for line in during), "the outage is reported"
    # the same message, whatever its numbers (timestamps, ports, "after 0ms"): once in the window
    shapes = collections.Counter(re.sub(r"\d+", "#", line.split(" ", 3)[-1]) for line in during)
    repeated = {shape: n for shape, n in shapes.items() if n > 1}
    assert not repeated, f"{len(during)} lines in {OUTAGE_S} s; repeated: {repeated}"
    assert len(during) <= 20, "\n".join(during)


def test_a_collapsed_message_says_how_often_it_repeated():
    logger = logging.getLogger("test.collapse")
    logger.propagate = False
    shown: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: shown.append(record.getMessage())
    logger.addHandler(handler)
    logger.addFilter(_FirstOfEachMessage(every_s=0.3))
    for n in range(50):
        logger.warning("Connect to 127.0.0.1:9092 failed (after %dms in state CONNECT)", n)
    time.sleep(0.35)
    logger.warning("Connect to 127.0.0.1:9092 failed (after 0ms in state CONNECT)")
    assert shown == ["Connect to 127.0.0.1:9092 failed (after 0ms in state CONNECT)",
                     "Connect to 127.0.0.1:9092 failed (after 0ms in state CONNECT) "
                     "(and 49 more like it since it was last shown)"]
