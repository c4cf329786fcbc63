"""Rows applied in place on a master (swap, docs/swap.md): the winning rows are staged in a temporary table, then
per table one UPDATE for the keys that exist, one INSERT for the others, one DELETE for the keys whose winner is
a deletion. Never DELETE + INSERT of a row that stays: an application's UPDATE waiting on the row (behind the
run's lock) re-reads it when the run commits and updates the new version; a deleted row would make it find
nothing, and the application's write would be lost without a trace (its capture trigger never fires).

Two cases still replace rows: a GENERATED ALWAYS identity column outside the key whose value differs (an UPDATE
may not set it), and a table with other unique constraints (or exclusion constraints) when the UPDATE hits a
transient violation, e.g. two rows of one batch swapping a unique value (PostgreSQL checks a non-deferrable
unique index row by row, while DELETE then INSERT never holds both values): that table's batch is then applied
as DELETE + INSERT, from a savepoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from . import apply, relay, sqltext
from .apply import Counts
from .capture import TableInfo
from .delta import Batch

# A table's rows are staged in a temporary table dropped at commit (never a DROP TABLE, whose command status makes
# psycopg forget, and DEALLOCATE, every prepared statement of the connection), named after the table and columns
# so that the statements around it keep one text per shape (composed once: sqltext; prepared by psycopg).
_STAGES: dict[tuple[TableInfo, tuple[str, ...]], sql.Identifier] = {}


def _stage(t: TableInfo, cols: tuple[str, ...]) -> sql.Identifier:
    found = _STAGES.get((t, cols))
    if found is None:   # qualified: never a table of the application
        found = _STAGES[t, cols] = sql.Identifier("pg_temp", f"pgrepl_stage_{len(_STAGES) + 1}")
    return found


@dataclass
class Shape:
    """What writing a table's rows in place needs to know of it on one side, read once per run (shapes)."""
    cols: list[str]        # the columns COPY can write (apply.columns)
    identity: list[str]    # GENERATED ALWAYS identity columns outside the key
    unique: bool           # a unique or exclusion index besides the key's


def shapes(conn: psycopg.Connection, tables: list[TableInfo]) -> dict[str, Shape]:
    """The Shape of every table of TABLES on CONN, by qualified name, in one round trip."""
    names = [t.regclass(conn) for t in tables]
    found = {r[0]: r[1:] for r in conn.execute(
        "SELECT n.name, array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attgenerated = ''), "
        "coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attidentity = 'a'), '{}'), "
        "(SELECT count(*) FROM pg_index i WHERE i.indrelid = to_regclass(n.name) "
        " AND (i.indisunique OR i.indisexclusion)) > 1 "
        "FROM unnest(%s::text[]) AS n(name) LEFT JOIN pg_attribute a ON a.attrelid = to_regclass(n.name) "
        "AND a.attnum > 0 AND NOT a.attisdropped GROUP BY n.name", (names,))}
    out = {}
    for t, name in zip(tables, names, strict=True):
        cols, identity, unique = found.get(name) or (None, [], False)
        if not cols:
            raise psycopg.errors.UndefinedTable(f"table {t.qualname} does not exist")
        out[t.qualname] = Shape(cols, [c for c in identity if c not in t.pkey], unique)
    return out


def apply_rows(tgt: psycopg.Connection, batch: Batch, cols: list[str], fill: Callable[[str], None],
               shape: Shape | None = None) -> Counts:
    """In the caller's transaction on TGT (session_replication_role = replica): every key of BATCH takes the
    row that FILL(into) writes into the stage (INTO, text: `pg_temp.pgrepl_stage_N (cols)`), or is deleted when
    the batch says it is not present. COLS: the columns to write (apply.columns); SHAPE: the table's on TGT (read
    when None)."""
    t = batch.capture.table
    return apply_all(tgt, [(batch, cols, shape or shapes(tgt, [t])[t.qualname])], [fill])


def apply_all(tgt: psycopg.Connection, items: list[tuple[Batch, list[str], Shape]],
              fills: list[Callable[[str], None]]) -> Counts:
    """apply_rows of several tables (ITEMS: batch, columns, shape; FILLS: each one's), in three round trips for
    all of them besides their copies: the stages made ready, then each filled, then the writes of the tables that
    take one statement (_write) in one statement for all; the others' writes follow, table by table."""
    stages = [_stage(batch.capture.table, tuple(cols)) for batch, cols, _ in items]
    # one simple-protocol string: each stage created, or emptied when the caller's transaction staged it already
    tgt.execute("; ".join(_stage_text(tgt, batch.capture.table, cols) for batch, cols, _ in items))
    for (batch, cols, _), fill in zip(items, fills, strict=True):
        if batch.existing:
            fill(_into_text(tgt, batch.capture.table, cols))
    simple = [(batch, cols, stage) for (batch, cols, shape), stage in zip(items, stages, strict=True)
              if not shape.identity and not shape.unique]
    counts = _write(tgt, simple) if simple else Counts()
    for (batch, cols, shape), stage in zip(items, stages, strict=True):
        if shape.identity or shape.unique:
            counts += _write_each(tgt, batch, cols, stage, shape)
    return counts


