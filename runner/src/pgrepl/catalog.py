"""The control catalog: databases, dbgroups, tables and sequences, herds, syncs, settings, runs and kicks.

It lives in schema `pgrepl` of the control database (default name `pgrepl`) on the runner's host. Every object
change goes through a function here, used alike by the CLI, the daemon and the Ansible modules. Functions that
also touch source databases (adding or removing a sync installs or removes its capture) do the remote part first
and the catalog part last, so that a failure leaves the catalog as it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import psycopg
from psycopg.rows import dict_row

from . import capture, delta, lease, loops, passfile
from .capture import TableInfo
from .db import connect, member_conninfo
from .errors import NotFound, PgreplError, Refused
from .settings import SETTINGS, validate

SCHEMA_VERSION = 3
SYNC_TYPES = ("pushdelta", "fullcopy", "swap")
CONFLICT_RULES = ("source", "target", "latest", "skip", "abort")
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


# --- settings ------------------------------------------------------------------------------------------------

def all_settings(conn: psycopg.Connection) -> dict[str, str]:
    values = {name: s.default for name, s in SETTINGS.items()}
    values.update(dict(conn.execute("SELECT name, value FROM pgrepl.setting").fetchall()))
    return values


def set_setting(conn: psycopg.Connection, name: str, value: str) -> tuple[str, str]:
    """Returns (old, new). Changing capture_notify adds or drops the NOTIFY triggers on the source databases."""
    value = validate(name, value)
    old = all_settings(conn)[name]
    if name == "capture_notify" and value != old:
        for db in _source_dbs_of_delta_syncs(conn):
            with connect(member_conninfo(db)) as src:
                capture.set_notify(src, value == "on")
    conn.execute("INSERT INTO pgrepl.setting (name, value) VALUES (%s, %s) "
                 "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))
    return old, value


# --- databases -----------------------------------------------------------------------------------------------

DB_COLUMNS = ("name", "dbname", "host", "port", "username", "status", "sslmode", "sslrootcert")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def list_dbs(conn: psycopg.Connection) -> list[dict]:
    """The databases, without passwords: those are in the password file (passfile.py), never in the catalog."""
    return _rows(conn, "SELECT name, dbname, host, port, username, status, sslmode, sslrootcert FROM pgrepl.db "
                       "ORDER BY name")


def get_db(conn: psycopg.Connection, name: str) -> dict:
    rows = _rows(conn, "SELECT name, dbname, host, port, username, status, sslmode, sslrootcert FROM pgrepl.db "
                       "WHERE name = %s", (name,))
    if not rows:
        raise NotFound(f'No database named "{name}"')
    return rows[0]


def has_password(db: dict) -> bool:
    return passfile.get(db) is not None


def check_sslmode(sslmode: str | None) -> str | None:
    if sslmode not in (None, *SSL_MODES):
        raise Refused(f'Invalid sslmode "{sslmode}": one of {", ".join(SSL_MODES)}')
    return sslmode


def add_db(conn: psycopg.Connection, name: str, dbname: str, host: str | None = None, port: int = 5432,
           username: str | None = None, password: str | None = None, sslmode: str | None = None,
           sslrootcert: str | None = None) -> None:
    """PASSWORD, when given, goes to the password file, never to the catalog. SSLMODE and SSLROOTCERT are libpq's
    (verify-full and the cluster CA: the runner checks it talks to the right server)."""
    check_name("database", name)
    check_sslmode(sslmode)
    if _rows(conn, "SELECT 1 FROM pgrepl.db WHERE name = %s", (name,)):
        raise Refused(f'A database named "{name}" already exists')
    row = {"name": name, "dbname": dbname, "host": host, "port": int(port), "username": username}
    with conn.transaction():
        conn.execute("INSERT INTO pgrepl.db (name, dbname, host, port, username, sslmode, sslrootcert) "
                     "VALUES (%s,%s,%s,%s,%s,%s,%s)", (name, dbname, host, int(port), username, sslmode, sslrootcert))
        if password is not None:
            passfile.put(row, password)


def update_db(conn: psycopg.Connection, name: str, **fields) -> None:
    """Changes catalog attributes; `password` changes the password file. A database that moves (host, port,
    dbname or user) takes its password along unless a new one is given."""
    old = get_db(conn, name)
    for key in fields:
        if key not in DB_COLUMNS[1:] + ("password",):
            raise Refused(f"Unknown database attribute {key}")
    check_sslmode(fields.get("sslmode"))
    password = fields.pop("password", None)
    new = {**old, **fields}
    if password is None and passfile.key(new) != passfile.key(old):
        password = passfile.get(old)
    with conn.transaction():
        for key, value in fields.items():
            conn.execute(psycopg.sql.SQL("UPDATE pgrepl.db SET {} = %s WHERE name = %s").format(
                psycopg.sql.Identifier(key)), (value, name))
        if password is not None:
            passfile.put(new, password)
    if passfile.key(new) != passfile.key(old):
        _forget_password(conn, old)


def _forget_password(conn: psycopg.Connection, db: dict) -> None:
    """Removes the password file's line of DB unless another catalog database connects the same way."""
    if not any(passfile.key(d) == passfile.key(db) for d in list_dbs(conn)):
        passfile.put(db, None)


