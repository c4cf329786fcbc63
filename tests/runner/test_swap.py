"""swap (master/master): every conflict rule on every pair of changes, abort, truncate, sequences, convergence
under pgbench on both sides, and the founding document's three hosts with makedelta."""

import json
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from test_pushdelta import WIDE, WIDE_TABLES, wide_changes

# master2 is the sync's source side (the herd's database), master its target, as in the founding document.
SRC, TGT = "master2", "master"
T = "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four')"


def swap_sync(e, rule: str, *extra: str) -> None:
    for host in (SRC, TGT):
        e.x(host, T)
    e.add_databases(SRC, TGT)
    e.cli("add", "all", "tables", f"db=test1_{SRC}", f"standard_conflict={rule}", "herd=gamma")
    e.cli("add", "sync", "sw", "source=gamma", f"targetdb=test1_{TGT}", "type=swap", *extra)


def rows(e, host: str) -> dict:
    return dict(e.q(host, "SELECT id, v FROM t ORDER BY id"))


def conflicts(e) -> dict:
    _, text = e.cli("list", "conflicts", "sw", "--json")
    return {c["key"]["id"]: c for c in json.loads(text)}


def crafted_changes(e) -> None:
    """Four conflicts, one per pair of changes, and one change on each side alone. The commit order makes
    `latest` pick the source for keys 10 and 1, the target for keys 2 and 3."""
    e.x(TGT, "INSERT INTO t VALUES (10, 'ins-target')")                # insert / insert
    e.x(SRC, "INSERT INTO t VALUES (10, 'ins-source')")
    e.x(TGT, "UPDATE t SET v = 'upd-target' WHERE id = 1")             # update / update
    e.x(SRC, "UPDATE t SET v = 'upd-source' WHERE id = 1")
    e.x(SRC, "UPDATE t SET v = 'upd-source' WHERE id = 2")             # update (source) / delete (target)
    e.x(TGT, "DELETE FROM t WHERE id = 2")
    e.x(SRC, "DELETE FROM t WHERE id = 3")                             # delete (source) / update (target)
    e.x(TGT, "UPDATE t SET v = 'upd-target' WHERE id = 3")
    e.x(SRC, "INSERT INTO t VALUES (20, 'only-source')")               # no conflict
    e.x(TGT, "UPDATE t SET v = 'only-target' WHERE id = 4")


ALONE = {4: "only-target", 20: "only-source"}
SOURCE = {1: "upd-source", 2: "upd-source", 10: "ins-source"}          # the source side's rows (3 deleted)
TARGET = {1: "upd-target", 3: "upd-target", 10: "ins-target"}          # the target side's rows (2 deleted)
EXPECTED = {   # rule -> (rows on the source side, rows on the target side, winners of keys 10, 1, 2, 3)
    "source": ({**SOURCE, **ALONE}, {**SOURCE, **ALONE}, ["source"] * 4),
    "target": ({**TARGET, **ALONE}, {**TARGET, **ALONE}, ["target"] * 4),
    "latest": ({1: "upd-source", 3: "upd-target", 10: "ins-source", **ALONE},
               {1: "upd-source", 3: "upd-target", 10: "ins-source", **ALONE}, ["source", "source", "target", "target"]),
    "skip": ({**SOURCE, **ALONE}, {**TARGET, **ALONE}, ["none"] * 4),
}


@pytest.mark.parametrize("rule", list(EXPECTED))
def test_conflict_rules_row_by_row(env, rule):
    swap_sync(env, rule)
    crafted_changes(env)
    env.start()
    env.cli("kick", "sw", "--wait", "30")
    on_source, on_target, winners = EXPECTED[rule]
    assert rows(env, SRC) == on_source
    assert rows(env, TGT) == on_target
    journal = conflicts(env)
    assert sorted(journal) == [1, 2, 3, 10]
    assert [journal[k]["winner"] for k in (10, 1, 2, 3)] == winners
    assert all(c["rule"] == rule and c["source_db"] == "test1_master2" and c["target_db"] == "test1_master"
               for c in journal.values())
    assert journal[2]["target_row"] is None and journal[2]["source_row"]["v"] == "upd-source"   # both images
    assert journal[3]["source_row"] is None and journal[3]["target_row"]["v"] == "upd-target"
    # nothing ping-pongs: another run finds no change and no new conflict; later writes cross both ways
    env.cli("kick", "sw", "--wait", "30")
    assert len(conflicts(env)) == 4
    env.x(SRC, "UPDATE t SET v = 'later-source' WHERE id = 20")
    env.x(TGT, "UPDATE t SET v = 'later-target' WHERE id = 4")
    env.cli("kick", "sw", "--wait", "30")
    for host in (SRC, TGT):
        assert rows(env, host)[20] == "later-source" and rows(env, host)[4] == "later-target"
    assert len(conflicts(env)) == 4
    code, text = env.cli("list", "conflicts")
    assert text.count("Conflict: sw public.t key") == 4


