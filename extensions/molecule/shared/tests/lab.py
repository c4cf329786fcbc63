"""What the molecule scenarios' testinfra tests share: the lab's hosts (reached with `podman exec`, testinfra's
podman backend; CONTAINERS_CONF names the project's podman settings), SQL and pgrepl on them, and waiting."""

from __future__ import annotations

import time

import testinfra

ADDRESS = {"master": "10.11.12.241", "slave": "10.11.12.242", "master2": "10.11.12.243"}
RUNNER_OF = {"benchdeltaalpha": "master", "benchcopybeta": "master", "benchswapgamma": "master2"}
HERD_TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers")


def host(name: str):
    return testinfra.get_host(f"podman://pgrepl-{name}")


def sql(name: str, query: str, db: str = "test1") -> str:
    out = host(name).run("runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -d %s -c %s", db, query)
    assert out.rc == 0, f"{name}: {query}: {out.stderr}"
    return out.stdout.strip()


def runner_user(runner: str) -> str:
    """The OS user the runner's service runs as (pgrepl_runner_user)."""
    return host(runner).check_output("systemctl show -p User --value pgrepl").strip()


def pgrepl(runner: str, *args: str, expect: int = 0) -> str:
    user = runner_user(runner)
    out = host(runner).run(f"runuser -u {user} -- pgrepl " + " ".join(["%s"] * len(args)), *args)
    assert out.rc == expect, f"pgrepl {' '.join(args)} on {runner}: rc {out.rc}\n{out.stdout}{out.stderr}"
    return out.stdout


def checksum(name: str, table: str) -> str:
    """Rows and an order-independent checksum of every row."""
    return sql(name, f"SELECT count(*) || ' ' || coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '-') "
                     f"FROM {table} AS t")


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.5)


def mark(text: str) -> str:
    """A value no earlier run wrote: re-running a scenario cannot pass on old data."""
    return f"{text} {time.time_ns()}"
