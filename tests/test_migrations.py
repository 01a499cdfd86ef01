"""Alembic migrations on both backends: up, again, down, and in step with the models.

The schema is made only by migrations, so a model change without a migration would
reach production as a crash on the first query that touches it. Comparing the
ORM metadata with a migrated database catches that here, on SQLite and on
PostgreSQL, whose reflection differs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, MetaData, String, func, insert, inspect, select

from gateway import db
from gateway.app import open_gateway
from gateway.clock import SimulatedClock
from gateway.config import ConfigError, load_settings
from gateway.models import Base, Unit
from tests.conftest import START
from tests.factories import write_config


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()


def _script() -> ScriptDirectory:
    scratch = db.make_engine("sqlite://")  # the config wants an engine; this one is never used
    try:
        return ScriptDirectory.from_config(db._alembic_config(scratch))
    finally:
        scratch.dispose()


def _diff(engine: Engine, metadata: MetaData) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))


def _schema(engine: Engine) -> dict[str, Any]:
    """Tables with their columns, indexes, unique and foreign keys, comparable by ==."""
    found = inspect(engine)
    return {
        table: (
            [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)],
            sorted((i["name"] or "", tuple(i["column_names"])) for i in found.get_indexes(table)),
            sorted((u["name"] or "", tuple(u["column_names"])) for u in found.get_unique_constraints(table)),
            sorted(
                (f["referred_table"], tuple(f["constrained_columns"])) for f in found.get_foreign_keys(table)
            ),
        )
        for table in sorted(found.get_table_names())
    }


def test_there_is_exactly_one_head() -> None:
    """Two heads (parallel branches merged in git) would make ``upgrade head`` fail."""
    assert len(_script().get_heads()) == 1


def test_empty_database_migrates_to_head(engine: Engine) -> None:
    assert not db.has_tables(engine)
    assert not db.schema_is_current(engine)
    db.migrate(engine)
    assert db.schema_is_current(engine)
    tables = set(inspect(engine).get_table_names())
    assert {table.name for table in Base.metadata.sorted_tables} | {"alembic_version"} == tables


def test_migrating_twice_is_a_no_op(engine: Engine) -> None:
    db.migrate(engine)
    before = _schema(engine)
    with engine.begin() as conn:
        conn.execute(insert(Unit).values(code="testdal", name="Testdal", org_number="937000006"))
    db.migrate(engine)
    assert db.schema_is_current(engine)
    assert _schema(engine) == before
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Unit)) == 1


def test_models_match_the_migrated_schema(engine: Engine) -> None:
    db.migrate(engine)
    assert _diff(engine, Base.metadata) == []


def test_the_model_comparison_would_notice_a_change(engine: Engine) -> None:
    """The empty diff above means something only if a difference shows up."""
    db.migrate(engine)
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["outbox"].append_column(Column("unmigrated", String(10)))
    diff = _diff(engine, changed)
    assert [(d[0], d[2], d[3].name) for d in diff if isinstance(d, tuple)] == [
        ("add_column", "outbox", "unmigrated")
    ]


def test_downgrade_to_base_and_up_again(engine: Engine) -> None:
    config = db._alembic_config(engine)
    db.migrate(engine)
    command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert not db.schema_is_current(engine)
    db.migrate(engine)
    assert db.schema_is_current(engine)
    assert _diff(engine, Base.metadata) == []


def test_every_revision_steps_down_and_up(engine: Engine) -> None:
    """Stairway: each revision's downgrade undoes exactly its upgrade."""
    config = db._alembic_config(engine)
    revisions = list(reversed(list(_script().walk_revisions())))
    assert revisions, "no migrations found"
    for revision in revisions:
        command.upgrade(config, revision.revision)
        after_up = _schema(engine)
        command.downgrade(config, "-1")
        command.upgrade(config, revision.revision)
        assert _schema(engine) == after_up, revision.revision
    assert db.schema_is_current(engine)


def test_gateway_refuses_an_unmigrated_database(tmp_path: Path, database_url: str) -> None:
    settings = load_settings(write_config(tmp_path / "gw", database=database_url))
    with pytest.raises(ConfigError, match="russak migrate"):
        open_gateway(settings, clock=SimulatedClock(START))
    gateway = open_gateway(settings, clock=SimulatedClock(START), migrate=True)
    try:
        assert db.schema_is_current(gateway.engine)
    finally:
        gateway.close()
