"""Who stamps the `interactions` records — the broker (LogAppendTime) or each producer
(CreateTime) — and so which clock the ts_in_future guard can trust (decision 0003)."""
from __future__ import annotations

import logging
import time

from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaException
from confluent_kafka.admin import ConfigResource

from streams.clients import admin
from streams.settings import Settings

log = logging.getLogger(__name__)

LOG_APPEND_TIME = "LogAppendTime"


def timestamp_type(settings: Settings, timeout: float = 10.0) -> str | None:
    """The interactions topic's `message.timestamp.type` as the broker reports it (None: no answer)."""
    resource = ConfigResource(ConfigResource.Type.TOPIC, settings.interactions_topic)
    client = admin(settings)  # referenced until the answer is in: a collected client drops it
    try:
        configs = client.describe_configs([resource], request_timeout=timeout)[resource].result(timeout)
    except (KafkaException, TimeoutError) as e:
        log.debug("describe configs of %s: %s", settings.interactions_topic, e)
        return None
    entry = configs.get("message.timestamp.type")
    return entry.value if entry is not None else "CreateTime"  # Kafka's default; the embedded broker lists none


class RecordClock:
    """Gives the ts_in_future guard the wall clock only for producer-stamped records: a broker
    stamp cannot be set to 2099 by the producer, and checking against it keeps replays exact."""

    def __init__(self, settings: Settings):
        self.topic = settings.interactions_topic
        self.configured = timestamp_type(settings)
        self._warned_ignored = False
        if self.configured is not None and self.configured != LOG_APPEND_TIME:
            log.warning("topic %s has message.timestamp.type=%s: producers set its record timestamps, so an "
                        "event is also refused when its ts is ahead of this worker's clock (replays of such "
                        "refusals can differ); set message.timestamp.type=%s on the topic to let the broker "
                        "stamp them", self.topic, self.configured, LOG_APPEND_TIME)

    def now_ms(self, ts_type: int) -> int | None:
        """The wall clock in ms for a producer-stamped record, None for a broker-stamped one."""
        if ts_type != TIMESTAMP_CREATE_TIME:
            return None
        if self.configured == LOG_APPEND_TIME and not self._warned_ignored:
            self._warned_ignored = True  # the embedded broker (Tansu) stores the setting, stamps nothing
            log.warning("topic %s is configured with message.timestamp.type=%s but the broker delivers "
                        "producer timestamps: guarding event times with this worker's clock", self.topic,
                        LOG_APPEND_TIME)
        return int(time.time() * 1000)
