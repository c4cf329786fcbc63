"""The pgrepl.cluster modules as a playbook uses them: check mode, apply, idempotence, diff, bad input,
in-place changes, removal. Observations go through the runner library (the catalog as `pgrepl list --json` shows
it), pg_trigger on the databases, and the JSON callback's results."""

from __future__ import annotations

import psycopg
import pytest
from pgrepl import catalog, passfile

CAPTURE = ["pgrepl_capture_del", "pgrepl_capture_ins", "pgrepl_capture_trunc", "pgrepl_capture_upd",
           "pgrepl_capture_upd_key"]


def declaration(w) -> list[dict]:
    """The topology of docs/inventory-schema.md in small: three databases, a group, three herds, three syncs."""
    return [
        {"name": "db master", "pgrepl.cluster.pg_repl_db": w.member("test1_master")},
        {"name": "db slave", "pgrepl.cluster.pg_repl_db": w.member("test1_slave")},
        {"name": "db master2", "pgrepl.cluster.pg_repl_db": w.member("test1_master2")},
        {"name": "dbgroup", "pgrepl.cluster.pg_repl_dbgroup": {
            "name": "test1_targets", "members": ["test1_slave", "test1_master2"]}},
        {"name": "herd alpha", "pgrepl.cluster.pg_repl_herd": {
            "name": "alpha", "db": "test1_master", "tables": "all",
            "exclude_tables": ["public.history", "branches"], "sequences": ["ticket_seq"]}},
        {"name": "herd beta", "pgrepl.cluster.pg_repl_herd": {
            "name": "beta", "db": "test1_master", "tables": ["public.history"]}},
        {"name": "herd gamma", "pgrepl.cluster.pg_repl_herd": {
            "name": "gamma", "db": "test1_master2", "tables": ["public.branches"], "standard_conflict": "source"}},
        {"name": "sync deltaalpha", "pgrepl.cluster.pg_repl_sync": {
            "name": "deltaalpha", "type": "pushdelta", "source": "alpha", "targetdb": "test1_slave"}},
        {"name": "sync copybeta", "pgrepl.cluster.pg_repl_sync": {
            "name": "copybeta", "type": "fullcopy", "source": "beta", "targetgroup": "test1_targets",
            "checktime": "10 minutes"}},
        {"name": "sync swapgamma", "pgrepl.cluster.pg_repl_sync": {
            "name": "swapgamma", "type": "swap", "source": "gamma", "targetdb": "test1_master"}},
    ]


def all_triggers(w) -> dict[str, list[str]]:
    return {f"{c}.{t}": w.triggers(c, f"public.{t}") for c in ("master", "slave", "master2")
            for t in ("accounts", "branches", "tellers", "history")}


