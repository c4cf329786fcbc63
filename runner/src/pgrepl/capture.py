"""Capture: what the runner installs in a source database, and how it reads what was captured.

In each source database, schema `pgrepl` holds:
  capture        one row per captured table: its delta store `delta_<id>` and its primary key
  delta_<id>     (txid, captured, origin, <pk columns>): the keys of changed rows, written by statement-level
                 AFTER triggers from transition tables (one INSERT per statement, not per row); a row-level
                 trigger fires only when an UPDATE changes the primary key, to record the old key too
  truncate_log   TRUNCATEs of captured tables
  subscription   which sync reads which captured table: triggers stay while a subscription does
  consumer       per (sync, target): the snapshot `done` up to which changes are applied on that target, and
                 while applying, the snapshot `pending` and a resume cursor inside it

Why snapshots and not sequence numbers: a transaction that starts first may commit last. A change belongs to
the interval (done, pending] when its transaction is visible in `pending` and not in `done`: every committed
transaction falls into exactly one interval, whatever the commit order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
from psycopg import postgres, pq, sql
from psycopg.adapt import Transformer

from .errors import NotFound, Refused

SCHEMA = "pgrepl"
NOTIFY_CHANNEL = "pgrepl"
CAPTURE_TRIGGERS = ("pgrepl_capture_ins", "pgrepl_capture_upd", "pgrepl_capture_upd_key",
                    "pgrepl_capture_del", "pgrepl_capture_trunc")

SOURCE_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS pgrepl;
CREATE TABLE IF NOT EXISTS pgrepl.capture (
    id          serial PRIMARY KEY,
    schemaname  text NOT NULL,
    relname     text NOT NULL,
    delta_table text NOT NULL UNIQUE,
    pkey        text[] NOT NULL,
    pktype      text[] NOT NULL,
    created     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (schemaname, relname)
);
-- the captured table's oid: a table dropped and re-created under its name has lost its triggers (guard.py)
ALTER TABLE pgrepl.capture ADD COLUMN IF NOT EXISTS relid oid;
CREATE TABLE IF NOT EXISTS pgrepl.truncate_log (
    capture_id  int NOT NULL REFERENCES pgrepl.capture ON DELETE CASCADE,
    txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    captured    timestamptz NOT NULL DEFAULT now(),
    origin      text
);
CREATE INDEX IF NOT EXISTS truncate_log_txid ON pgrepl.truncate_log (txid);
CREATE TABLE IF NOT EXISTS pgrepl.subscription (
    capture_id  int NOT NULL REFERENCES pgrepl.capture ON DELETE CASCADE,
    sync        text NOT NULL,
    PRIMARY KEY (capture_id, sync)
);
CREATE TABLE IF NOT EXISTS pgrepl.consumer (
    sync        text NOT NULL,
    target      text NOT NULL,
    done        pg_snapshot NOT NULL,
    pending     pg_snapshot,
    cursor      text[],
    updated     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sync, target)
);
-- Bucardo's bucardo_purge_delta(interval), for cron jobs and people: deletes the captured keys that every
-- consumer has applied and that are older than `keep`.
CREATE OR REPLACE FUNCTION pgrepl.purge_delta(keep interval) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    c record;
    horizon xid8;
    n bigint;
    deleted bigint := 0;
    truncates bigint := 0;
BEGIN
    FOR c IN SELECT * FROM pgrepl.capture ORDER BY id LOOP
        SELECT min(pg_snapshot_xmin(co.done)) INTO horizon
          FROM pgrepl.consumer co JOIN pgrepl.subscription s ON s.sync = co.sync
         WHERE s.capture_id = c.id;
        CONTINUE WHEN horizon IS NULL;
        EXECUTE format('DELETE FROM pgrepl.%I WHERE txid < $1 AND captured < now() - $2', c.delta_table)
          USING horizon, keep;
        GET DIAGNOSTICS n = ROW_COUNT;
        deleted := deleted + n;
        DELETE FROM pgrepl.truncate_log WHERE capture_id = c.id AND txid < horizon AND captured < now() - keep;
        GET DIAGNOSTICS n = ROW_COUNT;
        truncates := truncates + n;
    END LOOP;
    RETURN format('Rows deleted from delta: %s Rows deleted from truncate_log: %s', deleted, truncates);
END $$;
"""


