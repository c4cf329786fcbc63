"""One worker per sync, enforced by the control database rather than by pid files.

A worker applies a sync only while it holds the sync's lease: a session-level advisory lock on its control
connection, keyed by (hashtext('pgrepl.sync'), hashtext(sync name)). Another worker of the same sync (an orphan,
a second controller, a second host on the same control database) cannot take it and waits; while it waits it holds
a shared lock under 'pgrepl.wait' so that `status` can name it. Both locks live and die with their session: a killed
worker or a broken connection frees the lease with nobody cleaning up. pg_locks says who holds them and
pg_stat_activity who that is: the worker's application_name carries its pid and host.
"""

from __future__ import annotations

import re
import socket

import psycopg
from psycopg.rows import dict_row

LEASE, WAITING = "pgrepl.sync", "pgrepl.wait"
_NAME = re.compile(r"pgrepl worker pid=(\d+) host=(\S*)")


def application_name(pid: int) -> str:
    return f"pgrepl worker pid={pid} host={socket.gethostname()}"[:63]


def take(conn: psycopg.Connection, sync: str) -> bool:
    """True when this session holds SYNC's lease now (taking it again is harmless)."""
    return conn.execute("SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))", (LEASE, sync)).fetchone()[0]


def mark_waiting(conn: psycopg.Connection, sync: str, waiting: bool) -> None:
    """Says (once) that this session waits for SYNC's lease, or no longer does."""
    fn = "pg_try_advisory_lock_shared" if waiting else "pg_advisory_unlock_shared"
    conn.execute(psycopg.sql.SQL("SELECT {}(hashtext(%s), hashtext(%s))").format(psycopg.sql.Identifier(fn)),
                 (WAITING, sync))


def holders(conn: psycopg.Connection, syncs: list[str]) -> dict[str, dict]:
    """Per sync: {"lease": the session holding it or None, "waiting": [sessions waiting for it]}; a session is
    {"pid" (the worker's, when it says), "host", "backend_pid", "client_addr", "application_name"}."""
    out: dict[str, dict] = {s: {"lease": None, "waiting": []} for s in syncs}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT s.name AS sync, k.kind, a.pid AS backend_pid, host(a.client_addr) AS client_addr, "
            "a.application_name FROM unnest(%(syncs)s::text[]) AS s(name) "
            "CROSS JOIN (VALUES ('lease', %(lease)s), ('waiting', %(waiting)s)) AS k(kind, key) "
            "JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            " AND l.classid = hashtext(k.key)::oid AND l.objid = hashtext(s.name)::oid "
            "JOIN pg_stat_activity a ON a.pid = l.pid ORDER BY a.backend_start",
            {"syncs": syncs, "lease": LEASE, "waiting": WAITING}).fetchall()
    for r in rows:
        m = _NAME.fullmatch(r["application_name"] or "")
        session = {"pid": int(m[1]) if m else None, "host": m[2] if m else None,
                   **{k: r[k] for k in ("backend_pid", "client_addr", "application_name")}}
        if r["kind"] == "lease":
            out[r["sync"]]["lease"] = session
        else:
            out[r["sync"]]["waiting"].append(session)
    return out


def describe(session: dict) -> str:
    return (f'{session["application_name"] or "a session without application_name"} '
            f'(backend {session["backend_pid"]} from {session["client_addr"] or "the local socket"})')