def remove_db(conn: psycopg.Connection, name: str) -> None:
    db = get_db(conn, name)
    users = [r["name"] for r in _rows(conn, "SELECT name FROM pgrepl.sync WHERE targetdb = %s UNION "
                                            "SELECT s.name FROM pgrepl.sync s JOIN pgrepl.herd_member m ON m.herd = s.herd "
                                            "JOIN pgrepl.relation r ON r.id = m.relation WHERE r.db = %s", (name, name))]
    if users:
        raise Refused(f'Cannot remove database "{name}": used by sync(s) {", ".join(sorted(users))}')
    groups = [r["dbgroup"] for r in _rows(conn, "SELECT dbgroup FROM pgrepl.dbgroup_member WHERE db = %s", (name,))]
    if groups:
        raise Refused(f'Cannot remove database "{name}": member of dbgroup(s) {", ".join(groups)}')
    with conn.transaction():
        conn.execute("DELETE FROM pgrepl.relation WHERE db = %s", (name,))
        conn.execute("DELETE FROM pgrepl.db WHERE name = %s", (name,))
    _forget_password(conn, db)


def member_connect(conn: psycopg.Connection, db_name: str, purpose: str = "pgrepl") -> psycopg.Connection:
    return connect(member_conninfo(get_db(conn, db_name)), application_name=purpose)


def source_name(conn: psycopg.Connection, sync: str) -> str:
    """SYNC's name in the source databases: qualified by this control database's identity, so that two control
    databases with a sync of the same name on one source never touch each other's positions or captures."""
    (control_id,) = conn.execute("SELECT id FROM pgrepl.identity").fetchone()
    return f"{sync}@{control_id}"


@contextmanager
def sync_source(conn: psycopg.Connection, db_name: str, sync: str,
                purpose: str = "pgrepl") -> Iterator[tuple[psycopg.Connection, str]]:
    """A connection to a database where SYNC captures, with the sync's name there; a source schema left by an
    older pgrepl is upgraded, and the sync's rows recorded under its bare name are taken over."""
    name = source_name(conn, sync)
    with member_connect(conn, db_name, purpose) as src:
        if capture.has_schema(src):
            capture.ensure_current(src)
            delta.adopt(src, sync, name)
        yield src, name


# --- database groups -----------------------------------------------------------------------------------------

def list_dbgroups(conn: psycopg.Connection) -> list[dict]:
    return _rows(conn, "SELECT g.name, coalesce(array_agg(m.db ORDER BY m.db) FILTER (WHERE m.db IS NOT NULL), '{}') "
                       "AS members FROM pgrepl.dbgroup g LEFT JOIN pgrepl.dbgroup_member m ON m.dbgroup = g.name "
                       "GROUP BY g.name ORDER BY g.name")


def get_dbgroup(conn: psycopg.Connection, name: str) -> dict:
    for g in list_dbgroups(conn):
        if g["name"] == name:
            return g
    raise NotFound(f'No database group named "{name}"')


