"""Trigram indexes for the console's search (id and params substrings) on PostgreSQL.

The expressions are exactly what `icontains` on `id` and on `Cast(params, text)`
compiles to, so the planner can answer the search from the indexes instead of
scanning every row. Needs the pg_trgm extension (trusted: a database owner may create
it); without it, or on SQLite, the search still works, by scanning.
"""

import logging

from django.db import DatabaseError, migrations, transaction

logger = logging.getLogger("workflows")

INDEXES = {
    "instance_search_id_trgm": 'UPPER(("id")::text)',
    "instance_search_params_trgm": 'UPPER(("params")::text)',
}


def create_search_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError as exc:
        logger.warning("pg_trgm is not available (%s): the console's search will scan", exc)
        return
    for name, expression in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON workflows_instance USING gin (({expression}) gin_trgm_ops)"
        )


def drop_search_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("workflows", "0002_roles_and_status_index")]

    operations = [migrations.RunPython(create_search_indexes, drop_search_indexes)]
