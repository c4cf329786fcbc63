"""site.yml's first play refuses secrets in clear: a vault*.yml of the inventory that is not an ansible-vault
file, or a replication password that is empty or a placeholder. Run on a throw-away inventory of localhost with
--tags preflight: only that play runs (nothing is installed)."""

from __future__ import annotations

import os
import subprocess

import yaml
from conftest import BIN, ROOT, collections_path

VAULT_PASS = "a-vault-password-for-the-test"


def site(tmp_path, vault: dict | None, topology: dict, encrypt: bool = False) -> subprocess.CompletedProcess:
    inv = tmp_path / "inventory"
    (inv / "group_vars/all").mkdir(parents=True)
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"db1": {
        "ansible_connection": "local", "ansible_python_interpreter": str(BIN / "python")}}}}))
    (inv / "group_vars/all/topology.yml").write_text(yaml.safe_dump(topology))
    secret = tmp_path / "vault-pass"
    secret.write_text(VAULT_PASS)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    env.pop("ANSIBLE_CONFIG", None)
    if vault is not None:
        path = inv / "group_vars/all/vault.yml"
        path.write_text(yaml.safe_dump(vault))
        if encrypt:
            subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(secret), str(path)],
                           check=True, capture_output=True, env=env)
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inv), str(ROOT / "playbooks/site.yml"),
                           "--tags", "preflight", "--vault-password-file", str(secret)],
                          env=env, capture_output=True, text=True, timeout=300)


USES_VAULT = {"pgrepl_replication_password": "{{ vault_pgrepl_replication_password }}",
              "pgrepl_cluster_network": "10.11.12.0/24"}   # the ntp role checks its arguments in every run


def test_a_vault_file_in_clear_stops_site_yml_before_anything_runs(tmp_path):
    run = site(tmp_path, {"vault_pgrepl_replication_password": "CHANGE-ME"}, USES_VAULT)
    assert run.returncode == 2, run.stdout
    assert "Secrets in clear:" in run.stdout and "group_vars/all/vault.yml" in run.stdout
    assert "ansible-vault encrypt" in run.stdout


def test_a_placeholder_password_stops_site_yml(tmp_path):
    run = site(tmp_path, None, dict(USES_VAULT, pgrepl_replication_password="CHANGE-ME"))
    assert run.returncode == 2, run.stdout
    assert "pgrepl_replication_password is empty or a placeholder" in run.stdout


def test_an_encrypted_vault_with_a_real_password_passes(tmp_path):
    run = site(tmp_path, {"vault_pgrepl_replication_password": "a real one, 7Xq"}, USES_VAULT, encrypt=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "a real one, 7Xq" not in run.stdout
