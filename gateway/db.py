"""Engine, sessions and migrations.

Every step of the gateway is one short transaction through ``session_scope``. On
SQLite the engine uses WAL with ``synchronous=FULL`` (a commit survives power loss,
not only a killed process) and starts write transactions with ``BEGIN IMMEDIATE`` so
two writers queue on the lock instead of failing halfway. The schema is made and
upgraded only by Alembic.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

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


def log_after_commit(session: Session, logger: logging.Logger, level: int, msg: str, *args: object) -> None:
    """A log line about a change, written only if the change was committed."""
    after_commit(session, lambda: logger.log(level, msg, *args))


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
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    from alembic import command

    command.upgrade(_alembic_config(engine), "head")


# The newest migration. Kept equal to Alembic's head by tests/test_house.py, so that
# every command can check the schema with one query instead of loading Alembic.
SCHEMA_HEAD = "0003"


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
