"""Capture: what the runner installs in a source database to record changes, and how it removes it.

In each source database, schema `pgrepl` holds:
  capture        one row per captured table: its delta store `delta_<id>`, its primary key, and the delta store's
                 names for the key columns
  delta_<id>     (txid, captured, origin, k1..kn): the keys of changed rows, written by statement-level AFTER
                 triggers from transition tables (one INSERT per statement, not per row); a row-level trigger fires
                 only when an UPDATE changes the primary key, to record the old key too. Key columns get positional
                 names, so that a table whose key is called `txid` or `origin` can be captured too.
  truncate_log   TRUNCATEs of captured tables
  subscription   which sync reads which captured table: triggers stay while a subscription does
  consumer       per (sync, target): how far changes are applied (see delta.py, which reads the delta stores)
  applied        per (swap sync, other side): the other side's interval and cursor applied here (delta.py)
  resolved       per swap sync: the conflict keys this side got the other side's writes for in the current run, and
                 when (this side's snapshot)

A table of a swap sync with delta columns or `standard_conflict=merge` gets a richer delta store (version 3): `op`
(I, U, D, or K for an old key), `n1..nm` the net change `new - old` of each delta column per updated row, and with
merge `changed`, the columns each update changed (swap_delta.py reads them). Other captures pay nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from .errors import Refused

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
-- version 2: the delta store's key column names (NULL: named as the table's key, before version 2)
ALTER TABLE pgrepl.capture ADD COLUMN IF NOT EXISTS keycols text[];
-- version 3: delta columns (their net changes n1..nm, typed nettypes) and changed-column tracking (merge)
ALTER TABLE pgrepl.capture ADD COLUMN IF NOT EXISTS deltacols text[] NOT NULL DEFAULT '{}';
ALTER TABLE pgrepl.capture ADD COLUMN IF NOT EXISTS nettypes text[] NOT NULL DEFAULT '{}';
ALTER TABLE pgrepl.capture ADD COLUMN IF NOT EXISTS track_changed boolean NOT NULL DEFAULT false;
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
-- version 4: on a swap's side, how far the other side's interval (done, pending) is applied here, written in the
-- batch's own transaction: a crash before the other side's position moves does not apply it twice (swap.py)
CREATE TABLE IF NOT EXISTS pgrepl.applied (
    sync        text NOT NULL,
    source      text NOT NULL,
    done        pg_snapshot NOT NULL,
    pending     pg_snapshot NOT NULL,
    cursor      text NOT NULL,
    PRIMARY KEY (sync, source)
);
-- version 5: what is left of the recorded batch (NULL: nothing; else its conflicts, and the tables whose held rows
-- wait, as JSON), and the conflict keys each side resolved in the run (swap.py): a crash redoes only the rest
ALTER TABLE pgrepl.applied ADD COLUMN IF NOT EXISTS todo text;
CREATE TABLE IF NOT EXISTS pgrepl.resolved (
    sync        text NOT NULL,
    run         text NOT NULL,
    tablename   text NOT NULL,
    key         text NOT NULL,
    PRIMARY KEY (sync, run, tablename, key)
);
-- version 6: this side's snapshot when the key was resolved: the other side's pass, whose interval may end later,
-- applies the key's changes made after it (swap.py)
ALTER TABLE pgrepl.resolved ADD COLUMN IF NOT EXISTS seen pg_snapshot;
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
COMMENT ON SCHEMA pgrepl IS 'pgrepl source schema 6';
"""
SOURCE_VERSION = "pgrepl source schema 6"


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

    def regclass(self, conn: psycopg.Connection) -> str:
        """The quoted qualified name, as `::regclass` and to_regclass() read it (a parameter, not SQL text)."""
        return sql.SQL("{}").format(self.ident).as_string(conn)


@dataclass(frozen=True)
class Capture:
    """A captured table in a source database."""
    id: int
    table: TableInfo
    delta_table: str
    keycols: tuple[str, ...] = ()   # the key's columns in the delta store, in key order
    deltacols: tuple[str, ...] = ()     # additive columns: their net changes are n1..nm in the delta store
    nettypes: tuple[str, ...] = ()      # the type of each net change (integers widen: no overflow in a trigger)
    track_changed: bool = False         # the delta store records which columns each update changed (merge)

    @property
    def delta(self) -> sql.Identifier:
        return sql.Identifier(SCHEMA, self.delta_table)

    @property
    def rich(self) -> bool:
        """The delta store has op (and nets, changed): swap's delta columns or merge."""
        return bool(self.deltacols) or self.track_changed


