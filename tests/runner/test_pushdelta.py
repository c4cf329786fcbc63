"""pushdelta correctness: commit order, key updates, deletes, truncates, composite and odd keys, big backlogs,
targets that go away, and what the daemon records."""

import json
import threading
import time

import psycopg
import pytest
from pgrepl import db

ITEMS = "CREATE TABLE items (id int PRIMARY KEY, val text, n int DEFAULT 0)"


def items_sync(e, *targets, name="itemsync", ddl=ITEMS, table="items", **kv):
    """`items` on master replicated by a pushdelta sync to TARGETS (default: slave)."""
    targets = targets or ("slave",)
    for host in ("master", *targets):
        e.x(host, ddl)
    e.add_databases("master", *targets)
    e.cli("add", "table", table, "db=test1_master", "herd=h")
    if len(targets) == 1:
        e.cli("add", "sync", name, "source=h", f"targetdb=test1_{targets[0]}", "type=pushdelta",
              *[f"{k}={v}" for k, v in kv.items()])
    else:
        e.cli("add", "dbgroup", "g", *[f"test1_{t}" for t in targets])
        e.cli("add", "sync", name, "source=h", "targetgroup=g", "type=pushdelta")


def test_insert_update_delete_reach_target(env):
    items_sync(env)
    env.start()
    env.x("master", "INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 100) g")
    env.x("master", "UPDATE items SET val = 'changed' WHERE id <= 10")
    env.x("master", "DELETE FROM items WHERE id > 90")
    env.wait_same("master", "slave", "items")
    assert env.q("slave", "SELECT count(*), count(*) FILTER (WHERE val = 'changed') FROM items") == [(90, 10)]


def test_target_triggers_do_not_fire_on_applied_rows(env):
    items_sync(env)
    env.x("slave", "CREATE TABLE fired (id int)")
    env.x("slave", "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$BEGIN INSERT INTO fired VALUES (NEW.id); RETURN NEW; END$$")
    env.x("slave", "CREATE TRIGGER t BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION f()")
    env.start()
    env.x("master", "INSERT INTO items VALUES (1, 'a')")
    env.wait_same("master", "slave", "items")
    assert env.q("slave", "SELECT count(*) FROM fired") == [(0,)]


def test_out_of_order_commits_lose_nothing(env):
    items_sync(env)
    env.x("master", "INSERT INTO items SELECT g, 'v' FROM generate_series(1, 10) g")
    env.start()
    env.wait_same("master", "slave", "items")
    early = psycopg.connect(env.c["master"].dsn("test1"))          # begins first...
    early.execute("UPDATE items SET val = 'early' WHERE id = 1")
    env.x("master", "UPDATE items SET val = 'late' WHERE id = 2")  # ...another commits first
    env.wait_for(lambda: env.q("slave", "SELECT val FROM items WHERE id = 2") == [("late",)],
                 what="the later transaction applied")
    time.sleep(0.5)   # let the worker close its interval past the still-open transaction
    early.commit()    # ...and the first one commits last
    early.close()
    env.wait_for(lambda: env.q("slave", "SELECT val FROM items WHERE id = 1") == [("early",)],
                 what="the out-of-order commit applied")
    env.wait_same("master", "slave", "items")


def test_concurrent_writers_converge(env):
    items_sync(env)
    env.x("master", "INSERT INTO items SELECT g, 'v', 0 FROM generate_series(1, 200) g")
    env.start()

    def writer(seed: int) -> None:
        with psycopg.connect(env.c["master"].dsn("test1"), autocommit=True) as c:
            for i in range(150):
                with c.transaction():
                    c.execute("UPDATE items SET n = n + 1 WHERE id = %s", ((seed * 37 + i * 13) % 200 + 1,))
                    if i % 10 == 0:
                        c.execute("SELECT pg_sleep(0.01)")   # keep some transactions open across runs

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    env.wait_same("master", "slave", "items")
    assert env.q("slave", "SELECT sum(n) FROM items") == [(600,)]


def test_primary_key_update_moves_the_row(env):
    items_sync(env)
    env.x("master", "INSERT INTO items VALUES (1, 'a'), (2, 'b')")
    env.start()
    env.wait_same("master", "slave", "items")
    env.x("master", "UPDATE items SET id = id + 1000")
    env.wait_same("master", "slave", "items")
    assert env.q("slave", "SELECT id FROM items ORDER BY id") == [(1001,), (1002,)]


