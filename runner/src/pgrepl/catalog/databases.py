"""Databases and dbgroups: how each member is reached (its password is in the password file, never here)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import psycopg

from .. import capture, delta, passfile
from ..db import connect, member_conninfo
from ..errors import NotFound, Refused
from .schema import _rows, check_name

# --- databases -----------------------------------------------------------------------------------------------

DB_COLUMNS = ("name", "dbname", "host", "port", "username", "status", "sslmode", "sslrootcert")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def list_dbs(conn: psycopg.Connection) -> list[dict]:
    """The databases, without passwords: those are in the password file (passfile.py), never in the catalog."""
    return _rows(conn, "SELECT name, dbname, host, port, username, status, sslmode, sslrootcert FROM pgrepl.db "
                       "ORDER BY name")


def get_db(conn: psycopg.Connection, name: str) -> dict:
    rows = _rows(conn, "SELECT name, dbname, host, port, username, status, sslmode, sslrootcert FROM pgrepl.db "
                       "WHERE name = %s", (name,))
    if not rows:
        raise NotFound(f'No database named "{name}"')
    return rows[0]


def has_password(db: dict) -> bool:
    return passfile.get(db) is not None


def check_sslmode(sslmode: str | None) -> str | None:
    if sslmode not in (None, *SSL_MODES):
        raise Refused(f'Invalid sslmode "{sslmode}": one of {", ".join(SSL_MODES)}')
    return sslmode


def add_db(conn: psycopg.Connection, name: str, dbname: str, host: str | None = None, port: int = 5432,
           username: str | None = None, password: str | None = None, sslmode: str | None = None,
           sslrootcert: str | None = None) -> None:
    """PASSWORD, when given, goes to the password file, never to the catalog. SSLMODE and SSLROOTCERT are libpq's
    (verify-full and the cluster CA: the runner checks it talks to the right server)."""
    check_name("database", name)
    check_sslmode(sslmode)
    if _rows(conn, "SELECT 1 FROM pgrepl.db WHERE name = %s", (name,)):
        raise Refused(f'A database named "{name}" already exists')
    row = {"name": name, "dbname": dbname, "host": host, "port": int(port), "username": username}
    with conn.transaction():
        conn.execute("INSERT INTO pgrepl.db (name, dbname, host, port, username, sslmode, sslrootcert) "
                     "VALUES (%s,%s,%s,%s,%s,%s,%s)", (name, dbname, host, int(port), username, sslmode, sslrootcert))
        if password is not None:
            passfile.put(row, password)


def update_db(conn: psycopg.Connection, name: str, **fields) -> None:
    """Changes catalog attributes; `password` changes the password file. A database that moves (host, port,
    dbname or user) takes its password along unless a new one is given."""
    old = get_db(conn, name)
    for key in fields:
        if key not in DB_COLUMNS[1:] + ("password",):
            raise Refused(f"Unknown database attribute {key}")
    check_sslmode(fields.get("sslmode"))
    password = fields.pop("password", None)
    new = {**old, **fields}
    if password is None and passfile.key(new) != passfile.key(old):
        password = passfile.get(old)
    with conn.transaction():
        for key, value in fields.items():
            conn.execute(psycopg.sql.SQL("UPDATE pgrepl.db SET {} = %s WHERE name = %s").format(
                psycopg.sql.Identifier(key)), (value, name))
        if password is not None:
            passfile.put(new, password)
    if passfile.key(new) != passfile.key(old):
        _forget_password(conn, old)


def _forget_password(conn: psycopg.Connection, db: dict) -> None:
    """Removes the password file's line of DB unless another catalog database connects the same way."""
    if not any(passfile.key(d) == passfile.key(db) for d in list_dbs(conn)):
        passfile.put(db, None)


def remove_db(conn: psycopg.Connection, name: str) -> None:
    db = get_db(conn, name)
    users = [r["name"] for r in _rows(conn, "SELECT name FROM pgrepl.sync WHERE targetdb = %s UNION "
                                            "SELECT s.name FROM pgrepl.sync s JOIN pgrepl.herd_member m ON m.herd = s.herd "
                                            "JOIN pgrepl.relation r ON r.id = m.relation WHERE r.db = %s", (name, name))]
    if users:
        raise Refused(f'Cannot remove database "{name}": used by sync(s) {", ".join(sorted(users))}')
    groups = [r["dbgroup"] for r in _rows(conn, "SELECT dbgroup FROM pgrepl.dbgroup_member WHERE db = %s", (name,))]
    if groups:
        raise Refused(f'Cannot remove database "{name}": member of dbgroup(s) {", ".join(groups)}')
    with conn.transaction():
        conn.execute("DELETE FROM pgrepl.relation WHERE db = %s", (name,))
        conn.execute("DELETE FROM pgrepl.db WHERE name = %s", (name,))
    _forget_password(conn, db)


