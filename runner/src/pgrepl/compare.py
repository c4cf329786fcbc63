"""Compare one table on a source and a target: equal, or which keys differ (missing on the target, extra on it,
different), without pulling the table into the runner.

Tables with a key: a sample of the source's keys cuts the table into blocks of about `compare_block_size`
rows; each side hashes every block, both sides at once (one query each, every block an index range scan); a
block whose row count or hash sum differs is cut again at the source's keys and hashed again, until blocks of
at most LEAF rows are read as (key, row hash) pairs and compared key by key.
Tables without a key (fullcopy): rows are multisets; blocks are ranges of the rows' hash, and a differing block
is read as (row, count) groups.

Under load a key whose change is captured but not applied yet differs for a while: it is not a difference, the
sync overwrites it with the source's row. `in_flight` finds those keys from the delta store and the consumer's
position (delta.py), read in this order: the position first, then the two snapshots the rows are compared in,
then the delta rows. Everything the position says is applied committed on the target before the position moved,
so before the target's snapshot; a key none of whose delta rows is past the position (now, after both snapshots)
has the same row on the source in its snapshot as the one the sync copied last. (Purge removes only delta rows
applied by every consumer and older than its interval, far longer than a compare takes.)
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from . import capture
from .apply import columns, key_arrays, key_join, keys_relation
from .capture import TableInfo
from .delta import array_literal

Key = tuple[str, ...]


@dataclass
class Position:
    """A consumer's position as read before the snapshots of a compare: what it says is applied is on the
    target. conn: the database holding the delta store (the consumer's source)."""
    conn: psycopg.Connection
    sync: str
    target: str
    done: str
    pending: str | None
    cursor: str | None


@dataclass
class TableDiff:
    table: str
    target: str
    rows: int = 0                  # rows of the table on the source
    blocks: int = 0
    blocks_differing: int = 0
    keyed: bool = True             # False: compared as a multiset of rows
    missing: list = field(default_factory=list)    # keys (or {row, count}) on the source only
    extra: list = field(default_factory=list)      # on the target only
    different: list = field(default_factory=list)  # same key, another row
    in_flight: int = 0             # differing keys with changes not applied yet: not differences
    repaired: int = 0

    @property
    def differences(self) -> int:
        if self.keyed:
            return len(self.missing) + len(self.extra) + len(self.different)
        return sum(r["count"] for r in self.missing) + sum(r["count"] for r in self.extra)

    def as_dict(self) -> dict:
        return {"table": self.table, "target": self.target, "equal": not self.differences, "rows": self.rows,
                "blocks": self.blocks, "blocks_differing": self.blocks_differing, "keyed": self.keyed,
                "counts": {"missing": len(self.missing), "extra": len(self.extra), "different": len(self.different)},
                "differences": self.differences, "missing": self.missing, "extra": self.extra,
                "different": self.different, "in_flight": self.in_flight, "repaired": self.repaired}


def _on_both(fn: Callable, src: psycopg.Connection, tgt: psycopg.Connection, *args) -> tuple:
    """FN(conn, *ARGS) on the source and on the target at the same time."""
    return _both(lambda: fn(src, *args), lambda: fn(tgt, *args))


def _both(src_fn: Callable[[], object], tgt_fn: Callable[[], object]) -> tuple:
    """Runs a query on each side at the same time (psycopg waits for the server without holding the GIL)."""
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.submit(src_fn), pool.submit(tgt_fn)
        return a.result(), b.result()


def snapshot_read(conn: psycopg.Connection) -> None:
    """A REPEATABLE READ, READ ONLY transaction, begun by the caller: every query of a compare on one side sees
    one snapshot. Key range scans, not hashes of whole tables (jit costs more than it saves here)."""
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL jit = off")


def _cols(names: tuple[str, ...] | list[str], alias: str = "t") -> sql.Composed:
    return sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c)) for c in names)


