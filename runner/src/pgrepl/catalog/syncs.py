"""Syncs: their checks, and the capture and positions they own on the source databases."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from .. import capture, delta, loops
from ..capture import TableInfo
from ..errors import NotFound, Refused
from .databases import get_db, get_dbgroup, member_connect, sync_source
from .relations import get_herd, herd_members, relation_info
from .schema import SYNC_TYPES, _rows, check_name, notify_control
from .settings import all_settings

# --- syncs ---------------------------------------------------------------------------------------------------

# A sync with its source database and targets, in one query (every worker reads its sync each poll).
_SYNCS = """
SELECT s.name, s.type, s.herd, s.targetdb, s.targetgroup, s.status, s.checktime, s.onetimecopy, s.makedelta,
       s.created,
       (SELECT r.db FROM pgrepl.herd_member m JOIN pgrepl.relation r ON r.id = m.relation
         WHERE m.herd = s.herd LIMIT 1) AS source,
       CASE WHEN s.targetdb IS NOT NULL THEN ARRAY[s.targetdb]
            ELSE ARRAY(SELECT g.db FROM pgrepl.dbgroup_member g WHERE g.dbgroup = s.targetgroup ORDER BY g.db)
       END AS targets
  FROM pgrepl.sync s"""


def list_syncs(conn: psycopg.Connection) -> list[dict]:
    return _rows(conn, _SYNCS + " ORDER BY s.name")


def get_sync(conn: psycopg.Connection, name: str) -> dict:
    rows = _rows(conn, _SYNCS + " WHERE s.name = %s", (name,))
    if not rows:
        raise NotFound(f'No sync named "{name}"')
    return rows[0]


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