@dataclass(frozen=True)
class Options:
    """What a swap table asks its capture to record beyond keys (catalog: relation.delta_columns, merge)."""
    deltacols: tuple[str, ...] = ()
    track_changed: bool = False


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
    """Creates or upgrades the source schema (idempotent)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('pgrepl.capture'))")
        conn.execute(SOURCE_SCHEMA)


def ensure_current(conn: psycopg.Connection) -> None:
    """Upgrades a source schema left by an older pgrepl; cheap when it is current (runners call it on connect)."""
    version = conn.execute("SELECT obj_description(to_regnamespace('pgrepl'), 'pg_namespace')").fetchone()[0]
    if version != SOURCE_VERSION and has_schema(conn):
        ensure_schema(conn)


# One trigger function per kind of change, each a single INSERT: branching on TG_LEVEL and TG_OP in one function
# cost a third of the capture's overhead per statement (docs/benchmarks.md). The functions are named after the
# capture (capture_<id>, capture_<id>_old...): drop() removes them, and with them their triggers.
CAPTURE_FUNCTIONS = ("", "_old", "_key", "_trunc", "_upd")


def _capture_functions(conn: psycopg.Connection, cap: Capture) -> list[sql.Composed]:
    pkey, delta = cap.table.pkey, cap.delta
    cols = sql.SQL(", ").join(sql.Identifier(k) for k in pkey)
    dcols = sql.SQL(", ").join(sql.Identifier(k) for k in cap.keycols)
    cap_id = cap.id
    bodies = {
        "": sql.SQL("INSERT INTO {delta} ({dcols}) SELECT {cols} FROM new_rows"),          # INSERT, UPDATE
        "_old": sql.SQL("INSERT INTO {delta} ({dcols}) SELECT {cols} FROM old_rows"),      # DELETE
        # an UPDATE changed the key (row trigger): the old key must go away on the targets
        "_key": sql.SQL("INSERT INTO {delta} ({dcols}) VALUES ({old})"),
        "_trunc": sql.SQL("INSERT INTO pgrepl.truncate_log (capture_id) VALUES ({cap_id})"),
    }
    if cap.rich:
        bodies.update(_rich_bodies(conn, cap))
    old = sql.SQL(", ").join(sql.SQL("OLD.{}").format(sql.Identifier(k)) for k in pkey)
    return [sql.SQL(
        "CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
        "SET search_path = pg_catalog, pg_temp AS {body}"
    ).format(fn=sql.Identifier(SCHEMA, f"capture_{cap_id}{suffix}"), body=sql.Literal(
        "BEGIN " + body.format(delta=delta, cols=cols, dcols=dcols, old=old, cap_id=sql.Literal(cap_id)).as_string(conn)
        + "; RETURN NULL; END")) for suffix, body in bodies.items()]


def _rich_bodies(conn: psycopg.Connection, cap: Capture) -> dict[str, sql.SQL]:
    """The functions of a rich capture: each delta row says what the change was (op); an UPDATE's row also
    carries the net change of each delta column (NULL when either value is NULL) and, with track_changed, the
    columns it changed. An UPDATE that changed the key has no old row under its new key: op I, like an insert."""
    keys = cap.table.pkey
    extra_cols = [sql.Identifier(f"n{i + 1}") for i in range(len(cap.deltacols))]
    nets = [sql.SQL("n.{c}::{t} - o.{c}::{t}").format(c=sql.Identifier(c), t=sql.SQL(t))
            for c, t in zip(cap.deltacols, cap.nettypes, strict=True)]
    if cap.track_changed:
        others = [c for c in table_columns(conn, cap.table) if c not in keys]
        extra_cols.append(sql.Identifier("changed"))
        nets.append(sql.SQL("array_remove(ARRAY[{}]::text[], NULL)").format(sql.SQL(", ").join(
            sql.SQL("CASE WHEN n.{c} IS DISTINCT FROM o.{c} THEN {name} END").format(
                c=sql.Identifier(c), name=sql.Literal(c)) for c in others) if others else sql.SQL("")))
    upd = sql.SQL("INSERT INTO {delta} (op, {dcols}{extra}) SELECT CASE WHEN o.{k0} IS NULL THEN 'I' ELSE 'U' END, "
                  "{ncols}{nets} FROM new_rows n LEFT JOIN old_rows o ON {join}").format(
        delta=cap.delta, dcols=sql.SQL(", ").join(sql.Identifier(k) for k in cap.keycols),
        extra=sql.SQL("").join(sql.SQL(", {}").format(c) for c in extra_cols), k0=sql.Identifier(keys[0]),
        ncols=sql.SQL(", ").join(sql.SQL("n.{}").format(sql.Identifier(k)) for k in keys),
        nets=sql.SQL("").join(sql.SQL(", {}").format(n) for n in nets),
        join=sql.SQL(" AND ").join(sql.SQL("o.{k} = n.{k}").format(k=sql.Identifier(k)) for k in keys))
    as_text = upd.as_string(conn).replace("{", "{{").replace("}", "}}")
    return {
        "": sql.SQL("INSERT INTO {delta} (op, {dcols}) SELECT 'I', {cols} FROM new_rows"),
        "_old": sql.SQL("INSERT INTO {delta} (op, {dcols}) SELECT 'D', {cols} FROM old_rows"),
        "_key": sql.SQL("INSERT INTO {delta} (op, {dcols}) VALUES ('K', {old})"),
        "_upd": sql.SQL(as_text),
    }


def table_columns(conn: psycopg.Connection, table: TableInfo) -> dict[str, str]:
    """The columns of TABLE in this database with their types (format_type), in order."""
    rows = conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                        "to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                        (table.regclass(conn),)).fetchall()
    return dict(rows)


# integers widen: the net change of an int column can exceed int, and an overflow would fail the application
_NET_TYPES = {"smallint": "bigint", "integer": "bigint", "bigint": "numeric"}


def check_delta_columns(conn: psycopg.Connection, table: TableInfo, deltacols: Iterable[str]) -> tuple[str, ...]:
    """The net change types of DELTACOLS of TABLE; refused when one is missing, in the key, or has no + and -."""
    cols = table_columns(conn, table)
    nettypes = []
    for c in deltacols:
        if c not in cols:
            raise Refused(f'Table {table.qualname} has no column "{c}" (delta_columns)')
        if c in table.pkey:
            raise Refused(f'Column "{c}" of {table.qualname} is in its key: a key column cannot be a delta column')
        net = _NET_TYPES.get(cols[c], cols[c])
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SELECT NULL::{t} + (NULL::{t}::{n} - NULL::{t}::{n})").format(
                    t=sql.SQL(cols[c]), n=sql.SQL(net)))
        except psycopg.Error:
            raise Refused(f'Column "{c}" of {table.qualname} is of type {cols[c]}, which has no + and -: '
                          "it cannot be a delta column") from None
        nettypes.append(net)
    return tuple(nettypes)


def _reshape(conn: psycopg.Connection, cap: Capture, options: Options) -> Capture:
    """In the caller's transaction: the delta store records what OPTIONS ask (op, net changes, changed columns)
    and the trigger functions write it. Net changes captured before under other delta columns are dropped: the
    keys stay, and such a row counts as a change that is not additive (docs/swap.md)."""
    nettypes = check_delta_columns(conn, cap.table, options.deltacols)
    drops = [sql.SQL("DROP COLUMN IF EXISTS {}").format(sql.Identifier(f"n{i + 1}")) for i in range(len(cap.deltacols))]
    adds = [sql.SQL("ADD COLUMN {} {}").format(sql.Identifier(f"n{i + 1}"), sql.SQL(t)) for i, t in enumerate(nettypes)]
    conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS op \"char\", ADD COLUMN IF NOT EXISTS changed text[]"
                         ).format(cap.delta))
    for step in (drops, adds):
        if step:
            conn.execute(sql.SQL("ALTER TABLE {} {}").format(cap.delta, sql.SQL(", ").join(step)))
    conn.execute("UPDATE pgrepl.capture SET deltacols = %s, nettypes = %s, track_changed = %s WHERE id = %s",
                 (list(options.deltacols), list(nettypes), options.track_changed, cap.id))
    cap = Capture(cap.id, cap.table, cap.delta_table, cap.keycols, options.deltacols, nettypes, options.track_changed)
    install_triggers(conn, cap)
    return cap


def install(conn: psycopg.Connection, table: TableInfo, sync: str, notify: bool = False,
            key_index: bool = False, options: Options | None = None) -> Capture:
    """Captures TABLE for SYNC: delta store and triggers created if absent, subscription recorded. Idempotent.
    key_index: also index the delta store by key, for the lookups of swap syncs (conflicts are found by key).
    options: what the store records beyond keys (a swap's delta columns, merge); None keeps what it records."""
    if not table.pkey:
        raise Refused(f"Table {table.qualname} has no primary key nor usable unique index: it cannot be in a "
                      "pushdelta or swap sync; put it in a fullcopy herd instead")
    ensure_schema(conn)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('pgrepl.capture'))")
        cap = find(conn, table)
        if cap is None:
            keycols = tuple(f"k{i + 1}" for i in range(len(table.pkey)))
            cap_id = conn.execute(
                "INSERT INTO pgrepl.capture (schemaname, relname, delta_table, pkey, pktype, keycols, relid) "
                "VALUES (%s, %s, '', %s, %s, %s, to_regclass(%s)) RETURNING id",
                (table.schemaname, table.relname, list(table.pkey), list(table.pktype), list(keycols),
                 table.regclass(conn))).fetchone()[0]
            cap = Capture(cap_id, table, f"delta_{cap_id}", keycols)
            conn.execute("UPDATE pgrepl.capture SET delta_table = %s WHERE id = %s", (cap.delta_table, cap_id))
            keydefs = sql.SQL(", ").join(
                sql.SQL("{} {} NOT NULL").format(sql.Identifier(k), sql.SQL(t)) for k, t in zip(keycols, table.pktype, strict=True))
            keys = sql.SQL(", ").join(sql.Identifier(k) for k in keycols)
            conn.execute(sql.SQL(
                "CREATE TABLE {delta} (txid xid8 NOT NULL DEFAULT pg_current_xact_id(), "
                "captured timestamptz NOT NULL DEFAULT now(), origin text, {keydefs})"
            ).format(delta=cap.delta, keydefs=keydefs))
            conn.execute(sql.SQL("CREATE INDEX {} ON {} (txid, {})").format(
                sql.Identifier(f"{cap.delta_table}_txid"), cap.delta, keys))
            install_triggers(conn, cap)
        conn.execute("INSERT INTO pgrepl.subscription (capture_id, sync) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                     (cap.id, sync))
        if key_index:
            conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({}, txid)").format(
                sql.Identifier(f"{cap.delta_table}_key"), cap.delta,
                sql.SQL(", ").join(sql.Identifier(k) for k in cap.keycols)))
        if options is not None and (cap.deltacols, cap.track_changed) != (options.deltacols, options.track_changed):
            cap = _reshape(conn, cap, options)
        _set_notify_trigger(conn, cap, notify)
    return cap


