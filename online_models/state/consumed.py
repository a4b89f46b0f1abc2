"""What a user consumed before their recent window: a fixed-size Bloom filter of item ids.

A user's state keeps their last `MAX_RECENT` items exactly; the items that leave that window (and
the skip list) go into this filter, so "has this user had this item before?" can be answered for
every item they ever touched, in bounded space (`BITS` / 8 bytes, only for users past the window).
A filter answers "yes" for an item never added with a small probability (0.25 % at 200 items in it,
1.6 % at 400, 5 % at 650, 14 % at 1,000); it never forgets one that was added. It is used only to
keep consumed items out of the lists of users who do not come back to things (docs/decisions/0019):
a false "yes" costs that user one candidate, filled from further down.

Positions are a function of the item id alone (blake2b, unsalted), so replays give the same bits.
"""
from __future__ import annotations

import base64
import functools
import hashlib
from typing import Callable, Iterable

BITS = 4096
HASHES = 3
EMPTY = ""  # no filter yet: the user never had an item leave their recent window


@functools.lru_cache(maxsize=1 << 16)  # the same items come back in every list
def _positions(item: str) -> tuple[int, ...]:
    digest = hashlib.blake2b(item.encode(), digest_size=8).digest()
    a = int.from_bytes(digest[:4], "big")
    b = int.from_bytes(digest[4:], "big") | 1  # odd: the HASHES positions differ
    return tuple((a + i * b) % BITS for i in range(HASHES))


def add(encoded: str, items: Iterable[str]) -> str:
    """The filter `encoded` (base64 text, as in the state row) with `items` added."""
    bits = bytearray(base64.b64decode(encoded)) if encoded else bytearray(BITS // 8)
    for item in items:
        for p in _positions(item):
            bits[p >> 3] |= 1 << (p & 7)
    return base64.b64encode(bytes(bits)).decode()


def holds(encoded: str) -> Callable[[str], bool]:
    """A membership test for the filter `encoded` (always False for an empty one)."""
    if not encoded:
        return lambda item: False
    bits = base64.b64decode(encoded)

    def contains(item: str) -> bool:
        return all(bits[p >> 3] >> (p & 7) & 1 for p in _positions(item))
    return contains


def fill(encoded: str) -> float:
    """The share of bits set (0 for an empty filter): how full the filter is."""
    if not encoded:
        return 0.0
    return sum(bin(b).count("1") for b in base64.b64decode(encoded)) / BITS
