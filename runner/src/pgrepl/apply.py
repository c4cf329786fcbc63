"""Apply: move changes from a source database to a target, set-based, in bounded transactions.

pushdelta (and each direction of a swap), one batch of whole source transactions at a time (delta.py):
    source, REPEATABLE READ:  read the batch's keys, table by table (and whether each row still exists), COPY
                              those rows out
    target, one transaction:  session_replication_role = replica (target triggers, ours included, do not fire),
                              for every table of the batch: DELETE the keys, COPY the rows in (a swap writes
                              its masters' rows in place instead: inplace.py)
    source:                   the consumer's cursor moves past the batch (compare-and-set)
A backlog of millions of changes is many such transactions, never one giant one (but a source transaction is
never split), and memory holds one batch of keys and one COPY buffer. Applying a key copies the row as it is now:
applying it twice changes nothing, so a crash between the target's commit and the cursor's move redoes one batch.

fullcopy: per target, one transaction empties every table of the herd and COPYs it whole from one source
snapshot, streamed (never held in memory), then ANALYZE.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from . import capture, delta, relay, sqltext
from .capture import Capture, TableInfo
from .delta import Batch, Interval

log = logging.getLogger("pgrepl.apply")


@dataclass
class Counts:
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    conflicts: int = 0

    def __iadd__(self, other: Counts) -> Counts:
        self.inserts += other.inserts
        self.updates += other.updates
        self.deletes += other.deletes
        self.conflicts += other.conflicts
        return self

    @property
    def total(self) -> int:
        return self.inserts + self.updates + self.deletes


def columns(conn: psycopg.Connection, table: TableInfo) -> list[str]:
    """Columns COPY can write (generated columns excluded), in table order."""
    rows = conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
                        "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
                        (table.regclass(conn),)).fetchall()
    if not rows:
        raise psycopg.errors.UndefinedTable(f"table {table.qualname} does not exist")
    return [r[0] for r in rows]


def columns_of(conn: psycopg.Connection, tables: list[TableInfo]) -> dict[str, list[str]]:
    """columns() of several tables in one round trip, by qualified name."""
    names = [t.regclass(conn) for t in tables]
    rows = conn.execute("SELECT n.name, array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attname IS NOT NULL) "
                        "FROM unnest(%s::text[]) AS n(name) LEFT JOIN pg_attribute a ON a.attrelid = to_regclass(n.name) "
                        "AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' GROUP BY n.name",
                        (names,)).fetchall()
    found = dict(rows)
    for t, name in zip(tables, names, strict=True):
        if not found.get(name):
            raise psycopg.errors.UndefinedTable(f"table {t.qualname} does not exist")
    return {t.qualname: found[name] for t, name in zip(tables, names, strict=True)}


# Planner settings of the batch transactions. Batches look a few thousand keys up in tables that always have a
# unique index on them: probing it key by key takes milliseconds, while the planner, costing each probe as a
# random read, often hashes or merges the whole table instead (seconds on a million rows). The next batch of a
# delta store must come from its (txid, key) index in order, stopping after `batch_size` rows, not from a bitmap
# scan of the whole interval sorted again for every batch. JIT compiling costs more than such short queries take.
_KEY_LOOKUPS = ("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; "
                "SET LOCAL enable_bitmapscan = off; SET LOCAL jit = off")


# A target transaction: applied rows fire none of the target's ordinary triggers (its foreign keys, its captures).
_REPLICA = "SET LOCAL session_replication_role = replica; " + _KEY_LOOKUPS
# A source transaction: every read of a batch sees one snapshot.
_READ = "ISOLATION LEVEL REPEATABLE READ, READ ONLY"


def begin_replica(tgt: psycopg.Connection) -> None:
    tgt.execute(_REPLICA)


@contextmanager
def _transaction(conn: psycopg.Connection, begin: str) -> Iterator[psycopg.Cursor]:
    """A transaction on an autocommit connection whose BEGIN, settings and first query go in one round trip (one
    simple-protocol string: psycopg's transaction() sends its BEGIN alone first). Committed on exit, rolled back
    on an exception; yields the cursor on the string's last result."""
    try:
        cur = conn.execute(begin)
        while cur.nextset():
            pass
        yield cur
    except BaseException:
        try:
            conn.rollback()
        except psycopg.OperationalError:
            pass   # the connection is gone, and its transaction with it
        raise
    conn.commit()


def replica_transaction(tgt: psycopg.Connection) -> AbstractContextManager[psycopg.Cursor]:
    """The target transaction of a batch, begun and set up (begin_replica) in one round trip."""
    return _transaction(tgt, "BEGIN; " + _REPLICA)


def read_transaction(src: psycopg.Connection) -> AbstractContextManager[psycopg.Cursor]:
    """A source transaction (repeatable_read) begun and set up in one round trip."""
    return _transaction(src, f"BEGIN {_READ}; {_KEY_LOOKUPS}")


def snapshot_transaction(src: psycopg.Connection) -> AbstractContextManager[psycopg.Cursor]:
    """The source transaction of a batch (repeatable_read), begun in one round trip with its snapshot's first
    query: the cursor holds `pg_current_snapshot()`, the snapshot every read of the transaction sees."""
    return _transaction(src, f"BEGIN {_READ}; {_KEY_LOOKUPS}; SELECT pg_current_snapshot()::text")


def key_params(batch: Batch, prefix: str = "") -> dict:
    """The parameters of keys_relation(with_present=True) for BATCH's keys (and the placeholders' PREFIX)."""
    params = {f"{prefix}k{i}": a for i, a in enumerate(batch.arrays)}
    params[f"{prefix}present"] = batch.present
    return params


def batches_params(batches: list[Batch]) -> dict:
    """key_params of every batch of BATCHES, the i-th prefixed `t{i}_`: one statement over several tables' keys."""
    params = {}
    for i, batch in enumerate(batches):
        params.update(key_params(batch, prefix=f"t{i}_"))
    return params


def key_arrays(table: TableInfo, keys: list[tuple[str, ...]], prefix: str = "") -> dict:
    """The parameters of keys_relation(with_present=False) for KEYS, tuples of their columns' text (and PREFIX)."""
    return {f"{prefix}k{i}": delta.array_literal(k[i] for k in keys) for i in range(len(table.pkey))}


def batch_key_arrays(parts: list[tuple[TableInfo, list[tuple[str, ...]]]]) -> dict:
    """key_arrays of every table of PARTS, the i-th prefixed `t{i}_` (a table without keys joins an empty array)."""
    params = {}
    for i, (t, keys) in enumerate(parts):
        params.update(key_arrays(t, keys, prefix=f"t{i}_"))
    return params


def keys_relation(table: TableInfo, with_present: bool, seen: bool = False, prefix: str = "") -> sql.Composed:
    """`(SELECT * FROM unnest(%(k0)s::type0[], ...) AS u(k0, ...)) AS k`: the batch's keys, from one array literal
    per key column (and the `present` flags, or a snapshot per key: `seen`). Its columns are named k0, k1... (and
    present, seen), never after the table's own columns, so no key column name can clash with them. PREFIX: of the
    placeholders' names (one statement over several tables' keys)."""
    more = [("present", "bool")] if with_present else []
    more += [("seen", "pg_snapshot")] if seen else []
    names = [f"k{i}" for i in range(len(table.pkey))] + [name for name, _ in more]
    arrays = sql.SQL(", ").join([*(sql.SQL("{}::{}[]").format(sql.Placeholder(f"{prefix}k{i}"), sql.SQL(typ))
                                   for i, typ in enumerate(table.pktype)),
                                 *(sql.SQL("{}::{}[]").format(sql.Placeholder(prefix + name), sql.SQL(typ))
                                   for name, typ in more)])
    return sql.SQL("(SELECT * FROM unnest({arrays}) AS u({names})) AS k").format(
        arrays=arrays, names=sql.SQL(", ").join(sql.Identifier(n) for n in names))


def key_join(left: str, cols: tuple[str, ...] | list[str]) -> sql.Composed:
    """LEFT.cols[i] = k.k{i}: a relation's key columns against the batch's keys (keys_relation)."""
    return sql.SQL(" AND ").join(sql.SQL("{}.{} = k.{}").format(sql.Identifier(left), sql.Identifier(c),
                                                                sql.Identifier(f"k{i}"))
                                 for i, c in enumerate(cols))


def apply_batches(src: psycopg.Connection, tgt: psycopg.Connection, batches: list[Batch], cols: list[list[str]],
                  origin: str | None = None, target_captures: list[Capture | None] | None = None) -> Counts:
    """In the caller's source (REPEATABLE READ) and target transactions, for every table of BATCHES (COLS: each
    one's columns): delete the batch's keys on the target, all tables in one statement, then copy their current
    rows from the source. With a target capture (makedelta), a table's keys are also recorded in the target's delta
    store, marked with ORIGIN, so that other syncs reading the target pass them on."""
    tables = tuple(batch.capture.table for batch in batches)

    def build() -> sql.Composed:
        ctes = [sql.SQL("{d} AS (DELETE FROM {t} AS t USING {keys} WHERE {join} RETURNING k.present)").format(
            d=sql.Identifier(f"d{i}"), t=t.ident, keys=keys_relation(t, True, prefix=f"t{i}_"),
            join=key_join("t", t.pkey)) for i, t in enumerate(tables)]
        counts = [sql.SQL("(SELECT count(*) FILTER (WHERE present) FROM {d}), "
                          "(SELECT count(*) FILTER (WHERE NOT present) FROM {d})").format(d=sql.Identifier(f"d{i}"))
                  for i in range(len(tables))]
        return sql.SQL("WITH {} SELECT {}").format(sql.SQL(", ").join(ctes), sql.SQL(", ").join(counts))
    found = tgt.execute(sqltext.text(tgt, ("delete", tables), build), batches_params(batches)).fetchone()
    counts = Counts()
    for i, (batch, columns, target_capture) in enumerate(zip(batches, cols, target_captures or [None] * len(batches),
                                                             strict=True)):
        copied = _copy_batch(src, tgt, batch, columns) if batch.existing else 0
        if target_capture is not None:
            record_keys(tgt, target_capture, batch, origin)
        updated, deleted = found[2 * i:2 * i + 2]
        counts += Counts(inserts=copied - updated, updates=updated, deletes=deleted)
    return counts


def _copy_batch(src: psycopg.Connection, tgt: psycopg.Connection, batch: Batch, cols: list[str]) -> int:
    """The batch's rows, as they are in the source's snapshot, copied into the target table."""
    t, shape = batch.capture.table, (batch.capture, tuple(cols))
    copy_out = sqltext.text(src, ("copy_out", *shape), lambda: copy_out_batch(batch, cols))
    copy_in = sqltext.text(tgt, ("copy_in", *shape), lambda: sql.SQL("COPY {t} ({cols}) FROM STDIN").format(
        t=t.ident, cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols)))
    return relay.stream_copy(src, tgt, copy_out, copy_in, key_params(batch))


