"""The runner's memory footprint with 10 syncs: the controller, its zygote and its 10 workers, idle, under a small
load, and at the peak of a 100,000-row catch-up on one sync.

Two clusters (not durable: memory is under test, not the disk) on 127.0.0.1:PORT and PORT+1 (BENCH_PORT, default
25497) under BENCH_DIR (/tmp/pgrepl-bench-footprint); ten tables t0..t9 (t0: 100,000 rows, the others 1,000) on both,
a pushdelta sync s0..s9 per table. For each code tree (this one, and each `--compare PATH` of another runner/src,
e.g. an older commit's, run by PYTHONPATH), the daemon (`pgrepl run`) is started and measured:
  idle      5 s after the last worker started, one sample;
  load      the highest sample (every 0.25 s) during BENCH_SECONDS (default 15) of pgbench -R 100 spread over the
            ten tables;
  catch-up  the highest sample while s0 applies `UPDATE t0 SET v = v + 1` (100,000 rows, one transaction).
A process's RSS counts every page it maps, shared libraries included (libpython, libpq, libcrypto... are counted
again in each process); PSS divides each shared page by the processes sharing it, so the sum of PSS is the memory the
runner really costs the host; USS (Private_Clean + Private_Dirty) is what stopping that one process would give back.
All three come from /proc/PID/smaps_rollup. `make bench-footprint` (about a minute a tree and round).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pgcluster import PGBENCH, LocalCluster  # noqa: E402

from bench import pgrepl  # noqa: E402

BASE = Path(os.environ.get("BENCH_DIR", "/tmp/pgrepl-bench-footprint"))
PORT = int(os.environ.get("BENCH_PORT", "25497"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
SYNCS = 10
BIG = 100_000
SMALL = 1_000
PHASES = ("idle", "load", "catch-up")
FIGURES = ("rss", "pss", "uss")


def memory(pid: int) -> dict[str, int] | None:
    """RSS, PSS and USS of PID in kB (None when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    kb = {line.split()[0].rstrip(":"): int(line.split()[1]) for line in text.splitlines()[1:]}
    return {"rss": kb["Rss"], "pss": kb["Pss"], "uss": kb["Private_Clean"] + kb["Private_Dirty"]}


def _ppid(pid: str) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def processes(controller: int) -> dict[str, int]:
    """'controller', 'zygote' (the controller's child that forks the workers, when there is one) and each sync's
    worker (from its pid file) -> pid."""
    found = {"controller": controller}
    for i in range(SYNCS):
        try:
            found[f"s{i}"] = int((BASE / "run" / f"pgrepl.sync.s{i}.pid").read_text())
        except (OSError, ValueError):
            pass
    workers = set(found.values())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if _ppid(pid) == controller and int(pid) not in workers:
            found["zygote"] = int(pid)
    return found


class Peaks:
    """The highest figures seen per process, and of the sums over all processes taken at one sample."""

    def __init__(self) -> None:
        self.high: dict[str, dict[str, int]] = {}

    def sample(self, pids: dict[str, int]) -> None:
        total = dict.fromkeys(FIGURES, 0)
        for name, pid in pids.items():
            m = memory(pid)
            if m is None:
                continue
            for f in FIGURES:
                total[f] += m[f]
            self._keep(name, m)
        self._keep("total", total)

    def _keep(self, name: str, m: dict[str, int]) -> None:
        high = self.high.setdefault(name, dict.fromkeys(FIGURES, 0))
        for f in FIGURES:
            high[f] = max(high[f], m[f])


def setup(src: LocalCluster, tgt: LocalCluster) -> str:
    for c in (src, tgt):
        c.createdb("test1")
        for i in range(SYNCS):
            c.execute("test1", f"CREATE TABLE t{i} (id int PRIMARY KEY, v int NOT NULL, pad text NOT NULL); "
                               f"INSERT INTO t{i} SELECT g, 0, repeat('x', 80) "
                               f"FROM generate_series(1, {BIG if i == 0 else SMALL}) g")
    src.createdb("pgrepl")
    control = src.dsn("pgrepl")
    pgrepl(control, "install")
    pgrepl(control, "set", f"piddir={BASE / 'run'}")
    for name, c in (("source", src), ("target", tgt)):
        pgrepl(control, "add", "database", "test1", f"name={name}", "host=127.0.0.1", f"port={c.port}",
               "user=postgres")
    for i in range(SYNCS):
        pgrepl(control, "add", "table", f"t{i}", "db=source", f"herd=h{i}")
        pgrepl(control, "add", "sync", f"s{i}", f"source=h{i}", "targetdb=target", "type=pushdelta")
    return control


def load(src: LocalCluster, scripts: Path) -> subprocess.Popen:
    """pgbench at 100 transactions/s, each one update of a random row of a random table."""
    files = []
    for i in range(SYNCS):
        f = scripts / f"t{i}.sql"
        f.write_text(f"\\set id random(1, {SMALL})\nUPDATE t{i} SET v = v + 1 WHERE id = :id;\n")
        files += ["-f", str(f)]
    env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(src.port), PGUSER="postgres")
    return subprocess.Popen([str(PGBENCH), "-n", "-c", "2", "-R", "100", "-T", str(SECONDS), *files, "test1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(src: LocalCluster, tgt: LocalCluster, control: str, code: str | None) -> dict[str, Peaks]:
    """Starts the daemon on CODE (a runner/src; None: the installed one) and takes the three phases' figures."""
    env = dict(os.environ, PGREPL_CONTROL=control)
    if code:
        env["PYTHONPATH"] = code
    daemon = subprocess.Popen([sys.executable, "-m", "pgrepl", "run"], env=env, stderr=subprocess.DEVNULL)
    result = {p: Peaks() for p in PHASES}
    try:
        deadline = time.monotonic() + 120
        while len([n for n in processes(daemon.pid) if n.startswith("s")]) < SYNCS:
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit("the daemon did not start its ten workers")
            time.sleep(0.2)
        time.sleep(5)
        pids = processes(daemon.pid)
        result["idle"].sample(pids)

        with tempfile.TemporaryDirectory() as scripts:
            bench = load(src, Path(scripts))
            while bench.poll() is None:
                result["load"].sample(pids)
                time.sleep(0.25)

        src.execute("test1", "UPDATE t0 SET v = v + 1")
        target = src.query("test1", "SELECT sum(v) FROM t0")[0][0]
        deadline = time.monotonic() + 300
        while tgt.query("test1", "SELECT sum(v) FROM t0")[0][0] < target:
            if time.monotonic() > deadline:
                raise SystemExit("s0 did not catch up in 300 s")
            result["catch-up"].sample(pids)
            time.sleep(0.1)
        result["catch-up"].sample(pids)
    finally:
        daemon.terminate()
        daemon.wait(60)
    return result


def table(label: str, result: dict[str, Peaks]) -> str:
    head = " | ".join(f"{p} {f.upper()}" for p in PHASES for f in FIGURES)
    lines = [f"\n{label} (MB)\n", f"| process | {head} |", "|---" * (1 + len(PHASES) * len(FIGURES)) + "|"]
    names = ["controller", "zygote"] + [f"s{i}" for i in range(SYNCS)] + ["total"]
    for name in names:
        cells = " | ".join(f"{result[p].high.get(name, {}).get(f, 0) / 1024:.1f}" for p in PHASES for f in FIGURES)
        lines.append(f"| {'**total**' if name == 'total' else name} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compare", action="append", default=[], metavar="SRC",
                        help="another runner/src to measure beside this tree's (PYTHONPATH)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, each tree once per round in turn")
    args = parser.parse_args()
    trees = [("this tree", None)] + [(path, path) for path in args.compare]
    src = LocalCluster("source", PORT, BASE / "source").init().start()
    tgt = LocalCluster("target", PORT + 1, BASE / "target").init().start()
    try:
        control = setup(src, tgt)
        for r in range(args.rounds):
            for label, code in trees:
                print(table(f"{label}, round {r + 1}", measure(src, tgt, control, code)), flush=True)
    finally:
        for c in (src, tgt):
            c.stop("immediate")


if __name__ == "__main__":
    main()
