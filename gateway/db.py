"""Engine, sessions and migrations.

Every step of the gateway is one short transaction through ``session_scope``. On
SQLite the engine uses WAL with ``synchronous=FULL`` (a commit survives power loss,
not only a killed process) and starts write transactions with ``BEGIN IMMEDIATE`` so
two writers queue on the lock instead of failing halfway. The schema is made and
upgraded only by Alembic.

Migrations on SQLite run with foreign keys off. Alembic's batch mode changes a table
there by copying it and dropping the original, and with ``foreign_keys=ON`` that drop
deletes every row that points at the table (``ON DELETE CASCADE``): a migration of
``cases`` would empty ``persons``, ``meetings`` and ``notices``. After the migration
``PRAGMA foreign_key_check`` must find nothing, or it fails loudly.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.models import Lease
from gateway.schema_head import SCHEMA_HEAD as SCHEMA_HEAD  # re-exported: one query checks the schema

log = logging.getLogger(__name__)

SessionFactory = sessionmaker[Session]


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with the pragmas and isolation this gateway relies on."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # Deleted and rewritten rows (the purge, a re-encryption) are overwritten, not
            # left readable in free pages.
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: SessionFactory) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception.

    Work registered with ``after_commit`` runs only once the commit succeeded, so a
    log line such as "case … opened" is never written for a transaction that a full
    disk or a conflict then rolled back.
    """
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        session.info.pop(_AFTER_COMMIT, None)
        raise
    finally:
        session.close()
    for callback in session.info.pop(_AFTER_COMMIT, ()):
        callback()


_AFTER_COMMIT = "russak.after_commit"


def after_commit(session: Session, callback: Callable[[], object]) -> None:
    """Run ``callback`` after this session's transaction commits (never on rollback)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


def after_commit_mark(session: Session) -> int:
    """Where the after-commit work stands now, to drop what a rolled-back savepoint added."""
    return len(session.info.get(_AFTER_COMMIT, ()))


def drop_after_commit(session: Session, mark: int) -> None:
    del session.info.get(_AFTER_COMMIT, [])[mark:]


def log_after_commit(
    session: Session,
    logger: logging.Logger,
    level: int,
    msg: str,
    *args: object,
    extra: Mapping[str, object] | None = None,
) -> None:
    """A log line about a change, written only if the change was committed.

    ``extra`` holds the line's operator fields (``gateway.privacy.LOG_FIELDS``)."""
    after_commit(session, lambda: logger.log(level, msg, *args, extra=extra))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what caused it. SQLite rolls a transaction back by itself when
    the disk is full, so the error that surfaces is often "no such savepoint" raised
    while handling the real one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException) and id(orig) not in seen:
            yield orig
        current = current.__cause__ or current.__context__


def is_storage_full(exc: BaseException) -> bool:
    """SQLite's "database or disk is full", PostgreSQL's disk-full, or ENOSPC/EDQUOT."""
    for item in _chain(exc):
        text = str(item).lower()
        if "disk is full" in text or "no space left" in text or "could not extend file" in text:
            return True
        if isinstance(item, OSError) and item.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
    return False


def is_read_only(exc: BaseException) -> bool:
    """The database cannot be written: a read-only file, folder or file system."""
    for item in _chain(exc):
        text = str(item).lower()
        if (
            "readonly database" in text
            or "read-only file system" in text
            or "unable to open database" in text
        ):
            return True
        if isinstance(item, OSError) and item.errno in (errno.EROFS, errno.EACCES):
            return True
    return False


def _alembic_config(engine: Engine) -> Any:
    # Alembic (with mako and pygments) is loaded only when a schema is made or checked
    # against the migrations, not by every command that merely reads.
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("gateway") / "migrations"))
    cfg.attributes["engine"] = _WithoutForeignKeys(engine) if engine.dialect.name == "sqlite" else engine
    return cfg


class _WithoutForeignKeys:
    """What ``migrations/env.py`` calls its engine: SQLite connections with foreign keys off.

    The pragma cannot change inside a transaction, so it is set on the DB-API connection
    before Alembic begins one, and set back after the connection's transaction ended.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        from alembic.util import CommandError

        with self._engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            raw.execute("PRAGMA foreign_keys=OFF")
            try:
                yield conn
            finally:
                conn.rollback()  # nothing after env.py's commit; ends a failed migration's transaction
                raw.execute("PRAGMA foreign_keys=ON")
            broken = sorted({row[0] for row in raw.execute("PRAGMA foreign_key_check").fetchall()})
        if broken:
            raise CommandError(
                f"the migration left rows pointing at rows that do not exist (in {', '.join(broken)}); "
                "restore the backup taken before it"
            )


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent).

    A database newer than this version is refused with Alembic's ``CommandError``
    (the daemon's exit 65) and a sentence saying so, not "Can't locate revision".
    """
    from alembic import command
    from alembic.util import CommandError

    try:
        plan_migration(engine)
    except SchemaError as exc:
        raise CommandError(str(exc)) from exc
    command.upgrade(_alembic_config(engine), "head")


