"""One sync driven twice: a second controller on another host (same control database, its own piddir), a second
worker started by hand, and two control databases that each have a sync of the same name on one source."""

import os
import subprocess
import sys

from faultlib import (
    PGBENCH_TABLES,
    controllers,
    finish,
    kill_leftovers,
    pgbench_background,
    report,
    wait_equal,
    workers,
)

ITEMS = "CREATE TABLE items (id int PRIMARY KEY, val text, n int DEFAULT 0)"


def appliers(e, sync: str, since: int) -> set[int]:
    """Pids of the workers that applied something for SYNC in runs after run id SINCE."""
    rows = e.c["master"].query("pgrepl", "SELECT DISTINCT pid FROM pgrepl.run WHERE sync = %s "
                               "AND id > %s AND inserts + updates + deletes > 0", (sync, since))
    return {r[0] for r in rows}


def last_run(e) -> int:
    return e.c["master"].query("pgrepl", "SELECT coalesce(max(id), 0) FROM pgrepl.run")[0][0]


def alpha_sync(e) -> None:
    e.add_databases("master", "slave")
    e.cli("add", "all", "tables", "db=test1_master", "-T", "pgbench_history", "--herd=alpha")
    e.cli("add", "sync", "benchdeltaalpha", "source=alpha", "targetdb=test1_slave", "type=pushdelta")
    e.cli("set", "batch_size=500")


def second_host_controller(e) -> subprocess.Popen:
    """`pgrepl run` as another host runs it: the same control database, a piddir of its own (a private mount
    namespace with an empty tmpfs over the piddir, so this host's pid files are not seen)."""
    e.piddir.mkdir(parents=True, exist_ok=True)
    log = open(e.piddir.parent / "daemon.log", "ab")
    return subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                             'mount -t tmpfs pgrepl-second-host "$1" && exec "$2" -m pgrepl run', "sh",
                             str(e.piddir), sys.executable],
                            env=dict(os.environ, PGREPL_CONTROL=e.control), stdout=log, stderr=log)


def test_two_controllers_on_one_control_database_never_both_apply(pgbench_env):
    e = pgbench_env
    alpha_sync(e)
    e.start()
    e.wait_for(lambda: len(workers(e, "benchdeltaalpha")) == 1, what="the first host's worker")
    since = last_run(e)
    other = second_host_controller(e)
    e.wait_for(lambda: len(controllers(e)) == 2, what="the second host's controller")
    out = finish(pgbench_background(e.c["master"], "test1", "-n", "-c", "2", "-T", "15"))
    applied_by = appliers(e, "benchdeltaalpha", since)
    assert other.poll() is None, f"the second controller exited ({other.returncode})\n{e.daemon_log()[-3000:]}"
    assert len(applied_by) <= 1, (f"workers {sorted(applied_by)} all applied changes of one sync (live workers: "
                                  f"{workers(e, 'benchdeltaalpha')})\n{e.daemon_log()[-3000:]}")
    wait_equal(e, "master", "slave", PGBENCH_TABLES, kick="benchdeltaalpha")
    report("two controllers, one control database", "a second `pgrepl run` with its own piddir (mount namespace) "
           "beside the first under " + next(x for x in out.splitlines() if "actually processed" in x).strip(),
           f"workers that applied: {sorted(applied_by)}", "checked: at most one applies, tables equal")


def test_a_second_worker_started_by_hand_never_applies(pgbench_env):
    e = pgbench_env
    alpha_sync(e)
    e.start()
    e.wait_for(lambda: len(workers(e, "benchdeltaalpha")) == 1, what="the controller's worker")
    since = last_run(e)
    log = open(e.piddir.parent / "daemon.log", "ab")
    extra = subprocess.Popen([sys.executable, "-m", "pgrepl", "worker", "benchdeltaalpha"],
                             env=dict(os.environ, PGREPL_CONTROL=e.control), stdout=log, stderr=log)
    try:
        e.wait_for(lambda: len(workers(e, "benchdeltaalpha")) == 2, what="the second worker up")
        out = finish(pgbench_background(e.c["master"], "test1", "-n", "-c", "2", "-T", "15"))
        applied_by = appliers(e, "benchdeltaalpha", since)
        assert len(applied_by) <= 1, f"workers {sorted(applied_by)} both applied\n{e.daemon_log()[-3000:]}"
        wait_equal(e, "master", "slave", PGBENCH_TABLES, kick="benchdeltaalpha")
    finally:
        extra.kill()
        extra.wait()
    report("second worker by hand", "`pgrepl worker benchdeltaalpha` started beside the controller's under "
           + next(x for x in out.splitlines() if "actually processed" in x).strip(),
           f"workers that applied: {sorted(applied_by)}", "checked: at most one applies, tables equal")


def test_two_control_databases_with_a_same_named_sync_on_one_source(env, make_env, tmp_path):
    """Two runners (control databases pgrepl and pgrepl2) each replicate `items` of the same source with a sync
    named `same`, to a target each calls test1_target (slave for one, master2 for the other)."""
    e1 = env
    (tmp_path / "second").mkdir()
    e2 = make_env(e1.c, tmp_path / "second", "pgrepl2", fresh_members=False)
    for host in ("master", "slave", "master2"):
        e1.x(host, ITEMS)
    for e, target in ((e1, "slave"), (e2, "master2")):
        e.cli("add", "database", "test1", "name=test1_master", "host=127.0.0.1", f"port={e.c['master'].port}",
              "user=postgres")
        e.cli("add", "database", "test1", "name=test1_target", "host=127.0.0.1", f"port={e.c[target].port}",
              "user=postgres")
        e.cli("add", "table", "items", "db=test1_master", "herd=h")
        e.cli("add", "sync", "same", "source=h", "targetdb=test1_target", "type=pushdelta")
    try:
        e1.start()
        e2.start()
        e1.x("master", "INSERT INTO items SELECT g, 'v', 0 FROM generate_series(1, 2000) g")
        for i in range(1, 21):
            e1.x("master", "UPDATE items SET n = n + 1 WHERE id %% 20 = %s", (i % 20,))
        wait_equal(e1, "master", "slave", ["items"], timeout=60, kick="same")
        wait_equal(e2, "master", "master2", ["items"], timeout=60, kick="same")
        e2.cli("deactivate", "same")
        e2.cli("remove", "sync", "same")
        e1.x("master", "UPDATE items SET val = 'after the other runner left' WHERE id <= 500")
        e1.x("master", "DELETE FROM items WHERE id > 1900")
        wait_equal(e1, "master", "slave", ["items"], timeout=60, kick="same")
        assert e1.q("master", "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass "
                              "AND tgname LIKE 'pgrepl%' AND tgenabled <> 'D'")[0][0] > 0
        assert e1.q("master", "SELECT count(*) FROM pgrepl.consumer")[0][0] == 1
    finally:
        e2.stop()
        kill_leftovers(e2)
    report("two control databases", "syncs named `same` in pgrepl and pgrepl2 on one source, targets slave and "
           "master2 (both called test1_target); `remove sync same` in pgrepl2",
           "checked: both targets equal to the source before; after the removal the first runner's triggers and "
           "consumer remain and it keeps replicating (items equal)")
