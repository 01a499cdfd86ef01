"""``russak cases`` on a SQLite site without SQLAlchemy: the listing people wait for.

Importing SQLAlchemy and mapping the models is most of what ``russak cases`` used to
cost on a small machine (about 0.8 s; issue #8 asks for 300 ms). The plain listing
is one SELECT over two tables and decrypts nothing, so on a SQLite site whose schema
is the one this version runs on it goes to the standard library's ``sqlite3``,
read-only. The SQL below is SQLAlchemy's own compilation of
``gateway.cli.cases.summary_query`` for ``LINE_COLUMNS``; tests/test_cli_quick.py
fails the moment the two differ, so there is still one query, cached here as text.

Everything else takes the ORM path, which also says what is wrong: PostgreSQL, a
URL with options (``sqlite:///file:…?mode=ro&uri=true``), a schema of another
revision, a database that has not yet stored its key check (the first command to
open a database stores it), and any error ``sqlite3`` raises. The configuration is
still loaded and checked in full (``Context.settings``), so a typo in it exits 2
here as in every command. What this path skips is the key check: the listing reads
no encrypted column, and the first command that does refuses a foreign key file.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.schema_head import SCHEMA_HEAD

if TYPE_CHECKING:
    from gateway.config import Settings

log = logging.getLogger(__name__)

_SELECT = (
    "SELECT cases.number, cases.status, cases.attendance_deadline, cases.condition_end, "
    "cases.case_reference, units.code AS unit_code \nFROM cases JOIN units ON units.id = cases.unit_id"
)
# summary_query(None, LINE_COLUMNS) and summary_query(status, LINE_COLUMNS), compiled
LIST_SQL = _SELECT + " ORDER BY cases.id"
LIST_BY_STATUS_SQL = _SELECT + " \nWHERE cases.status = ? ORDER BY cases.id"

KEY_CHECK_SQL = "SELECT 1 FROM gateway_meta WHERE name = 'key-check'"

# The same wait as the engine's (``gateway.db.make_engine``) for a writer's lock.
BUSY_TIMEOUT_SECONDS = 30.0

Line = tuple[str, str, str, "date | None", "str | None"]


def sqlite_path(url: str) -> Path | None:
    """The database file of a plain ``sqlite:///<absolute path>`` URL, else None."""
    prefix = "sqlite:////"
    if not url.startswith(prefix) or "?" in url or url[len("sqlite:///") :].startswith("file:"):
        return None
    return Path(url[len("sqlite:///") :])


def case_lines(settings: Settings, status: str | None) -> list[Line] | None:
    """The listing's lines (number, status, unit, deadline, reference), or None when
    this database must be read through the ORM path."""
    path = sqlite_path(settings.database_url())
    if path is None or not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS)
    except sqlite3.Error:
        return None
    try:
        with conn:
            conn.execute("BEGIN")  # one snapshot for the checks and the rows
            revisions = {row[0] for row in conn.execute("SELECT version_num FROM alembic_version")}
            if revisions != {SCHEMA_HEAD} or conn.execute(KEY_CHECK_SQL).fetchone() is None:
                return None
            if status:
                rows = conn.execute(LIST_BY_STATUS_SQL, (status,)).fetchall()
            else:
                rows = conn.execute(LIST_SQL).fetchall()
        lines = [_line(*row) for row in rows]
    except (sqlite3.Error, ValueError, TypeError) as exc:
        log.debug("cases: the quick listing gave way to the ORM path (%s)", type(exc).__name__)
        return None
    finally:
        conn.close()
    log.debug("cases: %d case(s) listed read-only through sqlite3", len(lines))
    return lines


def _line(
    number: str,
    status: str,
    attendance_deadline: str | None,
    condition_end: str | None,
    reference: str | None,
    unit: str,
) -> Line:
    """A row as the ORM path would have it: SQLAlchemy stores a ``Date`` on SQLite as
    ISO text, which ``date.fromisoformat`` reads back (and refuses if it is not)."""
    deadline = attendance_deadline or condition_end
    return (number, status, unit, date.fromisoformat(deadline) if deadline else None, reference)
