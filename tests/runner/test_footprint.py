"""A worker is one interpreter per sync: what it imports is memory paid once per sync (bench/footprint.py)."""

from __future__ import annotations

import os
import subprocess
import sys

# Code a pushdelta worker never runs: the other verbs, compare, swap, metrics (the controller's), alert emails (only
# when one is sent).
NOT_IN_A_WORKER = ("pgrepl.cli.views", "pgrepl.cli.operate", "pgrepl.cli.define", "pgrepl.cli.compare",
                   "pgrepl.cli.help", "pgrepl.compare", "pgrepl.compare_sync", "pgrepl.swap", "pgrepl.metrics",
                   "prometheus_client", "smtplib", "email")


def test_a_worker_does_not_load_what_it_does_not_run():
    # the real command line of a worker; its control database refuses the connection, after every import
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "pgrepl", "worker", "s1"], capture_output=True,
                         text=True, env=dict(os.environ, PGREPL_CONTROL="host=127.0.0.1 port=1 connect_timeout=2"))
    assert out.returncode == 1 and "cannot connect" in out.stderr
    loaded = {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "pgrepl.worker" in loaded
    assert not loaded & set(NOT_IN_A_WORKER)
