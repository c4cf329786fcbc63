"""The fast probe between polls (watch.py): a change is applied without waiting for the next poll, and a source
where nothing committed is told so by its snapshot alone."""

import time

import psycopg
from pgrepl import capture, catalog, delta
from pgrepl.watch import Watch
from test_daemon import items_sync


def test_a_change_is_applied_before_the_next_poll(env):
    items_sync(env)
    env.cli("set", "poll_interval=600")   # the full poll comes once at start, then in ten minutes
    env.start()
    env.x("master", "INSERT INTO items VALUES (1, 'first')")
    env.wait_same("master", "slave", "items")
    env.x("master", "INSERT INTO items VALUES (2, 'second')")
    env.wait_for(lambda: env.q("slave", "SELECT count(*) FROM items WHERE id = 2") == [(1,)], timeout=20,
                 what="the second row applied (poll_interval is 600s: only the probe can have seen it)")


def test_the_probe_reads_no_table_until_something_commits(env):
    items_sync(env)
    with psycopg.connect(env.control, autocommit=True) as control:
        sync = catalog.source_name(control, "itemsync")
    with psycopg.connect(env.c["master"].dsn("test1"), autocommit=True) as src:
        caps = capture.captures(src)
        done = delta.consumer_position(src, sync, "test1_slave")[0]
        w = Watch(src, sync, "test1_slave", caps, done)
        assert (w.changed(), w.moved) == (False, True)     # the first look has no snapshot to compare with
        assert (w.changed(), w.moved) == (False, False)     # nothing committed: the delta stores are not read
        assert (w.changed(), w.moved) == (False, False)
        env.x("master", "CREATE TABLE other (id int); INSERT INTO other VALUES (1)")
        assert (w.changed(), w.moved) == (False, True)      # a commit elsewhere: looked, nothing of this sync
        env.x("master", "INSERT INTO items VALUES (1, 'captured')")
        assert (w.changed(), w.moved) == (True, True)


def test_a_swap_goes_idle_once_the_changes_it_found_are_applied(env):
    """After a swap run, the probe looks past the positions the run reached: the run's own commits (its positions,
    the rows it wrote) do not make it start one empty run after another until the next poll."""
    from test_swap import SRC, TGT, rows, swap_sync
    env.cli("set", "poll_interval=600")   # the full poll comes once at start: only the probe starts the runs
    swap_sync(env, "latest")
    env.start()
    env.x(SRC, "UPDATE t SET v = 'from source' WHERE id = 1")
    env.wait_for(lambda: rows(env, TGT)[1] == "from source", what="the source's write on the target")
    env.x(TGT, "UPDATE t SET v = 'from target' WHERE id = 2")
    env.wait_for(lambda: rows(env, SRC)[2] == "from target", what="the target's write on the source")
    env.cli("kick", "sw", "--wait", "30")   # every run started before the kick has ended
    with psycopg.connect(env.control, autocommit=True) as control:
        runs = control.execute("SELECT kick IS NOT NULL, inserts + updates + deletes FROM pgrepl.run "
                               "WHERE sync = 'sw' ORDER BY id").fetchall()
    assert [applied for kicked, applied in runs if not kicked] == [1, 1], runs   # one run per change, none empty


def test_runs_are_paced_while_changes_keep_flowing(env):
    """busy_interval: while commits keep coming, a run that applied changes is followed by the next no sooner than
    busy_interval after it began, so a stream of small commits arrives in a few runs (the probe alone would start
    one per commit), and every row still arrives. The bound on the runs only grows when the machine is slow."""
    pace = 1.0
    items_sync(env)
    env.cli("set", f"busy_interval={pace:g}")
    env.start()
    env.x("master", "INSERT INTO items VALUES (0, 'first')")
    env.wait_same("master", "slave", "items")
    with psycopg.connect(env.control, autocommit=True) as control:
        t0 = time.monotonic()
        before = control.execute("SELECT max(id) FROM pgrepl.run").fetchone()[0]
        with psycopg.connect(env.c["master"].dsn("test1"), autocommit=True) as src:
            for i in range(1, 41):   # one commit every ~50 ms: the probe (every 20 ms) sees each on its own
                src.execute("INSERT INTO items VALUES (%s, 'stream')", (i,))
                time.sleep(0.05)
        env.wait_same("master", "slave", "items")
        applied = control.execute("SELECT count(*) FROM pgrepl.run WHERE sync = 'itemsync' AND id > %s "
                                  "AND inserts + updates + deletes > 0", (before,)).fetchone()[0]
        window = time.monotonic() - t0
    # each applying round starts a second or more after the previous one; one round may have begun before t0
    assert 1 <= applied <= window / pace + 2, (applied, window)
    assert env.q("slave", "SELECT count(*) FROM items") == [(41,)]


def test_a_change_committed_during_a_long_applying_run_starts_the_next_at_once(env):
    """After a run that applied changes and lasted more than two probe steps, the worker looks for more at once
    instead of waiting a step: what committed during that run is applied before the probe's own interval (10 s
    here, no NOTIFY) has passed since the run's end."""
    items_sync(env)
    env.cli("set", "poll_interval=600", "probe_interval=10")
    env.x("master", "INSERT INTO items VALUES (1, 'first')")
    with psycopg.connect(env.c["slave"].dsn("test1")) as blocker:
        blocker.execute("LOCK TABLE items IN SHARE MODE")    # the start's run waits on the target...
        env.start()
        env.wait_for(lambda: env.q("slave", "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                            "AND application_name LIKE 'pgrepl%'") == [(1,)],
                     what="the first run waiting on the target")
        env.x("master", "INSERT INTO items VALUES (2, 'committed during the run')")   # ...and this commits meanwhile
        time.sleep(21)   # the run lasts more than two probe steps
    env.wait_for(lambda: env.q("slave", "SELECT count(*) FROM items") == [(2,)], timeout=8,
                 what="the change committed during the run applied (probe_interval 10 s, poll_interval 600 s)")