def _stage_text(tgt: psycopg.Connection, t: TableInfo, cols: list[str]) -> str:
    key = (t, tuple(cols))
    return sqltext.text(tgt, ("stage", *key), lambda: sql.SQL(
        "CREATE TEMP TABLE IF NOT EXISTS {s} ON COMMIT DROP AS SELECT {cols} FROM {t} WITH NO DATA; "
        "DELETE FROM {s}").format(s=_stage(*key), cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols), t=t.ident))


def _into_text(tgt: psycopg.Connection, t: TableInfo, cols: list[str]) -> str:
    """The stage and its columns, as a COPY or an INSERT into it names them."""
    key = (t, tuple(cols))
    return sqltext.text(tgt, ("into", *key), lambda: sql.SQL("{s} ({cols})").format(
        s=_stage(*key), cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols)))


def _write_each(tgt: psycopg.Connection, batch: Batch, cols: list[str], stage: sql.Identifier, shape: Shape
                ) -> Counts:
    """A table with identity columns or other unique indexes: DELETE, then UPDATE and INSERT (or the fallbacks)."""
    t = batch.capture.table
    counts = Counts(deletes=tgt.execute(_delete_sql(t), apply.key_params(batch)).rowcount)
    if batch.existing:
        if shape.unique:
            try:
                with tgt.transaction():   # a savepoint: only tables that can hit a transient violation pay it
                    counts += _upsert(tgt, t, cols, shape.identity, stage)
            except (psycopg.errors.UniqueViolation, psycopg.errors.ExclusionViolation):
                counts += _replace(tgt, t, cols, stage)
        else:
            counts += _upsert(tgt, t, cols, shape.identity, stage)
    return counts


def _delete_sql(t: TableInfo, prefix: str = "") -> sql.Composed:
    """The batch's keys that are no longer present (apply.keys_relation's parameters, and their PREFIX)."""
    return sql.SQL("DELETE FROM {t} AS t USING {keys} WHERE {join} AND NOT k.present").format(
        t=t.ident, keys=apply.keys_relation(t, True, prefix=prefix), join=apply.key_join("t", t.pkey))


def _on_key(t: TableInfo, left: str, right: str) -> sql.Composed:
    return sql.SQL(" AND ").join(sql.SQL("{l}.{c} = {r}.{c}").format(l=sql.Identifier(left), r=sql.Identifier(right),
                                                                      c=sql.Identifier(c)) for c in t.pkey)


def _insert_missing_sql(t: TableInfo, cols: list[str], stage: sql.Identifier) -> sql.Composed:
    """The staged rows whose key the table lacks, identity columns as staged (the winner's values)."""
    return sql.SQL(
        "INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE SELECT {scols} FROM {s} AS s "
        "WHERE NOT EXISTS (SELECT FROM {t} AS x WHERE {on})").format(
        t=t.ident, cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols),
        scols=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in cols),
        s=stage, on=_on_key(t, "x", "s"))


def _update_sql(t: TableInfo, cols: list[str], stage: sql.Identifier) -> sql.Composed | None:
    """The rows of the table whose key is staged take the staged values of COLS but the key's; None when there
    are none (a table of key columns only: a row that exists is already right)."""
    sets = [sql.SQL("{c} = s.{c}").format(c=sql.Identifier(c)) for c in cols if c not in t.pkey]
    if not sets:
        return None
    return sql.SQL("UPDATE {t} AS t SET {sets} FROM {s} AS s WHERE {on}").format(
        t=t.ident, sets=sql.SQL(", ").join(sets), s=stage, on=_on_key(t, "t", "s"))


def _insert_missing(tgt: psycopg.Connection, t: TableInfo, cols: list[str], stage: sql.Identifier) -> int:
    return tgt.execute(_insert_missing_sql(t, cols, stage)).rowcount


