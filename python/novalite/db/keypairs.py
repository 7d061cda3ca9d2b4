"""The key pairs' queries: a user's public SSH keys, by name."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from novalite import errors
from novalite.db import models as m
from novalite.db.engine import Transactions
from novalite.db.validation import _name
from novalite.objects.records import KeyPair

# Nova's key pair quota default (key_pairs): how many a user may have.
MAX_KEY_PAIRS = 100


class KeyPairs(Transactions):
    """Key pairs, per user (Nova's: another user's are not visible, whatever the
    project)."""

    def create_key_pair(self, *, user_id: str, name: str, public_key: str, fingerprint: str,
                        type: str = "ssh") -> KeyPair:
        """Store a public key under a name. Conflict if the user has a live key pair
        of that name; QuotaExceeded past MAX_KEY_PAIRS."""
        user_id = _name("user_id", user_id)
        name = _name("name", name)
        _name("public_key", public_key, max_len=16384)

        def work(s: Session) -> KeyPair:
            k = m.KeyPair
            live = list(s.scalars(sa.select(k.name).where(k.user_id == user_id,
                                                          k.deleted_at.is_(None))
                                  .with_for_update()))
            if name in live:
                raise errors.Conflict(f"key pair {name!r} already exists")
            if len(live) >= MAX_KEY_PAIRS:
                raise errors.QuotaExceeded("key_pairs", 1, MAX_KEY_PAIRS, len(live))
            row = m.KeyPair(user_id=user_id, name=name, fingerprint=fingerprint,
                            public_key=public_key, type=type, created_at=self._clock(),
                            deleted_at=None)
            s.add(row)
            s.flush()
            return _key_pair(row)
        return self._write(work)

    def get_key_pair(self, user_id: str, name: str) -> KeyPair:
        def work(s: Session) -> KeyPair:
            row = self._key_pair_row(s, user_id, name)
            return _key_pair(row)
        return self._read(work)

    def list_key_pairs(self, user_id: str) -> list[KeyPair]:
        """A user's live key pairs by name."""
        k = m.KeyPair
        return self._read(lambda s: [_key_pair(r) for r in s.scalars(
            sa.select(k).where(k.user_id == user_id, k.deleted_at.is_(None)).order_by(k.name))])

    def delete_key_pair(self, user_id: str, name: str) -> None:
        """Soft-delete; servers booted with it keep their copy of the key."""
        def work(s: Session) -> None:
            self._key_pair_row(s, user_id, name, lock=True).deleted_at = self._clock()
        self._write(work)

    @staticmethod
    def _key_pair_row(s: Session, user_id: str, name: str, lock: bool = False) -> m.KeyPair:
        k = m.KeyPair
        q = sa.select(k).where(k.user_id == user_id, k.name == name, k.deleted_at.is_(None))
        row = s.scalars(q.with_for_update() if lock else q).one_or_none()
        if row is None:
            raise errors.NotFound(f"key pair {name} not found")
        return row


def _key_pair(r: m.KeyPair) -> KeyPair:
    return KeyPair(name=r.name, user_id=r.user_id, fingerprint=r.fingerprint,
                   public_key=r.public_key, type=r.type, created_at=r.created_at)