def _key_expr(t: TableInfo, alias: str = "t") -> sql.Composable:
    """The key as one comparable value: `t.a` or the row `(t.a, t.b)`, which an index range scan takes."""
    return _cols(t.pkey, alias) if len(t.pkey) == 1 else sql.SQL("({})").format(_cols(t.pkey, alias))


def _key_value(t: TableInfo, prefix: str) -> sql.Composable:
    """A key given as parameters PREFIX0, PREFIX1... cast to the key's types, comparable with _key_expr."""
    parts = [sql.SQL("{}::{}").format(sql.Placeholder(f"{prefix}{i}"), sql.SQL(typ)) for i, typ in enumerate(t.pktype)]
    return parts[0] if len(parts) == 1 else sql.SQL("({})").format(sql.SQL(", ").join(parts))


@dataclass(frozen=True)
class RowHash:
    """How rows are hashed: `hash_record_extended`, each column by its type's own hash function (values equal for
    their type hash alike: numeric 1.0 and 1.00 do), or, when a column's type has none (json, point...), the
    row's text. Both sides of a compare use the same. Both hash a text's bytes in its database's encoding: where
    the two databases' encodings differ, the row's text converted to UTF8 is hashed instead (utf8)."""
    cols: tuple[str, ...]
    typed: bool = True
    utf8: bool = False

    def expr(self, alias: str = "t") -> sql.Composed:
        row = sql.SQL("ROW({})").format(_cols(self.cols, alias))
        if self.utf8:
            return sql.SQL("('x' || left(md5(convert_to({}::text, 'UTF8')), 16))::bit(64)::bigint").format(row)
        return sql.SQL("hash_record_extended({}, 0)" if self.typed else "hashtextextended({}::text, 0)").format(row)


def row_hash(src: psycopg.Connection, tgt: psycopg.Connection, t: TableInfo) -> RowHash:
    """The RowHash both sides can compute for T (tried on one row of each, in a savepoint of the caller's
    transaction)."""
    typed = RowHash(tuple(columns(src, t)))
    if src.info.parameter_status("server_encoding") != tgt.info.parameter_status("server_encoding"):
        return RowHash(typed.cols, typed=False, utf8=True)
    for conn in (src, tgt):
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SELECT {} FROM {} t LIMIT 1").format(typed.expr(), t.ident)).fetchall()
        except psycopg.errors.UndefinedFunction:
            return RowHash(typed.cols, typed=False)
    return typed


def _key_text(t: TableInfo, alias: str = "t") -> sql.Composed:
    return sql.SQL(", ").join(sql.SQL("{}.{}::text").format(sql.Identifier(alias), sql.Identifier(c)) for c in t.pkey)


# --- tables with a key ---------------------------------------------------------------------------------------

def boundaries(src: psycopg.Connection, t: TableInfo, block_size: int) -> list[Key]:
    """Keys of the source cutting it into blocks of about BLOCK_SIZE rows, in key order: a random sample of one
    row in BLOCK_SIZE (one cheap scan, no sort of the whole table; blocks vary in size, which costs nothing)."""
    q = sql.SQL("SELECT {ktext} FROM {tbl} t TABLESAMPLE BERNOULLI (%(pct)s) ORDER BY {keys}").format(
        ktext=_key_text(t), keys=_cols(t.pkey), tbl=t.ident)
    return [tuple(r) for r in src.execute(q, {"pct": 100.0 / block_size})]


# A block: the keys in [lo, hi); lo None: every key below hi, hi None: every key from lo on (so that a target's
# extra rows below the source's first key or above its last fall into a block too).
Range = tuple[Key | None, Key | None]

LEAF = 64      # a differing block of at most this many source rows is read key by key
FANOUT = 16    # a bigger differing block is cut into about this many blocks, which are hashed again


