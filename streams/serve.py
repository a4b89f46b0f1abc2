"""`reco serve`: the faust-streaming app beside the engine workers — serving and control.

Serving: an agent reads the compacted `recommendations` topic into a faust Table (partitioned
like the topic, restored from its changelog when a partition moves) and
`GET /recommendations/{user_id}` answers from it. With several `reco serve` processes in one
group, faust's table routing forwards the request to the one that owns the user's partition.

Forgetting a user: `POST /users/{user_id}/forget` (or `reco forget USER`) writes a request to the
control topic. An agent validates it (bad requests go to the DLQ) and puts a forget marker —
header `reco.control: forget_user` — on every partition of `interactions`. Each engine worker
meets the marker in order with the user's events, so forgetting is part of the replayable input:
the worker deletes the user's state row (a changelog tombstone follows at its checkpoint) and,
where it knew the user, tombstones their list on `recommendations`, which removes it here too.
Every partition gets a marker because the engine cannot know how producers partitioned the user.

Nothing here is on the per-event path: the serving agent sees one record per published list.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time

import faust
import orjson
from faust.web import Request, Response, View

from . import clients
from .decode import CONTROL_HEADER, FORGET_USER, Rejected, decode_forget, dlq_headers
from .settings import Settings

log = logging.getLogger(__name__)

TABLE = "served-recommendations"


def forget_request(user_id: str, requested_at_ms: int | None = None) -> bytes:
    """A control-topic value (schemas/forget-user.v1.json)."""
    return orjson.dumps({"user_id": user_id, "action": "forget_user",
                         "requested_at": requested_at_ms if requested_at_ms is not None
                         else int(time.time() * 1000)})


def _broker_credentials(settings: Settings):
    """faust (aiokafka) credentials from the same RECO_* settings the librdkafka clients use:
    TLS for SSL and SASL_SSL (CA from `kafka_extra["ssl.ca.location"]` if given, else the
    system's), SASL username/password/mechanism when a mechanism or a SASL protocol is set."""
    protocol = (settings.security_protocol or "PLAINTEXT").upper()
    context = ssl.create_default_context(cafile=settings.kafka_extra.get("ssl.ca.location")) \
        if protocol in ("SSL", "SASL_SSL") else None
    if settings.sasl_mechanism or protocol.startswith("SASL"):
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        return faust.SASLCredentials(username=settings.sasl_username or "", password=password,
                                     mechanism=settings.sasl_mechanism or "PLAIN", ssl_context=context)
    return faust.SSLCredentials(context) if context is not None else None


def build_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.serve_group_id,
        broker=";".join(f"kafka://{hp.strip()}" for hp in settings.bootstrap_servers.split(",")),
        broker_credentials=_broker_credentials(settings),
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=max(settings.session_timeout_ms / 5000, 0.5),
        store="memory://",
        datadir=str(settings.state_dir / "serve"),
        topic_partitions=settings.partitions,
        web_host=settings.serve_host,
        web_port=settings.serve_port,
        canonical_url=f"http://{settings.serve_advertised_host}:{settings.serve_port}",
        autodiscover=False,
    )
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    recommendations = app.topic(settings.recommendations_topic, **raw)
    control = app.topic(settings.control_topic, **raw)
    interactions = app.topic(settings.interactions_topic, **raw)
    dlq = app.topic(settings.dlq_topic, **raw)
    table = app.Table(TABLE, default=None, partitions=settings.partitions, key_type=bytes, value_type=bytes)

    @app.agent(recommendations)
    async def serve_recommendations(stream):
        """The latest list per user; a tombstone (a forgotten user) removes it."""
        async for event in stream.events():
            user = event.key
            if event.value is None:
                if user in table:
                    del table[user]
            else:
                table[user] = event.value

    async def interaction_partitions() -> int:
        def count() -> int:
            meta = clients.admin(settings).list_topics(settings.interactions_topic, timeout=10)
            return len(meta.topics[settings.interactions_topic].partitions)
        return await asyncio.to_thread(count)

    @app.agent(control)
    async def apply_control(stream):
        async for event in stream.events():
            request = decode_forget(event.key, event.value)
            if isinstance(request, Rejected):
                log.warning("bad control request (%s): %s", request.code, request.reason)
                await dlq.send(key=event.key, value=event.value, headers=dlq_headers(
                    request.code, request.reason, settings.control_topic, event.message.partition,
                    event.message.offset))
                continue
            for p in range(await interaction_partitions()):
                await interactions.send(key=event.key, value=event.value, partition=p,
                                        headers=[(CONTROL_HEADER, FORGET_USER)])
            log.info("forget-user request forwarded to the engine")

    @app.page("/recommendations/{user_id}", name="recommendations-no-slash")  # either spelling works
    @app.page("/recommendations/{user_id}/")
    class Recommendations(View):
        @app.table_route(table=table, match_info="user_id")
        async def get(self, request: Request, user_id: str) -> Response:
            value = table.get(user_id.encode())
            if value is None:
                return self.json({"error": "no recommendations for this user"}, status=404)
            return self.bytes(value, content_type="application/json")

    @app.page("/users/{user_id}/forget", name="forget-no-slash")
    @app.page("/users/{user_id}/forget/")
    class Forget(View):
        async def post(self, request: Request, user_id: str) -> Response:
            await control.send(key=user_id.encode(), value=forget_request(user_id))
            return self.json({"user_id": user_id, "status": "accepted"}, status=202)

    return app


def serve(settings: Settings) -> None:
    """Run the faust worker in the foreground until SIGTERM/SIGINT."""
    clients.ensure_topics(settings)
    (settings.state_dir / "serve").mkdir(parents=True, exist_ok=True)
    app = build_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()
