"""Fixtures for the module tests: ansible-playbook drives the pgrepl.cluster modules against three real
PostgreSQL 15 clusters on loopback (master, slave, master2), with a fresh control database and fresh `test1`
databases for every test.

Ports and directory differ from the runner tests' (25441..., /tmp/pgrepl-tests) so both suites can run at once.
The collection is the one in ANSIBLE_COLLECTIONS_PATH when it holds pgrepl.cluster (`make test-modules` builds and
installs it there), else this working tree through a symlink tree under .tmp/test-collections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from pgcluster import LocalCluster, fresh_databases, running_clusters, start_daemon  # noqa: E402
from pgrepl import catalog  # noqa: E402

BASE = Path(os.environ.get("PGREPL_MODULE_TEST_DIR", "/tmp/pgrepl-module-tests"))
_PORT = int(os.environ.get("PGREPL_MODULE_TEST_PORT", "25451"))
PORTS = {"master": _PORT, "slave": _PORT + 1, "master2": _PORT + 2}
PYTHON = sys.executable   # the venv's python: it has psycopg and the runner library (pip install -e runner)
BIN = Path(PYTHON).parent
MODULES = ("pg_repl_db", "pg_repl_dbgroup", "pg_repl_herd", "pg_repl_sync", "pg_repl_info", "pg_repl_compare",
           "pg_repl_settings")

SCHEMA = """
CREATE TABLE public.accounts (id int PRIMARY KEY, balance int NOT NULL DEFAULT 0);
CREATE TABLE public.branches (id int PRIMARY KEY, name text);
CREATE TABLE public.tellers (id int PRIMARY KEY, branch int);
CREATE TABLE public.history (aid int, delta int, at timestamptz DEFAULT now());   -- no primary key
CREATE SEQUENCE public.ticket_seq;
INSERT INTO public.accounts SELECT g, 0 FROM generate_series(1, 10) g;
INSERT INTO public.branches SELECT g, 'branch ' || g FROM generate_series(1, 3) g;
INSERT INTO public.tellers SELECT g, g % 3 + 1 FROM generate_series(1, 6) g;
"""


def collections_path() -> str:
    for entry in filter(None, os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep)):
        if (Path(entry) / "ansible_collections/pgrepl/cluster/plugins/modules/pg_repl_sync.py").exists():
            return entry
    tree = ROOT / ".tmp/test-collections"
    link = tree / "ansible_collections/pgrepl/cluster"
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(ROOT, target_is_directory=True)
    return str(tree)


@pytest.fixture(scope="session")
def clusters():
    with running_clusters(BASE, PORTS) as found:
        yield found


class Run:
    """One ansible-playbook run, read from the JSON callback: results by task name."""

    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc = proc.returncode
        self.text = proc.stdout + proc.stderr
        try:
            self.data = json.loads(proc.stdout[proc.stdout.index("{"):])
        except ValueError as e:
            raise AssertionError(f"no JSON from ansible-playbook (rc {self.rc}):\n{self.text}") from e
        self.results: dict[str, dict] = {}
        for play in self.data["plays"]:
            for task in play["tasks"]:
                name = task["task"]["name"].split(" : ", 1)[-1]    # without the "namespace.role : " prefix
                self.results[name] = task["hosts"].get("localhost", {})
        self.stats = self.data["stats"].get("localhost", {})

    def __getitem__(self, task: str) -> dict:
        return self.results[task]

    def changed(self) -> dict[str, bool]:
        """Changed or not, per task that ran (skipped tasks left out)."""
        return {name: bool(r.get("changed")) for name, r in self.results.items() if not r.get("skipped")}

    def failed(self) -> dict[str, str]:
        return {name: r.get("msg", "") for name, r in self.results.items() if r.get("failed")}


class World:
    """One test's world: three clusters with `test1`, a control database, and ansible-playbook."""

    def __init__(self, clusters: dict[str, LocalCluster], tmp: Path, collections: str):
        self.c = clusters
        self.tmp = tmp
        self.control = clusters["master"].dsn("pgrepl")
        self.collections = collections
        self.daemon_proc: subprocess.Popen | None = None
        self.login = {"login_host": "127.0.0.1", "login_port": clusters["master"].port, "login_user": "postgres",
                      "control_db": "pgrepl"}

    # --- ansible ---------------------------------------------------------------------------------------------

    def playbook(self, plays: list[dict], *args: str, expect_rc: int | None = 0) -> Run:
        path = self.tmp / "playbook.yml"
        path.write_text(yaml.safe_dump(plays, sort_keys=False))
        inventory = self.tmp / "inventory.ini"
        inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={PYTHON} "
                             f"sync_runner_python={PYTHON}\n")
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=self.collections, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                   ANSIBLE_LOCAL_TEMP=str(self.tmp / "ansible-tmp"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_DEPRECATION_WARNINGS="0", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
        env.pop("ANSIBLE_CONFIG", None)
        proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(path), *args],
                              cwd=self.tmp, env=env, capture_output=True, text=True, timeout=300)
        run = Run(proc)
        if expect_rc is not None:
            assert run.rc == expect_rc, f"ansible-playbook rc {run.rc}, expected {expect_rc}:\n{run.text[-6000:]}"
        return run

    def play(self, tasks: list[dict], *args: str, expect_rc: int | None = 0, **play) -> Run:
        """Runs TASKS on localhost, every pgrepl.cluster module pointed at this world's control database."""
        defaults = {f"pgrepl.cluster.{m}": dict(self.login) for m in MODULES}
        return self.playbook([{"name": "pgrepl", "hosts": "localhost", "gather_facts": False,
                               "module_defaults": defaults, **play, "tasks": tasks}], *args, expect_rc=expect_rc)

    def member(self, name: str, cluster: str | None = None) -> dict:
        """A pg_repl_db task's arguments for test1 on CLUSTER."""
        return {"name": name, "dbname": "test1", "host": "127.0.0.1", "port": self.c[cluster or name.split("_")[1]].port,
                "user": "postgres", "password": "s3cret-" + name}

    # --- observations ----------------------------------------------------------------------------------------

    def catalog(self) -> dict[str, list]:
        """The catalog, as the runner library lists it (what `pgrepl list ... --json` prints)."""
        with catalog.open_control(self.control) as conn:
            return {"dbs": catalog.list_dbs(conn), "dbgroups": catalog.list_dbgroups(conn),
                    "herds": catalog.list_herds(conn), "relations": catalog.list_relations(conn),
                    "syncs": catalog.list_syncs(conn)}

    def names(self, kind: str) -> list[str]:
        return [r["name"] for r in self.catalog()[kind]]

    def triggers(self, cluster: str, table: str) -> list[str]:
        return [r[0] for r in self.q(cluster, "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass "
                                              "AND tgname LIKE 'pgrepl%%' ORDER BY 1", (table,))]

    def q(self, cluster: str, sql: str, params=None) -> list[tuple]:
        return self.c[cluster].query("test1", sql, params)

    def x(self, cluster: str, sql: str, params=None) -> None:
        self.c[cluster].execute("test1", sql, params)

    # --- the runner ------------------------------------------------------------------------------------------

    def start(self) -> None:
        piddir = self.tmp / "run"
        with catalog.open_control(self.control) as conn:
            catalog.set_setting(conn, "piddir", str(piddir))
            catalog.set_setting(conn, "poll_interval", "0.1")
        self.daemon_proc = start_daemon(self.control, piddir, self.tmp / "daemon.log", PYTHON)

    def stop(self) -> None:
        if self.daemon_proc and self.daemon_proc.poll() is None:
            self.daemon_proc.terminate()
            self.daemon_proc.wait(60)
        self.daemon_proc = None

    def wait_for(self, predicate, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                log = (self.tmp / "daemon.log").read_text() if (self.tmp / "daemon.log").exists() else ""
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{log[-4000:]}")
            time.sleep(0.1)


@pytest.fixture
def world(clusters, tmp_path, monkeypatch):
    # The member passwords' file (pgrepl.passfile) for the modules and the runner: the test's own.
    monkeypatch.setenv("PGREPL_PASSFILE", str(tmp_path / "pgpass"))
    fresh_databases(clusters, SCHEMA)
    catalog.install(clusters["master"].dsn("pgrepl"))
    w = World(clusters, tmp_path, collections_path())
    yield w
    w.stop()


@pytest.fixture
def empty_control(clusters):
    """No control database at all: what a first check-mode run on a new runner host meets."""
    with psycopg.connect(clusters["master"].conninfo, autocommit=True) as c:
        c.execute('DROP DATABASE IF EXISTS "pgrepl" WITH (FORCE)')