def test_check_mode_on_an_empty_catalog_predicts_everything_then_apply_then_nothing_to_do(world):
    tasks = declaration(world)
    names = [t["name"] for t in tasks]

    check = world.play(tasks, "--check", "--diff")
    assert check.changed() == dict.fromkeys(names, True)
    assert world.catalog() == {"dbs": [], "dbgroups": [], "herds": [], "relations": [], "syncs": []}
    assert not any(all_triggers(world).values())
    # what could not be resolved yet is said, not failed on
    assert any("test1_master is not in the catalog yet" in n for n in check["herd alpha"]["notes"])
    assert any("herd alpha is not in the catalog yet" in n for n in check["sync deltaalpha"]["notes"])
    assert check["sync deltaalpha"]["actions"] == ["add sync deltaalpha (pushdelta alpha => test1_slave), active"]
    assert check["sync copybeta"]["diff"]["before"] == {}

    apply = world.play(tasks, "--diff")
    assert apply.changed() == dict.fromkeys(names, True)
    assert apply["herd alpha"]["actions"] == ["add herd alpha", "add tables public.accounts, public.tellers to herd "
                                              "alpha", "add sequences public.ticket_seq to herd alpha"]
    cat = world.catalog()
    assert [d["name"] for d in cat["dbs"]] == ["test1_master", "test1_master2", "test1_slave"]
    assert cat["dbgroups"] == [{"name": "test1_targets", "members": ["test1_master2", "test1_slave"]}]
    herds = {h["name"]: h for h in cat["herds"]}
    assert sorted(herds["alpha"]["members"]) == ["public.accounts", "public.tellers", "public.ticket_seq"]
    assert herds["gamma"]["members"] == ["public.branches"] and herds["gamma"]["db"] == "test1_master2"
    syncs = {s["name"]: s for s in cat["syncs"]}
    assert (syncs["deltaalpha"]["targets"], syncs["deltaalpha"]["status"]) == (["test1_slave"], "active")
    assert syncs["copybeta"]["targets"] == ["test1_master2", "test1_slave"]
    assert str(syncs["copybeta"]["checktime"]) == "0:10:00"
    gamma = [r for r in cat["relations"] if r["db"] == "test1_master2"]
    assert [r["standard_conflict"] for r in gamma] == ["source"]
    trig = all_triggers(world)
    assert trig["master.accounts"] == trig["master.tellers"] == CAPTURE       # pushdelta source
    assert trig["master2.branches"] == trig["master.branches"] == CAPTURE     # both sides of the swap
    assert trig["master.history"] == [] and trig["slave.accounts"] == []     # fullcopy captures nothing

    again = world.play(tasks, "--diff")
    assert again.changed() == dict.fromkeys(names, False)
    assert all(r["actions"] == [] for r in again.results.values())
    assert again["sync deltaalpha"]["diff"]["before"] == again["sync deltaalpha"]["diff"]["after"]
    assert world.play(tasks, "--check").changed() == dict.fromkeys(names, False)

    info = world.play([{"name": "info", "pgrepl.cluster.pg_repl_info": {}}])["info"]
    assert [s["name"] for s in info["syncs"]] == ["copybeta", "deltaalpha", "swapgamma"]
    assert [s["name"] for s in info["status"]] == ["copybeta", "deltaalpha", "swapgamma"]
    assert all(d["has_password"] and "password" not in d for d in info["dbs"])
    assert info["settings"]["capture_notify"] == "off"


def test_check_mode_before_the_control_database_exists(world, empty_control):
    check = world.play(declaration(world), "--check")
    assert set(check.changed().values()) == {True}
    assert all(any("does not exist yet" in n for n in r["notes"]) for r in check.results.values())
    failed = world.play(declaration(world)[:1], expect_rc=2)
    assert 'database "pgrepl" does not exist' in failed.failed()["db master"]


def test_diff_shows_before_and_after_with_the_password_masked(world):
    world.play(declaration(world)[:1])
    changed = dict(world.member("test1_master"), port=5433, password="an0ther-secret")
    run = world.play([{"name": "db", "pgrepl.cluster.pg_repl_db": changed}], "--diff")
    diff = run["db"]["diff"]
    assert (diff["before"]["port"], diff["after"]["port"]) == (world.c["master"].port, 5433)
    assert (diff["before"]["password"], diff["after"]["password"]) == ("********", "******** (changed)")
    assert run["db"]["actions"] == ["update database test1_master: port, password"]
    assert "an0ther-secret" not in run.text and "s3cret-test1_master" not in run.text
    db = world.catalog()["dbs"][0]
    assert (db["port"], passfile.get(db), "password" in db) == (5433, "an0ther-secret", False)
    assert "s3cret-test1_master" not in passfile.path().read_text()     # the old port's line went with it
    assert oct(passfile.path().stat().st_mode & 0o777) == "0o600"
    tls = dict(changed, ssl_mode="verify-full", ca_cert="/etc/pgrepl/cluster-ca.crt")
    run = world.play([{"name": "db", "pgrepl.cluster.pg_repl_db": tls}])
    assert run["db"]["actions"] == ["update database test1_master: ssl_mode, ca_cert"]
    db = world.catalog()["dbs"][0]
    assert (db["sslmode"], db["sslrootcert"]) == ("verify-full", "/etc/pgrepl/cluster-ca.crt")
    with psycopg.connect(world.control) as c:
        assert "an0ther-secret" not in str(c.execute("SELECT t::text FROM pgrepl.db t").fetchall())