@dataclass(frozen=True)
class TableInfo:
    """A source table (or sequence) as the catalog records it."""
    schemaname: str
    relname: str
    kind: str = "table"                 # table | sequence
    pkey: tuple[str, ...] = ()          # empty: no primary key nor usable unique index
    pktype: tuple[str, ...] = ()        # format_type(): what the delta store and casts use
    pktypname: tuple[str, ...] = ()     # short type names, for display: int4, text...

    @property
    def qualname(self) -> str:
        return f"{self.schemaname}.{self.relname}"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schemaname, self.relname)


@dataclass(frozen=True)
class Capture:
    """A captured table in a source database."""
    id: int
    table: TableInfo
    delta_table: str

    @property
    def delta(self) -> sql.Identifier:
        return sql.Identifier(SCHEMA, self.delta_table)


# --- introspection -------------------------------------------------------------------------------------------

_DESCRIBE = """
WITH rels AS (
    SELECT c.oid, n.nspname, c.relname, c.relkind
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = ANY(%(kinds)s)
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgrepl')
       AND n.nspname NOT LIKE 'pg\\_%%'
       AND NOT c.relispartition
), keyidx AS (  -- the primary key, else the first unique, total, plain index over NOT NULL columns
    SELECT DISTINCT ON (i.indrelid) i.indrelid, i.indexrelid, i.indkey
      FROM pg_index i JOIN rels r ON r.oid = i.indrelid
     WHERE i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
       AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) AND NOT a.attnotnull)
     ORDER BY i.indrelid, i.indisprimary DESC, i.indexrelid
)
SELECT r.nspname, r.relname, r.relkind,
       coalesce(array_agg(a.attname ORDER BY k.ord) FILTER (WHERE a.attname IS NOT NULL), '{}'),
       coalesce(array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord)
                FILTER (WHERE a.attname IS NOT NULL), '{}'),
       coalesce(array_agg(t.typname::text ORDER BY k.ord) FILTER (WHERE a.attname IS NOT NULL), '{}')
  FROM rels r
  LEFT JOIN keyidx ki ON ki.indrelid = r.oid
  LEFT JOIN LATERAL unnest(ki.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) ON true
  LEFT JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum = k.attnum
  LEFT JOIN pg_type t ON t.oid = a.atttypid
 GROUP BY r.nspname, r.relname, r.relkind
 ORDER BY r.nspname, r.relname
"""


def describe(conn: psycopg.Connection, kind: str = "table") -> list[TableInfo]:
    """Every user table (kind='table', with its key) or sequence (kind='sequence') of a database."""
    kinds = ["r", "p"] if kind == "table" else ["S"]
    rows = conn.execute(_DESCRIBE, {"kinds": kinds}).fetchall()
    return [TableInfo(s, r, kind, tuple(pk), tuple(pt), tuple(ptn)) for s, r, _k, pk, pt, ptn in rows]


def match(tables: Iterable[TableInfo], name: str) -> list[TableInfo]:
    """Tables called NAME (`table` in any schema, or `schema.table`)."""
    if "." in name:
        schema, rel = name.split(".", 1)
        return [t for t in tables if (t.schemaname, t.relname) == (schema, rel)]
    return [t for t in tables if t.relname == name]


# --- install and remove --------------------------------------------------------------------------------------

def ensure_schema(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('pgrepl.capture'))")
        conn.execute(SOURCE_SCHEMA)


# One trigger function per kind of change, each a single INSERT: branching on TG_LEVEL and TG_OP in one function
# cost a third of the capture's overhead per statement (docs/benchmarks.md). The functions are named after the
# capture (capture_<id>, capture_<id>_old...): drop() removes them, and with them their triggers.
CAPTURE_FUNCTIONS = ("", "_old", "_key", "_trunc")


