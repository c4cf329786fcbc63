"""Reading what was captured: each consumer's position in a source, and the batches of changed keys to apply.

A consumer is one (sync, target) pair; its row in the source's `pgrepl.consumer` holds `done`, a snapshot: every
transaction visible in it is applied on the target. A run takes `pending = pg_current_snapshot()` and applies the
delta rows whose transaction is visible in `pending` and not in `done`: every committed transaction falls into
exactly one such interval, whatever the commit order.

Inside an interval, changes go in batches of whole transactions: a batch takes the next `batch_size` delta rows
in txid order across every table of the sync, plus the rest of the last transaction it reaches, so one source
transaction is applied in one target transaction, all its tables together. The cursor is the txid up to which
the interval is applied; a cursor (even an empty one) also means the interval's first batch, which copies the
tables truncated in the interval, is done.

Positions move by compare-and-set: each update says which interval and cursor it starts from, and a runner that
finds the row moved by someone else stops with LeaseLost instead of skipping changes it never applied.

Sync names on a source are qualified by the control database that runs them ("name@control-id"): two runners with
a sync of the same name on one source keep apart positions, subscriptions and origins.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
from psycopg import postgres, pq, sql
from psycopg.adapt import Transformer

from . import sqltext
from .capture import Capture
from .errors import NotFound, PgreplError


class LeaseLost(PgreplError):
    """The consumer's position was moved by another runner: this one must not go on applying."""


class Busy(PgreplError):
    """Another runner holds the consumer's lease on the source."""


@dataclass
class Interval:
    """Changes visible in `pending` and not in `done`, for one (sync, target); `cursor`: [txid applied up to].
    A new interval's end is the snapshot of its first batch's source transaction, recorded with that batch's
    progress (`recorded`): what one batch copies is then exactly what the interval holds."""
    sync: str
    target: str
    done: str
    pending: str | None
    cursor: list[str] | None
    recorded: bool = True


def lock_consumer(conn: psycopg.Connection, sync: str, target: str) -> None:
    """Takes the consumer's lease on the source: a session-level advisory lock, held while CONN stays open and
    freed by the server when the session ends (a killed runner included). Raises Busy when another session has it."""
    got = conn.execute("SELECT pg_try_advisory_lock(hashtext('pgrepl.consumer'), hashtext(%s))",
                       (f"{sync}>{target}",)).fetchone()[0]
    if not got:
        # what the holder does and since when: a session that stays blocked or idle for long may be the
        # leftover of a dead runner (the server drops it once it notices; pg_terminate_backend does at once)
        holder = conn.execute(
            "SELECT a.pid, host(a.client_addr), a.application_name, concat_ws(', ', "
            " 'connected at ' || to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'), "
            " a.state || CASE WHEN a.state = 'active' AND a.wait_event IS NOT NULL "
            "  THEN ', waiting for ' || a.wait_event_type || ' ' || a.wait_event ELSE '' END "
            " || ' since ' || to_char(a.state_change, 'YYYY-MM-DD HH24:MI:SS TZ')) "
            "FROM pg_locks l JOIN pg_stat_activity a "
            "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.classid::int = hashtext('pgrepl.consumer') "
            "AND l.objid::int = hashtext(%s) LIMIT 1", (f"{sync}>{target}",)).fetchone()
        who = f"pid {holder[0]} from {holder[1] or 'local'} ({holder[2]}; {holder[3]})" if holder else "another session"
        raise Busy(f'The position of "{sync}" -> "{target}" in this source is held by {who}: another runner '
                   "applies this sync; this one waits")


def register_consumer(conn: psycopg.Connection, sync: str, target: str) -> None:
    """A new (sync, target) starts from now: what committed before is assumed present on the target already
    (use onetimecopy otherwise). Idempotent: an existing consumer keeps its position."""
    conn.execute("INSERT INTO pgrepl.consumer (sync, target, done) VALUES (%s, %s, pg_current_snapshot()) "
                 "ON CONFLICT DO NOTHING", (sync, target))


