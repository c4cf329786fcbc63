"""Real PostgreSQL clusters on loopback for tests and benchmarks.

PostgreSQL refuses to run as root, so when we are root the clusters are created and started as the
`postgres` OS user (runuser). Each cluster listens on 127.0.0.1:PORT only, trusts local connections,
and lives under a directory that the caller owns and removes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PGBENCH = PG_BIN / "pgbench"


def _as_postgres(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


@dataclass
class LocalCluster:
    name: str
    port: int
    datadir: Path

    @property
    def conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def init(self, settings: dict[str, str] | None = None) -> LocalCluster:
        if self.datadir.exists():
            self.stop()
            shutil.rmtree(self.datadir)
        self.datadir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.datadir, "postgres", "postgres")
            shutil.chown(self.datadir.parent, "postgres", "postgres")
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        conf = {
            "listen_addresses": "'127.0.0.1'", "port": str(self.port),
            "unix_socket_directories": f"'{self.datadir}'",
            "fsync": "off", "full_page_writes": "off",  # test clusters: durability is not under test here
            "shared_buffers": "128MB", "max_connections": "100", "track_commit_timestamp": "on",
            "log_min_messages": "warning", "logging_collector": "off",
        }
        conf.update(settings or {})
        with open(self.datadir / "postgresql.auto.conf", "a") as f:
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")
        return self

    def start(self) -> LocalCluster:
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.datadir / "server.log"),
                      "-w", "-t", "60", "start"])
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stops the server if it runs; a pid file left by a server that died (a killed test run) is ignored."""
        if self.is_running():
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"])

    def is_running(self) -> bool:
        """pg_ctl status: a pid file whose server died (a killed test run) does not count."""
        try:
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "status"])
            return True
        except subprocess.CalledProcessError:
            return False

    def createdb(self, dbname: str) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            c.execute(f'CREATE DATABASE "{dbname}"')

    def pgbench(self, dbname: str, *args: str, timeout: float = 600) -> str:
        env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER="postgres")
        out = subprocess.run([str(PGBENCH), *args, dbname], env=env, check=True, capture_output=True,
                             text=True, timeout=timeout)
        return out.stdout + out.stderr

    def query(self, dbname: str, sql: str, params=None) -> list[tuple]:
        with psycopg.connect(self.dsn(dbname), autocommit=True) as c:
            cur = c.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def execute(self, dbname: str, sql: str, params=None) -> None:
        with psycopg.connect(self.dsn(dbname), autocommit=True) as c:
            c.execute(sql, params)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.conninfo, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@contextlib.contextmanager
def running_clusters(base: Path, ports: dict[str, int]):
    """A cluster per name of PORTS, on its port, under BASE, started; stopped and removed afterwards (a session
    fixture of the runner and module tests)."""
    base.mkdir(parents=True, exist_ok=True)
    found = {name: LocalCluster(name, port, base / name) for name, port in ports.items()}
    try:
        for c in found.values():
            c.init().start()
        yield found
    finally:
        for c in found.values():
            c.stop("immediate")     # those that run
        shutil.rmtree(base, ignore_errors=True)


def fresh_databases(clusters: dict[str, LocalCluster], schema: str = "") -> None:
    """Every cluster running with a new, empty `test1` (SCHEMA run in it), and a new `pgrepl` control database on
    master: the start of every runner and module test."""
    for c in clusters.values():
        if not c.is_running():
            c.start()
        c.createdb("test1")
        if schema:
            c.execute("test1", schema)
    clusters["master"].createdb("pgrepl")


def table_checksum(cluster: LocalCluster, dbname: str, table: str) -> tuple[int, str]:
    """Row count and an order-independent checksum of every row of a table."""
    (row,) = cluster.query(
        dbname,
        f"SELECT count(*), coalesce(sum(hashtext(t::text)::numeric), 0)::text FROM {table} t",
    )
    return row[0], row[1]


def start_daemon(control: str, piddir: Path, log: Path, python: str) -> subprocess.Popen:
    """`pgrepl run` in the background with PYTHON, logging to LOG; returns once its pid file is in PIDDIR."""
    with open(log, "ab") as out:
        proc = subprocess.Popen([python, "-m", "pgrepl", "run"], stdout=out, stderr=out,
                                env=dict(os.environ, PGREPL_CONTROL=control))
    deadline = time.monotonic() + 15
    while not (piddir / "pgrepl.mcp.pid").exists():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the runner did not write its pid file"
        time.sleep(0.05)
    return proc
