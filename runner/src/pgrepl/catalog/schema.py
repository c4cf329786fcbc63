"""The control schema: its migrations, install and upgrade, opening the control database, name rules."""

from __future__ import annotations

import re

import psycopg
from psycopg.rows import dict_row

from .. import passfile
from ..db import connect
from ..errors import PgreplError, Refused

SCHEMA_VERSION = 6
SYNC_TYPES = ("pushdelta", "fullcopy", "swap")
CONFLICT_RULES = ("source", "target", "latest", "skip", "abort", "merge")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Each entry upgrades the schema from the previous version: append, never edit a released one.
MIGRATIONS: dict[int, str] = {1: """
CREATE SCHEMA IF NOT EXISTS pgrepl;
CREATE SCHEMA IF NOT EXISTS pgrepl_freezer;
CREATE TABLE pgrepl.schema_version (version int NOT NULL, installed timestamptz NOT NULL DEFAULT now());
CREATE TABLE pgrepl.setting (name text PRIMARY KEY, value text NOT NULL);
CREATE TABLE pgrepl.db (
    name      text PRIMARY KEY,
    dbname    text NOT NULL,
    host      text,
    port      int NOT NULL DEFAULT 5432,
    username  text,
    password  text,
    status    text NOT NULL DEFAULT 'active',
    created   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE pgrepl.dbgroup (name text PRIMARY KEY, created timestamptz NOT NULL DEFAULT now());
CREATE TABLE pgrepl.dbgroup_member (
    dbgroup   text NOT NULL REFERENCES pgrepl.dbgroup ON DELETE CASCADE,
    db        text NOT NULL REFERENCES pgrepl.db,
    PRIMARY KEY (dbgroup, db)
);
CREATE TABLE pgrepl.relation (            -- Bucardo's "goat"
    id        serial PRIMARY KEY,
    db        text NOT NULL REFERENCES pgrepl.db,
    schemaname text NOT NULL,
    relname   text NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('table', 'sequence')),
    pkey      text[] NOT NULL DEFAULT '{}',
    pktype    text[] NOT NULL DEFAULT '{}',
    pktypname text[] NOT NULL DEFAULT '{}',
    standard_conflict text CHECK (standard_conflict IN ('source', 'target', 'latest', 'skip', 'abort')),
    created   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (db, schemaname, relname)
);
CREATE TABLE pgrepl.herd (name text PRIMARY KEY, created timestamptz NOT NULL DEFAULT now());
CREATE TABLE pgrepl.herd_member (
    herd      text NOT NULL REFERENCES pgrepl.herd ON DELETE CASCADE,
    relation  int NOT NULL REFERENCES pgrepl.relation ON DELETE CASCADE,
    PRIMARY KEY (herd, relation)
);
CREATE TABLE pgrepl.sync (
    name        text PRIMARY KEY,
    type        text NOT NULL CHECK (type IN ('pushdelta', 'fullcopy', 'swap')),
    herd        text NOT NULL REFERENCES pgrepl.herd,
    targetdb    text REFERENCES pgrepl.db,
    targetgroup text REFERENCES pgrepl.dbgroup,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    checktime   interval,
    onetimecopy smallint NOT NULL DEFAULT 0 CHECK (onetimecopy IN (0, 1, 2)),
    makedelta   boolean NOT NULL DEFAULT false,
    created     timestamptz NOT NULL DEFAULT now(),
    CHECK ((targetdb IS NULL) <> (targetgroup IS NULL))
);
CREATE TABLE pgrepl.sync_state (            -- written by the workers
    sync      text PRIMARY KEY,
    state     text NOT NULL,
    pid       int,
    since     timestamptz NOT NULL DEFAULT now(),
    started   timestamptz
);
CREATE TABLE pgrepl.run (                   -- Bucardo's "q": one row per sync, target and run
    id        bigserial PRIMARY KEY,
    sync      text NOT NULL,
    target    text NOT NULL,
    kind      text NOT NULL,
    kick      bigint,
    started   timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended     timestamptz,
    state     text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'good', 'bad')),
    inserts   bigint NOT NULL DEFAULT 0,
    updates   bigint NOT NULL DEFAULT 0,
    deletes   bigint NOT NULL DEFAULT 0,
    conflicts bigint NOT NULL DEFAULT 0,
    error     text,
    pid       int
);
CREATE INDEX run_sync_started ON pgrepl.run (sync, started);
CREATE INDEX run_kick ON pgrepl.run (kick) WHERE kick IS NOT NULL;
CREATE TABLE pgrepl.kick (
    id        bigserial PRIMARY KEY,
    sync      text NOT NULL,
    requested timestamptz NOT NULL DEFAULT now(),
    done      timestamptz,
    state     text
);
CREATE TABLE pgrepl.conflict (             -- the swap syncs' conflict journal
    id          bigserial PRIMARY KEY,
    sync        text NOT NULL,
    tablename   text NOT NULL,
    key         jsonb NOT NULL,
    source_db   text NOT NULL,
    target_db   text NOT NULL,
    source_row  jsonb,                      -- NULL: the row is deleted on that side
    target_row  jsonb,
    rule        text NOT NULL,
    winner      text NOT NULL,              -- source, target, none (skip) or abort
    detected    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conflict_sync_detected ON pgrepl.conflict (sync, detected);
""", 2: """
-- who this control database is, for the sources it drives: syncs are named "sync@id" there (source_name)
CREATE TABLE pgrepl.identity (id text PRIMARY KEY, one boolean NOT NULL DEFAULT true UNIQUE CHECK (one));
INSERT INTO pgrepl.identity (id) VALUES (substr(md5(random()::text || clock_timestamp()::text), 1, 10));
"""}
# Member passwords leave the catalog for the runner's password file (_move_passwords_out runs first); how the
# runner checks each member's server (libpq's sslmode and sslrootcert; NULL: libpq's default).
MIGRATIONS[3] = """
UPDATE pgrepl.db SET password = NULL WHERE password IS NOT NULL;
ALTER TABLE pgrepl.db DROP COLUMN password;
ALTER TABLE pgrepl.db ADD COLUMN sslmode text
    CHECK (sslmode IN ('disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'));
ALTER TABLE pgrepl.db ADD COLUMN sslrootcert text;
"""
# `pgrepl compare`: the last result of each sync (pg_repl_info returns it) and the journal of repaired keys.
MIGRATIONS[4] = """
CREATE TABLE pgrepl.compare_result (
    sync        text PRIMARY KEY,
    started     timestamptz NOT NULL,
    finished    timestamptz NOT NULL,
    equal       boolean NOT NULL,
    rows        bigint NOT NULL,
    differences bigint NOT NULL,
    repaired    boolean NOT NULL,
    result      jsonb NOT NULL               -- tables, counts and differing keys, as `compare --json` prints them
);
CREATE TABLE pgrepl.compare_repair (
    id          bigserial PRIMARY KEY,
    sync        text NOT NULL,
    tablename   text NOT NULL,
    winner_db   text NOT NULL,
    loser_db    text NOT NULL,              -- the database whose row was replaced by the winner's
    key         jsonb NOT NULL,             -- the key (a table without a key: {"row": ..., "count": n})
    kind        text NOT NULL CHECK (kind IN ('missing', 'extra', 'different')),
    repaired    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX compare_repair_sync ON pgrepl.compare_repair (sync, repaired);
"""
# Swap syncs that keep every write: a table's additive columns (their net changes are added on the other side),
# the merge rule (disjoint column changes both kept), and the net changes a `delta` resolution applied.
MIGRATIONS[5] = """
ALTER TABLE pgrepl.relation ADD COLUMN delta_columns text[] NOT NULL DEFAULT '{}';
ALTER TABLE pgrepl.relation DROP CONSTRAINT IF EXISTS relation_standard_conflict_check;
ALTER TABLE pgrepl.relation ADD CONSTRAINT relation_standard_conflict_check
    CHECK (standard_conflict IN ('source', 'target', 'latest', 'skip', 'abort', 'merge'));
ALTER TABLE pgrepl.conflict ADD COLUMN source_delta jsonb, ADD COLUMN target_delta jsonb;
"""
# Progress of long work (a fullcopy, an onetimecopy, a catch-up of a big backlog), written by its worker about
# once a second, so that `pgrepl status`, `kick --wait` and the metrics can say rows done / total, rate and ETA.
MIGRATIONS[6] = """
CREATE TABLE IF NOT EXISTS pgrepl.progress (
    sync      text NOT NULL,
    target    text NOT NULL,
    kind      text NOT NULL,               -- fullcopy, onetimecopy, catchup
    run       bigint,
    total     bigint,                      -- NULL: not known (yet)
    done      bigint NOT NULL DEFAULT 0,
    started   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished  timestamptz,
    PRIMARY KEY (sync, target)
);
"""


