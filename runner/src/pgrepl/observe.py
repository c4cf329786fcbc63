"""What the runner's syncs owe their targets, read from the sources: backlog and lag per (sync, target), delta
store size and purge horizon per source. `pgrepl status` and the Prometheus metrics (metrics.py) both use it.

Each figure is one set-based query per source database: the backlog counts the delta rows of the consumer's
interval(s) not applied yet, through the (txid, key) index from the position's xmin on; the ages come from the
`captured` time of single rows found by that index. Nothing here writes to a source.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from math import ceil

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from . import capture, catalog, lease
from .db import connect, member_conninfo
from .errors import PgreplError

# A delta row is still owed to a consumer when it committed after `done`, is visible now, was not written by the
# sync itself, and is not in the part of a pending interval already applied (txid up to the cursor).
_OWED = """d.txid >= pg_snapshot_xmin(co.done) AND NOT pg_visible_in_snapshot(d.txid, co.done)
   AND pg_visible_in_snapshot(d.txid, pg_current_snapshot()) AND d.origin IS DISTINCT FROM co.sync
   AND NOT (co.pending IS NOT NULL AND nullif(co.cursor[1], '') IS NOT NULL
            AND d.txid <= nullif(co.cursor[1], '')::xid8 AND pg_visible_in_snapshot(d.txid, co.pending))"""

# The newest change the consumer has applied (its commit time is the target's freshness when nothing is owed).
_APPLIED = """d.txid < pg_snapshot_xmax(co.done) AND pg_visible_in_snapshot(d.txid, co.done)
   AND d.origin IS DISTINCT FROM co.sync"""


_PER_CAPTURE = sql.SQL("""
SELECT co.sync, co.target, o.n, o.oldest, a.captured AS applied
  FROM co JOIN pgrepl.subscription s ON s.sync = co.sync AND s.capture_id = {id}
 CROSS JOIN LATERAL (SELECT count(*) AS n, min(d.captured) AS oldest FROM {delta} d WHERE {owed}) o
  LEFT JOIN LATERAL (SELECT d.captured FROM {delta} d WHERE {applied} ORDER BY d.txid DESC LIMIT 1) a ON true""")


def _backlog_query(caps: list[capture.Capture]) -> sql.Composed:
    per_capture = sql.SQL(" UNION ALL ").join(
        _PER_CAPTURE.format(id=sql.Literal(c.id), delta=c.delta, owed=sql.SQL(_OWED), applied=sql.SQL(_APPLIED))
        for c in caps)
    return sql.SQL("""
WITH co AS (SELECT sync, target, done, pending, cursor, updated FROM pgrepl.consumer WHERE sync = ANY(%(syncs)s)),
per AS ({per_capture})
SELECT co.sync, co.target, coalesce(sum(per.n), 0)::bigint AS backlog,
       coalesce(extract(epoch FROM clock_timestamp() - min(per.oldest)), 0)::float AS lag,
       extract(epoch FROM clock_timestamp() - max(per.applied))::float AS applied_age
  FROM co LEFT JOIN per ON per.sync = co.sync AND per.target = co.target
 GROUP BY co.sync, co.target""").format(per_capture=per_capture if caps else sql.SQL(
        "SELECT NULL::text AS sync, NULL::text AS target, 0::bigint AS n, NULL::timestamptz AS oldest, "
        "NULL::timestamptz AS applied"))


def backlog(src: psycopg.Connection, source_names: Iterable[str]) -> dict[tuple[str, str], dict]:
    """{(qualified sync, target): {backlog: delta rows owed, lag: seconds since the oldest owed change was captured
    (0 when none), applied_age: seconds since the newest applied change was captured (None when purged)}}."""
    if not capture.has_schema(src):
        return {}
    caps = capture.captures(src)
    with src.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_backlog_query(caps), {"syncs": list(source_names)}).fetchall()
    return {(r["sync"], r["target"]): r for r in rows}


def delta_store(src: psycopg.Connection) -> dict:
    """The source's delta stores: rows (the statistics' live tuples: no scan), bytes on disk, and the age in
    seconds of the oldest row kept (what purge has not deleted yet; 0 when empty)."""
    if not capture.has_schema(src):
        return {"rows": 0, "bytes": 0, "oldest_age": 0.0}
    caps = capture.captures(src)
    if not caps:
        return {"rows": 0, "bytes": 0, "oldest_age": 0.0}
    oldest = sql.SQL(" UNION ALL ").join(
        sql.SQL("(SELECT captured FROM {} ORDER BY txid LIMIT 1)").format(c.delta) for c in caps)
    q = sql.SQL("""