def copy_out_batch(batch: Batch, cols: list[str]) -> sql.Composed:
    """COPY of the batch's rows on the source (key_params(batch) as its parameters)."""
    t = batch.capture.table
    return sql.SQL("COPY (SELECT {scols} FROM {t} s JOIN {keys} ON {join}) TO STDOUT").format(
        scols=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in cols),
        t=t.ident, keys=keys_relation(t, False), join=key_join("s", t.pkey))


def record_keys(conn: psycopg.Connection, cap: Capture, batch: Batch, origin: str | None) -> None:
    """Writes the batch's keys into a delta store, as the capture triggers would (cascades, `makedelta`)."""
    t = cap.table
    conn.execute(sql.SQL("INSERT INTO {delta} (origin, {cols}) SELECT %(origin)s, {keys} FROM {rel}").format(
        delta=cap.delta, cols=sql.SQL(", ").join(sql.Identifier(c) for c in cap.keycols),
        keys=sql.SQL(", ").join(sql.SQL("k.{}").format(sql.Identifier(f"k{i}")) for i in range(len(t.pkey))),
        rel=keys_relation(t, False)), {**key_params(batch), "origin": origin})


def repeatable_read(conn: psycopg.Connection) -> None:
    conn.execute(f"SET TRANSACTION {_READ}; {_KEY_LOOKUPS}")


