"""Fault injection for the fault suite: the daemon supervised as systemd would (Restart=always), `kill -9` of its
processes, pgbench in the background, and the end-of-scenario checks (every table equal on both sides, exactly one
live worker per sync). Processes are found through /proc and only those whose PGREPL_CONTROL is this test's control
database count: other suites run side by side on other ports."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from pgcluster import PGBENCH, LocalCluster

PGBENCH_TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers")


def _proc(pid: str, what: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{what}").read_bytes()
    except OSError:
        return b""


def pgrepl_processes(control: str, *args: str) -> list[int]:
    """Live processes running `pgrepl ARGS...` with PGREPL_CONTROL=CONTROL in their environment (zombies do not
    count): a command line `python -m pgrepl ARGS...`, or the title of a process the controller forked (`pgrepl
    zygote`, `pgrepl worker SYNC`), whose /proc environ is still the controller's."""
    want = [b"pgrepl", *(a.encode() for a in args)]
    env = f"PGREPL_CONTROL={control}".encode() + b"\0"
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        words = _proc(pid, "cmdline").replace(b"\0", b" ").split()
        if (b"pgrepl" in words and words[words.index(b"pgrepl"):][:len(want)] == want
                and env in b"\0" + _proc(pid, "environ") and b"State:\tZ" not in _proc(pid, "status")):
            found.append(int(pid))
    return sorted(found)


def workers(e, sync: str) -> list[int]:
    return pgrepl_processes(e.control, "worker", sync)


def controllers(e) -> list[int]:
    return pgrepl_processes(e.control, "run")


def kill_leftovers(e) -> None:
    """Teardown: every controller and worker this test started (orphans included) is killed by its pid."""
    for pid in controllers(e) + pgrepl_processes(e.control, "zygote") + pgrepl_processes(e.control, "worker"):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Supervisor:
    """`pgrepl run` as a systemd unit with Restart=always runs it: whenever the controller is dead, it is started
    again (the dead one reaped first, as systemd does)."""

    def __init__(self, e) -> None:
        self.e = e
        self.restarts = 0

    def ensure(self) -> None:
        proc = self.e.daemon_proc
        if proc is not None and proc.poll() is None:
            return
        if proc is not None:
            self.restarts += 1
        self.e.daemon_proc = None
        self.e.start()
        self.e.wait_for(lambda: _pidfile(self.e) == self.e.daemon_proc.pid or self.e.daemon_proc.poll() is not None,
                        what="the restarted controller's pid file")


def _ppid(pid: int) -> int | None:
    for line in _proc(str(pid), "status").decode().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return None


