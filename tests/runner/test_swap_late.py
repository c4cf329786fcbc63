"""swap: the second side's interval ends as its pass starts, not as the run does (docs/swap.md): what the target
side commits during the first pass reaches the source side in the same run, and is never taken for a conflict with
what the first pass brought, nor skipped for a conflict the first pass resolved."""

import psycopg
from test_swap import SRC, TGT, conflicts, rows, swap_sync
from test_swap_once import blocked_by, crash, restart

# the target side's consumer (the target side's changes for the source side): its interval closed ends the run
RUN_OVER = f"SELECT count(*) FROM pgrepl.consumer WHERE target = 'test1_{SRC}' AND pending IS NULL"


def during_the_first_pass(env, act) -> None:
    """One run only (the start's poll; no probe, no kick), held in its first pass: row 2 is locked on the target
    side, so the pass applies the rest and waits for it. ACT() runs then; row 2 is let go and the run ends."""
    env.cli("set", "poll_interval=600", "probe_interval=0", "lock_timeout=600")
    with psycopg.connect(env.c[TGT].dsn("test1")) as holder:
        holder.execute("SELECT 1 FROM t WHERE id = 2 FOR UPDATE")
        env.start()
        env.wait_for(lambda: blocked_by(env, TGT, holder), 30, "the first pass waiting for row 2")
        act()
    env.wait_for(lambda: env.q(TGT, RUN_OVER) == [(1,)] and rows(env, SRC)[2] == "source 2", 30, "the run's end")


def test_a_row_the_first_pass_brought_then_changed_on_the_target_side_comes_back_in_the_same_run(env):
    """Rule source: had the first pass's row counted as a change since the last run on the source side, the later
    write on the target side would be a conflict that the source side wins, and it would be lost."""
    swap_sync(env, "source")
    env.x(SRC, "UPDATE t SET v = 'source 1' WHERE id = 1; UPDATE t SET v = 'source 2' WHERE id = 2")

    def target_writes_after_the_first_pass() -> None:
        assert rows(env, TGT)[1] == "source 1", "the first pass applied row 1 before waiting for row 2"
        env.x(TGT, "UPDATE t SET v = 'target later' WHERE id = 1")

    during_the_first_pass(env, target_writes_after_the_first_pass)
    assert rows(env, SRC) == rows(env, TGT) == {1: "target later", 2: "source 2", 3: "three", 4: "four"}
    assert conflicts(env) == {}


def test_a_key_resolved_in_the_first_pass_then_changed_on_the_target_side_comes_back_in_the_same_run(env):
    """Rule skip: row 1 changed on both sides is a conflict of the first pass, each side keeping its row; the target
    side's later write of it is news for the source side, while its earlier one, settled by the rule, is not."""
    swap_sync(env, "skip")
    env.cli("set", "batch_size=1")   # row 1's transaction, then row 2's: the conflict is resolved before the wait
    env.x(TGT, "UPDATE t SET v = 'target 1' WHERE id = 1")
    env.x(SRC, "UPDATE t SET v = 'source 1' WHERE id = 1")
    env.x(SRC, "UPDATE t SET v = 'source 2' WHERE id = 2")

    def target_writes_after_the_resolution() -> None:
        assert conflicts(env)[1]["winner"] == "none", "the first pass resolved row 1 before waiting for row 2"
        assert (rows(env, SRC)[1], rows(env, TGT)[1]) == ("source 1", "target 1")
        env.x(TGT, "UPDATE t SET v = 'target later' WHERE id = 1")

    during_the_first_pass(env, target_writes_after_the_resolution)
    assert rows(env, SRC) == rows(env, TGT) == {1: "target later", 2: "source 2", 3: "three", 4: "four"}
    assert list(conflicts(env)) == [1], "the conflict journaled once"


def test_a_key_resolved_in_the_first_pass_stays_resolved_in_the_second(env):
    """Rule skip, no later write: the target side's change of row 1 was settled by the rule (each side keeps its
    row), not applied to the source side by the second pass, whose interval ends later."""
    swap_sync(env, "skip")
    env.cli("set", "batch_size=1")
    env.x(TGT, "UPDATE t SET v = 'target 1' WHERE id = 1")
    env.x(SRC, "UPDATE t SET v = 'source 1' WHERE id = 1")
    env.x(SRC, "UPDATE t SET v = 'source 2' WHERE id = 2")

    def target_writes_another_row() -> None:
        assert conflicts(env)[1]["winner"] == "none"
        env.x(TGT, "UPDATE t SET v = 'target 3' WHERE id = 3")

    during_the_first_pass(env, target_writes_another_row)
    assert (rows(env, SRC)[1], rows(env, TGT)[1]) == ("source 1", "target 1")
    assert rows(env, SRC)[3] == rows(env, TGT)[3] == "target 3", "the later write of another row came in this run"
    assert list(conflicts(env)) == [1]


def test_a_key_resolved_in_the_first_pass_stays_resolved_after_a_crash_in_the_second(env):
    """Rule skip: row 1 is resolved in the first pass; the second pass, on the target side's later-ending interval,
    dies (`kill -9`) inside its batch on the source side (its insert of row 30 waits for an application's). After a
    restart, the run resumes under the same identity and still knows row 1 as resolved: the source side keeps its
    row (had the identity followed the interval's new end, the keys resolved before the crash would be forgotten
    and row 1 copied over)."""
    swap_sync(env, "skip")
    env.cli("set", "poll_interval=600", "probe_interval=0", "lock_timeout=600")
    env.x(TGT, "UPDATE t SET v = 'target 1' WHERE id = 1; INSERT INTO t VALUES (30, 'target 30')")
    env.x(SRC, "UPDATE t SET v = 'source 1' WHERE id = 1")
    with psycopg.connect(env.c[SRC].dsn("test1")) as application:
        application.execute("INSERT INTO t VALUES (30, 'source 30, rolled back')")
        env.start()
        env.wait_for(lambda: blocked_by(env, SRC, application), 30, "the second pass waiting for row 30")
        assert conflicts(env)[1]["winner"] == "none", "the first pass resolved row 1"
        crash(env, SRC, application)
    restart(env)
    assert (rows(env, SRC)[1], rows(env, TGT)[1]) == ("source 1", "target 1")
    assert rows(env, SRC)[30] == rows(env, TGT)[30] == "target 30"
    assert list(conflicts(env)) == [1], "the conflict journaled once"
