"""The fast look between two polls: has anything been committed for this sync since the worker last looked?

A worker's full poll (every `poll_interval`) reads its sync, settings and kicks in the control database and checks
every table's capture on each source (guard.py): about ten round trips. In between, every `probe_interval`, it asks
each source one query only. The query first compares the source's current snapshot with the one seen by the
previous probe: every transaction that completes with a transaction id (any write, any DDL) changes the snapshot
(its xid leaves the in-progress list or moves xmax), so an unchanged snapshot means nothing at all was committed in
that cluster, and the query stops there (no table is read). Only when the snapshot moved does it look, through the
delta stores' (txid, key) index, for changes of this sync past the position `done` last seen.

When nothing commits, the interval between probes doubles up to `IDLE_FACTOR` times `probe_interval` (but never past
`poll_interval`): an idle source sees a few trivial queries a second per worker; the first commit brings it back
to `probe_interval`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from . import delta
from .capture import Capture

IDLE_FACTOR = 10


@dataclass
class Watch:
    """What one source connection is probed for: SYNC's changes not yet in TARGET, past `done`."""
    conn: psycopg.Connection
    sync: str
    target: str
    caps: list[Capture]
    done: str
    snapshot: str | None = None
    moved: bool = False            # the last probe saw a new snapshot: something committed in that cluster
    found: bool = False            # and it found changes of this sync past `done`
    query: str | None = field(default=None, repr=False)

    def changed(self) -> bool:
        """True when a change of this sync may have committed past `done` (a new snapshot, and new delta rows)."""
        self.moved = self.found = False
        if self.conn.closed or not self.caps:
            return False
        if self.query is None:
            self.query = sql.SQL(   # composed once: a probe is asked every few milliseconds
                "SELECT s::text, s::text IS DISTINCT FROM %(last)s AND {} FROM pg_current_snapshot() s"
            ).format(delta.new_changes_query(self.caps)).as_string(self.conn)
        snapshot, found = self.conn.execute(self.query, {    # prepared: asked every few milliseconds
            "last": self.snapshot, "done": self.done, "sync": self.sync, "ids": [c.id for c in self.caps]},
            prepare=True).fetchone()
        self.moved, self.found, self.snapshot = snapshot != self.snapshot, bool(found), snapshot
        return self.found


class Prober:
    """The probe schedule of one worker: fast while transactions commit, slower while the sources are idle."""

    def __init__(self) -> None:
        self.interval = self.ceiling = self.step = 0.0

    def configure(self, interval: float, poll_interval: float) -> None:
        """INTERVAL: the probe_interval setting (0: no probing between polls)."""
        if interval != self.interval:
            self.step = interval
        self.interval = interval
        self.ceiling = max(min(interval * IDLE_FACTOR, poll_interval), interval)

    def look(self, watches: list[Watch]) -> bool:
        """Probes every watch; True when one found changes. Adapts the next step to whether anything committed."""
        found = [w.changed() for w in watches]
        self.step = self.interval if any(w.moved for w in watches) else min(self.step * 2, self.ceiling)
        return any(found)
