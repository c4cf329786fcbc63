"""The daemon: one controller process (`pgrepl run`) and one worker process per active sync, forked by the zygote.

The controller keeps a worker running for every active sync (started, restarted after a crash with backoff,
stopped when the sync is deactivated or removed) and stops everything on SIGTERM or when the stop file appears.
A worker waits for changes (NOTIFY from the capture triggers when `capture_notify` is on, else polling every
`poll_interval`), for kicks (NOTIFY on the control database) and for its `checktime`, then runs its sync; with
`busy_interval` set, runs that apply changes start at most that often.
A target that fails is retried with exponential backoff between `retry_min` and `retry_max`; the sync's other
targets, and the other syncs, go on meanwhile. SIGTERM stops a worker between two batches.

One worker per sync: a worker applies only while it holds its sync's lease in the control database (lease.py);
another waits. Workers are forked by the zygote (zygote.py), which `pgrepl run` forks first: they share its imported
modules. Workers get SIGTERM when their zygote dies, and the zygote when the controller dies, even by kill -9
(Linux's parent-death signal); workers notice a new parent otherwise, so a restarted controller never runs beside
orphans. Member sessions carry the
runner's own lock_timeout and statement_timeout.
"""

from __future__ import annotations

import functools
import logging
import os
import select
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from . import alert, apply, capture, catalog, delta, guard, lease, observe
from .capture import Capture
from .db import connect, member_conninfo, session_options
from .errors import PgreplError
from .watch import Prober, Watch
from .zygote import ForkedWorker, Zygote

log = logging.getLogger("pgrepl")
LEASE_RETRY = 2.0          # seconds between two tries of a busy lease


def setup_logging(level: str, name: str = "pgrepl") -> None:
    # journald adds the time and the unit; the sync name says which worker speaks
    logging.basicConfig(level=level.upper(), stream=sys.stderr, force=True,
                        format=f"{name}: %(levelname)s %(message)s")


def pid_path(settings: dict, what: str) -> Path:
    return Path(settings["piddir"]) / f"pgrepl.{what}.pid"


def stopfile_path(settings: dict) -> Path:
    return Path(settings["piddir"]) / settings["stopfile"]


def read_pid(path: Path) -> int | None:
    """The pid in PATH when that process is a live pgrepl, else None."""
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if is_pgrepl(pid) else None


def is_pgrepl(pid: int) -> bool:
    """PID runs pgrepl (`python -m pgrepl`, a `pgrepl` script, or a title `pgrepl ...` of zygote.py). A zombie (dead, not yet reaped) does not, nor
    another program that got the pid of a pgrepl that died."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():   # no procfs: alive is all we can tell
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        args = (proc / "cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):
        return False
    return args[0].startswith(b"pgrepl ") or any(Path(a.decode(errors="replace")).name == "pgrepl" for a in args[:2]) \
        or any(a == b"-m" and b == b"pgrepl" for a, b in zip(args, args[1:], strict=False))


class _Stopper:
    """SIGTERM/SIGINT set a flag and wake any select() through a pipe. Notifications are remembered even when
    psycopg reads them while a query runs (it hands them to handlers, and libpq forgets them): one that arrives
    during a run makes the next wait return at once instead of sleeping until the next poll."""

    def __init__(self) -> None:
        self.stopping = False
        self.notified = False
        self.rfd, wfd = os.pipe()
        os.set_blocking(self.rfd, False)
        os.set_blocking(wfd, False)
        signal.set_wakeup_fd(wfd)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)

    def _stop(self, *signal_args):
        self.stopping = True

    def watch(self, conn: psycopg.Connection) -> None:
        conn.add_notify_handler(self._note)

    def _note(self, notify) -> None:
        self.notified = True

    def wait(self, conns: list[psycopg.Connection], timeout: float) -> bool:
        """Sleeps until a notification arrives on one of CONNS, a signal, or TIMEOUT; does not sleep when one came
        since the last wait. True when notified."""
        self._drain(conns)
        if not self.notified and not self.stopping and timeout > 0:
            select.select([c.fileno() for c in conns if not c.closed] + [self.rfd], [], [], timeout)
            self._clear_wakeups()
            self._drain(conns)
        notified, self.notified = self.notified, False
        return notified

    def sleep(self, seconds: float) -> None:
        """Sleeps SECONDS or until a signal; notifications wait for the next `wait`."""
        end = time.monotonic() + seconds
        while not self.stopping and (left := end - time.monotonic()) > 0:
            select.select([self.rfd], [], [], left)
            self._clear_wakeups()

    def _clear_wakeups(self) -> None:
        """Empties the pipe the signal handlers write to (it only wakes select)."""
        try:
            while os.read(self.rfd, 64):
                pass
        except BlockingIOError:
            pass

    def _drain(self, conns: list[psycopg.Connection]) -> None:
        for c in conns:
            if not c.closed:
                c.pgconn.consume_input()
                while c.pgconn.notifies() is not None:
                    self.notified = True


# --- worker --------------------------------------------------------------------------------------------------

class _Direction:
    """One (source, target) pair of a sync, with its connections and retry state."""

    def __init__(self, source: str, target: str) -> None:
        self.source, self.target = source, target
        self.src: psycopg.Connection | None = None
        self.tgt: psycopg.Connection | None = None
        self.failures = 0
        self.retry_at = 0.0
        self.run: int | None = None   # the run in progress (its progress row names it)
        self.watches: dict[str, Watch] = {}   # per consumer target: what the fast probe looks for (watch.py)
        self.caps: list[Capture] | None = None   # pushdelta: the source's captures the last full poll checked whole

    def watch(self, conn: psycopg.Connection, sync: str, target: str, caps: list[Capture], done: str) -> None:
        """After a full poll: the fast probe looks on CONN for SYNC's changes to TARGET past DONE."""
        w = self.watches.get(target)
        if w is None or w.conn is not conn or w.caps != caps:
            self.watches[target] = Watch(conn, sync, target, caps, done)
        else:
            w.done, w.found = done, False

    def found(self) -> bool:
        """The last probe found changes to apply in this direction."""
        return any(w.found for w in self.watches.values())

    def close(self) -> None:
        for c in (self.src, self.tgt):
            if c is not None:
                c.close()
        self.src = self.tgt = None
        self.watches.clear()
        self.caps = None