def ranges_of(bounds: list[Key]) -> list[Range]:
    """Blocks from the source's boundaries (compare.boundaries): each starts at one and ends at the next."""
    if not bounds:
        return [(None, None)]
    return [(None, bounds[0]), *zip(bounds[:-1], bounds[1:], strict=True), (bounds[-1], None)]


def _blocks_query(t: TableInfo, select: sql.Composable, ranges: list[Range]) -> tuple[sql.Composed, dict]:
    """A query returning, for each of RANGES (numbered in order), SELECT's rows over that block's keys: closed
    blocks through a LATERAL index range scan each, the open-ended ones by themselves."""
    parts, params = [], {}
    closed = [i for i, (lo, hi) in enumerate(ranges) if lo is not None and hi is not None]
    for i, (lo, hi) in enumerate(ranges):
        if lo is not None and hi is not None:
            continue
        conds = []
        if lo is not None:
            conds.append(sql.SQL("{} >= {}").format(_key_expr(t), _key_value(t, f"lo_{i}_")))
            params.update({f"lo_{i}_{j}": v for j, v in enumerate(lo)})
        if hi is not None:
            conds.append(sql.SQL("{} < {}").format(_key_expr(t), _key_value(t, f"hi_{i}_")))
            params.update({f"hi_{i}_{j}": v for j, v in enumerate(hi)})
        parts.append(sql.SQL("SELECT {i} AS block, x.* FROM (SELECT {sel} FROM {tbl} t WHERE {w}) x").format(
            i=sql.Literal(i), sel=select, tbl=t.ident, w=sql.SQL(" AND ").join(conds or [sql.SQL("true")])))
    if closed:
        n = len(t.pkey)
        rng = sql.SQL(", ").join([sql.SQL("%(blk)s::int[]"),
                                  *(sql.SQL("{}::{}[]").format(sql.Placeholder(f"{side}{j}"), sql.SQL(typ))
                                    for side in ("lo", "hi") for j, typ in enumerate(t.pktype))])
        names = ["b", *(f"{side}{j}" for side in ("lo", "hi") for j in range(n))]

        def bound(side: str) -> sql.Composable:
            cols = [sql.SQL("r.{}").format(sql.Identifier(f"{side}{j}")) for j in range(n)]
            return cols[0] if n == 1 else sql.SQL("({})").format(sql.SQL(", ").join(cols))
        parts.append(sql.SQL(
            "SELECT r.b AS block, x.* FROM unnest({rng}) AS r({names}) CROSS JOIN LATERAL "
            "(SELECT {sel} FROM {tbl} t WHERE {k} >= {lo} AND {k} < {hi}) x").format(
            rng=rng, names=sql.SQL(", ").join(sql.Identifier(c) for c in names), sel=select, tbl=t.ident,
            k=_key_expr(t), lo=bound("lo"), hi=bound("hi")))
        params["blk"] = closed
        for j in range(n):
            params[f"lo{j}"] = array_literal(ranges[i][0][j] for i in closed)
            params[f"hi{j}"] = array_literal(ranges[i][1][j] for i in closed)
    return sql.SQL(" UNION ALL ").join(parts), params


def block_hashes(conn: psycopg.Connection, t: TableInfo, cols: RowHash,
                 ranges: list[Range]) -> dict[int, tuple[int, int]]:
    """{block: (rows, sum of row hashes)} (blocks without rows are left out)."""
    select = sql.SQL("count(*) AS n, coalesce(sum({h}), 0) AS h").format(h=cols.expr())
    q, params = _blocks_query(t, select, ranges)
    return {b: (n, int(h)) for b, n, h in conn.execute(q, params) if n}


def block_rows(conn: psycopg.Connection, t: TableInfo, cols: RowHash, ranges: list[Range]) -> dict[Key, int]:
    """{key: row hash} of the rows in RANGES."""
    select = sql.SQL("ARRAY[{k}] AS k, {h} AS h").format(k=_key_text(t), h=cols.expr())
    q, params = _blocks_query(t, select, ranges)
    return {tuple(k): h for _b, k, h in conn.execute(q, params)}


