"""Where a pushdelta run's CPU goes under full-speed pgbench: the worker's own CPU, the source's backends serving
it, the target's backend writing, per 1,000 changes applied (/proc/PID/stat utime + stime).

Same clusters and tables as bench/push_cost.py (BENCH_PORT, BENCH_DIR, BENCH_SCALE, BENCH_TPS_SECONDS); runner
tree by PYTHONPATH (BENCH_RUNNER, default this tree's). BENCH_CPROFILE=FILE: the worker runs under cProfile (a
sitecustomize hook in bench/profile_hook) and writes FILE.<pid> when it stops.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[1:1] = [str(ROOT / "tests"), str(ROOT / "bench"), str(ROOT / "bench" / "peers")]
import measure  # noqa: E402
import systems  # noqa: E402
from push_cost import BASE, pgbench_clusters, pgrepl_pids  # noqa: E402
from push_cost import TPS_SECONDS as SECONDS  # noqa: E402

from bench import cpu, tps  # noqa: E402


def main() -> None:
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [os.environ.get("BENCH_RUNNER", str(ROOT / "runner/src"))]
        + [str(ROOT / "bench" / "profile_hook")] * bool(os.environ.get("BENCH_CPROFILE")))
    if os.environ.get("BENCH_CPROFILE"):
        os.environ["PGREPL_CPROFILE"] = os.environ["BENCH_CPROFILE"]
    with pgbench_clusters() as (src, tgt):
        system = systems.Pgrepl(src, tgt, BASE)
        base = tps(src, SECONDS)
        measure.resync(src, tgt)
        system.setup()
        try:
            measure.wait_equal(src, tgt)
            pids = pgrepl_pids(src, tgt, system)
            before = {k: sum(cpu(p) for p in v) for k, v in pids.items()}
            rows0 = src.query("pgrepl", "SELECT count(*), coalesce(sum(inserts + updates + deletes), 0) FROM pgrepl.run")[0]
            out: dict = {}
            t = threading.Thread(target=lambda: out.update(tps=tps(src, SECONDS)))
            t.start()
            t.join()
            after = {k: sum(cpu(p) for p in v) for k, v in pids.items()}
            rows1 = src.query("pgrepl", "SELECT count(*), coalesce(sum(inserts + updates + deletes), 0) FROM pgrepl.run")[0]
            runs, changes = rows1[0] - rows0[0], int(rows1[1] - rows0[1])
            print(f"tps ratio {out['tps'] / base:.3f} ({out['tps']:.0f} / {base:.0f}), runs {runs}, changes {changes}, "
                  f"changes per run {changes / max(runs, 1):.1f}")
            for k in pids:
                used = after[k] - before[k]
                print(f"{k}: {used:.2f} s CPU, {1000 * used / max(changes, 1) * 1000:.0f} ms per 1,000 changes, "
                      f"{1000 * used / max(runs, 1):.2f} ms per run")
        finally:
            system.teardown()


if __name__ == "__main__":
    main()