def test_abort_leaves_both_sides_as_they_were(env):
    swap_sync(env, "abort")
    env.x(SRC, "UPDATE t SET v = 'upd-source' WHERE id = 1")
    env.x(TGT, "UPDATE t SET v = 'upd-target' WHERE id = 1")
    env.x(SRC, "INSERT INTO t VALUES (20, 'only-source')")
    env.x(TGT, "UPDATE t SET v = 'only-target' WHERE id = 4")
    before = rows(env, SRC), rows(env, TGT)
    env.start()
    code, text = env.cli("kick", "sw", "--wait", "30", expect=3)
    assert (rows(env, SRC), rows(env, TGT)) == before
    _, status = env.cli("status", "sw")
    assert "standard_conflict abort" in status
    env.cli("kick", "sw", "--wait", "30", expect=3)   # retried, still refused, journaled once
    journal = conflicts(env)
    assert list(journal) == [1] and journal[1]["winner"] == "abort"
    assert journal[1]["source_row"]["v"] == "upd-source" and journal[1]["target_row"]["v"] == "upd-target"
    # a person decides: the source wins this table from now on
    env.cli("add", "table", "t", f"db=test1_{SRC}", "standard_conflict=source")
    env.cli("kick", "sw", "--wait", "30")
    assert rows(env, SRC) == rows(env, TGT) == {1: "upd-source", 2: "two", 3: "three", 4: "only-target",
                                                20: "only-source"}


def test_the_most_recent_truncate_wins(env):
    swap_sync(env, "source")
    env.x(TGT, "INSERT INTO t VALUES (30, 'target before its truncate')")
    env.x(SRC, "TRUNCATE t")
    env.x(SRC, "INSERT INTO t VALUES (40, 'source after its truncate')")
    env.x(TGT, "TRUNCATE t")
    env.x(TGT, "INSERT INTO t VALUES (50, 'target after its truncate')")
    env.start()
    env.cli("kick", "sw", "--wait", "30")
    assert rows(env, SRC) == rows(env, TGT) == {50: "target after its truncate"}


def test_sequences_highest_wins(env):
    swap_sync(env, "source")
    for host in (SRC, TGT):
        env.x(host, "CREATE SEQUENCE counter")
    env.cli("add", "sequence", "counter", f"db=test1_{SRC}", "herd=gamma")
    env.x(TGT, "SELECT nextval('counter') FROM generate_series(1, 70)")
    env.x(SRC, "SELECT nextval('counter') FROM generate_series(1, 5)")
    env.x(SRC, "UPDATE t SET v = 'wake up' WHERE id = 1")
    env.start()
    env.cli("kick", "sw", "--wait", "30")
    for host in (SRC, TGT):
        assert env.q(host, "SELECT last_value FROM counter") == [(70,)]


def test_racing_write_on_the_target_is_a_conflict_not_overwritten(env):
    """A row the run is about to overwrite on one side, changed there meanwhile: journaled and resolved by the
    rule, never overwritten blindly (here `target`: the racing write stays, and reaches the source)."""
    swap_sync(env, "target")
    env.x(SRC, "UPDATE t SET v = 'from source' WHERE id = 1")
    # a writer on the target holds row 1 when the run comes: the run waits for it, then finds its change
    with psycopg.connect(env.c[TGT].dsn("test1")) as holder:
        holder.execute("UPDATE t SET v = 'racing target' WHERE id = 1")
        env.start()
        env.cli("kick", "sw", "--wait", "2", expect=4)
        holder.commit()
    env.cli("kick", "sw", "--wait", "30")
    assert rows(env, SRC)[1] == rows(env, TGT)[1] == "racing target"
    assert conflicts(env)[1]["winner"] == "target"


def checksums(e, host: str) -> dict:
    return {t: e.checksum(host, t) for t in ("pgbench_accounts", "pgbench_branches", "pgbench_tellers")}