def remove_consumer(conn: psycopg.Connection, sync: str, target: str) -> None:
    """SYNC no longer feeds TARGET (its targets changed)."""
    if conn.execute("SELECT to_regclass('pgrepl.consumer') IS NOT NULL").fetchone()[0]:
        conn.execute("DELETE FROM pgrepl.consumer WHERE sync = %s AND target = %s", (sync, target))


def adopt(conn: psycopg.Connection, legacy: str, sync: str) -> bool:
    """Renames the source-side rows of a sync recorded under its bare name (before names were qualified by their
    control database) to SYNC: consumers, subscriptions and the origins of delta rows. True when any was."""
    with conn.transaction():
        n = conn.execute("UPDATE pgrepl.consumer SET sync = %s WHERE sync = %s", (sync, legacy)).rowcount
        n += conn.execute("UPDATE pgrepl.subscription SET sync = %s WHERE sync = %s", (sync, legacy)).rowcount
        if not n:
            return False
        for (delta,) in conn.execute("SELECT delta_table FROM pgrepl.capture").fetchall():
            conn.execute(sql.SQL("UPDATE {} SET origin = %s WHERE origin = %s").format(sql.Identifier("pgrepl", delta)),
                         (sync, legacy))
        conn.execute("UPDATE pgrepl.truncate_log SET origin = %s WHERE origin = %s", (sync, legacy))
    return True


def consumer_position(conn: psycopg.Connection, sync: str, target: str) -> tuple[str, str | None, list | None]:
    row = conn.execute("SELECT done::text, pending::text, cursor FROM pgrepl.consumer WHERE sync = %s AND target = %s",
                       (sync, target)).fetchone()
    if row is None and "@" in sync and adopt(conn, sync.split("@", 1)[0], sync):
        return consumer_position(conn, sync, target)
    if row is None:
        raise NotFound(f'No consumer "{sync}" -> "{target}" in the source database: was the sync added?')
    return row


def has_new_changes(conn: psycopg.Connection, sync: str, caps: list[Capture], done: str) -> bool:
    """Cheap check: is anything committed since `done` for this sync? (uses the (txid, key) index)"""
    if not caps:
        return False
    return conn.execute(sql.SQL("SELECT {}").format(new_changes_query(caps)),
                        {"done": done, "sync": sync, "ids": [c.id for c in caps]}).fetchone()[0]


def new_changes_query(caps: list[Capture]) -> sql.Composed:
    """EXISTS (a delta row or a truncate of CAPS committed past %(done)s, not written by %(sync)s); %(ids)s: the
    captures' ids. One index probe per table: LIMIT 1 each."""
    probes = [sql.SQL(
        "SELECT 1 FROM {d} WHERE txid >= pg_snapshot_xmin(%(done)s::pg_snapshot) "
        "AND NOT pg_visible_in_snapshot(txid, %(done)s::pg_snapshot) "
        "AND pg_visible_in_snapshot(txid, pg_current_snapshot()) AND origin IS DISTINCT FROM %(sync)s"
    ).format(d=c.delta) for c in caps]
    probes.append(sql.SQL(
        "SELECT 1 FROM pgrepl.truncate_log WHERE capture_id = ANY(%(ids)s) "
        "AND txid >= pg_snapshot_xmin(%(done)s::pg_snapshot) AND NOT pg_visible_in_snapshot(txid, %(done)s::pg_snapshot) "
        "AND pg_visible_in_snapshot(txid, pg_current_snapshot()) AND origin IS DISTINCT FROM %(sync)s"))
    return sql.SQL("EXISTS ({})").format(sql.SQL(" UNION ALL ").join(sql.SQL("({} LIMIT 1)").format(p) for p in probes))


