"""The daemon's guarantees: one worker per sync (a lease the control database enforces), workers that die with
their controller, pid files that cannot fool `start`/`stop`, no lost NOTIFY, timeouts on member sessions, and
replication loops refused."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

ITEMS = "CREATE TABLE items (id int PRIMARY KEY, val text, n int DEFAULT 0)"


def items_sync(e, target="slave", name="itemsync", **kv):
    """`items` on master replicated by a pushdelta sync to TARGET."""
    for host in ("master", target):
        e.x(host, ITEMS)
    e.add_databases("master", target)
    e.cli("add", "table", "items", "db=test1_master", "herd=h")
    e.cli("add", "sync", name, "source=h", f"targetdb=test1_{target}", "type=pushdelta",
          *[f"{k}={v}" for k, v in kv.items()])


def pgrepl_procs(e, what: str) -> list[int]:
    """Live (not zombie) processes running `pgrepl WHAT` against this test's control database, found in /proc: by
    command line (`python -m pgrepl WHAT`) or title (`pgrepl WHAT ...`, forked by the controller)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").split()
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if (state not in ("Z", "X") and b"pgrepl" in args and what.encode() in args
                and f"PGREPL_CONTROL={e.control}".encode() in environ):
            found.append(int(entry.name))
    return found


def status_json(e) -> dict:
    return {s["name"]: s for s in json.loads(e.cli("status", "--json")[1])["syncs"]}


def run_pids(e, after: int) -> set[int]:
    """pids of the workers that recorded a run applying something since run id AFTER."""
    rows = e.c["master"].query("pgrepl", "SELECT DISTINCT pid FROM pgrepl.run WHERE id > %s "
                                         "AND inserts + updates + deletes > 0", (after,))
    return {r[0] for r in rows}


def last_run_id(e) -> int:
    return e.c["master"].query("pgrepl", "SELECT coalesce(max(id), 0) FROM pgrepl.run")[0][0]


class Writer:
    """Updates rows of `items` on master until stopped."""

    def __init__(self, e):
        self.e, self.stopping, self.count = e, threading.Event(), 0
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        with psycopg.connect(self.e.c["master"].dsn("test1"), autocommit=True) as c:
            while not self.stopping.is_set():
                c.execute("UPDATE items SET n = n + 1 WHERE id = %s", (self.count % 100 + 1,))
                self.count += 1

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()


def worker_proc(e, sync: str) -> subprocess.Popen:
    """A `pgrepl worker SYNC` started by hand, as a second host's daemon would."""
    log = open(e.piddir.parent / f"worker-{sync}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "pgrepl", "worker", sync], stdout=log, stderr=log,
                            env=dict(os.environ, PGREPL_CONTROL=e.control))


# --- one worker per sync -------------------------------------------------------------------------------------

def test_a_second_worker_waits_for_the_lease_and_never_applies(env):
    items_sync(env)
    env.x("master", "INSERT INTO items SELECT g, 'v' FROM generate_series(1, 100) g")
    env.start()
    env.wait_same("master", "slave", "items")
    first = status_json(env)["itemsync"]["pid"]
    writer = Writer(env)
    second = worker_proc(env, "itemsync")
    try:
        mark = last_run_id(env)
        # the second worker is up: it either waits (says so in status) or, without a lease, applies beside the first
        env.wait_for(lambda: second.pid in run_pids(env, mark) or
                     f"waiting for the lease held by pgrepl worker pid={first}" in env.cli("status", "itemsync")[1],
                     what="the second worker waiting or applying")
        now = last_run_id(env)
        env.wait_for(lambda: len(env.c["master"].query("pgrepl", "SELECT id FROM pgrepl.run WHERE id > %s AND "
                                                                 "inserts + updates > 0", (now,))) >= 10,
                     what="ten more runs under writes")
        assert run_pids(env, mark) == {first}
        assert status_json(env)["itemsync"]["waiting"][0]["pid"] == second.pid
        # the holder goes: the waiting worker takes over
        env.stop()
        env.wait_for(lambda: second.pid in run_pids(env, mark), what="the second worker applying")
        writer.stop()
        env.wait_same("master", "slave", "items")
        assert status_json(env)["itemsync"]["pid"] == second.pid
    finally:
        writer.stop()
        second.terminate()
        second.wait(30)


