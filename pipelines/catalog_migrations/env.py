"""Alembic environment for the catalog: runs migrations on the connection `Catalog.migrate` hands in."""

from __future__ import annotations

from alembic import context

from pipelines.catalog import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
