"""Connections: to the control database (found from --control, PGREPL_CONTROL or /etc/pgrepl/pgrepl.conf)
and to the member databases the catalog describes."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from .errors import PgreplError

CONFIG_FILE = Path("/etc/pgrepl/pgrepl.conf")


def read_config(path: Path = CONFIG_FILE) -> dict[str, str]:
    """`key = value` lines; `#` starts a comment. The key `control` holds the control conninfo."""
    conf: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise PgreplError(f"{path}:{n}: expected `key = value`, got: {line}")
        key, value = line.split("=", 1)
        conf[key.strip()] = value.strip()
    return conf


def control_conninfo(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    if os.environ.get("PGREPL_CONTROL"):
        return os.environ["PGREPL_CONTROL"]
    if CONFIG_FILE.exists():
        conf = read_config()
        if conf.get("control"):
            return conf["control"]
    return "dbname=pgrepl"


# A peer gone without a word (host down, network cut) must not hang a worker on a half-open TCP connection: libpq's
# keepalives notice an idle one within a minute, tcp_user_timeout one with unacknowledged writes. A conninfo that
# sets any of them keeps its own values. (Unix-socket connections ignore them.)
TCP_SETTINGS = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3",
                "tcp_user_timeout": "60000"}


# A backend notices a dead client (a worker killed by kill -9 or the OOM killer) only when it next reads from or
# writes to it: one whose statement waits for a lock would keep the killed worker's session, its locks and its
# consumer lease for as long as the lock is held. With this check (ms) it looks at its client while a statement runs.
CLIENT_CHECK_MS = 5000


# The server's side of the same: a worker cut off by a network partition in the middle of a transaction leaves its
# session on the member idle in that transaction, holding its row locks, until the server's TCP stack gives up on
# the client: two hours with the kernel's keepalive defaults, during which the next runs wait on those locks and
# fail at lock_timeout. With the client's keepalive figures the server drops such a session within a minute.
SERVER_TCP_SETTINGS = {"tcp_keepalives_idle": TCP_SETTINGS["keepalives_idle"],
                       "tcp_keepalives_interval": TCP_SETTINGS["keepalives_interval"],
                       "tcp_keepalives_count": TCP_SETTINGS["keepalives_count"],
                       "tcp_user_timeout": TCP_SETTINGS["tcp_user_timeout"]}


def session_options(lock_timeout: str, statement_timeout: str) -> str:
    """libpq `options` giving a member session the runner's own timeouts (settings, in seconds; 0: none), the
    dead-client check and the server-side keepalives. Options sent at connection take precedence over ALTER
    ROLE/DATABASE ... SET, so a statement_timeout meant for the replication role's other uses cannot kill a long
    COPY."""
    ms = {name: round(float(value) * 1000) for name, value in
          (("lock_timeout", lock_timeout), ("statement_timeout", statement_timeout))}
    ms["client_connection_check_interval"] = CLIENT_CHECK_MS
    return " ".join(f"-c {name}={value}" for name, value in {**ms, **SERVER_TCP_SETTINGS}.items())


# Every session speaks UTF8, whatever its database's encoding. The relay moves COPY data as bytes from one session
# to another: with each session in its database's own encoding, a UTF8 source's "é" reached a LATIN1 target as
# "Ã©", without an error (every byte is a LATIN1 character). In one client encoding each server converts, and a
# character the target's encoding lacks is an error, not a wrong letter. A SQL_ASCII database's bytes go out as
# they are and must be UTF8 to come in (in SQL_ASCII sessions psycopg returns names as bytes: nothing worked).
CLIENT_ENCODING = "UTF8"


def connect(conninfo: str, application_name: str = "pgrepl", autocommit: bool = True, **kw) -> psycopg.Connection:
    try:
        given = psycopg.conninfo.conninfo_to_dict(conninfo)
        defaults = {k: v for k, v in {**TCP_SETTINGS, "client_encoding": CLIENT_ENCODING}.items()
                    if k not in given and k not in kw}
        return psycopg.connect(conninfo, autocommit=autocommit, application_name=application_name,
                               connect_timeout=kw.pop("connect_timeout", 10), **defaults, **kw)
    except psycopg.OperationalError as e:
        raise PgreplError(f"cannot connect to {_redacted(conninfo)}: {str(e).strip()}") from e


def passfile_path() -> Path:
    """The libpq password file that holds the member databases' passwords (see passfile.py): $PGREPL_PASSFILE,
    else `passfile = ...` in the configuration file, else libpq's default ($PGPASSFILE, else ~/.pgpass)."""
    if os.environ.get("PGREPL_PASSFILE"):
        return Path(os.environ["PGREPL_PASSFILE"])
    if CONFIG_FILE.exists():
        configured = read_config().get("passfile")
        if configured:
            return Path(configured)
    if os.environ.get("PGPASSFILE"):
        return Path(os.environ["PGPASSFILE"])
    return Path.home() / ".pgpass"


def member_conninfo(db: dict) -> str:
    """The conninfo of a catalog database row (see catalog.DB_COLUMNS). No password: libpq reads it from the
    password file, so that it is never in the catalog, in a conninfo we print, nor in our memory."""
    parts = {"dbname": db["dbname"], "host": db.get("host"), "port": db.get("port"), "user": db.get("username"),
             "passfile": str(passfile_path()), "sslmode": db.get("sslmode"), "sslrootcert": db.get("sslrootcert")}
    return make_conninfo(**{k: v for k, v in parts.items() if v not in (None, "")})


def _redacted(conninfo: str) -> str:
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "(unparsable conninfo)"
    params.pop("password", None)
    return make_conninfo(**params) or "(defaults)"
