"""swap with delta (additive) columns and column-level merge: both sides' writes kept (docs/swap.md)."""

import json
from concurrent.futures import ThreadPoolExecutor

import psycopg

SRC, TGT = "master2", "master"
T = ("CREATE TABLE t (id int PRIMARY KEY, n bigint, i int, d numeric, iv interval, f float8, m money, note text);"
     "INSERT INTO t VALUES (1, 100, 10, 1.5, '1 hour', 0.5, 10, 'a'), (2, 0, 0, 0, '0', 0, 0, 'b'), "
     "(3, NULL, 0, 0, '0', 0, 0, 'c')")
DELTA = "delta_columns=n,i,d,iv,f,m"


def swap_sync(e, rule: str = "latest", table: str = T, delta: str = DELTA, *extra: str) -> None:
    for host in (SRC, TGT):
        e.x(host, table)
    e.add_databases(SRC, TGT)
    e.cli("add", "all", "tables", f"db=test1_{SRC}", f"standard_conflict={rule}", "herd=gamma",
          *([delta] if delta else []))
    e.cli("add", "sync", "sw", "source=gamma", f"targetdb=test1_{TGT}", "type=swap", *extra)


def row(e, host: str, key: int = 1):
    return e.q(host, "SELECT n, i, d, iv::text, f, m::text, note FROM t WHERE id = %s", (key,))[0]


def journal(e) -> list:
    _, text = e.cli("list", "conflicts", "sw", "--json")
    return json.loads(text)


def increments(e, host: str, count: int, sql: str) -> None:
    with psycopg.connect(e.c[host].dsn("test1"), autocommit=True) as conn:
        for _ in range(count):
            conn.execute(sql)


def test_hot_row_increments_from_both_sides_all_kept(env):
    swap_sync(env)
    env.start()
    bump = ("UPDATE t SET n = n + 1, i = i + 2, d = d + 0.25, iv = iv + interval '1 second', f = f + 0.5, "
            "m = m + '0.01'::money WHERE id = 1")
    with ThreadPoolExecutor(2) as pool:   # the daemon runs meanwhile: every run finds the row changed on both sides
        list(pool.map(lambda h: increments(env, h, 1000, bump), (SRC, TGT)))
    expected = (2100, 4010, 501.5, "01:33:20", 1000.5, "$30.00", "a")
    env.wait_for(lambda: row(env, SRC) == expected and row(env, TGT) == expected, 60, f"both sides at {expected}")
    assert any(c["rule"] == "delta" for c in journal(env)), "increments on both sides between two runs: conflicts"


def test_one_run_both_sides_net_changes_journaled(env):
    swap_sync(env)
    env.x(SRC, "UPDATE t SET n = n + 5, note = 'src' WHERE id = 1")
    env.x(TGT, "UPDATE t SET n = n - 2, d = d + 1 WHERE id = 1")
    env.x(TGT, "UPDATE t SET note = 'tgt' WHERE id = 1")       # latest: the target's note wins
    env.start()
    env.cli("kick", "sw", "--wait", "30")
    assert row(env, SRC) == row(env, TGT) == (103, 10, 2.5, "01:00:00", 0.5, "$10.00", "tgt")
    [c] = journal(env)
    assert (c["rule"], c["winner"]) == ("delta", "target")
    assert c["source_delta"]["n"] == 5 and c["target_delta"]["n"] == -2 and c["target_delta"]["d"] == 1


def test_nulls_and_a_non_additive_update(env):
    """A NULL before or after makes the net change unknown: the column takes the winner's value. SET n = 0 is
    the net change -n: the other side's concurrent increment is kept on top of the reset."""
    swap_sync(env, "source")
    env.x(SRC, "UPDATE t SET n = 0 WHERE id = 1")            # 100 -> 0: net -100
    env.x(TGT, "UPDATE t SET n = n + 7 WHERE id = 1")        # 100 -> 107: net +7
    env.x(SRC, "UPDATE t SET n = 4 WHERE id = 3")            # NULL -> 4: unknown
    env.x(TGT, "UPDATE t SET i = i + 1 WHERE id = 3")        # n stays NULL on the target: unknown
    env.start()
    env.cli("kick", "sw", "--wait", "30")
    for host in (SRC, TGT):
        assert row(env, host)[0] == 7                          # 0 + 7 on one side, 107 - 100 on the other
        assert row(env, host, 3)[:2] == (4, 1)                 # n: the winner's (source) value; i: both kept
    entries = {c["key"]["id"]: c for c in journal(env)}
    assert entries[1]["source_delta"]["n"] == -100 and entries[1]["target_delta"]["n"] == 7
    assert entries[3]["source_delta"]["n"] is None


