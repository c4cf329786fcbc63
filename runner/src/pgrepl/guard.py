"""Capture that cannot silently vanish: the check each run makes, and `pgrepl validate`.

A table dropped and re-created under its name loses its triggers; a trigger can be disabled (ALTER TABLE ...
DISABLE TRIGGER) or dropped; the delta store can be dropped. Each of these stops the capture without a word:
nothing is captured, so nothing is applied, and every run is good. So each poll of a pushdelta sync (worker._push)
and each swap run first checks, in one catalog query per source database, that every table it reads still has
its capture: the table's oid is the one captured, the capture triggers are there and enabled, the delta store is
there, the sync subscribes. When not, the run fails (recorded, alerted, retried with backoff, shown by `pgrepl
status`) and says how to fix it.

`pgrepl validate SYNC` repairs what it can (triggers re-created and re-enabled, a new capture for a re-created
table, whatever `add sync` installs) and says where changes may have been missed: those need an onetimecopy
(`--onetimecopy` marks the sync for one) or a compare.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from . import capture, catalog, delta
from .capture import TableInfo
from .errors import NotFound, PgreplError


class CaptureLost(PgreplError):
    """A table a sync reads has lost (part of) its capture: its changes are not recorded any more."""


# ENABLE (O) and ENABLE ALWAYS (A) fire for the application's sessions; DISABLE (D) never, ENABLE REPLICA (R)
# only in replica sessions (the runner's): either way the application's writes are not captured.
_FIRING = ("O", "A")

_INSPECT = """
SELECT t.schemaname, t.relname, c.id, r.oid::bigint,
       (to_jsonb(c) ->> 'relid')::bigint,   -- a capture made by an older pgrepl has no relid column yet
       CASE WHEN c.id IS NOT NULL THEN to_regclass(format('pgrepl.%%I', c.delta_table)) IS NOT NULL END,
       EXISTS (SELECT 1 FROM pgrepl.subscription s WHERE s.capture_id = c.id AND s.sync = %(sync)s),
       coalesce(tg.firing, '{}'), coalesce(tg.off, '{}')
  FROM unnest(%(schemas)s::text[], %(rels)s::text[]) AS t(schemaname, relname)
  LEFT JOIN pgrepl.capture c ON c.schemaname = t.schemaname AND c.relname = t.relname
  LEFT JOIN pg_class r ON r.oid = to_regclass(format('%%I.%%I', t.schemaname, t.relname))
  LEFT JOIN LATERAL (
      SELECT array_agg(tgname::text ORDER BY tgname) FILTER (WHERE tgenabled = ANY(%(firing)s)) AS firing,
             array_agg(tgname::text ORDER BY tgname) FILTER (WHERE tgenabled <> ALL(%(firing)s)) AS off
        FROM pg_trigger WHERE tgrelid = r.oid AND tgname = ANY(%(names)s)) tg ON true
 ORDER BY c.id NULLS FIRST, t.schemaname, t.relname
"""


@dataclass
class TableState:
    """What a source database holds of one table's capture."""
    db: str
    table: str                  # schema.table
    capture_id: int | None      # None: no capture row
    oid: int | None             # the table's oid now (None: no such table)
    relid: int | None           # the oid captured (None: recorded by an older pgrepl)
    has_delta: bool
    subscribed: bool
    firing: list[str]
    off: list[str]              # disabled (or enabled for replica sessions only)

    @property
    def recreated(self) -> bool:
        return self.relid is not None and self.oid is not None and self.relid != self.oid

    @property
    def missing(self) -> list[str]:
        return [t for t in capture.CAPTURE_TRIGGERS if t not in self.firing and t not in self.off]

    def problems(self) -> list[str]:
        """What is wrong, in words; empty when the capture is whole."""
        if self.oid is None:
            return ["the table does not exist"]
        if self.capture_id is None:
            return ["it is not captured (no capture row in pgrepl.capture)"]
        if self.recreated:
            return [f"it was dropped and re-created (table oid {self.oid}, captured oid {self.relid}): "
                    "its changes are not captured"]
        found = []
        if self.missing:
            found.append(f"capture trigger(s) {', '.join(self.missing)} missing")
        if self.off:
            found.append(f"capture trigger(s) {', '.join(self.off)} disabled")
        if not self.has_delta:
            found.append(f"its delta store pgrepl.delta_{self.capture_id} is missing")
        if not self.subscribed:
            found.append("the sync's subscription to its capture is missing")
        return found


