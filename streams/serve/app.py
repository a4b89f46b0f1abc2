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
`POST /users/{user_id}/opt-out` and `/opt-in` (or `reco opt-out` / `reco opt-in`) travel the same
way (schemas/user-control.v1.json; the marker header is the request's action).

A person's own profile: `GET /users/{user_id}/profile/` shows what the engine holds about them
(streams/profile.py): their state rows as committed in the state changelog (this process owns
no store), their opt-out marker and the list in the table — the same object as `reco explain
--json`; 404 when nothing is held.

Write endpoints and the profile need `Authorization: Bearer <RECO_SERVE_TOKEN>` when that is set,
are rate-limited, and refuse ids the worker would refuse (serve_guard); `/readyz` says whether the
table is restored and both agents are up. What would end in a traceback or a crash loop — a busy
port, a broker that lost its topics, a table changelog of another partition count — ends in one
line (serve_startup), and faust's own log lines are quietened (serve_logs).

Nothing here is on the per-event path: the serving agent sees one record per published list.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time

import click
import faust
import orjson
from confluent_kafka import KafkaException
from faust.exceptions import ConsistencyError
from faust.web import Request, Response, View

from streams import clients
from streams.control import control_request
from streams.profile import ProfileError, build, from_changelog, to_json
from streams.serve.guard import RateLimit, authorized, invalid_user_id
from streams.serve.health import ServeHealth
from streams.serve.logs import quiet_libraries
from streams.serve.startup import (ServeError, TopicWatch, UnknownTopic, check_port, describe,
                                   serving_partitions, table_changelog)
from streams.serve.worker import ServeWorker
from streams.settings import Settings
from streams.worker.decode import CONTROL_HEADER, Rejected, decode_control, dlq_headers

log = logging.getLogger(__name__)

TABLE = "served-recommendations"


def forget_request(user_id: str, requested_at_ms: int | None = None) -> bytes:
    """A control-topic value (schemas/user-control.v1.json)."""
    return control_request(user_id, "forget_user", requested_at_ms)


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


def build_app(settings: Settings, partitions: int | None = None, health: ServeHealth | None = None,
              watch: TopicWatch | None = None) -> faust.App:
    """`partitions`: of the serving table, = `recommendations`' (see serve_startup)."""
    partitions = partitions or settings.partitions
    health = health or ServeHealth()
    app = faust.App(
        settings.serve_group_id,
        broker=";".join(f"kafka://{hp.strip()}" for hp in settings.bootstrap_servers.split(",")),
        broker_credentials=_broker_credentials(settings),
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=max(settings.session_timeout_ms / 5000, 0.5),
        store="memory://",
        datadir=str(settings.state_dir / "serve"),
        topic_partitions=partitions,
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
    # Its changelog holds user ids: on Apache Kafka a forgotten user's old list is compacted away
    # within RECO_COMPACTION_MAX_LAG_MS, like recommendations (streams/clients.py topic_specs).
    table = app.Table(TABLE, default=None, partitions=partitions, key_type=bytes, value_type=bytes,
                      extra_topic_configs={"max.compaction.lag.ms": str(settings.compaction_max_lag_ms),
                                           "segment.ms": str(settings.segment_ms)})
    token = settings.serve_token.get_secret_value() if settings.serve_token else None
    writes = RateLimit(settings.serve_write_rate)
    profiles = RateLimit(settings.serve_write_rate)  # each reads the state changelog: as scarce as a write

    @app.agent(recommendations)
    async def serve_recommendations(stream):
        """The latest list per user; a tombstone (a forgotten user) removes it."""
        async for event in stream.events():
            try:
                user = event.key
                if event.value is None:
                    if user in table:
                        del table[user]
                else:
                    table[user] = event.value
            except Exception as e:
                health.failed("serve_recommendations", e)
                raise
            health.handled("serve_recommendations")

    metadata = {"admin": None, "count": 0, "at": float("-inf")}

    def admin():
        """One admin client for the process: a burst of requests costs no new clients."""
        if metadata["admin"] is None:
            metadata["admin"] = clients.admin(settings)
        return metadata["admin"]

    async def interaction_partitions() -> int:
        """Re-read at most every 10 s (0: missing, or the broker cannot say)."""
        def count() -> int:
            try:
                found = describe(admin(), settings.interactions_topic, timeout=10)
            except UnknownTopic:
                return 0
            return found.partitions if found is not None else 0
        if time.monotonic() - metadata["at"] > 10 or not metadata["count"]:
            metadata["count"], metadata["at"] = await asyncio.to_thread(count), time.monotonic()
        return metadata["count"]

    @app.agent(control)
    async def apply_control(stream):
        async for event in stream.events():
            try:
                request = decode_control(event.key, event.value)
                if isinstance(request, Rejected):
                    log.warning("bad control request (%s): %s", request.code, request.reason)
                    await dlq.send(key=event.key, value=event.value, headers=dlq_headers(
                        request.code, request.reason, settings.control_topic, event.message.partition,
                        event.message.offset))
                    continue
                partitions = await interaction_partitions()
                while not partitions:  # a request waits for the topic rather than being dropped
                    health.waiting("apply_control", f"{settings.interactions_topic} unknown to the broker; "
                                   "forget requests wait for it")
                    await asyncio.sleep(2)
                    partitions = await interaction_partitions()
                for p in range(partitions):
                    await interactions.send(key=event.key, value=event.value, partition=p,
                                            headers=[(CONTROL_HEADER, request.action.encode())])
            except Exception as e:
                health.failed("apply_control", e)
                raise
            health.handled("apply_control")
            log.info("%s request forwarded to the engine", request.action)

    if watch is not None:
        @app.timer(5.0)
        async def recommendations_topic_unchanged():
            await asyncio.to_thread(watch.check)  # a ServeError here stops the app (see serve())

    def refused(view: View, request: Request, user_id: str, limit: RateLimit = writes,
                what: str = "write") -> Response | None:
        """Why a write (or profile) request is not taken (401, 429, 400), or None. The token is
        checked first, so that without it nothing is learnt about ids or the rate."""
        if not authorized(request.headers.get("Authorization"), token):
            return view.json({"error": "missing or wrong bearer token (Authorization: Bearer <RECO_SERVE_TOKEN>)"},
                             status=401, headers={"WWW-Authenticate": "Bearer"})
        if not limit.allow():
            return view.json({"error": f"too many {what} requests (over {settings.serve_write_rate:g}/s; "
                                       "RECO_SERVE_WRITE_RATE)"},
                             status=429, headers={"Retry-After": str(limit.retry_after_s())})
        return bad_id(view, user_id)

    def bad_id(view: View, user_id: str) -> Response | None:
        reason = invalid_user_id(user_id, forget_request)
        return None if reason is None else view.json({"error": f"invalid user id: {reason}"}, status=400)

    @app.page("/recommendations/{user_id}", name="recommendations-no-slash")  # either spelling works
    @app.page("/recommendations/{user_id}/")
    class Recommendations(View):
        async def get(self, request: Request, user_id: str) -> Response:
            refusal = bad_id(self, user_id)
            return refusal if refusal is not None else await self.routed(request, user_id=user_id)

        @app.table_route(table=table, match_info="user_id")
        async def routed(self, request: Request, user_id: str) -> Response:
            value = table.get(user_id.encode())
            if value is None:
                return self.json({"error": "no recommendations for this user"}, status=404)
            return self.bytes(value, content_type="application/json")

    @app.page("/users/{user_id}/profile", name="profile-no-slash")
    @app.page("/users/{user_id}/profile/", name="profile")
    class Profile(View):
        """What the engine holds about the user (right of access; streams/profile.py): their
        state as committed in the changelog, their opt-out marker and the list this table holds.
        It reveals a person's history: it needs the token as the write endpoints do."""
        async def get(self, request: Request, user_id: str) -> Response:
            refusal = refused(self, request, user_id, profiles, "profile")
            return refusal if refusal is not None else await self.routed(request, user_id=user_id)

        @app.table_route(table=table, match_info="user_id")
        async def routed(self, request: Request, user_id: str) -> Response:
            value = table.get(user_id.encode())
            try:
                states, opted_out = await asyncio.to_thread(from_changelog, settings, user_id,
                                                            settings.serve_profile_timeout_s)
            except (ProfileError, KafkaException) as e:
                log.warning("profile request not answered: %s", e)
                return self.json({"error": f"the profile cannot be read now: {e}"}, status=503)
            found = build(settings, user_id, states, opted_out, orjson.loads(value) if value is not None else None)
            if not found["held"]:
                return self.json({"error": "the engine holds nothing about this user"}, status=404)
            return self.bytes(to_json(found), content_type="application/json")

    async def write_request(view: View, request: Request, user_id: str, action: str) -> Response:
        refusal = refused(view, request, user_id)
        if refusal is not None:
            return refusal
        # 202 only once Kafka has the request: buffered, it would be lost if the process stops.
        try:
            sent = await control.send(key=user_id.encode(), value=control_request(user_id, action))
            await asyncio.wait_for(asyncio.shield(sent), timeout=settings.delivery_timeout_s)
        except Exception as e:  # noqa: BLE001 - any failure to deliver is the same answer
            log.warning("%s request not written to %s: %s", action, settings.control_topic, type(e).__name__)
            return view.json({"error": "the request could not be written to Kafka; try again"}, status=503)
        return view.json({"user_id": user_id, "status": "accepted"}, status=202)

    for path, action in (("forget", "forget_user"), ("opt-out", "opt_out"), ("opt-in", "opt_in")):
        class Write(View):  # POST /users/{user_id}/<path>/: the request, in order with the user's events
            async def post(self, request: Request, user_id: str, action: str = action) -> Response:
                return await write_request(self, request, user_id, action)
        app.page(f"/users/{{user_id}}/{path}", name=f"{path}-no-slash")(Write)
        app.page(f"/users/{{user_id}}/{path}/", name=path)(Write)

    @app.page("/healthz")
    class Healthz(View):
        async def get(self, request: Request) -> Response:
            return self.text("ok\n")

    @app.page("/readyz")
    class Readyz(View):
        async def get(self, request: Request) -> Response:
            why = health.not_ready()
            return self.text("ready\n") if why is None else self.text(f"not ready: {why}\n", status=503)

    return app


def serve(settings: Settings) -> None:
    """Run the faust worker in the foreground until SIGTERM/SIGINT. Whatever stops it for a
    reason it can name ends in one line (click.ClickException), not a traceback."""
    quiet_libraries(settings.log_level, explained=(ConsistencyError, ServeError))
    try:
        check_port(settings.serve_host, settings.serve_port)
        clients.ensure_topics(settings)
        partitions = serving_partitions(settings, TABLE)
        watch = TopicWatch(settings)
    except (ServeError, clients.TopologyError) as e:
        raise click.ClickException(str(e)) from None
    (settings.state_dir / "serve").mkdir(parents=True, exist_ok=True)
    health = ServeHealth()
    app = build_app(settings, partitions, health, watch)
    worker = ServeWorker(app, settings, health, table_changelog(settings, TABLE), loglevel=settings.log_level.lower(), quiet=True, override_logging=False)
    worker.execute_from_commandline()
