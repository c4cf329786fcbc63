"""What the runner imports is memory (bench/footprint.py): the zygote's imports are shared by every worker it forks
(copy-on-write), what a worker imports after the fork is its own, paid once per sync."""

from __future__ import annotations

import os
import subprocess
import sys

# Code a pushdelta worker never runs: the other verbs, compare, swap, metrics (the controller's), alert emails (only
# when one is sent).
NOT_IN_A_WORKER = ("pgrepl.cli.views", "pgrepl.cli.operate", "pgrepl.cli.define", "pgrepl.cli.compare",
                   "pgrepl.cli.help", "pgrepl.compare", "pgrepl.compare_sync", "pgrepl.swap", "pgrepl.metrics",
                   "prometheus_client", "smtplib", "email")


def imports(*args: str) -> set[str]:
    """The modules `pgrepl ARGS` imports before its control database refuses the connection."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "pgrepl", *args], capture_output=True, text=True,
                         env=dict(os.environ, PGREPL_CONTROL="host=127.0.0.1 port=1 connect_timeout=2"), timeout=60)
    assert out.returncode == 1 and "cannot connect" in out.stderr
    return {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}


def test_a_worker_does_not_load_what_it_does_not_run():
    # `pgrepl worker NAME`: what a worker forked by the zygote runs too (zygote.py), and a worker started by hand
    loaded = imports("worker", "s1")
    assert "pgrepl.worker" in loaded
    assert not loaded & set(NOT_IN_A_WORKER)


def test_the_zygote_holds_what_a_worker_runs_and_nothing_else():
    # `pgrepl run` forks the zygote first, before it connects: what it imported by then is what the zygote holds
    # and shares with the workers
    loaded = imports("run")
    assert {"pgrepl.zygote", "pgrepl.worker", "pgrepl.apply", "pgrepl.watch", "psycopg"} <= loaded
    assert not loaded & set(NOT_IN_A_WORKER)