def inspect(conn: psycopg.Connection, sync: str, key: str, tables: Iterable[TableInfo],
            db: str = "") -> list[TableState]:
    """The capture state of TABLES in one source database, in one catalog query. SYNC: the sync's name, KEY: its
    name in the source databases (catalog.source_name)."""
    tables = list(tables)
    try:
        rows = conn.execute(_INSPECT, {
            "sync": key, "schemas": [t.schemaname for t in tables], "rels": [t.relname for t in tables],
            "names": list(capture.CAPTURE_TRIGGERS), "firing": list(_FIRING)}).fetchall()
    except psycopg.errors.UndefinedTable:
        raise CaptureLost(f'Database "{db}" has no pgrepl capture schema (was it dropped?): sync {sync} captures '
                          f"nothing there; run `pgrepl validate {sync}`") from None
    return [TableState(db, f"{s}.{r}", cid, oid, relid, has_delta, subscribed, list(firing), list(off))
            for s, r, cid, oid, relid, has_delta, subscribed, firing, off in rows]


def check(sync: str, key: str, tables: Iterable[TableInfo], *sources: tuple[str, psycopg.Connection]) -> None:
    """Raises CaptureLost when a table SYNC (KEY in the sources) reads has lost its capture in one of SOURCES
    ((db name, connection) pairs): called at every pushdelta poll and at the start of every swap run."""
    tables = list(tables)
    broken = [f'{s.table} in database "{s.db}": {"; ".join(s.problems())}'
              for db, conn in sources for s in inspect(conn, sync, key, tables, db) if s.problems()]
    if broken:
        raise CaptureLost(f"Capture lost, changes are not being recorded: {' | '.join(broken)}. "
                          f"Fix: `pgrepl validate {sync}` (it repairs the capture and says whether an onetimecopy "
                          "is needed)")


# --- validate ------------------------------------------------------------------------------------------------

@dataclass
class Validation:
    lines: list[str]
    errors: list[str]


def validate(control: psycopg.Connection, names: Iterable[str], onetimecopy: bool = False) -> Validation:
    """`pgrepl validate SYNC...`: repairs the capture of each sync and reports, per table, what it fixed."""
    v = Validation([], [])
    missed: set[str] = set()    # syncs that may have missed changes
    for name in names:
        before = len(v.lines) + len(v.errors)
        missed |= _validate_sync(control, catalog.get_sync(control, name), v)
        if len(v.lines) + len(v.errors) == before:
            v.lines.append(f"Sync {name}: capture complete, nothing to fix")
    known = {s["name"]: s for s in catalog.list_syncs(control)}
    for name in sorted(missed):
        s = known.get(name)
        if s is None:
            v.lines.append(f"Sync {name} (not in this control database: another runner's) read a repaired table: "
                           "validate it and copy its tables from its own runner")
        elif s["type"] == "swap":
            swap_fix = ("changes may have been missed: compare the two sides and make them agree (a swap sync has "
                        "no onetimecopy)")
            (v.errors if onetimecopy else v.lines).append(f"Sync {name}: {swap_fix}")
        elif not onetimecopy:
            v.lines.append(f"Sync {name}: changes may have been missed: an onetimecopy is needed "
                           f"(`pgrepl update sync {name} onetimecopy=1`), or a compare of the tables")
        else:
            catalog.update_sync(control, name, onetimecopy=1)
            v.lines.append(f"Sync {name}: marked onetimecopy=1: its next run copies its tables whole")
    return v