SELECT (SELECT coalesce(sum(n_live_tup), 0)::bigint FROM pg_stat_user_tables
         WHERE schemaname = 'pgrepl' AND relname = ANY(%(names)s)),
       (SELECT coalesce(sum(pg_total_relation_size(format('pgrepl.%%I', n)::regclass)), 0)::bigint
          FROM unnest(%(names)s::text[]) n),
       coalesce(extract(epoch FROM clock_timestamp() - (SELECT min(captured) FROM ({}) o)), 0)::float""").format(oldest)
    rows, size, age = src.execute(q, {"names": [c.delta_table for c in caps]}).fetchone()
    return {"rows": rows, "bytes": size, "oldest_age": age}


# The runner's member sessions that wait for a lock, and who holds it: an application's transaction left open on a
# target stalls a sync without an error until lock_timeout; `status` names it meanwhile. A worker's member sessions
# are named "pgrepl SYNC" (worker.py). The holder's state is NULL when the role may not see other users' sessions.
_BLOCKED = """
SELECT w.application_name AS sync, w.pid, extract(epoch FROM clock_timestamp() - w.query_start)::float
       AS seconds, b.pid AS holder, b.usename AS holder_user, b.application_name AS holder_application,
       host(b.client_addr) AS holder_addr, b.state AS holder_state,
       extract(epoch FROM clock_timestamp() - b.state_change)::float AS holder_state_seconds
  FROM pg_stat_activity w CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS h(pid)
  JOIN pg_stat_activity b ON b.pid = h.pid
 WHERE w.application_name = ANY(%(names)s) AND w.wait_event_type = 'Lock'
 ORDER BY w.query_start"""


def blocked(conn: psycopg.Connection, syncs: Iterable[str]) -> list[dict]:
    """The member sessions of SYNCS on CONN's database that wait for a lock, one row per session holding it."""
    names = {f"pgrepl {s}"[:63]: s for s in syncs}   # the server keeps 63 bytes of an application_name
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_BLOCKED, {"names": list(names)}).fetchall()
    return [{**r, "sync": names[r["sync"]]} for r in rows]


# How long a look (a Prometheus scrape, `pgrepl status`) waits for the member databases, asked all at once: a member
# that does not answer (its host down behind a dropped route, its server hung) is reported as such in time, instead
# of stalling the look past Prometheus' scrape timeout (10 s by default, the scrape interval when shorter) or for as
# long as the member hangs.
ANSWER_WITHIN = 3.0


class _Question:
    """A question to one member database, asked in a daemon thread of its own: the look waits for its answer
    ANSWER_WITHIN at most, and a thread stuck on a hung member never keeps the process from exiting."""

    def __init__(self, ask: Callable[[], object]) -> None:
        self.answered = threading.Event()
        self.answer: object = None
        self.error: BaseException | None = None
        threading.Thread(target=self._run, args=(ask,), name="pgrepl observe", daemon=True).start()

    def _run(self, ask: Callable[[], object]) -> None:
        try:
            self.answer = ask()
        except BaseException as e:   # handed to the look, in its thread
            self.error = e
        finally:
            self.answered.set()


