"""What a swap run reads and writes on one side (swap.py): its rows locked by key (waiting, or skipping the
ones another transaction holds), the keys changed there since its last run and when, its last truncate, row
images written in place; and the conflict journal: its writes, and its reads and purge for the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from . import apply, catalog, delta, inplace, sqltext
from .apply import Counts
from .capture import Capture, TableInfo
from .delta import Batch
from .errors import PgreplError

if TYPE_CHECKING:
    from .swap import Side


# --- SQL on one side -----------------------------------------------------------------------------------------

def key_text(cols: tuple[str, ...], alias: str) -> sql.Composed:
    """The key columns COLS of ALIAS as text, the form keys take in Python."""
    return sql.SQL(", ").join(_key_texts(cols, alias))


def _key_texts(cols: tuple[str, ...], alias: str) -> list[sql.Composed]:
    return [sql.SQL("{}.{}::text").format(sql.Identifier(alias), sql.Identifier(k)) for k in cols]


def lock_rows(conn: psycopg.Connection, table: TableInfo, keys: list[tuple[str, ...]], images: bool = False,
              lock: bool = True, skip_locked: bool = False) -> dict[tuple[str, ...], str]:
    """Locks the existing rows of KEYS (FOR UPDATE, in key order: writers wait, no deadlock between our own
    batches; skip_locked: rows another transaction holds are left out); with images, returns each row as jsonb
    text by key (a missing key: the row does not exist, or was skipped). lock=False: only reads."""
    if not keys:
        return {}
    q = sqltext.text(conn, ("lock_rows", table, images, lock, skip_locked), lambda: sql.SQL(
        "SELECT {keytext}, {image} FROM {t} x JOIN {keys} ON {join} ORDER BY {order} {lock}").format(
        keytext=key_text(table.pkey, "x"), image=sql.SQL("to_jsonb(x.*)::text" if images else "NULL"), t=table.ident,
        keys=apply.keys_relation(table, False), join=apply.key_join("x", table.pkey),
        order=sql.SQL(", ").join(sql.SQL("x.{}").format(sql.Identifier(k)) for k in table.pkey),
        lock=sql.SQL(("FOR UPDATE OF x SKIP LOCKED" if skip_locked else "FOR UPDATE OF x") if lock else "")))
    return {tuple(r[:-1]): r[-1] for r in conn.execute(q, apply.key_arrays(table, keys))}


def lock_skipping(conn: psycopg.Connection, table: TableInfo, keys: list[tuple[str, ...]], images: bool = False
                  ) -> tuple[dict[tuple[str, ...], str | None], set[tuple[str, ...]]]:
    """lock_rows(skip_locked=True), and the keys whose row exists but another transaction holds (skipped), in
    one round trip: (locked rows, held keys)."""
    return lock_batch(conn, [(table, keys)], images)[0]


def lock_batch(conn: psycopg.Connection, parts: list[tuple[TableInfo, list[tuple[str, ...]]]], images: bool = False
               ) -> list[tuple[dict[tuple[str, ...], str | None], set[tuple[str, ...]]]]:
    """lock_skipping of the keys of every table of PARTS, in one statement: each table's rows locked in key
    order, the tables in the order given (as one statement per table did). Per table: (locked rows, as jsonb text
    with IMAGES, else None, by key; held keys)."""
    if not any(keys for _, keys in parts):
        return [({}, set()) for _ in parts]
    tables = tuple(t for t, _ in parts)
    width = max(len(t.pkey) for t in tables)

    def build() -> sql.Composed:
        ctes, branches = [], []
        for i, t in enumerate(tables):
            rows = sql.SQL("SELECT {keytext}, {image} FROM {t} x JOIN {keys} ON {join}").format(
                keytext=delta.padded(_key_texts(t.pkey, "x"), width), t=t.ident,
                image=sql.SQL("to_jsonb(x.*)::text" if images else "NULL::text"),
                keys=apply.keys_relation(t, False, prefix=f"t{i}_"), join=apply.key_join("x", t.pkey))
            ctes.append(sql.SQL("{l} AS MATERIALIZED ({rows} ORDER BY {order} FOR UPDATE OF x SKIP LOCKED)").format(
                l=sql.Identifier(f"l{i}"), rows=rows,
                order=sql.SQL(", ").join(sql.SQL("x.{}").format(sql.Identifier(k)) for k in t.pkey)))
            branches += [sql.SQL("SELECT {i}, true, * FROM {l}").format(i=sql.Literal(i), l=sql.Identifier(f"l{i}")),
                         sql.SQL("SELECT {i}, false, * FROM ({rows}) e").format(i=sql.Literal(i), rows=rows)]
        return sql.SQL("WITH {ctes} {branches}").format(ctes=sql.SQL(", ").join(ctes),
                                                        branches=sql.SQL(" UNION ALL ").join(branches))
    params = apply.batch_key_arrays(parts)
    locked: list[dict] = [{} for _ in parts]
    existing: list[set] = [set() for _ in parts]
    for i, is_locked, *row in conn.execute(sqltext.text(conn, ("lock_batch", tables, images), build), params):
        key = tuple(row[:len(tables[i].pkey)])
        if is_locked:
            locked[i][key] = row[-1]
        else:
            existing[i].add(key)
    return [(lk, ex - set(lk)) for lk, ex in zip(locked, existing, strict=True)]


def _since_done(alias: str) -> sql.Composed:
    """Delta rows committed on a side since its last run (done), not written there by this sync."""
    return sql.SQL("{a}.txid >= pg_snapshot_xmin(%(done)s::pg_snapshot) "
                   "AND NOT pg_visible_in_snapshot({a}.txid, %(done)s::pg_snapshot) "
                   "AND {a}.origin IS DISTINCT FROM %(sync)s").format(a=sql.Identifier(alias))


def changed_since(side: Side, cap: Capture, sync: str, keys: list[tuple[str, ...]]) -> set[tuple[str, ...]]:
    """KEYS changed on SIDE since its last run (in its interval, or after: a change that raced with the run)."""
    return changed_since_batch(side, sync, [(cap, keys)])[0]


def changed_since_batch(side: Side, sync: str, parts: list[tuple[Capture, list[tuple[str, ...]]]]
                        ) -> list[set[tuple[str, ...]]]:
    """changed_since of the keys of every table of PARTS, in one statement; per table."""
    if not any(keys for _, keys in parts):
        return [set() for _ in parts]
    caps = tuple(cap for cap, _ in parts)
    width = max(len(cap.keycols) for cap in caps)
    q = sqltext.text(side.conn, ("changed_since", caps), lambda: sql.SQL(" UNION ALL ").join(
        sql.SQL("(SELECT DISTINCT {i}, {keytext} FROM {delta} d JOIN {keys} ON {join} WHERE {since})").format(
            i=sql.Literal(i), keytext=delta.padded(_key_texts(cap.keycols, "d"), width), delta=cap.delta,
            keys=apply.keys_relation(cap.table, False, prefix=f"t{i}_"), join=apply.key_join("d", cap.keycols),
            since=_since_done("d")) for i, cap in enumerate(caps)))
    params = {"done": side.last_run(), "sync": sync,
              **apply.batch_key_arrays([(cap.table, keys) for cap, keys in parts])}
    found: list[set] = [set() for _ in parts]
    for i, *key in side.conn.execute(q, params):
        found[i].add(tuple(key[:len(caps[i].keycols)]))
    return found


def changed_after(side: Side, cap: Capture, keys: dict[tuple[str, ...], str], upto: str) -> set[tuple[str, ...]]:
    """Of KEYS (key: a snapshot of SIDE), those with a change in SIDE's interval after its cursor and up to UPTO
    that the key's snapshot does not see."""
    if not keys:
        return set()
    t, iv = cap.table, side.iv
    q = sqltext.text(side.conn, ("changed_after", cap, delta.has_cursor(iv)), lambda: sql.SQL(
        "SELECT DISTINCT {keytext} FROM {delta} d JOIN {keys} ON {join} WHERE {interval} {after} "
        "AND d.txid <= %(upto)s::xid8 AND NOT pg_visible_in_snapshot(d.txid, k.seen)").format(
        keytext=key_text(cap.keycols, "d"), delta=cap.delta, keys=apply.keys_relation(t, False, seen=True),
        join=apply.key_join("d", cap.keycols), interval=delta.in_interval("d"), after=delta.after_cursor(iv)))
    params = {**apply.key_arrays(t, list(keys)), "seen": delta.array_literal(keys.values()),
              **delta.interval_params(iv, upto=upto)}
    return {tuple(r) for r in side.conn.execute(q, params)}