def install_triggers(conn: psycopg.Connection, cap: Capture) -> None:
    """(Re)creates the capture's trigger functions and triggers, in the caller's transaction. Triggers left from
    before (some dropped, some disabled) go first with their functions: the runner owns those, not the table."""
    table = cap.table
    for suffix in CAPTURE_FUNCTIONS:
        conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}() CASCADE").format(
            sql.Identifier(SCHEMA, f"capture_{cap.id}{suffix}")))
    for ddl in _capture_functions(conn, cap):
        conn.execute(ddl)
    fn = {f"fn{suffix}": sql.Identifier(SCHEMA, f"capture_{cap.id}{suffix}") for suffix in CAPTURE_FUNCTIONS}
    changed_key = sql.SQL(" OR ").join(
        sql.SQL("OLD.{k} IS DISTINCT FROM NEW.{k}").format(k=sql.Identifier(k)) for k in table.pkey)
    # a rich capture's UPDATE function compares each row before and after (net changes, changed columns)
    upd = ("REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {fn_upd}()"
           if cap.rich else "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {fn}()")
    for ddl in (
        "CREATE TRIGGER pgrepl_capture_ins AFTER INSERT ON {t} REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION {fn}()",
        "CREATE TRIGGER pgrepl_capture_upd AFTER UPDATE ON {t} " + upd,
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


def unsubscribe(conn: psycopg.Connection, sync: str) -> list[str]:
    """Removes SYNC's subscriptions, consumers and what a swap recorded on this side (applied, resolved); drops the
    triggers and delta store of every table no sync reads any more. Returns the tables whose capture was removed."""
    if not has_schema(conn):
        return []
    ensure_current(conn)
    removed = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('pgrepl.capture'))")
        for table in ("consumer", "subscription", "applied", "resolved"):
            conn.execute(sql.SQL("DELETE FROM {} WHERE sync = %s").format(sql.Identifier(SCHEMA, table)), (sync,))
        for cap in captures(conn):
            if not conn.execute("SELECT 1 FROM pgrepl.subscription WHERE capture_id = %s", (cap.id,)).fetchone():
                drop(conn, cap)
                removed.append(cap.table.qualname)
    return removed


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
    ensure_current(conn)
    rows = conn.execute("SELECT id, schemaname, relname, delta_table, pkey, pktype, coalesce(keycols, pkey), "
                        "deltacols, nettypes, track_changed FROM pgrepl.capture ORDER BY id")
    return [Capture(i, TableInfo(s, r, "table", tuple(pk), tuple(pt)), d, tuple(kc), tuple(dc), tuple(nt), tc)
            for i, s, r, d, pk, pt, kc, dc, nt, tc in rows]


def find(conn: psycopg.Connection, table: TableInfo) -> Capture | None:
    return next((c for c in captures(conn) if (c.table.schemaname, c.table.relname) ==
                 (table.schemaname, table.relname)), None)


def triggers_on(conn: psycopg.Connection, table: TableInfo) -> list[str]:
    """Names of pgrepl triggers on a table (for checks and tests)."""
    rows = conn.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND tgname LIKE 'pgrepl%%' ORDER BY 1",
        (table.regclass(conn),)).fetchall()
    return [r[0] for r in rows]