def test_converges_under_pgbench_on_both_masters(pgbench_env):
    e = pgbench_env
    e.add_databases(SRC, TGT)
    # the founding document's commands
    e.cli("add", "all", "table", "-T", "pgbench_history", f"db=test1_{SRC}", "standard_conflict=latest", "herd=gamma")
    e.cli("add", "sync", "benchswapgamma", "source=gamma", f"targetdb=test1_{TGT}", "type=swap")
    e.start()
    with ThreadPoolExecutor(2) as pool:   # TPC-B on both masters at once; pgbench fails on any failed transaction
        outputs = list(pool.map(lambda h: e.c[h].pgbench("test1", "-n", "-c", "2", "-T", "60", timeout=300),
                                (SRC, TGT)))
    assert all("number of transactions actually processed" in out for out in outputs), outputs
    e.cli("kick", "benchswapgamma", "--wait", "300")
    assert checksums(e, SRC) == checksums(e, TGT)
    runs = e.c["master"].query("pgrepl", "SELECT state, count(*) FROM pgrepl.run WHERE sync = 'benchswapgamma' "
                                          "GROUP BY state")
    assert dict(runs).get("bad", 0) == 0, e.daemon_log()[-3000:]
    n = e.c["master"].query("pgrepl", "SELECT count(*), count(*) FILTER (WHERE tablename = 'public.pgbench_branches') "
                                       "FROM pgrepl.conflict")[0]
    assert n[1] > 0, "pgbench updates the single branch on both sides: conflicts are certain"
    # every conflict was resolved by its rule, with both images
    assert e.c["master"].query("pgrepl", "SELECT count(*) FROM pgrepl.conflict WHERE rule <> 'latest' "
                                         "OR winner NOT IN ('source', 'target') OR source_row IS NULL "
                                         "OR target_row IS NULL") == [(0,)]


def test_three_hosts_with_makedelta_a_write_on_master2_reaches_slave(pgbench_env):
    e = pgbench_env
    e.add_databases("master", "slave", "master2")
    e.cli("add", "all", "tables", "-T", "pgbench_history", "db=test1_master", "--herd=alpha")
    e.cli("add", "all", "tables", "-t", "pgbench_history", "db=test1_master", "--herd=beta")
    e.cli("add", "all", "table", "-T", "pgbench_history", "db=test1_master2", "standard_conflict=source", "herd=gamma")
    e.cli("add", "dbgroup", "test1_history", "test1_slave", "test1_master2")
    e.cli("add", "sync", "benchdeltaalpha", "source=alpha", "targetdb=test1_slave", "type=pushdelta")
    e.cli("add", "sync", "benchcopybeta", "source=beta", "targetgroup=test1_history", "type=fullcopy")
    e.cli("add", "sync", "benchswapgamma", "source=gamma", "targetdb=test1_master", "type=swap", "makedelta=yes")
    e.start()
    e.x("master2", "UPDATE pgbench_accounts SET filler = 'written on master2' WHERE aid = 7")
    e.x("master", "UPDATE pgbench_accounts SET filler = 'written on master' WHERE aid = 8")
    e.cli("kick", "benchswapgamma", "--wait", "30")
    e.wait_for(lambda: e.q("slave", "SELECT filler FROM pgbench_accounts WHERE aid IN (7, 8) ORDER BY aid")
               == [("written on master2".ljust(84),), ("written on master".ljust(84),)], what="both writes on slave")
    e.cli("kick", "benchcopybeta", "--wait", "30")
    e.c["master"].pgbench("test1", "-n", "-t", "20")
    e.c["master2"].pgbench("test1", "-n", "-t", "20")
    e.cli("kick", "benchswapgamma", "--wait", "30")
    e.cli("kick", "benchcopybeta", "--wait", "30")
    for t in ("pgbench_accounts", "pgbench_branches", "pgbench_tellers"):
        e.wait_same("master", "slave", t)
        assert e.checksum("master", t) == e.checksum("master2", t)
    for host in ("slave", "master2"):
        assert e.checksum(host, "pgbench_history") == e.checksum("master", "pgbench_history")


def test_without_makedelta_master2_writes_stop_at_master(pgbench_env):
    """The founding document's warning, kept as the default: cascading is opt-in."""
    e = pgbench_env
    e.add_databases("master", "slave", "master2")
    e.cli("add", "all", "tables", "-T", "pgbench_history", "db=test1_master", "--herd=alpha")
    e.cli("add", "all", "table", "-T", "pgbench_history", "db=test1_master2", "standard_conflict=source", "herd=gamma")
    e.cli("add", "sync", "benchdeltaalpha", "source=alpha", "targetdb=test1_slave", "type=pushdelta")
    e.cli("add", "sync", "benchswapgamma", "source=gamma", "targetdb=test1_master", "type=swap")
    e.start()
    e.x("master2", "UPDATE pgbench_accounts SET filler = 'written on master2' WHERE aid = 7")
    e.cli("kick", "benchswapgamma", "--wait", "30")
    assert e.q("master", "SELECT trim(filler) FROM pgbench_accounts WHERE aid = 7") == [("written on master2",)]
    e.cli("kick", "benchdeltaalpha", "--wait", "30")
    assert e.q("slave", "SELECT trim(filler) FROM pgbench_accounts WHERE aid = 7") == [("",)]