def _capture_functions(conn: psycopg.Connection, cap_id: int, delta: sql.Identifier,
                       pkey: tuple[str, ...]) -> list[sql.Composed]:
    cols = sql.SQL(", ").join(sql.Identifier(k) for k in pkey)
    bodies = {
        "": sql.SQL("INSERT INTO {delta} ({cols}) SELECT {cols} FROM new_rows"),          # INSERT, UPDATE
        "_old": sql.SQL("INSERT INTO {delta} ({cols}) SELECT {cols} FROM old_rows"),      # DELETE
        # an UPDATE changed the key (row trigger): the old key must go away on the targets
        "_key": sql.SQL("INSERT INTO {delta} ({cols}) VALUES ({old})"),
        "_trunc": sql.SQL("INSERT INTO pgrepl.truncate_log (capture_id) VALUES ({cap_id})"),
    }
    old = sql.SQL(", ").join(sql.SQL("OLD.{}").format(sql.Identifier(k)) for k in pkey)
    return [sql.SQL(
        "CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
        "SET search_path = pg_catalog, pg_temp AS {body}"
    ).format(fn=sql.Identifier(SCHEMA, f"capture_{cap_id}{suffix}"), body=sql.Literal(
        "BEGIN " + body.format(delta=delta, cols=cols, old=old, cap_id=sql.Literal(cap_id)).as_string(conn)
        + "; RETURN NULL; END")) for suffix, body in bodies.items()]


def install(conn: psycopg.Connection, table: TableInfo, sync: str, notify: bool = False,
            key_index: bool = False) -> Capture:
    """Captures TABLE for SYNC: delta store and triggers created if absent, subscription recorded. Idempotent.
    key_index: also index the delta store by key, for the lookups of swap syncs (conflicts are found by key)."""
    if not table.pkey:
        raise Refused(f"Table {table.qualname} has no primary key nor usable unique index: it cannot be in a "
                      "pushdelta or swap sync; put it in a fullcopy herd instead")
    ensure_schema(conn)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('pgrepl.capture'))")
        cap = find(conn, table)
        if cap is None:
            cap_id = conn.execute(
                "INSERT INTO pgrepl.capture (schemaname, relname, delta_table, pkey, pktype, relid) "
                "VALUES (%s, %s, '', %s, %s, to_regclass(%s)) RETURNING id",
                (table.schemaname, table.relname, list(table.pkey), list(table.pktype),
                 sql.SQL("{}").format(table.ident).as_string(conn))).fetchone()[0]
            cap = Capture(cap_id, table, f"delta_{cap_id}")
            conn.execute("UPDATE pgrepl.capture SET delta_table = %s WHERE id = %s", (cap.delta_table, cap_id))
            keycols = sql.SQL(", ").join(
                sql.SQL("{} {} NOT NULL").format(sql.Identifier(k), sql.SQL(t)) for k, t in zip(table.pkey, table.pktype, strict=True))
            keys = sql.SQL(", ").join(sql.Identifier(k) for k in table.pkey)
            conn.execute(sql.SQL(
                "CREATE TABLE {delta} (txid xid8 NOT NULL DEFAULT pg_current_xact_id(), "
                "captured timestamptz NOT NULL DEFAULT now(), origin text, {keycols})"
            ).format(delta=cap.delta, keycols=keycols))
            conn.execute(sql.SQL("CREATE INDEX {} ON {} (txid, {})").format(
                sql.Identifier(f"{cap.delta_table}_txid"), cap.delta, keys))
            install_triggers(conn, cap)
        conn.execute("INSERT INTO pgrepl.subscription (capture_id, sync) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                     (cap.id, sync))
        if key_index:
            conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({}, txid)").format(
                sql.Identifier(f"{cap.delta_table}_key"), cap.delta,
                sql.SQL(", ").join(sql.Identifier(k) for k in table.pkey)))
        _set_notify_trigger(conn, cap, notify)
    return cap


