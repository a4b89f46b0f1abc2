"""Pseudonymised state: what the store keeps in place of a user id.

With a key, a user's rows are keyed by a keyed hash of their id (HMAC-SHA256, 32 hex chars):
nobody who reads the state directory or the changelog learns the id without the key, while the
worker, which has the id from each event, finds the row again. Where the real id has to come
back out of the state (retention must tombstone the user's list, keyed by the real id), it is
*sealed*: AES-SIV with a key derived from the same secret. AES-SIV is deterministic (same id,
same bytes), which keeps equal input giving byte-equal state.

Without a key every function is the identity, so a store written without one is unchanged.
"""
from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives.ciphers.aead import AESSIV


class Pseudonyms:
    def __init__(self, secret: str | None = None):
        # Separate derived keys: the hash, the seal and the fingerprint never share a key.
        self._hash_key = self._derive(secret, b"reco-stream pseudonym") if secret else None
        self._siv = AESSIV(self._derive(secret, b"reco-stream seal", hashlib.sha512)) if secret else None
        self.fingerprint = self._derive(secret, b"reco-stream fingerprint").hex()[:16] if secret else None

    @staticmethod
    def _derive(secret: str, purpose: bytes, digest=hashlib.sha256) -> bytes:
        return hmac.new(secret.encode(), purpose, digest).digest()

    @property
    def keyed(self) -> bool:
        return self._hash_key is not None

    def pseudonym(self, user_id: str) -> str:
        """What the store keys the user's rows by."""
        if self._hash_key is None:
            return user_id
        return hmac.new(self._hash_key, user_id.encode(), hashlib.sha256).hexdigest()[:32]

    def seal(self, user_id: str) -> bytes:
        if self._siv is None:
            return user_id.encode()
        return self._siv.encrypt(user_id.encode(), None)

    def unseal(self, sealed: bytes) -> str:
        """The id `seal` sealed; raises ValueError for bytes sealed with another key."""
        if self._siv is None:
            return sealed.decode()
        try:
            return self._siv.decrypt(sealed, None).decode()
        except Exception as e:  # cryptography's InvalidTag: another key (or no key) sealed it
            raise ValueError("sealed with another pseudonymisation key") from e

    def __repr__(self) -> str:  # the secret never appears in a repr or a log line
        return f"Pseudonyms(keyed={self.keyed})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pseudonyms) and other.fingerprint == self.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)


NONE = Pseudonyms()