def open_interval(conn: psycopg.Connection, sync: str, target: str, now: bool = False,
                  position: tuple | None = None) -> Interval:
    """The interval being applied, or a new one whose end the first batch sets (start_interval); now: a new one
    ending now, recorded at once (swap, which looks at both sides' intervals before applying anything).
    POSITION: consumer_position() as the caller just read it."""
    done, pending, cursor = position or consumer_position(conn, sync, target)
    iv = Interval(sync, target, done, pending, cursor)
    if pending is None:
        iv.recorded, iv.cursor = False, None
        if now:
            start_interval(conn, iv)
            advance(conn, iv, None)
    elif cursor is not None and len(cursor) != 1:
        iv.cursor = None   # a cursor of an older pgrepl (table by table): start over; applying again is idempotent
    return iv


def start_interval(conn: psycopg.Connection, iv: Interval, snapshot: str | None = None) -> None:
    """In the first batch's source transaction, before it reads anything: the interval ends at its snapshot
    (SNAPSHOT: that snapshot, already read)."""
    if iv.pending is None:
        iv.pending = snapshot or conn.execute("SELECT pg_current_snapshot()::text").fetchone()[0]


def _move(conn: psycopg.Connection, iv: Interval, assignments: sql.SQL, params: tuple, commit: bool = False) -> None:
    """UPDATE of the consumer row, only where it still holds what this runner last saw: the interval and cursor,
    or for an interval not recorded yet, no interval and the same `done`. commit: CONN's (read-only) transaction
    is committed first, in the same round trip (one string, values bound on the client)."""
    if iv.recorded:
        where, seen = sql.SQL("pending::text = %s AND cursor IS NOT DISTINCT FROM %s::text[]"), (iv.pending, iv.cursor)
    else:
        where, seen = sql.SQL("pending IS NULL AND done::text = %s"), (iv.done,)
    update = sql.SQL("UPDATE pgrepl.consumer SET {}, updated = now() WHERE sync = %s AND target = %s AND {}").format(
        assignments, where)
    if commit:
        with psycopg.ClientCursor(conn) as cur:
            cur.execute(sql.SQL("COMMIT; {}").format(update), (*params, iv.sync, iv.target, *seen))
            cur.nextset()
            n = cur.rowcount
    else:
        n = conn.execute(update, (*params, iv.sync, iv.target, *seen)).rowcount
    if n != 1:
        raise LeaseLost(f'The position of "{iv.sync}" -> "{iv.target}" was moved by someone else while this runner '
                        "applied it: it stops without recording progress (the changes are applied again, safely)")


def advance(conn: psycopg.Connection, iv: Interval, cursor: list[str] | None, commit: bool = False) -> None:
    _move(conn, iv, sql.SQL("pending = %s::pg_snapshot, cursor = %s"), (iv.pending, cursor), commit)
    iv.cursor, iv.recorded = cursor, True


def close_interval(conn: psycopg.Connection, iv: Interval, commit: bool = False) -> None:
    """Every change of the interval is applied. (An interval whose first batch found nothing never got recorded:
    its end becomes `done` all the same.) commit: see _move."""
    _move(conn, iv, sql.SQL("done = %s::pg_snapshot, pending = NULL, cursor = NULL"), (iv.pending,), commit)


def record_applied(conn: psycopg.Connection, iv: Interval, source: str, upto: str, todo: str | None = None) -> None:
    """Swap, in each target transaction of a batch: IV (of SOURCE) is applied here up to UPTO, but for TODO (None:
    the batch is complete; else what is left of it, swap.py). The source's position moves in another database
    afterwards; catch_up finds this when a crash came in between."""
    conn.execute("INSERT INTO pgrepl.applied (sync, source, done, pending, cursor, todo) "
                 "VALUES (%s, %s, %s::pg_snapshot, %s::pg_snapshot, %s, %s) ON CONFLICT (sync, source) DO UPDATE "
                 "SET done = excluded.done, pending = excluded.pending, cursor = excluded.cursor, todo = excluded.todo",
                 (iv.sync, source, iv.done, iv.pending, upto, todo))


