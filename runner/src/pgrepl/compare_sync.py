"""`pgrepl compare`: every table of a sync on each target against its source (compare.py), differences
re-checked once the sync has applied past the compare's snapshots, optionally repaired through the apply path,
and the result kept in the control database (`pgrepl.compare_result`, repaired keys in `pgrepl.compare_repair`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from . import apply, capture, catalog, compare, inplace
from .capture import Capture, TableInfo
from .compare import Key, Position, TableDiff
from .delta import Batch
from .errors import NotFound, Refused
from .swap import DEFAULT_RULE


@dataclass
class Progress:
    """What a compare reports as it goes (the CLI draws it on a TTY)."""
    tables: int = 0
    tables_done: int = 0
    blocks: int = 0
    rows: int = 0
    rows_expected: int = 0
    started: float = field(default_factory=time.monotonic)
    notify: Callable[[Progress], None] = lambda p: None

    def add(self, blocks: int, rows: int) -> None:
        self.blocks += blocks
        self.rows += rows
        self.notify(self)

    @property
    def rate(self) -> float:
        return self.rows / max(time.monotonic() - self.started, 1e-6)

    @property
    def eta(self) -> float | None:
        left = self.rows_expected - self.rows
        return left / self.rate if self.rows and left > 0 else None


def _sync_tables(control: psycopg.Connection, sync: dict, names: list[str]) -> list[TableInfo]:
    tables = catalog.sync_tables(control, sync)
    if not names:
        return tables
    chosen = []
    for name in names:
        hit = capture.match(tables, name)
        if not hit:
            raise NotFound(f'Table "{name}" is not in sync "{sync["name"]}" (its tables: '
                           f'{", ".join(t.qualname for t in tables)})')
        chosen += [t for t in hit if t not in chosen]
    return chosen


def _key_dict(t: TableInfo, k: Key) -> dict:
    return dict(zip(t.pkey, k, strict=True))


class SyncCompare:
    def __init__(self, control: psycopg.Connection, name: str, tables: list[str] | None = None,
                 progress: Progress | None = None) -> None:
        self.control = control
        self.sync = catalog.get_sync(control, name)
        self.settings = catalog.all_settings(control)
        self.key = catalog.source_name(control, name)
        self.tables = _sync_tables(control, self.sync, tables or [])
        self.block_size = int(self.settings["compare_block_size"])
        self.wait = float(self.settings["compare_wait"])
        self.progress = progress or Progress()
        self.progress.tables = len(self.tables) * len(self.sync["targets"])

    def _connect(self, db: str) -> psycopg.Connection:
        return catalog.member_connect(self.control, db, f"pgrepl compare {self.sync['name']}")

    def _positions(self, src: psycopg.Connection, tgt: psycopg.Connection, target: str) -> list[Position]:
        """The consumers whose unapplied changes make a key in flight: the source's towards the target, and for
        a swap the target's towards the source too. Read before the snapshots (compare.py says why)."""
        if self.sync["type"] == "fullcopy":
            return []
        found = [compare.read_position(src, self.key, target)]
        if self.sync["type"] == "swap":
            found.append(compare.read_position(tgt, self.key, self.sync["source"]))
        if None in found:
            raise NotFound(f'Sync "{self.sync["name"]}" has no position towards "{target}": run `pgrepl validate '
                           f'{self.sync["name"]}`')
        return found

    def run(self) -> list[TableDiff]:
        results = []
        for target in self.sync["targets"]:
            with self._connect(self.sync["source"]) as src, self._connect(target) as tgt:
                self.progress.rows_expected += self._estimate(src)
                for t in self.tables:
                    results.append(self.table(src, tgt, target, t))
                    self.progress.tables_done += 1
                    self.progress.notify(self.progress)
        return results

    def _estimate(self, src: psycopg.Connection) -> int:
        return int(src.execute("SELECT coalesce(sum(greatest(reltuples, 0)), 0) FROM pg_class "
                               "WHERE oid = ANY(%s::regclass[])", ([t.qualname for t in self.tables],)).fetchone()[0])

    def _snapshots(self, src: psycopg.Connection, tgt: psycopg.Connection, work: Callable[[], object]):
        """Runs WORK with both sides in a snapshot transaction; returns (its result, the source's snapshot,
        the target's)."""
        with src.transaction(), tgt.transaction():
            compare.snapshot_read(src)
            compare.snapshot_read(tgt)
            snaps = [c.execute("SELECT pg_current_snapshot()::text").fetchone()[0] for c in (src, tgt)]
            return work(), *snaps

    def table(self, src: psycopg.Connection, tgt: psycopg.Connection, target: str, t: TableInfo) -> TableDiff:
        diff = TableDiff(t.qualname, target)
        if not t.pkey:
            self._snapshots(src, tgt, lambda: compare.multiset_diff(src, tgt, t, self.block_size, diff,
                                                                    self.progress.add))
            return diff
        positions = self._positions(src, tgt, target)
        found, *snaps = self._snapshots(src, tgt, lambda: compare.keyed_candidates(
            src, tgt, t, self.block_size, diff, self.progress.add))
        if positions and found:
            found = self._settle(positions, t, found, diff)
            if found:   # once the sync has applied past the snapshots, look at what is left again
                self._wait_past(positions, t, snaps)
                positions = self._positions(src, tgt, target)
                keys = [found_key for _kind, found_key in found]
                found = self._snapshots(src, tgt, lambda: compare.recheck(src, tgt, t, keys))[0]
                found = self._settle(positions, t, found, diff)
        for kind, k in found:
            getattr(diff, kind).append(_key_dict(t, k))
        return diff

    def _settle(self, positions: list[Position], t: TableInfo, found: list, diff: TableDiff) -> list:
        """FOUND without the keys in flight (counted in diff.in_flight)."""
        keys = [found_key for _kind, found_key in found]
        flying: set[Key] = set()
        for pos in positions:
            some = compare.in_flight(pos, t, keys)
            flying |= set(keys) if some is None else some
        diff.in_flight += len(flying)
        return [(kind, k) for kind, k in found if k not in flying]

    def _wait_past(self, positions: list[Position], t: TableInfo, snaps: list[str]) -> None:
        """Until each consumer has applied what its source's snapshot held (at most compare_wait seconds: past
        that, keys still in flight are not differences all the same)."""
        source_snap = {id(positions[0].conn): snaps[0]}
        if len(positions) > 1:
            source_snap[id(positions[1].conn)] = snaps[1]
        deadline = time.monotonic() + self.wait
        while time.monotonic() < deadline:
            if all(compare.applied_past(p, t, source_snap[id(p.conn)]) for p in positions):
                return
            time.sleep(0.2)

    # --- repair ----------------------------------------------------------------------------------------------

    def winner(self, t: TableInfo, target: str, winner_db: str | None) -> str:
        """The database whose rows win for T: the source for pushdelta and fullcopy; for swap --winner, else
        the table's standard_conflict when it names a side."""
        if self.sync["type"] != "swap":
            if winner_db not in (None, self.sync["source"]):
                raise Refused(f'--winner: in a {self.sync["type"]} sync the source ("{self.sync["source"]}") wins')
            return self.sync["source"]
        if winner_db is not None:
            if winner_db not in (self.sync["source"], target):
                raise Refused(f'--winner must be "{self.sync["source"]}" or "{target}", not "{winner_db}"')
            return winner_db
        rule = next((m["standard_conflict"] for m in catalog.herd_members(self.control, self.sync["herd"])
                     if catalog.relation_info(m) == t), None) or DEFAULT_RULE
        if rule not in ("source", "target"):
            raise Refused(f'Table {t.qualname} resolves conflicts by "{rule}", which a compare cannot apply to '
                          f'rows without a change to date: give --winner {self.sync["source"]} or --winner {target}')
        return self.sync["source"] if rule == "source" else target

    def repair(self, diffs: list[TableDiff], winner_db: str | None = None, dry_run: bool = False) -> list[str]:
        """Makes the loser's rows the winner's, through the apply path (DELETE + COPY of the keys in one
        transaction; a table without a key is copied whole, as fullcopy does); journals each key. Returns what
        was (or, with DRY_RUN, would be) done."""
        said = []
        tables = {t.qualname: t for t in self.tables}
        for d in (d for d in diffs if d.differences):
            t = tables[d.table]
            win = self.winner(t, d.target, winner_db)
            lose = d.target if win == self.sync["source"] else self.sync["source"]
            said.append(f"{'would copy' if dry_run else 'copied'} {d.differences} row(s) of {t.qualname} from "
                        f"{win} to {lose}" + ("" if d.keyed else " (the whole table: it has no key)"))
            if dry_run:
                continue
            with self._connect(win) as wconn, self._connect(lose) as lconn:
                if d.keyed:
                    self._repair_keys(wconn, lconn, t, d)
                else:
                    apply.full_copy(wconn, lconn, [t])
            self._journal(t, d, win, lose)
            d.repaired = d.differences
        return said

    def _repair_keys(self, wconn: psycopg.Connection, lconn: psycopg.Connection, t: TableInfo, d: TableDiff) -> None:
        keys = [tuple(k[c] for c in t.pkey) for k in (*d.missing, *d.extra, *d.different)]
        cap = capture.find(wconn, t) if capture.has_schema(wconn) else None
        tcap = capture.find(lconn, t) if self.sync["makedelta"] and capture.has_schema(lconn) else None
        with wconn.transaction():
            apply.repeatable_read(wconn)
            cols = apply.columns(wconn, t)
            present = compare.key_rows(wconn, t, compare.RowHash(tuple(cols)), keys)
            batch = Batch.of(cap or Capture(0, t, ""), keys, [k in present for k in keys])
            with lconn.transaction():
                apply.begin_replica(lconn)
                inplace.apply_batch(wconn, lconn, batch, cols, self.key, tcap)   # the loser may be a master

    def _journal(self, t: TableInfo, d: TableDiff, win: str, lose: str) -> None:
        entries = [(json.dumps(k), kind) for kind in ("missing", "extra", "different") for k in getattr(d, kind)]
        self.control.execute(
            "INSERT INTO pgrepl.compare_repair (sync, tablename, winner_db, loser_db, key, kind) "
            "SELECT %s, %s, %s, %s, e.key, e.kind FROM unnest(%s::jsonb[], %s::text[]) AS e(key, kind)",
            (self.sync["name"], t.qualname, win, lose, [e[0] for e in entries], [e[1] for e in entries]))


