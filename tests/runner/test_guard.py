"""Capture that cannot silently vanish (each run checks it, `pgrepl validate` repairs it), partitioned tables
(refused in delta syncs, copied whole by fullcopy) and attributes no verb knows (refused, never ignored)."""

import json
import time

import psycopg
import pytest
from pgrepl import catalog, worker
from test_pushdelta import ITEMS, items_sync


def last_error(e, sync: str = "itemsync") -> str:
    """The `Last error:` line of `pgrepl status SYNC` (empty while no run failed)."""
    _, text = e.cli("status", sync)
    return next((line for line in text.splitlines() if line.startswith("Last error:")), "")


def replicating(e) -> None:
    """items on master replicated to slave by a running daemon, 100 rows applied."""
    items_sync(e)
    e.x("master", "INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 100) g")
    e.start()
    e.wait_same("master", "slave", "items")


def test_disabled_trigger_fails_the_run_and_validate_onetimecopy_recovers_the_missed_rows(env):
    replicating(env)
    env.x("master", "ALTER TABLE items DISABLE TRIGGER pgrepl_capture_upd")
    env.x("master", "UPDATE items SET val = 'while disabled' WHERE id <= 10")
    env.wait_for(lambda: "pgrepl_capture_upd disabled" in last_error(env), what="the failed run in status")
    error = last_error(env)
    assert "public.items" in error and "test1_master" in error and "pgrepl validate itemsync" in error
    assert env.q("slave", "SELECT count(*) FROM items WHERE val = 'while disabled'") == [(0,)]
    assert "pgrepl_capture_upd disabled" in env.cli("check", expect=1)[1]   # `pgrepl check` says it too

    _, text = env.cli("validate", "itemsync", "--onetimecopy")
    assert "test1_master: public.items: re-enabled trigger(s) pgrepl_capture_upd" in text
    assert "Sync itemsync: marked onetimecopy=1" in text
    env.wait_same("master", "slave", "items")
    assert env.q("slave", "SELECT count(*) FROM items WHERE val = 'while disabled'") == [(10,)]
    env.x("master", "UPDATE items SET val = 'captured again' WHERE id = 50")   # the trigger fires again
    env.wait_same("master", "slave", "items")
    assert env.q("slave", "SELECT val FROM items WHERE id = 50") == [("captured again",)]


def test_dropped_trigger_fails_the_run_and_validate_says_a_copy_is_needed(env):
    replicating(env)
    env.x("master", "DROP TRIGGER pgrepl_capture_ins ON items")
    env.x("master", "INSERT INTO items SELECT g, 'while dropped' FROM generate_series(101, 120) g")
    env.wait_for(lambda: "pgrepl_capture_ins missing" in last_error(env), what="the failed run in status")

    code, text = env.cli("validate", "itemsync")
    assert code == 0
    assert "test1_master: public.items: re-created missing trigger(s) pgrepl_capture_ins" in text
    assert "Sync itemsync: changes may have been missed: an onetimecopy is needed" in text
    assert env.cli("validate", "itemsync")[1].strip() == "Sync itemsync: capture complete, nothing to fix"
    env.cli("update", "sync", "itemsync", "onetimecopy=1")
    env.wait_same("master", "slave", "items")
    assert env.q("slave", "SELECT count(*) FROM items") == [(120,)]


def test_recreated_table_fails_the_run_and_validate_gives_it_a_new_capture(env):
    replicating(env)
    env.x("master", f"DROP TABLE items; {ITEMS}")
    env.x("master", "INSERT INTO items SELECT g, 'new table' FROM generate_series(1, 30) g")
    env.wait_for(lambda: "dropped and re-created" in last_error(env), what="the failed run in status")
    assert "pgrepl validate itemsync" in last_error(env)
    assert env.q("slave", "SELECT count(*) FROM items") == [(100,)]   # nothing applied, nothing lost silently

    _, text = env.cli("validate", "itemsync", "--onetimecopy")
    assert "test1_master: public.items: re-created: new capture installed" in text
    assert "Sync itemsync: marked onetimecopy=1" in text
    env.wait_same("master", "slave", "items")
    assert env.q("slave", "SELECT count(*), min(val) FROM items") == [(30, "new table")]
    env.x("master", "DELETE FROM items WHERE id > 20")   # the new capture records the new table's changes
    env.wait_same("master", "slave", "items")
    assert env.q("slave", "SELECT count(*) FROM items") == [(20,)]