def split(src: psycopg.Connection, t: TableInfo, ranges: list[Range], sizes: list[int]) -> list[Range]:
    """Each of RANGES (holding SIZES source rows) cut into about FANOUT blocks at the source's keys."""
    select = sql.SQL("ARRAY[{k}] AS k, row_number() OVER (ORDER BY {keys}) AS rn").format(
        k=_key_text(t), keys=_cols(t.pkey))
    inner, params = _blocks_query(t, select, ranges)
    q = sql.SQL("SELECT block, k FROM ({q}) s, (SELECT %(steps)s::int[] AS step) st "
                "WHERE (rn - 1) %% st.step[block + 1] = 0 ORDER BY block, rn").format(q=inner)
    steps = [max(LEAF // 2, -(-n // FANOUT)) for n in sizes]
    cuts: dict[int, list[Key]] = {}
    for b, k in src.execute(q, {**params, "steps": steps}):
        cuts.setdefault(b, []).append(tuple(k))
    out = []
    for i, (lo, hi) in enumerate(ranges):
        inner = cuts.get(i, [])[1:]   # the first key of a block starts it: the block keeps its own lower end
        edges = [lo, *inner, hi]
        out += list(zip(edges[:-1], edges[1:], strict=True))
    return out


def key_rows(conn: psycopg.Connection, t: TableInfo, cols: RowHash, keys: list[Key]) -> dict[Key, int]:
    """{key: row hash} of the rows of KEYS that exist."""
    if not keys:
        return {}
    q = sql.SQL("SELECT ARRAY[{k}], {h} FROM {keys} JOIN {tbl} t ON {join}").format(
        k=_key_text(t), h=cols.expr(), keys=keys_relation(t, False), tbl=t.ident, join=key_join("t", t.pkey))
    return {tuple(k): h for k, h in conn.execute(q, key_arrays(t, keys))}


def diff_rows(src: dict[Key, int], tgt: dict[Key, int]) -> tuple[list[Key], list[Key], list[Key]]:
    """(missing on the target, extra on it, different), each sorted."""
    return (sorted(src.keys() - tgt.keys()), sorted(tgt.keys() - src.keys()),
            sorted(k for k in src.keys() & tgt.keys() if src[k] != tgt[k]))


CHUNK = 100   # blocks hashed per query: progress shows as a big table goes


def _hash_blocks(src: psycopg.Connection, tgt: psycopg.Connection, t: TableInfo, cols: RowHash, ranges: list[Range],
                 progress: Callable[[int, int], None]) -> tuple[dict, dict]:
    """block_hashes of RANGES on both sides, CHUNK blocks at a time."""
    a, b = {}, {}
    for start in range(0, len(ranges), CHUNK):
        part_a, part_b = _on_both(block_hashes, src, tgt, t, cols, ranges[start:start + CHUNK])
        a.update({start + i: v for i, v in part_a.items()})
        b.update({start + i: v for i, v in part_b.items()})
        progress(len(ranges[start:start + CHUNK]), sum(n for n, _h in part_a.values()))
    return a, b


def keyed_candidates(src: psycopg.Connection, tgt: psycopg.Connection, t: TableInfo, block_size: int,
                     diff: TableDiff, progress: Callable[[int, int], None] = lambda blocks, rows: None) -> list:
    """Inside the callers' snapshot transactions: the keys that differ. Blocks are hashed on both sides; a
    differing block of more than LEAF rows is cut into smaller ones, hashed again, and so on; the rows of the
    small differing blocks are compared key by key."""
    cols = row_hash(src, tgt, t)
    ranges = ranges_of(boundaries(src, t, block_size))
    diff.blocks = len(ranges)
    level, rows_a, rows_b = 0, {}, {}
    while ranges:
        a, b = _hash_blocks(src, tgt, t, cols, ranges, progress if level == 0 else lambda blocks, rows: None)
        if level == 0:
            diff.rows = sum(n for n, _h in a.values())
        differing = [i for i in range(len(ranges)) if a.get(i) != b.get(i)]
        if level == 0:
            diff.blocks_differing = len(differing)
        size = {i: max(a.get(i, (0, 0))[0], b.get(i, (0, 0))[0]) for i in differing}
        small = [ranges[i] for i in differing if size[i] <= LEAF]
        big = [i for i in differing if size[i] > LEAF]
        if small:
            ra, rb = _on_both(block_rows, src, tgt, t, cols, small)
            rows_a.update(ra)
            rows_b.update(rb)
        cut = split(src, t, [ranges[i] for i in big], [a.get(i, (0, 0))[0] for i in big]) if big else []
        # a block that cannot be cut (few source rows, many on the target) is read key by key
        stuck = [ranges[i] for i in big if cut.count(ranges[i])]
        if stuck:
            ra, rb = _on_both(block_rows, src, tgt, t, cols, stuck)
            rows_a.update(ra)
            rows_b.update(rb)
        ranges = [r for r in cut if r not in stuck]
        level += 1
    return diff_keys(rows_a, rows_b)


def diff_keys(rows_a: dict[Key, int], rows_b: dict[Key, int]) -> list[tuple[str, Key]]:
    missing, extra, different = diff_rows(rows_a, rows_b)
    return [("missing", k) for k in missing] + [("extra", k) for k in extra] + [("different", k) for k in different]


def recheck(src: psycopg.Connection, tgt: psycopg.Connection, t: TableInfo,
            keys: list[Key]) -> list[tuple[str, Key]]:
    """Inside the callers' snapshot transactions: which of KEYS still differ, and how."""
    cols = row_hash(src, tgt, t)
    a, b = _on_both(key_rows, src, tgt, t, cols, keys)
    return diff_keys(a, b)


# --- changes not applied yet ---------------------------------------------------------------------------------

def read_position(conn: psycopg.Connection, sync: str, target: str) -> Position | None:
    row = conn.execute("SELECT done::text, pending::text, cursor[1] FROM pgrepl.consumer WHERE sync = %s "
                       "AND target = %s", (sync, target)).fetchone() if capture.has_schema(conn) else None
    return Position(conn, sync, target, row[0], row[1], row[2] or None) if row else None


_UNAPPLIED = sql.SQL(
    "NOT pg_visible_in_snapshot({a}.txid, %(done)s::pg_snapshot) AND NOT coalesce("
    "pg_visible_in_snapshot({a}.txid, %(pending)s::pg_snapshot) AND {a}.txid <= %(cursor)s::xid8, false)")


def in_flight(pos: Position, t: TableInfo, keys: list[Key]) -> set[Key] | None:
    """The KEYS with a change in POS's delta store that POS has not applied; None: the table itself is in flight
    (a truncate not applied yet, or no capture, so nothing can be said)."""
    cap = capture.find(pos.conn, t)
    if cap is None:
        return None
    params = {"done": pos.done, "pending": pos.pending, "cursor": pos.cursor, "id": cap.id}
    truncated = pos.conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM pgrepl.truncate_log l WHERE capture_id = %(id)s "
                                         "AND {})").format(_UNAPPLIED.format(a=sql.Identifier("l"))),
                                 params).fetchone()[0]
    if truncated:
        return None
    if not keys:
        return set()
    # below the xmin of `done` every transaction is applied or aborted: the (txid, key) index bounds the scan
    q = sql.SQL("SELECT DISTINCT {k} FROM {delta} d JOIN {keys} ON {join} "
                "WHERE d.txid >= pg_snapshot_xmin(%(done)s::pg_snapshot) AND {unapplied}").format(
        k=sql.SQL(", ").join(sql.SQL("d.{}::text").format(sql.Identifier(c)) for c in cap.keycols),
        delta=cap.delta, keys=keys_relation(t, False), join=key_join("d", cap.keycols),
        unapplied=_UNAPPLIED.format(a=sql.Identifier("d")))
    return {tuple(r) for r in pos.conn.execute(q, {**params, **key_arrays(t, keys)})}