def catch_up(conn: psycopg.Connection, iv: Interval, target: psycopg.Connection, source: str
             ) -> tuple[str, str] | None:
    """Swap, before applying IV (of SOURCE, on CONN): when TARGET recorded a later cursor of this same interval as
    applied, the position moves there (compare-and-set) instead of applying those batches again. A batch recorded
    with something left to do is returned instead, as (its cursor, what is left): the run finishes it."""
    if iv.pending is None or iv.cursor is None:
        return None
    row = target.execute("SELECT cursor, todo FROM pgrepl.applied WHERE sync = %s AND source = %s "
                         "AND done::text = %s AND pending::text = %s", (iv.sync, source, iv.done, iv.pending)).fetchone()
    if row is None or (iv.cursor[0] and int(row[0]) <= int(iv.cursor[0])):
        return None
    if row[1] is not None:
        return row[0], row[1]
    advance(conn, iv, [row[0]])
    return None


def reset_consumer(conn: psycopg.Connection, sync: str, target: str, snapshot: str, done: str) -> None:
    """After a full copy taken at SNAPSHOT: every change visible in it is on the target. DONE: the position the
    copy started from (compare-and-set)."""
    n = conn.execute("UPDATE pgrepl.consumer SET done = %s::pg_snapshot, pending = NULL, cursor = NULL, "
                     "updated = now() WHERE sync = %s AND target = %s AND done::text = %s",
                     (snapshot, sync, target, done)).rowcount
    if n != 1:
        raise LeaseLost(f'The position of "{sync}" -> "{target}" moved during the copy: another runner applies '
                        "this sync")


def in_interval(alias: str) -> sql.Composed:
    """The delta rows of an interval: visible in `pending`, not in `done`, and not applied by the sync itself."""
    return sql.SQL(
        "{a}.txid >= pg_snapshot_xmin(%(done)s::pg_snapshot) AND {a}.txid < pg_snapshot_xmax(%(pending)s::pg_snapshot) "
        "AND pg_visible_in_snapshot({a}.txid, %(pending)s::pg_snapshot) "
        "AND NOT pg_visible_in_snapshot({a}.txid, %(done)s::pg_snapshot) "
        "AND {a}.origin IS DISTINCT FROM %(sync)s").format(a=sql.Identifier(alias))


def interval_params(iv: Interval, **more) -> dict:
    """The parameters of in_interval() and after_cursor() for IV, and MORE."""
    return {"done": iv.done, "pending": iv.pending, "sync": iv.sync, "after": (iv.cursor or [None])[0], **more}


def truncated_in(conn: psycopg.Connection, iv: Interval, caps: list[Capture]) -> set[int]:
    """Ids of the captures truncated during the interval: those tables are copied whole instead."""
    query = sql.SQL("SELECT DISTINCT capture_id FROM pgrepl.truncate_log l WHERE capture_id = ANY(%(ids)s) "
                    "AND {}").format(in_interval("l"))
    return {r[0] for r in conn.execute(query, interval_params(iv, ids=[c.id for c in caps])).fetchall()}


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
    existing: int = 0      # how many keys have a row on the source

    @classmethod
    def of(cls, capture: Capture, keys: list[tuple[str, ...]], present: list[bool]) -> Batch:
        """A batch from keys as text tuples (swap, row by row)."""
        arrays = [array_literal(k[i] for k in keys) for i in range(len(capture.table.pkey))]
        return cls(capture, arrays, "{" + ",".join("t" if p else "f" for p in present) + "}", sum(present))

    @property
    def keys(self) -> list[tuple[str, ...]]:
        """The keys as tuples of their columns' text (swap compares them with what it reads row by row)."""
        return list(zip(*(parse_array(a) for a in self.arrays), strict=True))

    @property
    def present_flags(self) -> list[bool]:
        return [p == "t" for p in parse_array(self.present)]


