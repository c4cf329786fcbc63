"""Purges: the captured changes every target has applied, old runs, the freezer's archived runs."""

from __future__ import annotations

import psycopg

from .. import capture
from ..db import connect, member_conninfo
from ..errors import Refused
from .databases import list_dbs
from .syncs import parse_interval

# --- purge ---------------------------------------------------------------------------------------------------


def purge_delta(conn: psycopg.Connection, keep: str) -> list[tuple[str, str]]:
    """Bucardo's bucardo_purge_delta on every database where a sync captures: deletes the captured keys that
    every consumer has applied and that are older than KEEP. Returns (db, report) pairs."""
    parse_interval(conn, keep)
    reports = []
    for db in list_dbs(conn):
        with connect(member_conninfo(db), application_name="pgrepl purge") as member:
            if capture.has_schema(member):
                reports.append((db["name"], member.execute("SELECT pgrepl.purge_delta(%s::interval)",
                                                           (keep,)).fetchone()[0]))
    return reports


def purge_runs(conn: psycopg.Connection, keep: str) -> tuple[int, int]:
    """Moves finished runs older than KEEP into the freezer, one table a day (pgrepl_freezer.run_YYYYMMDD),
    as Bucardo's freezer schema does. Returns (rows moved, rows left in pgrepl.run)."""
    parse_interval(conn, keep)
    moved = 0
    with conn.transaction():
        days = [r[0] for r in conn.execute(
            "SELECT DISTINCT to_char(started, 'YYYYMMDD') FROM pgrepl.run "
            "WHERE state <> 'running' AND ended < now() - %s::interval ORDER BY 1", (keep,))]
        for day in days:
            table = psycopg.sql.Identifier("pgrepl_freezer", f"run_{day}")
            conn.execute(psycopg.sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE pgrepl.run)").format(table))
            moved += conn.execute(psycopg.sql.SQL(
                "WITH gone AS (DELETE FROM pgrepl.run WHERE state <> 'running' AND ended < now() - %s::interval "
                "AND to_char(started, 'YYYYMMDD') = %s RETURNING *) INSERT INTO {} SELECT * FROM gone"
            ).format(table), (keep, day)).rowcount
        conn.execute("DELETE FROM pgrepl.kick WHERE done < now() - %s::interval", (keep,))
        left = conn.execute("SELECT count(*) FROM pgrepl.run").fetchone()[0]
    return moved, left


def purge_archive(conn: psycopg.Connection, keep_days: int) -> list[str]:
    """Drops the freezer's daily tables older than KEEP_DAYS days. Returns the tables dropped."""
    if int(keep_days) < 0:
        raise Refused("--keep takes a number of days, 0 or more")
    oldest = conn.execute("SELECT to_char(current_date - %s::int, 'YYYYMMDD')", (int(keep_days),)).fetchone()[0]
    dropped = []
    for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'pgrepl_freezer' "
                                "AND tablename ~ '^run_[0-9]{8}$' ORDER BY 1").fetchall():
        if name[4:] < oldest:
            conn.execute(psycopg.sql.SQL("DROP TABLE {}").format(psycopg.sql.Identifier("pgrepl_freezer", name)))
            dropped.append(f"pgrepl_freezer.{name}")
    return dropped