def applied_past(pos: Position, t: TableInfo, snapshot: str) -> bool:
    """Has the consumer (as it is now) applied every change of T visible in SNAPSHOT? (At once when the sync had
    nothing pending: an idle or stopped sync is not waited for.)"""
    cap = capture.find(pos.conn, t)
    cur = read_position(pos.conn, pos.sync, pos.target)
    if cap is None or cur is None:
        return True
    params = {"done": cur.done, "pending": cur.pending, "cursor": cur.cursor, "id": cap.id, "snap": snapshot}
    q = sql.SQL("SELECT EXISTS (SELECT FROM {delta} d WHERE d.txid >= pg_snapshot_xmin(%(done)s::pg_snapshot) "
                "AND pg_visible_in_snapshot(d.txid, %(snap)s::pg_snapshot) AND {u}) OR EXISTS (SELECT FROM "
                "pgrepl.truncate_log l WHERE l.capture_id = %(id)s AND pg_visible_in_snapshot(l.txid, "
                "%(snap)s::pg_snapshot) AND {ul})").format(
        delta=cap.delta, u=_UNAPPLIED.format(a=sql.Identifier("d")), ul=_UNAPPLIED.format(a=sql.Identifier("l")))
    return not pos.conn.execute(q, params).fetchone()[0]


