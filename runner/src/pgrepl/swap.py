"""Swap: master/master between two databases, each the source and the target of the other (docs/swap.md).

One run moves changes both ways: first those made on the sync's source side (the herd's database) to the other
side, then the other side's back, each batch by batch as a pushdelta does; the other side's interval ends as its
pass starts, so what it committed during the first pass goes back in the same run (SwapRun.run). Applied rows are
written with session_replication_role = replica, so the capture triggers do not record them and nothing
ping-pongs; with makedelta their keys are recorded for the other syncs that read the table, marked with the
sync's name as origin, which this sync skips.

Conflicts. A key changed on both sides since the last run is a conflict when its rows differ (a key changed the
same way on both sides is not). The table's standard_conflict decides, row by row:
    source   the sync's source side wins          target   the other side wins
    latest   the side whose last change of the row committed last wins (commit timestamps; see docs/swap.md)
    skip     neither side is changed              abort    the run stops before writing anything
The winner's row is written on the loser's side (the winner's delete is a delete), and every conflict is
journaled in the control database (pgrepl.conflict) with both row images.

Races: before a batch overwrites rows on a side, it locks them (FOR UPDATE) and looks on that side for changes
made since the last run; such a row is a conflict, resolved the same way with both sides locked, never
overwritten blindly. The locks are held for one batch's transaction only.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from . import apply, capture, catalog, delta, guard, inplace, swap_delta, swap_rows
from .apply import Counts
from .capture import Capture, TableInfo
from .delta import Batch, Interval
from .errors import PgreplError
from .swap_rows import changed_since, last_change, last_truncate, lock_rows, lock_skipping, write_rows

RULES = ("source", "target", "latest", "skip", "abort", "merge")

DEFAULT_RULE = "latest"   # a herd member without standard_conflict (Bucardo 5's default, bucardo_latest)


class ConflictAbort(PgreplError):
    """A conflict on a table whose standard_conflict is abort: the run stopped, nothing was written."""


@dataclass
class Table:
    info: TableInfo
    rule: str
    deltacols: tuple[str, ...] = ()   # additive columns (swap_delta.py)


@dataclass
class Side:
    """One database of the swap: its connection and captures, and the interval of its own changes that the
    other side has not received yet."""
    db: str
    role: str                      # "source" or "target": the side of the sync it is (winner names in the journal)
    conn: psycopg.Connection
    caps: dict[str, Capture] = field(default_factory=dict)
    iv: Interval | None = None
    commit_ts: bool = False        # track_commit_timestamp is on
    resume: tuple[str, str] | None = None   # a batch of iv the other side holds in part: (cursor, what is left)
    fresh: bool = False            # iv was opened by this run
    since: str | None = None       # the first side during the second pass: its interval's end (see SwapRun.run)

    def last_run(self) -> str:
        """The snapshot after which a change of this side is news to the other side (a conflict candidate)."""
        return self.since or self.iv.done

    def cap(self, table: TableInfo) -> Capture:
        try:
            return self.caps[table.qualname]
        except KeyError:
            raise PgreplError(f'Table {table.qualname} is not captured in database "{self.db}": re-add the sync '
                              f'(`pgrepl update sync`) to install its triggers') from None


def run(worker, sync: dict, kicks: list[int]) -> bool:
    """One swap run (both ways) as one recorded run of the worker, retried with backoff when it fails."""
    d = worker.direction(sync["source"], sync["targets"][0])
    return worker.run_direction(d, "swap", kicks[-1] if kicks else None, functools.partial(_work, worker, sync))


def _work(worker, sync: dict, d, probe: bool) -> Counts | bool:
    a, b, tables = _look(worker, sync, d)
    key = worker.source_name
    guard.check(sync["name"], key, [t.info for t in tables], (a.db, d.src), (b.db, d.tgt))
    if probe:   # both sides probed (no short cut): each gets its fast probe (watch.py)
        return any([_has_work(d, s, o, key, tables) for s, o in ((a, b), (b, a))])
    swap = SwapRun(worker.control, worker.settings, sync, key, a, b, tables, worker._sync_tables(sync, "sequence"),
                   lambda: worker.stopper.stopping)
    counts = swap.run()
    if swap.finished:   # the probe looks past the new positions: the run's own commits are no news
        for s, o in ((a, b), (b, a)):
            d.watch(s.conn, key, o.db, [s.cap(t.info) for t in tables], s.iv.pending)
    return counts


def _look(worker, sync: dict, d) -> tuple[Side, Side, list[Table]]:
    """Both sides (their captures) and the herd's tables, read once per poll and connection: the fast rounds
    between two polls (watch.py) reuse them (worker.tables, emptied by each poll)."""
    found = worker.tables.get("swap")
    if found is None or found[0] is not d.src or found[1] is not d.tgt:
        found = worker.tables["swap"] = (d.src, d.tgt, _side(d.src, sync["source"], "source"),
                                         _side(d.tgt, sync["targets"][0], "target"), sync_tables(worker.control, sync))
    a, b, tables = found[2:]
    return (Side(a.db, a.role, a.conn, a.caps, commit_ts=a.commit_ts),   # fresh intervals for each run
            Side(b.db, b.role, b.conn, b.caps, commit_ts=b.commit_ts), tables)


def _side(conn: psycopg.Connection, db: str, role: str) -> Side:
    caps = {c.table.qualname: c for c in capture.captures(conn)} if capture.has_schema(conn) else {}
    on = conn.execute("SELECT current_setting('track_commit_timestamp') = 'on'").fetchone()[0]
    return Side(db, role, conn, caps, commit_ts=on)


def _has_work(d, side: Side, other: Side, sync: str, tables: list[Table]) -> bool:
    done, pending = delta.consumer_position(side.conn, sync, other.db)[:2]
    caps = [side.cap(t.info) for t in tables]
    d.watch(side.conn, sync, other.db, caps, done)
    return pending is not None or delta.has_new_changes(side.conn, sync, caps, done)


def sync_tables(control: psycopg.Connection, sync: dict) -> list[Table]:
    """The herd's tables with their conflict rule."""
    return [Table(catalog.relation_info(m), m["standard_conflict"] or DEFAULT_RULE, tuple(m.get("delta_columns") or ()))
            for m in catalog.herd_members(control, sync["herd"]) if m["kind"] == "table"]


