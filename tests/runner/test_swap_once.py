"""swap delta columns, exactly once across a crash: a batch committed on the target whose source position never
moved (the runner killed in between) is not applied again (docs/swap.md, Limits)."""

import os
import signal

import psycopg
from faults.faultlib import Supervisor, workers
from test_swap_delta import SRC, TGT, row, swap_sync


def blocked_by(env, host: str, holder: psycopg.Connection) -> list[int]:
    """Backends of HOST waiting for a lock that the session HOLDER holds (asked in a session of its own: inside a
    transaction, pg_stat_activity does not change)."""
    return [r[0] for r in env.q(host, "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                                (holder.info.backend_pid,))]


def test_a_batch_committed_on_the_target_before_a_crash_is_not_added_twice(env):
    swap_sync(env)
    env.cli("set", "lock_timeout=600")   # the runner waits for the test's locks as long as the test holds them
    with psycopg.connect(env.c[SRC].dsn("test1"), autocommit=True) as conn:
        for _ in range(100):
            conn.execute("UPDATE t SET n = n + 1 WHERE id = 1")
    with psycopg.connect(env.c[TGT].dsn("test1")) as tgt_lock, psycopg.connect(env.c[SRC].dsn("test1")) as pos_lock:
        # the target row locked: the run's batch waits for it, its interval already opened on the source
        tgt_lock.execute("SELECT 1 FROM t WHERE id = 1 FOR UPDATE")
        env.start()
        env.wait_for(lambda: blocked_by(env, TGT, tgt_lock), 30, "the batch waiting for the row")
        # the source's position locked, the row freed: the batch commits on the target, then the position waits
        assert pos_lock.execute("SELECT 1 FROM pgrepl.consumer WHERE target = %s FOR UPDATE",
                                (f"test1_{TGT}",)).rowcount == 1
        tgt_lock.rollback()
        env.wait_for(lambda: blocked_by(env, SRC, pos_lock), 30, "the position's move waiting")
        assert row(env, TGT)[0] == 200, "the batch is committed on the target"
        [waiting] = blocked_by(env, SRC, pos_lock)
        # the crash: the runner dies, and its position's move with it (never sent, as when the host goes down)
        for pid in [env.daemon_proc.pid, *workers(env, "sw")]:
            os.kill(pid, signal.SIGKILL)
        env.daemon_proc.wait()
        env.wait_for(lambda: not workers(env, "sw"), 30, "the worker gone")
        pos_lock.execute("SELECT pg_terminate_backend(%s)", (waiting,))
        env.wait_for(lambda: not env.q(SRC, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (waiting,)), 30,
                     "the move's backend gone")
        pos_lock.rollback()
    Supervisor(env).ensure()   # started again
    env.cli("kick", "sw", "--wait", "30")
    env.cli("kick", "sw", "--wait", "30")
    assert row(env, SRC)[0] == row(env, TGT)[0] == 200, "100 increments of +1 on 100, each added once"