BAD = [
    # (task, words the failure message must hold)
    ({"pgrepl.cluster.pg_repl_sync": {"name": "bench-delta", "source": "alpha", "targetdb": "test1_slave"}},
     ['Invalid sync name "bench-delta"', 'use "bench_delta"']),
    ({"pgrepl.cluster.pg_repl_db": dict(name="test1-other", dbname="test1")}, ["a hyphen is not allowed"]),
    ({"pgrepl.cluster.pg_repl_herd": {"name": "del-ta", "db": "test1_master", "tables": "all"}},
     ['Invalid herd name "del-ta"']),
    ({"pgrepl.cluster.pg_repl_herd": {"name": "alpha", "db": "test1_master", "tables": ["public.accounts",
                                                                                       "public.history"]}},
     ["public.history has no primary key", 'herd "alpha"']),
    ({"pgrepl.cluster.pg_repl_herd": {"name": "alpha", "db": "test1_master2", "tables": "all"}},
     ['Herd "alpha" holds tables of database "test1_master"']),
    ({"pgrepl.cluster.pg_repl_herd": {"name": "alpha", "db": "test1_master", "tables": ["nope"]}},
     ['No table named "nope" in database "test1_master"']),
    ({"pgrepl.cluster.pg_repl_sync": {"name": "deltabeta", "source": "beta", "targetdb": "test1_slave"}},
     ["Table public.history (herd \"beta\") has no primary key", "type=fullcopy"]),
    ({"pgrepl.cluster.pg_repl_sync": {"name": "loop", "source": "alpha", "targetdb": "test1_master"}},
     ['database "test1_master" cannot be both source and target']),
    ({"pgrepl.cluster.pg_repl_sync": {"name": "swapgroup", "type": "swap", "source": "alpha",
                                      "targetgroup": "test1_targets"}}, ["joins exactly two databases"]),
    ({"pgrepl.cluster.pg_repl_sync": {"name": "deltaalpha", "source": "alpha", "targetdb": "test1_slave",
                                      "checktime": "soon"}}, ['Invalid interval "soon"']),
    ({"pgrepl.cluster.pg_repl_sync": {"name": "deltaalpha", "source": "beta", "targetdb": "test1_slave"}},
     ["Table public.history (herd \"beta\") has no primary key"]),   # an in-place change refused: sync kept
    ({"pgrepl.cluster.pg_repl_dbgroup": {"name": "test1_targets", "members": ["test1_master", "test1_slave"]}},
     ['database "test1_master" cannot be both source and target']),
]
BAD_REAL_ONLY = [   # in check mode these are assumed to be declared by an earlier task
    ({"pgrepl.cluster.pg_repl_sync": {"name": "orphan", "source": "nope", "targetdb": "test1_slave"}},
     ['Sync "orphan" refers to herd nope, not in the catalog']),
    ({"pgrepl.cluster.pg_repl_herd": {"name": "omega", "db": "test1_nowhere", "tables": "all"}},
     ['No database named "test1_nowhere"']),
    ({"pgrepl.cluster.pg_repl_dbgroup": {"name": "grp", "members": ["test1_nowhere"]}},
     ['No database named "test1_nowhere"']),
    ({"pgrepl.cluster.pg_repl_herd": {"name": "beta", "state": "absent"}}, ['used by sync(s) copybeta']),
    ({"pgrepl.cluster.pg_repl_db": {"name": "test1_slave", "state": "absent"}}, ["used by sync(s) deltaalpha"]),
]


@pytest.mark.parametrize("check", [False, True], ids=["apply", "check"])
def test_bad_input_fails_cleanly_and_changes_nothing(world, check):
    tasks = declaration(world)[:6] + declaration(world)[7:9]     # no swap: gamma and swapgamma left out
    world.play(tasks)
    before, triggers = world.catalog(), all_triggers(world)
    bad = BAD + ([] if check else BAD_REAL_ONLY)
    run = world.play([dict(task, name=f"bad {i}", ignore_errors=True) for i, (task, _) in enumerate(bad)],
                     *(["--check"] if check else []))
    failed = run.failed()
    for i, (task, words) in enumerate(bad):
        assert f"bad {i}" in failed, f"{task} did not fail: {run[f'bad {i}']}"
        for word in words:
            assert word in failed[f"bad {i}"], f"{task}: {failed[f'bad {i}']!r} lacks {word!r}"
    assert world.catalog() == before
    assert all_triggers(world) == triggers


