"""The three replication systems `make bench-peers` compares, each set up, paused, resumed and removed the same way.

Every system replicates the same tables of the same source database (test1: pgbench_accounts, pgbench_branches,
pgbench_tellers and the lag probe) to the same target, starting from a target that equals the source, and leaves
nothing behind when removed (triggers, schemas, publications, slots), so the next one starts from a clean source.
Bucardo's quirks on this machine (/work/shared/peer-bench-notes.md) are handled here: its own rc file and log
paths, syncs defined before it starts (a fullcopy sync decided later copies nothing), kicks sent only when running.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from pgcluster import LocalCluster

from bench import pgrepl, vm_hwm_mb

TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "lag_probe")


def wait_for(what: str, predicate, timeout: float = 120, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


class System:
    """One replication system between SRC and TGT; scratch files under BASE."""
    name = ""
    label = ""
    catchup = True   # measured for this system: the catch-up of a backlog and a full copy
    color = "grey"

    def __init__(self, src: LocalCluster, tgt: LocalCluster, base: Path) -> None:
        self.src, self.tgt, self.base = src, tgt, base / self.name
        self.base.mkdir(parents=True, exist_ok=True)

    def setup(self) -> None: ...          # capture on, replicating, target already equal to the source
    def pause(self) -> None: ...          # nothing applied; changes still captured
    def resume(self) -> None: ...
    def teardown(self) -> None: ...       # nothing of the system left on either side

    def fullcopy(self) -> float | None:
        """Seconds the system's own copy of pgbench_accounts takes (called after teardown), None if it has none."""
        return None

    def rss_mb(self) -> float | None:
        """Peak RSS of the replicating process(es) since the last resume."""
        return None


class Pgrepl(System):
    name, label, color = "pgrepl", "pgrepl", "tab:blue"
    settings: tuple[str, ...] = ()

    @property
    def control(self) -> str:
        return self.src.dsn("pgrepl")

    def _declare(self, *settings: str) -> None:
        """A fresh control database with the two databases declared."""
        self.src.createdb("pgrepl")
        pgrepl(self.control, "install")
        pgrepl(self.control, "set", f"piddir={self.base / 'run'}", "fullcopy_delete_method=truncate",
               "fullcopy_analyze=no", *settings)
        for name, c in (("source", self.src), ("target", self.tgt)):
            pgrepl(self.control, "add", "database", "test1", f"name={name}", "host=127.0.0.1", f"port={c.port}",
                   "user=postgres")

    def setup(self) -> None:
        self._declare(*self.settings)
        for t in TABLES:
            pgrepl(self.control, "add", "table", t, "db=source", "herd=alpha")
        pgrepl(self.control, "add", "sync", "delta", "source=alpha", "targetdb=target", "type=pushdelta")
        self.resume()

    def _start(self) -> None:
        self.daemon = subprocess.Popen([sys.executable, "-m", "pgrepl", "run"],
                                       env=dict(os.environ, PGREPL_CONTROL=self.control),
                                       stdout=subprocess.DEVNULL, stderr=open(self.base / "daemon.log", "ab"))

    def resume(self) -> None:
        self._start()
        wait_for("the pgrepl worker", lambda: self._worker_pid() is not None)

    def _worker_pid(self) -> int | None:
        try:
            return int((self.base / "run" / "pgrepl.sync.delta.pid").read_text())
        except (OSError, ValueError):
            return None

    def rss_mb(self) -> float | None:
        pid = self._worker_pid()
        return vm_hwm_mb(pid) if pid else None

    def pause(self) -> None:
        if getattr(self, "daemon", None) is not None and self.daemon.poll() is None:
            self.daemon.terminate()
            self.daemon.wait(60)
        self.daemon = None

    def teardown(self) -> None:
        self.pause()
        self.src.execute("test1", "DROP SCHEMA IF EXISTS pgrepl CASCADE")
        self.src.execute("postgres", "DROP DATABASE IF EXISTS pgrepl WITH (FORCE)")

    def fullcopy(self) -> float:
        """A fullcopy sync of pgbench_accounts, kicked; the run's own time as pgrepl.run records it."""
        self._declare()
        pgrepl(self.control, "add", "table", "pgbench_accounts", "db=source", "herd=copy")
        pgrepl(self.control, "add", "sync", "copy", "source=copy", "targetdb=target", "type=fullcopy")
        self._start()
        try:
            pgrepl(self.control, "kick", "copy", "--wait", "900")
            return self.src.query("pgrepl", "SELECT extract(epoch FROM ended - started)::float FROM pgrepl.run "
                                            "WHERE sync = 'copy' AND state = 'good' ORDER BY id DESC LIMIT 1")[0][0]
        finally:
            self.teardown()


class PgreplPolling(Pgrepl):
    """pgrepl as it was before the fast probe (watch.py): a full poll every poll_interval, nothing in between."""
    name, label, color = "pgrepl-poll", "pgrepl, polling only", "tab:cyan"
    settings = ("probe_interval=0",)
    catchup = False


