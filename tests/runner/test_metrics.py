"""What a runner shows of its work: Prometheus metrics scraped over real HTTP from the controller, the backlog and
lag columns of `pgrepl status` (and the same numbers in --json), and the progress of a long copy in `status` and
`kick --wait`."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import psycopg
from pgrepl import catalog, observe
from prometheus_client.parser import text_string_to_metric_families

# One port per suite: PGREPL_TEST_PORT + 80 (PGREPL_METRICS_TEST_PORT wins).
METRICS_PORT = int(os.environ.get("PGREPL_METRICS_TEST_PORT") or int(os.environ.get("PGREPL_TEST_PORT", "25441")) + 80)
LISTEN = f"127.0.0.1:{METRICS_PORT}"


def scrape() -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one GET /metrics."""
    with urllib.request.urlopen(f"http://{LISTEN}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def metric(name: str, **labels) -> float | None:
    return scrape().get((name, tuple(sorted(labels.items()))))


def items_sync(e) -> None:
    for host in ("master", "slave"):
        e.x(host, "CREATE TABLE items (id int PRIMARY KEY, val text)")
    e.add_databases("master", "slave")
    e.cli("add", "table", "items", "db=test1_master", "herd=h")
    e.cli("add", "sync", "itemsync", "source=h", "targetdb=test1_slave", "type=pushdelta")


def owed_json(e) -> dict:
    rows = json.loads(e.cli("status", "--json")[1])["syncs"]
    return {r["name"]: r["figures"] for r in rows}["itemsync"]["targets"]["test1_slave"]


def test_metrics_follow_the_backlog_while_the_worker_is_stopped_and_after(env):
    items_sync(env)
    env.cli("set", f"metrics_listen={LISTEN}")
    env.x("master", "INSERT INTO items SELECT g, 'v' FROM generate_series(1, 100) g")
    env.start()
    st = {"sync": "itemsync", "target": "test1_slave"}
    env.wait_same("master", "slave", "items")
    env.wait_for(lambda: metric("pgrepl_rows_total", **st, op="inserts") == 100, what="100 inserts counted")
    assert metric("pgrepl_backlog_rows", **st) == 0
    assert metric("pgrepl_lag_seconds", **st) == 0
    assert metric("pgrepl_worker_up", sync="itemsync") == 1
    assert metric("pgrepl_last_run_good", **st) == 1
    assert metric("pgrepl_source_up", db="test1_master") == 1

    env.cli("deactivate", "itemsync")
    env.wait_for(lambda: metric("pgrepl_worker_up", sync="itemsync") is None, what="the worker gone")
    env.x("master", "UPDATE items SET val = 'w' WHERE id <= 50")
    # 50 rows changed in one transaction and nobody applies them
    assert metric("pgrepl_backlog_rows", **st) == 50
    assert metric("pgrepl_lag_seconds", **st) > 0
    assert metric("pgrepl_delta_bytes", db="test1_master") > 0
    owed = owed_json(env)   # status --json carries the metrics' numbers
    assert owed["backlog"] == 50 and owed["rows"]["inserts"] == 100 and owed["lag"] > 0
    line = [x for x in env.cli("status")[1].splitlines() if x.startswith("itemsync")][0]
    assert line.split()[4] == "50", line   # the Backlog column

    env.cli("activate", "itemsync")
    env.wait_for(lambda: metric("pgrepl_backlog_rows", **st) == 0, what="the backlog applied")
    assert env.checksum("master", "items") == env.checksum("slave", "items")
    assert metric("pgrepl_rows_total", **st, op="updates") == 50
    assert metric("pgrepl_lag_seconds", **st) == 0
    assert metric("pgrepl_worker_up", sync="itemsync") == 1
    assert owed_json(env)["backlog"] == 0


def test_a_failing_target_shows_in_the_metrics(env):
    items_sync(env)
    env.cli("set", f"metrics_listen={LISTEN}")
    env.start()
    st = {"sync": "itemsync", "target": "test1_slave"}
    env.x("master", "INSERT INTO items VALUES (1, 'a')")
    env.wait_same("master", "slave", "items")
    env.c["slave"].stop("fast")
    try:
        env.x("master", "INSERT INTO items VALUES (2, 'b')")
        env.wait_for(lambda: metric("pgrepl_last_run_good", **st) == 0, what="the failed run in the metrics")
        assert metric("pgrepl_backlog_rows", **st) == 1
        assert metric("pgrepl_runs_total", **st, result="bad") >= 1
    finally:
        env.c["slave"].start()
    env.wait_for(lambda: metric("pgrepl_last_run_good", **st) == 1, what="a good run again")
    assert metric("pgrepl_backlog_rows", **st) == 0


def frozen(cluster) -> list[int]:
    """The postmaster of CLUSTER and every process it started: SIGSTOP makes it a server that takes connections
    (the kernel answers) and never replies, as a hung or unreachable host looks to a client."""
    postmaster = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
    return [postmaster, *map(int, children)]


def test_a_member_that_stops_answering_leaves_scrapes_and_status_on_time(env):
    items_sync(env)
    env.cli("set", f"metrics_listen={LISTEN}")
    env.start()
    env.x("master", "INSERT INTO items VALUES (1, 'a')")
    env.wait_same("master", "slave", "items")
    assert metric("pgrepl_source_up", db="test1_master") == 1   # the look has its connections to both members
    pids = frozen(env.c["slave"])
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(2):   # Prometheus gives up on a scrape after 10 s by default
            started = time.monotonic()
            samples = scrape()
            assert time.monotonic() - started < 6
            assert samples[("pgrepl_control_up", ())] == 1
            assert samples[("pgrepl_source_up", (("db", "test1_master"),))] == 1
            assert samples[("pgrepl_source_up", (("db", "test1_slave"),))] == 0
            assert samples[("pgrepl_worker_up", (("sync", "itemsync"),))] == 1
        started = time.monotonic()
        text = env.cli("status", "itemsync")[1]
        # (a fresh connection to a frozen server: its connect timeout and the look's wait end alike, either says so)
        assert time.monotonic() - started < 6 and "Database test1_slave cannot be reached" in text, text
        # a `pgrepl status` process exits although a thread of it still waits on the frozen member
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pgrepl", "status"], env=dict(os.environ, PGREPL_CONTROL=env.control),
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "Database test1_slave cannot be reached" in done.stdout, done
        assert time.monotonic() - started < 8
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    env.wait_for(lambda: metric("pgrepl_source_up", db="test1_slave") is None, what="the target answering again")
    env.x("master", "INSERT INTO items VALUES (2, 'b')")
    env.wait_same("master", "slave", "items")


def test_a_member_slower_than_a_look_gives_the_last_looks_answer(env, monkeypatch):
    items_sync(env)
    monkeypatch.setattr(observe, "ANSWER_WITHIN", 0.5)
    answers = iter(range(10))

    def slow(conn):   # a question that takes twice the look's patience, then answers
        time.sleep(1)
        return conn.execute("SELECT %s::int", (next(answers),)).fetchone()[0]
    with catalog.open_control(env.control) as control:
        sources = observe.Sources(control)
        assert sources.ask({"test1_master": slow}) == ({}, {"test1_master": "no answer within 0.5 s"})
        time.sleep(1)
        assert sources.ask({"test1_master": slow}) == ({"test1_master": 0}, {})
        time.sleep(1)
        assert sources.ask({"test1_master": slow}) == ({"test1_master": 1}, {})
        sources.close()


def test_metrics_listen_is_checked(env):
    assert "must be ADDRESS:PORT" in env.cli("set", "metrics_listen=everywhere", expect=1)[1]
    env.cli("set", "metrics_listen=10.11.12.241:9187")
    env.cli("set", "metrics_listen=off")


def test_a_running_copy_shows_its_progress_in_status_and_kick_wait(env):
    """Two tables copied in one transaction; the second is locked on the target, so the copy waits after the
    first: status shows rows done / total, `kick --wait` prints it, and the final counts once the lock goes."""
    for host in ("master", "slave"):
        env.x(host, "CREATE TABLE a_items (id int PRIMARY KEY, val text); CREATE TABLE b_items (id int, val text)")
    env.x("master", "INSERT INTO a_items SELECT g, 'a' FROM generate_series(1, 1000) g; "
                    "INSERT INTO b_items SELECT g, 'b' FROM generate_series(1, 500) g; ANALYZE a_items, b_items")
    env.add_databases("master", "slave")
    env.cli("add", "table", "a_items", "db=test1_master", "herd=c")
    env.cli("add", "table", "b_items", "db=test1_master", "herd=c")
    env.cli("add", "sync", "copysync", "source=c", "targetdb=test1_slave", "type=fullcopy")
    env.cli("set", "lock_timeout=300")   # the copy waits for the test's lock, not for a timeout
    env.start()
    out = env.piddir.parent / "kick.out"
    with psycopg.connect(env.c["slave"].dsn("test1")) as lock:
        lock.execute("LOCK TABLE b_items IN ACCESS EXCLUSIVE MODE")
        with open(out, "w") as f:   # not a terminal: plain lines
            kick = subprocess.Popen([sys.executable, "-m", "pgrepl", "--control", env.control, "kick", "copysync",
                                     "--wait", "120"], stdout=f, stderr=subprocess.STDOUT)
        try:
            env.wait_for(lambda: "copysync -> test1_slave: fullcopy 1000/1500 rows (66%)" in out.read_text(),
                         what="kick --wait printing the progress")
            assert "copysync -> test1_slave: fullcopy 1000/1500 rows (66%)" in env.cli("status")[1]
            p = json.loads(env.cli("status", "--json")[1])["syncs"][0]["figures"]["targets"]["test1_slave"]["progress"]
            assert (p["kind"], p["done"], p["total"], p["running"]) == ("fullcopy", 1000, 1500, True)
            assert p["eta"] is not None
        finally:
            lock.rollback()
            code = kick.wait(120)
    text = out.read_text()
    assert code == 0, text
    assert "Sync copysync: run finished (good) I/U/D 1500/0/0" in text
    p = json.loads(env.cli("status", "--json")[1])["syncs"][0]["figures"]["targets"]["test1_slave"]["progress"]
    assert (p["done"], p["running"]) == (1500, False)
