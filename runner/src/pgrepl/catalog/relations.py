"""Tables, sequences and herds (Bucardo's goats and herds)."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from .. import capture
from ..capture import TableInfo
from ..errors import NotFound, Refused
from .databases import get_db, member_connect, sync_source
from .schema import CONFLICT_RULES, _rows, check_name, notify_control


def relation_info(row: dict) -> TableInfo:
    return TableInfo(row["schemaname"], row["relname"], row["kind"], tuple(row["pkey"]), tuple(row["pktype"]),
                     tuple(row["pktypname"]))


def list_relations(conn: psycopg.Connection, kind: str | None = None) -> list[dict]:
    return _rows(conn, "SELECT r.*, coalesce(array_agg(m.herd ORDER BY m.herd) FILTER (WHERE m.herd IS NOT NULL), "
                       "'{}') AS herds FROM pgrepl.relation r LEFT JOIN pgrepl.herd_member m ON m.relation = r.id "
                       "WHERE %(kind)s::text IS NULL OR r.kind = %(kind)s GROUP BY r.id "
                       "ORDER BY r.schemaname, r.relname, r.db", {"kind": kind})


def add_relations(conn: psycopg.Connection, db: str, tables: list[TableInfo], herd: str | None = None,
                  standard_conflict: str | None = None, delta_columns: list[str] | None = None) -> dict:
    """Records TABLES of database DB in the catalog, and in HERD when given (created if missing).
    Returns {"herd_created": bool, "added": [qualname], "already": [qualname]} ("added" counts herd membership
    when a herd is given, catalog entries otherwise). Tables already in a sync's herd make that sync capture them."""
    from .syncs import (  # syncs builds on this module: imported late
        _install_capture,
        check_relations,
        syncs_of_herd,
    )
    get_db(conn, db)
    if standard_conflict is not None and standard_conflict not in CONFLICT_RULES:
        raise Refused(f'Invalid standard_conflict "{standard_conflict}": must be one of {", ".join(CONFLICT_RULES)}')
    if delta_columns:
        _check_delta_columns(conn, db, tables, delta_columns)
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
            rel_id, existed = _upsert_relation(conn, db, t, standard_conflict, delta_columns)
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


def _upsert_relation(conn, db: str, t: TableInfo, standard_conflict: str | None,
                     delta_columns: list[str] | None = None) -> tuple[int, bool]:
    row = conn.execute("SELECT id FROM pgrepl.relation WHERE db = %s AND schemaname = %s AND relname = %s",
                       (db, t.schemaname, t.relname)).fetchone()
    if row:
        conn.execute("UPDATE pgrepl.relation SET pkey = %s, pktype = %s, pktypname = %s, "
                     "standard_conflict = coalesce(%s, standard_conflict), "
                     "delta_columns = coalesce(%s, delta_columns) WHERE id = %s",
                     (list(t.pkey), list(t.pktype), list(t.pktypname), standard_conflict, delta_columns, row[0]))
        return row[0], True
    rel_id = conn.execute(
        "INSERT INTO pgrepl.relation (db, schemaname, relname, kind, pkey, pktype, pktypname, standard_conflict, "
        "delta_columns) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
        (db, t.schemaname, t.relname, t.kind, list(t.pkey), list(t.pktype), list(t.pktypname), standard_conflict,
         delta_columns or []),
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
    from .syncs import syncs_of_herd  # syncs builds on this module: imported late
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
    from .syncs import _capture_dbs, syncs_of_herd  # syncs builds on this module: imported late
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
    for s in syncs_of_herd_late(conn, herd):   # merge tracks changed columns: the capture follows the rule
        if s["type"] == "swap":
            from .syncs import _install_capture
            _install_capture(conn, s)


def _check_delta_columns(conn: psycopg.Connection, db: str, tables: list[TableInfo], columns: list[str]) -> None:
    """Every table has each column, outside its key, of a type with + and - (refused before anything changes)."""
    with member_connect(conn, db, "pgrepl describe") as src:
        for t in tables:
            if t.kind != "table":
                raise Refused(f"{t.qualname} is a sequence: only tables have delta columns")
            capture.check_delta_columns(src, t, columns)


def update_tables(conn: psycopg.Connection, db: str, names: list[str], standard_conflict: str | None = None,
                  delta_columns: list[str] | None = None) -> list[str]:
    """Changes the rule and/or the delta columns ([] for none) of tables already in the catalog; the syncs that
    read them capture accordingly from now on. Returns the tables changed."""
    from .syncs import _install_capture  # syncs builds on this module: imported late
    if standard_conflict is not None and standard_conflict not in CONFLICT_RULES:
        raise Refused(f'Invalid standard_conflict "{standard_conflict}": must be one of {", ".join(CONFLICT_RULES)}')
    known = [r for r in list_relations(conn, "table") if r["db"] == db]
    rows = []
    for name in names:
        hits = [r for r in known if f'{r["schemaname"]}.{r["relname"]}' == name or r["relname"] == name]
        if not hits:
            raise NotFound(f'No table named "{name}" of database "{db}" in the catalog: `pgrepl add table` it first')
        rows += [h for h in hits if h not in rows]
    if delta_columns:
        _check_delta_columns(conn, db, [relation_info(r) for r in rows], delta_columns)
    with conn.transaction():
        for r in rows:
            conn.execute("UPDATE pgrepl.relation SET standard_conflict = coalesce(%s, standard_conflict), "
                         "delta_columns = coalesce(%s, delta_columns) WHERE id = %s",
                         (standard_conflict, delta_columns, r["id"]))
    for herd in sorted({h for r in rows for h in r["herds"]}):
        for s in syncs_of_herd_late(conn, herd):
            _install_capture(conn, s)
    notify_control(conn)   # the workers poll again: their runs between two polls reuse the rules and captures
    return [f'{r["schemaname"]}.{r["relname"]}' for r in rows]


def syncs_of_herd_late(conn: psycopg.Connection, herd: str) -> list[dict]:
    from .syncs import syncs_of_herd  # syncs builds on this module: imported late
    return syncs_of_herd(conn, herd)


def capture_options(member: dict) -> capture.Options:
    """What a swap sync's capture of a herd member records beyond keys."""
    return capture.Options(tuple(member.get("delta_columns") or ()), member.get("standard_conflict") == "merge")
