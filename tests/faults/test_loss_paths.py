"""Loss paths of issue 9 that need no crash: a source transaction split across batches or across tables, and
names that collide with the runner's own (a table `k`, key columns `present`, `txid`, `captured`, `origin`)."""

import pytest
from faultlib import report, wait_equal

# pushdelta master -> slave; swap master2 (the herd's side) <-> master
SIDES = {"pushdelta": ("master", "slave"), "swap": ("master2", "master")}


def sync_of(e, kind: str, tables: list[str], ddl: str, name: str = "s") -> tuple[str, str]:
    src, tgt = SIDES[kind]
    for host in (src, tgt):
        e.x(host, ddl)
    e.add_databases(src, tgt)
    for t in tables:
        e.cli("add", "table", t, f"db=test1_{src}", "herd=h", *(["standard_conflict=source"] if kind == "swap" else []))
    e.cli("add", "sync", name, "source=h", f"targetdb=test1_{tgt}", f"type={kind}")
    return src, tgt


def test_unique_value_swapped_between_two_rows_across_a_batch_boundary(env):
    """One source transaction swaps a unique code between rows 1 and 2; with batch_size=1 a batch ends between
    them. Applied row by row in two target transactions, the first violates the unique constraint forever."""
    e = env
    ddl = "CREATE TABLE u (id int PRIMARY KEY, code text UNIQUE); INSERT INTO u VALUES (1, 'a'), (2, 'b')"
    src, tgt = sync_of(e, "pushdelta", ["u"], ddl)
    e.cli("set", "batch_size=1")
    e.start()
    e.x(src, "BEGIN; UPDATE u SET code = 'tmp' WHERE id = 1; UPDATE u SET code = 'a' WHERE id = 2; "
             "UPDATE u SET code = 'b' WHERE id = 1; COMMIT")
    wait_equal(e, src, tgt, ["u"], timeout=30, kick="s")
    assert e.q(tgt, "SELECT id, code FROM u ORDER BY id") == [(1, "b"), (2, "a")]
    report("unique swap across a batch boundary", "1 transaction swapping a unique value, batch_size=1",
           "checked: applied (u equal, rows swapped on the target)")


def test_a_transaction_over_two_tables_is_never_seen_half_applied(env):
    """Transfers between two tables keep sum(a) + sum(b) constant on the source. On the target, a deferred
    trigger that fires for the runner too (ENABLE ALWAYS) checks the invariant as each of its transactions
    commits, in that transaction's own snapshot, and records any breach: a source transaction applied in pieces
    (one table's batch committed before the other's) leaves a row there."""
    e = env
    ddl = ("CREATE TABLE a (id int PRIMARY KEY, bal int NOT NULL); CREATE TABLE b (id int PRIMARY KEY, bal int NOT NULL);"
           "INSERT INTO a SELECT g, 1000 FROM generate_series(1, 100) g; "
           "INSERT INTO b SELECT g, 1000 FROM generate_series(1, 100) g")
    src, tgt = sync_of(e, "pushdelta", ["a", "b"], ddl)
    e.x(tgt, "CREATE TABLE breach (at timestamptz DEFAULT clock_timestamp(), total bigint); "
             "CREATE FUNCTION check_total() RETURNS trigger LANGUAGE plpgsql AS $$DECLARE t bigint; BEGIN "
             "t := (SELECT sum(bal) FROM a) + (SELECT sum(bal) FROM b); "
             "IF t <> 200000 THEN INSERT INTO breach (total) VALUES (t); END IF; RETURN NULL; END$$; "
             "CREATE CONSTRAINT TRIGGER check_a AFTER INSERT OR UPDATE OR DELETE ON a DEFERRABLE INITIALLY DEFERRED "
             "FOR EACH ROW EXECUTE FUNCTION check_total(); ALTER TABLE a ENABLE ALWAYS TRIGGER check_a; "
             "CREATE CONSTRAINT TRIGGER check_b AFTER INSERT OR UPDATE OR DELETE ON b DEFERRABLE INITIALLY DEFERRED "
             "FOR EACH ROW EXECUTE FUNCTION check_total(); ALTER TABLE b ENABLE ALWAYS TRIGGER check_b")
    e.cli("set", "batch_size=50")
    transfers = "BEGIN; " + " ".join(
        f"UPDATE a SET bal = bal - {i % 7 + 1} WHERE id = {i % 100 + 1}; "
        f"UPDATE b SET bal = bal + {i % 7 + 1} WHERE id = {(i * 37) % 100 + 1}; COMMIT; BEGIN;" for i in range(300)
    ) + " COMMIT"
    e.x(src, transfers)                 # a backlog: 300 transfers before the runner starts
    e.start()
    e.x(src, transfers)                 # and 300 more while it applies
    wait_equal(e, src, tgt, ["a", "b"], timeout=60, kick="s")
    breaches = e.q(tgt, "SELECT count(*), min(total), max(total) FROM breach")[0]
    assert breaches[0] == 0, f"{breaches[0]} target commits saw sum(a)+sum(b) <> 200000 (from {breaches[1]} " \
                             f"to {breaches[2]}): transactions were applied in pieces"
    report("transaction over two tables", "600 transfers a -> b (each one source transaction), batch_size=50",
           "checked: no target commit of the runner broke sum(a)+sum(b); a and b equal")


ODD = {   # name of the case -> (table, its key columns): each collides with a name the runner uses in its SQL
    "table k": ("k", ["id"]),
    "key present": ("t_present", ["present"]),
    "key txid": ("t_txid", ["txid"]),
    "keys captured, origin": ("t_captured_origin", ["captured", "origin"]),
}


@pytest.mark.parametrize("kind", list(SIDES))
@pytest.mark.parametrize("case", list(ODD))
def test_odd_names_replicate(env, kind, case):
    e = env
    table, keys = ODD[case]
    cols = ", ".join(f"{k} int" for k in keys)
    src, tgt = sync_of(e, kind, [table], f"CREATE TABLE {table} ({cols}, v text, PRIMARY KEY ({', '.join(keys)}))")
    e.start()
    values = ", ".join([f"g + {i}" for i in range(len(keys))])
    e.x(src, f"INSERT INTO {table} SELECT {values}, 'v' FROM generate_series(1, 50) g")
    e.x(src, f"UPDATE {table} SET v = 'changed' WHERE {keys[0]} <= 10; DELETE FROM {table} WHERE {keys[0]} > 45")
    wait_equal(e, src, tgt, [table], timeout=30, kick="s")
    assert e.q(tgt, f"SELECT count(*), count(*) FILTER (WHERE v = 'changed') FROM {table}") == [(45, 10)]
    report(f"odd names ({kind}, {case})", f"table {table} with key ({', '.join(keys)})",
           "checked: inserts, updates, deletes equal on both sides")