# --- install and connection ----------------------------------------------------------------------------------

def schema_version(conn: psycopg.Connection) -> int | None:
    if not conn.execute("SELECT to_regclass('pgrepl.schema_version') IS NOT NULL").fetchone()[0]:
        return None
    return conn.execute("SELECT max(version) FROM pgrepl.schema_version").fetchone()[0]


def _move_passwords_out(conn: psycopg.Connection, notes: list[str]) -> None:
    """Before migration 3: the passwords the catalog stored go to the password file, which libpq reads."""
    rows = _rows(conn, "SELECT name, dbname, host, port, username, password FROM pgrepl.db "
                       "WHERE password IS NOT NULL ORDER BY name")
    for row in rows:
        passfile.put(row, row["password"])
    if rows:
        notes.append(f"Moved the passwords of {len(rows)} database(s) ({', '.join(r['name'] for r in rows)}) out of "
                     f"the catalog into the password file {passfile.path()}")


# Python steps a migration needs before its SQL (what SQL alone cannot do, such as writing a file).
BEFORE_MIGRATION = {3: _move_passwords_out}


def install(conninfo: str, notes: list[str] | None = None) -> tuple[bool, int]:
    """Creates (or upgrades) the control schema, creating the control database first when it is missing.
    Returns (changed, version); what an upgrade did that a user must know is appended to NOTES."""
    notes = [] if notes is None else notes
    try:
        conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as e:
        if "does not exist" not in str(e):
            raise PgreplError(f"cannot connect to the control database: {str(e).strip()}") from e
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
        dbname = params.get("dbname", "pgrepl")
        with connect(psycopg.conninfo.make_conninfo(conninfo, dbname="postgres")) as admin:
            admin.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(dbname)))
        conn = connect(conninfo)
    with conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('pgrepl.install'))")
            current = schema_version(conn) or 0
            for version in range(current + 1, SCHEMA_VERSION + 1):
                if current and version in BEFORE_MIGRATION:
                    BEFORE_MIGRATION[version](conn, notes)
                conn.execute(MIGRATIONS[version])
                conn.execute("INSERT INTO pgrepl.schema_version (version) VALUES (%s)", (version,))
        return current < SCHEMA_VERSION, SCHEMA_VERSION


