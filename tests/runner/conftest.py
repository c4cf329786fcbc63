"""Fixtures for the runner tests: three real PostgreSQL 15 clusters on loopback (master, slave, master2),
a fresh control database and fresh `test1` databases for every test, and helpers to run the CLI and the daemon."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pgcluster import LocalCluster, fresh_databases, running_clusters, start_daemon, table_checksum  # noqa: E402
from pgrepl import cli  # noqa: E402

BASE = Path(os.environ.get("PGREPL_TEST_DIR", "/tmp/pgrepl-tests"))
# Below Linux's ephemeral range (32768-60999): a client connection of any process on this machine may take a port
# of that range as its own end, and a server then cannot listen on it (a cluster failed to start in CI so).
_PORT = int(os.environ.get("PGREPL_TEST_PORT", "25441"))   # several suites can run side by side on other ports
PORTS = {"master": _PORT, "slave": _PORT + 1, "master2": _PORT + 2}


@pytest.fixture(scope="session")
def clusters():
    with running_clusters(BASE, PORTS) as found:
        yield found


class Env:
    """One test's world: the clusters, a control database, a piddir, and the CLI."""

    def __init__(self, clusters: dict[str, LocalCluster], tmp: Path):
        self.c = clusters
        self.control = clusters["master"].dsn("pgrepl")
        self.piddir = tmp / "run"
        self.daemon_proc: subprocess.Popen | None = None

    def cli(self, *args: str, expect: int | None = 0) -> tuple[int, str]:
        """Runs `pgrepl ARGS` in this process; returns (exit code, stdout + stderr)."""
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            code = cli.main(["--control", self.control, *args])
        text = buf.getvalue()
        if expect is not None:
            assert code == expect, f"pgrepl {' '.join(args)} -> {code}, expected {expect}:\n{text}"
        return code, text

    def add_databases(self, *names: str) -> None:
        for name in names:
            self.cli("add", "database", "test1", f"name=test1_{name}", "host=127.0.0.1",
                     f"port={self.c[name].port}", "user=postgres")

    def start(self) -> None:
        self.daemon_proc = start_daemon(self.control, self.piddir, self.piddir.parent / "daemon.log", sys.executable)

    def stop(self) -> None:
        if self.daemon_proc and self.daemon_proc.poll() is None:
            self.daemon_proc.terminate()
            self.daemon_proc.wait(60)
        self.daemon_proc = None

    def daemon_log(self) -> str:
        p = self.piddir.parent / "daemon.log"
        return p.read_text() if p.exists() else ""

    def q(self, host: str, sql: str, params=None):
        return self.c[host].query("test1", sql, params)

    def x(self, host: str, sql: str, params=None) -> None:
        self.c[host].execute("test1", sql, params)

    def checksum(self, host: str, table: str):
        return table_checksum(self.c[host], "test1", table)

    def wait_for(self, predicate, timeout: float = 30, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n--- daemon log ---\n"
                                     f"{self.daemon_log()[-4000:]}")
            time.sleep(0.1)

    def wait_same(self, a: str, b: str, table: str, timeout: float = 30) -> None:
        self.wait_for(lambda: self.checksum(a, table) == self.checksum(b, table), timeout,
                      f"{table} equal on {a} and {b}")


@pytest.fixture
def env(clusters, tmp_path, monkeypatch):
    # The member passwords' file (passfile.py): the test's own, never the user's ~/.pgpass.
    monkeypatch.setenv("PGREPL_PASSFILE", str(tmp_path / "pgpass"))
    fresh_databases(clusters)
    e = Env(clusters, tmp_path)
    e.cli("install")
    e.cli("set", f"piddir={e.piddir}", "poll_interval=0.1", "retry_min=0.2", "retry_max=2")
    yield e
    e.stop()


@pytest.fixture
def pgbench_env(env):
    """env with `pgbench -i` run on every cluster's test1."""
    for c in env.c.values():
        c.pgbench("test1", "-i", "-q")
    return env


@pytest.fixture
def mail_sink():
    """An SMTP server on loopback for the runner's alert emails: (its port, the messages it received so far)."""
    from aiosmtpd.controller import Controller

    received: list[str] = []

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope.content.decode())
            return "250 OK"

    port = PORTS["master"] + 20   # beside this suite's clusters, clear of the other suites' ports
    smtp = Controller(Sink(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        yield port, received
    finally:
        smtp.stop()
