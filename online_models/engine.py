"""One shard of the engine: the state and models of one input partition.

The engine learns from events one at a time, answers "what would this user be shown now",
and hands out everything it changed since the last checkpoint as rows for the partition's
store. Models are per shard, so a user's output depends only on the events of their own
partition — the property that makes crash recovery and rebalancing exact (docs/decisions).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import orjson

from online_models.catalog import Catalog
from online_models.config import Blend, EngineConfig
from online_models.events import Interaction
from online_models.models.content import ContentModel
from online_models.models.context import EventScopes
from online_models.models.covisitation import CoVisitation
from online_models.models.exploration import SourceBandit
from online_models.models.mf import OnlineMF
from online_models.models.trending import Trending
from online_models.ranking.candidates import CandidateSources
from online_models.ranking.ranker import LearnedRanker, prior
from online_models.ranking.recommender import Recommender, Scored
from online_models.ranking.rules import NO_REQUEST, Request
from online_models.state import binrows, rowkeys
from online_models.state.store import (MODEL, OPT_OUT, PSEUDONYM_KEY, RETENTION, RETENTION_CLOCK,
                                       RETENTION_INDEX, USER, PartitionStore, model_key, retention_key,
                                       retention_ts, user_key)
from online_models.state.user_state import UserState
from online_models.variants import assign

MAX_CACHED_USERS = 50_000
OPTED_OUT_ROW = b'{"opted_out":true}'  # constant, so a replay writes the same bytes


def _global_only(ev: Interaction) -> tuple[str, ...]:
    return ("",)  # trending.GLOBAL: "popular this month" is counted over all items, no categories


class StateFormatError(ValueError):
    """A state directory this version cannot read."""


@dataclass(frozen=True, slots=True)
class Learned:
    applied: bool          # False: the event id was already applied (a replay), or the user opted out
    hit: bool | None       # was the item in the user's last published list? None: nothing to check
    opted_out: bool = False  # the user opted out of profiling: no profile learned (see opt_out)


DUPLICATE = Learned(False, None)
OPTED_OUT = Learned(False, None, True)


@dataclass(frozen=True, slots=True)
class Recommendation:
    user_id: str
    items: list[Scored]
    variant: str
    model_version: str
    trigger_event_id: str
    trigger_ts: int
    personalized: bool = True

    def to_dict(self) -> dict:
        d = {
            "user_id": self.user_id,
            "items": [{"item_id": s.item_id, "score": s.score, "reason": s.reason} for s in self.items],
            "variant": self.variant,
            "model_version": self.model_version,
            "updated_at": self.trigger_ts,
        }
        if not self.personalized:  # optional in recommendation.v1: absent means personalised
            d["personalized"] = False
        d["trigger"] = {"event_id": self.trigger_event_id, "ts": self.trigger_ts}
        return d


class Engine:
    def __init__(self, store: PartitionStore, catalog: Catalog, config: EngineConfig | None = None):
        self.config = config or EngineConfig()
        self.store = store
        self.catalog = catalog
        cfg = self.config
        self.trending = Trending(catalog, cfg.trending_half_life_hours, max_items=cfg.trending_max_items,
                                 max_scopes=cfg.trending_max_scopes)
        self.context = Trending(catalog, cfg.context_half_life_hours, top_n=50, name="context",
                                scopes_of=EventScopes(cfg.utc_offset_hours), max_items=cfg.context_max_items,
                                max_scopes=cfg.context_max_scopes)
        self.covisit = CoVisitation(window=cfg.covisit_window, half_life_hours=cfg.covisit_half_life_hours,
                                    max_items=cfg.covisit_max_items)
        # The learned ranker's long horizons: co-visitation that never forgets, popular this month.
        self.covisit_long = CoVisitation(window=cfg.covisit_window, half_life_hours=math.inf,
                                         max_items=cfg.covisit_max_items, name="covisit_long")
        self.popular = Trending(catalog, cfg.popular_half_life_hours, name="popular", scopes_of=_global_only,
                                max_items=cfg.trending_max_items, max_scopes=cfg.trending_max_scopes)
        learned = next((v.blend for v in cfg.variants if v.blend.learned), None)
        self.ranker = LearnedRanker(prior(learned or Blend(), cfg))
        self.mf = OnlineMF(cfg.mf_factors, cfg.mf_learning_rate, cfg.mf_regularization,
                           max_items=cfg.mf_max_items)
        self.content = ContentModel(catalog)
        self.bandit = SourceBandit()
        # Every model sees the user state *before* the event; the ranker also the other models'
        # state before it, so it learns first — and only when some variant ranks with it.
        models = (self.ranker,) if learned is not None else ()
        models += (self.trending, self.context, self.covisit, self.mf, self.content, self.bandit)
        if learned is not None:
            models += (self.covisit_long, self.popular)
        self.models = {m.name: m for m in models}
        self._learners = tuple(self.models.values())
        self._aggregates = tuple(m for m in (self.trending, self.context, self.mf, self.popular)
                                 if m in self._learners)  # what holds no per-user data
        sources = CandidateSources(cfg, catalog, self.trending, self.covisit, self.mf, self.content, self.context,
                                   self.popular, self.covisit_long)
        self.recommender = Recommender(sources, self.bandit, self.ranker)
        self.bandit.offered = self.recommender.offered  # the bandit's feedback: the pools it picks from
        self.ranker.features_of = self.recommender.training_pair  # the ranker's: candidates before the event
        self._users: dict[str, UserState] = {}
        self._dirty_users: set[str] = set()
        self._forgotten: set[str] = set()
        self._formatted: set[str] = set()    # models whose format row is in the store
        # Opted-out users' marker rows, all in memory (opt-outs are few): no store read per event.
        self._opted_out: set[bytes] = {key for key, _ in store.scan(OPT_OUT)}
        self._opt_changes: dict[bytes, bool] = {}  # since the last checkpoint: True = opted out
        self._legacy_keys: list[bytes] = []  # format-1 rows, deleted at the next checkpoint
        self._restore_models()
        self._ids = self.config.pseudonyms
        self._key_row = self._check_pseudonym_key()  # written at the first checkpoint
        self._ttl_ms = self.config.user_ttl_ms
        self._expired: list[str] = []              # ids deleted for retention, whose lists go too
        self._stored_ts: dict[str, int | None] = {}  # per cached user: last_ts as indexed in the store
        self._retention_rows: dict[bytes, bytes | None] = {}  # written at the next checkpoint
        self._clock, self._clock_dirty = self._load_retention()

    # -- the event path -------------------------------------------------------------------
    def learn(self, ev: Interaction) -> Learned:
        """Apply one event to the models and the user's state (idempotent by event id)."""
        if self._ttl_ms and ev.ts > self._clock:  # retention's clock: the partition's newest event
            self._clock, self._clock_dirty = ev.ts, True
        if self.opted_out(ev.user_id):  # no profile; at most the anonymous aggregates learn
            if self.config.opted_out_feed_aggregates:
                anonymous = UserState()  # thrown away: nothing of it is kept
                for model in self._aggregates:
                    model.learn_one(ev, anonymous)
            return OPTED_OUT
        user = self.user(ev.user_id)
        if self._ttl_ms and user.last_ts and user.last_ts < self._clock - self._ttl_ms:
            self.forget_user(ev.user_id)  # idle past the TTL: this event starts an empty profile
            user = self.user(ev.user_id)
        if user.has_seen(ev.event_id):
            return DUPLICATE
        # Live prequential check: was this item in the list we last published to the user?
        hit = None if ev.is_negative or not user.shown else ev.item_id in user.shown
        for model in self._learners:  # each sees the user's state before the event
            model.learn_one(ev, user)
        user.apply(ev)
        self._dirty_users.add(ev.user_id)
        if self._ttl_ms and user.last_ts < self._clock - self._ttl_ms:
            self._expire(ev.user_id)  # a late event alone: the models learned it, no profile kept
        return Learned(True, hit)

    def publish(self, user_id: str, k: int | None = None, trigger: Interaction | None = None) -> Recommendation:
        """The user's list as published, remembered so the next event can be scored against it
        (live hit rate). Nothing that learning reads depends on it: publish points follow batch
        boundaries, and learning must be a function of the input alone. `trigger`: the event the
        list answers, which is all an opted-out user's list is built from."""
        if self.opted_out(user_id):
            return self.recommend_anonymous(user_id, trigger, k)  # remembers nothing
        rec = self.recommend(user_id, k)
        user = self.user(user_id)
        user.shown = [s.item_id for s in rec.items]
        self._dirty_users.add(user_id)
        return rec

    def recommend(self, user_id: str, k: int | None = None, request: Request = NO_REQUEST) -> Recommendation:
        """What the user would be shown now. Read-only: never creates or changes any state."""
        if self.opted_out(user_id):
            return self.recommend_anonymous(user_id, None, k, request)
        user = self.peek_user(user_id)
        variant = assign(user_id, self.config.variants)
        items = self.recommender.rank(user, variant.blend, k, user_id, request)
        return Recommendation(user_id, items, variant.name, self.config.model_version,
                              user.last_event_id, user.last_ts)

    def recommend_anonymous(self, user_id: str, trigger: Interaction | None, k: int | None = None,
                            request: Request = NO_REQUEST) -> Recommendation:
        """A non-personalised list for a user who opted out: trending and popular on the
        trigger event's device and at its time of day — read from that event alone."""
        variant = assign(user_id, self.config.variants)  # a stable hash of the id, not a profile
        device = trigger.context.get("device") if trigger is not None else None
        ts = trigger.ts if trigger is not None else 0
        items = self.recommender.rank_anonymous(variant.blend, device, ts, k, request)
        return Recommendation(user_id, items, variant.name, self.config.model_version,
                              trigger.event_id if trigger is not None else "", ts, personalized=False)

    # -- opt-out ----------------------------------------------------------------------------
    def _opt_out_key(self, user_id: str) -> bytes:
        return OPT_OUT + self._row(user_id)[len(USER):]  # follows however the user's key is made

    def opted_out(self, user_id: str) -> bool:
        if not self._opted_out or user_id in self._users:  # a cached profile: not opted out
            return False
        return self._opt_out_key(user_id) in self._opted_out

    def opt_out(self, user_id: str) -> bool:
        """The user objects to profiling: their profile goes as on forget, and a marker row keeps
        every later event from building one, until they opt in. Every shard remembers it, even
        one that never saw the user: their first event may come later. Returns whether this
        shard held a profile of the user (their old list is then to be withdrawn)."""
        known = self.forget_user(user_id)
        key = self._opt_out_key(user_id)
        if key not in self._opted_out:
            self._opted_out.add(key)
            self._opt_changes[key] = True
        return known

    def opt_in(self, user_id: str) -> bool:
        """End an opt-out (the marker row goes); the next event starts an empty profile, as
        none was kept. Returns whether the user had opted out here."""
        key = self._opt_out_key(user_id)
        if key not in self._opted_out:
            return False
        self._opted_out.discard(key)
        self._opt_changes[key] = False
        return True

    # -- user state -----------------------------------------------------------------------
    def user(self, user_id: str) -> UserState:
        """The user's state, loaded into the write-back cache (for learning)."""
        state = self._users.get(user_id)
        if state is None:
            state = self.peek_user(user_id)
            self._users[user_id] = state
            if self._ttl_ms and user_id not in self._stored_ts:
                self._stored_ts[user_id] = (self._stored_last_ts(user_id) if user_id in self._forgotten
                                            else state.last_ts or None)
            self._forgotten.discard(user_id)  # a fresh state row replaces the deleted one
        return state

    def peek_user(self, user_id: str) -> UserState:
        """The user's state without caching it (reads never grow state)."""
        state = self._users.get(user_id)
        if state is not None:
            return state
        if user_id in self._forgotten:  # deleted, not yet checkpointed
            return UserState()
        raw = self.store.get(self._row(user_id))
        return UserState.from_bytes(raw) if raw is not None else UserState()

    def _row(self, user_id: str) -> bytes:
        """The user's row key: by pseudonym when a pseudonymisation key is set."""
        return user_key(self._ids.pseudonym(user_id))

    def forget_user(self, user_id: str) -> bool:
        """Drop everything this shard keeps about the user: their state row, which also holds
        their MF vector and taste profile (models keep no per-user rows; the aggregates their
        events fed — item factors, co-visitation counts, trending — hold no user id).
        Returns whether this shard knew the user; one it did not know costs nothing (the
        marker reaches every partition: no tombstone row for a key no store holds)."""
        known = user_id in self._users or (user_id not in self._forgotten
                                           and self.store.get(self._row(user_id)) is not None)
        self._users.pop(user_id, None)
        self._dirty_users.discard(user_id)
        if known:
            self._forgotten.add(user_id)
        return known

    # -- retention ------------------------------------------------------------------------
    # A user whose last event is more than the TTL older than the partition's newest event (the
    # clock, event time) is deleted as on forget. Deterministic, so replays stay exact: after
    # every batch the state holds no user idle past the TTL at the batch's clock, and the
    # event's own user is checked on every event (before and after it). What is checked per
    # batch is an index of (last_ts, pseudonym) rows, range-scanned from its start up to the
    # cutoff, and the users changed since the last checkpoint (not yet in the index): never
    # every user. The index value is the user's id *sealed* with the pseudonymisation key
    # (AES-SIV, pseudonyms.py): the list to withdraw is keyed by the real id, the store holds
    # it only encrypted.
    def expire_idle(self) -> int:
        """Delete every user idle past the TTL; their ids are then in `take_expired()`."""
        if not self._ttl_ms:
            return 0
        cutoff = self._clock - self._ttl_ms
        before = len(self._expired)
        for key, sealed in self.store.scan(RETENTION_INDEX):
            if retention_ts(key) >= cutoff:
                break
            if not sealed:  # indexed when the TTL was switched on: the real id is unknown here
                self._retention_rows.update(dict.fromkeys([key, user_key(key[len(RETENTION_INDEX) + 8:].decode())]))
                continue
            user_id = self._ids.unseal(sealed)
            state = self._users.get(user_id)
            if user_id in self._forgotten or (state is not None and state.last_ts >= cutoff):
                continue  # already going, or active since the last checkpoint
            self._expire(user_id)
        for user_id in [u for u in self._dirty_users if self._users[u].last_ts < cutoff]:
            self._expire(user_id)
        return len(self._expired) - before

    def take_expired(self) -> list[str]:
        """The users deleted for retention since the last call (their lists are to be withdrawn)."""
        out, self._expired = self._expired, []
        return out

    def _expire(self, user_id: str) -> None:
        if self.forget_user(user_id):
            self._expired.append(user_id)

    def _index(self, rows: dict[bytes, bytes | None], user_id: str, last_ts: int | None) -> None:
        """Move the user's index row to `last_ts` (None: remove it)."""
        old = self._stored_ts[user_id] if user_id in self._stored_ts else self._stored_last_ts(user_id)
        if old != last_ts:
            pseudonym = self._ids.pseudonym(user_id)
            if old is not None:
                rows[retention_key(old, pseudonym)] = None
            if last_ts is not None:
                rows[retention_key(last_ts, pseudonym)] = self._ids.seal(user_id)
        if last_ts is None:
            self._stored_ts.pop(user_id, None)
        else:
            self._stored_ts[user_id] = last_ts

    def _stored_last_ts(self, user_id: str) -> int | None:
        raw = self.store.get(self._row(user_id))
        return UserState.from_bytes(raw).last_ts if raw is not None else None

    def _check_pseudonym_key(self) -> bytes | None:
        """A store keyed with one pseudonymisation key (or none) is refused with another: its
        rows would be unreachable and every user would silently start over, their old rows
        kept. Returns the key's fingerprint row to write, for a store that has none yet."""
        stored = self.store.get(PSEUDONYM_KEY)
        wanted = self._ids.fingerprint
        wipe = "stop the workers and delete the state directories and the changelog topic to rebuild the state"
        if stored is None and wanted is not None:
            if next(self.store.scan(USER), None) is not None:
                raise StateFormatError(f"{self.store.path}: the state is keyed by raw user ids but RECO_PSEUDONYMIZE_KEY "
                                       f"is set: unset it, or {wipe} pseudonymised")
            return wanted.encode()
        if stored is not None and stored.decode() != wanted:
            raise StateFormatError(f"{self.store.path}: the state was pseudonymised with the key of fingerprint "
                                   f"{stored.decode()}, " + ("not this RECO_PSEUDONYMIZE_KEY" if wanted else
                                                            "and RECO_PSEUDONYMIZE_KEY is not set")
                                   + f": set that key again, or {wipe}")
        return None

    def _load_retention(self) -> tuple[int, bool]:
        """The stored clock. A TTL switched on for a store without an index indexes every user
        once, here (at start, not per event); a TTL switched off drops the index (it would go
        stale)."""
        raw = self.store.get(RETENTION_CLOCK)
        if not self._ttl_ms:
            self._retention_rows.update(dict.fromkeys(key for key, _ in self.store.scan(RETENTION)))
            return 0, False
        if raw is not None:
            return int(raw), False
        clock = 0
        for key, value in self.store.scan(USER):
            pseudonym, last_ts = key[len(USER):].decode(), UserState.from_bytes(value).last_ts
            clock = max(clock, last_ts)
            # Without a key the row's id is the user id; with one, it cannot be recovered.
            sealed = b"" if self._ids.keyed else self._ids.seal(pseudonym)
            self._retention_rows[retention_key(last_ts, pseudonym)] = sealed
        return clock, True

    # -- checkpointing --------------------------------------------------------------------
    def pending_rows(self) -> dict[bytes, bytes | None]:
        """Everything changed since the last call, as store rows (None = delete)."""
        rows, self._retention_rows = self._retention_rows, {}  # first: user rows below win
        for uid in self._dirty_users:
            state = self._users[uid]
            rows[self._row(uid)] = state.to_bytes()
            if self._ttl_ms:
                self._index(rows, uid, state.last_ts)
        for uid in self._forgotten:
            rows[self._row(uid)] = None
            if self._ttl_ms:
                self._index(rows, uid, None)
        if self._clock_dirty:
            rows[RETENTION_CLOCK] = str(self._clock).encode()
            self._clock_dirty = False
        if self._key_row is not None:
            rows[PSEUDONYM_KEY], self._key_row = self._key_row, None
        for key, opted_out in self._opt_changes.items():
            rows[key] = OPTED_OUT_ROW if opted_out else None
        self._opt_changes.clear()
        rows.update(dict.fromkeys(self._legacy_keys))  # before the new rows: a new key may equal an old one
        self._legacy_keys = []
        for name, model in self.models.items():
            exported = model.export_dirty()
            for key, value in exported.items():
                rows[model_key(name, key)] = None if value is None else binrows.encode(value)
            if exported and name not in self._formatted:
                rows[model_key(name, rowkeys.FORMAT)] = orjson.dumps(rowkeys.FORMAT_VERSION)
                self._formatted.add(name)
        self._dirty_users.clear()
        self._forgotten.clear()
        if len(self._users) > MAX_CACHED_USERS:
            self._users.clear()
            self._stored_ts.clear()
        return rows

    def checkpoint(self, position: int | None) -> dict[bytes, bytes | None]:
        """Write pending rows and the input position in one batch; returns the rows."""
        rows = self.pending_rows()
        self.store.write(rows, position)
        return rows

    def _restore_models(self) -> None:
        for name, model in self.models.items():
            prefix = MODEL + name.encode() + b"\x00"
            rows = {k[len(prefix):].decode(): binrows.decode(v) for k, v in self.store.scan(prefix)}
            if not rows:
                continue
            version = rows.get(rowkeys.FORMAT)
            if isinstance(version, int):
                del rows[rowkeys.FORMAT]
            else:  # no format row (a format-1 item may be called "#format": its value is no int)
                version = 1
            if version == 1:  # written before keys were encoded (rowkeys.py): read as then, rewrite
                self._legacy_keys += [prefix + k.encode() for k in rows]
                rows = rowkeys.from_legacy(rows, split=model is self.trending or model is self.context)
                model.import_rows(dict(rows))
                getattr(model, "mark_all_dirty", lambda: None)()
            elif version == rowkeys.FORMAT_VERSION:
                self._formatted.add(name)
                model.import_rows(rows)
            elif version == 2:  # JSON where format 3 has binary rows (binrows.py): read, rewrite all
                model.import_rows(rows)
                getattr(model, "mark_all_dirty", lambda: None)()
            else:
                raise StateFormatError(f"{self.store.path}: model {name!r} rows are in format {version}, "
                                       f"this version reads formats 1 to {rowkeys.FORMAT_VERSION}: "
                                       f"run the version that wrote them, or delete the directory to rebuild")

    # -- inspection -----------------------------------------------------------------------
    def users(self) -> Iterator[tuple[str, UserState]]:
        """Every stored user, in key order (call after a checkpoint)."""
        for key, raw in self.store.scan(USER):
            yield key[len(USER):].decode(), UserState.from_bytes(raw)