def _validate_sync(control: psycopg.Connection, sync: dict, v: Validation) -> set[str]:
    """Repairs one sync's capture; returns the syncs that may have missed changes."""
    name = sync["name"]
    if sync["type"] == "fullcopy":
        return set()
    tables = catalog.sync_tables(control, sync)
    missed: set[str] = set()
    reinstall = {name}
    for db in dict.fromkeys(pair[0] for pair in catalog.directions(sync)):
        with catalog.sync_source(control, db, name, "pgrepl validate") as (conn, key):
            capture.ensure_schema(conn)   # the schema of this pgrepl (relid column)
            ours = key[len(name):]        # "@<this control database's id>"
            for st in inspect(conn, name, key, tables, db):
                # syncs of this control database by their name; another runner's keep their qualified one
                subs = {s.removesuffix(ours) for s in _repair(control, conn, sync, st, v)}
                missed |= subs
                reinstall |= subs
            for src, tgt in catalog.directions(sync):
                if src != db:
                    continue
                try:
                    delta.consumer_position(conn, key, tgt)
                except NotFound:
                    v.lines.append(f"{db}: position of {name} towards {tgt} missing: registered again from now")
                    missed.add(name)
    known = {s["name"]: s for s in catalog.list_syncs(control)}
    for s in sorted(reinstall & set(known)):
        try:
            catalog._install_capture(control, known[s])   # idempotent: whatever `add sync` installs and is missing
        except PgreplError as e:
            v.errors.append(f"Sync {s}: {e}")
    for db in dict.fromkeys(pair[0] for pair in catalog.directions(sync)):
        with catalog.sync_source(control, db, name, "pgrepl validate") as (conn, key):
            v.errors += [f"{s.db}: {s.table}: {'; '.join(s.problems())}"
                         for s in inspect(conn, name, key, tables, db) if s.problems()]
    return missed


def _repair(control: psycopg.Connection, conn: psycopg.Connection, sync: dict, st: TableState,
            v: Validation) -> set[str]:
    """Fixes what is wrong with one table's existing capture (a missing capture is installed by the caller).
    Returns the syncs that may have missed changes."""
    where = f"{st.db}: {st.table}"
    if st.oid is None:
        v.errors.append(f"{where}: the table does not exist: create it, or take it out of herd {sync['herd']}")
        return set()
    if st.capture_id is None:
        v.lines.append(f"{where}: was not captured: capture installed")
        return {catalog.source_name(control, sync["name"])}
    cap = next(c for c in capture.captures(conn) if c.id == st.capture_id)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('pgrepl.capture'))")
        subs = {r[0] for r in conn.execute("SELECT sync FROM pgrepl.subscription WHERE capture_id = %s", (cap.id,))}
        if st.recreated or not st.has_delta:
            capture.drop(conn, cap)   # a new capture (new oid, new delta store) is installed by the caller
            why = "re-created" if st.recreated else "delta store missing"
            v.lines.append(f"{where}: {why}: new capture installed (table oid {st.oid})")
            if st.recreated and st.db == sync["source"]:
                _refresh_key(control, conn, st)
            return subs | {catalog.source_name(control, sync["name"])}
        if st.missing or st.off:
            capture.install_triggers(conn, cap)
            fixed = [f"re-created missing trigger(s) {', '.join(st.missing)}"] * bool(st.missing) + \
                    [f"re-enabled trigger(s) {', '.join(st.off)}"] * bool(st.off)
            v.lines.append(f"{where}: {'; '.join(fixed)}")
        if st.relid is None:
            conn.execute("UPDATE pgrepl.capture SET relid = %s WHERE id = %s", (st.oid, cap.id))
            v.lines.append(f"{where}: recorded its table oid {st.oid}")
        if not st.subscribed:
            v.lines.append(f"{where}: subscription of {sync['name']} restored")
    return subs if st.missing or st.off else set()


def _refresh_key(control: psycopg.Connection, conn: psycopg.Connection, st: TableState) -> None:
    """A re-created table may have another key: the catalog records the one it has now."""
    fresh = capture.match(capture.describe(conn), st.table)
    if fresh:
        catalog.add_relations(control, st.db, fresh)