def test_a_sync_changed_in_place_keeps_the_changes_captured_meanwhile(world):
    tasks = declaration(world)[:5]
    sync = {"name": "deltaalpha", "source": "alpha", "targetdb": "test1_slave"}
    world.play(tasks + [{"name": "sync", "pgrepl.cluster.pg_repl_sync": sync}])
    world.x("master", "UPDATE accounts SET balance = 1 WHERE id = 1")   # captured, not applied: no runner yet

    moved = {"name": "deltaalpha", "source": "alpha", "targetgroup": "test1_targets"}
    check = world.play([{"name": "sync", "pgrepl.cluster.pg_repl_sync": moved}], "--check", "--diff")
    assert check.changed() == {"sync": True}
    assert world.catalog()["syncs"][0]["targetdb"] == "test1_slave"
    run = world.play([{"name": "sync", "pgrepl.cluster.pg_repl_sync": moved}], "--diff")
    assert run["sync"]["actions"] == ["change sync deltaalpha in place: pushdelta alpha => test1_targets "
                                      "(was pushdelta alpha => test1_slave)"]
    assert (run["sync"]["diff"]["before"]["targetdb"], run["sync"]["diff"]["after"]["targetgroup"]) == \
        ("test1_slave", "test1_targets")
    s = world.catalog()["syncs"][0]
    assert (s["targets"], s["status"]) == (["test1_master2", "test1_slave"], "active")
    assert world.play([{"name": "sync", "pgrepl.cluster.pg_repl_sync": moved}]).changed() == {"sync": False}

    world.x("master", "UPDATE accounts SET balance = 2 WHERE id = 2")   # after the change: for both targets
    world.start()
    balance = "SELECT id, balance FROM accounts WHERE id IN (1, 2) ORDER BY id"
    world.wait_for(lambda: world.q("slave", balance) == [(1, 1), (2, 2)], "both changes on the kept target")
    world.wait_for(lambda: world.q("master2", balance) == [(1, 0), (2, 2)], "the later change on the new target")

    # and back to one target: the target that leaves stops being fed (its position is dropped on the source)
    world.play([{"name": "sync", "pgrepl.cluster.pg_repl_sync": sync}])
    world.x("master", "UPDATE accounts SET balance = 3 WHERE id = 3")
    world.wait_for(lambda: world.q("slave", "SELECT balance FROM accounts WHERE id = 3") == [(3,)], "id 3 on slave")
    consumers = world.q("master", "SELECT split_part(sync, '@', 1), target FROM pgrepl.consumer ORDER BY 2")
    assert consumers == [("deltaalpha", "test1_slave")]


def test_a_herd_is_exactly_what_is_declared(world):
    tasks = declaration(world)[:5] + [{"name": "sync", "pgrepl.cluster.pg_repl_sync": {
        "name": "deltaalpha", "source": "alpha", "targetdb": "test1_slave"}}]
    world.play(tasks)
    assert world.triggers("master", "public.tellers") == CAPTURE
    fewer = {"name": "herd", "pgrepl.cluster.pg_repl_herd": {"name": "alpha", "db": "test1_master",
                                                             "tables": ["accounts"], "standard_conflict": "latest"}}
    run = world.play([fewer], "--diff")
    assert run["herd"]["actions"] == ["remove tables public.tellers from herd alpha",
                                      "remove sequences public.ticket_seq from herd alpha",
                                      "set standard_conflict latest on public.accounts of herd alpha"]
    assert run["herd"]["diff"]["after"]["tables"] == ["public.accounts"]
    assert world.catalog()["herds"][0]["members"] == ["public.accounts"]
    assert world.triggers("master", "public.tellers") == []              # nobody captures it any more
    assert world.triggers("master", "public.accounts") == CAPTURE
    assert world.play([fewer]).changed() == {"herd": False}
    assert world.play(tasks[4:5]).changed() == {"herd alpha": True}      # back: tellers captured again
    assert world.triggers("master", "public.tellers") == CAPTURE


