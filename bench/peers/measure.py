"""What `make bench-peers` measures, the same way for every system: lag, TPS, catch-up, copies, the rate ladder.

Lag is measured inside the databases, on one machine's clock: a writer commits a new value into the source's
`lag_probe` row every 50-150 ms and records the server's clock_timestamp(); on the target an ENABLE ALWAYS
trigger (it fires for replicated rows too, whatever session_replication_role the applier uses) logs the value
and its arrival time into `lag_log`. A value's lag ends at the first arrival of it or of a later value (a system
that applies only the latest state of a row delivers the earlier value with it).
"""

from __future__ import annotations

import random
import re
import subprocess
import threading
import time

import psycopg
from pgcluster import PGBENCH, LocalCluster
from swap_lag import percentile

from bench import raw_copy

PROBE_SETUP = "CREATE TABLE lag_probe (id int PRIMARY KEY, value bigint NOT NULL, sent timestamptz); " \
              "INSERT INTO lag_probe VALUES (1, 0, now())"
TARGET_LOG = """
CREATE TABLE lag_log (value bigint NOT NULL, arrived timestamptz NOT NULL);
CREATE FUNCTION public.lag_arrived() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO public.lag_log VALUES (NEW.value, clock_timestamp()); RETURN NEW; END$$;
CREATE TRIGGER lag_arrived BEFORE INSERT OR UPDATE ON public.lag_probe FOR EACH ROW EXECUTE FUNCTION public.lag_arrived();
ALTER TABLE public.lag_probe ENABLE ALWAYS TRIGGER lag_arrived;
"""
SUMS = "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers), " \
       "(SELECT sum(bbalance) FROM pgbench_branches), (SELECT value FROM lag_probe)"
BOUNDED_P99 = 1.0     # seconds: a rate is sustained when the lag's p99 stays under this
SYNCED = ("pgbench_branches", "pgbench_tellers", "pgbench_accounts", "lag_probe")


def prepare(src: LocalCluster, tgt: LocalCluster) -> None:
    for c in (src, tgt):
        c.execute("test1", PROBE_SETUP)
    tgt.execute("test1", TARGET_LOG)


def resync(src: LocalCluster, tgt: LocalCluster) -> None:
    """The target's replicated tables made equal to the source's (a system left them equal; this makes sure)."""
    for t in SYNCED:
        raw_copy(src, tgt, t)
    tgt.execute("test1", "TRUNCATE lag_log")


def quiesce(*clusters: LocalCluster) -> None:
    for c in clusters:
        c.execute("test1", "VACUUM ANALYZE")
        c.execute("test1", "CHECKPOINT")


def equal(src: LocalCluster, tgt: LocalCluster) -> bool:
    return src.query("test1", SUMS) == tgt.query("test1", SUMS)


def wait_equal(src: LocalCluster, tgt: LocalCluster, timeout: float = 900) -> float:
    """Seconds until the target's balances equal the source's (no load meanwhile)."""
    t0 = time.monotonic()
    while not equal(src, tgt):
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"the target did not catch up within {timeout:.0f} s")
        time.sleep(0.25)
    return time.monotonic() - t0


def _write_probes(src: LocalCluster, until: float, sent: list) -> None:
    with psycopg.connect(src.dsn("test1"), autocommit=True) as w:
        value = w.execute("SELECT value FROM lag_probe WHERE id = 1").fetchone()[0]
        while time.monotonic() < until:
            value += 1
            at = w.execute("UPDATE lag_probe SET value = %s, sent = clock_timestamp() WHERE id = 1 RETURNING sent",
                           (value,)).fetchone()[0]
            sent.append((value, at))
            time.sleep(random.uniform(0.05, 0.15))


def lag_under_load(src: LocalCluster, tgt: LocalCluster, rate: int, seconds: int) -> dict:
    """pgbench TPC-B at RATE (-c 2 -j 2) for SECONDS with the probe writer; lag p50/p99/max in seconds and the
    rate pgbench achieved. Values still missing 30 s after the load count with their lag so far."""
    tgt.execute("test1", "TRUNCATE lag_log")
    sent: list = []
    writer = threading.Thread(target=_write_probes, args=(src, time.monotonic() + seconds, sent))
    load = subprocess.Popen([str(PGBENCH), "-n", "-c", "2", "-j", "2", "-R", str(rate), "-T", str(seconds),
                             "-h", "127.0.0.1", "-p", str(src.port), "-U", "postgres", "test1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    writer.start()
    out = load.communicate()[0]
    writer.join()
    last = sent[-1][0]
    deadline = time.monotonic() + 30
    while not tgt.query("test1", "SELECT 1 FROM lag_log WHERE value >= %s", (last,)) and time.monotonic() < deadline:
        time.sleep(0.1)
    arrived = tgt.query("test1", "SELECT value, arrived FROM lag_log ORDER BY value")
    now = tgt.query("test1", "SELECT clock_timestamp()")[0][0]
    lags, i, first = [], len(arrived), now
    for value, at in reversed(sent):   # earliest arrival of this value or a later one, walking back
        while i > 0 and arrived[i - 1][0] >= value:
            i -= 1
            first = min(first, arrived[i][1])
        lags.append((first - at).total_seconds())
    achieved = float(re.search(r"tps = ([\d.]+)", out).group(1))
    return {"p50": percentile(lags, 50), "p99": percentile(lags, 99), "max": max(lags), "samples": len(lags),
            "tps": achieved}


def max_rate(src: LocalCluster, tgt: LocalCluster, ladder: list[int], seconds: int) -> tuple[float, list]:
    """Climbs LADDER (pgbench -R): the highest rate pgbench achieved while the lag's p99 stayed under BOUNDED_P99.
    Stops at the first step whose lag is unbounded, or where pgbench fell below 80 % of the rate asked (the source
    itself is saturated: the same ceiling for every system). Returns it (0: none) and each step's figures."""
    best, steps = 0.0, []
    for rate in ladder:
        r = lag_under_load(src, tgt, rate, seconds)
        steps.append((rate, r))
        wait_equal(src, tgt)
        if r["p99"] > BOUNDED_P99:
            break
        best = max(best, r["tps"])
        if r["tps"] < 0.8 * rate:
            break
    return best, steps


def catch_up(system, src: LocalCluster, tgt: LocalCluster) -> dict:
    """Replication paused, `UPDATE pgbench_accounts SET abalance = abalance + 1` on the source (timed: the capture's
    cost), resumed: rows/s until the target has every row, and the replicating process's peak RSS."""
    rows = src.query("test1", "SELECT count(*) FROM pgbench_accounts")[0][0]
    system.pause()
    t0 = time.monotonic()
    src.execute("test1", "UPDATE pgbench_accounts SET abalance = abalance + 1")
    update = time.monotonic() - t0
    t0 = time.monotonic()
    system.resume()
    elapsed = time.monotonic() - t0 + wait_equal(src, tgt)
    return {"rows_s": rows / elapsed, "update_s": update, "rss_mb": system.rss_mb()}