def add_dbgroup(conn: psycopg.Connection, name: str, members: Iterable[str] = ()) -> list[str]:
    """Creates the group if needed and adds MEMBERS; returns the members actually added."""
    check_name("database group", name)
    members = list(members)
    for m in members:
        get_db(conn, m)
    with conn.transaction():
        conn.execute("INSERT INTO pgrepl.dbgroup (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,))
        return [m for m in members if conn.execute(
            "INSERT INTO pgrepl.dbgroup_member (dbgroup, db) VALUES (%s, %s) ON CONFLICT DO NOTHING", (name, m)).rowcount]


def set_dbgroup_members(conn: psycopg.Connection, name: str, members: Iterable[str]) -> None:
    """Makes the group's members exactly MEMBERS; syncs that target the group get or lose those targets."""
    members = sorted(set(members))
    current = get_dbgroup(conn, name)["members"]
    if members == current:
        return
    for m in members:
        get_db(conn, m)
    syncs = [s for s in list_syncs(conn) if s["targetgroup"] == name]
    for s in syncs:
        check_targets(conn, s, members)
    with conn.transaction():
        conn.execute("DELETE FROM pgrepl.dbgroup_member WHERE dbgroup = %s", (name,))
        for m in members:
            conn.execute("INSERT INTO pgrepl.dbgroup_member (dbgroup, db) VALUES (%s, %s)", (name, m))
    for s in syncs:
        _sync_consumers(conn, s, old_targets=current, new_targets=members)


def remove_dbgroup(conn: psycopg.Connection, name: str) -> None:
    get_dbgroup(conn, name)
    users = [r["name"] for r in _rows(conn, "SELECT name FROM pgrepl.sync WHERE targetgroup = %s", (name,))]
    if users:
        raise Refused(f'Cannot remove database group "{name}": target of sync(s) {", ".join(users)}')
    conn.execute("DELETE FROM pgrepl.dbgroup WHERE name = %s", (name,))


# --- tables, sequences, herds --------------------------------------------------------------------------------

def relation_info(row: dict) -> TableInfo:
    return TableInfo(row["schemaname"], row["relname"], row["kind"], tuple(row["pkey"]), tuple(row["pktype"]),
                     tuple(row["pktypname"]))


def list_relations(conn: psycopg.Connection, kind: str | None = None) -> list[dict]:
    return _rows(conn, "SELECT r.*, coalesce(array_agg(m.herd ORDER BY m.herd) FILTER (WHERE m.herd IS NOT NULL), "
                       "'{}') AS herds FROM pgrepl.relation r LEFT JOIN pgrepl.herd_member m ON m.relation = r.id "
                       "WHERE %(kind)s::text IS NULL OR r.kind = %(kind)s GROUP BY r.id "
                       "ORDER BY r.schemaname, r.relname, r.db", {"kind": kind})


def add_relations(conn: psycopg.Connection, db: str, tables: list[TableInfo], herd: str | None = None,
                  standard_conflict: str | None = None) -> dict:
    """Records TABLES of database DB in the catalog, and in HERD when given (created if missing).
    Returns {"herd_created": bool, "added": [qualname], "already": [qualname]} ("added" counts herd membership
    when a herd is given, catalog entries otherwise). Tables already in a sync's herd make that sync capture them."""
    get_db(conn, db)
    if standard_conflict is not None and standard_conflict not in CONFLICT_RULES:
        raise Refused(f'Invalid standard_conflict "{standard_conflict}": must be one of {", ".join(CONFLICT_RULES)}')
    herd_created = False
    if herd is not None:
        check_name("herd", herd)
        herd_created = not _rows(conn, "SELECT 1 FROM pgrepl.herd WHERE name = %s", (herd,))
        if not herd_created:
            other = {m["db"] for m in herd_members(conn, herd)} - {db}
            if other:
                raise Refused(f'Herd "{herd}" holds tables of database {other.pop()}: a herd has one source '
                              f'database, so tables of "{db}" go in another herd')
            check_relations(conn, herd, tables)
    added, already = [], []
    with conn.transaction():
        if herd_created:
            conn.execute("INSERT INTO pgrepl.herd (name) VALUES (%s)", (herd,))
        for t in tables:
            rel_id, existed = _upsert_relation(conn, db, t, standard_conflict)
            if herd is None:
                (already if existed else added).append(t.qualname)
            elif conn.execute("INSERT INTO pgrepl.herd_member (herd, relation) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                              (herd, rel_id)).rowcount:
                added.append(t.qualname)
            else:
                already.append(t.qualname)
    if herd is not None and added:
        for s in syncs_of_herd(conn, herd):
            _install_capture(conn, s)
    return {"herd_created": herd_created, "added": added, "already": already}


def _upsert_relation(conn, db: str, t: TableInfo, standard_conflict: str | None) -> tuple[int, bool]:
    row = conn.execute("SELECT id FROM pgrepl.relation WHERE db = %s AND schemaname = %s AND relname = %s",
                       (db, t.schemaname, t.relname)).fetchone()
    if row:
        conn.execute("UPDATE pgrepl.relation SET pkey = %s, pktype = %s, pktypname = %s, "
                     "standard_conflict = coalesce(%s, standard_conflict) WHERE id = %s",
                     (list(t.pkey), list(t.pktype), list(t.pktypname), standard_conflict, row[0]))
        return row[0], True
    rel_id = conn.execute(
        "INSERT INTO pgrepl.relation (db, schemaname, relname, kind, pkey, pktype, pktypname, standard_conflict) "
        "VALUES (%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
        (db, t.schemaname, t.relname, t.kind, list(t.pkey), list(t.pktype), list(t.pktypname), standard_conflict),
    ).fetchone()[0]
    return rel_id, False


def describe_source(conn: psycopg.Connection, db: str, kind: str = "table", include: Iterable[str] = (),
                    exclude: Iterable[str] = ()) -> list[TableInfo]:
    """The tables (or sequences) of database DB: all of them, or those named in INCLUDE, minus EXCLUDE.
    A name in INCLUDE that matches nothing is refused."""
    with member_connect(conn, db, "pgrepl describe") as src:
        found = capture.describe(src, kind)
    include, exclude = list(include), list(exclude)
    if include:
        chosen = []
        for name in include:
            hits = capture.match(found, name)
            if not hits:
                raise NotFound(f'No {kind} named "{name}" in database "{db}"')
            chosen.extend(h for h in hits if h not in chosen)
    else:
        chosen = found
    for name in exclude:
        drop = capture.match(chosen, name)
        chosen = [t for t in chosen if t not in drop]
    return chosen


def herd_members(conn: psycopg.Connection, herd: str) -> list[dict]:
    return _rows(conn, "SELECT r.* FROM pgrepl.herd_member m JOIN pgrepl.relation r ON r.id = m.relation "
                       "WHERE m.herd = %s ORDER BY r.kind DESC, r.id", (herd,))


def list_herds(conn: psycopg.Connection) -> list[dict]:
    herds = []
    for h in _rows(conn, "SELECT name FROM pgrepl.herd ORDER BY name"):
        members = herd_members(conn, h["name"])
        herds.append({
            "name": h["name"],
            "db": members[0]["db"] if members else None,
            "members": [f'{m["schemaname"]}.{m["relname"]}' for m in members],
            "syncs": [s["name"] for s in syncs_of_herd(conn, h["name"])],
        })
    return herds


def get_herd(conn: psycopg.Connection, name: str) -> dict:
    for h in list_herds(conn):
        if h["name"] == name:
            return h
    raise NotFound(f'No herd named "{name}"')


def remove_herd(conn: psycopg.Connection, name: str) -> None:
    herd = get_herd(conn, name)
    if herd["syncs"]:
        raise Refused(f'Cannot remove herd "{name}": used by sync(s) {", ".join(herd["syncs"])}')
    conn.execute("DELETE FROM pgrepl.herd WHERE name = %s", (name,))


def remove_from_herd(conn: psycopg.Connection, herd: str, qualnames: Iterable[str]) -> list[str]:
    """Takes tables out of a herd; syncs of the herd stop capturing them. Returns the names removed."""
    members = {f'{m["schemaname"]}.{m["relname"]}': m for m in herd_members(conn, herd)}
    gone = [q for q in qualnames if q in members]
    for s in syncs_of_herd(conn, herd):
        for q in gone:
            if members[q]["kind"] == "table" and s["type"] != "fullcopy":
                for db in _capture_dbs(conn, s):
                    with sync_source(conn, db, s["name"]) as (src, name):
                        capture.unsubscribe_table(src, name, relation_info(members[q]))
    for q in gone:
        conn.execute("DELETE FROM pgrepl.herd_member WHERE herd = %s AND relation = %s", (herd, members[q]["id"]))
    return gone


def remove_relation(conn: psycopg.Connection, qualname: str, db: str | None = None) -> list[str]:
    """Forgets a table or sequence (every database that has it, or only DB). Refused while a herd holds it."""
    rows = [r for r in list_relations(conn) if f'{r["schemaname"]}.{r["relname"]}' == qualname
            or (r["relname"] == qualname and "." not in qualname)]
    rows = [r for r in rows if db is None or r["db"] == db]
    if not rows:
        raise NotFound(f'No table or sequence named "{qualname}"' + (f' in database "{db}"' if db else ""))
    for r in rows:
        if r["herds"]:
            raise Refused(f'Cannot remove {r["schemaname"]}.{r["relname"]} of {r["db"]}: member of herd(s) '
                          f'{", ".join(r["herds"])}')
    for r in rows:
        conn.execute("DELETE FROM pgrepl.relation WHERE id = %s", (r["id"],))
    return [f'{r["schemaname"]}.{r["relname"]}' for r in rows]


def set_standard_conflict(conn: psycopg.Connection, herd: str, rule: str | None) -> None:
    if rule is not None and rule not in CONFLICT_RULES:
        raise Refused(f'Invalid standard_conflict "{rule}": must be one of {", ".join(CONFLICT_RULES)}')
    conn.execute("UPDATE pgrepl.relation SET standard_conflict = %s WHERE id IN "
                 "(SELECT relation FROM pgrepl.herd_member WHERE herd = %s)", (rule, herd))


# --- syncs ---------------------------------------------------------------------------------------------------

def list_syncs(conn: psycopg.Connection) -> list[dict]:
    syncs = _rows(conn, "SELECT name, type, herd, targetdb, targetgroup, status, checktime, onetimecopy, makedelta, "
                        "created FROM pgrepl.sync ORDER BY name")
    for s in syncs:
        s["source"] = _herd_db(conn, s["herd"])
        s["targets"] = sync_targets(conn, s)
    return syncs


def get_sync(conn: psycopg.Connection, name: str) -> dict:
    for s in list_syncs(conn):
        if s["name"] == name:
            return s
    raise NotFound(f'No sync named "{name}"')


def syncs_of_herd(conn: psycopg.Connection, herd: str) -> list[dict]:
    return [s for s in list_syncs(conn) if s["herd"] == herd]


def sync_targets(conn: psycopg.Connection, sync: dict) -> list[str]:
    if sync["targetdb"]:
        return [sync["targetdb"]]
    return [r[0] for r in conn.execute("SELECT db FROM pgrepl.dbgroup_member WHERE dbgroup = %s ORDER BY db",
                                       (sync["targetgroup"],))]


def _herd_db(conn: psycopg.Connection, herd: str) -> str | None:
    row = conn.execute("SELECT r.db FROM pgrepl.herd_member m JOIN pgrepl.relation r ON r.id = m.relation "
                       "WHERE m.herd = %s LIMIT 1", (herd,)).fetchone()
    return row[0] if row else None


def sync_tables(conn: psycopg.Connection, sync: dict, kind: str = "table") -> list[TableInfo]:
    return [relation_info(m) for m in herd_members(conn, sync["herd"]) if m["kind"] == kind]


def check_relations(conn, herd: str, tables: list[TableInfo]) -> None:
    delta_syncs = [s["name"] for s in syncs_of_herd(conn, herd) if s["type"] != "fullcopy"]
    pkless = [t.qualname for t in tables if t.kind == "table" and not t.pkey]
    if delta_syncs and pkless:
        raise Refused(f'Table {pkless[0]} has no primary key nor usable unique index: it cannot join herd "{herd}" '
                      f'of {delta_syncs[0]} (pushdelta/swap); put it in a fullcopy herd instead')
    partitioned = _partitioned(conn, _herd_db(conn, herd), tables) if delta_syncs else []
    if partitioned:
        raise Refused(f'Table {partitioned[0]} is partitioned: it cannot join herd "{herd}" of {delta_syncs[0]} '
                      f'(pushdelta/swap): {PARTITIONED}')


# Capture triggers are statement-level with transition tables, which PostgreSQL allows on a partitioned table but
# fires only for statements on the parent: writes made to a partition itself would not be captured.
PARTITIONED = ("statement-level capture triggers on a partitioned table miss writes made directly to a partition; "
               "put it in a fullcopy herd")


def _partitioned(conn, db: str | None, tables: list[TableInfo]) -> list[str]:
    """The partitioned tables (relkind p) among TABLES of database DB."""
    tables = [t for t in tables if t.kind == "table"]
    if db is None or not tables:
        return []
    with member_connect(conn, db, "pgrepl describe") as src:
        rows = src.execute("SELECT format('%%s.%%s', u.s, u.r) FROM unnest(%s::text[], %s::text[]) AS u(s, r) "
                           "JOIN pg_class c ON c.oid = to_regclass(format('%%I.%%I', u.s, u.r)) "
                           "WHERE c.relkind = 'p'", ([t.schemaname for t in tables], [t.relname for t in tables]))
        return [r[0] for r in rows]


def check_targets(conn, sync: dict, targets: list[str]) -> None:
    if not targets:
        raise Refused(f'Sync "{sync["name"]}" would have no target database')
    if sync["source"] in targets:
        raise Refused(f'Sync "{sync["name"]}": database "{sync["source"]}" cannot be both source and target; '
                      f'the herd "{sync["herd"]}" holds tables of "{sync["source"]}"')


def _capture_dbs(conn, sync: dict) -> list[str]:
    """Databases where SYNC captures changes: its source, and for a swap its target too."""
    if sync["type"] == "fullcopy":
        return []
    return [sync["source"], *sync["targets"]] if sync["type"] == "swap" else [sync["source"]]


def directions(sync: dict) -> list[tuple[str, str]]:
    """(source, target) pairs a sync moves changes along."""
    if sync["type"] == "swap":
        return [(sync["source"], sync["targets"][0]), (sync["targets"][0], sync["source"])]
    return [(sync["source"], t) for t in sync["targets"]]


def _install_capture(conn, sync: dict) -> None:
    """Triggers and delta stores on every capturing database, and a consumer per direction. Idempotent."""
    if sync["type"] == "fullcopy":
        return
    notify = all_settings(conn)["capture_notify"] == "on"
    tables = sync_tables(conn, sync)
    for src_db, tgt_db in directions(sync):
        with sync_source(conn, src_db, sync["name"], "pgrepl install") as (src, name):
            if src_db == sync["source"]:
                local = tables
            else:   # the other side of a swap: same tables, described in that database
                found = capture.describe(src)
                local = []
                for t in tables:
                    hit = capture.match(found, t.qualname)
                    if not hit:
                        raise Refused(f'Table {t.qualname} does not exist in database "{src_db}", the other side '
                                      f'of swap sync "{sync["name"]}"')
                    local.append(hit[0])
            for t in local:
                capture.install(src, t, name, notify, key_index=sync["type"] == "swap")
            delta.register_consumer(src, name, tgt_db)


def _sync_consumers(conn, sync: dict, old_targets: list[str], new_targets: list[str]) -> None:
    """A sync's targets changed: consumers of new targets start from now, those of old ones go."""
    if sync["type"] != "pushdelta":
        return
    with sync_source(conn, sync["source"], sync["name"]) as (src, name):
        for t in set(new_targets) - set(old_targets):
            delta.register_consumer(src, name, t)
        for t in set(old_targets) - set(new_targets):
            delta.remove_consumer(src, name, t)


def _source_dbs_of_delta_syncs(conn) -> list[dict]:
    names = {db for s in list_syncs(conn) for db in _capture_dbs(conn, s)}
    return [get_db(conn, n) for n in sorted(names)]


def parse_interval(conn: psycopg.Connection, value: str | None) -> timedelta | None:
    if value in (None, "", "0", "none"):
        return None
    try:
        return conn.execute("SELECT %s::interval", (value,)).fetchone()[0]
    except psycopg.DataError as e:
        raise Refused(f'Invalid interval "{value}": {str(e).strip()}') from e


def check_sync(conn: psycopg.Connection, name: str, herd: str, type: str, targetdb: str | None = None,
               targetgroup: str | None = None, checktime: str | None = None, onetimecopy: int = 0,
               makedelta: bool = False, active: bool = True) -> dict:
    """Every refusal add_sync would make, without changing anything; returns the sync as it would be
    (with its source and target databases). Also what a dry run (check mode) calls."""
    check_name("sync", name)
    if type not in SYNC_TYPES:
        raise Refused(f'Invalid sync type "{type}": must be one of {", ".join(SYNC_TYPES)}')
    if bool(targetdb) == bool(targetgroup):
        raise Refused("A sync needs exactly one of targetdb=DB or targetgroup=GROUP")
    check_onetimecopy(name, type, onetimecopy)
    members = herd_members(conn, get_herd(conn, herd)["name"])
    if not members:
        raise Refused(f'Herd "{herd}" is empty: add tables to it first')
    targets = [get_db(conn, targetdb)["name"]] if targetdb else get_dbgroup(conn, targetgroup)["members"]
    sync = {"name": name, "type": type, "herd": herd, "targetdb": targetdb, "targetgroup": targetgroup,
            "source": members[0]["db"], "targets": targets}
    check_targets(conn, sync, targets)
    if type == "swap" and len(targets) != 1:
        raise Refused(f'Swap sync "{name}" joins exactly two databases: use targetdb=DB, not a group of '
                      f'{len(targets)}')
    if type != "fullcopy":
        pkless = [f'{m["schemaname"]}.{m["relname"]}' for m in members if m["kind"] == "table" and not m["pkey"]]
        if pkless:
            raise Refused(f'Table {pkless[0]} (herd "{herd}") has no primary key nor usable unique index: a {type} '
                          f'sync cannot replicate it row by row; put it in a herd of its own with type=fullcopy')
        partitioned = _partitioned(conn, sync["source"], [relation_info(m) for m in members])
        if partitioned:
            raise Refused(f'Table {partitioned[0]} (herd "{herd}") is partitioned: a {type} sync cannot capture it: '
                          f'{PARTITIONED}')
    parse_interval(conn, checktime)
    sync["makedelta"] = bool(makedelta)
    if active:
        check_loops(conn, sync)
    return sync


def check_onetimecopy(name: str, type: str, onetimecopy: int) -> None:
    if int(onetimecopy) not in (0, 1, 2):
        raise Refused(f"Invalid onetimecopy {onetimecopy}: 0 (off), 1 (copy every table once) or 2 (copy only to "
                      "empty tables)")
    if type == "swap" and int(onetimecopy):
        raise Refused(f'Sync "{name}": onetimecopy is not supported by a swap sync (both sides are sources, so a '
                      f'copy would overwrite one side\'s changes): make the tables equal first, e.g. with a fullcopy '
                      f'sync one way, then add the swap with onetimecopy=0')


def check_loops(conn: psycopg.Connection, sync: dict) -> None:
    """Refuses SYNC (as it would be, active) when it closes a replication loop with the active syncs."""
    others = [s for s in list_syncs(conn) if s["status"] == "active" and s["name"] != sync["name"]]
    loop = loops.find_loop(sync, others, lambda s: [t.qualname for t in sync_tables(conn, s)])
    if loop:
        raise Refused(f'Sync "{sync["name"]}" would make a {loop}. Each side would overwrite the other\'s changes '
                      f'with no conflict rule: for two-way replication use one swap sync; a change travels on past a '
                      f'database only when the sync that brought it there has makedelta')


def add_sync(conn: psycopg.Connection, name: str, herd: str, type: str, targetdb: str | None = None,
             targetgroup: str | None = None, checktime: str | None = None, onetimecopy: int = 0,
             makedelta: bool = False, active: bool = True) -> dict:
    if _rows(conn, "SELECT 1 FROM pgrepl.sync WHERE name = %s", (check_name("sync", name),)):
        raise Refused(f'A sync named "{name}" already exists')
    sync = check_sync(conn, name, herd, type, targetdb, targetgroup, checktime, onetimecopy, makedelta, active)
    interval = parse_interval(conn, checktime)
    _install_capture(conn, sync)
    try:
        conn.execute("INSERT INTO pgrepl.sync (name, type, herd, targetdb, targetgroup, status, checktime, "
                     "onetimecopy, makedelta) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                     (name, type, herd, targetdb, targetgroup, "active" if active else "inactive", interval,
                      int(onetimecopy), bool(makedelta)))
    except Exception:
        _remove_capture(conn, sync)
        raise
    notify_control(conn)
    return get_sync(conn, name)


def update_sync(conn: psycopg.Connection, name: str, **changes) -> dict:
    """Changes a sync in place. A change of herd, targets or type is done safely: the sync is deactivated, its
    capture moved, then it is reactivated if it was active; changes captured meanwhile are kept (consumers of
    targets that stay keep their position)."""
    sync = get_sync(conn, name)
    was_active = sync["status"] == "active"
    simple = {k: changes.pop(k) for k in ("checktime", "onetimecopy", "makedelta") if k in changes}
    if "checktime" in simple:
        simple["checktime"] = parse_interval(conn, simple["checktime"])
    new = {**sync, **simple, **changes}
    if changes.get("targetdb"):
        new["targetgroup"] = None
    if changes.get("targetgroup"):
        new["targetdb"] = None
    # refuse before touching anything, and keep capture by what the sync becomes, not what it was
    check_onetimecopy(name, new["type"], new["onetimecopy"])
    if changes:
        new.update(check_sync(conn, name, new["herd"], new["type"], new["targetdb"], new["targetgroup"],
                              onetimecopy=new["onetimecopy"], makedelta=new["makedelta"], active=was_active))
    elif was_active:
        check_loops(conn, new)
    for key, value in simple.items():
        conn.execute(psycopg.sql.SQL("UPDATE pgrepl.sync SET {} = %s WHERE name = %s").format(
            psycopg.sql.Identifier(key)), (value, name))
    if not changes:
        notify_control(conn)
        return get_sync(conn, name)
    set_active(conn, name, False)
    remove_sync(conn, name, keep_capture_for=new)
    return add_sync(conn, name, new["herd"], new["type"], new["targetdb"], new["targetgroup"],
                    checktime=str(new["checktime"]) if new["checktime"] else None,
                    onetimecopy=new["onetimecopy"], makedelta=new["makedelta"], active=was_active)


def set_active(conn: psycopg.Connection, name: str, active: bool) -> bool:
    """Returns True when the status changed. Activating a sync that would close a replication loop is refused."""
    sync = get_sync(conn, name)
    if active and sync["status"] != "active":
        check_loops(conn, sync)
    changed = conn.execute("UPDATE pgrepl.sync SET status = %s WHERE name = %s AND status <> %s",
                           ("active" if active else "inactive", name, "active" if active else "inactive")).rowcount
    notify_control(conn)
    return bool(changed)


def remove_sync(conn: psycopg.Connection, name: str, keep_capture_for: dict | None = None) -> list[str]:
    """Removes an inactive sync; its triggers and delta stores go from databases where no other sync needs them.
    Returns "db: table" for each capture removed."""
    sync = get_sync(conn, name)
    if sync["status"] == "active":
        raise Refused(f'Cannot remove active sync "{name}": please deactivate it first')
    removed = [] if keep_capture_for else _remove_capture(conn, sync)
    if keep_capture_for:   # an in-place change: keep the consumers and captures that still apply, drop the others
        def pairs(s: dict) -> set:
            return set(directions(s)) if s["type"] != "fullcopy" else set()

        def captured(s: dict) -> set:
            return {(db, t) for db in _capture_dbs(conn, s) for t in sync_tables(conn, s)}

        for src_db, tgt_db in pairs(sync) - pairs(keep_capture_for):
            with sync_source(conn, src_db, name) as (src, there):
                delta.remove_consumer(src, there, tgt_db)
        for db, table in captured(sync) - captured(keep_capture_for):
            with sync_source(conn, db, name) as (src, there):
                capture.unsubscribe_table(src, there, table)
    with conn.transaction():
        conn.execute("DELETE FROM pgrepl.sync_state WHERE sync = %s", (name,))
        conn.execute("DELETE FROM pgrepl.sync WHERE name = %s", (name,))
    notify_control(conn)
    return removed


def _remove_capture(conn, sync: dict) -> list[str]:
    removed = []
    for db in dict.fromkeys(_capture_dbs(conn, sync)):
        with sync_source(conn, db, sync["name"], "pgrepl remove") as (src, name):
            removed += [f"{db}: {t}" for t in capture.unsubscribe(src, name)]
    return removed


# --- daemon state, runs, kicks -------------------------------------------------------------------------------

CONTROL_CHANNEL = "pgrepl_control"


def notify_control(conn: psycopg.Connection, payload: str = "") -> None:
    """Wakes the daemon: the catalog changed, or a sync was kicked (payload = sync name)."""
    conn.execute("SELECT pg_notify(%s, %s)", (CONTROL_CHANNEL, payload))


def set_state(conn: psycopg.Connection, sync: str, state: str, pid: int | None = None,
              started: bool = False) -> None:
    conn.execute("INSERT INTO pgrepl.sync_state (sync, state, pid, since, started) "
                 "VALUES (%(s)s, %(st)s, %(pid)s, now(), CASE WHEN %(started)s THEN now() END) "
                 "ON CONFLICT (sync) DO UPDATE SET state = excluded.state, pid = excluded.pid, since = now(), "
                 "started = coalesce(excluded.started, pgrepl.sync_state.started)",
                 {"s": sync, "st": state, "pid": pid, "started": started})


def start_run(conn: psycopg.Connection, sync: str, target: str, kind: str, pid: int, kick: int | None = None) -> int:
    return conn.execute("INSERT INTO pgrepl.run (sync, target, kind, pid, kick) VALUES (%s,%s,%s,%s,%s) RETURNING id",
                        (sync, target, kind, pid, kick)).fetchone()[0]


def finish_run(conn: psycopg.Connection, run_id: int, inserts: int = 0, updates: int = 0, deletes: int = 0,
               conflicts: int = 0, error: str | None = None) -> None:
    conn.execute("UPDATE pgrepl.run SET ended = clock_timestamp(), state = %s, inserts = %s, updates = %s, "
                 "deletes = %s, conflicts = %s, error = %s WHERE id = %s",
                 ("bad" if error else "good", inserts, updates, deletes, conflicts, error, run_id))


def kick(conn: psycopg.Connection, sync: str) -> int:
    get_sync(conn, sync)
    kick_id = conn.execute("INSERT INTO pgrepl.kick (sync) VALUES (%s) RETURNING id", (sync,)).fetchone()[0]
    notify_control(conn, sync)
    return kick_id


def take_kicks(conn: psycopg.Connection, sync: str) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM pgrepl.kick WHERE sync = %s AND done IS NULL ORDER BY id",
                                       (sync,))]