def test_truncate_is_replicated(env):
    items_sync(env)
    env.x("master", "INSERT INTO items SELECT g, 'v' FROM generate_series(1, 50) g")
    env.start()
    env.wait_same("master", "slave", "items")
    env.x("master", "BEGIN; TRUNCATE items; INSERT INTO items VALUES (7, 'after truncate'); COMMIT")
    env.wait_same("master", "slave", "items")
    assert env.q("slave", "SELECT id, val FROM items") == [(7, "after truncate")]


def test_composite_key_and_odd_identifiers(env):
    ddl = ('CREATE SCHEMA "Odd Schema"; CREATE TABLE "Odd Schema"."Mixed ""Quoted"" Table" '
           '("Key Part" text, "k2" int, "Value Col" text, PRIMARY KEY ("Key Part", k2))')
    for host in ("master", "slave"):
        env.x(host, ddl)
    env.add_databases("master", "slave")
    env.cli("add", "all", "tables", "db=test1_master", "--herd=odd")
    env.cli("add", "sync", "oddsync", "source=odd", "targetdb=test1_slave", "type=pushdelta")
    _, text = env.cli("list", "tables")
    assert 'Table: Odd Schema.Mixed "Quoted" Table DB: test1_master PK: Key Part, k2 (text, int4)' in text
    env.start()
    table = '"Odd Schema"."Mixed ""Quoted"" Table"'
    env.x("master", f"INSERT INTO {table} VALUES ('a b', 1, 'x'), ('it''s', 2, 'y'), ('a b', 2, 'z')")
    env.x("master", f"UPDATE {table} SET \"Value Col\" = 'w' WHERE \"Key Part\" = 'it''s'")
    env.x("master", f"DELETE FROM {table} WHERE k2 = 1")
    env.wait_same("master", "slave", table)
    assert env.q("slave", f'SELECT "Key Part", k2, "Value Col" FROM {table} ORDER BY 1, 2') == [
        ("a b", 2, "z"), ("it's", 2, "w")]


WIDE = ("CREATE TABLE one (id int PRIMARY KEY, v text); "
        'CREATE TABLE "Two Keys" (a text, b int, v text, PRIMARY KEY (a, b)); '
        "CREATE TABLE three (x int, y text, z date, v text, PRIMARY KEY (x, y, z)); "
        "CREATE TABLE untouched (id int PRIMARY KEY, v text); INSERT INTO untouched VALUES (1, 'as is')")
WIDE_TABLES = ("one", '"Two Keys"', "three", "untouched")


def wide_changes(e, host: str, tag: str) -> None:
    """Transactions over tables whose keys have one, two and three columns (each batch reads every table's keys
    in one statement), one table left out."""
    e.x(host, f"BEGIN; INSERT INTO one SELECT g, '{tag}' FROM generate_series(1, 5) g; "
              f"""INSERT INTO "Two Keys" SELECT 'k' || g, g, '{tag}' FROM generate_series(1, 5) g; """
              f"INSERT INTO three SELECT g, 'y,\"' || g, date '2026-01-01' + g, '{tag}' FROM generate_series(1, 5) g; "
              "COMMIT")
    e.x(host, f"BEGIN; UPDATE one SET v = '{tag} again' WHERE id = 2; DELETE FROM three WHERE x = 3; "
              f"""UPDATE "Two Keys" SET b = 50 WHERE a = 'k4'; COMMIT""")
    e.x(host, """DELETE FROM "Two Keys" WHERE a = 'k1'""")


def test_a_batch_over_tables_whose_keys_differ_in_width(env):
    for host in ("master", "slave"):
        env.x(host, WIDE)
    env.add_databases("master", "slave")
    env.cli("add", "all", "tables", "db=test1_master", "--herd=wide")
    env.cli("add", "sync", "widesync", "source=wide", "targetdb=test1_slave", "type=pushdelta")
    wide_changes(env, "master", "m")
    env.start()
    for table in WIDE_TABLES:
        env.wait_same("master", "slave", table)
    assert env.q("slave", 'SELECT a, b FROM "Two Keys" ORDER BY a') == [("k2", 2), ("k3", 3), ("k4", 50), ("k5", 5)]
    assert env.q("slave", "SELECT x, y FROM three ORDER BY x") == [(1, 'y,"1'), (2, 'y,"2'), (4, 'y,"4'), (5, 'y,"5')]
    assert env.q("slave", "SELECT count(*), count(*) FILTER (WHERE v = 'm again') FROM one") == [(5, 1)]