def _write(tgt: psycopg.Connection, items: list[tuple[Batch, list[str], sql.Identifier]]) -> Counts:
    """For every table of ITEMS (batch, columns, stage): DELETE, UPDATE and INSERT, all in one statement (one round
    trip). They touch disjoint keys (the deleted ones are not staged, and the INSERT takes the staged keys the table
    lacks), so none needs to see another's rows; each table has its own three."""
    def build() -> sql.Composed:
        ctes, counts = [], []
        for n, (batch, cols, stage) in enumerate(items):
            t = batch.capture.table
            update = _update_sql(t, cols, stage)
            d, u, i = (sql.Identifier(f"{x}{n}") for x in "dui")
            ctes += [sql.SQL("{} AS ({} RETURNING 1)").format(d, _delete_sql(t, f"t{n}_")),
                     sql.SQL("{} AS ({})").format(u, sql.SQL("{} RETURNING 1").format(update) if update
                                                  else sql.SQL("SELECT 1 WHERE false")),
                     sql.SQL("{} AS ({} RETURNING 1)").format(i, _insert_missing_sql(t, cols, stage))]
            counts += [sql.SQL("(SELECT count(*) FROM {})").format(x) for x in (d, u, i)]
        return sql.SQL("WITH {} SELECT {}").format(sql.SQL(", ").join(ctes), sql.SQL(", ").join(counts))
    params = apply.batches_params([batch for batch, _, _ in items])
    key = ("write", tuple((batch.capture.table, tuple(cols)) for batch, cols, _ in items))
    found = tgt.execute(sqltext.text(tgt, key, build), params).fetchone()
    counts = Counts()
    for n in range(len(items)):
        deleted, updated, inserted = found[3 * n:3 * n + 3]
        counts += Counts(inserts=inserted, updates=updated, deletes=deleted)
    return counts


def _upsert(tgt: psycopg.Connection, t: TableInfo, cols: list[str], identity: list[str], stage: sql.Identifier
            ) -> Counts:
    replaced = 0
    if identity:   # an UPDATE may not set them: rows whose value differs are replaced
        replaced = tgt.execute(sql.SQL("DELETE FROM {t} AS t USING {s} AS s WHERE {on} "
                                       "AND ({ti}) IS DISTINCT FROM ({si})").format(
            t=t.ident, s=stage, on=_on_key(t, "t", "s"),
            ti=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in identity),
            si=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in identity))).rowcount
    update = _update_sql(t, [c for c in cols if c not in identity], stage)
    updated = tgt.execute(update).rowcount if update else 0
    inserted = _insert_missing(tgt, t, cols, stage)
    return Counts(inserts=inserted - replaced, updates=updated + replaced)


def _replace(tgt: psycopg.Connection, t: TableInfo, cols: list[str], stage: sql.Identifier) -> Counts:
    """DELETE + INSERT of every staged row: never a transient unique violation between them."""
    deleted = tgt.execute(sql.SQL("DELETE FROM {t} AS t USING {s} AS s WHERE {on}").format(
        t=t.ident, s=stage, on=_on_key(t, "t", "s"))).rowcount
    inserted = _insert_missing(tgt, t, cols, stage)
    return Counts(inserts=inserted - deleted, updates=deleted)


def apply_batch(src: psycopg.Connection, tgt: psycopg.Connection, batch: Batch, cols: list[str],
                origin: str | None = None, target_capture=None, shape: Shape | None = None) -> Counts:
    """apply.apply_batches of one table, in place: the batch's rows as they are in the caller's source snapshot."""
    t = batch.capture.table
    return apply_batches(src, tgt, [(batch, cols, shape or shapes(tgt, [t])[t.qualname], target_capture)], origin)


def apply_batches(src: psycopg.Connection, tgt: psycopg.Connection, items: list[tuple[Batch, list[str], Shape, object]],
                  origin: str | None = None) -> Counts:
    """apply_batch of several tables (ITEMS: batch, columns, shape on TGT, target capture or None), their round
    trips shared where they can be (apply_all)."""
    def filler(batch: Batch, cols: list[str]) -> Callable[[str], None]:
        key = (batch.capture, tuple(cols))

        def fill(into: str) -> None:
            copy_out = sqltext.text(src, ("copy_out", *key), lambda: apply.copy_out_batch(batch, cols))
            copy_in = sqltext.text(tgt, ("stage_copy_in", *key),
                                   lambda: sql.SQL("COPY {} FROM STDIN").format(sql.SQL(into)))
            relay.stream_copy(src, tgt, copy_out, copy_in, apply.key_params(batch))
        return fill
    counts = apply_all(tgt, [(batch, cols, shape) for batch, cols, shape, _ in items],
                       [filler(batch, cols) for batch, cols, _, _ in items])
    for batch, _, _, target_capture in items:
        if target_capture is not None:
            apply.record_keys(tgt, target_capture, batch, origin)
    return counts


def write_images(tgt: psycopg.Connection, batch: Batch, cols: list[str], images: list[str], chunk: int,
                 shape: Shape | None = None) -> Counts:
    """apply_rows with the rows given as jsonb images (text; the batch's present keys' rows), CHUNK per INSERT."""
    t = batch.capture.table

    def fill(into: str) -> None:
        insert = sqltext.text(tgt, ("stage_images", t, tuple(cols)), lambda: sql.SQL(
            "INSERT INTO {into} SELECT {cols} FROM jsonb_populate_recordset(NULL::{t}, %(rows)s::jsonb)").format(
            into=sql.SQL(into), cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols), t=t.ident))
        for i in range(0, len(images), chunk):
            tgt.execute(insert, {"rows": "[" + ",".join(images[i:i + chunk]) + "]"})
    return apply_rows(tgt, batch, cols, fill, shape)
