"""The founding document's master/slave walk-through, command line by command line, with pgrepl for bucardo_ctl."""

ALPHA = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers")


def test_master_slave_walkthrough(pgbench_env):
    e = pgbench_env
    _, text = e.cli("add", "database", "test1", "name=test1_master", f"port={e.c['master'].port}", "host=127.0.0.1",
                    "user=postgres")
    assert text.strip() == 'Added database "test1_master"'
    e.cli("add", "database", "test1", "name=test1_slave", f"port={e.c['slave'].port}", "host=127.0.0.1",
          "user=postgres")

    _, text = e.cli("add", "all", "tables", "db=test1_master", "-T", "pgbench_history", "--herd=alpha", "--verbose")
    assert text.splitlines() == ["Creating herd: alpha", "New tables:", "public.pgbench_accounts",
                                 "public.pgbench_branches", "public.pgbench_tellers", "New tables added: 3",
                                 "Already added: 0"]
    e.cli("add", "all", "tables", "db=test1_master", "-t", "pgbench_history", "--herd=beta", "--verbose")
    _, text = e.cli("add", "sync", "benchdeltaalpha", "source=alpha", "targetdb=test1_slave", "type=pushdelta")
    assert text.strip() == 'Added sync "benchdeltaalpha"'
    e.cli("add", "sync", "benchcopybeta", "source=beta", "targetdb=test1_slave", "type=fullcopy")

    _, text = e.cli("list", "herds")
    assert text.splitlines() == [
        "Herd: alpha DB: test1_master Members: public.pgbench_accounts, public.pgbench_branches, "
        "public.pgbench_tellers",
        "Used in syncs: benchdeltaalpha",
        "Herd: beta DB: test1_master Members: public.pgbench_history",
        "Used in syncs: benchcopybeta",
    ]
    _, text = e.cli("list", "syncs")
    assert text.splitlines() == ["Sync: benchcopybeta (fullcopy) beta => test1_slave (Active)",
                                 "Sync: benchdeltaalpha (pushdelta) alpha => test1_slave (Active)"]
    _, text = e.cli("list", "dbs")
    assert text.splitlines()[0] == (f"Database: test1_master Status: active Conn: psql -p {e.c['master'].port} "
                                    "-U postgres -d test1 -h 127.0.0.1")
    _, text = e.cli("list", "tables")
    assert text.splitlines() == ["Table: public.pgbench_accounts DB: test1_master PK: aid (int4)",
                                 "Table: public.pgbench_branches DB: test1_master PK: bid (int4)",
                                 "Table: public.pgbench_history DB: test1_master PK: none",
                                 "Table: public.pgbench_tellers DB: test1_master PK: tid (int4)"]
    _, text = e.cli("list", "sequences")
    assert text.strip() == "There are no entries in the 'sequence' table."

    # pgbench -i filled both sides alike: every teller changes on the master before the runner starts, so only
    # replication can make the slave's tellers equal to the master's
    e.x("master", "UPDATE pgbench_tellers SET tbalance = tid * 7, filler = 'teller ' || tid")
    assert e.checksum("slave", "pgbench_tellers") != e.checksum("master", "pgbench_tellers")
    e.start()
    e.wait_same("master", "slave", "pgbench_tellers")
    assert e.q("slave", "SELECT count(*) FROM pgbench_tellers WHERE tbalance = tid * 7") == [(10,)]
    e.x("master", "UPDATE pgbench_tellers SET filler = 'modification' WHERE tid = 1")
    e.wait_for(lambda: e.q("slave", "SELECT trim(filler) FROM pgbench_tellers WHERE tid = 1")
               == [("modification",)], what="the update on the slave")

    e.c["master"].pgbench("test1", "-c", "1", "-t", "3")
    for t in ALPHA:
        e.wait_same("master", "slave", t)
    # someone writes on the slave's history directly; the fullcopy sync puts the master's back on kick
    e.x("slave", "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 42, now())")
    assert e.checksum("slave", "pgbench_history") != e.checksum("master", "pgbench_history")
    code, text = e.cli("kick", "benchcopybeta", "--wait", "30")
    assert "Kicked sync benchcopybeta" in text and "run finished (good)" in text
    assert e.checksum("slave", "pgbench_history") == e.checksum("master", "pgbench_history")
    assert e.q("slave", "SELECT count(*) FROM pgbench_history") == [(3,)]

    _, text = e.cli("status")
    lines = text.splitlines()
    assert lines[0].startswith("Days back: 3 User: postgres Database: pgrepl PID of pgrepl MCP: ")
    assert lines[1].split() == ["Name", "Type", "State", "PID", "Backlog", "Lag", "Last", "good", "Time", "I/U/D",
                                "Last", "bad", "Time"]
    copy_row = next(line.split() for line in lines if line.startswith("benchcopybeta"))
    assert copy_row[1:3] == ["F", "idle"] and copy_row[4:6] == ["-", "-"] and copy_row[8] == "3/0/1"
    delta_row = next(line.split() for line in lines if line.startswith("benchdeltaalpha"))
    assert delta_row[1:3] == ["P", "idle"] and delta_row[4:6] == ["0", "0.0s"]
    _, text = e.cli("status", "benchcopybeta")
    assert "Ins/Upd/Del:          3 / 0 / 1" in text
    assert "Target database:      test1_slave" in text