def copy_table(src: psycopg.Connection, tgt: psycopg.Connection, table: TableInfo, cols: list[str],
               delete_method: str = "delete", on_rows: Callable[[int], None] | None = None) -> Counts:
    """Empties TABLE on the target and copies it whole, inside the caller's transactions."""
    if delete_method == "truncate":
        deleted = tgt.execute(sql.SQL("SELECT count(*) FROM {}").format(table.ident)).fetchone()[0]
        tgt.execute(sql.SQL("TRUNCATE {}").format(table.ident))
    else:
        deleted = tgt.execute(sql.SQL("DELETE FROM {}").format(table.ident)).rowcount
    collist = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
    form = relay.copy_format(src, tgt, table, cols)
    rows = sql.SQL("{} ({})").format(table.ident, collist)
    if src.execute("SELECT EXISTS (SELECT FROM pg_class WHERE oid = to_regclass(%s) AND relkind = 'p')",
                   (table.regclass(src),)).fetchone()[0]:
        # PostgreSQL refuses `COPY parent TO`: the rows of a partitioned table are read through a query
        rows = sql.SQL("(SELECT {} FROM {})").format(collist, table.ident)
    copied = relay.stream_copy(src, tgt, sql.SQL("COPY {} TO STDOUT (FORMAT {})").format(rows, sql.SQL(form)),
                               sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(table.ident, collist, sql.SQL(form)),
                               on_rows=on_rows, binary=form == "binary")
    return Counts(inserts=copied, deletes=deleted)