def test_an_identity_column_generated_always_outside_the_key(env):
    """An UPDATE may not set a GENERATED ALWAYS identity column: rows are updated in place without it (its value
    is the row's own on both sides, given at its insert), and both sides' increments are kept; the other columns
    of a row changed on both sides follow the rule (source)."""
    swap_sync(env, "source", table="CREATE TABLE g (k text PRIMARY KEY, seq int GENERATED ALWAYS AS IDENTITY, n bigint, "
                         "note text); INSERT INTO g (k, n, note) VALUES ('a', 100, 'x'), ('b', 0, 'y')",
              delta="delta_columns=n")
    env.x(SRC, "UPDATE g SET n = n + 5, note = 'src' WHERE k = 'a'; UPDATE g SET n = n + 1 WHERE k = 'b'")
    env.x(TGT, "UPDATE g SET n = n - 2 WHERE k = 'a'")
    env.start()
    env.cli("kick", "sw", "--wait", "30")
    for host in (SRC, TGT):
        assert env.q(host, "SELECT k, seq, n, note FROM g ORDER BY k") == [("a", 1, 103, "src"), ("b", 2, 1, "y")]


def test_inserts_and_deletes_keep_the_rule(env):
    swap_sync(env, "source")
    env.x(SRC, "DELETE FROM t WHERE id = 2")
    env.x(TGT, "UPDATE t SET n = n + 1 WHERE id = 2")
    env.x(SRC, "INSERT INTO t VALUES (9, 1, 1, 1, '1 s', 1, 1, 'src')")
    env.x(TGT, "INSERT INTO t VALUES (9, 2, 2, 2, '2 s', 2, 2, 'tgt')")
    env.start()
    env.cli("kick", "sw", "--wait", "30")
    for host in (SRC, TGT):
        assert env.q(host, "SELECT id, n, note FROM t WHERE id IN (2, 9) ORDER BY id") == [(9, 1, "src")]
    assert {c["rule"] for c in journal(env)} == {"source"}


def test_merge_disjoint_columns_both_kept_same_column_latest(env):
    table = "CREATE TABLE t (id int PRIMARY KEY, a text, b text, c text); INSERT INTO t VALUES (1, 'a', 'b', 'c')"
    swap_sync(env, "merge", table, None)
    env.x(SRC, "UPDATE t SET a = 'a-src', c = 'c-src' WHERE id = 1")
    env.x(TGT, "UPDATE t SET b = 'b-tgt' WHERE id = 1")
    env.x(TGT, "UPDATE t SET c = 'c-tgt' WHERE id = 1")       # c changed on both: latest (the target) wins
    env.start()
    env.cli("kick", "sw", "--wait", "30")
    for host in (SRC, TGT):
        assert env.q(host, "SELECT a, b, c FROM t") == [("a-src", "b-tgt", "c-tgt")]
    [c] = journal(env)
    assert (c["rule"], c["winner"]) == ("merge", "both")
    # a later round: again disjoint, again both kept
    env.x(SRC, "UPDATE t SET a = 'a2' WHERE id = 1")
    env.x(TGT, "UPDATE t SET b = 'b2' WHERE id = 1")
    env.cli("kick", "sw", "--wait", "30")
    for host in (SRC, TGT):
        assert env.q(host, "SELECT a, b FROM t") == [("a2", "b2")]


BALANCES = {"pgbench_accounts": "abalance", "pgbench_tellers": "tbalance", "pgbench_branches": "bbalance"}


def sums(e, host: str) -> tuple:
    """sum(abalance), sum(tbalance), sum(bbalance): each is the total of every delta pgbench applied."""
    return e.q(host, "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers),"
                     " (SELECT sum(bbalance) FROM pgbench_branches)")[0]


def pgbench_both(e) -> int:
    """TPC-B on both masters at once; returns the total of the deltas both applied (each side's own history)."""
    with ThreadPoolExecutor(2) as pool:   # pgbench fails on any failed transaction
        outputs = list(pool.map(lambda h: e.c[h].pgbench("test1", "-n", "-c", "2", "-T", "15", timeout=300),
                                ("master", "master2")))
    assert all("number of transactions actually processed" in out for out in outputs), outputs
    return sum(e.q(h, "SELECT coalesce(sum(delta), 0) FROM pgbench_history")[0][0] for h in ("master", "master2"))