def test_backlog_is_applied_in_bounded_batches(env):
    """A backlog of 1,000,000 changes in 100 source transactions: applied in many bounded target transactions, not
    one; and a single source transaction larger than a batch is never split."""
    items_sync(env)
    env.cli("set", "batch_size=50000")
    for host in ("master", "slave"):   # the same rows on both sides, not captured (replica: triggers do not fire)
        env.x(host, "SET session_replication_role = replica; "
                    "INSERT INTO items SELECT g, 'v', 0 FROM generate_series(1, 1000000) g")
    with psycopg.connect(env.c["master"].dsn("test1"), autocommit=True) as conn:
        for i in range(100):   # 1,000,000 changed rows in 100 transactions, captured while no runner runs
            conn.execute("UPDATE items SET n = 1 WHERE id > %s AND id <= %s", (i * 10000, (i + 1) * 10000))
    # the runner's own transactions on the target: a trigger that fires in replica mode too (ENABLE ALWAYS)
    # records the id of every transaction that writes `items`; the test's reads leave no trace there
    env.x("slave", "CREATE TABLE applied_in (xid xid8 PRIMARY KEY); "
                   "CREATE FUNCTION note_xact() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
                   "INSERT INTO applied_in VALUES (pg_current_xact_id()) ON CONFLICT DO NOTHING; RETURN NULL; END$$; "
                   "CREATE TRIGGER note_xact AFTER INSERT OR UPDATE OR DELETE ON items "
                   "FOR EACH STATEMENT EXECUTE FUNCTION note_xact(); "
                   "ALTER TABLE items ENABLE ALWAYS TRIGGER note_xact")
    t0 = time.monotonic()
    env.start()
    env.wait_for(lambda: env.q("slave", "SELECT count(*) FROM items WHERE n = 1") == [(1000000,)], timeout=300,
                 what="the backlog applied")
    elapsed = time.monotonic() - t0
    assert env.checksum("master", "items") == env.checksum("slave", "items")
    (transactions,), = env.q("slave", "SELECT count(*) FROM applied_in")
    assert transactions >= 1000000 // 50000, f"the backlog was applied in {transactions} target transaction(s)"
    _, text = env.cli("status", "itemsync")
    assert "Ins/Upd/Del:" in text
    print(f"1M-change backlog applied in {elapsed:.1f}s ({1e6 / elapsed:,.0f} rows/s), "
          f"{transactions} target transactions")
    env.x("master", "UPDATE items SET n = 2 WHERE id <= 120000")   # one transaction, more than two batches' worth
    env.wait_for(lambda: env.q("slave", "SELECT count(*) FROM items WHERE n = 2") == [(120000,)], timeout=120,
                 what="the big transaction applied")
    assert env.q("slave", "SELECT count(*) FROM applied_in") == [(transactions + 1,)], "a source transaction was split"


def last_bad_target(e, sync: str) -> str | None:
    """The target of SYNC's last bad run in `status --json`, None when it has none."""
    (found,) = [s for s in json.loads(e.cli("status", "--json")[1])["syncs"] if s["name"] == sync]
    return found["last_bad"]["target"] if found["last_bad"] else None


def test_target_down_retries_and_catches_up_while_others_run(env):
    items_sync(env, "slave")
    env.x("master2", ITEMS)
    env.add_databases("master2")
    env.cli("add", "table", "items", "db=test1_master", "herd=h2")
    env.cli("add", "sync", "tomaster2", "source=h2", "targetdb=test1_master2", "type=pushdelta")
    env.start()
    env.c["slave"].stop()
    try:
        env.x("master", "INSERT INTO items SELECT g, 'while down' FROM generate_series(1, 500) g")
        env.wait_same("master", "master2", "items")    # the other sync is not held up
        env.wait_for(lambda: last_bad_target(env, "itemsync") == "test1_slave", what="a bad run of itemsync "
                     "towards test1_slave recorded")
        assert last_bad_target(env, "tomaster2") is None
        _, text = env.cli("status", "itemsync")
        assert "Last bad:" in text and "Last bad:             unknown" not in text
    finally:
        env.c["slave"].start()
    env.wait_same("master", "slave", "items", timeout=60)
    assert "failed (attempt" in env.daemon_log()


