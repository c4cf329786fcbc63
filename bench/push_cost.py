"""What a pushdelta run costs: pgrepl's lag at `-R 200`, the source's TPS ratio with it applying at full speed,
and the statements (round trips) per run, for two runner versions side by side, alternating.

`make bench-peers`' harness (bench/peers: same clusters, tables, lag probe and TPS measure), restricted to pgrepl.
Two durable clusters on 127.0.0.1:BENCH_PORT and +1 (default 25511) under BENCH_DIR (/tmp/pgrepl-bench-push),
pgbench scale BENCH_SCALE (5). Each round runs every variant once, the order rotated; a variant is a runner source
tree put first on PYTHONPATH: BENCH_VARIANTS="new=runner/src,old=/path/to/old/runner/src" (default: this tree's
only); settings of a variant follow its path after `+`: "pace=runner/src+busy_interval=0.1" (`+capture-only`: the
daemon stopped while TPS is measured). For each: TPS without replication (-c 4, BENCH_TPS_SECONDS, 15), pgrepl set up, TPS again while it applies
(the ratio, with the runs recorded meanwhile, their changes, and the CPU of pgrepl's worker and of the backends
serving it, in cores), then lag at -R 200 -c 2 (BENCH_LAG_SECONDS, 20) with every statement logged (log_min_duration_statement
= 0 on both clusters): the statements pgrepl's sessions sent, per run, outside the probe's own query.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[1:1] = [str(ROOT / "tests"), str(ROOT / "bench"), str(ROOT / "bench" / "peers")]
import measure  # noqa: E402
import systems  # noqa: E402
from pgcluster import LocalCluster  # noqa: E402
from pgrepl import lease  # noqa: E402

from bench import DURABLE, cpu, tps  # noqa: E402

BASE = Path(os.environ.get("BENCH_DIR", "/tmp/pgrepl-bench-push"))
PORT = int(os.environ.get("BENCH_PORT", "25511"))
SCALE = int(os.environ.get("BENCH_SCALE", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
TPS_SECONDS = int(os.environ.get("BENCH_TPS_SECONDS", "15"))
LAG_SECONDS = int(os.environ.get("BENCH_LAG_SECONDS", "20"))
VARIANTS = dict(v.split("=", 1) for v in os.environ.get("BENCH_VARIANTS", f"new={ROOT / 'runner/src'}").split(","))
# one logged round trip: a simple-protocol statement (several statements in one string count once) or an execute
ROUND_TRIP = re.compile(r"^(pgrepl[^|]*)\|([^|]*)\|LOG:  duration: [\d.]+ ms  (statement|execute [^:]*): (.*)")


def log_statements(clusters: list[LocalCluster], on: bool) -> None:
    for c in clusters:
        if on:
            c.execute("postgres", "ALTER SYSTEM SET log_min_duration_statement = 0")
            c.execute("postgres", "ALTER SYSTEM SET log_line_prefix = '%a|%d|'")
        else:
            c.execute("postgres", "ALTER SYSTEM RESET log_min_duration_statement")
        c.execute("postgres", "SELECT pg_reload_conf()")


def statements(clusters: list[LocalCluster], offsets: list[int]) -> dict[str, int]:
    """pgrepl's round trips logged since OFFSETS, by database (the control database is 'pgrepl'), probes apart."""
    out: dict[str, int] = {}
    for c, off in zip(clusters, offsets, strict=True):
        with open(c.datadir / "server.log", "rb") as f:
            f.seek(off)
            for line in f.read().decode(errors="replace").splitlines():
                m = ROUND_TRIP.match(line)
                if m:
                    key = "probe" if "IS DISTINCT FROM $1 AND EXISTS" in m.group(4) else f"{c.name}/{m.group(2)}"
                    out[key] = out.get(key, 0) + 1
    return out


def backends(c: LocalCluster, app: str) -> dict[int, str]:
    return dict(c.query("postgres", "SELECT pid, datname FROM pg_stat_activity WHERE application_name = %s", (app,)))


def pgrepl_pids(src: LocalCluster, tgt: LocalCluster, system: systems.Pgrepl) -> dict[str, list[int]]:
    """The worker and the backends serving it: source reads (test1), its control session, the target's writes."""
    systems.wait_for("the worker's sessions", lambda: backends(src, "pgrepl delta") and backends(tgt, "pgrepl delta"))
    worker = system._worker_pid()
    sb = backends(src, "pgrepl delta")
    return {"worker": [worker], "source reads (test1)": [p for p, d in sb.items() if d == "test1"],
            "source control (pgrepl)": list(backends(src, lease.application_name(worker))),
            "target writes": list(backends(tgt, "pgrepl delta"))}


