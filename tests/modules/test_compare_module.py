"""pg_repl_compare as a playbook uses it: check mode compares and changes nothing (a repair is predicted),
repair: true makes the target equal and is reported as changed, then nothing to do; pg_repl_info returns the
last result per sync. One playbook run: the differences are made by psql tasks between the compares."""

from __future__ import annotations


def psql(w, cluster: str, query: str, name: str) -> dict:
    return {"name": name, "ansible.builtin.command": {"argv": [
        "psql", "-X", "-Atq", "-h", "127.0.0.1", "-p", str(w.c[cluster].port), "-U", "postgres", "-d", "test1",
        "-c", query]}}


def compare(name: str, **options) -> dict:
    return {"name": name, "pgrepl.cluster.pg_repl_compare": {"sync": "deltaalpha", **options}}


def test_check_mode_compares_repair_changes_then_nothing_to_do(world):
    w = world
    tasks = [
        {"name": "db master", "pgrepl.cluster.pg_repl_db": w.member("test1_master")},
        {"name": "db slave", "pgrepl.cluster.pg_repl_db": w.member("test1_slave")},
        {"name": "herd alpha", "pgrepl.cluster.pg_repl_herd": {
            "name": "alpha", "db": "test1_master", "tables": ["public.accounts", "public.tellers"]}},
        {"name": "herd beta", "pgrepl.cluster.pg_repl_herd": {
            "name": "beta", "db": "test1_master", "tables": ["public.history"]}},
        {"name": "sync deltaalpha", "pgrepl.cluster.pg_repl_sync": {
            "name": "deltaalpha", "type": "pushdelta", "source": "alpha", "targetdb": "test1_slave"}},
        {"name": "sync copybeta", "pgrepl.cluster.pg_repl_sync": {
            "name": "copybeta", "type": "fullcopy", "source": "beta", "targetdb": "test1_slave"}},
        compare("equal"),
        psql(w, "slave", "UPDATE accounts SET balance = 99 WHERE id = 3; DELETE FROM tellers WHERE id = 6", "by hand"),
        # the same row twice on the source of the fullcopy (not run yet): a multiset difference
        psql(w, "master", "INSERT INTO history VALUES (1, 1, '2026-01-01'), (1, 1, '2026-01-01')", "history"),
        compare("found"),
        {**compare("check", repair=True), "check_mode": True},
        psql(w, "slave", "SELECT (SELECT balance FROM accounts WHERE id = 3) || ',' || (SELECT count(*) FROM tellers "
                         "WHERE id = 6)", "after check"),
        compare("repaired", repair=True),
        psql(w, "slave", "SELECT (SELECT balance FROM accounts WHERE id = 3) || ',' || (SELECT count(*) FROM tellers "
                         "WHERE id = 6)", "after repair"),
        compare("again", repair=True),
        {"name": "multiset", "pgrepl.cluster.pg_repl_compare": {"sync": "copybeta"}},
        {"name": "info", "pgrepl.cluster.pg_repl_info": {}},
        {"name": "bad", "pgrepl.cluster.pg_repl_compare": {"sync": "nosuch"}, "ignore_errors": True},
    ]
    run = w.play(tasks)

    equal = run["equal"]
    assert (equal["changed"], equal["equal"], equal["differences"], equal["rows"]) == (False, True, 0, 16)
    found = run["found"]
    assert (found["changed"], found["equal"], found["differences"]) == (False, False, 2)
    tables = {t["table"]: t for t in found["syncs"][0]["tables"]}
    assert tables["public.accounts"]["different"] == [{"id": "3"}]
    assert tables["public.tellers"]["missing"] == [{"id": "6"}]

    check = run["check"]
    assert check["changed"] and not check["repaired"]
    assert check["actions"] == ["would copy 1 row(s) of public.accounts from test1_master to test1_slave",
                                "would copy 1 row(s) of public.tellers from test1_master to test1_slave"]
    assert run["after check"]["stdout"] == "99,0"      # check mode changed nothing

    repaired = run["repaired"]
    assert (repaired["changed"], repaired["repaired"], repaired["differences"]) == (True, True, 2)
    assert run["after repair"]["stdout"] == "0,1"
    assert (run["again"]["changed"], run["again"]["equal"]) == (False, True)

    (row,) = run["multiset"]["syncs"][0]["tables"][0]["missing"]   # the same row twice, on the source only
    assert row["count"] == 2 and row["row"].startswith("(1,1,"), run["multiset"]

    info = run["info"]
    assert info["compares"]["deltaalpha"]["equal"] and not info["compares"]["copybeta"]["equal"]
    assert 'No sync named "nosuch"' in run["bad"]["msg"]