def test_member_connections_detect_a_silent_peer_unless_the_conninfo_says_otherwise(clusters):
    """Keepalives and tcp_user_timeout on every TCP connection the runner opens (a half-open connection to a
    vanished host must not hang a worker); values the catalog's conninfo sets win."""
    dsn = f"host=127.0.0.1 port={clusters['slave'].port} user=postgres dbname=postgres"
    with db.connect(dsn) as conn:
        params = conn.info.get_parameters()
        assert (params.get("keepalives_idle"), params.get("tcp_user_timeout")) == ("30", "60000")
    with db.connect(dsn + " keepalives_idle=7") as conn:
        assert conn.info.get_parameters().get("keepalives_idle") == "7"


def test_sigterm_stops_between_batches_and_resumes(env):
    items_sync(env)
    env.cli("set", "batch_size=1000")
    with psycopg.connect(env.c["master"].dsn("test1"), autocommit=True) as conn:
        for i in range(200):   # 200 transactions: batches end on transaction boundaries, never inside one
            conn.execute("INSERT INTO items SELECT g, 'v', 0 FROM generate_series(%s::int, %s::int) g", (i * 1000 + 1, i * 1000 + 1000))
    env.start()
    env.wait_for(lambda: env.q("slave", "SELECT count(*) > 0 FROM items") == [(True,)], what="first batches")
    env.stop()   # SIGTERM mid-backlog
    assert env.q("slave", "SELECT count(*) < 200000 FROM items") == [(True,)], "finished before the stop"
    env.start()
    env.wait_same("master", "slave", "items", timeout=120)


def test_onetimecopy_fills_an_empty_target(env):
    env.x("master", ITEMS)
    env.x("master", "INSERT INTO items SELECT g, 'old' FROM generate_series(1, 1000) g")
    items_sync_existing = ["add", "sync", "s1", "source=h", "targetdb=test1_slave", "type=pushdelta", "onetimecopy=1"]
    env.x("slave", ITEMS)
    env.add_databases("master", "slave")
    env.cli("add", "table", "items", "db=test1_master", "herd=h")
    env.cli(*items_sync_existing)
    env.start()
    env.wait_same("master", "slave", "items")
    # the copy commits on the target before the worker records that the one-time copy is done
    env.wait_for(lambda: env.cli("list", "syncs", "--json")[1].count('"onetimecopy": 0') == 1, what="onetimecopy reset")
    env.x("master", "UPDATE items SET val = 'new' WHERE id = 5")
    env.wait_same("master", "slave", "items")


def test_sequences_follow_the_source(env):
    items_sync(env)
    for host in ("master", "slave"):
        env.x(host, "CREATE SEQUENCE counter")
    env.cli("add", "sequence", "counter", "db=test1_master", "herd=h")
    env.x("master", "SELECT nextval('counter') FROM generate_series(1, 41)")
    env.start()
    env.x("master", "INSERT INTO items VALUES (1, 'wake up')")
    env.wait_for(lambda: env.q("slave", "SELECT last_value FROM counter") == [(41,)], what="sequence copied")


def test_kick_exit_codes(env):
    items_sync(env)
    code, text = env.cli("kick", "itemsync", "--wait", "1", expect=4)        # no daemon: times out
    assert "timed out" in text
    env.start()
    env.cli("kick", "itemsync", "--wait", "30", expect=0)
    env.c["slave"].stop()
    try:
        code, text = env.cli("kick", "itemsync", "--wait", "30", expect=3)  # target down: the run fails
        assert "run failed" in text
    finally:
        env.c["slave"].start()


def test_remove_sync_removes_its_triggers_and_delta_store(env):
    items_sync(env)
    trig = "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass AND tgname LIKE 'pgrepl%'"
    assert env.q("master", trig)[0][0] == 5
    _, text = env.cli("remove", "sync", "itemsync", expect=1)
    assert 'Cannot remove active sync "itemsync": please deactivate it first' in text
    env.cli("deactivate", "itemsync")
    _, text = env.cli("remove", "sync", "itemsync")
    assert "Removed triggers and delta store of test1_master: public.items" in text
    assert env.q("master", trig) == [(0,)]
    assert env.q("master", "SELECT count(*) FROM pg_tables WHERE schemaname = 'pgrepl' AND tablename LIKE 'delta%'") \
        == [(0,)]