def test_state_absent_removes_an_active_sync_and_its_triggers(world):
    world.play(declaration(world)[:5] + declaration(world)[7:8])
    assert world.triggers("master", "public.accounts") == CAPTURE
    absent = [{"name": "sync", "pgrepl.cluster.pg_repl_sync": {"name": "deltaalpha", "state": "absent"}},
              {"name": "herd", "pgrepl.cluster.pg_repl_herd": {"name": "alpha", "state": "absent"}}]
    check = world.play(absent, "--check")
    assert check.changed() == {"sync": True, "herd": True}
    assert world.names("syncs") == ["deltaalpha"]
    run = world.play(absent)
    assert run["sync"]["actions"][:2] == ["deactivate sync deltaalpha", "remove sync deltaalpha"]
    assert sorted(run["sync"]["removed_captures"]) == ["test1_master: public.accounts", "test1_master: public.tellers"]
    assert world.names("syncs") == [] and world.names("herds") == []
    assert world.triggers("master", "public.accounts") == world.triggers("master", "public.tellers") == []
    assert world.q("master", "SELECT count(*) FROM pgrepl.consumer") == [(0,)]
    assert world.play(absent).changed() == {"sync": False, "herd": False}


def test_active_false_deactivates_and_keeps_capturing(world):
    sync = {"name": "deltaalpha", "source": "alpha", "targetdb": "test1_slave", "active": False}
    world.play(declaration(world)[:5] + [{"name": "sync", "pgrepl.cluster.pg_repl_sync": sync}])
    assert world.catalog()["syncs"][0]["status"] == "inactive"
    assert world.triggers("master", "public.accounts") == CAPTURE
    run = world.play([{"name": "sync", "pgrepl.cluster.pg_repl_sync": dict(sync, active=True, makedelta=True)}])
    assert run["sync"]["actions"] == ["set makedelta=True of sync deltaalpha", "activate sync deltaalpha"]
    s = world.catalog()["syncs"][0]
    assert (s["status"], s["makedelta"]) == ("active", True)


def test_a_sync_moved_to_a_herd_of_another_database_leaves_nothing_behind(world):
    world.play(declaration(world)[:5] + [
        {"name": "herd delta2", "pgrepl.cluster.pg_repl_herd": {"name": "delta2", "db": "test1_master2",
                                                               "tables": ["accounts", "tellers"]}},
        {"name": "sync", "pgrepl.cluster.pg_repl_sync": {"name": "deltaalpha", "source": "alpha",
                                                         "targetdb": "test1_slave"}}])
    assert world.triggers("master", "public.accounts") == CAPTURE
    run = world.play([{"name": "sync", "pgrepl.cluster.pg_repl_sync": {"name": "deltaalpha", "source": "delta2",
                                                                       "targetdb": "test1_slave"}}])
    assert run.changed() == {"sync": True}
    s = world.catalog()["syncs"][0]
    assert (s["source"], s["targets"], s["status"]) == ("test1_master2", ["test1_slave"], "active")
    assert world.triggers("master2", "public.accounts") == CAPTURE
    assert world.triggers("master", "public.accounts") == world.triggers("master", "public.tellers") == []
    assert world.q("master", "SELECT count(*) FROM pgrepl.consumer") == [(0,)]
    assert world.q("master2", "SELECT split_part(sync, '@', 1), target FROM pgrepl.consumer") == [("deltaalpha", "test1_slave")]


def test_without_the_runner_library_the_modules_say_what_is_missing(world):
    # Debian's own python3 has neither psycopg nor pgrepl here: what a host looks like before the sync_runner role
    run = world.play([{"name": "info", "pgrepl.cluster.pg_repl_info": {}}],
                     "-e", "ansible_python_interpreter=/usr/bin/python3", expect_rc=2)
    assert "Failed to import the required Python library (pgrepl (shipped by the pgrepl.cluster.sync_runner role))" \
        in run.failed()["info"]