def install_triggers(conn: psycopg.Connection, cap: Capture) -> None:
    """(Re)creates the capture's trigger functions and triggers, in the caller's transaction. Triggers left from
    before (some dropped, some disabled) go first with their functions: the runner owns those, not the table."""
    table = cap.table
    for suffix in CAPTURE_FUNCTIONS:
        conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}() CASCADE").format(
            sql.Identifier(SCHEMA, f"capture_{cap.id}{suffix}")))
    for ddl in _capture_functions(conn, cap.id, cap.delta, table.pkey):
        conn.execute(ddl)
    fn = {f"fn{suffix}": sql.Identifier(SCHEMA, f"capture_{cap.id}{suffix}") for suffix in CAPTURE_FUNCTIONS}
    changed_key = sql.SQL(" OR ").join(
        sql.SQL("OLD.{k} IS DISTINCT FROM NEW.{k}").format(k=sql.Identifier(k)) for k in table.pkey)
    for ddl in (
        "CREATE TRIGGER pgrepl_capture_ins AFTER INSERT ON {t} REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION {fn}()",
        "CREATE TRIGGER pgrepl_capture_upd AFTER UPDATE ON {t} REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION {fn}()",
        "CREATE TRIGGER pgrepl_capture_upd_key AFTER UPDATE ON {t} FOR EACH ROW WHEN ({changed_key}) "
        "EXECUTE FUNCTION {fn_key}()",
        "CREATE TRIGGER pgrepl_capture_del AFTER DELETE ON {t} REFERENCING OLD TABLE AS old_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION {fn_old}()",
        "CREATE TRIGGER pgrepl_capture_trunc AFTER TRUNCATE ON {t} FOR EACH STATEMENT EXECUTE FUNCTION {fn_trunc}()",
    ):
        conn.execute(sql.SQL(ddl).format(t=table.ident, changed_key=changed_key, **fn))


def _set_notify_trigger(conn: psycopg.Connection, cap: Capture, on: bool) -> None:
    """The NOTIFY trigger runs a function of its own per table, owned by the runner: dropping that function
    (CASCADE) removes the trigger without owning the table (DROP TRIGGER would need the table's owner)."""
    fn = sql.Identifier(SCHEMA, f"notify_{cap.id}")
    if not on:
        conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}() CASCADE").format(fn))
        return
    conn.execute(sql.SQL("CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS "
                         "$$BEGIN PERFORM pg_notify('pgrepl', ''); RETURN NULL; END$$").format(fn))
    if "pgrepl_notify" not in triggers_on(conn, cap.table):
        conn.execute(sql.SQL("CREATE TRIGGER pgrepl_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} "
                             "FOR EACH STATEMENT EXECUTE FUNCTION {}()").format(cap.table.ident, fn))


def set_notify(conn: psycopg.Connection, on: bool) -> int:
    """Adds or drops the NOTIFY trigger on every captured table of this database; returns how many tables."""
    if not has_schema(conn):
        return 0
    caps = captures(conn)
    with conn.transaction():
        for cap in caps:
            _set_notify_trigger(conn, cap, on)
    return len(caps)


def register_consumer(conn: psycopg.Connection, sync: str, target: str) -> None:
    """A new (sync, target) starts from now: what committed before is assumed present on the target already
    (use onetimecopy otherwise). Idempotent: an existing consumer keeps its position."""
    conn.execute("INSERT INTO pgrepl.consumer (sync, target, done) VALUES (%s, %s, pg_current_snapshot()) "
                 "ON CONFLICT DO NOTHING", (sync, target))


def unsubscribe(conn: psycopg.Connection, sync: str) -> list[str]:
    """Removes SYNC's subscriptions and consumers; drops the triggers and delta store of every table no sync
    reads any more. Returns the tables whose capture was removed."""
    if not has_schema(conn):
        return []
    removed = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('pgrepl.capture'))")
        conn.execute("DELETE FROM pgrepl.consumer WHERE sync = %s", (sync,))
        conn.execute("DELETE FROM pgrepl.subscription WHERE sync = %s", (sync,))
        for cap in captures(conn):
            if not conn.execute("SELECT 1 FROM pgrepl.subscription WHERE capture_id = %s", (cap.id,)).fetchone():
                drop(conn, cap)
                removed.append(cap.table.qualname)
    return removed


