"""`make bench-peers`: pgrepl, Bucardo 5.6 and native logical replication, side by side in one run.

Two durable PostgreSQL 15 clusters on loopback (fsync and synchronous_commit on; the source with wal_level = logical
for all three, so the baseline is the same), pgbench tables on both. Each round runs every system once, in an
order rotated from round to round (interleaved, so that the shared disk's swings hit all alike), and for each:
the target made equal to the source; TPS without replication, then with the system set up and applying (the
ratio); lag at `-R 200`; the rate ladder (the highest rate pgbench achieved with the lag's p99 under 1 s); the catch-up of
`UPDATE pgbench_accounts SET abalance = abalance + 1` and the replicating process's peak RSS; the system removed;
then its full copy of pgbench_accounts against a raw `psql COPY | psql COPY` pipe timed just before it. Prints
median (min-max) over the rounds as one table, writes the figures as JSON and draws the plots under docs/.

`python bench/peers --quick`: scale 1, one round, short steps: smoke-tests the harness in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[1:1] = [str(ROOT / "tests"), str(ROOT / "bench")]
import measure  # noqa: E402
import plots  # noqa: E402
import systems  # noqa: E402
from pgcluster import LocalCluster  # noqa: E402

from bench import DURABLE, raw_copy, tps  # noqa: E402


@dataclass
class Profile:
    scale: int = 10
    rounds: int = 2
    tps_seconds: int = 15
    lag_seconds: int = 20
    rate: int = 200
    ladder: list[int] = field(default_factory=lambda: [100, 200, 400, 800, 1600])
    step_seconds: int = 10


QUICK = Profile(scale=1, rounds=1, tps_seconds=5, lag_seconds=10, ladder=[100, 400], step_seconds=8)

# (key, what, format, better): the table's rows, in order
ROWS = [
    ("tps_ratio", "source TPS with replication / without (-c 4)", "{:.2f}", "higher"),
    ("lag_p50", "lag p50 at -R 200 (ms)", "{:.0f}", "lower"),
    ("lag_p99", "lag p99 at -R 200 (ms)", "{:.0f}", "lower"),
    ("max_rate", "highest TPS achieved with lag p99 < 1 s (-R ladder)", "{:.0f}", "higher"),
    ("catchup", "catch-up of UPDATE pgbench_accounts SET abalance + 1 (rows/s)", "{:,.0f}", "higher"),
    ("update_s", "that UPDATE on the source (s)", "{:.1f}", "lower"),
    ("rss_mb", "peak RSS of the replicating process (MB)", "{:.0f}", "lower"),
    ("fullcopy_x", "full copy of pgbench_accounts / raw pipe", "{:.2f}x", "lower"),
]


def one(system: systems.System, p: Profile, src: LocalCluster, tgt: LocalCluster) -> dict:
    r: dict = {}
    base = tps(src, p.tps_seconds)
    measure.resync(src, tgt)
    system.setup()
    try:
        r["tps_ratio"] = tps(src, p.tps_seconds) / base
        measure.wait_equal(src, tgt)
        lag = measure.lag_under_load(src, tgt, p.rate, p.lag_seconds)
        r["lag_p50"], r["lag_p99"] = lag["p50"] * 1000, lag["p99"] * 1000
        measure.wait_equal(src, tgt)
        r["max_rate"], r["ladder"] = measure.max_rate(src, tgt, p.ladder, p.step_seconds)
        if system.catchup:
            c = measure.catch_up(system, src, tgt)
            r["catchup"], r["update_s"], r["rss_mb"] = c["rows_s"], c["update_s"], c["rss_mb"]
    finally:
        system.teardown()
    if system.catchup:
        measure.quiesce(src, tgt)
        raw = raw_copy(src, tgt)
        measure.quiesce(src, tgt)
        copy = system.fullcopy()
        r["fullcopy_x"] = copy / raw if copy else None
        r["fullcopy_s"], r["raw_s"] = copy, raw
    return r


def summary(values: list) -> tuple[float, float, float] | None:
    values = [v for v in values if v is not None]
    return (statistics.median(values), min(values), max(values)) if values else None


def table(results: dict[str, list[dict]], names: list[str]) -> str:
    labels = [systems.SYSTEMS[n].label for n in names]
    lines = ["| figure | " + " | ".join(labels) + " |", "|---" * (len(names) + 1) + "|"]
    for key, what, fmt, _better in ROWS:
        cells = []
        for n in names:
            s = summary([r.get(key) for r in results[n]])
            cells.append("—" if s is None else
                         fmt.format(s[0]) + ("" if len(results[n]) < 2 else f" ({fmt.format(s[1])}–{fmt.format(s[2])})"))
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="scale 1, one round, short steps (a smoke test)")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--scale", type=int, help="pgbench scale (100,000 accounts each; default 10)")
    ap.add_argument("--systems", default=",".join(systems.SYSTEMS), help="comma-separated, from: "
                    + ", ".join(systems.SYSTEMS))
    ap.add_argument("--port", type=int, default=25491, help="the source's port; the target's is the next one")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/pgrepl-bench-peers"))
    ap.add_argument("--plots", type=Path, default=ROOT / "docs", help="where the PNG plots go")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # the clusters and systems are stopped on the way out
    p = QUICK if args.quick else Profile()
    p.rounds = args.rounds or p.rounds
    p.scale = args.scale or p.scale
    names = args.systems.split(",")
    shutil.rmtree(args.dir, ignore_errors=True)
    conf = dict(DURABLE, wal_level="logical")
    src = LocalCluster("source", args.port, args.dir / "source").init(conf).start()
    tgt = LocalCluster("target", args.port + 1, args.dir / "target").init(conf).start()
    results: dict[str, list[dict]] = {n: [] for n in names}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:
        for c in (src, tgt):
            c.createdb("test1")
            c.pgbench("test1", "-i", "-q", "-s", str(p.scale))
        measure.prepare(src, tgt)
        for rnd in range(p.rounds):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            for name in order:
                t0 = time.monotonic()
                r = one(systems.SYSTEMS[name](src, tgt, args.dir), p, src, tgt)
                results[name].append(r)
                (args.dir / "results.json").write_text(json.dumps(results, indent=1))   # a cut run keeps its rounds
                print(f"round {rnd + 1} {name} ({time.monotonic() - t0:.0f} s): "
                      + ", ".join(f"{k} {v:.3g}" for k, v in r.items() if isinstance(v, float | int)), flush=True)
    finally:
        for c in (src, tgt):
            c.stop("immediate")
    print(f"\n{started}, pgbench scale {p.scale}, {p.rounds} round(s), median (min–max):\n")
    print(table(results, names))
    for path in plots.draw(results, names, ROWS, args.plots, "-quick" if args.quick else ""):
        print(f"plot: {path}")


if __name__ == "__main__":
    main()