def test_notify_wakes_the_swap_from_either_side(env):
    """capture_notify=on and a long poll interval: a write on either side is applied at once."""
    env.cli("set", "capture_notify=on", "poll_interval=60")
    swap_sync(env, "source")
    env.start()
    env.cli("kick", "sw", "--wait", "30")   # the worker is up and listening on both sides
    env.x(TGT, "UPDATE t SET v = 'from target' WHERE id = 1")
    env.wait_for(lambda: rows(env, SRC)[1] == "from target", timeout=10, what="target's write on the source")
    env.x(SRC, "UPDATE t SET v = 'from source' WHERE id = 2")
    env.wait_for(lambda: rows(env, TGT)[2] == "from source", timeout=10, what="source's write on the target")


def test_a_column_named_like_the_row_alias_keeps_the_whole_row_image(env):
    # the swap reads row images with an alias; a column of that name must not stand in for the row
    for host in (SRC, TGT):
        env.x(host, "CREATE TABLE odd (id int PRIMARY KEY, x text, d text, k text); "
                    "INSERT INTO odd VALUES (1, 'x1', 'd1', 'k1')")
    env.add_databases(SRC, TGT)
    env.cli("add", "all", "tables", f"db=test1_{SRC}", "standard_conflict=latest", "herd=gamma")
    env.cli("add", "sync", "sw", "source=gamma", f"targetdb=test1_{TGT}", "type=swap")
    env.x(TGT, "UPDATE odd SET x = 'x-target', d = 'd-target' WHERE id = 1")
    env.x(SRC, "UPDATE odd SET x = 'x-source', k = 'k-source' WHERE id = 1")     # later: latest picks it
    env.start()
    env.cli("kick", "sw", "--wait", "30")
    for host in (SRC, TGT):
        assert env.q(host, "SELECT id, x, d, k FROM odd") == [(1, "x-source", "d1", "k-source")]
    _, text = env.cli("list", "conflicts", "sw", "--json")
    (c,) = json.loads(text)
    assert c["winner"] == "source"
    assert c["source_row"] == {"id": 1, "x": "x-source", "d": "d1", "k": "k-source"}
    assert c["target_row"] == {"id": 1, "x": "x-target", "d": "d-target", "k": "k1"}


def test_a_batch_over_tables_whose_keys_differ_in_width(env):
    """Both sides change tables whose keys have one, two and three columns in the same transactions (each batch
    reads every table's keys in one statement), one table left out: both sides end with the same rows."""
    for host in (SRC, TGT):
        env.x(host, WIDE)
        env.x(host, """INSERT INTO "Two Keys" VALUES ('c', 1, 'as is'); INSERT INTO three VALUES (7, 'y', '2026-03-03', 'as is')""")
    env.add_databases(SRC, TGT)
    env.cli("add", "all", "tables", f"db=test1_{SRC}", "standard_conflict=source", "herd=gamma")
    env.cli("add", "sync", "sw", "source=gamma", f"targetdb=test1_{TGT}", "type=swap")
    wide_changes(env, SRC, "source")
    env.x(SRC, """UPDATE "Two Keys" SET v = 'source' WHERE a = 'c'""")
    env.x(TGT, "BEGIN; INSERT INTO one VALUES (100, 'target'); INSERT INTO three VALUES (100, 'y', '2026-02-02', 'target'); "
               """UPDATE "Two Keys" SET v = 'target' WHERE a = 'c'; UPDATE three SET v = 'target' WHERE x = 7; COMMIT""")
    env.start()
    env.cli("kick", "sw", "--wait", "30")
    for table in WIDE_TABLES:
        assert env.checksum(SRC, table) == env.checksum(TGT, table), table
    assert env.q(TGT, "SELECT id, v FROM one WHERE id IN (2, 100) ORDER BY id") == [(2, "source again"), (100, "target")]
    assert env.q(SRC, "SELECT x, v FROM three WHERE x IN (3, 100) ORDER BY x") == [(100, "target")]
    assert env.q(TGT, 'SELECT a, b, v FROM "Two Keys" ORDER BY a') == [
        ("c", 1, "source"), ("k2", 2, "source"), ("k3", 3, "source"), ("k4", 50, "source"), ("k5", 5, "source")]
    assert env.q(SRC, "SELECT v FROM three WHERE x = 7") == [("target",)]   # changed on one side only
    assert [(c["tablename"], c["key"], c["winner"]) for c in json.loads(env.cli("list", "conflicts", "sw", "--json")[1])] == [
        ("public.Two Keys", {"a": "c", "b": 1}, "source")]
