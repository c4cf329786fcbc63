"""swap applies the rows of plain tables in place (UPDATE, not DELETE + COPY): an application's UPDATE queued
behind the run's row lock updates the replicated row instead of finding it deleted; values of other unique
constraints swapped between rows still apply; identity columns GENERATED ALWAYS outside the key."""

import json
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

SRC, TGT = "master2", "master"
HOLD = 4242   # advisory lock key: a helper session holds it to stop the run's apply on TGT mid-transaction


def swap_sync(e, ddl: str, rule: str = "latest") -> None:
    for host in (SRC, TGT):
        e.x(host, ddl)
    e.add_databases(SRC, TGT)
    e.cli("add", "all", "tables", f"db=test1_{SRC}", f"standard_conflict={rule}", "herd=gamma")
    e.cli("add", "sync", "sw", "source=gamma", f"targetdb=test1_{TGT}", "type=swap")


@pytest.mark.parametrize("conflict", [False, True], ids=["applied", "conflict-resolved"])
def test_an_update_waiting_on_the_runs_row_lock_is_not_lost(env, conflict):
    """conflict: TGT changed row 1 too, the source wins: the row is written by the conflict's resolution."""
    swap_sync(env, "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); "
                   "INSERT INTO t SELECT g, 0 FROM generate_series(1, 4) g", "source")
    if conflict:
        env.x(TGT, "UPDATE t SET v = 50 WHERE id = 1")
    # On TGT, a statement trigger that fires for the runner only (replica role) stops its first write on t
    # while HOLD is held: the run then holds row 1's lock (taken before it writes) with its transaction open.
    env.x(TGT, "CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
               "IF current_setting('session_replication_role') = 'replica' THEN "
               f"PERFORM pg_advisory_xact_lock({HOLD}); END IF; RETURN NULL; END$$; "
               "CREATE TRIGGER hold BEFORE INSERT OR UPDATE OR DELETE ON t "
               "FOR EACH STATEMENT EXECUTE FUNCTION hold(); ALTER TABLE t ENABLE ALWAYS TRIGGER hold")
    env.x(SRC, "UPDATE t SET v = 100 WHERE id = 1")
    dsn = env.c[TGT].dsn("test1")
    with psycopg.connect(dsn, autocommit=True) as helper, psycopg.connect(dsn, autocommit=True) as app, \
            ThreadPoolExecutor(1) as pool:
        helper.execute("SELECT pg_advisory_lock(%s)", (HOLD,))
        app_pid = app.execute("SELECT pg_backend_pid()").fetchone()[0]
        env.start()
        env.wait_for(lambda: env.q(TGT, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                        "AND objid = %s AND NOT granted", (HOLD,)) == [(1,)],
                     what="the run's apply on TGT waiting, row 1 locked")
        update = pool.submit(lambda: app.execute("UPDATE t SET v = v + 1 WHERE id = 1").rowcount)
        env.wait_for(lambda: env.q(TGT, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                   (app_pid,)) == [("Lock",)], what="the application's UPDATE waiting on row 1")
        helper.execute("SELECT pg_advisory_unlock(%s)", (HOLD,))
        assert update.result(60) == 1, "the application's UPDATE found no row: its write was lost"
    env.cli("kick", "sw", "--wait", "30")   # the application's change goes back to SRC
    for host in (SRC, TGT):
        assert env.q(host, "SELECT id, v FROM t ORDER BY id") == [(1, 101), (2, 0), (3, 0), (4, 0)], host
    if conflict:   # the row was written by the resolution, not by the batch
        _, text = env.cli("list", "conflicts", "sw", "--json")
        assert [(c["key"], c["winner"]) for c in json.loads(text)] == [({"id": 1}, "source")]


def test_unique_values_swapped_between_rows_in_one_batch(env):
    """Updated in place row by row, the first row would take a value the second still holds: the table's batch
    falls back to DELETE + INSERT, as one transaction."""
    swap_sync(env, "CREATE TABLE u (id int PRIMARY KEY, code text UNIQUE, v text); "
                   "INSERT INTO u VALUES (1, 'a', 'x'), (2, 'b', 'y'), (3, 'c', 'z')")
    env.x(SRC, "BEGIN; UPDATE u SET code = 'tmp' WHERE id = 1; UPDATE u SET code = 'a' WHERE id = 2; "
               "UPDATE u SET code = 'b' WHERE id = 1; UPDATE u SET v = 'w' WHERE id = 3; COMMIT")
    env.x(TGT, "INSERT INTO u VALUES (4, 'd', 'from target')")
    env.start()
    env.cli("kick", "sw", "--wait", "30")
    for host in (SRC, TGT):
        assert env.q(host, "SELECT id, code, v FROM u ORDER BY id") == [
            (1, "b", "x"), (2, "a", "y"), (3, "c", "w"), (4, "d", "from target")], host
    assert env.c["master"].query("pgrepl", "SELECT count(*) FROM pgrepl.run WHERE state = 'bad'") == [(0,)]


def test_identity_generated_always_outside_the_key(env):
    """The UPDATE cannot set such a column: rows whose value differs (`SET n = DEFAULT`) are replaced,
    new rows inserted with OVERRIDING SYSTEM VALUE, the others updated without it."""
    swap_sync(env, "CREATE TABLE g (k text PRIMARY KEY, n int GENERATED ALWAYS AS IDENTITY, v text); "
                   "INSERT INTO g (k, v) VALUES ('a', 'one'), ('b', 'two')")
    env.x(SRC, "ALTER TABLE g ALTER n RESTART WITH 100")
    env.x(SRC, "UPDATE g SET v = 'changed' WHERE k = 'a'; UPDATE g SET n = DEFAULT WHERE k = 'b'; "
               "INSERT INTO g (k, v) VALUES ('c', 'new')")
    env.start()
    env.cli("kick", "sw", "--wait", "30")
    for host in (SRC, TGT):
        assert env.q(host, "SELECT k, n, v FROM g ORDER BY k") == [
            ("a", 1, "changed"), ("b", 100, "two"), ("c", 101, "new")], host


def test_a_table_staged_twice_in_one_transaction_writes_each_time_only_its_own_rows(env):
    """The stage of a table's rows keeps one name per table and columns (its statements keep one text, composed
    once and prepared): a second write of the table in the same transaction finds the stage already there, and
    must start from an empty one, not fail nor write the first call's rows again."""
    from pgrepl import capture, inplace
    from pgrepl.capture import Capture
    from pgrepl.delta import Batch

    env.x(TGT, "CREATE TABLE s (id int PRIMARY KEY, v text); INSERT INTO s VALUES (1, 'one'), (2, 'two')")
    with psycopg.connect(env.c[TGT].dsn("test1"), autocommit=True) as conn:
        t = capture.match(capture.describe(conn), "public.s")[0]
        cols = ["id", "v"]
        with conn.transaction():
            first = inplace.write_images(conn, Batch.of(Capture(0, t, ""), [("1",)], [True]), cols,
                                         ['{"id": 1, "v": "first"}'], 100)
            conn.execute("UPDATE s SET v = 'changed after the first write' WHERE id = 1")
            second = inplace.write_images(conn, Batch.of(Capture(0, t, ""), [("2",), ("3",)], [False, True]), cols,
                                          ['{"id": 3, "v": "three"}'], 100)
    assert (first.updates, second.deletes, second.inserts, second.updates) == (1, 1, 1, 0)
    assert env.q(TGT, "SELECT id, v FROM s ORDER BY id") == [(1, "changed after the first write"), (3, "three")]