# What undoing each revision drops, for ``russak migrate --to`` to say before it does it
# (and docs/ops-guide.md, "Upgrade and rollback"). tests/test_migrate_to.py keeps one
# entry per revision.
DOWNGRADE_LOSES: dict[str, str] = {
    "0003": "drops each case's UUID (upgrading again makes new ones, so every reminder due "
    "then is mailed to staff once more), the encrypted close comments, the mail identities "
    "that recognise a staff mail seen twice, and the intake crash counters; upgrading again "
    "also clears the detail of every 'closed' audit entry (the case keeps its close reason)",
    "0002": "drops the stored key check: the next start stores a new one under whatever key "
    "file it is given, so a wrong key file is no longer refused",
    "0001": "drops every table: all cases, persons, notices, the outbox, the audit trail",
}


class SchemaError(ValueError):
    """A revision this version does not know: a typo in ``--to``, or a newer database."""


@dataclass(frozen=True)
class Revision:
    id: str
    doc: str  # the first paragraph of the migration's docstring


@dataclass(frozen=True)
class MigrationPlan:
    """What ``migrate_to`` does: from ``current`` to ``target``, through ``steps``.

    ``steps`` are the revisions applied (an upgrade) or undone (a downgrade), in the
    order they run. ``current`` is None for a database without a schema.
    """

    current: str | None
    target: str
    head: str
    direction: Literal["upgrade", "downgrade", "none"]
    steps: tuple[Revision, ...]


def schema_mismatch(revision: str | None) -> str:
    """What is wrong with a database at ``revision`` (not ``SCHEMA_HEAD``) and what to do.

    A schema newer than this version is what an operator meets after rolling the code
    back without the database: `russak migrate` would be the wrong advice there.
    Only on this error path is Alembic loaded, to tell older from unknown.
    """
    if revision is None:
        return "the database has no schema yet; run `russak migrate`"
    if revision in {r.id for r in known_revisions()}:
        return (
            f"the database schema is at revision {revision}, this version needs {SCHEMA_HEAD}; "
            "run `russak migrate`"
        )
    return newer_schema(revision, SCHEMA_HEAD)


def newer_schema(current: str, head: str) -> str:
    """The one sentence for a database a newer version migrated (every command, the daemon)."""
    return (
        f"the database schema {current} is newer than this version (head {head}); run the version "
        f"that wrote revision {current}, roll back with that version's `russak migrate --to {head}`, "
        "or restore the backup taken before that upgrade"
    )


def known_revisions() -> list[Revision]:
    """Every revision this version knows, oldest first (the history is one line)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(resources.files("gateway") / "migrations"))
    return [Revision(r.revision, " ".join(r.doc.split())) for r in reversed(list(script.walk_revisions()))]


def current_revision(engine: Engine) -> str | None:
    """The database's revision; None when it has no schema (several heads: comma-joined)."""
    if not inspect(engine).has_table("alembic_version"):
        return None
    with engine.connect() as conn:
        found = sorted(row[0] for row in conn.exec_driver_sql("SELECT version_num FROM alembic_version"))
    return ",".join(found) or None


def plan_migration(engine: Engine, target: str = "head") -> MigrationPlan:
    """The way from the database's revision to ``target`` ("head": this version's newest).

    Refuses (``SchemaError``) a revision this version does not know, a database newer
    than this version, and ``base``: undoing 0001 would drop every table.
    """
    order = known_revisions()
    ids = [r.id for r in order]
    head = ids[-1]
    wanted = head if target == "head" else target
    if wanted == "base":
        raise SchemaError(
            "migrating to base would drop every table; to start over, move the database away instead"
        )
    if wanted not in ids:
        raise SchemaError(f"unknown revision {target!r}; this version knows {', '.join(ids)} (head {head})")
    current = current_revision(engine)
    if current is not None and current not in ids:
        raise SchemaError(newer_schema(current, head))
    at, to = (ids.index(current) if current else -1), ids.index(wanted)
    if to > at:
        return MigrationPlan(current, wanted, head, "upgrade", tuple(order[at + 1 : to + 1]))
    if to < at:
        return MigrationPlan(current, wanted, head, "downgrade", tuple(reversed(order[to + 1 : at + 1])))
    return MigrationPlan(current, wanted, head, "none", ())


def migrate_to(engine: Engine, target: str) -> MigrationPlan:
    """Upgrade or downgrade to ``target``; returns the plan carried out."""
    from alembic import command

    plan = plan_migration(engine, target)
    if plan.direction == "upgrade":
        command.upgrade(_alembic_config(engine), plan.target)
    elif plan.direction == "downgrade":
        command.downgrade(_alembic_config(engine), plan.target)
    return plan


def leases_held(engine: Engine, now: datetime) -> list[Lease]:
    """Leases not yet run out (the daemon's ``instance``, each ``poll:<channel>``), oldest
    schema included; whether each owner still lives is ``gateway.ops.status.owner_alive``."""
    if not inspect(engine).has_table("leases"):
        return []
    with Session(engine) as session:
        return list(session.scalars(select(Lease).where(Lease.until > now).order_by(Lease.name)))


def schema_revision(engine: Engine) -> str | None:
    """The database's Alembic revision (heads joined by commas), ``None`` for none."""
    if not inspect(engine).has_table("alembic_version"):
        return None
    with engine.connect() as conn:
        current = {row[0] for row in conn.exec_driver_sql("SELECT version_num FROM alembic_version")}
    return ",".join(sorted(current)) or None


def schema_is_current(engine: Engine) -> bool:
    return schema_revision(engine) == SCHEMA_HEAD


def has_tables(engine: Engine) -> bool:
    return bool(inspect(engine).get_table_names())