class SwapRun:
    def __init__(self, control, settings: dict, sync: dict, key: str, a: Side, b: Side, tables: list[Table],
                 sequences: list[TableInfo], should_stop: Callable[[], bool]) -> None:
        # name: in the control database (journal); key: in the two databases (positions, origins)
        self.control, self.sync, self.name, self.key = control, sync, sync["name"], key
        self.a, self.b = a, b
        self.tables, self.sequences = tables, sequences
        self.batch_size = int(settings["batch_size"])
        self.delete_method = settings["fullcopy_delete_method"]
        self.should_stop = should_stop
        self.counts = Counts()
        self.finished = False          # both intervals closed: every change they held is applied
        self.resolved: dict[str, set[tuple[str, ...]]] = {t.info.qualname: set() for t in tables}
        # the second side's interval ends as its pass starts, not as the run does (a lag of one pass less); a table
        # with delta columns or merge keeps both ends at the run's start (its net changes are summed per interval)
        self.late = not any(t.deltacols or t.rule == "merge" for t in tables)
        # the second side's snapshot when each resolved key was written there: its later changes are still owed
        self.seen: dict[str, dict[tuple[str, ...], str]] = {t.info.qualname: {} for t in tables}

    def run(self) -> Counts:
        a, b = self.a, self.b
        for s, o in ((a, b), (b, a)):
            s.iv, s.fresh = delta.open_swap(s.conn, self.key, o.db, [s.cap(t.info) for t in self.tables])
        # this run's identity (the first side's interval, where the second's starts; its end moves as its pass
        # starts): the conflict keys each side resolved in it are kept on that side
        self.run_id = _identity(a.iv.done, a.iv.pending, b.iv.done)
        # each side's columns and what writing in place needs, once per run (not per table and batch)
        self.shapes = {s.role: inplace.shapes(s.conn, [t.info for t in self.tables]) for s in (a, b)}
        # read once: keys this run resolves from now on are in self.resolved and never come back as conflicts
        # (a side whose interval is new forgot the keys of old runs as it opened it)
        # (a run that an older pgrepl left unfinished, source schema 5, has both ends in its identity)
        runs = [self.run_id, _identity(a.iv.done, a.iv.pending, b.iv.done, b.iv.pending)]
        self.marked = {s.role: {} if s.fresh else delta.resolved_keys(s.conn, self.key, runs) for s in (a, b)}
        for name, keys in self.resolved.items():   # resolved on both sides before a crash: done
            keys.update(self.marked["source"].get(name, {}).keys() & self.marked["target"].get(name, {}).keys())
            self.seen[name].update((k, seen) for k, seen in self.marked["target"].get(name, {}).items() if seen)
        for src, tgt in ((a, b), (b, a)):   # batches committed on tgt whose position a crash kept from moving
            src.resume = None if src.fresh else delta.catch_up(src.conn, src.iv, tgt.conn, src.db)
        self._stop_on_abort_conflicts()
        # the truncations are copied once per interval: a cursor on both sides says it was done (before a restart)
        copied = self._truncations(copy=a.iv.cursor is None or b.iv.cursor is None)
        for s in (a, b):
            if s.iv.cursor is None:
                delta.advance(s.conn, s.iv, [""])
        tables = [t for t in self.tables if t.info.qualname not in copied]
        if not self._pass(a, b, tables):
            return self.counts   # asked to stop: the cursors say where to resume
        if self.late:
            # every change of a's interval is on b now: a's changes since its end are the news for b's pass, and
            # b's interval, untouched yet, takes in what b committed during a's pass
            a.since = a.iv.pending
            if b.fresh and b.iv.cursor == [""] and not copied:
                delta.extend_swap(b.conn, b.iv, [b.cap(t.info) for t in self.tables])
        if not self._pass(b, a, tables):
            return self.counts
        self._sequences()
        delta.close_interval(a.conn, a.iv)
        delta.close_interval(b.conn, b.iv)
        self.finished = True
        return self.counts

    # --- one direction ---------------------------------------------------------------------------------------

    def _pass(self, src: Side, tgt: Side, tables: list[Table]) -> bool:
        """Applies the changes of SRC's interval to TGT, whole source transactions at a time, every table of a
        batch in one TGT transaction. Rows that TGT changed since the last run are conflicts, resolved after the
        batch. Rows that a TGT transaction holds locked right now are not waited for inside the batch (waiting
        there, holding the batch's other locks, would deadlock with applications that lock tables in another
        order): they are applied just after, every table together without waiting, then what is still held table
        by table, waiting for those locks. False when asked to stop."""
        caps = [src.cap(t.info) for t in tables]
        cols = {name: shape.cols for name, shape in self.shapes[src.role].items()}
        while not self.should_stop():
            clashes, busy = [], []
            if src.resume:   # its first target transaction committed before a crash: what is left of the batch
                (upto, todo), last, src.resume = src.resume, False, None
                clashes, busy = self._todo(todo)
            else:
                with apply.read_transaction(src.conn):   # BEGIN and its settings in one round trip
                    upto, last, batches = delta.next_batch(src.conn, src.iv, caps, self.batch_size)
                    if upto is None:
                        return True
                    with apply.replica_transaction(tgt.conn):
                        todo = [(t, batch) for t, batch in zip(tables, batches, strict=True) if batch is not None]
                        clashes, busy = self._apply_clean(src, tgt, todo, cols, upto, wait=False)
                        # each target transaction of the batch records it, with what is left of it after
                        delta.record_applied(tgt.conn, src.iv, src.db, upto, _todo_text(clashes, busy))
            if len(busy) > 1:   # mostly let go meanwhile: every table in one pair of transactions, not waiting
                busy = self._apply_held(src, tgt, busy, clashes, cols, upto, wait=False)
            for i, (t, keys) in enumerate(busy):
                self._apply_held(src, tgt, [(t, keys)], clashes, cols, upto, wait=True, after=busy[i + 1:])
            self._resolve(clashes)
            delta.advance(src.conn, src.iv, [upto])
            if last:
                return True
        return False

    def _apply_held(self, src: Side, tgt: Side, busy: list, clashes: list, cols: dict, upto: str, wait: bool,
                    after: list = ()) -> list:
        """The rows of BUSY that a TGT transaction held during the batch, applied in one pair of transactions (their
        conflicts join CLASHES). Not waiting: returns those still held; AFTER: the tables left for later."""
        with apply.read_transaction(src.conn), apply.replica_transaction(tgt.conn):
            todo = []
            for t, keys in busy:
                present = lock_rows(src.conn, t.info, keys, lock=False)
                todo.append((t, Batch.of(src.cap(t.info), keys, [k in present for k in keys])))
            clash, left = self._apply_clean(src, tgt, todo, cols, upto, wait)
            clashes += clash
            delta.record_applied(tgt.conn, src.iv, src.db, upto, _todo_text(clashes, left + list(after)))
        return left

    def _apply_clean(self, src: Side, tgt: Side, todo: list[tuple[Table, Batch]], cols: dict, upto: str,
                     wait: bool) -> tuple[list, list]:
        """In the caller's transactions: locks the rows of every batch of TODO on TGT (one statement for every
        table when not waiting, each table's rows in key order) and applies the keys TGT did not change since the
        last run. Returns the others as [(table, sorted keys)]: (conflicts for _resolve, rows held by another
        transaction that were not waited for when WAIT is false)."""
        keys = [batch.keys for _, batch in todo]
        if src is self.b and self.late:   # resolved keys that the second side changed again since
            for (t, _), ks in zip(todo, keys, strict=True):
                seen = self.seen[t.info.qualname]
                self._reopen(t, swap_rows.changed_after(src, src.cap(t.info), {k: seen[k] for k in ks if k in seen},
                                                        upto))
        if wait:
            locks = [(lock_rows(tgt.conn, t.info, ks), set()) for (t, _), ks in zip(todo, keys, strict=True)]
        else:
            locks = swap_rows.lock_batch(tgt.conn, [(t.info, ks) for (t, _), ks in zip(todo, keys, strict=True)])
        # read after the locks: a change committed before a row was locked is seen (its statement's snapshot)
        changed = swap_rows.changed_since_batch(tgt, self.key, [(tgt.cap(t.info), ks)
                                                             for (t, _), ks in zip(todo, keys, strict=True)])
        clashes, busy, clean = [], [], []
        for (t, batch), ks, (locked, held), since in zip(todo, keys, locks, changed, strict=True):
            clash = since - self.resolved[t.info.qualname]
            clean += self._clean(src, tgt, t, batch, ks, set(locked), clash | held, cols[t.info.qualname], upto)
            clashes += [(t, sorted(clash))] if clash else []
            busy += [(t, sorted(held - clash))] if held - clash else []
        if clean:   # every table's in one go (inplace.apply_batches: their round trips shared)
            self.counts += inplace.apply_batches(src.conn, tgt.conn, clean, self.key)
        return clashes, busy

    def _clean(self, src: Side, tgt: Side, t: Table, batch: Batch, keys: list[tuple[str, ...]], locked: set,
               not_now: set, cols: list[str], upto: str) -> list:
        """The keys of T's BATCH (KEYS: batch.keys) neither resolved in this run nor in NOT_NOW (conflicts, rows
        held elsewhere), to apply to TGT as inplace.apply_batches takes them (none or one item); a table with
        delta columns or merge has its updated rows written here (LOCKED: its rows locked on TGT)."""
        resolved = self.resolved[t.info.qualname]
        clean = [i for i, k in enumerate(keys) if k not in not_now and k not in resolved]
        scap, tcap, origin = src.cap(t.info), tgt.cap(t.info), self.key if self.sync["makedelta"] else None
        shape = self.shapes[tgt.role][t.info.qualname]
        if clean and scap.rich:   # delta columns, merge: updated rows in place (swap_delta), the others copied
            done, n = swap_delta.apply_additive(
                src, tgt, scap, tcap, [keys[i] for i in clean], locked, upto, origin,
                lambda ks: lock_rows(src.conn, t.info, ks, images=True, lock=False), shape)
            self.counts.updates += n
            clean = [i for i in clean if keys[i] not in done]
        return [(_subset(batch, keys, clean), cols, shape, tcap if origin else None)] if clean else []

    def _todo(self, text: str) -> tuple[list, list]:
        """What _todo_text recorded: (conflicts, held rows), each [(table, keys)]; a table no longer synced is left."""
        by_name = {t.info.qualname: t for t in self.tables}
        return tuple([(by_name[name], [tuple(k) for k in keys]) for name, keys in part if name in by_name]
                     for part in json.loads(text))

    # --- conflicts -------------------------------------------------------------------------------------------

    def _resolve(self, clashes: list[tuple[Table, list[tuple[str, ...]]]]) -> None:
        """A batch's conflicts, every table in one pair of transactions (both sides), their rows locked without
        waiting; a table whose rows another transaction holds on either side is resolved after, in a pair of its
        own that waits for them (waiting while holding the other tables' locks could deadlock with applications
        that lock tables in another order)."""
        if clashes:
            for t, keys in self._resolve_in(clashes, wait=False):
                self._resolve_in([(t, keys)], wait=True)

    def _resolve_in(self, clashes: list, wait: bool) -> list:
        """Both sides locked: compare the rows, let the rule pick a winner per row, write it on the loser. Each
        side records the keys in the transaction that writes them (pgrepl.resolved): after a crash, a key is not
        written again on a side that has it, nor journaled again. Returns the tables left for want of locks."""
        a, b = self.a, self.b
        done, left = [], []
        with apply.replica_transaction(a.conn), apply.replica_transaction(b.conn):
            # the second side's snapshot before its rows are read: what it commits after is owed to the first side.
            # Only in the first pass (a.since unset): the second side's interval no longer moves once its pass starts
            first_pass = self.late and a.since is None
            seen = b.conn.execute("SELECT pg_current_snapshot()::text").fetchone()[0] if first_pass else None
            for t, keys in clashes:
                rows = self._lock_images(t, keys, wait)
                if rows is None:
                    left.append((t, keys))
                else:
                    done.append((t, keys, self._settle(t, keys, rows)))
            for s in (a, b):
                unmarked = [(t.info.qualname, k) for t, keys, _ in done for k in keys
                            if k not in self._marked(s.role, t)]
                delta.mark_resolved(s.conn, self.key, self.run_id, unmarked, seen if s is b else None)
                if s is b and seen:
                    for name, k in unmarked:
                        self.seen[name][k] = seen
            # journaled (and committed, autocommit) before the resolution commits: a crash between the two leaves
            # the journal entry and a conflict the next run finds and journals again; never a silent resolution.
            for t, _, journal in done:
                self._journal(t, journal)
        for t, keys, journal in done:
            self.counts.conflicts += len(journal)
            self.resolved[t.info.qualname].update(keys)
        return left

    def _marked(self, role: str, t: Table) -> dict:
        """The keys of T that side ROLE got the other's writes for in this run before a crash."""
        return self.marked[role].get(t.info.qualname, {})

    def _reopen(self, t: Table, keys: set[tuple[str, ...]]) -> None:
        """KEYS of T, resolved in this run, changed again on the second side since: no longer resolved, their
        changes apply (or conflict) as any other's."""
        name = t.info.qualname
        self.resolved[name] -= keys
        for k in keys:
            self.seen[name].pop(k, None)
            for role in self.marked:
                self.marked[role].get(name, {}).pop(k, None)

    def _lock_images(self, t: Table, keys: list[tuple[str, ...]], wait: bool) -> dict | None:
        """Locks KEYS' rows on both sides; their images by side role, by key. Not waiting: None when another
        transaction holds one of them (the rows locked so far stay locked until the caller's commit)."""
        rows = {}
        for s in (self.a, self.b):
            if wait:
                rows[s.role] = lock_rows(s.conn, t.info, keys, images=True)
            else:
                rows[s.role], held = lock_skipping(s.conn, t.info, keys, images=True)
                if held:
                    return None
        return rows

    def _settle(self, t: Table, keys: list[tuple[str, ...]], rows: dict) -> list:
        """In _resolve_in's transactions, T's rows locked: the winners written; returns the journal entries (the
        keys either side wrote before a crash left out: journaled then)."""
        a, b = self.a, self.b
        marked = {role: self._marked(role, t) for role in self.marked}
        when = {s.role: last_change(s, s.cap(t.info), self.key, keys) for s in (a, b)} \
            if t.rule in ("latest", "merge") else {}
        kept: set = set()
        journal = []
        if t.deltacols or t.rule == "merge":   # both sides' writes kept where both only updated the row
            kept, journal = swap_delta.resolve(self, t, keys, rows, when, decide, marked)
        for k in (k for k in keys if k not in kept):
            src_row, tgt_row = rows["source"].get(k), rows["target"].get(k)
            if src_row != tgt_row:
                journal.append((k, src_row, tgt_row, decide(t.rule, when, k)))
        if t.rule == "abort" and journal:
            self._journal(t, journal)
            raise ConflictAbort(_abort_message(t, journal))
        for winner, loser in ((a, b), (b, a)):
            won = [(entry[0], rows[winner.role].get(entry[0])) for entry in journal
                   if entry[3] == winner.role and entry[0] not in kept and entry[0] not in marked[loser.role]]
            if won:
                self.counts += write_rows(loser, t.info, won, self.key if self.sync["makedelta"] else None,
                                          self.shapes[loser.role][t.info.qualname])
        # a key one side wrote before a crash was journaled then
        return [e for e in journal if e[0] not in marked["source"] and e[0] not in marked["target"]]

    def _stop_on_abort_conflicts(self) -> None:
        """Tables whose rule is abort: look for conflicts before anything is written, so that an abort leaves
        both sides as they were."""
        for t in (t for t in self.tables if t.rule == "abort"):
            found = []
            for src, tgt in ((self.a, self.b), (self.b, self.a)):
                iv = Interval(src.iv.sync, src.iv.target, src.iv.done, src.iv.pending, src.iv.cursor)
                last = False
                while not last:
                    with src.conn.transaction():
                        apply.repeatable_read(src.conn)
                        upto, last, (batch,) = delta.next_batch(src.conn, iv, [src.cap(t.info)], self.batch_size)
                    if batch is None:
                        break
                    iv.cursor = [upto]
                    clash = sorted(changed_since(tgt, tgt.cap(t.info), self.key, batch.keys))
                    if clash:
                        rows = {s.role: lock_rows(s.conn, t.info, clash, images=True, lock=False)
                                for s in (self.a, self.b)}
                        found += [(k, rows["source"].get(k), rows["target"].get(k), "abort") for k in clash
                                  if rows["source"].get(k) != rows["target"].get(k)]
            if found:
                self._journal(t, found)
                raise ConflictAbort(_abort_message(t, found))

    def _journal(self, t: Table, entries: list) -> None:
        swap_rows.journal_conflicts(self.control, self.name, self.a.db, self.b.db, t.info, t.rule, entries)

    # --- truncate and sequences ------------------------------------------------------------------------------

    def _truncations(self, copy: bool) -> set[str]:
        """A table truncated on either side during the run's intervals is copied whole from the side of the most
        recent TRUNCATE to the other (Bucardo's rule): that side's later changes win, the other side's rows go.
        Returns those tables; copy=False: they were copied before a restart, only say which."""
        copied = set()
        truncated = {s.role: set() if s.fresh and s.iv.cursor is not None   # opened past its truncates: none
                     else delta.truncated_in(s.conn, s.iv, [s.cap(t.info) for t in self.tables]) for s in (self.a, self.b)}
        for t in self.tables:
            on = [s for s in (self.a, self.b) if s.cap(t.info).id in truncated[s.role]]
            if not on:
                continue
            copied.add(t.info.qualname)
            if not copy:
                continue
            winner = max(on, key=lambda s: last_truncate(s, s.cap(t.info)))
            loser = self.b if winner is self.a else self.a
            with winner.conn.transaction():
                apply.repeatable_read(winner.conn)
                with loser.conn.transaction():
                    apply.begin_replica(loser.conn)
                    self.counts += apply.copy_table(winner.conn, loser.conn, t.info,
                                                    self.shapes[winner.role][t.info.qualname].cols, self.delete_method)
                    if self.sync["makedelta"]:
                        loser.conn.execute("INSERT INTO pgrepl.truncate_log (capture_id, origin) VALUES (%s, %s)",
                                           (loser.cap(t.info).id, self.key))
        return copied

    def _sequences(self) -> None:
        """The higher value wins on both sides (Bucardo's `highest`)."""
        for s in self.sequences:
            query = sql.SQL("SELECT last_value, is_called FROM {}").format(s.ident)
            (va, ca), (vb, cb) = (self.a.conn.execute(query).fetchone(), self.b.conn.execute(query).fetchone())
            if (va, ca) == (vb, cb):
                continue
            winner, (value, called) = ((self.a, (va, ca)) if (va, ca) > (vb, cb) else (self.b, (vb, cb)))
            loser = self.b if winner is self.a else self.a
            loser.conn.execute("SELECT setval(%s::regclass, %s, %s)",
                               (s.regclass(loser.conn), value, called))