def after_cursor(iv: Interval) -> sql.Composable:
    """`AND d.txid > %(after)s`: delta rows (alias d) past IV's cursor; nothing when it has none (see has_cursor)."""
    return sql.SQL("AND d.txid > %(after)s::xid8") if has_cursor(iv) else sql.SQL("")


def has_cursor(iv: Interval) -> bool:
    """IV is applied past some transaction (an empty cursor only says its first batch is done)."""
    return bool(iv.cursor and iv.cursor[0])


def _cut_query(iv: Interval, caps: list[Capture]) -> sql.Composed:
    heads = sql.SQL(" UNION ALL ").join(
        sql.SQL("(SELECT d.txid FROM {delta} d WHERE {interval} {after} ORDER BY d.txid LIMIT %(limit)s)").format(
            delta=c.delta, interval=in_interval("d"), after=after_cursor(iv)) for c in caps)
    return sql.SQL("SELECT max(txid)::text AS upto, count(*) < %(limit)s AS last "
                   "FROM (SELECT txid FROM ({}) h ORDER BY txid LIMIT %(limit)s) n").format(heads)


def next_batch(conn: psycopg.Connection, iv: Interval, caps: list[Capture], limit: int
               ) -> tuple[str | None, bool, list[Batch | None]]:
    """Where the next batch ends, and its keys, in one round trip: (upto, last, batches). UPTO: the txid of the
    LIMIT-th delta row after the cursor across CAPS (every row of that transaction goes in the batch too), None when
    nothing is left; LAST: whether the batch is the interval's last; BATCHES: per table of CAPS, its distinct keys
    changed in the interval after the cursor up to UPTO, with whether each row exists on the source (None: no
    change). Run it in the REPEATABLE READ transaction that also copies the rows (apply.read_transaction: its
    planner settings make the presence check probe the key index), so that `present` matches the copy. One
    statement for every table: a batch of whole transactions usually touches several."""
    if not caps:
        return None, True, []
    q = sqltext.text(conn, ("next_batch", tuple(caps), has_cursor(iv)), lambda: _cut_and_keys(iv, caps))
    rows = conn.execute(q, interval_params(iv, limit=limit)).fetchall()
    return rows[0][0], rows[0][1], _batches(caps, [r[2:] for r in rows])


def first_batch(conn: psycopg.Connection, iv: Interval, caps: list[Capture], limit: int
                ) -> tuple[set[int], str | None, bool, list[Batch | None]]:
    """truncated_in() and next_batch() over every table of CAPS, in one round trip: the first batch's look. When a
    table was truncated, the batch of the others must be asked again without it (next_batch)."""
    if not caps:
        return set(), None, True, []
    q = sqltext.text(conn, ("first_batch", tuple(caps), has_cursor(iv)), lambda: sql.SQL(
        "SELECT ARRAY(SELECT DISTINCT capture_id FROM pgrepl.truncate_log l WHERE capture_id = ANY(%(ids)s) "
        "AND {}), b.* FROM ({}) b").format(in_interval("l"), _cut_and_keys(iv, caps)))
    rows = conn.execute(q, interval_params(iv, ids=[c.id for c in caps], limit=limit)).fetchall()
    return set(rows[0][0]), rows[0][1], rows[0][2], _batches(caps, [r[3:] for r in rows])


def _cut_and_keys(iv: Interval, caps: list[Capture]) -> sql.Composed:
    """One row per table of CAPS: the cut (upto, last: the same in every row), then _batches_query's columns up to
    that cut."""
    return sql.SQL("WITH cut AS MATERIALIZED ({cut}) SELECT (SELECT upto FROM cut), (SELECT last FROM cut), b.* "
                   "FROM ({batches}) b").format(cut=_cut_query(iv, caps),
                                                batches=_batches_query(iv, caps, sql.SQL("(SELECT upto FROM cut)")))


