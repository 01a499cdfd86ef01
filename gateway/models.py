"""The database schema (SQLAlchemy 2, typed).

One source of truth for everything the gateway knows. Personal fields use the
encrypted column types from ``gateway.privacy``; the identity number is also kept as
a keyed hash so two orders naming the same person can be matched without
decrypting. There is deliberately no column anywhere for a drug-test result, a
clinical note or a diagnosis: what has no place cannot be stored.

The schema is created by Alembic migrations (``gateway/migrations``), never by
``create_all`` in production code.

Unlike the rest of the package this module does not postpone annotations (no
``from __future__ import annotations``): SQLAlchemy then reads each ``Mapped[...]``
as an object instead of evaluating some 170 strings at import, which every command
pays for (about 12 ms here). Only a relationship to a class defined further down is
written as a string.
"""

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from gateway.domain.notices import BreachFact
from gateway.privacy import EncryptedBytes, EncryptedText

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite hands back naive ones otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Unit(Base):
    """Mirror of a configured unit, so cases can reference it and survive renames."""

    __tablename__ = "units"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    org_number: Mapped[str] = mapped_column(String(9))


class Sequence(Base):
    """Counters for readable case numbers (RUS-2026-0001), one row per year."""

    __tablename__ = "sequences"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class Case(Base):
    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(primary_key=True)
    # Stable identity for outbound keys: a restored database reuses row ids.
    uid: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    number: Mapped[str] = mapped_column(String(20), unique=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    status: Mapped[str] = mapped_column(String(24), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    # one of gateway.domain.closing.REASONS; what staff added is the encrypted comment
    close_reason: Mapped[str | None] = mapped_column(String(200))
    close_comment: Mapped[str | None] = mapped_column(EncryptedText)
    # the order: OrdreId of the "ny" (None for a letter until registered)
    order_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    sender_name: Mapped[str | None] = mapped_column(String(200))
    sender_org_number: Mapped[str | None] = mapped_column(String(9))
    reply_type: Mapped[str | None] = mapped_column(String(10))
    reply_address: Mapped[str | None] = mapped_column(String(320))
    kommunenummer: Mapped[str | None] = mapped_column(String(4))
    case_reference: Mapped[str | None] = mapped_column(String(100))
    reaction: Mapped[str | None] = mapped_column(String(40))
    decided_on: Mapped[date | None] = mapped_column(Date)
    condition_end: Mapped[date | None] = mapped_column(Date, index=True)
    attendance_deadline: Mapped[date | None] = mapped_column(Date, index=True)
    first_meeting_target: Mapped[date | None] = mapped_column(Date, index=True)
    minor: Mapped[bool] = mapped_column(Boolean, default=False)
    remark: Mapped[str | None] = mapped_column(EncryptedText)
    # what a letter-order suggested (encrypted JSON), for staff to complete
    suggestions: Mapped[str | None] = mapped_column(EncryptedText)
    # facts the pure state machine works on (gateway.domain.lifecycle.CaseFacts)
    required_attendances: Mapped[int] = mapped_column(Integer, default=1)
    attendances: Mapped[int] = mapped_column(Integer, default=0)
    tests_required: Mapped[int] = mapped_column(Integer, default=0)
    tests_taken: Mapped[int] = mapped_column(Integer, default=0)
    tests_from: Mapped[date | None] = mapped_column(Date)
    tests_to: Mapped[date | None] = mapped_column(Date)
    open_no_shows: Mapped[list[str]] = mapped_column(JSON, default=list)
    open_tests_missed: Mapped[list[str]] = mapped_column(JSON, default=list)
    notice_state: Mapped[str] = mapped_column(String(10), default="none")
    next_meeting_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    unit: Mapped[Unit] = relationship()
    person: Mapped["Person | None"] = relationship(
        back_populates="case", cascade="all, delete-orphan", uselist=False
    )
    meetings: Mapped[list["Meeting"]] = relationship(cascade="all, delete-orphan", order_by="Meeting.id")
    summonses: Mapped[list["Summons"]] = relationship(cascade="all, delete-orphan", order_by="Summons.id")
    tests: Mapped[list["DrugTest"]] = relationship(cascade="all, delete-orphan", order_by="DrugTest.id")
    notices: Mapped[list["Notice"]] = relationship(cascade="all, delete-orphan", order_by="Notice.id")


class Person(Base):
    """The person ordered to attend; every identifying field is encrypted."""

    __tablename__ = "persons"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), unique=True)
    national_id: Mapped[str | None] = mapped_column(EncryptedText)
    national_id_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    first_name: Mapped[str | None] = mapped_column(EncryptedText)
    last_name: Mapped[str | None] = mapped_column(EncryptedText)
    birth_date: Mapped[str | None] = mapped_column(EncryptedText)
    address: Mapped[str | None] = mapped_column(EncryptedText)  # JSON
    phone: Mapped[str | None] = mapped_column(EncryptedText)
    email: Mapped[str | None] = mapped_column(EncryptedText)

    case: Mapped[Case] = relationship(back_populates="person")

    @property
    def full_name(self) -> str:
        return f"{self.first_name or ''} {self.last_name or ''}".strip()

    guardians: Mapped[list["Guardian"]] = relationship(cascade="all, delete-orphan", order_by="Guardian.id")


class Guardian(Base):
    __tablename__ = "guardians"
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    first_name: Mapped[str | None] = mapped_column(EncryptedText)
    last_name: Mapped[str | None] = mapped_column(EncryptedText)
    phone: Mapped[str | None] = mapped_column(EncryptedText)
    email: Mapped[str | None] = mapped_column(EncryptedText)
    address: Mapped[str | None] = mapped_column(EncryptedText)

    @property
    def full_name(self) -> str:
        return f"{self.first_name or ''} {self.last_name or ''}".strip()


