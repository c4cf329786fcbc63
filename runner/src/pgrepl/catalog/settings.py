"""Settings stored in the control database (the list and their checks are pgrepl.settings)."""

from __future__ import annotations

import psycopg

from .. import capture
from ..db import connect, member_conninfo
from ..settings import defaults, validate


def all_settings(conn: psycopg.Connection) -> dict[str, str]:
    values = defaults()
    values.update(dict(conn.execute("SELECT name, value FROM pgrepl.setting").fetchall()))
    return values


def set_setting(conn: psycopg.Connection, name: str, value: str) -> tuple[str, str]:
    """Returns (old, new). Changing capture_notify adds or drops the NOTIFY triggers on the source databases."""
    from .syncs import _source_dbs_of_delta_syncs  # syncs builds on this module: imported late
    value = validate(name, value)
    old = all_settings(conn)[name]
    if name == "capture_notify" and value != old:
        for db in _source_dbs_of_delta_syncs(conn):
            with connect(member_conninfo(db)) as src:
                capture.set_notify(src, value == "on")
    conn.execute("INSERT INTO pgrepl.setting (name, value) VALUES (%s, %s) "
                 "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))
    return old, value