def test_a_runner_role_that_owns_no_table_adds_and_removes_its_triggers(env):
    """The postgresql role's least privilege (no superuser, not the tables' owner): TRIGGER on the tables is
    enough to add the capture, and removing it must not need the owner (DROP TRIGGER would)."""
    for host in ("master", "slave"):
        env.x(host, ITEMS)
        env.x(host, "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'runner') THEN "
                    "CREATE ROLE runner LOGIN; END IF; END$$; "
                    "GRANT CONNECT, CREATE ON DATABASE test1 TO runner; GRANT USAGE ON SCHEMA public TO runner; "
                    "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER ON items TO runner; "
                    "GRANT SET ON PARAMETER session_replication_role TO runner")
    for host in ("master", "slave"):
        env.cli("add", "database", "test1", f"name=test1_{host}", "host=127.0.0.1", f"port={env.c[host].port}",
                "user=runner")
    env.cli("set", "capture_notify=on")
    env.cli("add", "table", "items", "db=test1_master", "herd=h")
    env.cli("add", "sync", "itemsync", "source=h", "targetdb=test1_slave", "type=pushdelta")
    env.start()
    env.x("master", "INSERT INTO items VALUES (1, 'by a runner that owns nothing')")
    env.wait_for(lambda: env.q("slave", "SELECT val FROM items") == [("by a runner that owns nothing",)])
    env.cli("deactivate", "itemsync")
    env.cli("remove", "sync", "itemsync")
    assert env.q("master", "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass "
                           "AND tgname LIKE 'pgrepl%'") == [(0,)]
    for host in ("master", "slave"):   # the role outlives this test's databases
        env.x(host, "REVOKE SET ON PARAMETER session_replication_role FROM runner")


def test_shared_capture_stays_while_another_sync_reads_it(env):
    items_sync(env)
    env.x("master2", ITEMS)
    env.add_databases("master2")
    env.cli("add", "sync", "second", "source=h", "targetdb=test1_master2", "type=pushdelta")
    env.cli("deactivate", "itemsync")
    env.cli("remove", "sync", "itemsync")
    trig = "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass AND tgname LIKE 'pgrepl%'"
    assert env.q("master", trig) == [(5,)]


@pytest.mark.parametrize("args, message", [
    (["add", "database", "test1", "name=test1-master", "host=127.0.0.1"], "a hyphen is not allowed"),
    (["add", "sync", "s", "source=nosuchherd", "targetdb=test1_slave", "type=pushdelta"], 'No herd named "nosuchherd"'),
    (["add", "sync", "s", "source=h", "targetdb=test1_slave", "type=ringcopy"], 'Invalid sync type "ringcopy"'),
    (["add", "sync", "s", "source=h", "targetdb=test1_master", "type=fullcopy"], "cannot be both source and target"),
    (["set", "nosuch=1"], 'Unknown setting "nosuch"'),
    (["set", "batch_size=lots"], "Invalid value \"lots\" for batch_size: must be a whole number"),
    (["set", "piddir=relative/dir"], "must be an absolute path"),
    (["add", "sync", "s", "source=h", "targetdb=test1_slave", "type=fullcopy", "checktime=often"],
     'Invalid interval "often"'),
])
def test_refused_inputs(env, args, message):
    env.x("master", ITEMS)
    env.add_databases("master", "slave")
    env.cli("add", "table", "items", "db=test1_master", "herd=h")
    before = env.cli("list", "syncs", "--json")[1], env.cli("show", "all")[1]
    code, text = env.cli(*args, expect=None)
    assert code != 0 and message in text, text
    assert (env.cli("list", "syncs", "--json")[1], env.cli("show", "all")[1]) == before


def test_pkless_table_refused_in_delta_sync_with_nothing_changed(env):
    env.x("master", "CREATE TABLE log (at timestamptz, msg text)")
    env.add_databases("master", "slave")
    env.cli("add", "table", "log", "db=test1_master", "herd=logs")
    code, text = env.cli("add", "sync", "s", "source=logs", "targetdb=test1_slave", "type=pushdelta", expect=1)
    assert "public.log" in text and "fullcopy" in text
    assert env.cli("list", "syncs")[1].strip() == "There are no entries in the 'sync' table."
    assert env.q("master", "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'log'::regclass") == [(0,)]
    env.cli("add", "sync", "s", "source=logs", "targetdb=test1_slave", "type=fullcopy")


