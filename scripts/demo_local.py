"""The founding document's master/slave walk-through, replayed with pgrepl on three local PostgreSQL clusters.

Clusters listen on 127.0.0.1:25431-25433 under .tmp/demo; the control database is on the master's cluster.
Run again to start afresh. `make demo` uses it when the lab cannot run; the lab demo is lab/demo.sh.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pgcluster import LocalCluster, table_checksum  # noqa: E402

BASE = ROOT / ".tmp" / "demo"
HOSTS = {"master": 25431, "slave": 25432, "master2": 25433}
TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")


def pgrepl(*args: str, control: str) -> None:
    print(f"$ pgrepl {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "pgrepl", "--control", control, *args], check=True)


def main() -> None:
    c = {name: LocalCluster(name, port, BASE / name) for name, port in HOSTS.items()}
    for cl in c.values():
        cl.init({"fsync": "on", "full_page_writes": "on"}).start()
        cl.createdb("test1")
        cl.pgbench("test1", "-i", "-q")
    c["master"].createdb("pgrepl")
    control = c["master"].dsn("pgrepl")
    run = lambda *a: pgrepl(*a, control=control)  # noqa: E731
    run("install")
    run("set", f"piddir={BASE / 'run'}")
    for name in ("master", "slave", "master2"):
        run("add", "database", "test1", f"name=test1_{name}", "host=127.0.0.1", f"port={HOSTS[name]}", "user=postgres")
    run("add", "all", "tables", "db=test1_master", "-T", "pgbench_history", "--herd=alpha", "--verbose")
    run("add", "all", "tables", "db=test1_master", "-t", "pgbench_history", "--herd=beta", "--verbose")
    run("add", "dbgroup", "test1_history", "test1_slave", "test1_master2")
    run("add", "sync", "benchdeltaalpha", "source=alpha", "targetdb=test1_slave", "type=pushdelta")
    run("add", "sync", "benchcopybeta", "source=beta", "targetgroup=test1_history", "type=fullcopy")
    run("list", "herds")
    run("list", "syncs")
    run("start")
    print("$ pgbench -c 2 -T 10 test1   (on master)", flush=True)
    c["master"].pgbench("test1", "-c", "2", "-T", "10")
    run("kick", "benchcopybeta", "--wait", "60")
    time.sleep(2)
    run("status")
    print(f"\n{'table':<18} {'master':>24} {'slave':>24}  same?")
    for t in TABLES:
        m, s = table_checksum(c["master"], "test1", t), table_checksum(c["slave"], "test1", t)
        print(f"{t:<18} {m[0]:>10} {m[1][-12:]:>13} {s[0]:>10} {s[1][-12:]:>13}  {'yes' if m == s else 'NO'}")
    run("stop")
    print(f"\nTry next: psql -h 127.0.0.1 -p {HOSTS['slave']} -U postgres test1; "
          f"PGREPL_CONTROL='{control}' .venv/bin/pgrepl status")


if __name__ == "__main__":
    main()
