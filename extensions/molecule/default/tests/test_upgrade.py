"""The runner is one Python package: site.yml with a newer build of its wheel upgrades it on every runner host
(`pgrepl --version` says the new version) and restarts the service once; the collection's own wheel brings it back
the same way, and replication goes on. Runs after test_default.py (file order), on the cluster as it left it."""

import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared/tests"))
from lab import host, mark, sql, wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[4]
RUNNERS = ("master", "master2")


def shipped_wheel() -> Path:
    [wheel] = (ROOT / "roles/sync_runner/files").glob("pgrepl-*.whl")   # scripts/build-collection.sh built it
    return wheel


def playbook(name: str, *args: str) -> str:
    """A playbook of playbooks/ on the lab, as make demo runs them; its output."""
    env = dict(os.environ)
    env.pop("ANSIBLE_CONFIG", None)   # molecule's: the lab inventory's own settings, as in make demo
    proc = subprocess.run(["ansible-playbook", "-i", "inventories/lab", f"playbooks/{name}", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return proc.stdout


def deploy(*extra: str) -> None:
    """site.yml's runner part."""
    playbook("site.yml", "--tags", "sync_runner", *extra)


def version(name: str) -> str:
    out = host(name).run("runuser -u pgrepl_runner -- pgrepl --version")
    assert out.rc == 0, out.stderr
    return out.stdout.strip()


def clock(name: str) -> str:
    return host(name).check_output("date +%s")


def starts_since(name: str, since: str) -> int:
    """How many times systemd started pgrepl.service since the epoch second SINCE."""
    log = host(name).check_output("journalctl -u pgrepl.service --since @%s -o cat --no-pager", since)
    return len(re.findall(r"^Started pgrepl\.service", log, re.MULTILINE))


def upgrade_to(wheel: Path | None, expected: str) -> None:
    since = {name: clock(name) for name in RUNNERS}
    deploy(*(["-e", f"sync_runner_wheel={wheel}"] if wheel else []))
    for name in RUNNERS:
        assert version(name) == f"pgrepl {expected}", name
        assert starts_since(name, since[name]) == 1, name
        assert host(name).service("pgrepl").is_running
        assert host(name).file(f"/opt/pgrepl/wheels/pgrepl-{expected}-py3-none-any.whl").exists
        assert len(host(name).check_output("ls /opt/pgrepl/wheels").split()) == 1, "the other version's wheel stays"


def test_a_newer_build_upgrades_the_runner_and_the_shipped_one_downgrades_it(tmp_path):
    shipped = shipped_wheel()
    current = shipped.name.split("-")[1]
    newer = f"{current}.post1"
    built = subprocess.run([str(ROOT / "scripts/build-wheel.sh"), str(tmp_path), newer], check=True,
                           capture_output=True, text=True).stdout.split()[-1]
    assert all(version(name) == f"pgrepl {current}" for name in RUNNERS)

    upgrade_to(Path(built), newer)
    upgrade_to(None, current)

    # Still replicating after both restarts: an update on master reaches slave.
    value = mark("after the upgrade")[:84]
    sql("master", f"UPDATE pgbench_accounts SET filler = '{value}' WHERE aid = 1")
    wait_for(lambda: sql("slave", "SELECT trim(filler) FROM pgbench_accounts WHERE aid = 1") == value, 30,
             "the update on slave after the upgrade")


def test_status_yml_shows_a_line_per_sync_on_its_runner():
    out = playbook("status.yml")
    for sync in ("benchdeltaalpha", "benchcopybeta", "benchswapgamma"):   # every one has run (test_default.py)
        assert re.search(rf'"{sync} \(\w+, active\): [^;"]*; last good: \d{{4}}-', out), (sync, out[-4000:])
    only = playbook("status.yml", "-e", "status_syncs=benchswapgamma")
    assert "benchswapgamma (swap, active)" in only and "benchdeltaalpha" not in only, only[-4000:]