def runs_done(src: LocalCluster) -> tuple[int, int]:
    """The runs recorded so far and the changes they applied."""
    return src.query("pgrepl", "SELECT count(*), coalesce(sum(inserts + updates + deletes), 0)::int FROM pgrepl.run")[0]


def one(src: LocalCluster, tgt: LocalCluster, variant: str) -> dict:
    path, *settings = variant.split("+")
    os.environ["PYTHONPATH"] = path   # the runner's CLI and daemon are subprocesses: they import this tree
    system = systems.Pgrepl(src, tgt, BASE)
    system.settings = tuple(s for s in settings if s != "capture-only")
    capture_only = "capture-only" in settings   # the daemon stopped while TPS is measured: the capture's cost alone
    base = tps(src, TPS_SECONDS)
    measure.resync(src, tgt)
    system.setup()
    try:
        pids = [] if capture_only else [p for ps in pgrepl_pids(src, tgt, system).values() for p in ps]
        if capture_only:
            system.pause()
        runs0, changes0 = runs_done(src)
        cpu0 = sum(cpu(p) for p in pids)
        r = {"tps_ratio": tps(src, TPS_SECONDS) / base}
        cpu1 = sum(cpu(p) for p in pids)
        if capture_only:
            system.resume()
        runs1, changes1 = runs_done(src)
        r.update(full_runs=runs1 - runs0, full_changes_per_run=(changes1 - changes0) / max(runs1 - runs0, 1),
                 full_cpu=(cpu1 - cpu0) / TPS_SECONDS)
        measure.wait_equal(src, tgt)
        offsets = [(c.datadir / "server.log").stat().st_size for c in (src, tgt)]
        runs0 = src.query("pgrepl", "SELECT count(*) FROM pgrepl.run")[0][0]
        log_statements([src, tgt], True)
        lag = measure.lag_under_load(src, tgt, 200, LAG_SECONDS)
        log_statements([src, tgt], False)
        runs = src.query("pgrepl", "SELECT count(*) FROM pgrepl.run")[0][0] - runs0
        r.update(lag_p50=lag["p50"] * 1000, lag_p99=lag["p99"] * 1000, tps_200=lag["tps"], runs=runs)
        for k, n in statements([src, tgt], offsets).items():
            r[f"per_run {k}" if k != "probe" else "probes"] = n / runs if k != "probe" else n
    finally:
        system.teardown()
    return r


@contextmanager
def pgbench_clusters() -> Iterator[tuple[LocalCluster, LocalCluster]]:
    """The source and target clusters (durable, BENCH_PORT and +1), pgbench's tables at SCALE on both, made ready by
    bench/peers' measure.prepare; stopped at the end (bench/push_profile.py uses them too)."""
    src = LocalCluster("source", PORT, BASE / "source").init(DURABLE).start()
    tgt = LocalCluster("target", PORT + 1, BASE / "target").init(DURABLE).start()
    try:
        for c in (src, tgt):
            c.createdb("test1")
            c.pgbench("test1", "-i", "-q", "-s", str(SCALE))
        measure.prepare(src, tgt)
        yield src, tgt
    finally:
        for c in (src, tgt):
            c.stop("immediate")


def main() -> None:
    results: dict[str, list[dict]] = {n: [] for n in VARIANTS}
    with pgbench_clusters() as (src, tgt):
        names = list(VARIANTS)
        for rnd in range(ROUNDS):
            for name in names[rnd % len(names):] + names[:rnd % len(names)]:
                load = os.getloadavg()[0]
                r = one(src, tgt, VARIANTS[name])
                r["load"] = load
                results[name].append(r)
                print(f"round {rnd + 1} {name}: " + ", ".join(f"{k} {v:.3g}" for k, v in r.items()), flush=True)
    keys = sorted({k for rs in results.values() for r in rs for k in r})
    print("\n| figure | " + " | ".join(results) + " |\n" + "|---" * (len(results) + 1) + "|")
    for k in keys:
        cells = []
        for rs in results.values():
            v = [r[k] for r in rs if k in r]
            cells.append(f"{statistics.median(v):.3g} ({min(v):.3g}-{max(v):.3g})" if v else "-")
        print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