# --- tables without a key: multisets of rows -----------------------------------------------------------------

def _bucket(cols: RowHash, n: int) -> sql.Composed:
    return sql.SQL("abs(mod({h}, {n}))").format(h=cols.expr(), n=sql.Literal(n))


def multiset_diff(src: psycopg.Connection, tgt: psycopg.Connection, t: TableInfo, block_size: int,
                  diff: TableDiff, progress: Callable[[int, int], None] = lambda blocks, rows: None) -> None:
    """Inside the callers' snapshot transactions: rows as (row, count) groups; blocks are ranges of the row's
    hash, so that equal rows always fall into the same block on both sides."""
    diff.keyed = False
    cols = row_hash(src, tgt, t)
    diff.rows = src.execute(sql.SQL("SELECT count(*) FROM {}").format(t.ident)).fetchone()[0]
    n = max(1, -(-diff.rows // block_size))
    diff.blocks = n
    per_block = sql.SQL("SELECT {b}, count(*), sum({h}) FROM {tbl} t GROUP BY 1").format(
        b=_bucket(cols, n), h=cols.expr(), tbl=t.ident)
    a, b = _both(lambda: {r[0]: r[1:] for r in src.execute(per_block)},
                 lambda: {r[0]: r[1:] for r in tgt.execute(per_block)})
    progress(n, diff.rows)
    differing = sorted(x for x in a.keys() | b.keys() if a.get(x) != b.get(x))
    diff.blocks_differing = len(differing)
    if not differing:
        return
    groups = sql.SQL("SELECT ROW({c})::text, count(*) FROM {tbl} t WHERE {b} = ANY(%s) GROUP BY 1").format(
        c=_cols(cols.cols), tbl=t.ident, b=_bucket(cols, n))
    ga, gb = _both(lambda: dict(src.execute(groups, (differing,)).fetchall()),
                   lambda: dict(tgt.execute(groups, (differing,)).fetchall()))
    for row in sorted(ga.keys() | gb.keys()):
        more = ga.get(row, 0) - gb.get(row, 0)
        if more > 0:
            diff.missing.append({"row": row, "count": more})
        elif more < 0:
            diff.extra.append({"row": row, "count": -more})
