"""Requests about one user on the control topic (schemas/user-control.v1.json): forget, opt out
of profiling, opt in again. `reco serve` forwards each as a marker on `interactions` (header
`reco.control: <action>`), so the workers apply it in order with the user's events."""
from __future__ import annotations

import time

import orjson

from streams.worker.decode import Rejected, decode_control

ACTIONS = {"forget": "forget_user", "opt-out": "opt_out", "opt-in": "opt_in"}  # command → action


def control_request(user_id: str, action: str, requested_at_ms: int | None = None) -> bytes:
    """A control-topic value; `action` ∈ forget_user / opt_out / opt_in."""
    return orjson.dumps({"user_id": user_id, "action": action,
                         "requested_at": requested_at_ms if requested_at_ms is not None
                         else int(time.time() * 1000)})


def request_problem(user_id: str, action: str) -> str | None:
    """Why the workers would refuse this request (the same decoder as theirs), or None."""
    try:
        decoded = decode_control(user_id.encode(), control_request(user_id, action))
    except (UnicodeEncodeError, TypeError):  # lone surrogates (orjson's error is a TypeError)
        return "user_id is not valid UTF-8"
    return decoded.reason if isinstance(decoded, Rejected) else None
