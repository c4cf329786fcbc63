"""The catalog part of the sync_runner role (tasks_from: declare): from the inventory variables of
docs/inventory-schema.md to the catalog of one runner, and pgrepl_prune. The install part (apt, systemd) needs a
Debian host with systemd: the molecule scenario on the lab covers it."""

from __future__ import annotations

import copy

import yaml
from conftest import ROOT
from pgrepl import passfile

DECLARE = [{"name": "declare", "ansible.builtin.include_role": {"name": "pgrepl.cluster.sync_runner",
                                                                "tasks_from": "declare"}}]
MODULE_TASKS = ("Declare the databases", "Declare the database groups", "Declare the herds", "Declare the syncs")


def inventory(w) -> dict:
    return {
        "sync_runner_name": "master",
        "sync_runner_control_login": dict(w.login),
        "sync_runner_control_become": False,
        "pgrepl_replication_user": "postgres",
        "pgrepl_replication_password": "not-needed-with-trust",
        "pgrepl_databases": [{"name": f"test1_{c}", "dbname": "test1", "host": "127.0.0.1", "port": w.c[c].port}
                             for c in ("master", "slave", "master2")],
        "pgrepl_dbgroups": [{"name": "test1_history", "members": ["test1_slave", "test1_master2"]}],
        "pgrepl_herds": [
            {"name": "alpha", "db": "test1_master", "tables": "all", "exclude_tables": ["public.history"]},
            {"name": "beta", "db": "test1_master", "tables": ["public.history"]},
            {"name": "gamma", "db": "test1_master2", "tables": ["public.branches"], "standard_conflict": "source"},
        ],
        "pgrepl_syncs": [
            {"name": "benchdeltaalpha", "runner": "master", "type": "pushdelta", "source": "alpha",
             "targetdb": "test1_slave"},
            {"name": "benchcopybeta", "runner": "master", "type": "fullcopy", "source": "beta",
             "targetgroup": "test1_history"},
            {"name": "benchswapgamma", "runner": "master2", "type": "swap", "source": "gamma",
             "targetdb": "test1_master"},
        ],
        "pgrepl_prune": False,
        "pgrepl_tls": False,     # the local test clusters serve no TLS (tests/runner/test_secrets.py covers verify-full)
    }


def module_changes(run) -> dict[str, bool]:
    return {name: changed for name, changed in run.changed().items() if name in MODULE_TASKS
            or name.startswith("Remove the")}


def test_a_runner_declares_only_its_own_syncs_and_what_they_need(world):
    inv = inventory(world)
    check = world.play(DECLARE, "--check", vars=inv)
    assert module_changes(check) == dict.fromkeys(MODULE_TASKS, True)
    assert world.names("dbs") == []

    world.play(DECLARE, vars=inv)
    assert world.names("syncs") == ["benchcopybeta", "benchdeltaalpha"]      # not master2's swap
    assert world.names("herds") == ["alpha", "beta"]
    assert world.names("dbgroups") == ["test1_history"]
    assert world.names("dbs") == ["test1_master", "test1_master2", "test1_slave"]
    assert all(d["username"] == "postgres" for d in world.catalog()["dbs"])
    assert world.triggers("master", "public.accounts") != [] and world.triggers("master2", "public.branches") == []

    assert module_changes(world.play(DECLARE, vars=inv)) == dict.fromkeys(MODULE_TASKS, False)
    assert module_changes(world.play(DECLARE, "--check", vars=inv)) == dict.fromkeys(MODULE_TASKS, False)


def test_pgrepl_prune_removes_what_the_inventory_no_longer_declares(world):
    inv = inventory(world)
    world.play(DECLARE, vars=inv)
    less = copy.deepcopy(inv)
    less["pgrepl_syncs"] = [s for s in less["pgrepl_syncs"] if s["name"] != "benchdeltaalpha"]

    world.play(DECLARE, vars=less)    # pgrepl_prune: false -> kept
    assert world.names("syncs") == ["benchcopybeta", "benchdeltaalpha"]

    less["pgrepl_prune"] = True
    check = world.play(DECLARE, "--check", vars=less)
    assert check["Remove the syncs no longer declared"]["changed"]
    assert world.names("syncs") == ["benchcopybeta", "benchdeltaalpha"]
    assert world.triggers("master", "public.accounts") != []

    run = world.play(DECLARE, vars=less)
    assert [r["item"] for r in run["Remove the syncs no longer declared"]["results"]] == ["benchdeltaalpha"]
    assert world.names("syncs") == ["benchcopybeta"]
    assert world.names("herds") == ["beta"]
    assert world.names("dbs") == ["test1_master", "test1_master2", "test1_slave"]   # all still used by the group
    assert world.triggers("master", "public.accounts") == []
    assert world.q("master", "SELECT count(*) FROM pgrepl.consumer") == [(0,)]
    assert not any(module_changes(world.play(DECLARE, vars=less)).values())


def test_passwords_go_to_the_password_file_and_nowhere_in_the_output(world):
    """A database's own password and the replication password: written to the runner's password file (0600), not
    to the catalog, and shown nowhere, not even at -vvv where results carry the whole loop item."""
    inv = inventory(world)
    inv["pgrepl_databases"][1]["password"] = "per-db-s3cret"
    run = world.play(DECLARE, "-vvv", vars=inv)
    assert "per-db-s3cret" not in run.text and "not-needed-with-trust" not in run.text
    dbs = {d["name"]: d for d in world.catalog()["dbs"]}
    assert passfile.get(dbs["test1_slave"]) == "per-db-s3cret"
    assert passfile.get(dbs["test1_master"]) == "not-needed-with-trust"
    assert oct(passfile.path().stat().st_mode & 0o777) == "0o600"


def test_the_replication_password_is_no_log_in_the_argument_specs():
    for role in ("sync_runner", "postgresql"):
        spec = yaml.safe_load((ROOT / f"roles/{role}/meta/argument_specs.yml").read_text())
        assert spec["argument_specs"]["main"]["options"]["pgrepl_replication_password"]["no_log"] is True, role


def test_the_status_entry_point_shows_a_line_per_sync_of_this_runner(world):
    """playbooks/status.yml's part: pg_repl_info's status, a line per sync, only those asked for when named."""
    inv = inventory(world)
    world.play(DECLARE, vars=inv)
    status = [{"name": "status", "ansible.builtin.include_role": {"name": "pgrepl.cluster.sync_runner",
                                                                  "tasks_from": "status"}}]
    lines = world.play(status, vars=inv)["Show it"]["msg"]
    assert [line.split()[0] for line in lines] == ["benchcopybeta", "benchdeltaalpha"]
    assert lines[1].startswith("benchdeltaalpha (pushdelta, active): no worker yet; last good: none; last bad: none")

    lines = world.play(status, vars=dict(inv, sync_runner_status_syncs=["benchdeltaalpha"]))["Show it"]["msg"]
    assert [line.split()[0] for line in lines] == ["benchdeltaalpha"]
    unknown = world.play(status, vars=dict(inv, sync_runner_status_syncs=["nosuchsync"]), expect_rc=2)
    assert "Not in the catalog of localhost: nosuchsync" in unknown.failed()["Check that the syncs asked for are this runner's"]


def test_the_argument_specs_refuse_a_wrong_sync_type_before_anything_is_declared(world):
    inv = inventory(world)
    inv["pgrepl_syncs"][0]["type"] = "pushdleta"
    run = world.play(DECLARE, vars=inv, expect_rc=2)
    assert "pushdleta" in run.text and "pgrepl_syncs" in run.text, run.text[-3000:]
    assert world.names("dbs") == []