class Sources:
    """Connections to the member databases of a control database's syncs, opened on demand and kept for the
    next look (a scrape or a status). A member that cannot be reached, or does not answer in time, is reported,
    not raised; it is not asked again while its last question is still unanswered."""

    def __init__(self, control: psycopg.Connection) -> None:
        self.control = control
        self.conns: dict[str, psycopg.Connection] = {}
        self.unanswered: dict[str, _Question] = {}

    def close(self) -> None:
        """Closes the connections, but those a question still waits on (its thread owns them)."""
        for db, conn in self.conns.items():
            if db not in self.unanswered or self.unanswered[db].answered.is_set():
                with suppress(psycopg.Error):
                    conn.close()
        self.conns.clear()

    def ask(self, questions: dict[str, Callable[[psycopg.Connection], object]]) -> tuple[dict, dict[str, str]]:
        """Asks each member database DB its question (a function of its connection), all at once. Returns
        ({db: answer}, {db: error message}) after ANSWER_WITHIN seconds at most. A member still silent on the last
        look's question is not asked again; one slower than ANSWER_WITHIN but alive gives the last look's answer
        (one look old) while the new question runs."""
        asked, late, answers, errors = {}, {}, {}, {}
        for db, question in questions.items():
            last = self.unanswered.pop(db, None)
            if last is not None and not last.answered.is_set():
                self.unanswered[db] = last
                errors[db] = f"no answer yet to a question asked more than {ANSWER_WITHIN:g} s ago"
                continue
            if last is not None and last.error is None:
                late[db] = last.answer
            conn = self.conns.get(db)
            try:   # the catalog is read here, on the control connection, not in the question's thread
                conninfo = member_conninfo(catalog.get_db(self.control, db)) \
                    if conn is None or conn.closed or conn.broken else None
            except PgreplError as e:   # removed from the catalog since the syncs were read
                errors[db] = str(e).strip()
                continue
            asked[db] = _Question(functools.partial(self._answer, db, conninfo, question))
        deadline = time.monotonic() + ANSWER_WITHIN
        for db, q in asked.items():
            if not q.answered.wait(max(0.0, deadline - time.monotonic())):
                self.unanswered[db] = q
                if db in late:
                    answers[db] = late[db]
                else:
                    errors[db] = f"no answer within {ANSWER_WITHIN:g} s"
            elif isinstance(q.error, (psycopg.Error, PgreplError)):
                with suppress(psycopg.Error, AttributeError):   # its thread is done with it
                    self.conns.pop(db, None).close()
                errors[db] = str(q.error).strip()
            elif q.error is not None:
                raise q.error
            else:
                answers[db] = q.answer
        return answers, errors

    def _answer(self, db: str, conninfo: str | None, question: Callable[[psycopg.Connection], object]) -> object:
        """In the question's thread: DB's connection (CONNINFO: a new one) and its answer."""
        if conninfo is not None:
            self.conns[db] = connect(conninfo, "pgrepl observe", connect_timeout=ceil(ANSWER_WITHIN))
        return question(self.conns[db])

    def look(self, syncs: list[dict]) -> dict:
        """{"directions": [{sync, source, target, backlog, lag, applied_age}], "sources": {db: delta_store},
        "errors": {db: message}, "blocked": {sync: [session waiting for a lock]}} for SYNCS (catalog.list_syncs
        rows): one question per member database, asked all at once. Pushdelta and swap sources tell what their
        syncs owe (fullcopy owes nothing between kicks); every member, sources and targets, which of the syncs'
        worker sessions wait for a lock there."""
        by_source: dict[str, list[tuple[dict, str]]] = {}
        members: dict[str, set[str]] = {}
        for s in syncs:
            for src_db, tgt_db in catalog.directions(s):
                if s["type"] != "fullcopy":
                    by_source.setdefault(src_db, []).append((s, tgt_db))
                for db in (src_db, tgt_db):
                    members.setdefault(db, set()).add(s["name"])
        suffix = catalog.source_name(self.control, "")   # "@control-id": one query for every sync
        qualified = {s["name"]: s["name"] + suffix for s in syncs}

        def question(db: str) -> Callable[[psycopg.Connection], tuple]:
            owing = {qualified[s["name"]] for s, _target in by_source.get(db, [])}
            return lambda conn: ((backlog(conn, owing), delta_store(conn)) if owing else None,
                                 blocked(conn, members[db]))
        answers, errors = self.ask({db: question(db) for db in sorted(members)})
        out: dict = {"directions": [], "sources": {}, "errors": errors, "blocked": {s["name"]: [] for s in syncs}}
        for db, pairs in sorted(by_source.items()):
            found = None
            if db in answers:
                found, out["sources"][db] = answers[db][0]
            for s, tgt in pairs:
                r = None if found is None else found.get((qualified[s["name"]], tgt))
                out["directions"].append({"sync": s["name"], "source": db, "target": tgt,
                                          "backlog": r["backlog"] if r else None, "lag": r["lag"] if r else None,
                                          "applied_age": r["applied_age"] if r else None})
        for db, (_owed, waiting) in sorted(answers.items()):
            for r in waiting:   # (a last look's answer may name a sync removed since)
                if r["sync"] in out["blocked"]:
                    out["blocked"][r["sync"]].append({"database": db, **{k: v for k, v in r.items() if k != "sync"}})
        return out