def member_connect(conn: psycopg.Connection, db_name: str, purpose: str = "pgrepl") -> psycopg.Connection:
    return connect(member_conninfo(get_db(conn, db_name)), application_name=purpose)


def source_name(conn: psycopg.Connection, sync: str) -> str:
    """SYNC's name in the source databases: qualified by this control database's identity, so that two control
    databases with a sync of the same name on one source never touch each other's positions or captures."""
    (control_id,) = conn.execute("SELECT id FROM pgrepl.identity").fetchone()
    return f"{sync}@{control_id}"


@contextmanager
def sync_source(conn: psycopg.Connection, db_name: str, sync: str,
                purpose: str = "pgrepl") -> Iterator[tuple[psycopg.Connection, str]]:
    """A connection to a database where SYNC captures, with the sync's name there; a source schema left by an
    older pgrepl is upgraded, and the sync's rows recorded under its bare name are taken over."""
    name = source_name(conn, sync)
    with member_connect(conn, db_name, purpose) as src:
        if capture.has_schema(src):
            capture.ensure_current(src)
            delta.adopt(src, sync, name)
        yield src, name


# --- database groups -----------------------------------------------------------------------------------------

def list_dbgroups(conn: psycopg.Connection) -> list[dict]:
    return _rows(conn, "SELECT g.name, coalesce(array_agg(m.db ORDER BY m.db) FILTER (WHERE m.db IS NOT NULL), '{}') "
                       "AS members FROM pgrepl.dbgroup g LEFT JOIN pgrepl.dbgroup_member m ON m.dbgroup = g.name "
                       "GROUP BY g.name ORDER BY g.name")


def get_dbgroup(conn: psycopg.Connection, name: str) -> dict:
    for g in list_dbgroups(conn):
        if g["name"] == name:
            return g
    raise NotFound(f'No database group named "{name}"')


def add_dbgroup(conn: psycopg.Connection, name: str, members: Iterable[str] = ()) -> list[str]:
    """Creates the group if needed and adds MEMBERS; returns the members actually added."""
    check_name("database group", name)
    members = list(members)
    for m in members:
        get_db(conn, m)
    with conn.transaction():
        conn.execute("INSERT INTO pgrepl.dbgroup (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,))
        return [m for m in members if conn.execute(
            "INSERT INTO pgrepl.dbgroup_member (dbgroup, db) VALUES (%s, %s) ON CONFLICT DO NOTHING", (name, m)).rowcount]


def set_dbgroup_members(conn: psycopg.Connection, name: str, members: Iterable[str]) -> None:
    """Makes the group's members exactly MEMBERS; syncs that target the group get or lose those targets."""
    from .syncs import (  # syncs builds on this module: imported late
        _sync_consumers,
        check_targets,
        list_syncs,
    )
    members = sorted(set(members))
    current = get_dbgroup(conn, name)["members"]
    if members == current:
        return
    for m in members:
        get_db(conn, m)
    syncs = [s for s in list_syncs(conn) if s["targetgroup"] == name]
    for s in syncs:
        check_targets(conn, s, members)
    with conn.transaction():
        conn.execute("DELETE FROM pgrepl.dbgroup_member WHERE dbgroup = %s", (name,))
        for m in members:
            conn.execute("INSERT INTO pgrepl.dbgroup_member (dbgroup, db) VALUES (%s, %s)", (name, m))
    for s in syncs:
        _sync_consumers(conn, s, old_targets=current, new_targets=members)


def remove_dbgroup(conn: psycopg.Connection, name: str) -> None:
    get_dbgroup(conn, name)
    users = [r["name"] for r in _rows(conn, "SELECT name FROM pgrepl.sync WHERE targetgroup = %s", (name,))]
    if users:
        raise Refused(f'Cannot remove database group "{name}": target of sync(s) {", ".join(users)}')
    conn.execute("DELETE FROM pgrepl.dbgroup WHERE name = %s", (name,))
