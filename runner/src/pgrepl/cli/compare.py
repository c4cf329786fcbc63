"""`pgrepl compare`: is each target of a sync equal to its source, and what differs (compare_sync.py)."""

from __future__ import annotations

import sys

from .. import catalog, compare_sync
from .args import EXIT_OK, Args, Usage, _duration, emit_json, out

EXIT_DIFFERENT = 5   # differences found (repaired or not: the output says which)
SHOWN = 10           # keys listed per kind and table in the text output (--json lists them all)


def _draw(p: compare_sync.Progress) -> None:
    """One line on the terminal, redrawn in place: tables, blocks, rows/s, ETA."""
    eta = f", ETA {_duration(p.eta)}" if p.eta is not None else ""
    sys.stderr.write(f"\r\033[Ktables {p.tables_done}/{p.tables}  blocks {p.blocks}  rows {p.rows} "
                     f"({p.rate:,.0f}/s{eta})")
    sys.stderr.flush()


def _keys(keys: list[dict]) -> str:
    shown = ", ".join(str(k["row"]) + (f" x{k['count']}" if k["count"] > 1 else "") if "row" in k else
                      ", ".join(f"{c}={v}" for c, v in k.items()) for k in keys[:SHOWN])
    return shown + (f", ... ({len(keys) - SHOWN} more)" if len(keys) > SHOWN else "")


def _print(result: dict, said: list[str], repair: bool, dry_run: bool) -> None:
    for t in result["tables"]:
        where = f'{result["sync"]} {t["table"]} on {t["target"]}: {t["rows"]} rows, {t["blocks"]} blocks'
        flying = f', {t["in_flight"]} key(s) in flight (changes not applied yet)' if t["in_flight"] else ""
        if t["equal"]:
            out(f"{where}: equal{flying}")
            continue
        c = t["counts"]
        out(f"{where}: DIFFERENT: {c['missing']} missing on target, {c['extra']} extra on target, "
            f"{c['different']} different{flying}")
        for kind in ("missing", "extra", "different"):
            if t[kind]:
                out(f"  {kind}: {_keys(t[kind])}")
    for line in said:
        out(line)
    state = ("equal" if result["equal"] else
             f'{result["differences"]} difference(s), ' +
             ("repaired" if result["repaired"] else "not repaired (dry run)" if dry_run and repair else
              "not repaired"))
    out(f'Sync {result["sync"]}: {result["rows"]} rows compared: {state}')


def cmd_compare(a: Args, conn) -> int:
    repair, dry_run, winner = "--repair" in a.flags, "--dry-run" in a.flags, a.opt("--winner")
    if dry_run and not repair:
        raise Usage("--dry-run goes with --repair")
    if "--all" in a.flags:
        if len(a.words) > 1:
            raise Usage("usage: pgrepl compare --all (no sync or table names)")
        jobs = [(s["name"], []) for s in catalog.list_syncs(conn)]
    elif len(a.words) >= 2:
        jobs = [(a.words[1], a.words[2:])]
    else:
        raise Usage("usage: pgrepl compare SYNC [TABLE...] | --all [--json] [--repair [--dry-run] [--winner DB]]")
    results, code = [], EXIT_OK
    for name, tables in jobs:
        progress = compare_sync.Progress(notify=_draw) if sys.stderr.isatty() and not a.json else None
        try:
            result, said = compare_sync.run(conn, name, tables, repair, dry_run, winner, progress)
        finally:
            if progress is not None:
                sys.stderr.write("\r\033[K")
        results.append(result)
        if not a.json:
            _print(result, said, repair, dry_run)
        if not result["equal"]:
            code = EXIT_DIFFERENT
    if a.json:
        emit_json({"equal": all(r["equal"] for r in results), "rows": sum(r["rows"] for r in results),
                   "differences": sum(r["differences"] for r in results),
                   "repaired": any(r["repaired"] for r in results), "syncs": results})
    return code
