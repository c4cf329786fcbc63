"""Verbs that operate the daemon and the data: kick, start/stop, check, validate, purge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from .. import catalog, delta, guard, swap_rows, worker
from ..db import connect, member_conninfo
from ..errors import PgreplError
from .args import EXIT_ERROR, EXIT_KICK_FAILED, EXIT_KICK_TIMEOUT, EXIT_OK, Args, Usage, _int, out
from .progress import Bar
from .views import _mcp_pid


def cmd_kick(a: Args, conn) -> int:
    names = [w for w in a.words[1:] if not w.isdigit()]
    timeouts = [w for w in a.words[1:] if w.isdigit()]   # bucardo_ctl kick SYNC 10
    wait = a.opt("--wait") or (timeouts[-1] if timeouts else None)
    if not names:
        raise Usage("usage: pgrepl kick SYNC... [--wait SECONDS]")
    for name in names:
        if catalog.get_sync(conn, name)["status"] != "active":
            raise PgreplError(f'Sync "{name}" is not active: activate it first')
    kicks = {name: catalog.kick(conn, name) for name in names}
    for name in names:
        out(f"Kicked sync {name}")
    if wait is None:
        return EXIT_OK
    deadline = time.monotonic() + float(wait)
    results: dict[str, str | None] = dict.fromkeys(names)
    shown, looked = Bar(), 0.0
    while time.monotonic() < deadline and None in results.values():
        for name, kick_id in kicks.items():
            if results[name] is None:
                results[name] = catalog.kick_result(conn, kick_id)
        if None in results.values():
            if time.monotonic() - looked >= 0.5:   # long work of a kicked run: its progress row names the kick
                looked = time.monotonic()
                for p in catalog.progress(conn, [n for n, r in results.items() if r is None]):
                    if p["running"] and p["kick"] in kicks.values():
                        shown.show(f'{p["sync"]} -> {p["target"]}', p, looked)
            time.sleep(0.1)
    shown.done()
    code = EXIT_OK
    for name, result in results.items():
        if result is None:
            out(f"Sync {name}: no finished run after {wait}s (timed out; is `pgrepl start` running?)")
            code = max(code, EXIT_KICK_TIMEOUT)
        elif result == "bad":
            err = conn.execute("SELECT error FROM pgrepl.run WHERE kick = %s AND state = 'bad' ORDER BY id DESC "
                               "LIMIT 1", (kicks[name],)).fetchone()
            out(f"Sync {name}: run failed: {err[0] if err else 'see pgrepl status ' + name}")
            code = EXIT_KICK_FAILED if code != EXIT_KICK_TIMEOUT else code
        else:
            i, u, d = catalog.kick_counts(conn, kicks[name])
            out(f"Sync {name}: run finished (good) I/U/D {i}/{u}/{d}")
    return code


def cmd_start(a: Args, conn, conninfo: str) -> int:
    settings = catalog.all_settings(conn)
    out("Checking for existing processes")
    pid = _mcp_pid(conn)
    if pid:
        raise PgreplError(f"pgrepl is already running (PID {pid}): use `pgrepl restart` or `pgrepl stop` first")
    stopfile = worker.stopfile_path(settings)
    if stopfile.exists():
        out(f"Removing {stopfile}")
        stopfile.unlink()
    Path(settings["piddir"]).mkdir(parents=True, exist_ok=True)
    logfile = Path(settings["piddir"]) / "pgrepl.log"
    with os.fdopen(os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as log:   # 0600: ours
        os.fchmod(log.fileno(), 0o600)
        proc = subprocess.Popen([sys.executable, "-m", "pgrepl", "run"], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True, env=dict(os.environ, PGREPL_CONTROL=conninfo))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None and not _mcp_pid(conn):
        time.sleep(0.1)
    if proc.poll() is not None:
        raise PgreplError(f"pgrepl did not start (exit code {proc.returncode}); see {logfile}")
    out(f"Starting pgrepl (PID {proc.pid}, log: {logfile})")
    return EXIT_OK


def cmd_stop(a: Args, conn) -> int:
    settings = catalog.all_settings(conn)
    stopfile = worker.stopfile_path(settings)
    stopfile.parent.mkdir(parents=True, exist_ok=True)
    print(f"Creating {stopfile} ... ", end="", flush=True)
    stopfile.write_text(f"Stopped by pgrepl stop at {datetime.now():%Y-%m-%d %H:%M:%S}\n")
    out("Done")
    pid = _mcp_pid(conn)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and worker.read_pid(worker.pid_path(settings, "mcp")):
            time.sleep(0.1)
        if worker.read_pid(worker.pid_path(settings, "mcp")):
            raise PgreplError(f"pgrepl (PID {pid}) did not stop within 60s")
    return EXIT_OK


def cmd_check(a: Args, conninfo: str) -> int:
    """Checks the configuration as `pgrepl run` would use it; prints one line per check."""
    problems = 0

    def report(ok: bool, what: str) -> None:
        nonlocal problems
        problems += not ok
        out(f"{'ok  ' if ok else 'FAIL'} {what}")

    try:
        conn = catalog.open_control(conninfo)
    except PgreplError as e:
        report(False, f"control database: {e}")
        return EXIT_ERROR
    report(True, f"control database {conn.info.dbname} on {conn.info.host or 'local socket'}, schema installed")
    with conn:
        settings = catalog.all_settings(conn)
        piddir = Path(settings["piddir"])
        report(piddir.is_dir() and os.access(piddir, os.W_OK) or not piddir.exists() and
               os.access(piddir.parent, os.W_OK), f"piddir {piddir} is writable")
        for db in catalog.list_dbs(conn):
            try:
                with connect(member_conninfo(db), connect_timeout=5):
                    report(True, f'database {db["name"]} reachable')
            except PgreplError as e:
                report(False, f'database {db["name"]}: {e}')
        for s in catalog.list_syncs(conn):
            if s["type"] == "fullcopy" or s["status"] != "active":
                continue
            for src_db, tgt_db in catalog.directions(s):
                try:
                    with catalog.sync_source(conn, src_db, s["name"]) as (src, name):
                        delta.consumer_position(src, name, tgt_db)
                        guard.check(s["name"], name, catalog.sync_tables(conn, s), (src_db, src))
                    report(True, f'sync {s["name"]}: capture on {src_db} for {tgt_db}')
                except PgreplError as e:
                    report(False, f'sync {s["name"]}: {e}')
    return EXIT_OK if not problems else EXIT_ERROR


def cmd_validate(a: Args, conn) -> int:
    names = a.words[1:]
    if not names:
        raise Usage("usage: pgrepl validate SYNC... | all [--onetimecopy]")
    if names == ["all"]:
        names = [s["name"] for s in catalog.list_syncs(conn)]
    for name in names:
        catalog.get_sync(conn, name)
    v = guard.validate(conn, names, onetimecopy="--onetimecopy" in a.flags)
    for line in v.lines:
        out(line)
    for line in v.errors:
        out(f"ERROR {line}")
    return EXIT_ERROR if v.errors else EXIT_OK


def cmd_purge(a: Args, conn) -> int:
    what = a.words[1] if len(a.words) > 1 else None
    if what == "delta" and len(a.words) == 3:
        for db, report in catalog.purge_delta(conn, a.words[2]):
            out(f"{db}: {report}")
    elif what == "runs" and len(a.words) == 3:
        moved, left = catalog.purge_runs(conn, a.words[2])
        out(f"Runs moved to the freezer: {moved}; rows left in the run table: {left}")
    elif what == "archive" and a.opt("--keep") is not None:
        dropped = catalog.purge_archive(conn, _int(a.opt("--keep"), "--keep"))
        for t in dropped:
            out(f"Dropped {t}")
        out(f"Freezer tables dropped: {len(dropped)}")
    elif what == "conflicts" and len(a.words) == 3:
        out(f"Conflicts purged: {swap_rows.purge_conflicts(conn, a.words[2])}")
    else:
        raise Usage("usage: pgrepl purge delta INTERVAL | purge runs INTERVAL | purge archive --keep DAYS | "
                    "purge conflicts INTERVAL")
    return EXIT_OK