def open_control(conninfo: str) -> psycopg.Connection:
    conn = connect(conninfo, application_name="pgrepl control")
    version = schema_version(conn)
    if version is None:
        conn.close()
        raise PgreplError("the control database has no pgrepl schema: run `pgrepl install` first")
    if version < SCHEMA_VERSION:
        conn.close()
        raise PgreplError(f"the control schema is at version {version}, this pgrepl needs {SCHEMA_VERSION}: "
                          "run `pgrepl install` to upgrade it")
    return conn


def _rows(conn: psycopg.Connection, query: str, params=None) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def check_name(kind: str, name: str) -> str:
    if not _NAME.fullmatch(name or "") or len(name) > 63:
        hint = f'; a hyphen is not allowed, use "{name.replace("-", "_")}"' if "-" in (name or "") else ""
        raise Refused(f'Invalid {kind} name "{name}": names are identifiers (letters, digits and underscores, '
                      f'not starting with a digit, at most 63 characters){hint}')
    return name


CONTROL_CHANNEL = "pgrepl_control"


def notify_control(conn: psycopg.Connection, payload: str = "") -> None:
    """Wakes the daemon: the catalog changed, or a sync was kicked (payload = sync name)."""
    conn.execute("SELECT pg_notify(%s, %s)", (CONTROL_CHANNEL, payload))
