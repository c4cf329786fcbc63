"""Verbs that report: list and status, and their formatting."""

from __future__ import annotations

import time

from .. import catalog, lease, observe, swap_rows, worker
from .args import EXIT_OK, Args, Usage, _ago, _duration, _kind, _no_entries, emit_json, out
from .progress import blocked_lines, blocked_text, lag_text, owed, progress_lines, progress_text


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
        rows = swap_rows.list_conflicts(conn, names)
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
    sources = observe.Sources(conn)   # backlog and lag come from the sources: the numbers the metrics export
    try:
        figures = observe.figures(conn, sources, [r["name"] for r in rows])
    finally:
        sources.close()
    for r in rows:
        r["figures"] = figures["syncs"].get(r["name"])
    if a.json:
        emit_json({"mcp_pid": mcp, "days_back": int(settings["days_back"]), "syncs": rows,
                   "sources": figures["sources"], "unreachable": figures["errors"]})
        return EXIT_OK
    info = conn.info
    header = f"Days back: {settings['days_back']} User: {info.user} Database: {info.dbname}"
    if len(a.words) > 1:
        out(header)
        for r in rows:
            _status_detail(r, settings)
        _unanswered(figures["errors"])
        return EXIT_OK
    out(header + f" PID of pgrepl MCP: {mcp or 'not running'}")
    table = [("Name", "Type", "State", "PID", "Backlog", "Lag", "Last good", "Time", "I/U/D", "Last bad", "Time")]
    for r in rows:
        g, b = r["last_good"], r["last_bad"]
        table.append((r["name"], r["type"][0].upper(), r["current_state"], str(r["pid"] or "?"), *owed(r["figures"]),
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
        for line in progress_lines(r["name"], r["figures"]) + blocked_lines(r["name"], r["figures"]):
            out(line)
    _unanswered(figures["errors"])
    return EXIT_OK


def _unanswered(errors: dict[str, str]) -> None:
    for db, message in errors.items():
        out(f"Database {db} cannot be reached (what the syncs owe there, and their lock waits, unknown): {message}")


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
        *[("Blocked", blocked_text(b)) for b in (r["figures"] or {}).get("blocked", [])],
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
    for tgt, t in (r["figures"] or {}).get("targets", {}).items():
        if t["backlog"] is not None:
            lines.append((f"Owed to {tgt}", f'backlog {t["backlog"]} rows, lag {lag_text(t["lag"])}, last applied '
                          f'change {lag_text(t["applied_age"])} old'))
        if t["progress"]:
            p = t["progress"]
            lines.append((f"Progress to {tgt}", f'{p["kind"]} {progress_text(p)}'
                          + ("" if p["running"] else " (finished)")))
    if r["type"] == "fullcopy":
        lines += [("Post-copy analyze", settings["fullcopy_analyze"]),
                  ("Delete method", settings["fullcopy_delete_method"])]
    out("=" * 70)
    for label, value in lines:
        out(f"{label + ':':<22}{value}")