def _batches(caps: list[Capture], rows: list) -> list[Batch | None]:
    """_batches_query's rows as a batch per table of CAPS (None: no change)."""
    batches: list[Batch | None] = [None] * len(caps)
    for i, n, existing, present, *arrays in rows:
        if n:
            cap = caps[i]
            batches[i] = Batch(cap, arrays[:len(cap.keycols)], present, existing)
    return batches


def _batches_query(iv: Interval, caps: list[Capture], upto: sql.Composable) -> sql.Composed:
    """One row per table of CAPS: its index in CAPS, then _keys_query's columns, the key arrays padded with NULLs to
    the widest key (UNION ALL wants as many columns in every branch). UPTO: the batch's last transaction (text)."""
    width = max(len(cap.keycols) for cap in caps)
    return sql.SQL(" UNION ALL ").join(sql.SQL("({})").format(_keys_query(iv, cap, i, width, upto))
                                      for i, cap in enumerate(caps))


def padded(cols: list[sql.Composable], width: int) -> sql.Composed:
    """COLS (text), then NULLs up to WIDTH columns: a branch of a UNION ALL over tables whose keys differ in width."""
    return sql.SQL(", ").join([*cols, *[sql.SQL("NULL::text")] * (width - len(cols))])


def _keys_query(iv: Interval, cap: Capture, index: int, width: int, upto: sql.Composable) -> sql.Composed:
    t = cap.table
    dkeys = sql.SQL(", ").join(sql.SQL("d.{}").format(sql.Identifier(k)) for k in cap.keycols)
    arrays = padded([sql.SQL("array_agg(k.{})::text").format(sql.Identifier(c)) for c in cap.keycols], width)
    return sql.SQL("""
WITH u AS (
    SELECT DISTINCT {dkeys} FROM {delta} d WHERE {interval} {after} AND d.txid <= {upto}::xid8
), k AS (
    SELECT {ukeys}, s.{first} IS NOT NULL AS present
      FROM u LEFT JOIN {src} s ON {join}
     ORDER BY {ukeys}
)
SELECT {index}, count(*), count(*) FILTER (WHERE present), array_agg(present)::text, {arrays} FROM k""").format(
        dkeys=dkeys, delta=cap.delta, interval=in_interval("d"), after=after_cursor(iv), src=t.ident,
        ukeys=sql.SQL(", ").join(sql.SQL("u.{}").format(sql.Identifier(c)) for c in cap.keycols),
        first=sql.Identifier(t.pkey[0]), index=sql.Literal(index), upto=upto,
        join=sql.SQL(" AND ").join(sql.SQL("s.{} = u.{}").format(sql.Identifier(c), sql.Identifier(d))
                                   for c, d in zip(t.pkey, cap.keycols, strict=True)),
        arrays=arrays)


# --- swap: conflict keys resolved in a run (pgrepl.resolved), on each side in the transaction that wrote them ----

def open_swap(conn: psycopg.Connection, sync: str, target: str, caps: list[Capture]) -> tuple[Interval, bool]:
    """open_interval(now=True), in one round trip when no interval is open: a new one ends now, its cursor is
    already past its first batch (`[""]`) when it holds no truncate of CAPS (nothing to copy whole), and the keys
    resolved in earlier runs are forgotten (a new interval is a new run: none are this run's). Returns the
    interval and whether it is new."""
    row = conn.execute("""
WITH s AS (SELECT pg_current_snapshot() AS snap),
new AS (
    UPDATE pgrepl.consumer c SET pending = s.snap, updated = now(), cursor = CASE WHEN EXISTS (
               SELECT FROM pgrepl.truncate_log l WHERE l.capture_id = ANY(%(ids)s)
                  AND l.txid >= pg_snapshot_xmin(c.done) AND l.txid < pg_snapshot_xmax(s.snap)
                  AND pg_visible_in_snapshot(l.txid, s.snap) AND NOT pg_visible_in_snapshot(l.txid, c.done)
                  AND l.origin IS DISTINCT FROM %(sync)s) THEN NULL ELSE '{""}'::text[] END
      FROM s WHERE c.sync = %(sync)s AND c.target = %(target)s AND c.pending IS NULL
    RETURNING c.done::text, c.pending::text, c.cursor
), gone AS (
    DELETE FROM pgrepl.resolved WHERE sync = %(sync)s AND EXISTS (SELECT FROM new)
)
SELECT * FROM new""", {"sync": sync, "target": target, "ids": [c.id for c in caps]}).fetchone()
    if row is None:   # an interval is open (resumed), or no consumer row yet
        return open_interval(conn, sync, target, now=True), False
    return Interval(sync, target, *row), True