class Bucardo(System):
    name, label, color = "bucardo", "Bucardo 5.6", "tab:red"

    def _run(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(["bucardo", "--bucardorc", str(self.base / "rc"), *args], capture_output=True,
                             text=True, timeout=120, cwd=self.base)   # it leaves restart notes in its cwd
        if check and out.returncode:
            raise SystemExit(f"bucardo {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
        return out.stdout

    def _declare(self) -> None:
        """Bucardo's control database on the source cluster, its own rc file and log paths, the two databases."""
        (self.base / "rc").write_text(f"dbhost=127.0.0.1\ndbport={self.src.port}\ndbuser=postgres\ndbname=bucardo\n"
                                      f"piddir={self.base}\n")
        self._run("install", "--batch", "--dbhost", "127.0.0.1", "--dbport", str(self.src.port), "--dbuser",
                  "postgres", "--pid-dir", str(self.base))
        self._run("set", f"log_conflict_file={self.base}/conflict.log", f"reason_file={self.base}/reason.log",
                  f"warning_file={self.base}/warning.log")
        for name, c in (("src", self.src), ("tgt", self.tgt)):
            self._run("add", "db", name, "dbname=test1", "host=127.0.0.1", f"port={c.port}", "user=postgres")

    def setup(self) -> None:
        self._declare()
        self._run("add", "table", *(f"public.{t}" for t in TABLES), "db=src", "relgroup=rg")
        self._run("add", "sync", "delta", "relgroup=rg", "dbs=src:source,tgt:target")
        self.resume()

    def _syncruns(self) -> int:
        return self.src.query("bucardo", "SELECT count(*) FROM bucardo.syncrun")[0][0]

    def resume(self) -> None:
        before = self._syncruns()
        self._run("start", "--log-destination", str(self.base))
        # Bucardo kicks its syncs at startup; a run that started proves the kid is up (it may last: a backlog)
        wait_for("Bucardo's first run", lambda: self._syncruns() > before, timeout=900, step=0.5)

    def _pids(self) -> list[int]:
        pids = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"Bucardo"):
                    pids.append(int(proc.name))
            except OSError:
                continue
        return pids

    def rss_mb(self) -> float | None:
        sizes = []
        for pid in self._pids():
            try:
                sizes.append(vm_hwm_mb(pid))
            except (OSError, AttributeError):
                continue
        return max(sizes) if sizes else None

    def pause(self) -> None:
        self._run("stop", check=False)
        wait_for("Bucardo to stop", lambda: not self._pids(), timeout=60)

    def teardown(self) -> None:
        self.pause()
        self.src.execute("postgres", "DROP DATABASE IF EXISTS bucardo WITH (FORCE)")
        for c in (self.src, self.tgt):
            c.execute("test1", "DROP SCHEMA IF EXISTS bucardo CASCADE")

    def fullcopy(self) -> float:
        """A fullcopy sync of pgbench_accounts, defined before Bucardo starts; its syncrun's own time."""
        try:
            self._declare()
            self._run("add", "table", "public.pgbench_accounts", "db=src", "relgroup=fc")
            self._run("add", "sync", "copy", "relgroup=fc", "dbs=src:source,tgt:fullcopy", "autokick=0")
            self._run("start", "--log-destination", str(self.base))
            q = "SELECT extract(epoch FROM ended - started)::float FROM bucardo.syncrun WHERE sync = 'copy' " \
                "AND ended IS NOT NULL AND status ~ 'Complete' ORDER BY ended DESC LIMIT 1"
            deadline = time.monotonic() + 900
            while not self.src.query("bucardo", q):
                if time.monotonic() > deadline:
                    raise SystemExit("Bucardo's fullcopy did not finish in 900 s")
                self._run("kick", "copy", check=False)   # kicks before it is ready are dropped: again
                time.sleep(1)
            return self.src.query("bucardo", q)[0][0]
        finally:
            self.teardown()


class Native(System):
    name, label, color = "native", "native logical replication", "tab:green"

    def _conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.src.port} user=postgres dbname=test1"

    def setup(self) -> None:
        self.src.execute("test1", f"CREATE PUBLICATION peers FOR TABLE {', '.join(TABLES)}")
        self.tgt.execute("test1", f"CREATE SUBSCRIPTION peers CONNECTION '{self._conninfo()}' PUBLICATION peers "
                                  "WITH (copy_data = false)")
        self._wait_streaming()

    def _wait_streaming(self) -> None:
        wait_for("the subscription to stream", lambda: self.tgt.query(
            "test1", "SELECT count(*) FROM pg_stat_subscription WHERE subname = 'peers' AND pid IS NOT NULL "
                     "AND latest_end_lsn IS NOT NULL")[0][0] > 0)

    def pause(self) -> None:
        self.tgt.execute("test1", "ALTER SUBSCRIPTION peers DISABLE")
        wait_for("the slot to be released", lambda: not self.src.query(
            "test1", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'peers' AND active")[0][0])

    def resume(self) -> None:
        self.tgt.execute("test1", "ALTER SUBSCRIPTION peers ENABLE")
        self._wait_streaming()

    def teardown(self) -> None:
        self.tgt.execute("test1", "DROP SUBSCRIPTION IF EXISTS peers")
        self.src.execute("test1", "DROP PUBLICATION IF EXISTS peers")

    def fullcopy(self) -> float:
        """A subscription's initial copy of pgbench_accounts: from CREATE SUBSCRIPTION until the table is ready."""
        self.src.execute("test1", "CREATE PUBLICATION copy FOR TABLE pgbench_accounts")
        self.tgt.execute("test1", "TRUNCATE pgbench_accounts")
        t0 = time.monotonic()
        try:
            self.tgt.execute("test1", f"CREATE SUBSCRIPTION copy CONNECTION '{self._conninfo()}' PUBLICATION copy")
            wait_for("the initial copy", lambda: self.tgt.query(
                "test1", "SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid "
                         "WHERE s.subname = 'copy' AND r.srsubstate IN ('r', 's')")[0][0] == 1, timeout=900, step=0.05)
            return time.monotonic() - t0
        finally:
            self.tgt.execute("test1", "DROP SUBSCRIPTION IF EXISTS copy")
            self.src.execute("test1", "DROP PUBLICATION IF EXISTS copy")


SYSTEMS = {s.name: s for s in (Pgrepl, PgreplPolling, Bucardo, Native)}

