"""Swap benchmark: replication lag both ways and conflicts per second under steady pgbench load on both masters.

Two durable PostgreSQL 15 clusters on 127.0.0.1:25481-25482 (BENCH_PORT) under /tmp/pgrepl-bench-swap (BENCH_DIR),
pgbench scale 10, a swap sync of the pgbench tables but pgbench_history plus a probe table, standard_conflict latest. pgbench runs
TPC-B at a fixed rate on each side (`-R`); meanwhile a probe on each side commits a new value into its own row of
the probe table every ~100 ms and times how long the value takes to be visible on the other side (same clock:
one machine). Prints p50/p99 lag per direction, conflicts per second, the runs during the load, their median time
and the worker's CPU per run (less noisy than the lag on a shared machine); docs/benchmarks.md records a run.
`make bench-swap` runs it (BENCH_RATE per side, default 500; BENCH_SECONDS, default 60;
BENCH_PROBE_INTERVAL, default 0.02, 0: polling only).

It does so for each of BENCH_MODES (default latest,delta,merge): `latest` is the plain swap capture; `delta`
declares the balances as delta columns; `merge` sets standard_conflict=merge (changed columns tracked). For each
it also measures the capture's cost, unthrottled pgbench TPS on one side with the capture installed and no runner
(the ratio to `latest` is the price of the richer delta store), and the invariant's error after convergence:
the largest |sum(balance) - every delta both sides applied| over the three balances and both sides.
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

from bench import DURABLE, cpu, pgrepl  # noqa: E402

BASE = Path(os.environ.get("BENCH_DIR", "/tmp/pgrepl-bench-swap"))
PORT = int(os.environ.get("BENCH_PORT", "25481"))
RATE = int(os.environ.get("BENCH_RATE", "500"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "60"))
POLL = os.environ.get("BENCH_POLL_INTERVAL", "0.5")
MODES = os.environ.get("BENCH_MODES", "latest,delta,merge").split(",")
CAPTURE_SECONDS = int(os.environ.get("BENCH_CAPTURE_SECONDS", "15"))
BALANCES = {"pgbench_accounts": "abalance", "pgbench_tellers": "tbalance", "pgbench_branches": "bbalance"}
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


def pgbench_tps(c: LocalCluster, *args: str) -> tuple[float, str]:
    out = subprocess.run([str(PGBENCH), "-n", "-c", "2", "-j", "2", *args, "-h", "127.0.0.1", "-p", str(c.port),
                          "-U", "postgres", "test1"], capture_output=True, text=True, check=True).stdout
    return float(re.search(r"tps = ([\d.]+)", out).group(1)), out


def cpu_seconds(title: str) -> float:
    """CPU seconds of the process whose command line is TITLE (the worker: `pgrepl worker SYNC`)."""
    return cpu(int(subprocess.run(["pgrep", "-f", f"^{title}"], capture_output=True, text=True).stdout.split()[0]))


def invariant_error(sides: tuple[LocalCluster, LocalCluster], history_before: list[int], start: dict) -> int:
    """max |sum(balance) - (its start + the deltas applied on both sides)| over the three balances, both sides."""
    applied = sum(c.query("test1", "SELECT coalesce(sum(delta), 0) FROM pgbench_history")[0][0] - before
                  for c, before in zip(sides, history_before, strict=True))
    return max(abs(c.query("test1", f"SELECT sum({col}) FROM {t}")[0][0] - start[t] - applied)
               for c in sides for t, col in BALANCES.items())


def run_mode(mode: str) -> dict:
    """One configuration on fresh clusters: the capture's TPS, then lag and conflicts under -R load both ways."""
    load_average = os.getloadavg()[0]
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
        rule = "merge" if mode == "merge" else "latest"
        pgrepl(control, "add", "all", "tables", "-T", "pgbench_history", "db=test1_master2",
               f"standard_conflict={rule}", "herd=gamma")
        if mode == "delta":
            for table, column in BALANCES.items():
                pgrepl(control, "update", "table", table, "db=test1_master2", f"delta_columns={column}")
        pgrepl(control, "add", "sync", "benchswapgamma", "source=gamma", "targetdb=test1_master", "type=swap")
        capture_tps = pgbench_tps(one, "-T", str(CAPTURE_SECONDS))[0]   # capture only: no runner yet
        daemon = subprocess.Popen([sys.executable, "-m", "pgrepl", "run"], env=dict(os.environ, PGREPL_CONTROL=control),
                                  stdout=subprocess.DEVNULL, stderr=open(BASE / "daemon.log", "wb"))
        pgrepl(control, "kick", "benchswapgamma", "--wait", "300")
        # the capture-only load has reached the other side (one side's changes: exact under every rule)
        history_before = [c.query("test1", "SELECT coalesce(sum(delta), 0) FROM pgbench_history")[0][0]
                          for c in (one, two)]
        start = {t: two.query("test1", f"SELECT sum({col}) FROM {t}")[0][0] for t, col in BALANCES.items()}
        start_conflicts = two.query("pgrepl", "SELECT count(*) FROM pgrepl.conflict")[0][0]
        first_run = two.query("pgrepl", "SELECT coalesce(max(id), 0) FROM pgrepl.run")[0][0]
        until = time.monotonic() + SECONDS
        lags: dict[str, list[float]] = {"master2 -> master": [], "master -> master2": []}
        probes = [threading.Thread(target=probe, args=(one, two, 1, until, lags["master2 -> master"])),
                  threading.Thread(target=probe, args=(two, one, 2, until, lags["master -> master2"]))]
        load = [subprocess.Popen([str(PGBENCH), "-n", "-c", "2", "-j", "2", "-R", str(RATE),
                                  "-T", str(SECONDS), "-h", "127.0.0.1", "-p", str(c.port), "-U", "postgres", "test1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in (one, two)]
        cpu = cpu_seconds("pgrepl worker benchswapgamma")
        for t in probes:
            t.start()
        outputs = [p.communicate()[0] for p in load]
        for t in probes:
            t.join()
        cpu = cpu_seconds("pgrepl worker benchswapgamma") - cpu
        runs = two.query("pgrepl", "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "
                                   "ended - started)) FROM pgrepl.run WHERE id > %s AND ended IS NOT NULL", (first_run,))[0]
        pgrepl(control, "kick", "benchswapgamma", "--wait", "300")
        pgrepl(control, "kick", "benchswapgamma", "--wait", "300")   # the changes that raced with the last run
        tps = [float(re.search(r"tps = ([\d.]+)", out).group(1)) for out in outputs]
        conflicts = two.query("pgrepl", "SELECT count(*) FROM pgrepl.conflict")[0][0] - start_conflicts
        bad = two.query("pgrepl", "SELECT count(*) FROM pgrepl.run WHERE state = 'bad'")[0][0]
        return {"mode": mode, "capture_tps": capture_tps, "tps": tps, "lags": lags, "conflicts": conflicts,
                "bad": bad, "error": invariant_error((one, two), history_before, start), "load": load_average,
                "runs": runs[0], "median_run": runs[1] or 0.0, "cpu_per_run": cpu / max(runs[0], 1)}
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(60)
        for c in (one, two):
            c.stop("immediate")


def main() -> None:
    results = [run_mode(m) for m in MODES]
    base = next((r["capture_tps"] for r in results if r["mode"] == "latest"), None)
    print(f"\npgbench TPC-B -R {RATE} per side for {SECONDS} s, poll_interval {POLL} s; capture TPS: unthrottled "
          f"pgbench -c 2 for {CAPTURE_SECONDS} s on one side, capture installed, no runner")
    print("| mode | capture TPS | vs latest | TPS master2 / master | lag p50 / p99 m2->m | lag p50 / p99 m->m2 "
          "| conflicts/s | invariant error | failed runs | load | runs | median run | worker CPU per run |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ratio = f"{r['capture_tps'] / base:.2f}" if base else "-"
        p99 = [f"{percentile(v, 50) * 1000:.0f} / {percentile(v, 99) * 1000:.0f} ms" if v else "-"
               for v in r["lags"].values()]
        print(f"| {r['mode']} | {r['capture_tps']:.0f} | {ratio} | {r['tps'][0]:.0f} / {r['tps'][1]:.0f} | {p99[0]} | "
              f"{p99[1]} | {r['conflicts'] / SECONDS:.1f} | {r['error']} | {r['bad']} | {r['load']:.1f} | {r['runs']} | "
              f"{r['median_run'] * 1000:.0f} ms | {r['cpu_per_run'] * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
