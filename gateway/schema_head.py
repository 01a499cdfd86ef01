"""The schema revision this version of the gateway runs on.

Alembic's newest migration, kept equal to it by tests/test_house.py. It lives apart
from ``gateway.db`` so that a command can compare a database's ``alembic_version``
with it without importing SQLAlchemy or Alembic (``gateway.cli.quick``).
"""

SCHEMA_HEAD = "0003"
