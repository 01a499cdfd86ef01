"""Re-key everything stored under an older key: encrypted values and identity hashes.

After ``russak key rotate`` puts a new key first in the key file, old values still
decrypt and old hashes still match (every key does both), but they were written
under the old key, so whoever has that key can still read them: a token decrypts,
and a keyed hash of an identity number is reversed in seconds by hashing the few
hundred candidates of one birth date. ``reencrypt`` closes that:

- every column of an encrypted type, and every ``gateway_meta`` value that is a token
  (the key check), is rewritten under the newest key;
- every ``persons.national_id_hash`` is recomputed from the decrypted number under
  the newest key; a hash whose number is gone cannot be recomputed and is cleared.

Afterwards the database needs only the first key, and the old key opens nothing in
it (it still opens backups taken before; see docs/keys-and-logs.md).

Crash-safe and restartable: it works in batches by primary key, each batch its own
transaction, and skips whatever is already under the newest key, so a second run
after a crash finishes the job. It may run while the daemon runs: each row is
rewritten only if it still holds the value that was read (a conditional UPDATE),
so a concurrent change is never overwritten with an older one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import LargeBinary, String, Table, column, select, table, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import TableClause

from gateway.models import Base, GatewayMeta, Person
from gateway.privacy import Cipher, DecryptionError, EncryptedBytes, EncryptedText

log = logging.getLogger(__name__)

BATCH = 500

# (table, primary key, encrypted column, the keyed-hash column computed from it)
HASHED = [(Person.__tablename__, "id", "national_id", "national_id_hash")]


class Store(Protocol):
    """What re-keying needs of the gateway: its cipher and its transactions.

    A protocol rather than the ``Gateway`` class, so this module stays low in the
    layering (it must not import the wiring that calls it).
    """

    @property
    def cipher(self) -> Cipher: ...

    def session(self) -> AbstractContextManager[Session]: ...


@dataclass
class Rekeyed:
    """What one run rewrote; all zero when a previous run already finished."""

    tokens: int = 0
    hashes: int = 0
    cleared_hashes: int = 0

    @property
    def total(self) -> int:
        return self.tokens + self.hashes + self.cleared_hashes


def encrypted_columns() -> list[tuple[Table, str, str]]:
    """(table, column, primary key column) for every encrypted column in the schema."""
    found = []
    for mapped in Base.metadata.sorted_tables:
        for col in mapped.columns:
            if isinstance(col.type, EncryptedText | EncryptedBytes):
                (key,) = mapped.primary_key.columns  # tables with personal data have one id
                found.append((mapped, col.name, key.name))
    return found


Work = Callable[[Session, Sequence[Any]], int]


def _in_batches(
    store: Store, raw: TableClause, key: str, columns: Sequence[str], batch: int, work: Work
) -> int:
    """Hand ``work`` the rows with ``columns[0]`` set, in primary-key order, a batch at a time.

    Each batch is one transaction, committed before the next is read, so a crash loses
    at most the batch in hand; returns the sum of what ``work`` reports.
    """
    done = 0
    after: object = None
    while True:
        with store.session() as session:
            query = select(raw.c[key], *(raw.c[name] for name in columns)).where(
                raw.c[columns[0]].is_not(None)
            )
            if after is not None:
                query = query.where(raw.c[key] > after)
            rows = session.execute(query.order_by(raw.c[key]).limit(batch)).all()
            done += work(session, rows)
        if len(rows) < batch:
            return done
        after = rows[-1][0]


def _reencrypt_column(store: Store, mapped: Table, name: str, key: str, batch: int) -> int:
    raw = table(mapped.name, column(key), column(name, LargeBinary))  # tokens as stored

    def work(session: Session, rows: Sequence[Any]) -> int:
        changed = 0
        for ident, stored in rows:
            token = bytes(stored)
            if store.cipher.is_current(token):
                continue
            try:
                fresh = store.cipher.rotate(token)
            except DecryptionError as exc:
                raise DecryptionError(f"{mapped.name}.{name} of row {ident}: {exc}") from None
            session.execute(
                update(raw).where(raw.c[key] == ident, raw.c[name] == stored).values({name: fresh})
            )
            changed += 1
        return changed

    return _in_batches(store, raw, key, [name], batch, work)


def _reencrypt_meta(store: Store) -> int:
    """Installation facts that are tokens (the key check) are re-keyed like data.

    Without this, removing the old keys from the file would make the next start
    refuse the key file as foreign.
    """
    changed = 0
    with store.session() as session:
        for row in session.scalars(select(GatewayMeta)):
            token = bytes(row.value)
            try:
                store.cipher.decrypt(token)
            except DecryptionError:
                continue  # not a token of ours: plain installation data
            if not store.cipher.is_current(token):
                row.value = store.cipher.rotate(token)
                changed += 1
    return changed


def _rehash(store: Store, name: str, key: str, source: str, target: str, batch: int) -> tuple[int, int]:
    """Recompute ``target`` from the decrypted ``source`` under the newest key."""
    raw = table(name, column(key), column(source, LargeBinary), column(target, String))

    def work(session: Session, rows: Sequence[Any]) -> int:
        changed = 0
        for ident, stored, old_hash in rows:
            try:
                fresh = store.cipher.keyed_hash(store.cipher.decrypt_text(bytes(stored)))
            except DecryptionError as exc:
                raise DecryptionError(f"{name}.{source} of row {ident}: {exc}") from None
            if fresh == old_hash:
                continue
            session.execute(
                update(raw)
                .where(raw.c[key] == ident, raw.c[source] == stored, raw.c[target] == old_hash)
                .values({target: fresh})
            )
            changed += 1
        return changed

    changed = _in_batches(store, raw, key, [source, target], batch, work)
    with store.session() as session:
        # A hash whose number is gone cannot be re-keyed, and under the old key it still
        # gives the number away to a search of one birth date: it goes.
        orphans = session.execute(
            update(raw).where(raw.c[source].is_(None), raw.c[target].is_not(None)).values({target: None})
        )
        cleared = int(getattr(orphans, "rowcount", 0) or 0)
    if cleared:
        log.warning("cleared %d %s.%s value(s) without a %s", cleared, name, target, source)
    return changed, cleared


def rekey(store: Store, *, batch: int = BATCH) -> Rekeyed:
    """Rewrite every token and identity hash under the newest key; see the module doc."""
    report = Rekeyed()
    for mapped, name, key in encrypted_columns():
        count = _reencrypt_column(store, mapped, name, key, batch)
        report.tokens += count
        log.info("re-encrypted %s.%s: %d value(s) rewritten", mapped.name, name, count)
    report.tokens += _reencrypt_meta(store)
    for name, key, source, target in HASHED:
        hashes, cleared = _rehash(store, name, key, source, target, batch)
        report.hashes += hashes
        report.cleared_hashes += cleared
        log.info("re-keyed %s.%s: %d hash(es) recomputed", name, target, hashes)
    return report


def reencrypt(store: Store) -> int:
    """``rekey`` for the CLI: how many stored values (tokens and hashes) were rewritten."""
    return rekey(store).total
