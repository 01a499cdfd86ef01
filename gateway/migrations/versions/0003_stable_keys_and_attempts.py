"""Stable identities that survive a backup and restore, mail dedupe, intake attempts,
close reasons from a fixed list.

- ``cases.uid``: a UUID per case. Outbound keys (alerts, reminders) are built from
  it instead of the row id, which a restored database hands out again.
- ``inbound_messages.dedupe_key``: the identity of a mail (its Message-ID, or a
  fingerprint of what a person wrote), unique, so the same staff command seen
  twice (an extra Received: header, other line endings, another channel) takes
  effect once.
- ``intake_attempts``: every message's attempt is recorded before it is processed,
  so one that keeps killing the process is quarantined instead of looping.
- ``cases.close_comment`` (encrypted): ``close_reason`` becomes a code from a fixed
  list. Earlier free-text reasons (which could hold an identity number or a test
  result, in clear) become "annet" and their text is dropped, here and in the audit.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 21:40:00
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CLOSE_REASONS = ("flyttet", "tilbakekalt", "provetid_ute", "annet")  # gateway.domain.closing, frozen here


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("uid", sa.String(length=36), nullable=True))
    cases = sa.table(
        "cases",
        sa.column("id", sa.Integer),
        sa.column("uid", sa.String),
        sa.column("close_reason", sa.String),
    )
    connection = op.get_bind()
    for (case_id,) in connection.execute(sa.select(cases.c.id)).all():
        connection.execute(sa.update(cases).where(cases.c.id == case_id).values(uid=str(uuid.uuid4())))
    with op.batch_alter_table("cases") as batch:
        batch.alter_column("uid", existing_type=sa.String(length=36), nullable=False)
        batch.create_unique_constraint(op.f("uq_cases_uid"), ["uid"])

    with op.batch_alter_table("inbound_messages") as batch:
        batch.add_column(sa.Column("dedupe_key", sa.String(length=64), nullable=True))
        batch.create_unique_constraint(op.f("uq_inbound_messages_dedupe_key"), ["dedupe_key"])

    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("close_comment", sa.LargeBinary(), nullable=True))
    withdrawn = cases.c.close_reason == "tilbakekalt av påtalemyndigheten"
    connection.execute(sa.update(cases).where(withdrawn).values(close_reason="tilbakekalt"))
    free_text = cases.c.close_reason.is_not(None) & cases.c.close_reason.not_in(CLOSE_REASONS)
    connection.execute(sa.update(cases).where(free_text).values(close_reason="annet"))
    audit = sa.table("audit", sa.column("action", sa.String), sa.column("detail", sa.String))
    connection.execute(sa.update(audit).where(audit.c.action == "closed").values(detail=None))

    op.create_table(
        "intake_attempts",
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=300), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", "external_id", name=op.f("pk_intake_attempts")),
    )


def downgrade() -> None:
    op.drop_table("intake_attempts")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("close_comment")
    with op.batch_alter_table("inbound_messages") as batch:
        batch.drop_constraint(op.f("uq_inbound_messages_dedupe_key"), type_="unique")
        batch.drop_column("dedupe_key")
    with op.batch_alter_table("cases") as batch:
        batch.drop_constraint(op.f("uq_cases_uid"), type_="unique")
        batch.drop_column("uid")
