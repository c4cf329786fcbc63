"""Verbs that define the replication: install, show/set, add, update, activate/deactivate, remove."""

from __future__ import annotations

from .. import catalog, passfile
from ..errors import PgreplError
from ..settings import SETTINGS, validate
from .args import EXIT_OK, Args, Usage, _bool, _int, _kind, emit_json, known_attributes, out


def cmd_install(a: Args, conninfo: str) -> int:
    notes: list[str] = []
    changed, version = catalog.install(conninfo, notes)
    for note in notes:
        out(note)
    if changed:
        out(f"Installed the pgrepl control schema (version {version}).")
    else:
        out(f"The pgrepl control schema is already installed (version {version}): nothing to do.")
    return EXIT_OK


def cmd_show(a: Args, conn) -> int:
    values = catalog.all_settings(conn)
    names = sorted(values) if not a.words[1:] or a.words[1:] == ["all"] else a.words[1:]
    for n in names:
        if n not in values:
            raise PgreplError(f'Unknown setting "{n}". Known settings: {", ".join(sorted(values))}')
    if a.json:
        emit_json({n: values[n] for n in names})
        return EXIT_OK
    width = max(len(n) for n in names)
    for n in names:
        out(f"{n:<{width}} = {values[n]}")
        if a.verbose:
            restart = " (read as the runner starts: a change needs `pgrepl restart`)" if SETTINGS[n].at_start else ""
            out(f"{'':<{width}}   {SETTINGS[n].about}{restart}")
    return EXIT_OK


def cmd_set(a: Args, conn) -> int:
    if not a.kv or a.words[1:]:
        raise Usage("usage: pgrepl set NAME=VALUE [NAME=VALUE...]")
    for name, value in a.kv.items():   # validate all before changing any
        validate(name, value)
    for name, value in a.kv.items():
        old, new = catalog.set_setting(conn, name, value)
        out(f"Set {name} to {new!r} (was {old!r})" if old != new else f"{name} is already {new!r}")
        if old != new and SETTINGS[name].at_start:
            out(f"  {name} is read as the runner starts: `pgrepl restart` for the change to take effect")
    return EXIT_OK


def cmd_add(a: Args, conn) -> int:
    if len(a.words) < 2:
        raise Usage("usage: pgrepl add db|all|table|sequence|dbgroup|sync ... (see `pgrepl help add`)")
    what = a.words[1]
    if what in ("database", "db"):
        return _add_db(a, conn)
    if what == "all":
        if len(a.words) < 3:
            raise Usage("usage: pgrepl add all tables|sequences db=NAME ...")
        return _add_relations(a, conn, _kind(a.words[2]), [])
    if what in ("table", "tables", "sequence", "sequences"):
        names = a.words[2:]
        if not names:
            raise Usage(f"usage: pgrepl add {what} NAME... db=DB [herd=HERD]")
        return _add_relations(a, conn, _kind(what), names)
    if what == "dbgroup":
        if len(a.words) < 3:
            raise Usage("usage: pgrepl add dbgroup NAME DB...")
        known_attributes(a, "dbgroup", ())
        name, members = a.words[2], a.words[3:]
        added = catalog.add_dbgroup(conn, name, members)
        for m in added:
            out(f'Added database "{m}" to group "{name}"')
        out(f'Added database group "{name}"')
        return EXIT_OK
    if what == "sync":
        if len(a.words) != 3:
            raise Usage("usage: pgrepl add sync NAME source=HERD targetdb=DB|targetgroup=GROUP type=TYPE")
        kv = dict(a.kv)
        known_attributes(a, "sync", ("source", "herd", "targetdb", "targetgroup", "type", "checktime",
                                     "onetimecopy", "makedelta", "status"))
        herd = kv.get("source") or kv.get("herd")
        if not herd or not kv.get("type"):
            raise Usage("add sync needs source=HERD and type=pushdelta|fullcopy|swap")
        catalog.add_sync(conn, a.words[2], herd, kv["type"], kv.get("targetdb"), kv.get("targetgroup"),
                         checktime=kv.get("checktime"), onetimecopy=_int(kv.get("onetimecopy", "0"), "onetimecopy"),
                         makedelta=_bool(kv.get("makedelta", "no"), "makedelta"),
                         active=kv.get("status", "active") == "active")
        out(f'Added sync "{a.words[2]}"')
        return EXIT_OK
    raise Usage(f'cannot add "{what}": one of db, all tables, all sequences, table, sequence, dbgroup, sync')


def _add_db(a: Args, conn) -> int:
    if len(a.words) != 3 or "name" not in a.kv:
        raise Usage("usage: pgrepl add database DBNAME name=NAME [host=H] [port=P] [user=U] [pass=P] "
                    "[sslmode=MODE] [sslrootcert=CA_FILE]")
    known_attributes(a, "database", ("name", "host", "port", "user", "pass", "password", "dbname", "sslmode",
                                     "sslrootcert"))
    catalog.add_db(conn, a.kv["name"], a.words[2], a.kv.get("host"), _int(a.kv.get("port", "5432"), "port"),
                   a.kv.get("user"), a.kv.get("pass", a.kv.get("password")), a.kv.get("sslmode"), a.kv.get("sslrootcert"))
    where = f" (its password in {passfile.path()}, not in the catalog)" if {"pass", "password"} & set(a.kv) else ""
    out(f'Added database "{a.kv["name"]}"{where}')
    return EXIT_OK