def resolved_keys(conn: psycopg.Connection, sync: str, runs: list[str]) -> dict[str, dict[tuple[str, ...], str | None]]:
    """The keys this side got the other side's writes for in the run (RUNS: its identities), by table, with this
    side's snapshot then (None: recorded before version 6); the keys of other runs (their intervals are closed) are
    forgotten in the same statement."""
    out: dict[str, dict[tuple[str, ...], str | None]] = {}
    for name, key, seen in conn.execute(
            "WITH gone AS (DELETE FROM pgrepl.resolved WHERE sync = %(sync)s AND run <> ALL(%(runs)s)) "
            "SELECT tablename, key, seen::text FROM pgrepl.resolved WHERE sync = %(sync)s AND run = ANY(%(runs)s)",
            {"sync": sync, "runs": runs}):
        out.setdefault(name, {})[tuple(json.loads(key))] = seen
    return out


def mark_resolved(conn: psycopg.Connection, sync: str, run: str, keys: list[tuple[str, tuple[str, ...]]],
                  seen: str | None = None) -> None:
    """KEYS: (table, key) pairs, of any tables, recorded with SEEN (this side's snapshot as the rows were read):
    one statement."""
    if keys:
        conn.execute("INSERT INTO pgrepl.resolved (sync, run, tablename, key, seen) SELECT %s, %s, unnest(%s::text[]), "
                     "unnest(%s::text[]), %s::pg_snapshot ON CONFLICT (sync, run, tablename, key) DO UPDATE "
                     "SET seen = excluded.seen",
                     (sync, run, [t for t, k in keys], [json.dumps(list(k)) for t, k in keys], seen))


def extend_swap(conn: psycopg.Connection, iv: Interval, caps: list[Capture]) -> None:
    """A swap's second side, just before its pass: its new interval (nothing applied yet) ends now instead of at
    the run's start, so that changes committed during the first pass go in this run. Not when a truncate of CAPS
    was committed meanwhile (its table is copied whole at a run's start: it waits for the next run)."""
    row = conn.execute("""
WITH s AS (SELECT pg_current_snapshot() AS snap)
UPDATE pgrepl.consumer c SET pending = s.snap, updated = now()
  FROM s WHERE c.sync = %(sync)s AND c.target = %(target)s AND c.pending::text = %(pending)s AND c.cursor = '{""}'
   AND NOT EXISTS (SELECT FROM pgrepl.truncate_log l WHERE l.capture_id = ANY(%(ids)s)
                    AND l.txid >= pg_snapshot_xmin(c.pending) AND l.txid < pg_snapshot_xmax(s.snap)
                    AND pg_visible_in_snapshot(l.txid, s.snap) AND NOT pg_visible_in_snapshot(l.txid, c.pending)
                    AND l.origin IS DISTINCT FROM %(sync)s)
RETURNING c.pending::text""", {"sync": iv.sync, "target": iv.target, "pending": iv.pending,
                                "ids": [c.id for c in caps]}).fetchone()
    if row is not None:
        iv.pending = row[0]
