"""The founding document's cluster on the lab, as site.yml leaves it: services, network, pg_hba.conf, plperl,
time, cron purges, and replication end to end (pushdelta, swap both ways, fullcopy on kick)."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared/tests"))
from lab import ADDRESS, HERD_TABLES, RUNNER_OF, checksum, host, mark, pgrepl, sql, wait_for  # noqa: E402

DATABASE_HOSTS = ("master", "slave", "master2")
RUNNERS = ("master", "master2")


@pytest.mark.parametrize("name", DATABASE_HOSTS)
def test_postgresql_runs_and_starts_at_boot(name):
    h = host(name)
    assert h.service("postgresql").is_enabled
    assert h.service("postgresql@15-main").is_running


@pytest.mark.parametrize("name", RUNNERS)
def test_the_runner_service_runs_and_starts_at_boot(name):
    h = host(name)
    assert h.service("pgrepl").is_enabled and h.service("pgrepl").is_running
    assert h.process.filter(user="pgrepl", comm="python3"), "the runner runs as its own unprivileged user"


@pytest.mark.parametrize("name", DATABASE_HOSTS)
def test_postgresql_listens_on_the_cluster_address(name):
    other = "slave" if name != "slave" else "master"
    out = host(other).run("pg_isready -h %s -p 5432", ADDRESS[name])
    assert out.rc == 0 and "accepting connections" in out.stdout


@pytest.mark.parametrize("name", DATABASE_HOSTS)
def test_pg_hba_lets_the_cluster_network_in_with_a_password_and_trusts_no_remote_host(name):
    lines = [line.split() for line in host(name).file("/etc/postgresql/15/main/pg_hba.conf").content_string.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert ["host", "all", "all", "10.11.12.0/24", "scram-sha-256"] in lines
    remote_trust = [line for line in lines if line[0].startswith("host") and line[-1] == "trust"
                    and not any(a in line for a in ("127.0.0.1/32", "::1/128"))]
    assert remote_trust == []


@pytest.mark.parametrize("name", DATABASE_HOSTS)
def test_plperl_is_in_the_replicated_database(name):
    assert sql(name, "SELECT extname FROM pg_extension WHERE extname = 'plperl'") == "plperl"


@pytest.mark.parametrize("name", DATABASE_HOSTS)
def test_chronyd_runs_and_clients_follow_the_master(name):
    h = host(name)
    assert h.service("chrony").is_running
    if name == "master":
        assert "local stratum" in h.file("/etc/chrony/chrony.conf").content_string
        return
    # the selected source (^*) is the master
    wait_for(lambda: re.search(r"^\^\*\s+10\.11\.12\.241\b", h.run("chronyc -n sources").stdout, re.M),
             90, f"{name} to select 10.11.12.241 as its time source")


@pytest.mark.parametrize("name", RUNNERS)
def test_cron_purges_are_scheduled_and_their_commands_work(name):
    h = host(name)
    cron = h.file("/etc/cron.d/pgrepl-purge")
    assert cron.exists
    jobs = [line.split(None, 6) for line in cron.content_string.splitlines()
            if line.strip() and not line.startswith("#") and not re.match(r"^[A-Z_]+=", line)]
    kinds = {job[6].split()[1] for job in jobs}
    assert {"delta", "runs", "archive"} <= kinds, jobs
    for *_, user, command in jobs:
        out = h.run("runuser -u %s -- sh -c %s", user, command)
        assert out.rc == 0, f"{command}: {out.stdout}{out.stderr}"
    log = h.file("/var/log/pgrepl-purge.log").content_string
    assert "=====BEGIN DELTA PURGE =====" in log and "=====END DELTA PURGE =====" in log


def test_an_update_on_master_reaches_slave_within_seconds():
    value = mark("from master")[:84]
    sql("master", f"UPDATE pgbench_accounts SET filler = '{value}' WHERE aid = 1")
    wait_for(lambda: sql("slave", "SELECT trim(filler) FROM pgbench_accounts WHERE aid = 1") == value, 10,
             "the update on slave")


def test_writes_cross_between_master2_and_master_both_ways():
    one, two = mark("from master2")[:84], mark("from master")[:84]
    sql("master2", f"UPDATE pgbench_accounts SET filler = '{one}' WHERE aid = 2")
    sql("master", f"UPDATE pgbench_accounts SET filler = '{two}' WHERE aid = 3")
    wait_for(lambda: sql("master", "SELECT trim(filler) FROM pgbench_accounts WHERE aid = 2") == one, 10,
             "master2's write on master")
    wait_for(lambda: sql("master2", "SELECT trim(filler) FROM pgbench_accounts WHERE aid = 3") == two, 10,
             "master's write on master2")
    # makedelta: master2's write goes on from master to slave
    wait_for(lambda: sql("slave", "SELECT trim(filler) FROM pgbench_accounts WHERE aid = 2") == one, 10,
             "master2's write on slave, through master")


def test_the_fullcopy_after_a_kick_makes_history_equal_on_slave_and_master2():
    sql("master", "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 42, now())")
    pgrepl("master", "kick", "benchcopybeta", "--wait", "120")
    expected = checksum("master", "pgbench_history")
    assert checksum("slave", "pgbench_history") == expected
    assert checksum("master2", "pgbench_history") == expected


def test_the_herd_tables_are_equal_everywhere():
    for table in HERD_TABLES:
        wait_for(lambda t=table: checksum("slave", t) == checksum("master", t) == checksum("master2", t), 30,
                 f"{table} equal on the three hosts")


def test_status_shows_every_sync_with_a_last_good():
    for sync, runner in RUNNER_OF.items():
        pgrepl(runner, "kick", sync, "--wait", "120")
    for runner in ("master", "master2"):
        lines = pgrepl(runner, "status").splitlines()
        for sync in [s for s, r in RUNNER_OF.items() if r == runner]:
            row = next(line for line in lines if line.startswith(sync))
            assert row.split()[4] != "none", row