class SyncWorker:
    def __init__(self, control_conninfo: str, sync_name: str) -> None:
        self.control_conninfo = control_conninfo
        self.name = sync_name
        self.pid = os.getpid()
        self.parent = int(os.environ.get("PGREPL_CONTROLLER_PID") or 0)   # set by the zygote that forked us
        self.stopper = _Stopper()
        self.applied = False       # the current round applied changes
        self.round_at = 0.0        # when it began (monotonic)
        self.paced_until = 0.0     # busy_interval: no round starts before this (monotonic)

    def _connect(self, db_name: str, listen: bool = False) -> psycopg.Connection:
        conn = connect(member_conninfo(catalog.get_db(self.control, db_name)), f"pgrepl {self.name}",
                       options=session_options(self.settings["lock_timeout"], self.settings["statement_timeout"]))
        if listen:
            conn.execute(f"LISTEN {capture.NOTIFY_CHANNEL}")
            self.stopper.watch(conn)
        return conn

    def _orphaned(self) -> bool:
        """The controller that started this worker is gone (the fallback of the parent-death signal)."""
        return bool(self.parent) and os.getppid() != self.parent

    def run(self) -> int:
        self.control = catalog.open_control(self.control_conninfo)
        self.control.execute("SELECT set_config('application_name', %s, false)", (lease.application_name(self.pid),))
        self.control.execute(f"LISTEN {catalog.CONTROL_CHANNEL}")
        # a worker's writes in the control database are its run history and state: not worth a disk flush each
        # (a crash loses at most the last few run records, never a position: positions live in the sources)
        self.control.execute("SET synchronous_commit = off")
        self.source_name = catalog.source_name(self.control, self.name)
        self.stopper.watch(self.control)
        self.settings = catalog.all_settings(self.control)
        setup_logging(self.settings["log_level"], f"pgrepl[{self.name}]")
        if not self._take_lease():
            self.control.close()
            return 0
        pidfile = pid_path(self.settings, f"sync.{self.name}")
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{self.pid}\n")
        catalog.set_state(self.control, self.name, "idle", self.pid, started=True)
        log.info("started (pid %d)", self.pid)
        self.directions: dict[tuple[str, str], _Direction] = {}
        self.last_state = "idle"
        try:
            self._loop()
        finally:
            for d in self.directions.values():
                d.close()
            catalog.set_state(self.control, self.name, "stopped", None)
            pidfile.unlink(missing_ok=True)
            self.control.close()
            log.info("stopped")
        return 0

    def _take_lease(self) -> bool:
        """Waits until this worker holds its sync's lease; False when it is asked to stop first, its controller
        died, or the sync was deactivated or removed."""
        said = None
        while not lease.take(self.control, self.name):
            if said is None:
                lease.mark_waiting(self.control, self.name, True)
            holder = lease.holders(self.control, [self.name])[self.name]["lease"]
            held_by = lease.describe(holder) if holder else "a session that just left"
            if held_by != said:
                log.warning("waiting for the lease held by %s: another worker runs sync %s", held_by, self.name)
                said = held_by
            self.stopper.wait([self.control], LEASE_RETRY)
            if self.stopper.stopping or self._orphaned() or not self._active():
                return False
        if said is not None:
            lease.mark_waiting(self.control, self.name, False)
            log.info("took the lease of sync %s", self.name)
        return True

    def _active(self) -> bool:
        try:
            return catalog.get_sync(self.control, self.name)["status"] == "active"
        except PgreplError:
            return False

    def _loop(self) -> None:
        last_check = time.monotonic()
        prober = Prober()
        polled_at = 0.0
        self.fast = False   # this round was started by the probe (watch.py), not by a poll, a kick or a NOTIFY
        while not self.stopper.stopping and not self._orphaned():
            self.round_at, self.applied = time.monotonic(), False
            if self.fast and time.monotonic() - polled_at < float(self.settings["poll_interval"]):
                sync, kicks = self.sync, []   # as the last poll read them: a run costs fewer round trips
            else:
                self.fast = False
                try:
                    sync = catalog.get_sync(self.control, self.name)
                except PgreplError:
                    return  # removed
                if sync["status"] != "active":
                    return
                self.settings = catalog.all_settings(self.control)
                kicks = catalog.take_kicks(self.control, self.name)
                self.sync, self.tables, polled_at = sync, {}, time.monotonic()
            if sync["type"] == "fullcopy":
                due = bool(kicks) or self._checktime_due(sync)
                good = self._fullcopy(sync, kicks) if due else True
            else:
                good = self._delta(sync, kicks)
            if kicks:
                catalog.finish_kicks(self.control, kicks, good)
            # while changes keep flowing, fewer and bigger runs: each run's fixed cost (its records, the target's
            # check, the cut, per table keys, DELETE and COPY) is paid less often on a saturated source
            self.paced_until = self.round_at + float(self.settings["busy_interval"]) if self.applied else 0.0
            now = time.monotonic()
            wait = float(self.settings["poll_interval"])
            retry = [d.retry_at - now for d in self.directions.values() if d.failures]
            if retry:
                wait = min(wait, max(min(retry), 0.05))
            listened = [self.control] + [c for d in self.directions.values() for c in (d.src, d.tgt) if c is not None]
            prober.configure(float(self.settings["probe_interval"]), float(self.settings["poll_interval"]))
            watches = [w for d in self.directions.values() for w in d.watches.values()]
            self.fast = self._wait(listened, watches, prober, wait if time.monotonic() - last_check < 600 else 0)
            last_check = time.monotonic()

    def _wait(self, conns: list[psycopg.Connection], watches: list[Watch], prober: Prober, timeout: float) -> bool:
        """Sleeps until TIMEOUT, a notification or a signal; meanwhile, every probe step (watch.py), looks on the
        sources for new changes and returns as soon as there are some: True then. After a long round that applied
        changes, it looks at once; with a pace set, it first waits until `paced_until` whatever arrives (signals
        apart), then looks at once."""
        deadline = time.monotonic() + timeout
        held = self.paced_until > time.monotonic()
        if held:
            self.stopper.sleep(self.paced_until - time.monotonic())
        # after a run that applied changes and lasted a few probe steps, what committed during it waited long enough:
        # look at once; after a shorter one the step's wait lets changes gather (fewer, bigger runs at full speed)
        ran = time.monotonic() - self.round_at
        at_once = held or (self.applied and 0 < 2 * prober.interval < ran)
        while True:
            left = deadline - time.monotonic()
            step = 0.0 if at_once else prober.step if watches and prober.interval else left
            at_once = False
            if self.stopper.wait(conns, min(left, step)) or left <= step or self.stopper.stopping:
                return False
            try:
                if prober.look(watches):
                    return True
            except psycopg.Error:
                return False   # a source went away: the poll reconnects, and records the failure if it persists

    def _sync_tables(self, sync: dict, kind: str = "table") -> list:
        """The sync's tables (or sequences), read once per poll."""
        if kind not in self.tables:
            self.tables[kind] = catalog.sync_tables(self.control, sync, kind)
        return self.tables[kind]

    def _checktime_due(self, sync: dict) -> bool:
        if not sync["checktime"]:
            return False
        row = self.control.execute("SELECT max(started) FROM pgrepl.run WHERE sync = %s", (self.name,)).fetchone()
        return row[0] is None or datetime.now(UTC) - row[0] >= sync["checktime"]

    def direction(self, source: str, target: str) -> _Direction:
        key = (source, target)
        if key not in self.directions:
            self.directions[key] = _Direction(source, target)
        return self.directions[key]

    def _lease(self, src: psycopg.Connection, target: str) -> None:
        """This worker's hold on its position in a source, for as long as the connection lives (delta.py)."""
        capture.ensure_current(src)
        delta.lock_consumer(src, self.source_name, target)

    def _state(self, state: str) -> None:
        if state != self.last_state:
            catalog.set_state(self.control, self.name, state, self.pid)
            self.last_state = state

    def run_direction(self, d: _Direction, kind: str, kick: int | None, work) -> bool:
        """Runs WORK(direction) -> Counts | None (None: nothing to do) as one recorded run. Failures are recorded,
        logged and retried later with backoff."""
        if d.failures and time.monotonic() < d.retry_at and kick is None:
            return False
        run_id = None
        try:
            if d.src is None:
                d.src = self._connect(d.source, listen=self.settings["capture_notify"] == "on")
                if kind != "fullcopy":
                    self._lease(d.src, d.target)
            if d.tgt is None:
                # a swap's target is a source too: its changes wake the worker as well
                d.tgt = self._connect(d.target, listen=kind == "swap" and self.settings["capture_notify"] == "on")
                if kind == "swap":
                    self._lease(d.tgt, d.source)
            # a probe that found changes of this direction stands for the run's own look for work, also when a
            # full poll follows it (the watches follow each run's positions: found is never stale)
            if kind in ("delta", "swap") and kick is None and not d.found() and not work(d, probe=True):
                return True
            # the sync's state goes with the run's record, running then idle: no round trip of its own
            run_id = d.run = catalog.start_run(self.control, self.name, d.target, kind, self.pid, kick, "running")
            self.last_state = "running"
            t0 = time.monotonic()
            counts = work(d, probe=False)
            if not counts.total:
                d.tgt.execute("SELECT 1")   # a run with nothing to apply still proves its target is there
            catalog.finish_run(self.control, run_id, counts.inserts, counts.updates, counts.deletes, counts.conflicts,
                               state="idle")
            self.last_state = "idle"
            self.applied = self.applied or counts.total > 0
            if counts.total or kind != "delta":
                log.info("%s -> %s: %s I/U/D %d/%d/%d in %.2fs", d.source, d.target, kind, counts.inserts,
                         counts.updates, counts.deletes, time.monotonic() - t0)
            if d.failures:
                alert.send(self.settings, f"pgrepl sync {self.name} recovered",
                           f"Sync {self.name} ({d.source} -> {d.target}) runs again after {d.failures} failure(s).")
            d.failures = 0
            return True
        except (psycopg.Error, PgreplError, OSError) as e:
            message = str(e).strip() or type(e).__name__
            if isinstance(e, psycopg.errors.LockNotAvailable):
                message += self._blockers(d)
            d.failures += 1
            delay = min(float(self.settings["retry_min"]) * 2 ** (d.failures - 1), float(self.settings["retry_max"]))
            d.retry_at = time.monotonic() + delay
            log.error("%s -> %s failed (attempt %d, next in %.1fs): %s", d.source, d.target, d.failures, delay, message)
            if run_id is None:
                run_id = catalog.start_run(self.control, self.name, d.target, kind, self.pid, kick)
            catalog.finish_run(self.control, run_id, error=message)
            if d.failures == 1:
                alert.send(self.settings, f"pgrepl sync {self.name} failed",
                           f"Sync {self.name} ({d.source} -> {d.target}) failed:\n\n{message}\n\n"
                           f"It is retried with backoff; see `pgrepl status {self.name}`.")
            d.close()
            return False
        finally:
            self._state("idle")

    def _blockers(self, d: _Direction) -> str:
        """The sessions holding locks on the sync's tables, asked right after a lock timeout: the one the run waited
        for is among them (pg_blocking_pids says nothing once our statement is cancelled)."""
        tables = catalog.sync_tables(self.control, catalog.get_sync(self.control, self.name))
        ours = [c.info.backend_pid for c in (d.src, d.tgt) if c is not None and not c.closed]
        found = []
        for db, conn in ((d.source, d.src), (d.target, d.tgt)):
            if conn is None or conn.closed:
                continue
            try:
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.rollback()
                rows = conn.execute(
                    "SELECT l.pid, a.application_name, host(a.client_addr), a.state, "
                    "string_agg(l.mode || ' on ' || l.relation::regclass::text, ', ' ORDER BY l.mode) "
                    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.granted AND l.pid <> ALL(%s) AND l.relation IN "
                    " (SELECT to_regclass(format('%%I.%%I', s, r)) FROM unnest(%s::text[], %s::text[]) AS t(s, r)) "
                    "GROUP BY 1, 2, 3, 4 ORDER BY 1",
                    (ours, [t.schemaname for t in tables], [t.relname for t in tables])).fetchall()
            except psycopg.Error:
                continue
            found += [f'pid {pid} ({app or "no application_name"}, {addr or "local socket"}, {state}, {modes}) '
                      f'on {db}' for pid, app, addr, state, modes in rows]
        return f"\nblocked by {'; '.join(found)}" if found else ""

    def _fullcopy(self, sync: dict, kicks: list[int]) -> bool:
        tables = self._sync_tables(sync)
        seqs = self._sync_tables(sync, "sequence")
        kick = kicks[-1] if kicks else None
        method = self.settings["fullcopy_delete_method"]
        analyze = self.settings["fullcopy_analyze"] == "yes"

        def work(d: _Direction, probe: bool) -> apply.Counts:
            report = catalog.Reporter(self.control, self.name, d.target, "fullcopy", d.run)
            counts = apply.full_copy(d.src, d.tgt, tables, method, analyze=analyze, on_rows=report.add,
                                     on_total=report.set_total)[0]
            report.finish()
            apply.copy_sequences(d.src, d.tgt, seqs)
            return counts

        results = [self.run_direction(self.direction(*pair), "fullcopy", kick, work)
                   for pair in catalog.directions(sync)]
        return all(results)

    def _delta(self, sync: dict, kicks: list[int]) -> bool:
        if sync["type"] == "swap":
            # only a swap sync's worker loads it (memory: one interpreter per worker)
            from . import swap
            return swap.run(self, sync, kicks)
        kick = kicks[-1] if kicks else None
        tables = self._sync_tables(sync)
        seqs = self._sync_tables(sync, "sequence")
        work = functools.partial(self._push, sync, tables, seqs)
        results = [self.run_direction(self.direction(*pair), "delta", kick, work)
                   for pair in catalog.directions(sync)]
        if sync["onetimecopy"] and all(results):
            self.control.execute("UPDATE pgrepl.sync SET onetimecopy = 0 WHERE name = %s", (self.name,))
        return all(results)

    def _push(self, sync: dict, tables: list, seqs: list, d: _Direction, probe: bool) -> apply.Counts | bool:
        """One pushdelta run towards d.target (probe: only say whether there is anything to do)."""
        if d.caps is None or not self.fast:
            # every full poll: a lost capture has nothing to apply. A run the probe started between two polls uses
            # the captures the poll found (three round trips fewer): a capture re-created meanwhile has a new delta
            # store, the old one is dropped, so such a run fails reading it and the next poll finds the new one
            guard.check(self.name, self.source_name, tables, (d.source, d.src))
            wanted = {(t.schemaname, t.relname) for t in tables}
            d.caps = [c for c in capture.captures(d.src) if (c.table.schemaname, c.table.relname) in wanted]
        caps = d.caps
        position = delta.consumer_position(d.src, self.source_name, d.target)
        done, pending = position[:2]
        onetime = sync["onetimecopy"]
        d.watch(d.src, self.source_name, d.target, caps, done)
        if probe:
            return onetime != 0 or pending is not None or delta.has_new_changes(d.src, self.source_name, caps, done)
        counts = apply.Counts()
        method = self.settings["fullcopy_delete_method"]
        if onetime:
            report = catalog.Reporter(self.control, self.name, d.target, "onetimecopy", d.run)
            c, snapshot, skipped = apply.full_copy(d.src, d.tgt, tables, method, only_empty=onetime == 2,
                                                   on_rows=report.add, on_total=report.set_total)
            report.finish()
            if not skipped:   # every table copied: what the copy saw is on the target
                delta.reset_consumer(d.src, self.source_name, d.target, snapshot, done)
            # else the tables left as they were still need their changes since `done`, and applying them again
            # to the copied ones changes nothing
            counts += c
        # the position just read, unless the copy moved it
        iv = delta.open_interval(d.src, self.source_name, d.target, position=None if onetime else position)
        catchup = catalog.CatchUp(self.control, self.name, d.target, d.run, lambda: observe.backlog(
            d.src, [self.source_name]).get((self.source_name, d.target), {}).get("backlog"))
        c, finished = apply.push_interval(d.src, d.tgt, iv, caps, int(self.settings["batch_size"]),
                                          origin=self.source_name, makedelta=sync["makedelta"], delete_method=method,
                                          should_stop=lambda: self.stopper.stopping, on_batch=catchup)
        catchup.finish()
        counts += c
        if finished:   # the interval is closed: its end is the new `done`
            d.watch(d.src, self.source_name, d.target, caps, iv.pending or done)
            apply.copy_sequences(d.src, d.tgt, seqs)
        return counts


