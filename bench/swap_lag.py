"""Swap benchmark: replication lag both ways and conflicts per second under steady pgbench load on both masters.

Two durable PostgreSQL 15 clusters on 127.0.0.1:55481-55482 (BENCH_PORT) under /tmp/pgrepl-bench-swap (BENCH_DIR),
pgbench scale 10, a swap sync of the pgbench tables but pgbench_history plus a probe table, standard_conflict latest. pgbench runs
TPC-B at a fixed rate on each side (`-R`); meanwhile a probe on each side commits a new value into its own row of
the probe table every ~100 ms and times how long the value takes to be visible on the other side (same clock:
one machine). Prints p50/p99 lag per direction and conflicts per second; docs/benchmarks.md records a run.
`make bench-swap` runs it (BENCH_RATE per side, default 500; BENCH_SECONDS, default 60; BENCH_PROBE_INTERVAL,
default 0.02, 0: polling only).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from pgcluster import PGBENCH, LocalCluster  # noqa: E402

from bench import DURABLE, pgrepl  # noqa: E402

BASE = Path(os.environ.get("BENCH_DIR", "/tmp/pgrepl-bench-swap"))
PORT = int(os.environ.get("BENCH_PORT", "55481"))
RATE = int(os.environ.get("BENCH_RATE", "500"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "60"))
POLL = os.environ.get("BENCH_POLL_INTERVAL", "0.5")
PROBE = os.environ.get("BENCH_PROBE_INTERVAL", "0.02")   # 0: polling only, as before watch.py


def probe(writer: LocalCluster, reader: LocalCluster, row: int, until: float, lags: list[float]) -> None:
    """Commits a new value into ROW on WRITER, then polls READER every 5 ms until it shows: one lag sample."""
    with psycopg.connect(writer.dsn("test1"), autocommit=True) as w, \
            psycopg.connect(reader.dsn("test1"), autocommit=True) as r:
        value = 0
        while time.monotonic() < until:
            value += 1
            w.execute("UPDATE lag_probe SET value = %s WHERE id = %s", (value, row))
            committed = time.monotonic()
            while r.execute("SELECT value FROM lag_probe WHERE id = %s", (row,)).fetchone()[0] < value:
                if time.monotonic() - committed > 30:
                    raise SystemExit(f"probe {row}: value {value} not replicated after 30 s")
                time.sleep(0.005)
            lags.append(time.monotonic() - committed)
            time.sleep(random.uniform(0.05, 0.15))


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1] if len(values) > 1 else values[0]


def main() -> None:
    shutil.rmtree(BASE, ignore_errors=True)
    one = LocalCluster("master2", PORT, BASE / "master2").init(DURABLE).start()
    two = LocalCluster("master", PORT + 1, BASE / "master").init(DURABLE).start()
    daemon = None
    try:
        for c in (one, two):
            c.createdb("test1")
            c.pgbench("test1", "-i", "-q", "-s", "10")
            c.execute("test1", "CREATE TABLE lag_probe (id int PRIMARY KEY, value bigint NOT NULL); "
                               "INSERT INTO lag_probe VALUES (1, 0), (2, 0)")
        two.createdb("pgrepl")
        control = two.dsn("pgrepl")
        pgrepl(control, "install")
        pgrepl(control, "set", f"piddir={BASE / 'run'}", f"poll_interval={POLL}", f"probe_interval={PROBE}")
        for name, c in (("test1_master2", one), ("test1_master", two)):
            pgrepl(control, "add", "database", "test1", f"name={name}", "host=127.0.0.1", f"port={c.port}",
                   "user=postgres")
        pgrepl(control, "add", "all", "tables", "-T", "pgbench_history", "db=test1_master2",
               "standard_conflict=latest", "herd=gamma")
        pgrepl(control, "add", "sync", "benchswapgamma", "source=gamma", "targetdb=test1_master", "type=swap")
        daemon = subprocess.Popen([sys.executable, "-m", "pgrepl", "run"], env=dict(os.environ, PGREPL_CONTROL=control),
                                  stdout=subprocess.DEVNULL, stderr=open(BASE / "daemon.log", "wb"))
        pgrepl(control, "kick", "benchswapgamma", "--wait", "60")
        until = time.monotonic() + SECONDS
        lags: dict[str, list[float]] = {"master2 -> master": [], "master -> master2": []}
        probes = [threading.Thread(target=probe, args=(one, two, 1, until, lags["master2 -> master"])),
                  threading.Thread(target=probe, args=(two, one, 2, until, lags["master -> master2"]))]
        load = [subprocess.Popen([str(PGBENCH), "-n", "-c", "2", "-j", "2", "-R", str(RATE),
                                  "-T", str(SECONDS), "-h", "127.0.0.1", "-p", str(c.port), "-U", "postgres", "test1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in (one, two)]
        for t in probes:
            t.start()
        outputs = [p.communicate()[0] for p in load]
        for t in probes:
            t.join()
        pgrepl(control, "kick", "benchswapgamma", "--wait", "300")
        tps = [float(re.search(r"tps = ([\d.]+)", out).group(1)) for out in outputs]
        conflicts = two.query("pgrepl", "SELECT count(*) FROM pgrepl.conflict")[0][0]
        bad = two.query("pgrepl", "SELECT count(*) FROM pgrepl.run WHERE state = 'bad'")[0][0]
        print(f"\npgbench TPC-B -R {RATE} per side for {SECONDS} s, poll_interval {POLL} s, probe_interval {PROBE} s: "
              f"TPS master2 {tps[0]:.0f}, master {tps[1]:.0f}")
        print("| direction | samples | lag p50 | lag p99 | max |")
        print("|---|---|---|---|---|")
        for name, values in lags.items():
            print(f"| {name} | {len(values)} | {percentile(values, 50) * 1000:.0f} ms | "
                  f"{percentile(values, 99) * 1000:.0f} ms | {max(values) * 1000:.0f} ms |")
        print(f"conflicts: {conflicts} ({conflicts / SECONDS:.1f}/s); failed runs: {bad}")
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(60)
        for c in (one, two):
            c.stop("immediate")


if __name__ == "__main__":
    main()