def finish_kicks(conn: psycopg.Connection, kick_ids: list[int], good: bool) -> None:
    conn.execute("UPDATE pgrepl.kick SET done = clock_timestamp(), state = %s WHERE id = ANY(%s)",
                 ("good" if good else "bad", kick_ids))


def kick_result(conn: psycopg.Connection, kick_id: int) -> str | None:
    """'good', 'bad', or None while the kick is not done."""
    row = conn.execute("SELECT state FROM pgrepl.kick WHERE id = %s AND done IS NOT NULL", (kick_id,)).fetchone()
    return row[0] if row else None


# --- purge ---------------------------------------------------------------------------------------------------

def purge_delta(conn: psycopg.Connection, keep: str) -> list[tuple[str, str]]:
    """Bucardo's bucardo_purge_delta on every database where a sync captures: deletes the captured keys that
    every consumer has applied and that are older than KEEP. Returns (db, report) pairs."""
    parse_interval(conn, keep)
    reports = []
    for db in list_dbs(conn):
        with connect(member_conninfo(db), application_name="pgrepl purge") as member:
            if capture.has_schema(member):
                reports.append((db["name"], member.execute("SELECT pgrepl.purge_delta(%s::interval)",
                                                           (keep,)).fetchone()[0]))
    return reports


def purge_runs(conn: psycopg.Connection, keep: str) -> tuple[int, int]:
    """Moves finished runs older than KEEP into the freezer, one table a day (pgrepl_freezer.run_YYYYMMDD),
    as Bucardo's freezer schema does. Returns (rows moved, rows left in pgrepl.run)."""
    parse_interval(conn, keep)
    moved = 0
    with conn.transaction():
        days = [r[0] for r in conn.execute(
            "SELECT DISTINCT to_char(started, 'YYYYMMDD') FROM pgrepl.run "
            "WHERE state <> 'running' AND ended < now() - %s::interval ORDER BY 1", (keep,))]
        for day in days:
            table = psycopg.sql.Identifier("pgrepl_freezer", f"run_{day}")
            conn.execute(psycopg.sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE pgrepl.run)").format(table))
            moved += conn.execute(psycopg.sql.SQL(
                "WITH gone AS (DELETE FROM pgrepl.run WHERE state <> 'running' AND ended < now() - %s::interval "
                "AND to_char(started, 'YYYYMMDD') = %s RETURNING *) INSERT INTO {} SELECT * FROM gone"
            ).format(table), (keep, day)).rowcount
        conn.execute("DELETE FROM pgrepl.kick WHERE done < now() - %s::interval", (keep,))
        left = conn.execute("SELECT count(*) FROM pgrepl.run").fetchone()[0]
    return moved, left


