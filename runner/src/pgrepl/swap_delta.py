"""Swap syncs that keep every write: delta (additive) columns and column-level merge (docs/swap.md).

Delta columns. The capture records, for each updated row, the net change `new - old` of each delta column
(capture.py, rich delta stores). A swap applies a side's net changes to the other side as `value + net change`,
both when only that side changed the row (the same as a copy, but exact when a change races with the run) and
when both did (each side gets the other's net changes: both increments kept). The windows are the sides'
intervals, so every change is added once: changes committed after an interval's end are the next run's.
A NULL before or after a change makes that column's net change unknown (NULL): the column is then copied, or in
a conflict takes the winner's value. A change that is not an update (insert, delete, a new key) makes the key's
changes not additive: the table's standard_conflict decides, as for any table.

Merge. With standard_conflict=merge the capture also records which columns each update changed; when both sides
updated a row, columns changed on one side only keep that side's value, and columns changed on both take the
`latest` side's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal

import psycopg
from psycopg import sql

from . import apply, delta, inplace
from .capture import Capture
from .delta import Batch
from .swap_rows import key_text


@dataclass
class Net:
    """One key's changes on one side: additive (only updates since the last run), the net change of each delta
    column in the window (text, None: unknown), and the columns changed since the last run (merge)."""
    pure: bool            # every change since the last run is an update under the same key
    pure_window: bool     # ... every change in the window
    nets: list[str | None]
    changed: set[str]

    def nonzero(self) -> bool:
        return any(n is not None and not _is_zero(n) for n in self.nets)


def _is_zero(text: str) -> bool:
    try:
        return Decimal(text.replace("$", "").replace(",", "")) == 0
    except ArithmeticError:
        return text in ("00:00:00", "0", "-0")


def _text_array(values) -> str:
    """An array literal of text values where None is NULL (delta.array_literal quotes every element)."""
    return "{" + ",".join("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"


def nets(conn: psycopg.Connection, cap: Capture, keys: list[tuple[str, ...]], iv, upto: str | None = None
         ) -> dict[tuple[str, ...], Net]:
    """For KEYS on this side: see Net. The window is the side's interval IV after its cursor (up to txid UPTO);
    `since the last run` is every change committed after its `done`, racing ones included."""
    if not keys:
        return {}
    window = sql.SQL("{interval} {after}{upto}").format(
        interval=delta.in_interval("d"), after=delta.after_cursor(iv),
        upto=sql.SQL(" AND d.txid <= %(upto)s::xid8") if upto else sql.SQL(""))
    sums = [sql.SQL("CASE WHEN bool_or(d.{n} IS NULL) FILTER (WHERE {w}) THEN NULL "
                    "ELSE coalesce(sum(d.{n}) FILTER (WHERE {w}), '0'::{t})::text END").format(
        n=sql.Identifier(f"n{i + 1}"), w=window, t=sql.SQL(t)) for i, t in enumerate(cap.nettypes)]
    changed = sql.SQL("jsonb_agg(d.changed) FILTER (WHERE d.changed IS NOT NULL)::text" if cap.track_changed
                      else "NULL")
    q = sql.SQL("SELECT {keytext}, coalesce(bool_and(d.op = 'U'), false), "
                "coalesce(bool_and(d.op = 'U') FILTER (WHERE {w}), true), {changed}{sums} "
                "FROM {delta} d JOIN {keys} ON {join} "
                "WHERE d.txid >= pg_snapshot_xmin(%(done)s::pg_snapshot) "
                "AND NOT pg_visible_in_snapshot(d.txid, %(done)s::pg_snapshot) AND d.origin IS DISTINCT FROM %(sync)s "
                "GROUP BY {group}").format(
        keytext=key_text(cap.keycols, "d"), w=window, changed=changed,
        sums=sql.SQL("").join(sql.SQL(", {}").format(s) for s in sums), delta=cap.delta,
        keys=apply.keys_relation(cap.table, False), join=apply.key_join("d", cap.keycols),
        group=sql.SQL(", ").join(sql.SQL("d.{}").format(sql.Identifier(k)) for k in cap.keycols))
    params = {**apply.key_arrays(cap.table, keys), **delta.interval_params(iv, upto=upto)}
    n = len(cap.keycols)
    out = {}
    for r in conn.execute(q, params):
        cols = set()
        for change in json.loads(r[n + 2]) if r[n + 2] else ():
            cols.update(change)
        out[tuple(r[:n])] = Net(r[n], r[n + 1], list(r[n + 3:]), cols)
    return out


def update_rows(conn: psycopg.Connection, cap: Capture, entries: list, shape: inplace.Shape) -> int:
    """In the caller's transaction: each (key, row image, nets) entry UPDATEs its row in place: the columns take
    the image's values, each delta column its value now plus the net change (the image's value where either is
    NULL). An UPDATE, never DELETE + INSERT: a writer waiting on the row updates it after us, while a deleted row
    would make its UPDATE find nothing and lose its change. One statement for every entry. SHAPE: the table's on
    CONN (inplace.shapes)."""
    if not entries:
        return 0
    table = cap.table
    nk, nd = len(table.pkey), len(cap.deltacols)
    names = [f"k{i}" for i in range(nk)] + [f"n{i}" for i in range(nd)]
    arrays = [sql.SQL("{}::{}[]").format(sql.Placeholder(f"k{i}"), sql.SQL(t)) for i, t in enumerate(table.pktype)]
    arrays += [sql.SQL("{}::text[]").format(sql.Placeholder(n)) for n in names[nk:]]
    params = apply.key_arrays(table, [e[0] for e in entries])
    for i in range(nd):
        params[f"n{i}"] = _text_array(e[2][i] for e in entries)
    params["rows"] = "[" + ",".join(e[1] for e in entries) + "]"
    # GENERATED ALWAYS identity columns: an UPDATE may not set them (the row's own anyway)
    plain = [c for c in shape.cols if c not in table.pkey and c not in cap.deltacols and c not in shape.identity]
    sets = [sql.SQL("{c} = r.{c}").format(c=sql.Identifier(c)) for c in plain]
    sets += [sql.SQL("{c} = coalesce(t.{c} + k.{n}::{t}, r.{c})").format(
        c=sql.Identifier(c), n=sql.Identifier(f"n{i}"), t=sql.SQL(cap.nettypes[i])) for i, c in enumerate(cap.deltacols)]
    if not sets:
        return 0
    return conn.execute(sql.SQL(
        "UPDATE {t} AS t SET {sets} FROM jsonb_populate_recordset(NULL::{t}, %(rows)s::jsonb) AS r, "
        "(SELECT * FROM unnest({arrays}) AS u({names})) AS k WHERE {rjoin} AND {tjoin}").format(
        t=table.ident, sets=sql.SQL(", ").join(sets), arrays=sql.SQL(", ").join(arrays),
        names=sql.SQL(", ").join(sql.Identifier(n) for n in names), rjoin=apply.key_join("r", table.pkey),
        tjoin=apply.key_join("t", table.pkey)), params).rowcount


def apply_additive(src, tgt, cap: Capture, tcap: Capture, keys: list, locked, upto: str, origin: str | None,
                   images, shape: inplace.Shape) -> tuple[set, int]:
    """The keys of a batch that TGT did not change, whose changes in the batch are all updates, and whose row
    exists on both sides (LOCKED on TGT; IMAGES(keys) reads SRC's rows in the batch's snapshot): updated in place
    on TGT with SRC's row and, for the delta columns, TGT's value plus SRC's net change; exact even when SRC's row
    holds a later change that races with the run (it is the next run's). SHAPE: the table's on TGT. Returns the
    keys done and the rows."""
    found = nets(src.conn, cap, [k for k in keys if k in locked], src.iv, upto)
    rows = images([k for k, n in found.items() if n.pure_window])
    entries = [(k, image, found[k].nets) for k, image in rows.items()]
    n = update_rows(tgt.conn, tcap, entries, shape)
    if origin is not None and entries:
        done = [e[0] for e in entries]
        apply.record_keys(tgt.conn, tcap, Batch.of(tcap, done, [True] * len(done)), origin)
    return {e[0] for e in entries}, n


def resolve(run, t, keys: list, rows: dict, when: dict, decide, marked: dict) -> tuple[set, list]:
    """Conflicts of a table with delta columns or merge whose changes on both sides are updates: both sides'
    writes kept (see the module's docstring). In the caller's transactions on both sides, rows locked. Returns
    the keys handled and their journal entries; the others go to the table's rule as usual. MARKED: by side, the
    keys it already got the other's writes for before a crash: not written there again (the values computed as
    before: the nets are the intervals', each added to this side's own current value)."""
    a, b = run.a, run.b
    cap = a.cap(t.info)
    dcols = cap.deltacols
    info = {s.role: nets(s.conn, s.cap(t.info), keys, s.iv) for s in (a, b)}
    idle = Net(True, True, ["0"] * len(dcols), set())
    rule = "latest" if t.rule == "merge" else t.rule
    handled, journal = set(), []
    updates = {"source": [], "target": []}
    for k in keys:
        ra, rb = rows["source"].get(k), rows["target"].get(k)
        na, nb = info["source"].get(k, idle), info["target"].get(k, idle)
        if ra is None or rb is None or not (na.pure and nb.pure) or rule == "abort":
            continue
        moved = na.nonzero() or nb.nonzero()
        handled.add(k)
        if ra == rb and not moved:
            continue
        winner = decide(rule, when, k)
        take: set[str] = set()
        if t.rule == "merge":
            (w_img, w_net), (l_img, l_net) = ((ra, na), (rb, nb)) if winner == "source" else ((rb, nb), (ra, na))
            take = (l_net.changed - w_net.changed) - set(dcols)
            images = dict.fromkeys(("source", "target"), merged_image(w_img, l_img, take))
        elif winner == "skip":
            images = {"source": ra, "target": rb}
        else:
            images = dict.fromkeys(("source", "target"), ra if winner == "source" else rb)
        for role, net in (("source", nb), ("target", na)):   # each side: plus the other's net changes
            if k not in marked[role]:
                updates[role].append((k, images[role], net.nets))
        journal.append((k, ra, rb, "both" if take else winner, "delta" if dcols and moved else t.rule,
                        _delta_json(dcols, na.nets), _delta_json(dcols, nb.nets)))
    origin = run.key if run.sync["makedelta"] else None
    for s in (a, b):
        if updates[s.role]:
            run.counts.updates += update_rows(s.conn, s.cap(t.info), updates[s.role], run.shapes[s.role][t.info.qualname])
            if origin is not None:
                done = [e[0] for e in updates[s.role]]
                apply.record_keys(s.conn, s.cap(t.info), Batch.of(s.cap(t.info), done, [True] * len(done)), origin)
    return handled, journal


_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def _delta_json(cols, nets: list[str | None]) -> str | None:
    """The net changes as a journal shows them: numbers as JSON numbers, intervals and money as text."""
    if not cols:
        return None
    return "{" + ", ".join(json.dumps(c) + ": " + ("null" if n is None else n if _NUMBER.fullmatch(n) else json.dumps(n))
                           for c, n in zip(cols, nets, strict=True)) + "}"


def merged_image(winner: str, loser: str, take: set[str]) -> str:
    """WINNER's row image (jsonb text) with the columns TAKE from LOSER's; numbers keep their digits."""
    w, lo = json.loads(winner, parse_float=Decimal), json.loads(loser, parse_float=Decimal)
    w.update({c: lo[c] for c in take if c in lo})
    return json.dumps(w, default=str)