def remove_consumer(conn: psycopg.Connection, sync: str, target: str) -> None:
    """SYNC no longer feeds TARGET (its targets changed)."""
    if has_schema(conn):
        conn.execute("DELETE FROM pgrepl.consumer WHERE sync = %s AND target = %s", (sync, target))


def unsubscribe_table(conn: psycopg.Connection, sync: str, table: TableInfo) -> bool:
    """SYNC stops reading TABLE; its capture goes when no other sync reads it. True when the capture went."""
    cap = find(conn, table) if has_schema(conn) else None
    if cap is None:
        return False
    with conn.transaction():
        conn.execute("DELETE FROM pgrepl.subscription WHERE capture_id = %s AND sync = %s", (cap.id, sync))
        if conn.execute("SELECT 1 FROM pgrepl.subscription WHERE capture_id = %s", (cap.id,)).fetchone():
            return False
        drop(conn, cap)
    return True


def drop(conn: psycopg.Connection, cap: Capture) -> None:
    """Removes a capture. Its triggers go with their functions (DROP FUNCTION ... CASCADE): the runner owns the
    functions but not the tables, and DROP TRIGGER would need the table's owner."""
    for fn in (f"notify_{cap.id}", *(f"capture_{cap.id}{suffix}" for suffix in CAPTURE_FUNCTIONS)):
        conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}() CASCADE").format(sql.Identifier(SCHEMA, fn)))
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(cap.delta))
    conn.execute("DELETE FROM pgrepl.capture WHERE id = %s", (cap.id,))


def has_schema(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('pgrepl.capture') IS NOT NULL").fetchone()[0]


def captures(conn: psycopg.Connection) -> list[Capture]:
    rows = conn.execute("SELECT id, schemaname, relname, delta_table, pkey, pktype FROM pgrepl.capture ORDER BY id")
    return [Capture(i, TableInfo(s, r, "table", tuple(pk), tuple(pt)), d) for i, s, r, d, pk, pt in rows]


def find(conn: psycopg.Connection, table: TableInfo) -> Capture | None:
    return next((c for c in captures(conn) if (c.table.schemaname, c.table.relname) ==
                 (table.schemaname, table.relname)), None)


def triggers_on(conn: psycopg.Connection, table: TableInfo) -> list[str]:
    """Names of pgrepl triggers on a table (for checks and tests)."""
    rows = conn.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND tgname LIKE 'pgrepl%%' ORDER BY 1",
        (sql.SQL("{}").format(table.ident).as_string(conn),)).fetchall()
    return [r[0] for r in rows]


# --- reading what was captured -------------------------------------------------------------------------------

@dataclass
class Interval:
    """Changes visible in `pending` and not in `done`, for one (sync, target); `cursor` is where to resume."""
    sync: str
    target: str
    done: str
    pending: str
    cursor: list[str] | None   # [capture id, txid, key values...] of the last applied delta row


def consumer_position(conn: psycopg.Connection, sync: str, target: str) -> tuple[str, str | None, list | None]:
    row = conn.execute("SELECT done::text, pending::text, cursor FROM pgrepl.consumer WHERE sync = %s AND target = %s",
                       (sync, target)).fetchone()
    if row is None:
        raise NotFound(f'No consumer "{sync}" -> "{target}" in the source database: was the sync added?')
    return row


def has_new_changes(conn: psycopg.Connection, sync: str, caps: list[Capture], done: str) -> bool:
    """Cheap check: is anything committed since `done` for this sync? (uses the (txid, key) index)"""
    if not caps:
        return False
    probes = [sql.SQL(
        "SELECT 1 FROM {d} WHERE txid >= pg_snapshot_xmin(%(done)s::pg_snapshot) "
        "AND NOT pg_visible_in_snapshot(txid, %(done)s::pg_snapshot) "
        "AND pg_visible_in_snapshot(txid, pg_current_snapshot()) AND origin IS DISTINCT FROM %(sync)s"
    ).format(d=c.delta) for c in caps]
    probes.append(sql.SQL(
        "SELECT 1 FROM pgrepl.truncate_log WHERE capture_id = ANY(%(ids)s) "
        "AND txid >= pg_snapshot_xmin(%(done)s::pg_snapshot) AND NOT pg_visible_in_snapshot(txid, %(done)s::pg_snapshot) "
        "AND pg_visible_in_snapshot(txid, pg_current_snapshot()) AND origin IS DISTINCT FROM %(sync)s"))
    q = sql.SQL("SELECT EXISTS ({})").format(sql.SQL(" UNION ALL ").join(sql.SQL("({} LIMIT 1)").format(p) for p in probes))
    return conn.execute(q, {"done": done, "sync": sync, "ids": [c.id for c in caps]}).fetchone()[0]


