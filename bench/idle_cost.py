"""What an idle pushdelta worker costs: its CPU and the transactions it asks of the source per second, with the
fast probe (probe_interval, default) and without it (polling only), nothing written meanwhile.

Two clusters on 127.0.0.1:PORT and PORT+1 (BENCH_PORT, default 25495) under BENCH_DIR (/tmp/pgrepl-bench-idle), pgbench
scale 1, the three pgbench tables in a sync. Each setting: the worker, once started, is left idle 5 s, then for BENCH_SECONDS
(default 30) its CPU time (/proc/PID/stat) and the source database's xact_commit (pg_stat_database: every
query of an autocommit session is one) are counted. `python bench/idle_cost.py`; BENCH_TYPE=swap: the same tables
in a swap sync (both databases are sources: their transactions are summed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pgcluster import LocalCluster  # noqa: E402

from bench import declare_pair, pgrepl, start_pair  # noqa: E402

BASE = Path(os.environ.get("BENCH_DIR", "/tmp/pgrepl-bench-idle"))
PORT = int(os.environ.get("BENCH_PORT", "25495"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "30"))
TYPE = os.environ.get("BENCH_TYPE", "pushdelta")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def commits(src: LocalCluster) -> int:
    src.execute("test1", "SELECT pg_stat_clear_snapshot()")
    return src.query("test1", "SELECT xact_commit FROM pg_stat_database WHERE datname = 'test1'")[0][0]


def main() -> None:
    src, tgt = start_pair(BASE, PORT)
    try:
        control = declare_pair(src, tgt, BASE, 1)
        pgrepl(control, "add", "all", "tables", "db=source", "-T", "pgbench_history", "--herd=alpha")
        pgrepl(control, "add", "sync", "delta", "source=alpha", "targetdb=target", f"type={TYPE}")
        sources = (src, tgt) if TYPE == "swap" else (src,)
        print("| setting | worker CPU (% of a core) | source transactions/s |\n|---|---|---|")
        for setting in ("probe_interval=0.02", "probe_interval=0"):
            pgrepl(control, "set", setting)
            daemon = subprocess.Popen([sys.executable, "-m", "pgrepl", "run"],
                                      env=dict(os.environ, PGREPL_CONTROL=control), stderr=subprocess.DEVNULL)
            try:
                pidfile = BASE / "run" / "pgrepl.sync.delta.pid"
                deadline = time.monotonic() + 120
                while not pidfile.exists() and time.monotonic() < deadline:
                    time.sleep(0.2)
                time.sleep(5)   # past its start: idle from now on
                pid = int(pidfile.read_text())
                cpu0, n0, t0 = cpu_seconds(pid), sum(map(commits, sources)), time.monotonic()
                time.sleep(SECONDS)
                cpu1, n1, t1 = cpu_seconds(pid), sum(map(commits, sources)), time.monotonic()
                # the stats queries of this script are counted too: taken off
                print(f"| {setting} | {100 * (cpu1 - cpu0) / (t1 - t0):.2f} % | {(n1 - n0 - 2 * len(sources)) / (t1 - t0):.1f} |")
            finally:
                daemon.terminate()
                daemon.wait(60)
    finally:
        for c in (src, tgt):
            c.stop("immediate")


if __name__ == "__main__":
    main()