def _pidfile(e) -> int | None:
    try:
        return int((e.piddir / "pgrepl.mcp.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Killer:
    """`kill -9` of a worker or of the controller at random moments; the supervisor restarts the controller."""

    def __init__(self, e, syncs: list[str], seed: int | None = None) -> None:
        self.e, self.syncs = e, syncs
        self.seed = seed if seed is not None else random.randrange(1 << 30)
        self.rng = random.Random(self.seed)
        self.supervisor = Supervisor(e)
        self.kills = {"worker": 0, "controller": 0}

    def run(self, times: int, max_pause: float = 2.0) -> None:
        for _ in range(times):
            time.sleep(self.rng.uniform(0.1, max_pause))   # a random moment: fault timing, not a sync point
            self.supervisor.ensure()
            # the controller's own workers (children of its zygote): orphans of a killed controller are left alone,
            # as an operator would
            victims = [("worker", pid) for s in self.syncs for pid in workers(self.e, s)
                       if _ppid(_ppid(pid) or 0) == self.e.daemon_proc.pid]
            if not victims or self.rng.random() < 0.3:
                victims = [("controller", self.e.daemon_proc.pid)]
            kind, pid = self.rng.choice(victims)
            try:
                os.kill(pid, signal.SIGKILL)
                self.kills[kind] += 1
            except ProcessLookupError:
                pass
            _wait_dead(self.e, pid)
        self.supervisor.ensure()

    def summary(self) -> str:
        return (f"kill -9 of {self.kills['worker']} worker(s) and {self.kills['controller']} controller(s) "
                f"(seed {self.seed}), controller restarted {self.supervisor.restarts} time(s)")


def _wait_dead(e, pid: int) -> None:
    """kill(2) returns before the victim is dead: on a loaded machine it can still be running its exit for a while,
    and a supervisor that looked then saw a live controller and never restarted it (the runner then stayed down).
    The controller is reaped here, as systemd reaps it on SIGCHLD; a worker is waited for until its own
    controller can see it dead."""
    proc = e.daemon_proc
    if proc is not None and proc.pid == pid:
        proc.wait(60)
    else:
        e.wait_for(lambda: _proc(str(pid), "status") == b"" or b"State:\tZ" in _proc(str(pid), "status"), 60,
                   f"worker {pid} dead after kill -9")


def pgbench_background(cluster: LocalCluster, dbname: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(cluster.port), PGUSER="postgres")
    return subprocess.Popen([str(PGBENCH), *args, dbname], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out = proc.communicate(timeout=timeout)[0]
    assert proc.returncode == 0, f"pgbench failed ({proc.returncode}):\n{out[-2000:]}"
    return out


def checksums(e, host: str, tables) -> dict:
    return {t: e.checksum(host, t) for t in tables}


def wait_equal(e, a: str, b: str, tables, timeout: float = 180, kick: str | None = None) -> None:
    """Waits until every table has the same count and checksum on A and B; with KICK, then runs that sync once
    more (a run that finishes well) and checks again, so that nothing was still pending."""
    try:
        e.wait_for(lambda: checksums(e, a, tables) == checksums(e, b, tables), timeout,
                   f"{', '.join(tables)} equal on {a} and {b}")
    except AssertionError as err:
        first, _, rest = str(err).partition("\n")
        raise AssertionError(f"{first}\n{a}: {checksums(e, a, tables)}\n{b}: {checksums(e, b, tables)}\n"
                             f"--- distinct errors in the daemon log ---\n{log_errors(e)}\n{rest[-1500:]}\n"
                             f"{stall_report(e)}") from None
    if kick:
        e.cli("kick", kick, "--wait", str(int(timeout)))
        assert checksums(e, a, tables) == checksums(e, b, tables), f"{a} and {b} differ after a last run of {kick}"


def stall_report(e) -> str:
    """What the runner is doing when it does not catch up: `pgrepl status` of every sync, the worker processes and
    their kernel wait channel, and every other session of each cluster (state, wait event, age, locks held)."""
    parts = [f"--- pgrepl status ---\n{e.cli('status', expect=None)[1]}"]
    procs = controllers(e) + pgrepl_processes(e.control, "zygote") + pgrepl_processes(e.control, "worker")
    parts.append("--- runner processes ---\n" + "\n".join(
        f"{pid} ppid={_ppid(pid)} wchan={_proc(str(pid), 'wchan').decode()} "
        + " ".join(_proc(str(pid), "cmdline").decode().split("\0")) for pid in procs))
    for name, c in e.c.items():
        try:
            rows = c.query("postgres", """
                SELECT a.pid, a.datname, a.application_name, a.client_port, a.state, a.wait_event_type,
                       a.wait_event, now() - a.backend_start AS age, now() - a.state_change AS in_state,
                       pg_blocking_pids(a.pid) AS blocked_by, left(a.query, 120),
                       (SELECT string_agg(l.locktype || ':' || l.mode || coalesce(':' || l.objid::text, ''), ',')
                          FROM pg_locks l WHERE l.pid = a.pid AND l.locktype IN ('advisory', 'transactionid')
                          AND l.granted) AS locks
                FROM pg_stat_activity a WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
                ORDER BY a.backend_start""")
        except Exception as err:   # noqa: BLE001 - a diagnostic must not hide the failure it explains
            rows = [(f"cannot query: {err}",)]
        parts.append(f"--- sessions on {name} ---\n" + "\n".join(" | ".join(map(str, r)) for r in rows))
    return "\n".join(parts)


def log_errors(e) -> str:
    """The daemon log's ERROR lines, each once with how often it came (a failure retried forever fills the log)."""
    seen: dict[str, int] = {}
    for line in e.daemon_log().splitlines():
        if " ERROR " in line:
            line = re.sub(r"\(attempt \d+, next in [\d.]+s\)|\(pid \d+\)|code -?\d+", "", line)
            seen[line] = seen.get(line, 0) + 1
    return "\n".join(f"{n:4d}x {line}" for line, n in seen.items()) or "(none)"


def wait_one_worker(e, syncs, timeout: float = 30) -> None:
    """Exactly one live worker process per sync (a killed one may be being restarted: wait for it)."""
    def one_each() -> bool:
        return all(len(workers(e, s)) == 1 for s in syncs)
    try:
        e.wait_for(one_each, timeout, "exactly one live worker per sync")
    except AssertionError as err:
        seen = {s: workers(e, s) for s in syncs}
        raise AssertionError(f"worker processes per sync: {seen}\n{err}") from None


def report(name: str, *lines: str) -> None:
    """What a scenario injected and checked: printed (pytest -s) and kept in PGREPL_FAULTS_REPORT if set."""
    text = f"[fault scenario] {name}: " + "; ".join(lines)
    print(text, file=sys.stderr)
    path = os.environ.get("PGREPL_FAULTS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")
