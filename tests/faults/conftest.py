"""Fixtures for the fault suite: the runner tests' Env and clusters fixture (tests/runner/conftest.py, loaded
under another module name) on three clusters of its own, ports PGREPL_TEST_PORT+3..+5 under PGREPL_TEST_DIR-faults,
so that both suites can run side by side or in one session. env and pgbench_env are the runner tests' ones, plus
a teardown that kills every daemon process the test started, orphans included."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

_spec = importlib.util.spec_from_file_location("runner_fixtures", HERE.parent / "runner" / "conftest.py")
runner_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner_fixtures)
runner_fixtures.BASE = Path(str(runner_fixtures.BASE) + "-faults")
runner_fixtures.PORTS = {name: port + 3 for name, port in runner_fixtures.PORTS.items()}

from faultlib import kill_leftovers  # noqa: E402

clusters = runner_fixtures.clusters
Env = runner_fixtures.Env


@pytest.fixture
def env(clusters, tmp_path):
    """As the runner tests' env (a fresh control database and test1 databases), with orphans killed at the end."""
    for c in clusters.values():
        if not c.is_running():
            c.start()
    e = fresh_env(clusters, tmp_path)
    yield e
    e.stop()
    kill_leftovers(e)


def fresh_env(clusters, tmp_path, control_db: str = "pgrepl", fresh_members: bool = True) -> Env:
    """An Env on a new control database CONTROL_DB of the master cluster (and new test1 databases)."""
    if fresh_members:
        for c in clusters.values():
            c.createdb("test1")
    clusters["master"].createdb(control_db)
    e = Env(clusters, tmp_path)
    e.control = clusters["master"].dsn(control_db)
    e.cli("install")
    e.cli("set", f"piddir={e.piddir}", "poll_interval=0.1", "retry_min=0.2", "retry_max=2")
    return e


@pytest.fixture
def make_env():
    """fresh_env, for a test that needs a second control database."""
    return fresh_env


@pytest.fixture
def pgbench_env(env):
    for c in env.c.values():
        c.pgbench("test1", "-i", "-q")
    return env

