"""After side_effect.yml: master (PostgreSQL 15) was upgraded to master3 (Debian 13, PostgreSQL 17) by
playbooks/upgrade.yml under pgbench, pgbench then ran on master3, and playbooks/rollback.yml went back."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared/tests"))
from lab import checksum, host, sql  # noqa: E402

TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")


def report(what: str) -> dict:
    return json.loads(host("master").file(f"/var/lib/pgrepl/{what}-report.json").content_string)


def counted(name: str) -> int:
    return int(host("master").file(f"/var/tmp/pgrepl-upgrade-{name}").content_string)


def test_master3_runs_debian_13_and_postgresql_17():
    assert host("master3").file("/etc/debian_version").content_string.startswith("13")
    assert sql("master3", "SHOW server_version_num").startswith("17")
    assert sql("master", "SHOW server_version_num").startswith("15")


def test_the_cutover_compared_every_row_and_found_no_difference():
    r = report("upgrade")
    print(f"\nupgrade master -> master3: read-only window {r['read_only_seconds']} s, {r['tables_compared']} tables, "
          f"{r['rows_compared']} rows compared ({r['compare_method']}), {r['differences']} differences")
    assert (r["from"], r["to"], r["differences"]) == ("master", "master3", 0)
    assert r["tables_compared"] == len(TABLES)
    assert r["rows_compared"] > 100000  # the accounts alone
    assert float(r["read_only_seconds"]) > 0


def test_pgbench_wrote_on_master_during_the_copy_until_the_fence_ended_it():
    assert counted("cutover") > counted("before")
    assert "terminating connection due to administrator command" in \
        host("master").file("/var/tmp/pgrepl-upgrade-pgbench.log").content_string


def test_the_reverse_sync_brought_master3s_writes_to_master():
    assert counted("after") > counted("cutover")


def test_the_rollback_compared_clean_and_both_sides_are_equal():
    r = report("rollback")
    print(f"\nrollback master3 -> master: read-only window {r['read_only_seconds']} s, {r['differences']} differences")
    assert (r["from"], r["to"], r["differences"]) == ("master3", "master", 0)
    for table in TABLES:
        assert checksum("master3", table) == checksum("master", table), table


def test_after_the_rollback_the_application_writes_on_master_again():
    assert sql("master", "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
                         "WHERE r.rolname = 'app' AND 'default_transaction_read_only=on' = ANY (s.setconfig)") == "0"
    assert sql("master3", "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
                          "WHERE r.rolname = 'app' AND 'default_transaction_read_only=on' = ANY (s.setconfig)") == "1"