def purge_archive(conn: psycopg.Connection, keep_days: int) -> list[str]:
    """Drops the freezer's daily tables older than KEEP_DAYS days. Returns the tables dropped."""
    if int(keep_days) < 0:
        raise Refused("--keep takes a number of days, 0 or more")
    oldest = conn.execute("SELECT to_char(current_date - %s::int, 'YYYYMMDD')", (int(keep_days),)).fetchone()[0]
    dropped = []
    for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'pgrepl_freezer' "
                                "AND tablename ~ '^run_[0-9]{8}$' ORDER BY 1").fetchall():
        if name[4:] < oldest:
            conn.execute(psycopg.sql.SQL("DROP TABLE {}").format(psycopg.sql.Identifier("pgrepl_freezer", name)))
            dropped.append(f"pgrepl_freezer.{name}")
    return dropped


# --- status --------------------------------------------------------------------------------------------------

def status(conn: psycopg.Connection, names: Iterable[str] = ()) -> list[dict]:
    """Per sync: definition, worker state, the session holding its lease and those waiting for it (see lease.py),
    and the last good and last bad runs within `days_back` days."""
    days = int(all_settings(conn)["days_back"])
    wanted = list(names)
    syncs = [get_sync(conn, n) for n in wanted] if wanted else list_syncs(conn)
    leases = lease.holders(conn, [s["name"] for s in syncs])
    out = []
    for s in syncs:
        state = _rows(conn, "SELECT state, pid, since, started FROM pgrepl.sync_state WHERE sync = %s", (s["name"],))
        last = {}
        for which in ("good", "bad"):
            rows = _rows(conn, "SELECT target, started, ended, extract(epoch FROM ended - started)::float AS duration, "
                               "inserts, updates, deletes, conflicts, error FROM pgrepl.run "
                               "WHERE sync = %s AND state = %s AND started > now() - make_interval(days => %s) "
                               "ORDER BY ended DESC LIMIT 1", (s["name"], which, days))
            last[which] = rows[0] if rows else None
        out.append({**s, "checktime": str(s["checktime"]) if s["checktime"] else None,
                    "state": state[0] if state else None, "last_good": last["good"], "last_bad": last["bad"],
                    **leases[s["name"]],
                    "tables": len(herd_members(conn, s["herd"]))})
    return out