def test_capture_recreated_between_polls_a_probe_started_run_never_applies_with_the_old_one(env):
    """A run the fast probe starts between two polls uses the captures the last poll checked (worker._push): a
    capture re-created meanwhile must fail that run cleanly or be applied right, and the next poll finds it."""
    items_sync(env)
    env.x("master", "INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 100) g")
    env.cli("set", "retry_min=0.1")
    w = worker.SyncWorker(env.control, "itemsync")   # driven round by round, as its loop would
    w.control = catalog.open_control(env.control)
    w.source_name, w.settings = catalog.source_name(w.control, "itemsync"), catalog.all_settings(w.control)
    w.directions, w.last_state, w.tables, w.fast = {}, "idle", {}, False
    try:
        sync = catalog.get_sync(w.control, "itemsync")
        assert w._delta(sync, [])   # a full poll's run
        assert env.q("slave", "SELECT count(*) FROM items") == [(100,)]

        env.x("master", f"DROP TABLE items; {ITEMS}")
        assert "re-created: new capture installed" in env.cli("validate", "itemsync")[1]
        env.x("master", "INSERT INTO items SELECT g, 'new table' FROM generate_series(1, 30) g")
        w.fast = True   # the probe saw changes before the next poll
        if not w._delta(sync, []):   # failed cleanly: nothing applied, the failure recorded
            assert env.q("slave", "SELECT count(*) FROM items WHERE val = 'new table'") == [(0,)]
            assert w.control.execute("SELECT count(*) FROM pgrepl.run WHERE sync = 'itemsync' AND state = 'bad'",
                                     ).fetchone()[0] == 1
            env.wait_for(lambda: all(time.monotonic() >= d.retry_at for d in w.directions.values()),
                         what="the retry time")
        w.fast, w.tables = False, {}   # the next poll
        assert w._delta(catalog.get_sync(w.control, "itemsync"), [])
        # the new capture's changes are on the target: the old capture's run moved no position past them
        assert env.q("slave", "SELECT count(*) FROM items WHERE val = 'new table'") == [(30,)]
        env.x("master", "UPDATE items SET val = 'later' WHERE id = 5")
        w.fast = True
        assert w._delta(sync, [])
        assert env.q("slave", "SELECT val FROM items WHERE id = 5") == [("later",)]
    finally:
        for d in w.directions.values():
            d.close()
        w.control.close()