def test_pgbench_on_both_masters_balances_as_delta_columns_three_hosts(pgbench_env):
    """The founding document's three hosts, with makedelta and the balances as delta columns: after TPC-B on both
    masters, every host holds the same rows and sum(abalance) = sum(tbalance) = sum(bbalance) = every delta
    applied on both sides. A merge table on the way: slave ends with the merged row."""
    e = pgbench_env
    for host in ("master", "slave", "master2"):
        e.x(host, "CREATE TABLE mt (id int PRIMARY KEY, a text, b text); INSERT INTO mt VALUES (1, 'a', 'b')")
    e.add_databases("master", "slave", "master2")
    e.cli("add", "all", "tables", "-T", "pgbench_history", "db=test1_master", "--herd=alpha")
    e.cli("add", "all", "table", "-T", "pgbench_history", "db=test1_master2", "herd=gamma")
    e.cli("add", "sync", "benchdeltaalpha", "source=alpha", "targetdb=test1_slave", "type=pushdelta")
    e.cli("add", "sync", "benchswapgamma", "source=gamma", "targetdb=test1_master", "type=swap", "makedelta=yes")
    for table, column in BALANCES.items():   # on a sync already capturing: its capture follows
        e.cli("update", "table", table, "db=test1_master2", f"delta_columns={column}")
    e.cli("update", "table", "mt", "db=test1_master2", "standard_conflict=merge")
    e.start()
    total = pgbench_both(e)
    e.x("master2", "UPDATE mt SET a = 'a-master2'")
    e.x("master", "UPDATE mt SET b = 'b-master'")
    e.cli("kick", "benchswapgamma", "--wait", "120")
    for t in (*BALANCES, "mt"):
        e.wait_same("master", "slave", t, 60)
        assert e.checksum("master", t) == e.checksum("master2", t)
    for host in ("master", "master2", "slave"):
        assert sums(e, host) == (total, total, total), host
        assert e.q(host, "SELECT a, b FROM mt") == [("a-master2", "b-master")]
    rules = dict(e.c["master"].query("pgrepl", "SELECT rule, count(*) FROM pgrepl.conflict GROUP BY rule"))
    assert rules.get("delta", 0) > 0 and rules.get("merge") == 1, rules
    assert e.c["master"].query("pgrepl", "SELECT count(*) FROM pgrepl.run WHERE state = 'bad'") == [(0,)]


def test_pgbench_under_latest_the_invariant_breaks(pgbench_env):
    """The same load without delta columns: both sides converge, but increments made on both sides between two
    runs are lost, so the balances no longer add up to the deltas applied (what delta columns are for)."""
    e = pgbench_env
    e.add_databases("master", "master2")
    e.cli("add", "all", "table", "-T", "pgbench_history", "db=test1_master2", "standard_conflict=latest", "herd=gamma")
    e.cli("add", "sync", "benchswapgamma", "source=gamma", "targetdb=test1_master", "type=swap")
    e.start()
    total = pgbench_both(e)
    e.cli("kick", "benchswapgamma", "--wait", "120")
    for t in BALANCES:
        assert e.checksum("master", t) == e.checksum("master2", t)
    assert sums(e, "master") == sums(e, "master2")
    assert sums(e, "master")[2] != total, "one branch updated on both sides: increments lost under latest"


def test_a_source_schema_of_version_2_is_upgraded_and_its_stores_keep_working(env):
    """Stores made before delta columns (source schema 2: no deltacols, nettypes, track_changed) go on working: the
    runner upgrades the schema when it connects, and a table of them can get delta columns afterwards."""
    swap_sync(env, delta=None)
    for host in (SRC, TGT):
        env.x(host, "ALTER TABLE pgrepl.capture DROP COLUMN deltacols, DROP COLUMN nettypes, DROP COLUMN track_changed;"
                    "COMMENT ON SCHEMA pgrepl IS 'pgrepl source schema 2'")
    env.x(SRC, "UPDATE t SET n = n + 1 WHERE id = 1")
    env.start()
    env.cli("kick", "sw", "--wait", "30")
    assert row(env, TGT)[0] == 101
    assert env.q(TGT, "SELECT obj_description('pgrepl'::regnamespace, 'pg_namespace')") == [("pgrepl source schema 6",)]
    env.cli("update", "table", "t", f"db=test1_{SRC}", "delta_columns=n")
    env.x(SRC, "UPDATE t SET n = n + 1 WHERE id = 1")
    env.x(TGT, "UPDATE t SET n = n + 10 WHERE id = 1")
    env.cli("kick", "sw", "--wait", "30")
    assert row(env, SRC)[0] == row(env, TGT)[0] == 112