def test_install_is_idempotent(env):
    _, text = env.cli("install")
    assert "already installed" in text and "nothing to do" in text


def test_help_explains_every_verb(env):
    _, text = env.cli("help")
    for verb in ("install", "add", "list", "kick", "status", "purge", "start", "stop"):
        assert verb in text
        _, detail = env.cli("help", verb)
        assert f"pgrepl {verb}" in detail
    assert env.cli("frobnicate", expect=2)[1].startswith("pgrepl: unknown command")


def test_purge_delta_runs_and_archive(env):
    items_sync(env)
    env.start()
    env.x("master", "INSERT INTO items SELECT g, 'v' FROM generate_series(1, 100) g")
    env.wait_same("master", "slave", "items")
    env.stop()
    delta = env.q("master", "SELECT delta_table FROM pgrepl.capture")[0][0]
    assert env.q("master", f"SELECT count(*) FROM pgrepl.{delta}") == [(100,)]
    _, text = env.cli("purge", "delta", "10 minutes")
    assert "test1_master: Rows deleted from delta: 0" in text           # consumed, but too recent
    _, text = env.cli("purge", "delta", "0 seconds")
    assert "test1_master: Rows deleted from delta: 100" in text
    # the founding document's SQL form works too
    assert "Rows deleted from delta" in env.q("master", "SELECT pgrepl.purge_delta('10 minutes')")[0][0]
    ctl = env.c["master"]
    runs = ctl.query("pgrepl", "SELECT count(*) FROM pgrepl.run")[0][0]
    assert runs > 0
    ctl.execute("pgrepl", "UPDATE pgrepl.run SET started = started - interval '3 days', ended = ended - interval '3 days'")
    _, text = env.cli("purge", "runs", "1 day")
    assert f"Runs moved to the freezer: {runs}; rows left in the run table: 0" in text
    freezer = ctl.query("pgrepl", "SELECT tablename FROM pg_tables WHERE schemaname = 'pgrepl_freezer'")
    assert len(freezer) == 1
    _, text = env.cli("purge", "archive", "--keep", "7")
    assert "Freezer tables dropped: 0" in text
    _, text = env.cli("purge", "archive", "--keep", "1")
    assert f"Dropped pgrepl_freezer.{freezer[0][0]}" in text


def test_stop_file_and_start_stop(env):
    items_sync(env)
    _, text = env.cli("start")
    assert "Checking for existing processes" in text and "Starting pgrepl" in text
    try:
        assert env.cli("start", expect=1)[1].count("already running") == 1
        env.x("master", "INSERT INTO items VALUES (1, 'x')")
        env.wait_same("master", "slave", "items")
    finally:
        _, text = env.cli("stop")
    assert f"Creating {env.piddir}/fullstoppgrepl ... Done" in text
    assert not (env.piddir / "pgrepl.mcp.pid").exists()
    _, text = env.cli("start")
    assert f"Removing {env.piddir}/fullstoppgrepl" in text
    env.cli("stop")


def test_alert_email_on_failure(env, mail_sink):
    port, received = mail_sink
    try:
        items_sync(env)
        env.cli("set", "default_email_to=dba@example.test", "default_email_host=127.0.0.1", f"default_email_port={port}")
        env.c["slave"].stop()
        env.start()
        env.x("master", "INSERT INTO items VALUES (1, 'x')")
        env.wait_for(lambda: received, what="an alert email")
        assert "Subject: pgrepl sync itemsync failed" in received[0]
    finally:
        env.c["slave"].start()


def test_set_says_which_changed_settings_need_a_restart(env):
    _, text = env.cli("set", "log_level=debug", "days_back=7")
    assert "Set log_level to 'debug' (was 'info')\n  log_level is read as the runner starts: `pgrepl restart`" in text
    assert "Set days_back to '7' (was '3')\n" in text and "days_back is read" not in text
    _, text = env.cli("set", "log_level=debug")
    assert text == "log_level is already 'debug'\n"
    _, text = env.cli("show", "lock_timeout", "retry_max", "-v")
    assert "(read as the runner starts: a change needs `pgrepl restart`)" in text.split("retry_max")[0]
    assert "restart" not in text.split("retry_max")[1]
