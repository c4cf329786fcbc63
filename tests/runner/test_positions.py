"""Positions in a source that only move forward and only by their holder: a copy of the control database cannot drive
a sync beside the original, onetimecopy=2 keeps the changes of the tables it skips, conflicts resolved with
identity columns."""

import json
import subprocess
import sys

from test_pushdelta import ITEMS, items_sync


def test_a_copy_of_the_control_database_cannot_apply_beside_the_original(env):
    """A restored copy of the control database (same identity, same sync names) started beside the original: the
    source's lease lets one of them apply, the other's runs fail loudly, and nothing is lost."""
    items_sync(env)
    env.start()
    env.x("master", "INSERT INTO items SELECT g, 'v' FROM generate_series(1, 100) g")
    env.wait_same("master", "slave", "items")
    env.stop()
    master = env.c["master"]
    master.execute("postgres", 'CREATE DATABASE "pgrepl_copy" TEMPLATE "pgrepl"')
    copy = master.dsn("pgrepl_copy")
    master.execute("pgrepl_copy", "INSERT INTO pgrepl.setting VALUES ('piddir', %s) ON CONFLICT (name) DO UPDATE "
                                  "SET value = excluded.value", (str(env.piddir.parent / "run-copy"),))
    env.start()
    (t0,) = master.query("postgres", "SELECT now()")[0]
    log = open(env.piddir.parent / "copy.log", "ab")
    second = subprocess.Popen([sys.executable, "-m", "pgrepl", "--control", copy, "run"], stdout=log, stderr=log)
    try:
        for i in range(30):
            env.x("master", f"UPDATE items SET n = n + 1 WHERE id = {i + 1}")
        env.x("master", "INSERT INTO items SELECT g, 'late' FROM generate_series(101, 200) g")
        env.wait_same("master", "slave", "items", timeout=60)
        env.wait_for(lambda: master.query("pgrepl_copy", "SELECT count(*) FROM pgrepl.run WHERE error LIKE "
                                                         "'%held by%'")[0][0] > 0
                     or master.query("pgrepl", "SELECT count(*) FROM pgrepl.run WHERE error LIKE '%held by%'")[0][0] > 0,
                     what="a runner told that the other holds the lease")
        applied = {db: master.query(db, "SELECT count(*) FROM pgrepl.run WHERE state = 'good' AND "
                                        "inserts + updates + deletes > 0 AND started > %s", (t0,))[0][0]
                   for db in ("pgrepl", "pgrepl_copy")}
        assert min(applied.values()) == 0, f"both control databases applied changes: {applied}"
    finally:
        second.terminate()
        second.wait(30)
    assert env.checksum("master", "items") == env.checksum("slave", "items")


def test_onetimecopy_2_keeps_the_changes_of_the_tables_it_skips(env):
    """onetimecopy=2 copies only the empty target tables; the others must still get every change made since the
    sync was added."""
    for host in ("master", "slave"):
        env.x(host, ITEMS)
        env.x(host, "CREATE TABLE other (id int PRIMARY KEY, v text)")
        env.x(host, "INSERT INTO other VALUES (1, 'same on both')")
    env.x("master", "INSERT INTO items SELECT g, 'old' FROM generate_series(1, 50) g")   # slave's items is empty
    env.add_databases("master", "slave")
    env.cli("add", "all", "tables", "db=test1_master", "herd=h")
    env.cli("add", "sync", "s2", "source=h", "targetdb=test1_slave", "type=pushdelta", "onetimecopy=2")
    env.x("master", "UPDATE other SET v = 'changed before the first run' WHERE id = 1")
    env.x("master", "INSERT INTO other VALUES (2, 'added before the first run')")
    env.start()
    env.wait_same("master", "slave", "items")
    env.wait_same("master", "slave", "other")
    assert env.q("slave", "SELECT v FROM other ORDER BY id") == [("changed before the first run",),
                                                               ("added before the first run",)]


