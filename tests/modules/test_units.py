"""Unit tests of the modules, in process (no ansible-playbook, no database): option handling, connection strings,
results made JSON-friendly, and the refusals a module makes before it connects anywhere."""

from __future__ import annotations

import datetime
import json
import sys

import pytest
from ansible.module_utils.testing import patch_module_args
from conftest import collections_path

sys.path.insert(0, collections_path())
from ansible_collections.pgrepl.cluster.plugins.module_utils import control  # noqa: E402
from ansible_collections.pgrepl.cluster.plugins.modules import (  # noqa: E402
    pg_repl_db,
    pg_repl_dbgroup,
    pg_repl_herd,
    pg_repl_sync,
)

CONTROL = dict(login_host="", login_port=5432, login_user="", login_password="", login_unix_socket="",
               control_db="pgrepl")


@pytest.fixture
def result(capsys):
    def call(module, args):
        with patch_module_args(args), pytest.raises(SystemExit) as exited:
            module.main()
        return exited.value.code, json.loads(capsys.readouterr().out)
    return call


def test_conninfo_prefers_the_unix_socket_and_leaves_out_empty_options():
    assert control.control_conninfo(dict(CONTROL, login_unix_socket="/run/postgresql", login_host="db1")) \
        == "dbname=pgrepl host=/run/postgresql port=5432"
    info = control.control_conninfo(dict(CONTROL, login_host="10.11.12.241", login_user="pgrepl",
                                         login_password="s e'cret", control_db="ctl"))
    assert info == "dbname=ctl host=10.11.12.241 port=5432 user=pgrepl password='s e\\'cret'"


def test_conninfo_takes_ssl_mode_and_ca_cert_unless_they_are_the_modules_own():
    params = dict(CONTROL, login_host="10.11.12.241", ssl_mode="verify-full", ca_cert="/etc/pgrepl/ca.crt")
    assert control.control_conninfo(params) == ("dbname=pgrepl host=10.11.12.241 port=5432 sslmode=verify-full "
                                                "sslrootcert=/etc/pgrepl/ca.crt")
    assert control.control_conninfo(params, control_ssl=False) == "dbname=pgrepl host=10.11.12.241 port=5432"


def test_plain_makes_catalog_values_json_friendly():
    value = {"checktime": datetime.timedelta(minutes=5), "members": ("a", "b"),
             "created": datetime.datetime(2026, 11, 25, 10, 0, 0), "nested": [{"n": 1}]}
    assert control.plain(value) == {"checktime": "0:05:00", "members": ["a", "b"],
                                    "created": "2026-11-25 10:00:00", "nested": [{"n": 1}]}
    json.dumps(control.plain(value))


def test_the_password_option_is_no_log():
    assert control.control_argument_spec()["login_password"]["no_log"] is True


@pytest.mark.parametrize("module, args, message", [
    (pg_repl_db, {"name": "test1-master", "dbname": "test1"}, "hyphen"),
    (pg_repl_dbgroup, {"name": "my-group", "members": ["a"]}, "hyphen"),
    (pg_repl_herd, {"name": "al-pha", "db": "test1_master", "tables": ["t"]}, "hyphen"),
    (pg_repl_sync, {"name": "bench-delta", "source": "alpha", "targetdb": "test1_slave"}, "hyphen"),
])
def test_a_bad_name_fails_before_any_connection(result, module, args, message):
    # login_port 1: were the module to connect, the error would be a connection error, not this one
    code, out = result(module, dict(args, login_host="127.0.0.1", login_port=1, _ansible_check_mode=True))
    assert code == 1 and out["failed"] is True
    assert message in out["msg"] and "connect" not in out["msg"], out["msg"]


@pytest.mark.parametrize("args, message", [
    ({"name": "s", "source": "alpha", "targetdb": "a", "targetgroup": "g"}, "mutually exclusive"),
    ({"name": "s", "source": "alpha"}, "targetdb"),
    ({"name": "s", "source": "alpha", "targetdb": "a", "type": "logical"}, "type"),
    ({"name": "s", "source": "alpha", "targetdb": "a", "onetimecopy": 3}, "onetimecopy"),
])
def test_sync_options_are_checked_by_the_argument_spec(result, args, message):
    code, out = result(pg_repl_sync, dict(args, login_port=1))
    assert code == 1 and message in out["msg"], out["msg"]


def test_an_unreachable_control_database_is_a_clean_failure(result):
    code, out = result(pg_repl_db, {"name": "test1_master", "dbname": "test1", "login_host": "127.0.0.1",
                                    "login_port": 1})
    assert code == 1 and "cannot connect" in out["msg"]
    assert "Traceback" not in out["msg"]