def full_copy(src: psycopg.Connection, tgt: psycopg.Connection, tables: list[TableInfo],
              delete_method: str = "delete", only_empty: bool = False,
              analyze: bool = True, on_rows: Callable[[int], None] | None = None,
              on_total: Callable[[int], None] | None = None) -> tuple[Counts, str, list[TableInfo]]:
    """Copies TABLES whole from one source snapshot, in one target transaction. Returns the counts, the source
    snapshot (every change visible in it is now on the copied tables) and the tables skipped. only_empty: skip
    tables that have rows on the target (onetimecopy=2). on_total(rows) hears the planner's estimate of the rows
    to copy, on_rows(n) of rows as they are copied, and on_rows(0) at the end of each table (progress)."""
    counts = Counts()
    copied: list[TableInfo] = []
    skipped: list[TableInfo] = []
    with src.transaction():
        repeatable_read(src)
        snapshot = src.execute("SELECT pg_current_snapshot()::text").fetchone()[0]
        if on_total is not None:
            on_total(estimate_rows(src, tables))
        with tgt.transaction():
            begin_replica(tgt)
            for t in tables:
                if only_empty and tgt.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(t.ident)).fetchone()[0]:
                    skipped.append(t)
                    continue
                counts += copy_table(src, tgt, t, columns(src, t), delete_method, on_rows)
                copied.append(t)
                if on_rows is not None:
                    on_rows(0)   # a table is done: a good moment to say so
    if analyze:
        for t in copied:
            analyze_table(tgt, t)
    return counts, snapshot, skipped


def estimate_rows(conn: psycopg.Connection, tables: list[TableInfo]) -> int:
    """The planner's row count of TABLES (a partitioned one: its partitions'), without reading them."""
    return conn.execute(
        "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint FROM pg_class c WHERE c.relkind <> 'p' AND c.oid IN "
        "(SELECT r FROM unnest(%(rels)s::regclass[]) r UNION ALL "
        " SELECT t.relid FROM unnest(%(rels)s::regclass[]) r, pg_partition_tree(r) t WHERE t.isleaf)",
        {"rels": [t.regclass(conn) for t in tables]}).fetchone()[0]


