"""Servers that crash (`pg_ctl -m immediate`) under the runner: the target mid-COPY and mid-batch, the source
and the control database under load. Each run that fails is recorded as bad and retried; the target ends equal."""

from faultlib import (
    PGBENCH_TABLES,
    Supervisor,
    finish,
    pgbench_background,
    report,
    wait_equal,
    wait_one_worker,
)

ITEMS = "CREATE TABLE items (id int PRIMARY KEY, val text, n int DEFAULT 0)"


def items_sync(e, create_on=("master", "slave"), **settings) -> None:
    for host in create_on:
        e.x(host, ITEMS)
    e.add_databases("master", "slave")
    e.cli("add", "table", "items", "db=test1_master", "herd=h")
    e.cli("add", "sync", "itemsync", "source=h", "targetdb=test1_slave", "type=pushdelta",
          *[f"{k}={v}" for k, v in settings.items()])


MID_COPY = "state = 'active' AND query LIKE 'COPY % FROM STDIN%'"
MID_BATCH = "backend_xid IS NOT NULL"   # the worker's target transaction has written: a batch is half done


def runner_on(e, host: str, condition: str) -> bool:
    """A session of the sync's worker on HOST meets CONDITION (SQL on pg_stat_activity)."""
    return bool(e.c[host].query("postgres", "SELECT 1 FROM pg_stat_activity WHERE application_name = 'pgrepl itemsync' "
                                            f"AND {condition}"))


def bad_runs(e) -> int:
    return e.c["master"].query("pgrepl", "SELECT count(*) FROM pgrepl.run WHERE sync = 'itemsync' "
                                         "AND target = 'test1_slave' AND state = 'bad'")[0][0]


def crash_target_while(e, condition: str, timeout: float = 60) -> None:
    """Kills the target server (immediate: no shutdown checkpoint, sessions cut) as soon as the worker's session
    there meets CONDITION; waits until the failed run is recorded, then starts the target again."""
    e.wait_for(lambda: runner_on(e, "slave", condition), timeout, f"the worker's session on the target: {condition}")
    e.c["slave"].stop("immediate")
    try:
        e.wait_for(lambda: bad_runs(e) > 0, 60, "the failed run recorded as bad")
    finally:
        e.c["slave"].start()


def test_target_crashes_mid_copy(env):
    e = env
    e.x("master", ITEMS)
    e.x("master", "INSERT INTO items SELECT g, repeat('x', 200), 0 FROM generate_series(1, 500000) g")
    items_sync(e, create_on=["slave"], onetimecopy=1)
    e.x("master", "UPDATE items SET n = 1 WHERE id % 1000 = 0")   # changes before the copy, captured
    e.start()
    crash_target_while(e, MID_COPY)
    e.x("master", "UPDATE items SET n = 2 WHERE id % 777 = 0")    # changes after the crash
    wait_equal(e, "master", "slave", ["items"], kick="itemsync")
    assert e.cli("list", "syncs", "--json")[1].count('"onetimecopy": 0') == 1
    wait_one_worker(e, ["itemsync"])
    report("target crash mid-COPY", "1 pg_ctl -m immediate of the target during the onetimecopy's COPY of 500k rows",
           f"{bad_runs(e)} bad run(s) recorded", "checked: items count+checksum equal, onetimecopy done, one worker")


def test_target_crashes_mid_batch(env):
    e = env
    items_sync(e)
    e.cli("set", "batch_size=1000")
    e.x("slave", "INSERT INTO items SELECT g, 'old', 0 FROM generate_series(1, 200000) g")
    e.x("master", "INSERT INTO items SELECT g, 'old', 0 FROM generate_series(1, 200000) g")
    e.x("master", "UPDATE items SET val = 'new', n = id")         # a backlog of 200 batches
    e.start()
    crash_target_while(e, MID_BATCH)
    assert e.q("slave", "SELECT count(*) FROM items WHERE val = 'new'")[0][0] < 200000, "finished before the crash"
    wait_equal(e, "master", "slave", ["items"], kick="itemsync")
    wait_one_worker(e, ["itemsync"])
    report("target crash mid-batch", "1 pg_ctl -m immediate of the target inside a batch's target transaction (batch_size=1000)",
           f"{bad_runs(e)} bad run(s) recorded", "checked: items count+checksum equal, one worker")


def test_source_and_control_restart_under_load(pgbench_env):
    """The control database lives on the source's cluster (master): each crash takes both away at once."""
    e = pgbench_env
    e.add_databases("master", "slave")
    e.cli("add", "all", "tables", "db=test1_master", "-T", "pgbench_history", "--herd=alpha")
    e.cli("add", "sync", "benchdeltaalpha", "source=alpha", "targetdb=test1_slave", "type=pushdelta")
    supervisor = Supervisor(e)
    supervisor.ensure()
    crashes, committed = 0, 0
    for mode in ("immediate", "fast", "immediate"):
        load = pgbench_background(e.c["master"], "test1", "-n", "-c", "2", "-T", "8")
        e.wait_for(lambda n=committed: e.q("master", "SELECT count(*) FROM pgbench_history")[0][0] > n + 100,
                   what="pgbench writing")
        e.c["master"].stop(mode)   # pgbench's sessions are cut: it fails, its committed work stays
        crashes += 1
        load.communicate(timeout=60)
        e.c["master"].start()
        supervisor.ensure()        # a controller that died with its control database is started again
        committed = e.q("master", "SELECT count(*) FROM pgbench_history")[0][0]
    out = finish(pgbench_background(e.c["master"], "test1", "-n", "-c", "2", "-T", "5"))
    supervisor.ensure()
    wait_equal(e, "master", "slave", PGBENCH_TABLES, kick="benchdeltaalpha")
    wait_one_worker(e, ["benchdeltaalpha"])
    report("source and control restarts", f"{crashes} stops (immediate, fast, immediate) of the cluster holding source "
           f"and control database under pgbench -c 2", f"controller restarted {supervisor.restarts} time(s)",
           f"{committed} pgbench transactions before the last crash, then "
           + next(x for x in out.splitlines() if "actually processed" in x).strip(),
           "checked: pgbench tables count+checksum equal on master and slave, one worker")