def test_swap_conflict_on_an_identity_column_generated_always(env):
    ddl = "CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text)"
    for host in ("master2", "master"):
        env.x(host, ddl)
        env.x(host, "INSERT INTO ident (v) VALUES ('one'), ('two')")
    env.add_databases("master2", "master")
    env.cli("add", "all", "tables", "db=test1_master2", "standard_conflict=source", "herd=gamma")
    env.cli("add", "sync", "sw", "source=gamma", "targetdb=test1_master", "type=swap")
    env.x("master", "UPDATE ident SET v = 'target' WHERE id = 1")
    env.x("master2", "UPDATE ident SET v = 'source' WHERE id = 1")   # a conflict: the source's row is written
    env.start()
    env.cli("kick", "sw", "--wait", "30")
    for host in ("master2", "master"):
        assert env.q(host, "SELECT id, v FROM ident ORDER BY id") == [(1, "source"), (2, "two")]
    journal = json.loads(env.cli("list", "conflicts", "sw", "--json")[1])
    assert [(c["key"], c["winner"]) for c in journal] == [({"id": 1}, "source")]


def test_removing_a_swap_sync_removes_what_it_recorded_on_its_sides(env):
    """A swap records on each side how far the other side's changes are applied there (pgrepl.applied) and the
    conflict keys it resolved in its last run (pgrepl.resolved): `remove sync` takes them away with it."""
    # one run only (the start's poll; no probe, no kick): the next run's new interval would forget the resolved keys
    env.cli("set", "poll_interval=600", "probe_interval=0")
    for host in ("master2", "master"):
        env.x(host, "CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text)")
        env.x(host, "INSERT INTO ident (v) VALUES ('one'), ('two')")
    env.add_databases("master2", "master")
    env.cli("add", "all", "tables", "db=test1_master2", "standard_conflict=source", "herd=gamma")
    env.cli("add", "sync", "sw", "source=gamma", "targetdb=test1_master", "type=swap")
    env.x("master", "UPDATE ident SET v = 'target' WHERE id = 1")
    env.x("master2", "UPDATE ident SET v = 'source' WHERE id = 1")   # a conflict: both sides get the source's row
    env.start()
    recorded = "SELECT (SELECT count(*) FROM pgrepl.applied), (SELECT count(*) FROM pgrepl.resolved)"
    env.wait_for(lambda: env.q("master", recorded)[0][0] > 0 and env.q("master2", recorded)[0][1] > 0,
                 what="the run's applied position on master and resolved key on master2")
    env.stop()
    env.cli("deactivate", "sw")
    env.cli("remove", "sync", "sw")
    for host in ("master2", "master"):
        assert env.q(host, recorded) == [(0, 0)], host


def test_a_run_whose_position_was_moved_meanwhile_records_nothing(env):
    """The batch's source transaction commits and the position moves in one round trip (delta._move, commit=True):
    a position moved by someone else since the run read it still stops the run with LeaseLost, leaves the other's
    position as it was, and the connection usable."""
    import psycopg
    import pytest
    from pgrepl import apply, capture, catalog, delta
    items_sync(env)
    with psycopg.connect(env.control, autocommit=True) as control:
        sync = catalog.source_name(control, "itemsync")
    env.x("master", "INSERT INTO items SELECT g, 'v' FROM generate_series(1, 10) g")
    with psycopg.connect(env.c["master"].dsn("test1"), autocommit=True) as src, \
            psycopg.connect(env.c["slave"].dsn("test1"), autocommit=True) as tgt:
        iv = delta.open_interval(src, sync, "test1_slave")
        env.x("master", "UPDATE pgrepl.consumer SET done = pg_current_snapshot() WHERE sync = %s", (sync,))
        moved = env.q("master", "SELECT done::text FROM pgrepl.consumer WHERE sync = %s", (sync,))
        with pytest.raises(delta.LeaseLost):
            apply.push_interval(src, tgt, iv, capture.captures(src), 1000)
        assert src.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert src.execute("SELECT 1").fetchone() == (1,)
    assert env.q("master", "SELECT done::text FROM pgrepl.consumer WHERE sync = %s", (sync,)) == moved