_RUNS = """
SELECT sync, target, count(*) FILTER (WHERE state = 'good') AS good, count(*) FILTER (WHERE state = 'bad') AS bad,
       coalesce(sum(inserts), 0)::bigint AS inserts, coalesce(sum(updates), 0)::bigint AS updates,
       coalesce(sum(deletes), 0)::bigint AS deletes,
       extract(epoch FROM clock_timestamp() - max(ended) FILTER (WHERE state = 'good'))::float AS last_good_age,
       (array_agg(state ORDER BY id DESC) FILTER (WHERE state <> 'running'))[1] AS last_result
  FROM pgrepl.run WHERE sync = ANY(%(syncs)s) GROUP BY sync, target"""


def figures(control: psycopg.Connection, sources: Sources, names: Iterable[str] = ()) -> dict:
    """Everything the metrics export and `status --json` carries, in one look: per sync, whether a worker holds
    its lease, conflicts by rule, and per target backlog, lag, runs by result, rows I/U/D, age of the last good
    run and progress of long work; per source database its delta store. The runs come from pgrepl.run (its rows
    stay until `pgrepl purge runs`): one aggregate query, like the others."""
    wanted = list(names)
    syncs = [catalog.get_sync(control, n) for n in wanted] if wanted else catalog.list_syncs(control)
    names = [s["name"] for s in syncs]
    look = sources.look(syncs)
    with control.cursor(row_factory=dict_row) as cur:
        runs = {(r["sync"], r["target"]): r for r in cur.execute(_RUNS, {"syncs": names}).fetchall()}
        conflicts = cur.execute("SELECT sync, rule, count(*) AS n FROM pgrepl.conflict WHERE sync = ANY(%(syncs)s) "
                                "GROUP BY 1, 2", {"syncs": names}).fetchall()
    holders = lease.holders(control, names)
    progress = {(p["sync"], p["target"]): p for p in catalog.progress(control, names)}
    owed = {(d["sync"], d["target"]): d for d in look["directions"]}
    out: dict = {"syncs": {}, "sources": look["sources"], "errors": look["errors"]}
    for s in syncs:
        targets = {}
        for src_db, tgt in catalog.directions(s):
            r, d, p = runs.get((s["name"], tgt), {}), owed.get((s["name"], tgt), {}), progress.get((s["name"], tgt))
            targets[tgt] = {
                "source": src_db, "backlog": d.get("backlog"), "lag": d.get("lag"), "applied_age": d.get("applied_age"),
                "runs": {"good": r.get("good", 0), "bad": r.get("bad", 0)}, "last_result": r.get("last_result"),
                "rows": {"inserts": r.get("inserts", 0), "updates": r.get("updates", 0), "deletes": r.get("deletes", 0)},
                "last_good_age": r.get("last_good_age"),
                "progress": None if p is None else {k: p[k] for k in ("kind", "total", "done", "rate", "eta", "running")}}
        out["syncs"][s["name"]] = {
            "type": s["type"], "active": s["status"] == "active", "worker_up": holders[s["name"]]["lease"] is not None,
            "conflicts": {c["rule"]: c["n"] for c in conflicts if c["sync"] == s["name"]}, "targets": targets,
            "blocked": look["blocked"].get(s["name"], [])}
    return out
