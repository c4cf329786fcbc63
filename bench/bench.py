"""pgrepl benchmark: capture cost on source TPS, catch-up rate of a 1M-change backlog, fullcopy vs a raw COPY pipe.

Two durable PostgreSQL 15 clusters (fsync on) on 127.0.0.1:25471-25472 under /tmp/pgrepl-bench, pgbench scale 10.
Prints one table; docs/benchmarks.md records a run. `make bench` runs it (about 2 minutes).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pgcluster import PG_BIN, LocalCluster  # noqa: E402

BASE = Path("/tmp/pgrepl-bench")
DURABLE = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on", "shared_buffers": "256MB"}
TPS_SECONDS = int(os.environ.get("BENCH_TPS_SECONDS", "20"))


def cpu(pid: int) -> float:
    """Seconds of CPU PID used so far, utime + stime (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pgrepl(control: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "pgrepl", "--control", control, *args], capture_output=True,
                         text=True)
    if out.returncode:
        raise SystemExit(f"pgrepl {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def tps(cluster: LocalCluster, seconds: int = TPS_SECONDS) -> float:
    text = cluster.pgbench("test1", "-c", "4", "-j", "2", "-T", str(seconds), "-n")
    return float(re.search(r"tps = ([\d.]+)", text).group(1))


def raw_copy(src: LocalCluster, tgt: LocalCluster, table: str = "pgbench_accounts") -> float:
    """Seconds of `psql COPY TO STDOUT | psql COPY FROM STDIN` of TABLE into the target's copy, emptied first."""
    psql = str(PG_BIN / "psql")
    tgt.execute("test1", f"TRUNCATE {table}")
    t0 = time.monotonic()
    subprocess.run(f"{psql} -X -q -h 127.0.0.1 -p {src.port} -U postgres -d test1 -c "
                   f"'COPY {table} TO STDOUT' | {psql} -X -q -h 127.0.0.1 -p {tgt.port} -U postgres "
                   f"-d test1 -c 'COPY {table} FROM STDIN'", shell=True, check=True)
    return time.monotonic() - t0


def vm_hwm_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def start_pair(base: Path, port: int) -> tuple[LocalCluster, LocalCluster]:
    """A source and a target cluster, durable, on PORT and PORT+1 under BASE (emptied first)."""
    shutil.rmtree(base, ignore_errors=True)
    return (LocalCluster("source", port, base / "source").init(DURABLE).start(),
            LocalCluster("target", port + 1, base / "target").init(DURABLE).start())


def declare_pair(src: LocalCluster, tgt: LocalCluster, base: Path, scale: int, *settings: str) -> str:
    """pgbench tables at SCALE on both, a control database on the source with both declared; its conninfo."""
    for c in (src, tgt):
        c.createdb("test1")
        c.pgbench("test1", "-i", "-q", "-s", str(scale))
    src.createdb("pgrepl")
    control = src.dsn("pgrepl")
    pgrepl(control, "install")
    pgrepl(control, "set", f"piddir={base / 'run'}", *settings)
    for name, c in (("source", src), ("target", tgt)):
        pgrepl(control, "add", "database", "test1", f"name={name}", "host=127.0.0.1", f"port={c.port}",
               "user=postgres")
    return control


def main() -> None:
    src, tgt = start_pair(BASE, 25471)
    daemon = None
    try:
        control = declare_pair(src, tgt, BASE, 10, "fullcopy_delete_method=truncate", "fullcopy_analyze=no")
        env = dict(os.environ, PGREPL_CONTROL=control)
        rows = []

        base_tps = tps(src)
        pgrepl(control, "add", "all", "tables", "db=source", "-T", "pgbench_history", "--herd=alpha")
        pgrepl(control, "add", "sync", "delta", "source=alpha", "targetdb=target", "type=pushdelta")
        # The triggers alone (the runner not started: nothing is applied), then with the runner applying to the
        # target on the same two cores, as it does in production on another host.
        capture_tps = tps(src)
        daemon = subprocess.Popen([sys.executable, "-m", "pgrepl", "run"], env=env, stderr=subprocess.DEVNULL)
        poll_tps = tps(src)
        pgrepl(control, "set", "capture_notify=on")
        notify_tps = tps(src)
        pgrepl(control, "set", "capture_notify=off")
        rows.append(("source TPS, no capture (pgbench -c 4, scale 10)", f"{base_tps:,.0f}", "", ""))
        rows.append(("TPS ratio with capture triggers alone (runner stopped)", f"{capture_tps / base_tps:.2f}",
                     ">= 0.85", capture_tps / base_tps >= 0.85))
        rows.append(("TPS ratio with capture, runner applying, polling (default)", f"{poll_tps / base_tps:.2f}",
                     ">= 0.85", poll_tps / base_tps >= 0.85))
        rows.append(("TPS ratio with capture, NOTIFY per statement", f"{notify_tps / base_tps:.2f}", "", ""))

        # catch-up: 1,000,000 changed rows captured while the runner is stopped
        daemon.terminate()
        daemon.wait(60)
        time.sleep(1)
        src.execute("test1", "UPDATE pgbench_accounts SET filler = 'catch-up'")
        t0 = time.monotonic()
        daemon = subprocess.Popen([sys.executable, "-m", "pgrepl", "run"], env=env, stderr=subprocess.DEVNULL)
        while tgt.query("test1", "SELECT count(*) FROM pgbench_accounts WHERE filler = 'catch-up'")[0][0] < 1_000_000:
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
        worker_pid = int((BASE / "run" / "pgrepl.sync.delta.pid").read_text())
        rss = vm_hwm_mb(worker_pid)
        rows.append(("catch-up of 1,000,000 changed rows (rows/s)", f"{1e6 / elapsed:,.0f}", ">= 50,000",
                     1e6 / elapsed >= 50_000))
        rows.append(("runner worker peak RSS (MB)", f"{rss:.0f}", "<= 200", rss <= 200))

        # fullcopy of pgbench_accounts (1M rows) vs a raw psql COPY pipe
        pgrepl(control, "deactivate", "delta")
        pgrepl(control, "add", "table", "pgbench_accounts", "db=source", "herd=accounts")
        pgrepl(control, "add", "sync", "copy", "source=accounts", "targetdb=target", "type=fullcopy")
        # Both copies start from the same quiet state: the catch-up above left a million dead rows, unset hint bits
        # and a checkpoint's worth of dirty pages, which the first copy would pay for alone.
        for c in (src, tgt):
            c.execute("test1", "VACUUM pgbench_accounts")
            c.execute("test1", "CHECKPOINT")
        t0 = time.monotonic()
        pgrepl(control, "kick", "copy", "--wait", "600")
        runner_copy = time.monotonic() - t0
        copy_run = src.query("pgrepl", "SELECT extract(epoch FROM ended - started)::float FROM pgrepl.run "
                                       "WHERE sync = 'copy' ORDER BY id DESC LIMIT 1")[0][0]
        raw = raw_copy(src, tgt)
        rows.append(("fullcopy of 1M rows: `kick --wait`, end to end (s)", f"{runner_copy:.1f}", "", ""))
        rows.append(("fullcopy of 1M rows: the run itself (s)", f"{copy_run:.1f}", "", ""))
        rows.append(("fullcopy of 1M rows: raw psql pipe (s)", f"{raw:.1f}", "", ""))
        rows.append(("fullcopy speed vs raw pipe (run itself)", f"{raw / copy_run:.2f}", ">= 0.8",
                     raw / copy_run >= 0.8))

        width = max(len(r[0]) for r in rows)
        print(f"\n{'metric':<{width}}  {'figure':>10}  {'aim':>10}  met")
        for metric, figure, aim, met in rows:
            print(f"{metric:<{width}}  {figure:>10}  {aim:>10}  {'' if met == '' else ('yes' if met else 'NO')}")
    finally:
        if daemon and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(60)
        for c in (src, tgt):
            c.stop("immediate")


if __name__ == "__main__":
    main()