def test_delta_columns_of_a_swap_herd_declared_changed_and_removed(world):
    def gamma(delta_columns):
        return {"name": "herd gamma", "pgrepl.cluster.pg_repl_herd": {
            "name": "gamma", "db": "test1_master2", "tables": ["public.accounts"], "delta_columns": delta_columns}}

    def captured() -> dict:
        return {h: world.q(h, "SELECT deltacols FROM pgrepl.capture WHERE relname = 'accounts'")
                for h in ("master", "master2")}

    tasks = declaration(world)
    world.play(tasks[:3] + [gamma({"accounts": ["balance"]}), tasks[9]])
    assert [r["delta_columns"] for r in world.catalog()["relations"] if r["db"] == "test1_master2"] == [["balance"]]
    assert captured() == {"master": [(["balance"],)], "master2": [(["balance"],)]}   # both sides of the swap
    assert world.play([gamma({"public.accounts": ["balance"]})]).changed() == {"herd gamma": False}
    run = world.play([gamma({})], "--diff")
    assert run["herd gamma"]["actions"] == ["set delta_columns none on public.accounts of herd gamma"]
    assert captured() == {"master": [([],)], "master2": [([],)]}
    world.play([gamma({"accounts": ["id"]})], expect_rc=2)   # a key column: refused, nothing changed
    assert captured() == {"master": [([],)], "master2": [([],)]}


def stored_settings(w, names) -> dict[str, str]:
    with catalog.open_control(w.control) as conn:
        return {n: v for n, v in catalog.all_settings(conn).items() if n in names}


def test_settings_are_predicted_in_check_mode_then_set_once_with_yaml_booleans_taken_as_words(world):
    # False and True: what YAML makes of an unquoted `no` and `on`
    wanted = {"days_back": 7, "fullcopy_analyze": False, "capture_notify": True, "log_level": "debug",
              "busy_interval": 0.2}
    task = {"name": "settings", "pgrepl.cluster.pg_repl_settings": {"settings": wanted}}
    defaults = {"days_back": "3", "fullcopy_analyze": "yes", "capture_notify": "off", "log_level": "info",
                "busy_interval": "0"}
    words = {"days_back": "7", "fullcopy_analyze": "no", "capture_notify": "on", "log_level": "debug",
             "busy_interval": "0.2"}

    check = world.play([task], "--check", "--diff")["settings"]
    assert check["changed"] and (check["diff"]["before"], check["diff"]["after"]) == (defaults, words)
    assert check["restart"] == ["log_level"]
    assert stored_settings(world, wanted) == defaults

    apply = world.play([task], "--diff")["settings"]
    assert apply["changed"] and apply["settings"] == words and apply["restart"] == ["log_level"]
    assert "set fullcopy_analyze to 'no' (was 'yes')" in apply["actions"]
    assert stored_settings(world, wanted) == words

    again = world.play([task], "--check")["settings"]
    assert (again["changed"], again["actions"], again["restart"]) == (False, [], [])
    again = world.play([task])["settings"]
    assert (again["changed"], again["actions"], again["restart"]) == (False, [], [])


@pytest.mark.parametrize("check", [False, True], ids=["apply", "check"])
def test_a_bad_setting_fails_the_task_and_sets_none_of_the_others(world, check):
    bad = [({"days_back": 7, "log_level": True}, "Invalid value true for log_level: not a yes/no setting"),
           ({"days_back": 7, "busy_intervall": 1}, 'Unknown setting "busy_intervall"'),
           ({"days_back": 7, "batch_size": "many"}, 'Invalid value "many" for batch_size: must be a whole number')]
    run = world.play([{"name": f"bad {i}", "ignore_errors": True, "pgrepl.cluster.pg_repl_settings": {"settings": s}}
                      for i, (s, _) in enumerate(bad)], *(["--check"] if check else []))
    failed = run.failed()
    for i, (_, words) in enumerate(bad):
        assert words in failed.get(f"bad {i}", ""), run[f"bad {i}"]
    assert stored_settings(world, ["days_back"]) == {"days_back": "3"}