def open_interval(conn: psycopg.Connection, sync: str, target: str) -> Interval:
    """The interval being applied, or a new one ending now. The caller checked has_new_changes()."""
    done, pending, cursor = consumer_position(conn, sync, target)
    if pending is None:
        pending = conn.execute(
            "UPDATE pgrepl.consumer SET pending = pg_current_snapshot(), cursor = NULL, updated = now() "
            "WHERE sync = %s AND target = %s RETURNING pending::text", (sync, target)).fetchone()[0]
        cursor = None
    return Interval(sync, target, done, pending, cursor)


def advance(conn: psycopg.Connection, iv: Interval, cursor: list[str]) -> None:
    iv.cursor = cursor
    conn.execute("UPDATE pgrepl.consumer SET cursor = %s, updated = now() WHERE sync = %s AND target = %s",
                 (cursor, iv.sync, iv.target))


def close_interval(conn: psycopg.Connection, iv: Interval) -> None:
    conn.execute("UPDATE pgrepl.consumer SET done = pending, pending = NULL, cursor = NULL, updated = now() "
                 "WHERE sync = %s AND target = %s", (iv.sync, iv.target))


def reset_consumer(conn: psycopg.Connection, sync: str, target: str, snapshot: str) -> None:
    """After a full copy taken at SNAPSHOT: every change visible in it is on the target."""
    conn.execute("UPDATE pgrepl.consumer SET done = %s::pg_snapshot, pending = NULL, cursor = NULL, updated = now() "
                 "WHERE sync = %s AND target = %s", (snapshot, sync, target))


def in_interval(alias: str) -> sql.Composed:
    """The delta rows of an interval: visible in `pending`, not in `done`, and not applied by the sync itself."""
    return sql.SQL(
        "{a}.txid >= pg_snapshot_xmin(%(done)s::pg_snapshot) AND {a}.txid < pg_snapshot_xmax(%(pending)s::pg_snapshot) "
        "AND pg_visible_in_snapshot({a}.txid, %(pending)s::pg_snapshot) "
        "AND NOT pg_visible_in_snapshot({a}.txid, %(done)s::pg_snapshot) "
        "AND {a}.origin IS DISTINCT FROM %(sync)s").format(a=sql.Identifier(alias))


def truncated_in(conn: psycopg.Connection, iv: Interval, caps: list[Capture]) -> set[int]:
    """Ids of the captures truncated during the interval: those tables are copied whole instead."""
    query = sql.SQL("SELECT DISTINCT capture_id FROM pgrepl.truncate_log l WHERE capture_id = ANY(%(ids)s) "
                    "AND {}").format(in_interval("l"))
    params = {"ids": [c.id for c in caps], "done": iv.done, "pending": iv.pending, "sync": iv.sync}
    rows = conn.execute(query, params).fetchall()
    return {r[0] for r in rows}