def _commit_time(side: Side, alias: str) -> sql.Composed:
    """When a delta row's transaction committed; without track_commit_timestamp, when it started."""
    a = sql.Identifier(alias)
    if side.commit_ts:
        return sql.SQL("coalesce(pg_xact_commit_timestamp(({a}.txid::text::bigint %% 4294967296)::text::xid), "
                       "{a}.captured)").format(a=a)
    return sql.SQL("{a}.captured").format(a=a)


def last_change(side: Side, cap: Capture, sync: str, keys: list[tuple[str, ...]]) -> dict:
    """For each of KEYS, when its last change on SIDE since the last run committed."""
    t = cap.table
    q = sqltext.text(side.conn, ("last_change", cap, side.commit_ts), lambda: sql.SQL(
        "SELECT {keytext}, max({when}) FROM {delta} d JOIN {keys} ON {join} WHERE {since} GROUP BY {group}").format(
        keytext=key_text(cap.keycols, "d"), when=_commit_time(side, "d"), delta=cap.delta,
        keys=apply.keys_relation(t, False), join=apply.key_join("d", cap.keycols), since=_since_done("d"),
        group=sql.SQL(", ").join(sql.SQL("d.{}").format(sql.Identifier(k)) for k in cap.keycols)))
    params = {**apply.key_arrays(t, keys), "done": side.last_run(), "sync": sync}
    return {tuple(r[:-1]): r[-1] for r in side.conn.execute(q, params)}


