"""swap delta columns, exactly once across a crash: a batch committed on the target whose source position never
moved (the runner killed in between) is not applied again, nor are its conflicts resolved again (docs/swap.md)."""

import os
import signal

import psycopg
from faults.faultlib import Supervisor, workers
from test_swap_delta import SRC, TGT, T, journal, row, swap_sync


def blocked_by(env, host: str, holder: psycopg.Connection) -> list[int]:
    """Backends of HOST waiting for a lock that the session HOLDER holds (asked in a session of its own: inside a
    transaction, pg_stat_activity does not change)."""
    return [r[0] for r in env.q(host, "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                                (holder.info.backend_pid,))]


POSITION = f"SELECT 1 FROM pgrepl.consumer WHERE target = 'test1_{TGT}' FOR UPDATE"


def crash_before_the_position_moves(env, written, hold: str = POSITION) -> None:
    """Starts the runner with the target's row 1 locked (the run waits for it, its intervals already opened), then
    takes the lock HOLD on the source (by default its position's row) and frees the row: the run writes what it
    writes and waits for HOLD. WRITTEN() says it wrote; then the runner is killed (`kill -9`, what waits with it),
    started again and kicked until the run is over."""
    env.cli("set", "lock_timeout=600")   # the runner waits for the test's locks as long as the test holds them
    with psycopg.connect(env.c[TGT].dsn("test1")) as tgt_lock, psycopg.connect(env.c[SRC].dsn("test1")) as pos_lock:
        tgt_lock.execute("SELECT 1 FROM t WHERE id = 1 FOR UPDATE")
        env.start()
        env.wait_for(lambda: blocked_by(env, TGT, tgt_lock), 30, "the run waiting for the row")
        assert pos_lock.execute(hold).rowcount == 1
        tgt_lock.rollback()
        env.wait_for(lambda: blocked_by(env, SRC, pos_lock), 30, "the run waiting for HOLD")
        assert written(), "the run wrote on the sides before its position's move"
        crash(env, SRC, pos_lock)
    restart(env)


def crash(env, host: str, holder: psycopg.Connection) -> None:
    """The runner dies (`kill -9`) while its session on HOST waits for HOLDER's lock; that session's statement
    dies with it (never sent, as when the runner's host goes down), then HOLDER lets go."""
    [waiting] = blocked_by(env, host, holder)
    for pid in [env.daemon_proc.pid, *workers(env, "sw")]:
        os.kill(pid, signal.SIGKILL)
    env.daemon_proc.wait()
    env.wait_for(lambda: not workers(env, "sw"), 30, "the worker gone")
    holder.execute("SELECT pg_terminate_backend(%s)", (waiting,))
    env.wait_for(lambda: not env.q(host, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (waiting,)), 30,
                 "the waiting backend gone")
    holder.rollback()


def restart(env) -> None:
    Supervisor(env).ensure()
    env.cli("kick", "sw", "--wait", "30")
    env.cli("kick", "sw", "--wait", "30")


def test_a_batch_committed_on_the_target_before_a_crash_is_not_added_twice(env):
    swap_sync(env)
    with psycopg.connect(env.c[SRC].dsn("test1"), autocommit=True) as conn:
        for _ in range(100):
            conn.execute("UPDATE t SET n = n + 1 WHERE id = 1")
    crash_before_the_position_moves(env, lambda: row(env, TGT)[0] == 200)
    assert row(env, SRC)[0] == row(env, TGT)[0] == 200, "100 increments of +1 on 100, each added once"


def test_a_conflict_resolved_on_both_sides_before_a_crash_is_not_added_twice(env):
    """Both sides incremented row 1 (a conflict) and the source also row 2 (a clean row of the same batch): the
    conflict is resolved on both sides, then the runner dies before the source's position moves."""
    swap_sync(env)
    env.x(SRC, "UPDATE t SET n = n + 3 WHERE id = 1; UPDATE t SET n = n + 4 WHERE id = 2")
    env.x(TGT, "UPDATE t SET n = n + 5 WHERE id = 1")
    crash_before_the_position_moves(env, lambda: row(env, SRC)[0] == row(env, TGT)[0] == 108)
    assert [row(env, h)[0] for h in (SRC, TGT)] == [108, 108], "100 + 3 + 5 on both sides, each added once"
    assert [row(env, h, 2)[0] for h in (SRC, TGT)] == [4, 4], "the clean row: 0 + 4, added once"
    assert [(c["key"], c["rule"]) for c in journal(env)] == [({"id": 1}, "delta")], "the conflict journaled once"


def test_a_conflict_resolved_on_one_side_before_a_crash_is_finished_on_the_other_only(env):
    """The crash comes between the two sides' commits of the resolution: the target's is done, the source's waits
    (a deferred trigger of the test's on the source's table waits at commit for a lock the test holds)."""
    swap_sync(env)
    env.x(SRC, "UPDATE t SET n = n + 3 WHERE id = 1; UPDATE t SET n = n + 4 WHERE id = 2")
    env.x(TGT, "UPDATE t SET n = n + 5 WHERE id = 1")
    env.x(SRC, "CREATE FUNCTION at_commit() RETURNS trigger LANGUAGE plpgsql AS "
               "$$BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NULL; END$$;"
               "CREATE CONSTRAINT TRIGGER at_commit AFTER UPDATE ON t DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
               "EXECUTE FUNCTION at_commit(); ALTER TABLE t ENABLE ALWAYS TRIGGER at_commit")
    crash_before_the_position_moves(env, lambda: (row(env, SRC)[0], row(env, TGT)[0]) == (103, 108),
                                    "SELECT pg_advisory_xact_lock(4242)")
    assert [row(env, h)[0] for h in (SRC, TGT)] == [108, 108], "100 + 3 + 5 on both sides, each added once"
    assert [row(env, h, 2)[0] for h in (SRC, TGT)] == [4, 4], "the clean row: 0 + 4, added once"
    assert [(c["key"], c["rule"]) for c in journal(env)] == [({"id": 1}, "delta")], "the conflict journaled once"


def test_a_batch_whose_held_rows_wait_is_not_added_twice_after_a_crash(env):
    """Row 1 held by an application on the target: the batch's first target transaction applies row 2 and commits,
    the held row waits in a transaction of its own; the runner dies there."""
    swap_sync(env)
    env.x(SRC, "UPDATE t SET n = n + 3 WHERE id = 1; UPDATE t SET n = n + 4 WHERE id = 2")
    env.cli("set", "lock_timeout=600")
    with psycopg.connect(env.c[TGT].dsn("test1")) as tgt_lock:
        tgt_lock.execute("SELECT 1 FROM t WHERE id = 1 FOR UPDATE")
        env.start()
        env.wait_for(lambda: blocked_by(env, TGT, tgt_lock), 30, "the held row's transaction waiting")
        assert row(env, TGT, 2)[0] == 4, "the batch's first target transaction committed"
        crash(env, TGT, tgt_lock)
    restart(env)
    assert [row(env, h)[0] for h in (SRC, TGT)] == [103, 103], "the held row: 100 + 3"
    assert [row(env, h, 2)[0] for h in (SRC, TGT)] == [4, 4], "the row of the first transaction: 0 + 4, added once"


def test_rows_held_on_two_tables_are_not_added_twice_after_a_crash(env):
    """Rows 1 of two tables held by an application on the target: the batch applies rows 2, the held rows are
    tried together without waiting (still held), then table by table, waiting; the runner dies waiting for the
    first one. After a restart, every increment is added once."""
    swap_sync(env, "latest", T + ";" + T.replace("TABLE t", "TABLE u").replace("INTO t", "INTO u"))
    env.x(SRC, "UPDATE t SET n = n + 3 WHERE id = 1; UPDATE t SET n = n + 4 WHERE id = 2; "
               "UPDATE u SET n = n + 5 WHERE id = 1; UPDATE u SET n = n + 6 WHERE id = 2")
    env.cli("set", "lock_timeout=600")

    def n(host: str, table: str, key: int) -> int:
        return env.q(host, f"SELECT n FROM {table} WHERE id = %s", (key,))[0][0]

    with psycopg.connect(env.c[TGT].dsn("test1")) as hold:
        hold.execute("SELECT 1 FROM t WHERE id = 1 FOR UPDATE")
        hold.execute("SELECT 1 FROM u WHERE id = 1 FOR UPDATE")
        env.start()
        env.wait_for(lambda: blocked_by(env, TGT, hold), 30, "a held row's transaction waiting")
        assert (n(TGT, "t", 2), n(TGT, "u", 2)) == (4, 6), "the batch's first target transaction committed"
        crash(env, TGT, hold)
    restart(env)
    assert [(n(h, "t", 1), n(h, "u", 1)) for h in (SRC, TGT)] == [(103, 105)] * 2, "the held rows, added once"
    assert [(n(h, "t", 2), n(h, "u", 2)) for h in (SRC, TGT)] == [(4, 6)] * 2, "the first transaction's, once"


def test_a_run_left_unfinished_by_an_older_runner_resumes_under_its_identity(env):
    """Source schema 5 named a run by both sides' intervals (done and pending); a run that such a runner left
    unfinished, its conflict resolved on both sides, is resumed by this one without adding anything twice."""
    swap_sync(env)
    env.x(SRC, "UPDATE t SET n = n + 3 WHERE id = 1; UPDATE t SET n = n + 4 WHERE id = 2")
    env.x(TGT, "UPDATE t SET n = n + 5 WHERE id = 1")

    def named_as_before() -> bool:
        if row(env, SRC)[0] != 108 or row(env, TGT)[0] != 108:
            return False
        ends = [env.q(h, "SELECT done::text, pending::text FROM pgrepl.consumer WHERE target = %s",
                      (f"test1_{other}",))[0] for h, other in ((SRC, TGT), (TGT, SRC))]
        for host in (SRC, TGT):
            env.x(host, "UPDATE pgrepl.resolved SET run = md5(%s)", (" ".join(ends[0] + ends[1]),))
        return True

    crash_before_the_position_moves(env, named_as_before)
    assert [row(env, h)[0] for h in (SRC, TGT)] == [108, 108], "100 + 3 + 5 on both sides, each added once"
    assert [row(env, h, 2)[0] for h in (SRC, TGT)] == [4, 4], "the clean row: 0 + 4, added once"
    assert [(c["key"], c["rule"]) for c in journal(env)] == [({"id": 1}, "delta")], "the conflict journaled once"
