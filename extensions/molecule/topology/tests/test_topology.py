"""The cluster follows its inventory (TOPOLOGY_STAGE): two hosts with a pushdelta; then the founding document's
three; then benchswapgamma pruned, its triggers gone, the other syncs still running."""

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared/tests"))
from lab import HERD_TABLES, checksum, host, mark, pgrepl, runner_user, sql, wait_for  # noqa: E402

STAGE = os.environ["TOPOLOGY_STAGE"]
only = {s: pytest.mark.skipif(STAGE != s, reason=f"stage {s} only") for s in ("two", "three", "prune")}


def pgrepl_triggers(name: str) -> int:
    return int(sql(name, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgrepl%'"))


def swap_subscriptions_on_master() -> int:
    """The tables of master whose capture benchswapgamma reads (master is its target, captured too)."""
    return int(sql("master", "SELECT count(*) FROM pgrepl.subscription WHERE sync LIKE 'benchswapgamma@%'"))


def pushdelta_works() -> None:
    value = mark("pushdelta")[:84]
    sql("master", f"UPDATE pgbench_accounts SET filler = '{value}' WHERE aid = 11")
    wait_for(lambda: sql("slave", "SELECT trim(filler) FROM pgbench_accounts WHERE aid = 11") == value, 15,
             "master's update on slave")


@only["two"]
def test_two_hosts_pushdelta_and_master2_untouched():
    # also after stage three's run in check mode (lab/molecule.sh): it changed nothing
    pushdelta_works()
    assert not host("master2").package("postgresql-15").is_installed
    assert not host("master2").user("pgrepl_runner").exists
    assert "benchdeltaalpha" in pgrepl("master", "list", "syncs")
    assert runner_user("master") == "pgrepl_before"
    assert not host("master").user("pgrepl_runner").exists


@only["three"]
def test_three_hosts_swap_both_ways_and_the_dbgroup_fullcopy():
    pushdelta_works()
    one, two = mark("from master2")[:84], mark("from master")[:84]
    sql("master2", f"UPDATE pgbench_accounts SET filler = '{one}' WHERE aid = 12")
    sql("master", f"UPDATE pgbench_accounts SET filler = '{two}' WHERE aid = 13")
    wait_for(lambda: sql("master", "SELECT trim(filler) FROM pgbench_accounts WHERE aid = 12") == one, 15, "swap in")
    wait_for(lambda: sql("master2", "SELECT trim(filler) FROM pgbench_accounts WHERE aid = 13") == two, 15, "swap out")
    sql("master", "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 7, now())")
    pgrepl("master", "kick", "benchcopybeta", "--wait", "120")
    for name in ("slave", "master2"):
        assert checksum(name, "pgbench_history") == checksum("master", "pgbench_history")
    assert pgrepl_triggers("master2") > 0
    assert swap_subscriptions_on_master() == len(HERD_TABLES)


@only["three"]
def test_a_new_runner_user_takes_over_the_control_database_and_its_catalog():
    # stage two ran as pgrepl_before; the same catalog (one identity, so one position on the source) now belongs to
    # pgrepl_runner, with the password file, and the runner runs as that user
    assert runner_user("master") == "pgrepl_runner"
    assert sql("master", "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'pgrepl'") == "pgrepl_runner"
    assert sql("master", "SELECT string_agg(DISTINCT pg_get_userbyid(c.relowner), ',') FROM pg_class c JOIN "
                         "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pgrepl'", db="pgrepl") \
        == "pgrepl_runner"
    assert sql("master", "SELECT count(DISTINCT sync) FROM pgrepl.consumer WHERE sync LIKE 'benchdeltaalpha@%'") == "1"
    f = host("master").file("/var/lib/pgrepl/pgpass")
    assert (f.user, f.mode) == ("pgrepl_runner", 0o600)
    pushdelta_works()


@only["prune"]
def test_the_pruned_swap_is_gone_with_its_triggers_and_the_rest_runs():
    assert "benchswapgamma" not in pgrepl("master2", "list", "syncs")
    assert pgrepl_triggers("master2") == 0
    assert sql("master2", "SELECT count(*) FROM pg_tables WHERE schemaname = 'pgrepl' AND tablename LIKE 'delta%'") == "0"
    # master's tables keep their triggers for benchdeltaalpha, the swap no longer reads them
    assert swap_subscriptions_on_master() == 0
    assert pgrepl_triggers("master") > 0
    pushdelta_works()
    pgrepl("master", "kick", "benchcopybeta", "--wait", "120")
    for table in HERD_TABLES:
        assert checksum("slave", table) == checksum("master", table)


@only["prune"]
def test_a_yaml_boolean_for_a_yes_no_setting_is_set_as_the_word():
    # stages/prune/topology.yml: fullcopy_analyze: false (what YAML makes of an unquoted no)
    assert json.loads(pgrepl("master", "show", "fullcopy_analyze", "days_back", "--json")) == \
        {"fullcopy_analyze": "no", "days_back": "7"}
