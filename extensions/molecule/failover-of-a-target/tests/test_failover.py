"""After side_effect.yml: slave was down 60 s during 80 s of pgbench on master, then cut off the network 60 s
during another 80 s. It caught up with nothing lost; the swap and the fullcopy to master2 ran meanwhile."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared/tests"))
from lab import HERD_TABLES, checksum, host, pgrepl, sql, wait_for  # noqa: E402


def window(which: str = "failover") -> str:
    start, end = host("master").file(f"/var/tmp/pgrepl-{which}-window").content_string.split()
    return f"started BETWEEN to_timestamp({start}) AND to_timestamp({end})"


def test_the_outage_was_real_the_pushdelta_to_slave_failed_meanwhile():
    assert int(sql("master", f"SELECT count(*) FROM pgrepl.run WHERE sync = 'benchdeltaalpha' AND state = 'bad' "
                             f"AND {window()}", db="pgrepl")) > 0


def test_slave_caught_up_with_nothing_lost():
    pgrepl("master2", "kick", "benchswapgamma", "--wait", "120")
    pgrepl("master", "kick", "benchdeltaalpha", "--wait", "180")
    for table in HERD_TABLES:
        wait_for(lambda t=table: checksum("slave", t) == checksum("master", t), 60, f"{table} equal on slave")
    assert sql("slave", "SELECT trim(filler) FROM pgbench_accounts WHERE aid = 5") == \
        "written on master2 during the outage"
    assert sql("slave", "SELECT trim(filler) FROM pgbench_accounts WHERE aid = 6") == \
        "written on master2 during the partition"


def test_no_run_to_slave_finished_well_inside_the_partition():
    assert sql("master", f"SELECT count(*) FROM pgrepl.run WHERE sync = 'benchdeltaalpha' AND state = 'good' "
                         f"AND {window('partition')} AND ended < to_timestamp("
                         f"{host('master').file('/var/tmp/pgrepl-partition-window').content_string.split()[1]})",
               db="pgrepl") == "0"


def test_the_swap_was_not_held_up_by_the_partition():
    runs = sql("master2", f"SELECT count(*) FILTER (WHERE state = 'good') || ' ' || count(*) FILTER (WHERE state = 'bad') "
                          f"FROM pgrepl.run WHERE sync = 'benchswapgamma' AND {window('partition')}",
               db="pgrepl").split()
    assert int(runs[0]) > 0 and int(runs[1]) == 0, runs


def test_the_swap_was_not_held_up():
    runs = sql("master2", f"SELECT count(*) FILTER (WHERE state = 'good') || ' ' || count(*) FILTER (WHERE state = 'bad') "
                          f"FROM pgrepl.run WHERE sync = 'benchswapgamma' AND {window()}", db="pgrepl").split()
    assert int(runs[0]) > 0 and int(runs[1]) == 0, runs


def test_the_fullcopy_to_master2_was_not_held_up():
    assert int(sql("master", "SELECT count(*) FROM pgrepl.run WHERE sync = 'benchcopybeta' "
                             f"AND target = 'test1_master2' AND state = 'good' AND {window()}", db="pgrepl")) > 0


def prometheus(path: str) -> dict:
    """GET of Prometheus' API on master (its cluster address), from master."""
    out = host("master").run("python3 -c %s %s", "import sys, urllib.request; "
                             "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())",
                             f"http://10.11.12.241:9090{path}")
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)


def test_the_lag_alert_fired_during_the_outage_and_resolved_after_it():
    start, fired, resolved = map(int, host("master").file("/var/tmp/pgrepl-lag-alert").content_string.split())
    end = int(host("master").file("/var/tmp/pgrepl-failover-window").content_string.split()[1])
    assert start < fired < end < resolved


def test_prometheus_scrapes_every_runner_and_the_backlog_is_gone():
    targets = prometheus("/api/v1/targets")["data"]["activeTargets"]
    assert sorted((t["labels"]["runner"], t["health"]) for t in targets) == [("master", "up"), ("master2", "up")]
    wait_for(lambda: {r["metric"]["sync"]: float(r["value"][1]) for r in
                      prometheus("/api/v1/query?query=pgrepl_backlog_rows")["data"]["result"]}.get("benchdeltaalpha") == 0,
             60, "no backlog of benchdeltaalpha in Prometheus")