def array_literal(values: Iterable[str]) -> str:
    """Values in their text form as an array literal ('{"1","2"}') that the array input of any type reads."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


_text_array = Transformer().get_loader(postgres.types["text"].array_oid, pq.Format.TEXT)


def parse_array(literal: str) -> list[str]:
    """An array literal ('{1,"a b"}', as array_out writes it for any type) as the text of its elements."""
    return _text_array.load(literal.encode())


@dataclass
class Batch:
    """The distinct changed keys of one table, kept as array literals: SQL takes them as they came, without any
    Python work per key (a batch holds tens of thousands)."""
    capture: Capture
    arrays: list[str]      # one array literal of the key column's type per key column ('{1,2,3}'), keys in key order
    present: str           # bool array literal: whether each key's row exists on the source (in this snapshot)
    cursor: list[str]      # resume point after this batch
    existing: int = 0      # how many keys have a row on the source
    last: bool = False     # nothing of the table is left in the interval after this batch

    @classmethod
    def of(cls, capture: Capture, keys: list[tuple[str, ...]], present: list[bool], cursor: list[str]) -> Batch:
        """A batch from keys as text tuples (swap, row by row)."""
        arrays = [array_literal(k[i] for k in keys) for i in range(len(capture.table.pkey))]
        return cls(capture, arrays, "{" + ",".join("t" if p else "f" for p in present) + "}", cursor, sum(present))

    @property
    def keys(self) -> list[tuple[str, ...]]:
        """The keys as tuples of their columns' text (swap compares them with what it reads row by row)."""
        return list(zip(*(parse_array(a) for a in self.arrays), strict=True))

    @property
    def present_flags(self) -> list[bool]:
        return [p == "t" for p in parse_array(self.present)]


def read_batch(conn: psycopg.Connection, iv: Interval, cap: Capture, limit: int) -> Batch | None:
    """The next changed keys of CAP inside the interval, at most LIMIT delta rows, in (txid, key) order, in one
    query and one row. Run it in the REPEATABLE READ transaction that also copies the rows (apply.repeatable_read:
    its planner settings make the presence check probe the key index), so `present` matches the copy."""
    t = cap.table
    keys = sql.SQL(", ").join(sql.Identifier(k) for k in t.pkey)
    dkeys = sql.SQL(", ").join(sql.SQL("d.{}").format(sql.Identifier(k)) for k in t.pkey)
    params = {"done": iv.done, "pending": iv.pending, "sync": iv.sync, "limit": limit}
    after = sql.SQL("")
    if iv.cursor and int(iv.cursor[0]) == cap.id:
        vals = sql.SQL(", ").join([sql.SQL("%(c0)s::xid8"), *(
            sql.SQL("{}::{}").format(sql.Placeholder(f"c{i + 1}"), sql.SQL(typ)) for i, typ in enumerate(t.pktype))])
        after = sql.SQL("AND (d.txid, {}) > ({})").format(dkeys, vals)
        params.update({f"c{i}": v for i, v in enumerate(iv.cursor[1:])})
    q = sql.SQL("""
WITH d AS MATERIALIZED (
    SELECT d.txid, {dkeys} FROM {delta} d WHERE {interval} {after} ORDER BY d.txid, {dkeys} LIMIT %(limit)s
), k AS (
    SELECT {ukeys}, s.{first} IS NOT NULL AS present
      FROM (SELECT DISTINCT {keys} FROM d) u LEFT JOIN {src} s ON {join}
     ORDER BY {ukeys}
)
SELECT (SELECT ARRAY[d.txid::text, {dtext}] FROM d ORDER BY d.txid DESC, {ddesc} LIMIT 1),
       (SELECT count(*) < %(limit)s FROM d), count(*) FILTER (WHERE present), array_agg(present)::text, {arrays}
  FROM k""").format(
        dkeys=dkeys, delta=cap.delta, interval=in_interval("d"), after=after, keys=keys, src=t.ident,
        ukeys=sql.SQL(", ").join(sql.SQL("u.{}").format(sql.Identifier(c)) for c in t.pkey),
        first=sql.Identifier(t.pkey[0]),
        join=sql.SQL(" AND ").join(sql.SQL("s.{c} = u.{c}").format(c=sql.Identifier(c)) for c in t.pkey),
        dtext=sql.SQL(", ").join(sql.SQL("d.{}::text").format(sql.Identifier(c)) for c in t.pkey),
        ddesc=sql.SQL(", ").join(sql.SQL("d.{} DESC").format(sql.Identifier(c)) for c in t.pkey),
        arrays=sql.SQL(", ").join(sql.SQL("array_agg({})::text").format(sql.Identifier(c)) for c in t.pkey))
    cursor, last, existing, present, *arrays = conn.execute(q, params).fetchone()
    if cursor is None:
        return None
    return Batch(cap, arrays, present, [str(cap.id), *cursor], existing, last)
