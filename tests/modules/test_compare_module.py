"""pg_repl_compare as a playbook uses it: check mode compares and changes nothing (a repair is predicted),
repair: true makes the target equal and is reported as changed, then nothing to do; pg_repl_info returns the
last result per sync."""

from __future__ import annotations


def declared(w) -> list[dict]:
    return [
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
    ]


COMPARE = {"name": "compare", "pgrepl.cluster.pg_repl_compare": {"sync": "deltaalpha"}}
REPAIR = {"name": "compare", "pgrepl.cluster.pg_repl_compare": {"sync": "deltaalpha", "repair": True}}


def test_check_mode_compares_repair_changes_then_nothing_to_do(world):
    w = world
    w.play(declared(w))
    equal = w.play([COMPARE])["compare"]
    assert (equal["changed"], equal["equal"], equal["differences"], equal["rows"]) == (False, True, 0, 16)

    w.x("slave", "UPDATE accounts SET balance = 99 WHERE id = 3")
    w.x("slave", "DELETE FROM tellers WHERE id = 6")
    w.x("master", "INSERT INTO history VALUES (1, 1, '2026-01-01'), (1, 1, '2026-01-01')")   # fullcopy not run yet
    found = w.play([COMPARE])["compare"]
    assert (found["changed"], found["equal"], found["differences"]) == (False, False, 2)
    tables = {t["table"]: t for t in found["syncs"][0]["tables"]}
    assert tables["public.accounts"]["different"] == [{"id": "3"}]
    assert tables["public.tellers"]["missing"] == [{"id": "6"}]

    check = w.play([REPAIR], "--check")["compare"]
    assert check["changed"] and not check["repaired"]
    assert check["actions"] == ["would copy 1 row(s) of public.accounts from test1_master to test1_slave",
                                "would copy 1 row(s) of public.tellers from test1_master to test1_slave"]
    assert w.q("slave", "SELECT balance FROM accounts WHERE id = 3") == [(99,)]
    assert w.q("slave", "SELECT count(*) FROM tellers WHERE id = 6") == [(0,)]

    repaired = w.play([REPAIR])["compare"]
    assert (repaired["changed"], repaired["repaired"], repaired["differences"]) == (True, True, 2)
    assert w.q("slave", "SELECT balance FROM accounts WHERE id = 3") == [(0,)]
    assert w.q("slave", "SELECT count(*) FROM tellers WHERE id = 6") == [(1,)]
    again = w.play([REPAIR])["compare"]
    assert (again["changed"], again["equal"]) == (False, True)

    multiset = w.play([{"name": "compare", "pgrepl.cluster.pg_repl_compare": {"sync": "copybeta"}}])["compare"]
    (row,) = multiset["syncs"][0]["tables"][0]["missing"]   # the same row twice, on the source only
    assert row["count"] == 2 and row["row"].startswith("(1,1,"), multiset

    info = w.play([{"name": "info", "pgrepl.cluster.pg_repl_info": {}}])["info"]
    assert info["compares"]["deltaalpha"]["equal"] and not info["compares"]["copybeta"]["equal"]
    bad = w.play([{"name": "compare", "pgrepl.cluster.pg_repl_compare": {"sync": "nosuch"}}], expect_rc=2)
    assert 'No sync named "nosuch"' in bad.failed()["compare"]
