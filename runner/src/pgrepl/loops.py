"""Replication loops, refused before they run.

Two databases that each send their changes of a table to the other (A -> B and B -> A) overwrite each other with no
conflict rule; with makedelta a change can come back and circle forever. A swap sync is the two-way replication
that has a conflict rule, so its own pair of directions is not a loop; anything else that closes a circle is.
A change travels on past a database only when the sync that brought it there has makedelta (that database then
captures what it receives), so A -> B (makedelta), B -> C, C -> A is a loop while A -> B, B -> C, C -> A is not.
"""

from __future__ import annotations

from collections import defaultdict

Edge = tuple[str, str, dict]   # from database, to database, the sync


def edges(sync: dict) -> list[Edge]:
    """The directions in which SYNC moves changes (pushdelta and swap; a fullcopy keeps no changes to send on)."""
    if sync["type"] not in ("pushdelta", "swap"):
        return []
    out = [(sync["source"], t, sync) for t in sync["targets"]]
    return out + [(b, a, s) for a, b, s in out] if sync["type"] == "swap" else out


def find_loop(candidate: dict, others: list[dict], tables_of) -> str | None:
    """A description of a loop that CANDIDATE would close with the OTHER syncs, or None. TABLES_OF(sync) gives
    the qualified names of a sync's tables."""
    by_table: dict[str, list[Edge]] = defaultdict(list)
    for s in [candidate, *others]:
        for table in tables_of(s):
            by_table[table].extend(edges(s))
    for table, table_edges in sorted(by_table.items()):
        paths: dict[tuple[str, str], list[list[Edge]]] = defaultdict(list)
        for start in {e[0] for e in table_edges}:
            for path in _paths(start, table_edges):
                paths[start, path[-1][1]].append(path)
        for (a, b), there in sorted(paths.items(), key=lambda kv: kv[0]):
            for p in there:
                for q in paths.get((b, a), []):
                    syncs = {e[2]["name"]: e[2] for e in p + q}
                    if candidate["name"] not in syncs:
                        continue
                    if len(syncs) == 1 and next(iter(syncs.values()))["type"] == "swap":
                        continue   # a swap's own two directions
                    hops = ", ".join(f'{x} -> {y} (sync {s["name"]})' for x, y, s in p + q)
                    return f"replication loop on table {table}: {hops}"
    return None


def _paths(start: str, table_edges: list[Edge]) -> list[list[Edge]]:
    """Every path a change made in START can travel: simple, and past a database only by makedelta."""
    found, stack = [], [[e] for e in table_edges if e[0] == start]
    while stack:
        path = stack.pop()
        found.append(path)
        here, seen = path[-1], {start, *(e[1] for e in path)}
        if here[2]["makedelta"]:
            stack.extend(path + [e] for e in table_edges if e[0] == here[1] and e[1] not in seen)
    return found
