"""SQL text composed once per shape, not once per batch.

A pushdelta run sends the same few statements for every batch (the cut, the keys, the DELETE, each table's COPY), a
swap run a dozen per table (row locks, changes since the last run, the stage and the in-place write), and
composing them with psycopg.sql (identifiers quoted through libpq, pieces joined, encoded) cost more of the
worker's CPU than the rows they move (docs/benchmarks.md, 2026-11-30 profile). Each is built once per KEY, a
hashable value holding everything the text depends on (frozen Capture and TableInfo, column tuples, flags), and
kept as a string; psycopg caches the conversion of a string's placeholders itself.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import psycopg
from psycopg import sql

LIMIT = 4096   # texts kept per process: a dozen per table of a swap (lock, stage, write...); cleared whole past it
_texts: dict[tuple[Hashable, str], str] = {}


def text(conn: psycopg.Connection, key: Hashable, build: Callable[[], sql.Composable]) -> str:
    """BUILD()'s text on CONN, composed the first time KEY is asked for (per client encoding)."""
    k = (key, conn.info.encoding)
    found = _texts.get(k)
    if found is None:
        if len(_texts) >= LIMIT:
            _texts.clear()
        found = _texts[k] = build().as_string(conn)
    return found