# --- controller ----------------------------------------------------------------------------------------------

def run_controller(control_conninfo: str) -> int:
    """`pgrepl run`: the foreground daemon (systemd runs this)."""
    zygote = Zygote(control_conninfo)   # first: before any connection or thread, after the workers' imports
    try:
        return _control(control_conninfo, zygote)
    finally:
        zygote.close()


def _control(control_conninfo: str, zygote: Zygote) -> int:
    control = catalog.open_control(control_conninfo)
    settings = catalog.all_settings(control)
    setup_logging(settings["log_level"])
    stopfile = stopfile_path(settings)
    if stopfile.exists():
        log.error("stop file %s exists: remove it (or use `pgrepl start`) to run", stopfile)
        return 1
    pidfile = pid_path(settings, "mcp")
    other = read_pid(pidfile)
    if other and other != os.getpid():
        log.error("pgrepl is already running (PID %d, %s)", other, pidfile)
        return 1
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(f"{os.getpid()}\n")
    stopper = _Stopper()
    control.execute(f"LISTEN {catalog.CONTROL_CHANNEL}")
    workers: dict[str, ForkedWorker] = {}
    restarts: dict[str, tuple[int, float]] = {}   # sync -> (crashes in a row, not before)
    log.info("controller started (pid %d, zygote %d)", os.getpid(), zygote.pid)
    result = 0
    # the controller's alone: workers do not load it
    from . import metrics
    metrics.serve(control_conninfo, settings["metrics_listen"])
    try:
        while not stopper.stopping and not stopfile.exists():
            if not zygote.alive:   # its workers die with it; systemd (Restart=on-failure) starts us again
                log.error("the zygote (pid %d) died: stopping", zygote.pid)
                result = 1
                break
            active = {s["name"] for s in catalog.list_syncs(control) if s["status"] == "active"}
            for name, proc in list(workers.items()):
                code = proc.poll()
                if name not in active and code is None:
                    proc.terminate()
                if code is not None:
                    del workers[name]
                    if name in active and code != 0:
                        crashes = restarts.get(name, (0, 0))[0] + 1
                        delay = min(float(settings["retry_min"]) * 2 ** crashes, float(settings["retry_max"]))
                        restarts[name] = (crashes, time.monotonic() + delay)
                        log.error("worker of %s exited with code %d; restart in %.0fs", name, code, delay)
            for name in sorted(active - set(workers)):
                if time.monotonic() < restarts.get(name, (0, 0))[1]:
                    continue
                workers[name] = zygote.start(name)
                log.info("started worker for %s (pid %d)", name, workers[name].pid)
            for name in [n for n in restarts if n in workers and time.monotonic() > restarts[n][1] + 60]:
                del restarts[name]   # a worker that stayed up a minute starts its crash count afresh
            stopper.wait([control], 1.0)
            settings = catalog.all_settings(control)
    finally:
        for proc in workers.values():
            proc.terminate()
        deadline = time.monotonic() + 30
        for name, proc in workers.items():
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("worker of %s did not stop in time: killed", name)
                proc.kill()
        pidfile.unlink(missing_ok=True)
        log.info("controller stopped")
        control.close()
    return result


def run_worker(control_conninfo: str, sync: str) -> int:
    return SyncWorker(control_conninfo, sync).run()
