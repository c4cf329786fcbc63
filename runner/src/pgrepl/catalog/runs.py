"""The daemon's side of the catalog: worker state, runs, kicks, and the status that reports them."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from .. import lease
from .relations import herd_members
from .schema import _rows, notify_control
from .settings import all_settings
from .syncs import get_sync, list_syncs


def set_state(conn: psycopg.Connection, sync: str, state: str, pid: int | None = None,
              started: bool = False) -> None:
    conn.execute("INSERT INTO pgrepl.sync_state (sync, state, pid, since, started) "
                 "VALUES (%(s)s, %(st)s, %(pid)s, now(), CASE WHEN %(started)s THEN now() END) "
                 "ON CONFLICT (sync) DO UPDATE SET state = excluded.state, pid = excluded.pid, since = now(), "
                 "started = coalesce(excluded.started, pgrepl.sync_state.started)",
                 {"s": sync, "st": state, "pid": pid, "started": started})


def start_run(conn: psycopg.Connection, sync: str, target: str, kind: str, pid: int, kick: int | None = None,
              state: str | None = None) -> int:
    """A new run's id; STATE (e.g. running): the sync's state too, in the same round trip."""
    return conn.execute(
        "WITH r AS (INSERT INTO pgrepl.run (sync, target, kind, pid, kick) "
        "           VALUES (%(s)s, %(t)s, %(k)s, %(pid)s, %(kick)s) RETURNING id), "
        "st AS (UPDATE pgrepl.sync_state SET state = %(st)s, pid = %(pid)s, since = now() "
        "       WHERE sync = %(s)s AND %(st)s::text IS NOT NULL) "
        "SELECT id FROM r",
        {"s": sync, "t": target, "k": kind, "pid": pid, "kick": kick, "st": state}).fetchone()[0]


def finish_run(conn: psycopg.Connection, run_id: int, inserts: int = 0, updates: int = 0, deletes: int = 0,
               conflicts: int = 0, error: str | None = None, state: str | None = None) -> None:
    """Records the run's end; STATE (e.g. idle): the sync's state too, in the same round trip."""
    conn.execute(
        "WITH r AS (UPDATE pgrepl.run SET ended = clock_timestamp(), state = %(result)s, inserts = %(i)s, "
        "           updates = %(u)s, deletes = %(d)s, conflicts = %(c)s, error = %(e)s WHERE id = %(id)s "
        "           RETURNING sync) "
        "UPDATE pgrepl.sync_state s SET state = %(st)s, since = now() FROM r "
        "WHERE s.sync = r.sync AND %(st)s::text IS NOT NULL",
        {"result": "bad" if error else "good", "i": inserts, "u": updates, "d": deletes, "c": conflicts, "e": error,
         "id": run_id, "st": state})


def kick(conn: psycopg.Connection, sync: str) -> int:
    get_sync(conn, sync)
    kick_id = conn.execute("INSERT INTO pgrepl.kick (sync) VALUES (%s) RETURNING id", (sync,)).fetchone()[0]
    notify_control(conn, sync)
    return kick_id


def take_kicks(conn: psycopg.Connection, sync: str) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM pgrepl.kick WHERE sync = %s AND done IS NULL ORDER BY id",
                                       (sync,))]


def finish_kicks(conn: psycopg.Connection, kick_ids: list[int], good: bool) -> None:
    conn.execute("UPDATE pgrepl.kick SET done = clock_timestamp(), state = %s WHERE id = ANY(%s)",
                 ("good" if good else "bad", kick_ids))


def kick_result(conn: psycopg.Connection, kick_id: int) -> str | None:
    """'good', 'bad', or None while the kick is not done."""
    row = conn.execute("SELECT state FROM pgrepl.kick WHERE id = %s AND done IS NOT NULL", (kick_id,)).fetchone()
    return row[0] if row else None


# --- status --------------------------------------------------------------------------------------------------

def status(conn: psycopg.Connection, names: Iterable[str] = ()) -> list[dict]:
    """Per sync: definition, worker state, the session holding its lease and those waiting for it (see lease.py),
    and the last good and last bad runs within `days_back` days."""
    days = int(all_settings(conn)["days_back"])
    wanted = list(names)
    syncs = [get_sync(conn, n) for n in wanted] if wanted else list_syncs(conn)
    leases = lease.holders(conn, [s["name"] for s in syncs])
    out = []
    for s in syncs:
        state = _rows(conn, "SELECT state, pid, since, started FROM pgrepl.sync_state WHERE sync = %s", (s["name"],))
        last = {}
        for which in ("good", "bad"):
            rows = _rows(conn, "SELECT target, started, ended, extract(epoch FROM ended - started)::float AS duration, "
                               "inserts, updates, deletes, conflicts, error FROM pgrepl.run "
                               "WHERE sync = %s AND state = %s AND started > now() - make_interval(days => %s) "
                               "ORDER BY ended DESC LIMIT 1", (s["name"], which, days))
            last[which] = rows[0] if rows else None
        out.append({**s, "checktime": str(s["checktime"]) if s["checktime"] else None,
                    "state": state[0] if state else None, "last_good": last["good"], "last_bad": last["bad"],
                    **leases[s["name"]],
                    "tables": len(herd_members(conn, s["herd"]))})
    return out
