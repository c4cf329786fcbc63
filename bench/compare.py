"""pgrepl compare benchmark: pgbench scale 10 (1M accounts) compared on a source and a target, equal and with 100
scattered differences, beside the raw floor `pg_dump --data-only | sort | md5sum` run on both sides at once.

Two PostgreSQL 15 clusters on 127.0.0.1:25501-25502 under /tmp/pgrepl-bench-compare. Prints one table;
docs/benchmarks.md records a run. `make bench-compare` runs it (`make bench` too; about 2 minutes).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from pgcluster import PG_BIN, LocalCluster  # noqa: E402

from bench import pgrepl  # noqa: E402

BASE = Path(os.environ.get("BENCH_COMPARE_DIR", "/tmp/pgrepl-bench-compare"))
PORT = int(os.environ.get("BENCH_COMPARE_PORT", "25501"))
SETTINGS = {"shared_buffers": "256MB"}
TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers")


def timed_rss(argv: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """ARGV's output, wall seconds and peak RSS (MB), measured with wait4 on the child."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    return (subprocess.CompletedProcess(argv, os.waitstatus_to_exitcode(status), out, err),
            time.monotonic() - t0, usage.ru_maxrss / 1024)


def floor(clusters: list[LocalCluster]) -> tuple[float, bool]:
    """Seconds for `pg_dump --data-only | sort | md5sum` of the compared tables, on both sides at once."""
    tables = " ".join(f"-t {t}" for t in TABLES)
    t0 = time.monotonic()
    # pg_dump 15.14+ writes \restrict and \unrestrict lines with a random key: not data
    procs = [subprocess.Popen(f"{PG_BIN / 'pg_dump'} -h 127.0.0.1 -p {c.port} -U postgres --data-only {tables} "
                              f"test1 | grep -Ev '^.(un)?restrict ' | sort | md5sum", shell=True,
                              stdout=subprocess.PIPE, text=True)
             for c in clusters]
    sums = [p.communicate()[0].split()[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    return time.monotonic() - t0, len(set(sums)) == 1


def main() -> None:
    shutil.rmtree(BASE, ignore_errors=True)
    src = LocalCluster("source", PORT, BASE / "source").init(SETTINGS).start()
    tgt = LocalCluster("target", PORT + 1, BASE / "target").init(SETTINGS).start()
    try:
        for c in (src, tgt):
            c.createdb("test1")
            c.pgbench("test1", "-i", "-q", "-s", "10")
            c.execute("test1", "VACUUM ANALYZE")
        src.createdb("pgrepl")
        control = src.dsn("pgrepl")
        pgrepl(control, "install")
        for name, c in (("source", src), ("target", tgt)):
            pgrepl(control, "add", "database", "test1", f"name={name}", "host=127.0.0.1", f"port={c.port}",
                   "user=postgres")
        pgrepl(control, "add", "all", "tables", "db=source", "-T", "pgbench_history", "--herd=alpha")
        pgrepl(control, "add", "sync", "delta", "source=alpha", "targetdb=target", "type=pushdelta")
        rows = []
        cmd = [sys.executable, "-m", "pgrepl", "--control", control, "compare", "delta", "--json"]
        # warm both sides' caches alike before anything is timed
        floor([src, tgt])
        base, base_same = floor([src, tgt])
        rows.append(("floor: pg_dump --data-only | sort | md5sum, both sides at once (s)", f"{base:.1f}",
                     "" if base_same else "sums differ"))
        for block in ("1000", "10000"):
            pgrepl(control, "set", f"compare_block_size={block}")
            proc, equal_s, rss = timed_rss(cmd)
            result = json.loads(proc.stdout)
            assert proc.returncode == 0 and result["equal"], proc.stdout + proc.stderr
            n = result["rows"]
            rows.append((f"compare equal, block {block}: seconds / rows/s / x floor", f"{equal_s:.1f}",
                         f"{n / equal_s:,.0f} rows/s, {base / equal_s:.2f}x the floor's speed"))
            rows.append((f"compare equal, block {block}: runner peak RSS (MB)", f"{rss:.0f}", ""))
        aids = random.Random(11).sample(range(1, 1_000_001), 100)
        tgt.execute("test1", "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = ANY(%s)", (aids,))
        for block in ("1000", "10000"):
            pgrepl(control, "set", f"compare_block_size={block}")
            proc, diff_s, rss = timed_rss(cmd)
            result = json.loads(proc.stdout)
            assert proc.returncode == 5 and result["differences"] == 100, proc.stdout[-2000:] + proc.stderr
            rows.append((f"compare, 100 scattered differences, block {block}: seconds / rows/s", f"{diff_s:.1f}",
                         f"{n / diff_s:,.0f} rows/s, {base / diff_s:.2f}x the floor's speed"))
            rows.append((f"compare, 100 differences, block {block}: runner peak RSS (MB)", f"{rss:.0f}", ""))
        width = max(len(r[0]) for r in rows)
        print(f"\nrows compared: {n:,}\n{'metric':<{width}}  {'figure':>8}  note")
        for metric, figure, note in rows:
            print(f"{metric:<{width}}  {figure:>8}  {note}")
    finally:
        for c in (src, tgt):
            c.stop("immediate")
        shutil.rmtree(BASE, ignore_errors=True)


if __name__ == "__main__":
    main()