def _add_relations(a: Args, conn, kind: str, names: list[str]) -> int:
    known_attributes(a, kind, ("db", "herd", "standard_conflict", "delta_columns") if kind == "table" else ("db", "herd"))
    db = a.kv.get("db") or a.opt("--db")
    if not db:
        raise Usage(f"add {kind}s needs db=NAME (the database they are in)")
    herd = a.opt("--herd") or a.kv.get("herd")
    include = names + a.opts.get("-t", [])
    tables = catalog.describe_source(conn, db, kind, include, a.opts.get("-T", []))
    result = catalog.add_relations(conn, db, tables, herd, a.kv.get("standard_conflict"),
                                   _columns(a.kv.get("delta_columns")))
    if a.verbose:
        if result["herd_created"]:
            out(f"Creating herd: {herd}")
        out(f"New {kind}s:")
        for q in result["added"]:
            out(q)
        out(f"New {kind}s added: {len(result['added'])}")
        out(f"Already added: {len(result['already'])}")
    else:
        into = f' to herd "{herd}"' if herd else ""
        out(f"Added {len(result['added'])} {kind}(s){into}; {len(result['already'])} already there")
    return EXIT_OK


def cmd_activate(a: Args, conn, active: bool) -> int:
    if len(a.words) < 2:
        raise Usage(f"usage: pgrepl {a.words[0]} SYNC...")
    for name in a.words[1:]:
        catalog.get_sync(conn, name)
    for name in a.words[1:]:
        catalog.set_active(conn, name, active)
        out(f"{'Activating' if active else 'Deactivating'} sync {name}")
    return EXIT_OK


def cmd_remove(a: Args, conn) -> int:
    if len(a.words) < 3:
        raise Usage("usage: pgrepl remove sync|herd|table|sequence|db|dbgroup NAME...")
    kind = _kind(a.words[1])
    known_attributes(a, kind, ("db",) if kind in ("table", "sequence") else ())
    for name in a.words[2:]:
        if kind == "sync":
            removed = catalog.remove_sync(conn, name)
            out(f'Removed sync "{name}"')
            for r in removed:
                out(f"Removed triggers and delta store of {r}")
        elif kind == "herd":
            catalog.remove_herd(conn, name)
            out(f'Removed herd "{name}"')
        elif kind in ("table", "sequence"):
            for q in catalog.remove_relation(conn, name, a.kv.get("db")):
                out(f'Removed {kind} "{q}"')
        elif kind == "db":
            catalog.remove_db(conn, name)
            out(f'Removed database "{name}"')
        elif kind == "dbgroup":
            catalog.remove_dbgroup(conn, name)
            out(f'Removed database group "{name}"')
        else:
            raise Usage(f"cannot remove a {kind}")
    return EXIT_OK


def _columns(value: str | None) -> list[str] | None:
    """delta_columns=a,b: a list; `delta_columns=` or `none`: no delta columns; absent: None (unchanged)."""
    if value is None:
        return None
    return [] if value.strip().lower() in ("", "none") else [c.strip() for c in value.split(",") if c.strip()]


def _update_tables(a: Args, conn) -> int:
    known_attributes(a, "table", ("db", "standard_conflict", "delta_columns"))
    if len(a.words) < 3 or "db" not in a.kv or not {"standard_conflict", "delta_columns"} & set(a.kv):
        raise Usage("usage: pgrepl update table NAME... db=DB [standard_conflict=RULE] [delta_columns=COL,...|none]")
    for q in catalog.update_tables(conn, a.kv["db"], a.words[2:], a.kv.get("standard_conflict"),
                                   _columns(a.kv.get("delta_columns"))):
        out(f'Updated table "{q}"')
    return EXIT_OK


def cmd_update(a: Args, conn) -> int:
    if len(a.words) >= 2 and a.words[1] in ("table", "tables"):
        return _update_tables(a, conn)
    if len(a.words) != 3 or a.words[1] != "sync" or not a.kv:
        raise Usage("usage: pgrepl update sync NAME [source=HERD] [targetdb=DB|targetgroup=GROUP] [type=TYPE] "
                    "[checktime=INTERVAL] [onetimecopy=0|1|2] [makedelta=yes|no]")
    known_attributes(a, "sync", ("source", "herd", "targetdb", "targetgroup", "type", "checktime", "onetimecopy",
                                 "makedelta"))
    kv = dict(a.kv)
    if "source" in kv:
        kv["herd"] = kv.pop("source")
    if "onetimecopy" in kv:
        kv["onetimecopy"] = _int(kv["onetimecopy"], "onetimecopy")
    if "makedelta" in kv:
        kv["makedelta"] = _bool(kv["makedelta"], "makedelta")
    catalog.update_sync(conn, a.words[2], **kv)
    out(f'Updated sync "{a.words[2]}"')
    return EXIT_OK
