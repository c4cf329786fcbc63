"""`pgrepl`: bucardo_ctl's command lines, with pgrepl in its place.

Argument parsing and output formatting only: every action is a call into catalog, capture or worker.
Exit codes: 0 done; 1 error or refused; 2 bad usage; 3 a kicked run failed; 4 `kick --wait` timed out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from . import __version__, catalog, delta, guard, lease, passfile, swap, worker
from .db import connect, control_conninfo, member_conninfo
from .errors import PgreplError
from .settings import SETTINGS, validate

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_KICK_FAILED, EXIT_KICK_TIMEOUT = 0, 1, 2, 3, 4

VALUE_OPTIONS = {"-t", "-T", "--herd", "--wait", "--keep", "--control", "--db"}
FLAG_OPTIONS = {"--verbose", "-v", "--json", "--quiet", "-q", "--help", "-h", "--check", "--version",
                "--onetimecopy"}


class Usage(PgreplError):
    pass


@dataclass
class Args:
    words: list[str] = field(default_factory=list)       # positional words: verb, object type, names
    kv: dict[str, str] = field(default_factory=dict)     # name=value pairs
    opts: dict[str, list[str]] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)

    def opt(self, name: str, default: str | None = None) -> str | None:
        return self.opts.get(name, [default])[-1]

    @property
    def json(self) -> bool:
        return "--json" in self.flags

    @property
    def verbose(self) -> bool:
        return bool({"--verbose", "-v"} & self.flags)


def parse(argv: list[str]) -> Args:
    a = Args()
    it = iter(argv)
    for tok in it:
        if tok.startswith("-") and tok != "-":
            name, eq, value = tok.partition("=")
            if name in ("-t", "-T") or (tok[:2] in ("-t", "-T") and len(tok) > 2 and not eq):
                name, value, eq = tok[:2], tok[2:], bool(tok[2:])
            if name in VALUE_OPTIONS:
                if not eq:
                    value = next(it, None)
                    if value is None:
                        raise Usage(f"option {name} needs a value")
                a.opts.setdefault(name, []).append(value)
            elif name in FLAG_OPTIONS:
                a.flags.add(name)
            else:
                raise Usage(f"unknown option {tok}")
        elif "=" in tok and tok.split("=", 1)[0].isidentifier():
            key, value = tok.split("=", 1)
            a.kv[key] = value
        else:
            a.words.append(tok)
    return a


def known_attributes(a: Args, what: str, known: Iterable[str]) -> None:
    """Refuses NAME=VALUE attributes the command does not know, naming those it knows: a typo must not be
    ignored (standard_confict=source would leave the default rule in force)."""
    known = sorted(known)
    unknown = sorted(set(a.kv) - set(known))
    if unknown:
        raise Usage(f"unknown {what} attribute(s): {', '.join(unknown)}; known: {', '.join(known) or 'none'}")


def out(line: str = "") -> None:
    print(line, flush=True)


def emit_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


# --- helpers -------------------------------------------------------------------------------------------------

def _ago(ts: datetime | None) -> str:
    if ts is None:
        return "unknown"
    return _duration((datetime.now(UTC) - ts).total_seconds())


def _duration(seconds: float | None, spaced: bool = False) -> str:
    if seconds is None:
        return "unknown"
    s = int(round(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [f"{d}d"] * bool(d) + [f"{h}h"] * bool(h or d) + [f"{m}m"] * bool(m or h or d) + [f"{s}s"]
    return (" " if spaced else "").join(parts)


def _no_entries(table: str) -> None:
    out(f"There are no entries in the '{table}' table.")


def _kind(word: str) -> str:
    kinds = {"db": "db", "dbs": "db", "database": "db", "databases": "db", "dbgroup": "dbgroup",
             "dbgroups": "dbgroup", "table": "table", "tables": "table", "sequence": "sequence",
             "sequences": "sequence", "herd": "herd", "herds": "herd", "sync": "sync", "syncs": "sync",
             "conflict": "conflict", "conflicts": "conflict"}
    if word not in kinds:
        raise Usage(f'unknown object type "{word}": one of db, dbgroup, table, sequence, herd, sync, conflict')
    return kinds[word]


# --- commands ------------------------------------------------------------------------------------------------

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
            out(f"{'':<{width}}   {SETTINGS[n].about}")
    return EXIT_OK


def cmd_set(a: Args, conn) -> int:
    if not a.kv or a.words[1:]:
        raise Usage("usage: pgrepl set NAME=VALUE [NAME=VALUE...]")
    for name, value in a.kv.items():   # validate all before changing any
        validate(name, value)
    for name, value in a.kv.items():
        old, new = catalog.set_setting(conn, name, value)
        out(f"Set {name} to {new!r} (was {old!r})" if old != new else f"{name} is already {new!r}")
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


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise Usage(f'{what} must be a whole number, not "{value}"') from None


def _bool(value: str, what: str) -> bool:
    v = value.lower()
    if v in ("1", "yes", "true", "on"):
        return True
    if v in ("0", "no", "false", "off"):
        return False
    raise Usage(f'{what} must be yes or no, not "{value}"')


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
    known_attributes(a, kind, ("db", "herd", "standard_conflict") if kind == "table" else ("db", "herd"))
    db = a.kv.get("db") or a.opt("--db")
    if not db:
        raise Usage(f"add {kind}s needs db=NAME (the database they are in)")
    herd = a.opt("--herd") or a.kv.get("herd")
    include = names + a.opts.get("-t", [])
    tables = catalog.describe_source(conn, db, kind, include, a.opts.get("-T", []))
    result = catalog.add_relations(conn, db, tables, herd, a.kv.get("standard_conflict"))
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


def _dbgroup_lines(r: dict, verbose: bool) -> list[str]:
    return [f'Database group: {r["name"]} Members: {", ".join(r["members"])}']


def _herd_lines(r: dict, verbose: bool) -> list[str]:
    lines = [f'Herd: {r["name"]} DB: {r["db"] or "none"} Members: {", ".join(r["members"])}']
    return lines + ([f'Used in syncs: {", ".join(r["syncs"])}'] if r["syncs"] else [])


def _conflict_lines(r: dict, verbose: bool) -> list[str]:
    return [f'Conflict: {r["sync"]} {r["tablename"]} key {r["key"]} rule: {r["rule"]} winner: {r["winner"]} '
            f'at {r["detected"]:%Y-%m-%d %H:%M:%S}']


def _db_lines(r: dict, verbose: bool) -> list[str]:
    conn_line = f'psql -p {r["port"]} -U {r["username"] or "pgrepl"} -d {r["dbname"]}'
    conn_line += f' -h {r["host"]}' if r["host"] else ""
    return [f'Database: {r["name"]} Status: {r["status"]} Conn: {conn_line}']


def _relation_lines(r: dict, verbose: bool) -> list[str]:
    q = f'{r["schemaname"]}.{r["relname"]}'
    if r["kind"] == "table":
        pk = f'{", ".join(r["pkey"])} ({", ".join(r["pktypname"])})' if r["pkey"] else "none"
        line = f'Table: {q} DB: {r["db"]} PK: {pk}'
    else:
        line = f'Sequence: {q} DB: {r["db"]}'
    if verbose:
        line += f' Herds: {", ".join(r["herds"]) or "none"}'
        if r["standard_conflict"]:
            line += f' standard_conflict: {r["standard_conflict"]}'
    return [line]


def _sync_lines(r: dict, verbose: bool) -> list[str]:
    line = (f'Sync: {r["name"]} ({r["type"]}) {r["herd"]} => {r["targetdb"] or r["targetgroup"]} '
            f'({r["status"].capitalize()})')
    if verbose:
        line += (f' source: {r["source"]} targets: {", ".join(r["targets"])} checktime: {r["checktime"] or "none"} '
                 f'onetimecopy: {r["onetimecopy"]} makedelta: {"yes" if r["makedelta"] else "no"}')
    return [line]


_LIST_LINES = {"db": _db_lines, "dbgroup": _dbgroup_lines, "table": _relation_lines, "sequence": _relation_lines,
               "herd": _herd_lines, "sync": _sync_lines, "conflict": _conflict_lines}


def cmd_list(a: Args, conn) -> int:
    if len(a.words) < 2:
        raise Usage("Usage: list <type> [options]\nShows information about items in the pgrepl catalog.\n"
                    "The type is one of: db, dbgroup, table, sequence, herd, sync, conflict\n"
                    "For more information, run: pgrepl help list")
    kind, names = _kind(a.words[1]), a.words[2:]
    if kind == "db":
        rows = [{k: v for k, v in r.items() if k != "password"} for r in catalog.list_dbs(conn)]
    elif kind == "dbgroup":
        rows = catalog.list_dbgroups(conn)
    elif kind in ("table", "sequence"):
        rows = catalog.list_relations(conn, kind)
    elif kind == "herd":
        rows = catalog.list_herds(conn)
    elif kind == "sync":
        rows = catalog.list_syncs(conn)
    else:
        rows = swap.list_conflicts(conn, names)
        names = []
    if names:   # NAME or schema.NAME
        rows = [r for r in rows if r.get("name") in names or r.get("relname") in names
                or f'{r.get("schemaname")}.{r.get("relname")}' in names]
    if a.json:
        emit_json(rows)
    elif not rows:
        _no_entries(kind)
    for r in [] if a.json else rows:
        for line in _LIST_LINES[kind](r, a.verbose):
            out(line)
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


def cmd_update(a: Args, conn) -> int:
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


def cmd_kick(a: Args, conn) -> int:
    names = [w for w in a.words[1:] if not w.isdigit()]
    timeouts = [w for w in a.words[1:] if w.isdigit()]   # bucardo_ctl kick SYNC 10
    wait = a.opt("--wait") or (timeouts[-1] if timeouts else None)
    if not names:
        raise Usage("usage: pgrepl kick SYNC... [--wait SECONDS]")
    for name in names:
        if catalog.get_sync(conn, name)["status"] != "active":
            raise PgreplError(f'Sync "{name}" is not active: activate it first')
    kicks = {name: catalog.kick(conn, name) for name in names}
    for name in names:
        out(f"Kicked sync {name}")
    if wait is None:
        return EXIT_OK
    deadline = time.monotonic() + float(wait)
    results: dict[str, str | None] = dict.fromkeys(names)
    while time.monotonic() < deadline and None in results.values():
        for name, kick_id in kicks.items():
            if results[name] is None:
                results[name] = catalog.kick_result(conn, kick_id)
        if None in results.values():
            time.sleep(0.1)
    code = EXIT_OK
    for name, result in results.items():
        if result is None:
            out(f"Sync {name}: no finished run after {wait}s (timed out; is `pgrepl start` running?)")
            code = max(code, EXIT_KICK_TIMEOUT)
        elif result == "bad":
            err = conn.execute("SELECT error FROM pgrepl.run WHERE kick = %s AND state = 'bad' ORDER BY id DESC "
                               "LIMIT 1", (kicks[name],)).fetchone()
            out(f"Sync {name}: run failed: {err[0] if err else 'see pgrepl status ' + name}")
            code = EXIT_KICK_FAILED if code != EXIT_KICK_TIMEOUT else code
        else:
            out(f"Sync {name}: run finished (good)")
    return code


def _mcp_pid(conn) -> int | None:
    return worker.read_pid(worker.pid_path(catalog.all_settings(conn), "mcp"))


def cmd_status(a: Args, conn) -> int:
    rows = catalog.status(conn, a.words[1:])
    settings = catalog.all_settings(conn)
    mcp = _mcp_pid(conn)
    for r in rows:   # the lease in the control database says whether a worker runs the sync, on any host
        st, holder = r["state"], r["lease"]
        r["current_state"] = (st["state"] if holder and st else "waiting" if r["waiting"] else
                              "inactive" if r["status"] != "active" else "stopped")
        r["pid"] = (holder["pid"] or st and st["pid"]) if holder else None
    if a.json:
        emit_json({"mcp_pid": mcp, "days_back": int(settings["days_back"]), "syncs": rows})
        return EXIT_OK
    info = conn.info
    header = f"Days back: {settings['days_back']} User: {info.user} Database: {info.dbname}"
    if len(a.words) > 1:
        out(header)
        for r in rows:
            _status_detail(r, settings)
        return EXIT_OK
    out(header + f" PID of pgrepl MCP: {mcp or 'not running'}")
    table = [("Name", "Type", "State", "PID", "Last good", "Time", "I/U/D", "Last bad", "Time")]
    for r in rows:
        g, b = r["last_good"], r["last_bad"]
        table.append((r["name"], r["type"][0].upper(), r["current_state"], str(r["pid"] or "?"),
                      _ago(g["ended"]) if g else "none", _duration(g["duration"]) if g else "",
                      f'{g["inserts"]}/{g["updates"]}/{g["deletes"]}' if g else "",
                      _ago(b["ended"]) if b else "none", _duration(b["duration"]) if b else ""))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        out("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if len(table) == 1:
        _no_entries("sync")
    for r in rows:
        for w in r["waiting"]:
            out(f'{r["name"]}: {_waiting(w, r)}')
    return EXIT_OK


def _waiting(w: dict, r: dict) -> str:
    held = lease.describe(r["lease"]) if r["lease"] else "a worker that just stopped"
    return f"{lease.describe(w)} is waiting for the lease held by {held}"


def _status_detail(r: dict, settings: dict) -> None:
    g, b = r["last_good"], r["last_bad"]
    pidfile = worker.pid_path(settings, f'sync.{r["name"]}')
    lines = [
        ("Sync name", r["name"]),
        ("Current state", f'{r["current_state"]}' + (f' (PID = {r["pid"]})' if r["pid"] else "")),
        ("Lease", f'held by {lease.describe(r["lease"])}' if r["lease"] else "not held: no worker runs this sync"),
        *[("Waiting", _waiting(w, r)) for w in r["waiting"]],
        ("Type", r["type"]),
        ("Source herd/database", f'{r["herd"]} / {r["source"]}'),
        (("Target database", r["targetdb"]) if r["targetdb"] else
         ("Target database group", f'{r["targetgroup"]} ({", ".join(r["targets"])})')),
        ("Tables in sync", str(r["tables"])),
        ("Last good", f'{_ago(g["ended"])} (time to run: {_duration(g["duration"], True)})' if g else "unknown"),
        ("Last good time", f'{g["ended"]:%b %d, %Y %H:%M:%S} Target: {g["target"]}' if g else "unknown"),
        ("Ins/Upd/Del", f'{g["inserts"]} / {g["updates"]} / {g["deletes"]}' if g else "unknown"),
        ("Last bad", f'{_ago(b["ended"])} (time to run: {_duration(b["duration"], True)})' if b else "unknown"),
    ]
    if b:
        lines += [("Last bad time", f'{b["ended"]:%b %d, %Y %H:%M:%S} Target: {b["target"]}'),
                  ("Last error", b["error"] or "")]
    lines += [
        ("PID file", str(pidfile)),
        ("PID file created", time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(pidfile.stat().st_mtime))
         if pidfile.exists() else "none"),
        ("Status", r["status"]),
        ("Checktime", r["checktime"] or "none"),
        ("Makedelta", "yes" if r["makedelta"] else "no"),
        ("Onetimecopy", str(r["onetimecopy"])),
    ]
    if r["type"] == "fullcopy":
        lines += [("Post-copy analyze", settings["fullcopy_analyze"]),
                  ("Delete method", settings["fullcopy_delete_method"])]
    out("=" * 70)
    for label, value in lines:
        out(f"{label + ':':<22}{value}")


def cmd_start(a: Args, conn, conninfo: str) -> int:
    settings = catalog.all_settings(conn)
    out("Checking for existing processes")
    pid = _mcp_pid(conn)
    if pid:
        raise PgreplError(f"pgrepl is already running (PID {pid}): use `pgrepl restart` or `pgrepl stop` first")
    stopfile = worker.stopfile_path(settings)
    if stopfile.exists():
        out(f"Removing {stopfile}")
        stopfile.unlink()
    Path(settings["piddir"]).mkdir(parents=True, exist_ok=True)
    logfile = Path(settings["piddir"]) / "pgrepl.log"
    with os.fdopen(os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as log:   # 0600: ours
        os.fchmod(log.fileno(), 0o600)
        proc = subprocess.Popen([sys.executable, "-m", "pgrepl", "run"], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True, env=dict(os.environ, PGREPL_CONTROL=conninfo))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None and not _mcp_pid(conn):
        time.sleep(0.1)
    if proc.poll() is not None:
        raise PgreplError(f"pgrepl did not start (exit code {proc.returncode}); see {logfile}")
    out(f"Starting pgrepl (PID {proc.pid}, log: {logfile})")
    return EXIT_OK


def cmd_stop(a: Args, conn) -> int:
    settings = catalog.all_settings(conn)
    stopfile = worker.stopfile_path(settings)
    stopfile.parent.mkdir(parents=True, exist_ok=True)
    print(f"Creating {stopfile} ... ", end="", flush=True)
    stopfile.write_text(f"Stopped by pgrepl stop at {datetime.now():%Y-%m-%d %H:%M:%S}\n")
    out("Done")
    pid = _mcp_pid(conn)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and worker.read_pid(worker.pid_path(settings, "mcp")):
            time.sleep(0.1)
        if worker.read_pid(worker.pid_path(settings, "mcp")):
            raise PgreplError(f"pgrepl (PID {pid}) did not stop within 60s")
    return EXIT_OK


def cmd_check(a: Args, conninfo: str) -> int:
    """Checks the configuration as `pgrepl run` would use it; prints one line per check."""
    problems = 0

    def report(ok: bool, what: str) -> None:
        nonlocal problems
        problems += not ok
        out(f"{'ok  ' if ok else 'FAIL'} {what}")

    try:
        conn = catalog.open_control(conninfo)
    except PgreplError as e:
        report(False, f"control database: {e}")
        return EXIT_ERROR
    report(True, f"control database {conn.info.dbname} on {conn.info.host or 'local socket'}, schema installed")
    with conn:
        settings = catalog.all_settings(conn)
        piddir = Path(settings["piddir"])
        report(piddir.is_dir() and os.access(piddir, os.W_OK) or not piddir.exists() and
               os.access(piddir.parent, os.W_OK), f"piddir {piddir} is writable")
        for db in catalog.list_dbs(conn):
            try:
                with connect(member_conninfo(db), connect_timeout=5):
                    report(True, f'database {db["name"]} reachable')
            except PgreplError as e:
                report(False, f'database {db["name"]}: {e}')
        for s in catalog.list_syncs(conn):
            if s["type"] == "fullcopy" or s["status"] != "active":
                continue
            for src_db, tgt_db in catalog.directions(s):
                try:
                    with catalog.sync_source(conn, src_db, s["name"]) as (src, name):
                        delta.consumer_position(src, name, tgt_db)
                        guard.check(s["name"], name, catalog.sync_tables(conn, s), (src_db, src))
                    report(True, f'sync {s["name"]}: capture on {src_db} for {tgt_db}')
                except PgreplError as e:
                    report(False, f'sync {s["name"]}: {e}')
    return EXIT_OK if not problems else EXIT_ERROR


def cmd_validate(a: Args, conn) -> int:
    names = a.words[1:]
    if not names:
        raise Usage("usage: pgrepl validate SYNC... | all [--onetimecopy]")
    if names == ["all"]:
        names = [s["name"] for s in catalog.list_syncs(conn)]
    for name in names:
        catalog.get_sync(conn, name)
    v = guard.validate(conn, names, onetimecopy="--onetimecopy" in a.flags)
    for line in v.lines:
        out(line)
    for line in v.errors:
        out(f"ERROR {line}")
    return EXIT_ERROR if v.errors else EXIT_OK


def cmd_purge(a: Args, conn) -> int:
    what = a.words[1] if len(a.words) > 1 else None
    if what == "delta" and len(a.words) == 3:
        for db, report in catalog.purge_delta(conn, a.words[2]):
            out(f"{db}: {report}")
    elif what == "runs" and len(a.words) == 3:
        moved, left = catalog.purge_runs(conn, a.words[2])
        out(f"Runs moved to the freezer: {moved}; rows left in the run table: {left}")
    elif what == "archive" and a.opt("--keep") is not None:
        dropped = catalog.purge_archive(conn, _int(a.opt("--keep"), "--keep"))
        for t in dropped:
            out(f"Dropped {t}")
        out(f"Freezer tables dropped: {len(dropped)}")
    elif what == "conflicts" and len(a.words) == 3:
        out(f"Conflicts purged: {swap.purge_conflicts(conn, a.words[2])}")
    else:
        raise Usage("usage: pgrepl purge delta INTERVAL | purge runs INTERVAL | purge archive --keep DAYS | "
                    "purge conflicts INTERVAL")
    return EXIT_OK


HELP = {
    "install": "pgrepl install\n  Creates (or upgrades) the control schema in the control database, creating the "
               "database if needed.\n  Running it again changes nothing and says so.",
    "show": "pgrepl show all | pgrepl show NAME... [--verbose] [--json]\n  Shows the runner's settings "
            "(--verbose explains each).",
    "set": "pgrepl set NAME=VALUE...\n  Changes settings; an unknown setting or a bad value is refused, and nothing "
           "is changed.",
    "add": "pgrepl add database DBNAME name=NAME [host=H] [port=P] [user=U] [pass=P] [sslmode=MODE] "
           "[sslrootcert=CA_FILE]\n"
           "  (pass= is written to the runner's libpq password file, never to the catalog; sslmode=verify-full with\n"
           "  sslrootcert= the cluster CA makes the runner check the server's certificate)\n"
           "pgrepl add all tables db=NAME [-T TABLE]... [-t TABLE]... [--herd=HERD] [standard_conflict=RULE] "
           "[--verbose]\n"
           "pgrepl add all sequences db=NAME [--herd=HERD]\n"
           "pgrepl add table NAME... db=NAME [herd=HERD] [standard_conflict=RULE]\n"
           "pgrepl add sequence NAME... db=NAME [herd=HERD]\n"
           "pgrepl add dbgroup NAME DB...\n"
           "pgrepl add sync NAME source=HERD targetdb=DB|targetgroup=GROUP type=pushdelta|fullcopy|swap\n"
           "                [checktime=INTERVAL] [onetimecopy=0|1|2] [makedelta=yes|no]\n"
           "  Names are identifiers: letters, digits, underscores (no hyphen). -T excludes, -t includes a table.\n"
           "  RULE (swap conflicts): source, target, latest, skip or abort. A pushdelta or swap sync needs a primary\n"
           "  key (or a unique index on NOT NULL columns) on every table: use fullcopy for the others, and for\n"
           "  partitioned tables. An attribute a command does not know is refused.\n"
           "  onetimecopy=1 copies every table to the targets on the next run, 2 only to empty target tables.\n"
           "  Adding a pushdelta or swap sync installs its capture triggers on the source at once.",
    "list": "pgrepl list dbs|dbgroups|tables|sequences|herds|syncs|conflicts [NAME...] [--verbose] [--json]",
    "activate": "pgrepl activate SYNC...\n  The running daemon starts a worker for the sync.",
    "deactivate": "pgrepl deactivate SYNC...\n  The sync's worker stops; changes go on being captured.",
    "remove": "pgrepl remove sync|herd|table|sequence|db|dbgroup NAME...\n  An active sync must be deactivated "
              "first. Removing a sync also removes its triggers and delta\n  stores from the databases where no "
              "other sync needs them.",
    "update": "pgrepl update sync NAME [source=HERD] [targetdb=DB|targetgroup=GROUP] [type=TYPE] [checktime=...] "
              "...\n  Changes a sync in place: deactivated, changed, reactivated; captured changes are kept.",
    "start": "pgrepl start\n  Starts the daemon in the background (removes the stop file first). Under systemd, "
             "use the unit (it runs `pgrepl run`).",
    "stop": "pgrepl stop\n  Creates the stop file and stops the daemon; nothing starts while the stop file exists.",
    "restart": "pgrepl restart\n  stop, then start.",
    "run": "pgrepl run [--check]\n  Runs the daemon in the foreground, logging to stderr (journald under "
           "systemd).\n  --check: checks the configuration (control database, member databases, capture) and exits.",
    "check": "pgrepl check\n  Same as `pgrepl run --check`.",
    "kick": "pgrepl kick SYNC... [--wait SECONDS]\n  Asks the daemon to run the syncs now. With --wait, waits for "
            "the runs: exit 0 when they\n  finished well, 3 when one failed, 4 when none finished in time.",
    "status": "pgrepl status [SYNC...] [--json]\n  A table of every sync (Name, Type, State, PID, Last good, Time, "
              "I/U/D, Last bad), or the\n  details of the syncs named. State and PID are those of the worker holding "
              "the sync's lease, on\n  any host; a second worker of a sync waits for the lease and is listed "
              "with its holder.",
    "validate": "pgrepl validate SYNC... | all [--onetimecopy]\n  Repairs the capture of pushdelta and swap syncs on "
                "their databases: missing or disabled triggers,\n  a table dropped and re-created (new capture), a "
                "missing delta store; says per table what it fixed.\n  Where changes may have been missed it says "
                "that an onetimecopy (or a compare) is needed;\n  --onetimecopy marks those syncs for onetimecopy=1 "
                "(their next run copies the tables whole).\n  Exit 0: nothing to fix or fixed; 1: something could "
                "not be fixed.",
    "purge": "pgrepl purge delta INTERVAL     captured keys applied by every target and older than INTERVAL\n"
             "pgrepl purge runs INTERVAL      finished runs older than INTERVAL move to daily freezer tables\n"
             "pgrepl purge archive --keep N   freezer tables older than N days are dropped\n"
             "pgrepl purge conflicts INTERVAL conflict journal entries older than INTERVAL",
    "help": "pgrepl help [COMMAND]",
}

SUMMARY = """pgrepl {version}: asynchronous trigger-based PostgreSQL replication (Bucardo's herds, syncs and kicks)

Usage: pgrepl [--control CONNINFO] COMMAND [ARGS] [--json] [--verbose]

Commands:
  install                    create the control schema
  show all | set NAME=VALUE  settings
  add ...                    databases, tables, sequences, dbgroups, herds, syncs
  list TYPE                  dbs, dbgroups, tables, sequences, herds, syncs, conflicts
  update sync NAME ...       change a sync in place
  activate | deactivate SYNC
  remove TYPE NAME
  start | stop | restart | run [--check] | check
  kick SYNC [--wait S]       run a sync now
  status [SYNC]              what every sync did last
  validate SYNC|all          repair lost capture (dropped/disabled triggers, re-created tables)
  purge delta|runs|archive|conflicts
  help COMMAND               details of a command

The control database is found from --control, else $PGREPL_CONTROL, else `control = ...` in
/etc/pgrepl/pgrepl.conf, else "dbname=pgrepl"."""


def cmd_help(a: Args) -> int:
    topic = a.words[1] if len(a.words) > 1 else None
    if topic is None:
        out(SUMMARY.format(version=__version__))
    elif topic in HELP:
        out(HELP[topic])
    else:
        raise Usage(f'no help for "{topic}": one of {", ".join(HELP)}')
    return EXIT_OK


def dispatch(a: Args) -> int:
    if "--version" in a.flags:
        out(f"pgrepl {__version__}")
        return EXIT_OK
    if not a.words or a.words[0] == "help" or {"--help", "-h"} & a.flags:
        if {"--help", "-h"} & a.flags and a.words and a.words[0] != "help":
            a.words = ["help", a.words[0]]
        return cmd_help(a)
    verb = a.words[0]
    conninfo = control_conninfo(a.opt("--control"))
    if verb == "install":
        return cmd_install(a, conninfo)
    if verb == "check" or (verb == "run" and "--check" in a.flags):
        return cmd_check(a, conninfo)
    if verb == "run":
        return worker.run_controller(conninfo)
    if verb == "worker":
        return worker.run_worker(conninfo, a.words[1])
    commands = {"show": cmd_show, "set": cmd_set, "add": cmd_add, "list": cmd_list, "remove": cmd_remove,
                "update": cmd_update, "kick": cmd_kick, "status": cmd_status, "purge": cmd_purge,
                "stop": cmd_stop, "validate": cmd_validate}
    if verb in ("list", "kick", "status", "purge", "stop", "validate", "show", "activate", "deactivate", "start",
                "restart"):   # take no NAME=VALUE; add, update, remove and set check theirs
        known_attributes(a, verb, ())
    with catalog.open_control(conninfo) as conn:
        if verb in ("activate", "deactivate"):
            return cmd_activate(a, conn, verb == "activate")
        if verb == "start":
            return cmd_start(a, conn, conninfo)
        if verb == "restart":
            cmd_stop(a, conn)
            return cmd_start(a, conn, conninfo)
        if verb in commands:
            return commands[verb](a, conn)
    raise Usage(f'unknown command "{verb}": see `pgrepl help`')


def main(argv: list[str] | None = None) -> int:
    try:
        return dispatch(parse(sys.argv[1:] if argv is None else argv))
    except Usage as e:
        print(f"pgrepl: {e}", file=sys.stderr)
        return EXIT_USAGE
    except PgreplError as e:
        print(f"pgrepl: {e}", file=sys.stderr)
        return EXIT_ERROR
    except psycopg.Error as e:
        print(f"pgrepl: database error: {str(e).strip()}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