def analyze_table(conn: psycopg.Connection, table: TableInfo) -> None:
    """ANALYZE after a bulk load; a role that does not own the table gets a warning from PostgreSQL, not an error."""
    try:
        conn.execute(sql.SQL("ANALYZE {}").format(table.ident))
    except psycopg.Error as e:  # never fail a good copy because statistics could not be refreshed
        log.warning("ANALYZE %s failed: %s", table.qualname, str(e).strip())


def copy_sequences(src: psycopg.Connection, tgt: psycopg.Connection, seqs: list[TableInfo]) -> int:
    """The source's sequence positions onto the target (pushdelta, fullcopy). Returns how many were set."""
    n = 0
    for s in seqs:
        last, called = src.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(s.ident)).fetchone()
        tgt.execute("SELECT setval(%s::regclass, %s, %s)", (s.regclass(tgt), last, called))
        n += 1
    return n


def push_interval(src: psycopg.Connection, tgt: psycopg.Connection, iv: Interval, caps: list[Capture],
                  batch_size: int, origin: str | None = None, makedelta: bool = False,
                  delete_method: str = "delete", should_stop: Callable[[], bool] = lambda: False,
                  on_batch: Callable[[Counts], None] = lambda c: None) -> tuple[Counts, bool]:
    """Applies every change of the interval to the target, batch by batch, resuming after iv.cursor. Each batch
    is whole source transactions across every table, in one target transaction; tables truncated in the interval
    are copied whole by the first batch. Returns (counts, finished); finished: every change is applied and the
    interval closed (its last batch closes it at once: one source commit fewer than a cursor then a close);
    False when should_stop() asked to stop between batches."""
    counts = Counts()
    tgt_caps = {}
    if makedelta and capture.has_schema(tgt):
        tgt_caps = {(c.table.schemaname, c.table.relname): c for c in capture.captures(tgt)}
    by_name = columns_of(src, [cap.table for cap in caps])
    cols = {cap.id: by_name[cap.table.qualname] for cap in caps}
    truncated: set[int] | None = None
    while not should_stop():
        batch_counts = Counts()
        with snapshot_transaction(src) as now:
            delta.start_interval(src, iv, now.fetchone()[0])
            if truncated is None:   # the first batch: which tables were truncated, its cut and keys, in one look
                truncated, upto, last, batches = delta.first_batch(src, iv, caps, batch_size)
                by_key = [c for c in caps if c.id not in truncated]
                if truncated:
                    upto, last, batches = delta.next_batch(src, iv, by_key, batch_size)
            else:
                upto, last, batches = delta.next_batch(src, iv, by_key, batch_size)
            whole = [c for c in caps if c.id in truncated] if iv.cursor is None else []
            if upto is None and not whole:
                last = True   # nothing (more) to apply: the interval closes, recorded or not
            else:
                with replica_transaction(tgt):
                    for cap in whole:
                        tcap = tgt_caps.get((cap.table.schemaname, cap.table.relname))
                        batch_counts += copy_table(src, tgt, cap.table, cols[cap.id], delete_method)
                        if tcap is not None:  # the whole table changed: cascade it as a truncate
                            tgt.execute("INSERT INTO pgrepl.truncate_log (capture_id, origin) VALUES (%s, %s)",
                                        (tcap.id, origin))
                    todo = [(cap, batch) for cap, batch in zip(by_key, batches, strict=True) if batch is not None]
                    if todo:
                        batch_counts += apply_batches(
                            src, tgt, [batch for _, batch in todo], [cols[cap.id] for cap, _ in todo], origin,
                            [tgt_caps.get((cap.table.schemaname, cap.table.relname)) for cap, _ in todo])
            # the target has committed: the source's read-only transaction ends and the position moves, in one
            # round trip (a crash in between redoes the batch, which changes nothing)
            if last:
                delta.close_interval(src, iv, commit=True)
            else:
                delta.advance(src, iv, [upto or ""], commit=True)
        counts += batch_counts
        on_batch(batch_counts)
        if last:
            return counts, True
    return counts, False