def test_swap_checks_the_capture_of_both_sides(env):
    for host in ("master2", "master"):
        env.x(host, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    env.add_databases("master2", "master")
    env.cli("add", "all", "tables", "db=test1_master2", "herd=gamma")
    env.cli("add", "sync", "sw", "source=gamma", "targetdb=test1_master", "type=swap")
    env.start()
    env.x("master", "INSERT INTO t VALUES (1, 'a')")
    env.wait_same("master", "master2", "t")
    env.x("master", "ALTER TABLE t DISABLE TRIGGER pgrepl_capture_ins")   # on the target side
    env.x("master", "INSERT INTO t VALUES (2, 'not captured')")
    env.wait_for(lambda: 'public.t in database "test1_master"' in last_error(env, "sw"), what="the failed swap run")

    _, text = env.cli("validate", "sw", "--onetimecopy", expect=1)   # a swap has no onetimecopy: said, not ignored
    assert "test1_master: public.t: re-enabled trigger(s) pgrepl_capture_ins" in text
    assert "ERROR Sync sw: changes may have been missed: compare the two sides" in text
    assert env.cli("validate", "sw")[1].strip() == "Sync sw: capture complete, nothing to fix"
    env.x("master", "INSERT INTO t VALUES (3, 'captured again')")
    env.wait_for(lambda: env.q("master2", "SELECT v FROM t WHERE id = 3") == [("captured again",)],
                 what="the swap running again")


def test_validate_all_when_nothing_is_wrong_and_a_sync_that_does_not_exist(env):
    items_sync(env)
    _, text = env.cli("validate", "all")
    assert text.strip() == "Sync itemsync: capture complete, nothing to fix"
    _, text = env.cli("validate", "nosuch", expect=1)
    assert 'No sync named "nosuch"' in text


def test_dropped_capture_schema_fails_the_run_and_validate_installs_it_again(env):
    replicating(env)
    # delta stores, positions, trigger functions and triggers; the runner's probe reads the delta stores every
    # 20 ms, so the DROP may deadlock with it and is tried again, as an operator would
    for attempt in range(5):
        try:
            env.x("master", "DROP SCHEMA pgrepl CASCADE")
            break
        except psycopg.errors.DeadlockDetected:
            assert attempt < 4, "DROP SCHEMA deadlocked five times in a row"
    env.x("master", "UPDATE items SET val = 'uncaptured' WHERE id > 90")
    env.wait_for(lambda: "no pgrepl capture schema" in last_error(env), what="the failed run in status")

    _, text = env.cli("validate", "itemsync", "--onetimecopy")
    assert "test1_master: public.items: was not captured: capture installed" in text
    assert "position of itemsync towards test1_slave missing" in text
    assert "Sync itemsync: marked onetimecopy=1" in text
    env.wait_same("master", "slave", "items")
    assert env.q("slave", "SELECT count(*) FROM items WHERE val = 'uncaptured'") == [(10,)]
    env.x("master", "DELETE FROM items WHERE id = 1")
    env.wait_same("master", "slave", "items")


# --- partitioned tables --------------------------------------------------------------------------------------

PARTITIONED = ("CREATE TABLE m (id int, part int, v text, PRIMARY KEY (id, part)) PARTITION BY LIST (part); "
               "CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1); CREATE TABLE m2 PARTITION OF m FOR VALUES IN (2); "
               "CREATE TABLE m3 PARTITION OF m FOR VALUES IN (3)")
REASON = "statement-level capture triggers on a partitioned table miss writes made directly to a partition"


def test_partitioned_table_refused_in_delta_syncs_with_the_reason(env):
    items_sync(env)
    for host in ("master", "slave"):
        env.x(host, PARTITIONED)
    before = env.cli("list", "herds", "--json")[1]
    code, text = env.cli("add", "table", "m", "db=test1_master", "herd=h", expect=1)   # h: itemsync's herd
    assert "public.m is partitioned" in text and REASON in text
    assert env.cli("list", "herds", "--json")[1] == before
    env.cli("add", "table", "m", "db=test1_master", "herd=parts")
    code, text = env.cli("add", "sync", "psync", "source=parts", "targetdb=test1_slave", "type=pushdelta", expect=1)
    assert "public.m" in text and REASON in text and "fullcopy" in text
    assert "psync" not in env.cli("list", "syncs")[1]
    assert env.q("master", "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'm'::regclass") == [(0,)]


def test_fullcopy_copies_a_partitioned_table(env):
    for host in ("master", "slave"):
        env.x(host, PARTITIONED)
    env.x("master", "INSERT INTO m SELECT g, g % 3 + 1, 'v' || g FROM generate_series(1, 300) g")
    env.x("slave", "INSERT INTO m VALUES (1000, 1, 'stale')")
    env.add_databases("master", "slave")
    env.cli("add", "table", "m", "db=test1_master", "herd=parts")
    env.cli("add", "sync", "pcopy", "source=parts", "targetdb=test1_slave", "type=fullcopy")
    env.start()
    env.cli("kick", "pcopy", "--wait", "60")
    assert env.checksum("master", "m") == env.checksum("slave", "m")
    assert env.q("slave", "SELECT count(*) FROM m1") + env.q("slave", "SELECT count(*) FROM m3") == [(100,), (100,)]


# --- attributes no verb knows --------------------------------------------------------------------------------

@pytest.mark.parametrize("args, unknown, known", [
    (["add", "table", "items", "db=test1_master", "herd=hx", "delta_colums=abalance"], "delta_colums",
     "known: db, delta_columns, herd, standard_conflict"),
    (["add", "table", "items", "db=test1_master", "herd=h", "standard_confict=source"], "standard_confict",
     "known: db, delta_columns, herd, standard_conflict"),
    (["add", "all", "tables", "db=test1_master", "--herd=hx", "delta_colums=abalance"], "delta_colums",
     "known: db, delta_columns, herd, standard_conflict"),
    (["update", "table", "items", "db=test1_master", "delta_colums=abalance"], "delta_colums",
     "known: db, delta_columns, standard_conflict"),
    (["add", "sequence", "counter", "db=test1_master", "herd=h", "standard_conflict=source"], "standard_conflict",
     "known: db, herd"),
    (["add", "all", "sequences", "db=test1_master", "herd=hx", "increment=2"], "increment", "known: db, herd"),
    (["add", "dbgroup", "g", "test1_slave", "members=test1_slave"], "members", "known: none"),
    (["add", "sync", "s2", "source=h", "targetdb=test1_slave", "type=pushdelta", "makedleta=yes"], "makedleta",
     "known: checktime, herd, makedelta"),
    (["update", "sync", "itemsync", "chektime=1 minute"], "chektime", "known: checktime, herd, makedelta"),
    (["kick", "itemsync", "wait=5"], "wait", "known: none"),
])
def test_unknown_attributes_are_refused_naming_the_known_ones(env, args, unknown, known):
    items_sync(env)
    env.x("master", "CREATE SEQUENCE counter")

    def catalog():
        return [env.cli("list", what, "--json")[1] for what in ("tables", "sequences", "herds", "dbgroups", "syncs")]

    before = catalog()
    code, text = env.cli(*args, expect=None)
    assert code != 0 and unknown in text and known in text, text
    assert catalog() == before
    assert json.loads(env.cli("list", "syncs", "--json")[1])[0]["checktime"] is None