def test_workers_die_with_their_controller(env):
    items_sync(env)
    env.start()
    env.wait_for(lambda: pgrepl_procs(env, "worker"), what="a worker")
    env.daemon_proc.kill()     # kill -9; left unreaped: a zombie, as under a supervisor that is slow to reap
    env.wait_for(lambda: not pgrepl_procs(env, "worker"), timeout=15, what="the orphaned worker gone")
    try:
        assert "Starting pgrepl" in env.cli("start")[1]
        env.x("master", "INSERT INTO items VALUES (1, 'after restart')")
        env.wait_same("master", "slave", "items")
        assert len(pgrepl_procs(env, "worker")) == 1
    finally:
        env.cli("stop")
        env.daemon_proc.wait()


def test_workers_are_forked_by_the_zygote_and_die_with_it(env):
    items_sync(env)
    env.start()
    env.wait_for(lambda: pgrepl_procs(env, "worker"), what="a worker")
    (worker,) = pgrepl_procs(env, "worker")
    # what an operator sees in ps: the sync each worker runs, and the zygote between it and the controller
    ps = subprocess.run(["ps", "-o", "ppid=,args=", "-p", str(worker)], capture_output=True, text=True, check=True)
    zygote, title = ps.stdout.split(None, 1)
    assert title.strip() == "pgrepl worker itemsync"
    ps = subprocess.run(["ps", "-o", "ppid=,args=", "-p", zygote], capture_output=True, text=True, check=True)
    assert ps.stdout.split(None, 1) == [str(env.daemon_proc.pid), "pgrepl zygote\n"]
    assert pgrepl_procs(env, "zygote") == [int(zygote)]
    # kill -9 of the zygote: its workers stop, and so does the controller (exit 1: systemd starts it again)
    os.kill(int(zygote), signal.SIGKILL)
    env.wait_for(lambda: not pgrepl_procs(env, "worker"), timeout=15, what="the zygote's worker gone")
    assert env.daemon_proc.wait(30) == 1
    assert "the zygote (pid" in env.daemon_log()
    assert "Starting pgrepl" in env.cli("start")[1]
    try:
        env.x("master", "INSERT INTO items VALUES (1, 'after restart')")
        env.wait_same("master", "slave", "items")
    finally:
        env.cli("stop")
        env.daemon_proc.wait()


# --- pid files -----------------------------------------------------------------------------------------------