class Summons(Base):
    """A written summons that was sent (date and channel), with the meeting it booked."""

    __tablename__ = "summonses"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    sent_on: Mapped[date] = mapped_column(Date)
    channel: Mapped[str] = mapped_column(String(40), default="brev")
    meeting_id: Mapped[int | None] = mapped_column(ForeignKey("meetings.id", ondelete="SET NULL"))


class Meeting(Base):
    __tablename__ = "meetings"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    starts_on: Mapped[date] = mapped_column(Date)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    place: Mapped[str | None] = mapped_column(EncryptedText)
    outcome: Mapped[str | None] = mapped_column(String(12))  # attended | no_show | cancelled
    outcome_on: Mapped[date | None] = mapped_column(Date)

    __table_args__ = (Index("ix_meetings_open", "outcome", "starts_on"),)


class DrugTest(Base):
    """A drug test as taken / not taken. There is no result column, by design."""

    __tablename__ = "drug_tests"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    on: Mapped[date] = mapped_column(Date)
    taken: Mapped[bool] = mapped_column(Boolean)


class Notice(Base):
    """A notice of non-compliance to the prosecuting authority, from draft to receipt."""

    __tablename__ = "notices"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[str] = mapped_column(String(36), unique=True)
    status: Mapped[str] = mapped_column(String(12), index=True)  # draft queued sent cancelled dead
    breaches: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    auto_send_on: Mapped[date | None] = mapped_column(Date)
    confirmed_by: Mapped[str | None] = mapped_column(String(320))
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    receipt: Mapped[str | None] = mapped_column(String(500))
    cancel_reason: Mapped[str | None] = mapped_column(String(200))

    def breach_facts(self) -> tuple[BreachFact, ...]:
        """The breaches this notice carries, as the domain rules see them."""
        return tuple(BreachFact(b["type"], date.fromisoformat(b["on"])) for b in self.breaches)  # type: ignore[arg-type]


class OutboxItem(Base):
    """An outbound message, written in the same transaction as the change that caused it."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(12))  # notice alert digest reply
    channel: Mapped[str] = mapped_column(String(32))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"), index=True)
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("notices.id", ondelete="SET NULL"))
    payload: Mapped[bytes | None] = mapped_column(EncryptedBytes)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending sent dead cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    give_up_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
    receipt: Mapped[str | None] = mapped_column(String(500))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)


class InboundMessage(Base):
    """Every item a channel delivered, keyed for at-least-once-in, processed-once."""

    __tablename__ = "inbound_messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(8))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes | None] = mapped_column(EncryptedBytes)
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(String(500))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"))
    # A mail's identity across channels and re-deliveries (see gateway.intake.identity).
    dedupe_key: Mapped[str | None] = mapped_column(String(64), unique=True)

    __table_args__ = (UniqueConstraint("channel", "external_id", name="uq_inbound_channel_external"),)


class IntakeAttempt(Base):
    """Counted before a message is processed, so a message that kills the process
    again and again is recognised and quarantined instead of looping the daemon."""

    __tablename__ = "intake_attempts"
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OrderRecord(Base):
    """Each Oppmoteordre seen, by OrdreId: dedupe, history, and parked amendments."""

    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[str] = mapped_column(String(36), unique=True)
    message_type: Mapped[str] = mapped_column(String(12))
    refers_to: Mapped[str | None] = mapped_column(String(36), index=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id", ondelete="SET NULL"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"))
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    payload: Mapped[str | None] = mapped_column(EncryptedText)


class QuarantineEntry(Base):
    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(primary_key=True)
    inbound_id: Mapped[int] = mapped_column(ForeignKey("inbound_messages.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(500))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Cursor(Base):
    """A channel's durable position (watermark, delta link, UIDVALIDITY/UID)."""

    __tablename__ = "cursors"
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Lease(Base):
    """Named leases: the single-instance guard and per-channel poll guards."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """Who did what and when. Details are non-personal; cases are named by number."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(320))
    case_number: Mapped[str | None] = mapped_column(String(20), index=True)
    action: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(String(500))


class CaseStatistic(Base):
    """What remains of a case after its personal data is purged: counts, no people."""

    __tablename__ = "case_statistics"
    id: Mapped[int] = mapped_column(primary_key=True)
    unit_code: Mapped[str] = mapped_column(String(32))
    kommunenummer: Mapped[str | None] = mapped_column(String(4))
    reaction: Mapped[str | None] = mapped_column(String(40))
    minor: Mapped[bool] = mapped_column(Boolean)
    opened_month: Mapped[str] = mapped_column(String(7))
    ended_month: Mapped[str | None] = mapped_column(String(7))
    final_status: Mapped[str] = mapped_column(String(24))
    attendances: Mapped[int] = mapped_column(Integer)
    no_shows: Mapped[int] = mapped_column(Integer)
    tests_taken: Mapped[int] = mapped_column(Integer)
    tests_missed: Mapped[int] = mapped_column(Integer)
    notices_sent: Mapped[int] = mapped_column(Integer)
    days_to_first_meeting: Mapped[int | None] = mapped_column(Integer)
    purged_at: Mapped[datetime] = mapped_column(UTCDateTime())


class GatewayMeta(Base):
    """Facts about this installation, e.g. a value encrypted under the key at setup,
    so a key file that does not belong to this database is caught at start."""

    __tablename__ = "gateway_meta"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