def summary(sync: dict, diffs: list[TableDiff], repaired: bool, started: datetime) -> dict:
    return {"sync": sync["name"], "type": sync["type"], "source": sync["source"], "targets": sync["targets"],
            "equal": not any(d.differences for d in diffs), "rows": sum(d.rows for d in diffs),
            "differences": sum(d.differences for d in diffs), "in_flight": sum(d.in_flight for d in diffs),
            "repaired": repaired, "started": started.isoformat(), "finished": datetime.now(UTC).isoformat(),
            "tables": [d.as_dict() for d in diffs]}


def save(control: psycopg.Connection, result: dict) -> None:
    """The sync's last compare, whole (pg_repl_info returns it)."""
    control.execute(
        "INSERT INTO pgrepl.compare_result (sync, started, finished, equal, rows, differences, repaired, result) "
        "VALUES (%(sync)s, %(started)s, %(finished)s, %(equal)s, %(rows)s, %(differences)s, %(repaired)s, "
        "%(json)s::jsonb) ON CONFLICT (sync) DO UPDATE SET started = excluded.started, finished = excluded.finished, "
        "equal = excluded.equal, rows = excluded.rows, differences = excluded.differences, "
        "repaired = excluded.repaired, result = excluded.result", {**result, "json": json.dumps(result)})


def last_results(control: psycopg.Connection) -> dict[str, dict]:
    """{sync: its last compare's result}, for the syncs that still exist."""
    return dict(control.execute("SELECT r.sync, r.result FROM pgrepl.compare_result r JOIN pgrepl.sync s "
                                "ON s.name = r.sync").fetchall())


def run(control: psycopg.Connection, name: str, tables: list[str] | None = None, repair: bool = False,
        dry_run: bool = False, winner: str | None = None, progress: Progress | None = None) -> tuple[dict, list[str]]:
    """Compares sync NAME (and repairs it when asked); returns the result and what a repair did. DRY_RUN changes
    nothing at all: no repair, and the result is not kept either."""
    started = datetime.now(UTC)
    c = SyncCompare(control, name, tables, progress)
    diffs = c.run()
    said = c.repair(diffs, winner, dry_run) if repair else []
    result = summary(c.sync, diffs, repair and not dry_run and any(d.differences for d in diffs), started)
    if not dry_run:
        save(control, result)
    return result, said
