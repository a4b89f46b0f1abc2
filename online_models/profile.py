"""A person's own profile (the right of access): everything the engine holds about one user, as
a plain JSON-able dict and as lines a person can read. `reco explain` and `GET
/users/{user_id}/profile/` on `reco serve` both show it (streams/profile.py gathers the rows:
from the worker's stores or from the state changelog); nothing here reads a store or a topic.

What is held about a user is their state row (online_models/state/user_state.py; every field of it is
shown, `FIELDS` says where), the opt-out marker, and their current list on `recommendations`.
The A/B variant is not held: it is a hash of the id, shown because it shapes the list.
"""
from __future__ import annotations

from datetime import datetime, timezone

from online_models.state import consumed
from online_models.state.user_state import UserState

# What a person did, in words (the event types of interaction.v1).
ACTIONS = {"view": "viewed", "click": "clicked", "add_to_cart": "added to cart", "purchase": "bought",
           "like": "liked", "dislike": "disliked", "skip": "skipped"}

# Where each UserState field appears in a profile: every field is shown (tested).
FIELDS = {"recent": "recent", "session_id": "session", "session_items": "session", "purchased": "purchased",
          "skipped": "skipped", "counts": "event_counts", "taste": "taste_categories/taste_tags",
          "event_ids": "recent_event_ids", "last_ts": "last_event_at", "last_event_id": "last_event_id",
          "last_context": "last_context", "shown": "last_list_shown", "factors": "taste_vector",
          "returns": "came_back", "older": "older_items"}

NOTHING_HELD = "nothing: no profile, no opt-out, no current list"