def test_a_stale_pid_file_naming_another_process_is_ignored(env):
    items_sync(env)
    env.piddir.mkdir(parents=True)
    pidfile = env.piddir / "pgrepl.mcp.pid"
    other = subprocess.Popen(["sleep", "600"])
    try:
        pidfile.write_text(f"{other.pid}\n")
        assert "MCP: not running" in env.cli("status")[1]
        env.cli("stop")
        assert other.poll() is None, "pgrepl stop signalled a process that is not pgrepl"
        pidfile.write_text(f"{other.pid}\n")
        _, text = env.cli("start")
        assert "already running" not in text
        env.x("master", "INSERT INTO items VALUES (1, 'x')")
        env.wait_same("master", "slave", "items")
        env.cli("stop")
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_zombie_in_the_pid_file_is_not_running(env):
    items_sync(env)
    env.piddir.mkdir(parents=True)
    zombie = subprocess.Popen([sys.executable, "-m", "pgrepl", "--version"], stdout=subprocess.DEVNULL)
    stat = Path(f"/proc/{zombie.pid}/stat")
    env.wait_for(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", what="a zombie")
    (env.piddir / "pgrepl.mcp.pid").write_text(f"{zombie.pid}\n")
    try:
        assert "MCP: not running" in env.cli("status")[1]
        assert "Starting pgrepl" in env.cli("start")[1]
    finally:
        env.cli("stop")
        zombie.wait()


# --- notifications -------------------------------------------------------------------------------------------

def test_a_change_notified_during_a_run_starts_the_next_run_at_once(env):
    items_sync(env)
    env.cli("set", "capture_notify=on", "poll_interval=600")
    env.start()
    env.x("master", "INSERT INTO items VALUES (1, 'first')")
    env.wait_same("master", "slave", "items")
    blocker = psycopg.connect(env.c["slave"].dsn("test1"))
    try:
        blocker.execute("LOCK TABLE items IN SHARE MODE")    # the next run waits on the target...
        env.x("master", "INSERT INTO items VALUES (2, 'starts a run')")
        env.wait_for(lambda: env.q("slave", "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                            "AND application_name LIKE 'pgrepl%'") == [(1,)],
                     what="a run waiting on the target")
        env.x("master", "INSERT INTO items VALUES (3, 'committed during the run')")  # ...its NOTIFY comes now
    finally:
        blocker.rollback()
        blocker.close()
    env.wait_for(lambda: env.q("slave", "SELECT count(*) FROM items WHERE id = 3") == [(1,)], timeout=20,
                 what="the change committed during the run applied (poll_interval is 600s)")
    env.wait_same("master", "slave", "items")


# --- timeouts ------------------------------------------------------------------------------------------------

def test_a_run_blocked_by_a_lock_fails_after_lock_timeout_and_names_the_blocker(env):
    items_sync(env)
    env.cli("set", "lock_timeout=1")
    env.start()
    env.x("master", "INSERT INTO items VALUES (1, 'x')")
    env.wait_same("master", "slave", "items")
    blocker = psycopg.connect(env.c["slave"].dsn("test1"), application_name="forgotten session")
    try:
        blocker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        pid = blocker.info.backend_pid
        env.x("master", "INSERT INTO items VALUES (2, 'y')")
        env.wait_for(lambda: "lock timeout" in env.cli("status", "itemsync")[1], what="a run failed on the lock")
        _, text = env.cli("status", "itemsync")
        assert f"blocked by pid {pid} (forgotten session" in text, text
    finally:
        blocker.rollback()
        blocker.close()
    env.wait_same("master", "slave", "items")


def test_status_names_the_session_a_waiting_run_is_blocked_by_before_lock_timeout(env):
    """An application's transaction left open on the target holds a row the run must write: until lock_timeout
    (here 10 minutes) status says which session the worker waits for, in the list, the detail and the JSON."""
    items_sync(env)
    env.cli("set", "lock_timeout=600")
    env.start()
    env.x("master", "INSERT INTO items VALUES (1, 'x')")
    env.wait_same("master", "slave", "items")
    with psycopg.connect(env.c["slave"].dsn("test1"), application_name="reporting job") as holder:
        holder.execute("SELECT * FROM items WHERE id = 1 FOR UPDATE")
        pid = holder.info.backend_pid
        env.x("master", "UPDATE items SET val = 'y' WHERE id = 1")
        env.wait_for(lambda: f"lock held by backend {pid} " in env.cli("status")[1], 30, "status naming the holder")
        [line] = [ln for ln in env.cli("status")[1].splitlines() if f"backend {pid} " in ln]
        assert line.startswith("itemsync: waits ") and " on test1_slave " in line, line
        assert "reporting job" in line and "idle in transaction for " in line, line
        assert "Blocked:              waits " in env.cli("status", "itemsync")[1]
        [b] = json.loads(env.cli("status", "--json")[1])["syncs"][0]["figures"]["blocked"]
        assert (b["database"], b["holder"], b["holder_application"]) == ("test1_slave", pid, "reporting job"), b
        holder.rollback()
    env.wait_same("master", "slave", "items")
    assert "waits" not in env.cli("status")[1]


def test_a_busy_position_names_its_holder_and_what_it_does_since_when(env):
    """A session holding a consumer's position on the source (a leftover of a dead runner, say): the failed runs say
    which backend it is, since when it is connected and what it has been doing since when."""
    items_sync(env)
    (control_id,) = env.c["master"].query("pgrepl", "SELECT id FROM pgrepl.identity")[0]
    holder = psycopg.connect(env.c["master"].dsn("test1"), autocommit=True, application_name="leftover")
    try:
        holder.execute("SELECT pg_advisory_lock(hashtext('pgrepl.consumer'), hashtext(%s))",
                       (f"itemsync@{control_id}>test1_slave",))
        env.start()
        env.wait_for(lambda: "in this source is held by" in env.cli("status", "itemsync")[1],
                     what="a run failed on the busy position")
        _, text = env.cli("status", "itemsync")
        assert f"held by pid {holder.info.backend_pid} from 127.0.0.1 (leftover; connected at " in text, text
        assert ", idle since " in text, text
    finally:
        holder.close()
    env.x("master", "INSERT INTO items VALUES (1, 'x')")
    env.wait_same("master", "slave", "items")


def test_a_role_level_statement_timeout_does_not_kill_the_runner(env):
    """The replication role has a statement_timeout that any real COPY exceeds: the runner's own value wins."""
    env.c["slave"].execute("postgres", "DROP ROLE IF EXISTS hasty")
    env.c["slave"].execute("postgres", "CREATE ROLE hasty LOGIN SUPERUSER")
    env.c["slave"].execute("postgres", "ALTER ROLE hasty SET statement_timeout = '5ms'")
    try:
        for host in ("master", "slave"):
            env.x(host, ITEMS)
        env.x("master", "INSERT INTO items SELECT g, repeat('v', 100) FROM generate_series(1, 200000) g")
        env.add_databases("master")
        env.cli("add", "database", "test1", "name=test1_slave", "host=127.0.0.1", f"port={env.c['slave'].port}",
                "user=hasty")
        env.cli("add", "table", "items", "db=test1_master", "herd=h")
        env.cli("add", "sync", "itemsync", "source=h", "targetdb=test1_slave", "type=pushdelta", "onetimecopy=1")
        env.start()
        env.wait_same("master", "slave", "items", timeout=60)
    finally:
        env.stop()
        env.c["slave"].execute("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                           "WHERE usename = 'hasty'")
        env.c["slave"].execute("postgres", "DROP ROLE IF EXISTS hasty")


def keepalive_seconds(port: int, pid: int) -> float:
    """The keepalive timer of backend PID's socket, from the kernel (`ss`): seconds until its next probe. Looked at
    until the socket is idle (while data is in flight its timer is the retransmission one)."""
    for _ in range(200):
        out = subprocess.run(["ss", "-tnoHp", "state", "established", f"( sport = :{port} )"], capture_output=True,
                             text=True, check=True).stdout
        line = next((x for x in out.splitlines() if f"pid={pid}," in x), None)
        if line is None:
            raise AssertionError(f"no established socket of backend {pid} on port {port}: {out}")
        timer = re.search(r"timer:\(keepalive,(?:(\d+)min)?(?:([\d.]+)sec)?(?:([\d.]+)ms)?", line)
        if timer:
            return sum(float(v or 0) * k for v, k in zip(timer.groups(), (60, 1, 0.001), strict=True))
        time.sleep(0.01)
    raise AssertionError(f"no keepalive timer on the socket of backend {pid}: {line}")


def test_a_workers_member_sessions_are_dropped_by_the_server_within_a_minute_of_silence(env):
    """A worker cut off by a partition mid-transaction leaves its session on the member, holding row locks, until
    the server's TCP stack gives up on it: the kernel's default is two hours of silence before the first probe."""
    items_sync(env)
    env.start()
    env.x("master", "INSERT INTO items VALUES (1, 'a')")
    env.wait_same("master", "slave", "items")
    for host in ("master", "slave"):
        [pid] = [p for (p,) in env.q(host, "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgrepl itemsync' "
                                          "AND datname = 'test1'")]
        assert keepalive_seconds(env.c[host].port, pid) <= 30


def test_timeout_settings_are_checked(env):
    env.cli("set", "lock_timeout=abc", expect=1)
    assert "lock_timeout" in env.cli("show", "lock_timeout", "statement_timeout", "--verbose")[1]


# --- replication loops ---------------------------------------------------------------------------------------

@pytest.fixture
def three(env):
    """`items` and `pairs` in test1 of master (A), slave (B) and master2 (C), a herd of each table on each."""
    for host in ("master", "slave", "master2"):
        env.x(host, ITEMS)
        env.x(host, "CREATE TABLE pairs (id int PRIMARY KEY, val text)")
    env.add_databases("master", "slave", "master2")
    for host in ("master", "slave", "master2"):
        env.cli("add", "table", "items", f"db=test1_{host}", f"herd=items_{host}")
        env.cli("add", "table", "pairs", f"db=test1_{host}", f"herd=pairs_{host}")
    return env


def refused(e, *args) -> str:
    code, text = e.cli(*args, expect=None)
    assert code == 1, f"pgrepl {' '.join(args)} -> {code}:\n{text}"
    return text


def test_replication_loops_are_refused(three):
    e = three
    e.cli("add", "sync", "ab", "source=items_master", "targetdb=test1_slave", "type=pushdelta", "makedelta=yes")
    text = refused(e, "add", "sync", "ba", "source=items_slave", "targetdb=test1_master", "type=pushdelta")
    assert 'Sync "ba" would make a replication loop on table public.items' in text, text
    assert "test1_master -> test1_slave (sync ab)" in text and "test1_slave -> test1_master (sync ba)" in text
    e.cli("add", "sync", "bc", "source=items_slave", "targetdb=test1_master2", "type=pushdelta")
    # A -> B (makedelta: B captures what it receives) -> C -> A
    text = refused(e, "add", "sync", "ca", "source=items_master2", "targetdb=test1_master", "type=pushdelta")
    assert "replication loop on table public.items" in text and "(sync bc)" in text, text
    # without makedelta on A -> B, A's changes stop at B: C -> A is a plain second source of A
    e.cli("update", "sync", "ab", "makedelta=no")
    e.cli("add", "sync", "ca", "source=items_master2", "targetdb=test1_master", "type=pushdelta")
    assert "replication loop" in refused(e, "update", "sync", "ab", "makedelta=yes")
    # a loop made by activating an inactive sync, or by retargeting one
    e.cli("add", "sync", "ba", "source=items_slave", "targetdb=test1_master", "type=pushdelta", "status=inactive")
    assert "replication loop" in refused(e, "activate", "ba")
    assert "replication loop" in refused(e, "update", "sync", "bc", "targetdb=test1_master")
    _, text = e.cli("list", "syncs")
    assert "Sync: ba (pushdelta) items_slave => test1_master (Inactive)" in text
    assert "Sync: bc (pushdelta) items_slave => test1_master2 (Active)" in text


def test_a_swap_pair_is_no_loop_but_a_pushdelta_against_it_is(three):
    e = three
    e.cli("add", "sync", "sw", "source=pairs_master", "targetdb=test1_slave", "type=swap")
    text = refused(e, "add", "sync", "back", "source=pairs_slave", "targetdb=test1_master", "type=pushdelta")
    assert "replication loop on table public.pairs" in text and "(sync sw)" in text, text
    e.cli("add", "sync", "onward", "source=pairs_slave", "targetdb=test1_master2", "type=pushdelta")


def test_onetimecopy_on_a_swap_sync_is_refused(three):
    e = three
    text = refused(e, "add", "sync", "sw", "source=pairs_master", "targetdb=test1_slave", "type=swap",
                   "onetimecopy=1")
    assert "onetimecopy" in text and "swap" in text, text
    e.cli("add", "sync", "sw", "source=pairs_master", "targetdb=test1_slave", "type=swap")
    assert "onetimecopy" in refused(e, "update", "sync", "sw", "onetimecopy=2")
    assert "onetimecopy: 0" in e.cli("list", "syncs", "--verbose")[1]
