"""`kill -9` of workers and of the controller at random moments under pgbench, the controller restarted as
systemd would; at the end every table is equal on both sides and each sync has exactly one live worker."""

import os
import signal

import psycopg
from faultlib import (
    PGBENCH_TABLES,
    Killer,
    controllers,
    finish,
    pgbench_background,
    report,
    wait_equal,
    wait_one_worker,
    workers,
)

KILLS = 20


def test_a_controller_killed_last_is_restarted(env):
    """The scenarios' own supervision: kill(2) returns before its victim is dead, and a supervisor that looked then
    left the last killed controller down (the scenarios then waited for a catch-up that could not come)."""
    env.start()
    killer = Killer(env, [])   # no sync, no worker: the victim is the controller
    killer.run(1, max_pause=0.1)
    assert killer.kills["controller"] == 1
    assert controllers(env) == [env.daemon_proc.pid], "the killed controller was not restarted"


def test_pushdelta_under_pgbench_survives_kill_9(pgbench_env):
    e = pgbench_env
    e.add_databases("master", "slave")
    e.cli("add", "all", "tables", "db=test1_master", "-T", "pgbench_history", "--herd=alpha")
    e.cli("add", "sync", "benchdeltaalpha", "source=alpha", "targetdb=test1_slave", "type=pushdelta")
    e.cli("set", "batch_size=500")   # many batches per run: kills land between and inside them
    e.start()
    load = pgbench_background(e.c["master"], "test1", "-n", "-c", "2", "-T", "30")
    killer = Killer(e, ["benchdeltaalpha"])
    try:
        killer.run(KILLS, max_pause=1.4)
    finally:
        out = finish(load)
    killer.supervisor.ensure()
    wait_equal(e, "master", "slave", PGBENCH_TABLES, kick="benchdeltaalpha")
    wait_one_worker(e, ["benchdeltaalpha"])
    report("pushdelta kill -9", killer.summary(), "pgbench -c 2 -T 30 on master: "
           + next(line for line in out.splitlines() if "actually processed" in line).strip(),
           f"checked: {', '.join(PGBENCH_TABLES)} count+checksum equal on master and slave; one worker process")


def test_swap_under_pgbench_on_both_sides_survives_kill_9(pgbench_env):
    e = pgbench_env
    src, tgt = "master2", "master"
    e.add_databases(src, tgt)
    e.cli("add", "all", "table", "-T", "pgbench_history", f"db=test1_{src}", "standard_conflict=latest", "herd=gamma")
    e.cli("add", "sync", "benchswapgamma", "source=gamma", f"targetdb=test1_{tgt}", "type=swap")
    e.cli("set", "batch_size=500")
    e.start()
    # TPC-B on both sides at once; pgbench fails on any failed transaction
    loads = [pgbench_background(e.c[h], "test1", "-n", "-c", "2", "-T", "30") for h in (src, tgt)]
    killer = Killer(e, ["benchswapgamma"])
    try:
        killer.run(KILLS, max_pause=1.4)
    finally:
        outs = [finish(p) for p in loads]
    killer.supervisor.ensure()
    wait_equal(e, src, tgt, PGBENCH_TABLES, kick="benchswapgamma")
    wait_one_worker(e, ["benchswapgamma"])
    report("swap kill -9", killer.summary(), "pgbench -n -c 2 -T 30 on both sides: "
           + " / ".join(next(x for x in o.splitlines() if "actually processed" in x).strip() for o in outs),
           f"checked: {', '.join(PGBENCH_TABLES)} count+checksum equal on master2 and master; one worker process")


def test_a_worker_killed_while_its_statement_waits_leaves_no_session_behind(env):
    """A backend notices its client is gone only when it next reads from or writes to it: one whose statement waits
    for a lock (lock_timeout 0: as long as the lock is held) would keep its session, its locks and a swap's
    consumer lease for a killed worker. The runner's member sessions check their client while a statement runs."""
    for host in ("master", "slave"):
        env.x(host, "CREATE TABLE items (id int PRIMARY KEY, val text)")
    env.add_databases("master", "slave")
    env.cli("add", "table", "items", "db=test1_master", "herd=h")
    env.cli("add", "sync", "itemsync", "source=h", "targetdb=test1_slave", "type=pushdelta")
    env.cli("set", "lock_timeout=0")
    env.start()
    env.x("master", "INSERT INTO items VALUES (1, 'x')")
    env.wait_same("master", "slave", "items")

    def waiting_backends() -> list[int]:
        return [r[0] for r in env.q("slave", "SELECT pid FROM pg_stat_activity WHERE application_name = "
                                             "'pgrepl itemsync' AND wait_event_type = 'Lock'")]

    blocker = psycopg.connect(env.c["slave"].dsn("test1"), application_name="forgotten session")
    try:
        blocker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        env.x("master", "INSERT INTO items VALUES (2, 'y')")
        env.wait_for(lambda: len(waiting_backends()) == 1, what="the worker's apply waiting for the lock")
        stale = waiting_backends()[0]
        for pid in workers(env, "itemsync"):
            os.kill(pid, signal.SIGKILL)
        env.wait_for(lambda: not env.q("slave", "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (stale,)),
                     what=f"backend {stale} of the killed worker gone while the lock it waits for is still held")
    finally:
        blocker.rollback()
        blocker.close()
    env.x("master", "INSERT INTO items VALUES (3, 'z')")
    env.wait_same("master", "slave", "items")
