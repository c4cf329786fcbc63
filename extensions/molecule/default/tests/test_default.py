"""The founding document's cluster on the lab, as site.yml leaves it: services, network, pg_hba.conf, plperl,
time, cron purges, and replication end to end (pushdelta, swap both ways, fullcopy on kick)."""

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

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
    # its processes, by command line or title: `pgrepl run`, `pgrepl zygote`, `pgrepl worker SYNC`
    assert "pgrepl run" in h.check_output("ps -o args= -u pgrepl_runner"), "the runner runs as its own unprivileged user"


@pytest.mark.parametrize("name", DATABASE_HOSTS)
def test_postgresql_listens_on_the_cluster_address(name):
    other = "slave" if name != "slave" else "master"
    out = host(other).run("pg_isready -h %s -p 5432", ADDRESS[name])
    assert out.rc == 0 and "accepting connections" in out.stdout


@pytest.mark.parametrize("name", DATABASE_HOSTS)
def test_pg_hba_lets_in_only_the_replication_role_to_the_replicated_databases_over_tls(name):
    lines = [line.split() for line in host(name).file("/etc/postgresql/15/main/pg_hba.conf").content_string.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    remote = [line for line in lines if line[0] != "local"]
    assert remote == [["hostssl", "test1", "pgrepl", "10.11.12.0/24", "scram-sha-256"]]


REPLICATION_PASSWORD = yaml.safe_load((Path(__file__).resolve().parents[4] / "inventories/lab/group_vars/all/"
                                       "secrets.yml").read_text())["lab_pgrepl_replication_password"]


def login_from_slave(target: str, dbname: str, sslmode: str = "require"):
    """psql on slave to DBNAME on TARGET as the replication role, with its password."""
    return host("slave").run("env PGPASSWORD=%s psql -X -At -c 'SELECT 1' %s", REPLICATION_PASSWORD,
                             f"host={ADDRESS[target]} dbname={dbname} user=pgrepl sslmode={sslmode} connect_timeout=5")


@pytest.mark.parametrize("name", RUNNERS)
def test_the_control_database_refuses_the_replication_password_from_the_network(name):
    out = login_from_slave(name, "pgrepl")
    assert out.rc != 0 and "no pg_hba.conf entry" in out.stderr, out.stdout + out.stderr


@pytest.mark.parametrize("dbname, reachable", [("test1", True), ("postgres", False), ("template1", False)])
def test_with_the_replication_password_only_the_replicated_databases_are_reachable(dbname, reachable):
    out = login_from_slave("master", dbname)
    assert (out.rc == 0 and out.stdout.strip() == "1") is reachable, out.stdout + out.stderr
    refused = login_from_slave("master", dbname, sslmode="disable")     # never without TLS
    assert refused.rc != 0 and "no encryption" in refused.stderr, refused.stderr


@pytest.mark.parametrize("name", DATABASE_HOSTS)
def test_every_runner_connection_is_encrypted(name):
    wait_for(lambda: sql(name, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'pgrepl' "
                               "AND client_addr IS NOT NULL") != "0", 60, f"a runner connection on {name}")
    assert sql(name, "SELECT bool_and(s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                     "WHERE a.usename = 'pgrepl' AND a.client_addr IS NOT NULL") == "t"


@pytest.mark.parametrize("name", RUNNERS)
def test_the_catalog_holds_no_password_and_the_password_file_is_the_runners(name):
    assert sql(name, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'pgrepl' "
                     "AND column_name ~ 'pass'", db="pgrepl") == "0"
    assert REPLICATION_PASSWORD not in sql(name, "SELECT string_agg(t::text, ' ') FROM pgrepl.db t", db="pgrepl")
    f = host(name).file("/var/lib/pgrepl/pgpass")
    assert (f.user, f.mode) == ("pgrepl_runner", 0o600) and REPLICATION_PASSWORD in f.content_string


@pytest.mark.parametrize("name", RUNNERS)
def test_the_control_database_is_owned_by_a_peer_only_role_that_is_not_the_replication_role(name):
    # owner of the database and of every object of its schemas; no password; no other role may connect
    assert sql(name, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'pgrepl'") == "pgrepl_runner"
    assert sql(name, "SELECT string_agg(DISTINCT pg_get_userbyid(c.relowner), ',') FROM pg_class c "
                     "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('pgrepl', 'pgrepl_freezer')",
               db="pgrepl") == "pgrepl_runner"
    assert sql(name, "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'pgrepl_runner'") == "t"
    assert sql(name, "SELECT has_database_privilege('pgrepl', 'pgrepl', 'CONNECT')") == "f"
    # the controller, its zygote and the workers it forks (titles set by setproctitle, Debian's python3-setproctitle)
    runners = [line.split(None, 1) for line in host(name).check_output("ps -eo user:32,args").splitlines()
               if "pgrepl run" in line or " pgrepl zygote" in line or " pgrepl worker " in line]
    assert runners and {user for user, _ in runners} == {"pgrepl_runner"}, runners
    assert sum(args.strip() == "pgrepl zygote" for _, args in runners) == 1, runners


@pytest.mark.parametrize("name", RUNNERS)
def test_the_runner_unit_is_hardened(name):
    out = host(name).run("systemd-analyze security pgrepl")
    exposure = re.search(r"Overall exposure level for pgrepl.service: ([0-9.]+)", out.stdout)
    assert exposure and float(exposure.group(1)) <= 2.0, out.stdout[-3000:]


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
            assert row.split()[6] != "none", row   # Last good (after Backlog and Lag)


@pytest.mark.parametrize("name", RUNNERS)
def test_the_runner_settings_are_the_inventorys(name):
    """inventories/lab: sync_runner_settings {days_back: 7} (default 3); metrics_listen is sync_runner_metrics_listen's
    (the host's cluster address); the others keep their defaults."""
    shown = json.loads(pgrepl(name, "show", "days_back", "metrics_listen", "retry_max", "--json"))
    assert shown == {"days_back": "7", "metrics_listen": f"{ADDRESS[name]}:9187", "retry_max": "60"}


@pytest.mark.parametrize("name", RUNNERS)
def test_the_runner_checks_every_server_against_the_cluster_ca(name):
    assert sql(name, "SELECT string_agg(DISTINCT sslmode || ' ' || sslrootcert, ',') FROM pgrepl.db",
               db="pgrepl") == "verify-full /etc/pgrepl/cluster-ca.crt"
    for other in DATABASE_HOSTS:
        out = host(name).run("env PGPASSWORD=%s psql -X -At -c 'SELECT 1' %s", REPLICATION_PASSWORD,
                             f"host={ADDRESS[other]} dbname=test1 user=pgrepl sslmode=verify-full "
                             "sslrootcert=/etc/pgrepl/cluster-ca.crt connect_timeout=5")
        assert out.rc == 0 and out.stdout.strip() == "1", f"{other}: {out.stderr}"


@pytest.mark.parametrize("name", DATABASE_HOSTS)
def test_the_server_key_is_postgres_only_and_the_ca_key_is_not_on_the_host(name):
    h = host(name)
    key = h.file("/etc/postgresql/15/main/pgrepl-server.key")
    assert (key.user, key.mode) == ("postgres", 0o600)
    assert sql(name, "SHOW ssl_cert_file") == "/etc/postgresql/15/main/pgrepl-server.crt"
    assert h.run("grep -rl 'PRIVATE KEY' /etc/pgrepl /etc/postgresql 2>/dev/null").stdout.split() == \
        ["/etc/postgresql/15/main/pgrepl-server.key"]