def _identity(*snapshots: str) -> str:
    return hashlib.md5(" ".join(snapshots).encode()).hexdigest()


def _todo_text(clashes: list, busy: list) -> str | None:
    """What is left of a batch after one of its target transactions: its conflicts and held rows (None: none)."""
    if not clashes and not busy:
        return None
    return json.dumps([[[t.info.qualname, keys] for t, keys in part] for part in (clashes, busy)])


def decide(rule: str, when: dict, key: tuple[str, ...]) -> str:
    """The winning side of a conflict on KEY: source, target, skip (neither) or abort."""
    if rule in ("latest", "merge"):   # merge: for the columns both sides changed, or a row inserted or deleted
        src, tgt = when["source"].get(key), when["target"].get(key)
        return "target" if tgt is not None and (src is None or tgt > src) else "source"
    return rule


def _abort_message(t: Table, entries: list) -> str:
    keys = ", ".join(str(dict(zip(t.info.pkey, entry[0], strict=True))) for entry in entries[:5])
    more = f" and {len(entries) - 5} more" if len(entries) > 5 else ""
    return (f"Conflict on {t.info.qualname} (standard_conflict abort), key {keys}{more}: the run stopped and "
            "nothing was applied; make the rows agree or change the rule, see `pgrepl list conflicts`")


def _subset(batch: Batch, keys: list[tuple[str, ...]], indexes: list[int]) -> Batch:
    """The keys of BATCH at INDEXES (KEYS: batch.keys, already parsed by the caller); BATCH itself when all are."""
    if len(indexes) == len(keys):
        return batch
    present = batch.present_flags
    return Batch.of(batch.capture, [keys[i] for i in indexes], [present[i] for i in indexes])
