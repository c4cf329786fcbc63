"""Progress of long work in `pgrepl.progress` (control migration 6): a fullcopy, an onetimecopy or the catch-up
of a big backlog, one row per (sync, target), written by the worker at most once a second."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import psycopg

from .schema import _rows

WRITE_EVERY = 1.0   # seconds between two writes of a running piece of work: a copy's chunks come much faster


class Reporter:
    """The worker's side: start(), add(rows) as rows land (written at most every WRITE_EVERY s), finish()."""

    def __init__(self, conn: psycopg.Connection, sync: str, target: str, kind: str, run: int | None = None,
                 total: int | None = None) -> None:
        self.conn, self.sync, self.target = conn, sync, target
        self.done, self.total, self.written = 0, total, time.monotonic()
        conn.execute("INSERT INTO pgrepl.progress (sync, target, kind, run, total) VALUES (%s, %s, %s, %s, %s) "
                     "ON CONFLICT (sync, target) DO UPDATE SET kind = excluded.kind, run = excluded.run, "
                     "total = excluded.total, done = 0, started = clock_timestamp(), updated = clock_timestamp(), "
                     "finished = NULL", (sync, target, kind, run, total))

    def add(self, rows: int) -> None:
        """ROWS more done; 0: a step ended (a table of a copy), written at once."""
        self.done += rows
        if not rows or time.monotonic() - self.written >= WRITE_EVERY:
            self._write()

    def set_total(self, total: int | None) -> None:
        self.total = total
        self._write()

    def _write(self, finished: bool = False) -> None:
        self.conn.execute("UPDATE pgrepl.progress SET done = %s, total = %s, updated = clock_timestamp(), "
                          "finished = CASE WHEN %s THEN clock_timestamp() END WHERE sync = %s AND target = %s",
                          (self.done, self.total, finished, self.sync, self.target))
        self.written = time.monotonic()

    def finish(self) -> None:
        self._write(finished=True)


def progress(conn: psycopg.Connection, syncs: Iterable[str] = ()) -> list[dict]:
    """Rows of SYNCS (all when empty) with `running` (not finished and its worker's run still running), the rate
    in rows per second and the ETA in seconds (None when not known)."""
    wanted = list(syncs)
    return _rows(conn, """
SELECT p.sync, p.target, p.kind, p.run, p.total, p.done, p.started, p.updated, p.finished,
       p.finished IS NULL AND coalesce(r.state = 'running', true) AS running,
       r.kick,
       p.done / nullif(extract(epoch FROM coalesce(p.finished, p.updated) - p.started), 0)::float AS rate,
       CASE WHEN p.finished IS NULL AND p.total > p.done AND p.done > 0 THEN
            (p.total - p.done) * extract(epoch FROM p.updated - p.started)::float / p.done END AS eta
  FROM pgrepl.progress p LEFT JOIN pgrepl.run r ON r.id = p.run
 WHERE cardinality(%(syncs)s::text[]) = 0 OR p.sync = ANY(%(syncs)s)
 ORDER BY p.sync, p.target""", {"syncs": wanted})


class CatchUp:
    """on_batch of a delta run (apply.push_interval): reports progress only once the run has lasted CATCHUP_AFTER
    seconds, so that the usual run of a few milliseconds writes nothing. Its total is the rows done by then plus
    the backlog still owed (REMAINING(), one count on the source)."""

    AFTER = 2.0

    def __init__(self, conn: psycopg.Connection, sync: str, target: str, run: int | None,
                 remaining: Callable[[], int | None]) -> None:
        self.conn, self.sync, self.target, self.run, self.remaining = conn, sync, target, run, remaining
        self.started, self.done = time.monotonic(), 0
        self.reporter: Reporter | None = None

    def __call__(self, counts) -> None:
        if self.reporter is not None:
            self.reporter.add(counts.total)
            return
        self.done += counts.total
        if time.monotonic() - self.started >= self.AFTER:
            left = self.remaining()
            self.reporter = Reporter(self.conn, self.sync, self.target, "catchup", self.run)
            self.reporter.done = self.done
            self.reporter.set_total(self.done + left if left is not None else None)

    def finish(self) -> None:
        if self.reporter is not None:
            self.reporter.finish()


def kick_counts(conn: psycopg.Connection, kick_id: int) -> tuple[int, int, int]:
    """Rows inserted, updated and deleted by the runs of a kick (every target)."""
    return conn.execute("SELECT coalesce(sum(inserts), 0), coalesce(sum(updates), 0), coalesce(sum(deletes), 0) "
                        "FROM pgrepl.run WHERE kick = %s", (kick_id,)).fetchone()