def last_truncate(side: Side, cap: Capture):
    q = sql.SQL("SELECT max({when}) FROM pgrepl.truncate_log l WHERE l.capture_id = %(id)s AND {interval}").format(
        when=_commit_time(side, "l"), interval=delta.in_interval("l"))
    return side.conn.execute(q, delta.interval_params(side.iv, id=cap.id)).fetchone()[0]


WRITE_CHUNK = 1000   # row images per INSERT: a batch's conflicts are not sent as one unbounded parameter


def write_rows(side: Side, table: TableInfo, rows: list[tuple[tuple[str, ...], str | None]],
               origin: str | None, shape: inplace.Shape) -> Counts:
    """In the caller's transaction on SIDE: each key takes the given row image (jsonb text), or is deleted
    (None), in place (inplace.py). origin: also record the keys in SIDE's delta store (makedelta). SHAPE: the
    table's on SIDE (inplace.shapes)."""
    cap = side.cap(table)
    batch = Batch.of(cap, [key for key, image in rows], [image is not None for key, image in rows])
    counts = inplace.write_images(side.conn, batch, shape.cols,
                                  [image for key, image in rows if image is not None], WRITE_CHUNK, shape)
    if origin is not None:
        apply.record_keys(side.conn, cap, batch, origin)
    return counts


# --- the journal ---------------------------------------------------------------------------------------------

_WINNER_NAMES = {"source": "source", "target": "target", "skip": "none", "abort": "abort", "both": "both"}


def journal_conflicts(control: psycopg.Connection, sync: str, source_db: str, target_db: str, table: TableInfo,
                      rule: str, entries: list) -> None:
    """Records conflicts of TABLE: (key, source row, target row, winner[, rule, source delta, target delta]) each,
    the key typed as in the row images; an abort already journaled with the same rows is not repeated at each
    retry."""
    if not entries:
        return
    control.execute("""
        INSERT INTO pgrepl.conflict (sync, tablename, key, source_db, target_db, source_row, target_row,
                                     rule, winner, source_delta, target_delta)
        SELECT %(sync)s, %(table)s, k.key, %(source_db)s, %(target_db)s, e.source_row, e.target_row,
               coalesce(e.rule, %(rule)s), e.winner, e.source_delta, e.target_delta
          FROM unnest(%(source_rows)s::jsonb[], %(target_rows)s::jsonb[], %(winners)s::text[],
                      %(rules)s::text[], %(source_deltas)s::jsonb[], %(target_deltas)s::jsonb[])
               AS e(source_row, target_row, winner, rule, source_delta, target_delta),
               LATERAL (SELECT jsonb_object_agg(col, coalesce(e.source_row -> col, e.target_row -> col)) AS key
                          FROM unnest(%(pkey)s::text[]) AS col) AS k
         WHERE e.winner <> 'abort' OR NOT EXISTS (
               SELECT 1 FROM pgrepl.conflict c
                WHERE c.sync = %(sync)s AND c.tablename = %(table)s AND c.key = k.key AND c.winner = 'abort'
                  AND c.source_row IS NOT DISTINCT FROM e.source_row
                  AND c.target_row IS NOT DISTINCT FROM e.target_row)""",
                    {"sync": sync, "table": table.qualname, "source_db": source_db, "target_db": target_db,
                     "rule": rule, "pkey": list(table.pkey),
                     "source_rows": [e[1] for e in entries], "target_rows": [e[2] for e in entries],
                     "winners": [_WINNER_NAMES[e[3]] for e in entries],
                     "rules": [e[4] if len(e) > 4 else None for e in entries],
                     "source_deltas": [e[5] if len(e) > 4 else None for e in entries],
                     "target_deltas": [e[6] if len(e) > 4 else None for e in entries]})


def list_conflicts(conn: psycopg.Connection, syncs: list[str]) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM pgrepl.conflict WHERE cardinality(%(s)s::text[]) = 0 OR sync = ANY(%(s)s) "
                           "ORDER BY detected, id", {"s": syncs}).fetchall()


def purge_conflicts(conn: psycopg.Connection, older_than: str) -> int:
    """Deletes journal entries older than the interval; returns how many."""
    interval = catalog.parse_interval(conn, older_than)
    if interval is None:
        raise PgreplError(f'purge conflicts needs an interval such as "30 days", not "{older_than}"')
    return conn.execute("DELETE FROM pgrepl.conflict WHERE detected < now() - %s", (interval,)).rowcount
