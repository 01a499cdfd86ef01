"""Re-encrypt every stored personal field under the newest key.

After ``russak key rotate`` puts a new key first in the key file, old values still
decrypt (every key decrypts) but were written under the old key. This walks every
column of an encrypted type and rewrites each value under the newest key, one table
at a time in batches, so the old keys (all but the first and the last, which derives
the identity hash) can then be removed from the file.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import LargeBinary, Table, column, select, table, update

from gateway.models import Base
from gateway.privacy import EncryptedBytes, EncryptedText

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)

BATCH = 500


def encrypted_columns() -> list[tuple[Table, str, str]]:
    """(table, column, primary key column) for every encrypted column in the schema."""
    found = []
    for mapped in Base.metadata.sorted_tables:
        for col in mapped.columns:
            if isinstance(col.type, (EncryptedText, EncryptedBytes)):
                (key,) = mapped.primary_key.columns  # tables with personal data have one id
                found.append((mapped, col.name, key.name))
    return found


def reencrypt(gw: Gateway) -> int:
    """Rewrite every encrypted value under the newest key; returns how many changed."""
    changed = 0
    for mapped, name, key in encrypted_columns():
        raw = table(mapped.name, column(key), column(name, LargeBinary))  # tokens as stored
        after: object = None
        while True:
            with gw.session() as session:
                query = select(raw.c[key], raw.c[name]).where(raw.c[name].is_not(None))
                if after is not None:
                    query = query.where(raw.c[key] > after)
                rows = session.execute(query.order_by(raw.c[key]).limit(BATCH)).all()
                for ident, token in rows:
                    session.execute(
                        update(raw).where(raw.c[key] == ident).values({name: gw.cipher.rotate(bytes(token))})
                    )
            changed += len(rows)
            if len(rows) < BATCH:
                break
            after = rows[-1][0]
        log.info("re-encrypted %s.%s", mapped.name, name)
    return changed
