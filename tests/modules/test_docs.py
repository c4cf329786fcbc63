"""ansible-doc renders every module's documentation (options, examples, return values) and the role's."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import BIN, MODULES, collections_path


def ansible_doc(*args: str) -> str:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(BIN / "ansible-doc"), *args], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("module", MODULES)
def test_module_docs(module):
    text = ansible_doc(f"pgrepl.cluster.{module}")
    for part in ("OPTIONS", "login_unix_socket", "control_db", "EXAMPLES", "RETURN VALUES"):
        assert part in text, f"{module}: no {part}"


def test_role_docs():
    text = ansible_doc("-t", "role", "pgrepl.cluster.sync_runner")
    assert "ENTRY POINT: *main*" in text and "ENTRY POINT: *declare*" in text and "pgrepl_prune" in text
