"""Quoting and values for the engine's hand-written statements (attempt_sql.py,
inbox_sql.py): the same column names and database values as the ORM's."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Model


def db_value(obj: Model, name: str) -> Any:
    """Field `name` of `obj` as the ORM would send it to the database."""
    return prep(type(obj), name, getattr(obj, obj._meta.get_field(name).attname))


def prep(model: type[Model], name: str, value: Any) -> Any:
    """`value` for field `name` of `model`, as the ORM would send it to the database."""
    return model._meta.get_field(name).get_db_prep_save(value, connection)


def marks(values: list) -> str:
    return ", ".join(["%s"] * len(values))


def table(model: type[Model]) -> str:
    return quote(model._meta.db_table)


def column(model: type[Model], name: str) -> str:
    return quote(model._meta.get_field(name).column)


def quote(name: str) -> str:
    return connection.ops.quote_name(name)
