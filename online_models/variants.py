"""Stable A/B assignment: a user's variant depends only on their id and the configured split."""
from __future__ import annotations

import hashlib

from online_models.config import Variant


def bucket(user_id: str) -> float:
    """A uniform number in [0, 1) fixed for this user id (not Python's salted hash)."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign(user_id: str, variants: tuple[Variant, ...]) -> Variant:
    if len(variants) == 1:  # no split: no hash per call
        return variants[0]
    total = sum(v.weight for v in variants)
    point = bucket(user_id) * total
    acc = 0.0
    for v in variants:
        acc += v.weight
        if point < acc:
            return v
    return variants[-1]