def iso(ts_ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC (`2023-11-14T22:13:20.000Z`)."""
    return datetime.fromtimestamp(ts_ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def action(event_type: str) -> str:
    return ACTIONS.get(event_type, event_type)


def state_profile(partition: int, s: UserState) -> dict:
    """One state row (one partition's shard of the user), field by field."""
    taste = sorted(s.taste.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "partition": partition,
        "last_event_at": iso(s.last_ts) if s.last_ts else None,
        "last_event_id": s.last_event_id,
        "recent": [{"item_id": item, "type": kind, "action": action(kind), "ts": ts, "at": iso(ts)}
                   for item, ts, kind in reversed(s.recent)],  # newest first
        "event_counts": dict(s.counts),
        "session": {"id": s.session_id, "implicit": s.session_id.startswith("implicit-"),
                    "items": list(s.session_items)},
        "purchased": list(s.purchased),
        "skipped": [{"item_id": item, "ts": ts, "at": iso(ts)}
                    for item, ts in sorted(s.skipped.items(), key=lambda kv: (-kv[1], kv[0]))],
        "taste_categories": [{"category": k, "affinity": v} for k, v in taste if not k.startswith("#")],
        "taste_tags": [{"tag": k[1:], "affinity": v} for k, v in taste if k.startswith("#")],
        "last_context": dict(s.last_context),
        "taste_vector": list(s.factors),
        "last_list_shown": list(s.shown),
        "recent_event_ids": list(s.event_ids),
        "came_back": s.returns,
        # the items that left `recent` and the skip list: a Bloom filter, which can test an id but not list them
        "older_items": {"filter": s.older, "bits": consumed.BITS, "share_set": round(consumed.fill(s.older), 4)}
        if s.older else None,
    }


def profile(user_id: str, states: dict[int, UserState], opted_out: bool, variant: str,
            recommendation: dict | None, pseudonym: str | None = None) -> dict:
    """Everything held about `user_id`: `states` per partition (a user's events normally all go
    to one), whether they opted out, their current list as published (None: none, or deleted)
    and the pseudonym their rows are keyed by (None: by the id itself)."""
    return {
        "user_id": user_id,
        "held": bool(states) or opted_out or recommendation is not None,
        "pseudonym": pseudonym,
        "opted_out": opted_out,
        "variant": variant,
        "profiles": [state_profile(p, s) for p, s in sorted(states.items())],
        "recommendations": recommendation,
    }


def _affinities(entries: list[dict], name: str) -> str:
    return ", ".join(f"{e[name]} ({e['affinity']:+.2f})" for e in entries)


def _items(ids: list[str], limit: int = 20) -> str:
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def lines(p: dict) -> list[str]:
    """The profile `profile()` built, in words."""
    out = [f"What the engine holds about {p['user_id']}:"]
    if not p["held"]:
        out.append(f"  {NOTHING_HELD} (never seen, forgotten, or deleted after the retention period).")
        return out
    if p["pseudonym"]:
        out.append(f"  Stored under a pseudonym (a keyed hash of the id): {p['pseudonym']}")
    if p["opted_out"]:
        out.append("  Opted out of profiling: no profile is kept; lists are not personalised.")
    elif not p["profiles"]:
        out.append("  No profile.")
    for prof in p["profiles"]:
        out += _profile_lines(prof, len(p["profiles"]) > 1)
    if not p["opted_out"]:
        out.append("  Not opted out of profiling.")
    out.append(f"  A/B variant: {p['variant']} (from a hash of the id, not stored)")
    rec = p["recommendations"]
    if rec is None:
        out.append("  Current list: none")
        return out
    personal = "" if rec.get("personalized", True) else ", not personalised"
    n = len(rec["items"])
    out.append(f"  Current list ({n} item{'' if n == 1 else 's'}{personal}, as of the event at {iso(rec['updated_at'])}):")
    for n, item in enumerate(rec["items"], 1):
        out.append(f"    {n:>2}. {item['item_id']} — {item['reason']}")
    return out


def _profile_lines(prof: dict, several: bool) -> list[str]:
    where = f" on partition {prof['partition']}" if several else ""
    last = prof["last_event_at"] or "unknown"
    out = [f"  Profile{where} (last activity {last}):"]
    if prof["recent"]:
        out.append("    Recent activity, newest first:")
        out += [f"      {r['at']}  {r['action']} {r['item_id']}" for r in prof["recent"]]
    counts = sorted(prof["event_counts"].items(), key=lambda kv: (-kv[1], kv[0]))
    if counts:
        out.append("    Events counted: " + ", ".join(f"{n} {action(t)}" for t, n in counts))
    session = prof["session"]
    if session["id"]:
        name = "started automatically (no session id was sent)" if session["implicit"] else session["id"]
        out.append(f"    Current session: {name}; items: {_items(session['items']) or 'none'}")
    if prof["purchased"]:
        out.append(f"    Bought: {_items(prof['purchased'])}")
    if prof["skipped"]:
        out.append("    Skipped or disliked (kept out of your lists for a while): "
                   + ", ".join(f"{s['item_id']} ({s['at']})" for s in prof["skipped"]))
    if prof["taste_categories"]:
        out.append(f"    Taste categories, strongest first: {_affinities(prof['taste_categories'], 'category')}")
    if prof["taste_tags"]:
        out.append(f"    Taste tags, strongest first: {_affinities(prof['taste_tags'], 'tag')}")
    if prof["last_context"]:
        out.append("    Last seen on: " + ", ".join(f"{k} {v}" for k, v in sorted(prof["last_context"].items())))
    if prof["taste_vector"]:
        out.append(f"    A learned taste vector of {len(prof['taste_vector'])} numbers (matrix factorisation)")
    if prof["last_list_shown"]:
        out.append(f"    Last list shown: {_items(prof['last_list_shown'])}")
    if prof["came_back"]:
        n = prof["came_back"]
        out.append(f"    Came back {n} time{'' if n == 1 else 's'} to an item just had")
    if prof["older_items"]:
        out.append(f"    Earlier items, as a filter of {prof['older_items']['bits']} bits (it can tell whether you had an"
                   " item, not list them): kept out of your lists if you rarely come back to things")
    if prof["recent_event_ids"]:
        out.append(f"    {len(prof['recent_event_ids'])} recent event ids, kept to recognise an event sent twice")
    return out
