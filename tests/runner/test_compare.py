"""`pgrepl compare` on real clusters: exactly the differences made by hand on a target while pgbench writes to
the source (a changed row, a missing row, an extra row, a duplicate in a table without a key), none once the pair
is equal under the same load, --repair, the exit codes, and the result kept for pg_repl_info."""

import json
import os
import pty
import subprocess
import sys
from contextlib import contextmanager

import pytest
from pgcluster import PGBENCH
from pgrepl import catalog, compare_sync

NOTES = "CREATE TABLE notes (who text, said text)"   # no key: a fullcopy table


# TPC-B on the first half of the accounts only: a row pgbench updates on the source is captured, and the sync then
# rightly heals a difference made on it by hand (the test once lost a hand-made difference to it); the hand-made
# differences are on keys above 50000.
TPCB_LOW_HALF = """\\set aid random(1, 50000)
\\set tid random(1, 10)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = 1;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, 1, :aid, :delta, CURRENT_TIMESTAMP);
END;
"""


@contextmanager
def pgbench_running(e, host: str = "master"):
    """pgbench TPC-B (on accounts 1-50000) on HOST for as long as the block runs (the test ends it)."""
    env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(e.c[host].port), PGUSER="postgres")
    script = e.c[host].datadir.parent / "tpcb-low-half.sql"
    script.write_text(TPCB_LOW_HALF)
    script.chmod(0o644)
    proc = subprocess.Popen([str(PGBENCH), "-n", "-c", "2", "-T", "600", "-f", str(script), "test1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode in (0, -15), proc.stderr.read()


def compare(e, *args, expect):
    code, text = e.cli("compare", *args, "--json", expect=expect)
    return json.loads(text)


def by_table(result) -> dict:
    return {t["table"]: t for s in result["syncs"] for t in s["tables"]}


def setup_pair(e) -> None:
    """pgbench's tables on master and slave (equal: both from `pgbench -i`), a pushdelta sync of accounts,
    branches and tellers, and a fullcopy sync of `notes`, a table without a key, copied once."""
    for host in ("master", "slave"):
        e.x(host, NOTES)
    e.x("master", "INSERT INTO notes VALUES ('a', 'one'), ('a', 'one'), ('b', 'two')")
    e.add_databases("master", "slave")
    e.cli("add", "all", "tables", "db=test1_master", "-T", "pgbench_history", "-T", "notes", "--herd=alpha")
    e.cli("add", "table", "notes", "db=test1_master", "herd=beta")
    e.cli("add", "sync", "alpha", "source=alpha", "targetdb=test1_slave", "type=pushdelta")
    e.cli("add", "sync", "beta", "source=beta", "targetdb=test1_slave", "type=fullcopy")
    e.start()
    e.cli("kick", "beta", "--wait", "30")


def test_finds_exactly_the_hand_made_differences_under_pgbench_and_repairs_them(pgbench_env):
    e = pgbench_env
    setup_pair(e)
    e.cli("set", "compare_block_size=500")
    with pgbench_running(e):
        e.wait_for(lambda: e.q("master", "SELECT count(*) FROM pgbench_history")[0][0] > 50, what="pgbench writing")
        # by hand, on the target only
        e.x("slave", "UPDATE pgbench_accounts SET filler = 'changed by hand' WHERE aid = 64242")
        e.x("slave", "DELETE FROM pgbench_accounts WHERE aid = 77777")
        e.x("slave", "INSERT INTO pgbench_accounts VALUES (100001, 1, 0, 'extra')")
        e.x("slave", "INSERT INTO notes VALUES ('b', 'two')")
        result = compare(e, "alpha", expect=5)
        t = by_table(result)
        acc = t["public.pgbench_accounts"]
        assert (acc["missing"], acc["extra"], acc["different"]) == (
            [{"aid": "77777"}], [{"aid": "100001"}], [{"aid": "64242"}]), acc
        assert result["differences"] == 3 and not result["repaired"]
        assert t["public.pgbench_branches"]["equal"] and t["public.pgbench_tellers"]["equal"], t
        notes = by_table(compare(e, "beta", expect=5))["public.notes"]
        assert (notes["missing"], notes["extra"]) == ([], [{"row": "(b,two)", "count": 1}]), notes

        code, text = e.cli("compare", "alpha", "pgbench_accounts", "--repair", "--dry-run", expect=5)
        assert "would copy 3 row(s) of public.pgbench_accounts from test1_master to test1_slave" in text, text
        assert e.q("slave", "SELECT count(*) FROM pgbench_accounts WHERE aid IN (77777, 100001)") == [(1,)]

        code, text = e.cli("compare", "alpha", "--repair", expect=5)
        assert "3 difference(s), repaired" in text, text
        e.cli("compare", "beta", "--repair", expect=5)
        # equal now, under the same load; a second repair finds nothing to do
        assert compare(e, "alpha", "--repair", expect=0)["differences"] == 0
        assert compare(e, "beta", expect=0)["equal"]
    assert e.q("slave", "SELECT filler FROM pgbench_accounts WHERE aid IN (64242, 77777, 100001) ORDER BY aid") == \
        e.q("master", "SELECT filler FROM pgbench_accounts WHERE aid IN (64242, 77777, 100001) ORDER BY aid")
    journal = e.c["master"].query("pgrepl", "SELECT tablename, key, kind FROM pgrepl.compare_repair ORDER BY id")
    assert sorted((k, json.dumps(v)) for _t, v, k in journal) == sorted(
        [("missing", '{"aid": "77777"}'), ("extra", '{"aid": "100001"}'), ("different", '{"aid": "64242"}'),
         ("extra", '{"row": "(b,two)", "count": 1}')])
    with catalog.open_control(e.control) as control:
        last = compare_sync.last_results(control)
    assert last["alpha"]["equal"] and last["beta"]["equal"]


def test_exit_codes_and_usage(env):
    e = env
    for host in ("master", "slave"):   # json has no hash function: rows are hashed as text
        e.x(host, "CREATE TABLE items (id int PRIMARY KEY, v text, j json); INSERT INTO items VALUES (2, 'b', '{}')")
    e.add_databases("master", "slave")
    e.cli("add", "table", "items", "db=test1_master", "herd=h")
    e.cli("add", "sync", "s", "source=h", "targetdb=test1_slave", "type=pushdelta")
    e.cli("compare", "s", expect=0)
    e.cli("compare", "--all", expect=0)
    code, text = e.cli("compare", "nosuch", expect=1)
    assert 'No sync named "nosuch"' in text
    code, text = e.cli("compare", "s", "nosuchtable", expect=1)
    e.cli("compare", expect=2)
    e.cli("compare", "s", "--dry-run", expect=2)
    e.x("slave", "INSERT INTO items VALUES (1, 'only here')")
    e.x("slave", "UPDATE items SET j = '{\"a\": 1}' WHERE id = 2")
    code, text = e.cli("compare", "s", expect=5)
    assert "1 extra on target, 1 different" in text and "id=1" in text and "id=2" in text, text
    assert "not repaired" in text, text
    assert compare(e, "--all", expect=5)["differences"] == 2
    # on a terminal, a progress line (tables, blocks, rows/s) on stderr
    ours, theirs = pty.openpty()
    proc = subprocess.run([sys.executable, "-m", "pgrepl", "--control", e.control, "compare", "s"], stderr=theirs,
                          stdout=subprocess.PIPE, text=True, timeout=60)
    os.close(theirs)
    drawn = os.read(ours, 65536).decode()
    os.close(ours)
    assert proc.returncode == 5 and "tables 1/1" in drawn and "rows/s" in drawn, drawn


@pytest.mark.parametrize("keys", ["single", "composite"])
def test_blocks_and_keys(env, keys):
    """Many blocks, differences at both open ends and inside, composite keys and text keys."""
    e = env
    ddl = ("CREATE TABLE items (id int PRIMARY KEY, v text)" if keys == "single" else
           "CREATE TABLE items (a text, b int, v text, PRIMARY KEY (a, b))")
    fill = ("INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 5000) g" if keys == "single" else
            "INSERT INTO items SELECT 'k' || (g % 7), g, 'v' FROM generate_series(1, 5000) g")
    for host in ("master", "slave"):
        e.x(host, ddl)
        e.x(host, fill)
    e.add_databases("master", "slave")
    e.cli("add", "table", "items", "db=test1_master", "herd=h")
    e.cli("add", "sync", "s", "source=h", "targetdb=test1_slave", "type=pushdelta")
    e.cli("set", "compare_block_size=100")
    e.cli("compare", "s", expect=0)
    if keys == "single":
        e.x("slave", "INSERT INTO items VALUES (0, 'below'), (9999, 'above')")
        e.x("slave", "DELETE FROM items WHERE id IN (1, 5000, 2500)")
        want = {"missing": ["1", "2500", "5000"], "extra": ["0", "9999"]}
    else:
        e.x("slave", "INSERT INTO items VALUES ('a', 1, 'below'), ('z', 1, 'above')")
        e.x("slave", "UPDATE items SET v = 'x' WHERE a = 'k3' AND b = 10")
        want = {"extra": ["a,1", "z,1"], "different": ["k3,10"]}
    t = by_table(compare(e, "s", expect=5))["public.items"]
    assert t["blocks"] > 10 and t["rows"] == 5000
    got = {kind: [",".join(k.values()) for k in t[kind]] for kind in ("missing", "extra", "different") if t[kind]}
    assert got == want
    # one block of the whole table: the differing block is cut again and again (open-ended pieces at both ends)
    e.cli("set", "compare_block_size=10000000")
    t = by_table(compare(e, "s", expect=5))["public.items"]
    assert t["blocks"] == 1
    assert {kind: [",".join(k.values()) for k in t[kind]] for kind in want} == want


def test_swap_repair_needs_a_winner_unless_the_rule_names_a_side(env):
    """A swap's two sides: a difference written behind the capture's back (replica role: no trigger fires) on
    master; the table's rule is latest, so a repair needs --winner; master2's row wins when named."""
    e = env
    for host in ("master2", "master"):
        e.x(host, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one'), (2, 'two')")
    e.add_databases("master2", "master")
    e.cli("add", "all", "tables", "db=test1_master2", "standard_conflict=latest", "herd=gamma")
    e.cli("add", "sync", "sw", "source=gamma", "targetdb=test1_master", "type=swap")
    e.cli("compare", "sw", expect=0)
    e.x("master", "SET session_replication_role = replica; UPDATE t SET v = 'hidden' WHERE id = 2")
    code, text = e.cli("compare", "sw", "--repair", expect=1)
    assert "give --winner test1_master2 or --winner test1_master" in text, text
    code, text = e.cli("compare", "sw", "--repair", "--winner", "test1_master2", expect=5)
    assert "copied 1 row(s) of public.t from test1_master2 to test1_master" in text, text
    assert e.q("master", "SELECT v FROM t WHERE id = 2") == [("two",)]
    e.cli("compare", "sw", expect=0)
