"""What `reco serve` checks before it acts on a request: a user id the engine would accept, the
bearer token of the write endpoints and their rate."""
from __future__ import annotations

import hmac
import threading
import time

from streams.worker.decode import Rejected, decode_forget


def invalid_user_id(user_id: str, forget_request) -> str | None:
    """Why the worker would refuse a forget request for `user_id` (the forget-user schema), or
    None. The same decoder as the control agent's, so the two cannot disagree."""
    try:
        request = decode_forget(user_id.encode(), forget_request(user_id))
    except (UnicodeEncodeError, TypeError):  # lone surrogates (orjson's error is a TypeError)
        return "user_id is not valid UTF-8"
    return request.reason if isinstance(request, Rejected) else None


def authorized(header: str | None, token: str | None) -> bool:
    """Without a token configured, every request is; with one, `Authorization: Bearer <token>`
    must carry it (compared in constant time)."""
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class RateLimit:
    """A token bucket: `rate` requests per second on average, bursts of up to `rate`."""

    def __init__(self, rate: float):
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self._tokens = self.capacity
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True

    def retry_after_s(self) -> int:
        return max(1, round(1 / self.rate))
