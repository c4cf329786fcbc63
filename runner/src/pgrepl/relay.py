"""The COPY relay: a source's COPY TO STDOUT streamed into a target's COPY FROM STDIN, in chunks, never held in
memory. Full copies and the rows of every applied batch go through it, so its loop is the pace of a large copy."""

from __future__ import annotations

import ctypes
import functools
import select
from collections.abc import Callable, Iterator

import psycopg
from psycopg import pq, sql

from .capture import TableInfo

COPY_CHUNK = 128 * 1024   # bytes per write to the target: psycopg's largest single write


@functools.cache
def _ctypes_libpq() -> ctypes.CDLL | None:
    """The libpq that psycopg's pure-Python implementation loaded, with function objects of our own (without
    argtypes: cheaper calls); None with psycopg's C implementation, whose calls are cheap already. Its calls keep
    the GIL (PyDLL): the ones we make never block, and releasing and taking it back twice a row cost the read
    loop 15 % of its CPU (docs/benchmarks.md, session 14)."""
    if pq.__impl__ != "python":
        return None
    from psycopg.pq import _pq_ctypes
    libname = getattr(_pq_ctypes, "libname", None)
    return ctypes.PyDLL(libname) if libname else None


def _copy_chunks(pgconn: pq.abc.PGconn, trailer: int = 0) -> Iterator[tuple[bytes, int]]:
    """The data of the COPY TO under way on PGCONN in chunks of about COPY_CHUNK bytes, each with its count of rows
    (the server sends a row a message; TRAILER: how many of the last messages are not rows). libpq hands out one
    message per PQgetCopyData call, and psycopg's pure-Python libpq wrapper (Debian 12's python3-psycopg) costs
    more per call than the row itself: call libpq through ctypes then, on the very library psycopg loaded. The
    loop sets the pace of a large copy (about 0.6 us a row), so it makes no call, tuple or bytes object per row
    beyond libpq's. A chunk is sent before the message that would overflow it: the last one ends the data."""
    chunk, rows, libpq = bytearray(), 0, _ctypes_libpq()
    if libpq is None:
        get = pgconn.get_copy_data
        while True:
            n, row = get(1)
            if n > 0:
                if len(chunk) >= COPY_CHUNK:
                    yield bytes(chunk), rows
                    chunk.clear()
                    rows = 0
                chunk += row
                rows += 1
            elif n == 0:
                _wait_readable(pgconn)
            else:
                break
    else:
        get, free, c_char = libpq.PQgetCopyData, libpq.PQfreemem, ctypes.c_char
        conn_ptr, row = ctypes.c_void_p(pgconn.pgconn_ptr), ctypes.c_void_p()
        row_ref = ctypes.byref(row)
        while True:
            n = get(conn_ptr, row_ref, 1)
            if n > 0:
                if len(chunk) >= COPY_CHUNK:
                    yield bytes(chunk), rows
                    chunk.clear()
                    rows = 0
                chunk += (c_char * n).from_address(row.value)   # copied here, before libpq's buffer is freed
                free(row)
                rows += 1
            elif n == 0:
                _wait_readable(pgconn)
            else:
                break
    if n < -1:
        raise psycopg.OperationalError(f"COPY from the source failed: {pgconn.error_message.decode()}")
    if chunk:
        yield bytes(chunk), rows - trailer


def _wait_readable(pgconn: pq.abc.PGconn) -> None:
    poll = select.poll()
    poll.register(pgconn.socket, select.POLLIN)
    poll.poll()
    pgconn.consume_input()


def _end_copy_out(conn: psycopg.Connection) -> None:
    """Collects the final results of a COPY TO read to its end; raises the error the server sent, if any."""
    pgconn, error = conn.pgconn, None
    while True:
        while pgconn.is_busy():
            _wait_readable(pgconn)
        res = pgconn.get_result()
        if res is None:
            break
        if res.status != pq.ExecStatus.COMMAND_OK and error is None:
            error = res
    if error is not None:
        raise psycopg.errors.error_from_result(error, encoding=conn.info.encoding)


def stream_copy(src: psycopg.Connection, tgt: psycopg.Connection, copy_out: sql.Composable | str,
                copy_in: sql.Composable | str, params=None, on_rows: Callable[[int], None] | None = None,
                binary: bool = False) -> int:
    """COPY ... TO STDOUT on the source piped into COPY ... FROM STDIN on the target. The rows are read straight
    from libpq and written in chunks of COPY_CHUNK bytes: psycopg's copy iterator and writer cost several
    microseconds per row, which made a copy three times slower than psql's. on_rows(n) hears of each chunk's rows.
    BINARY: the statements are in binary format (see copy_format), whose last message is a trailer, not a row."""
    with src.cursor() as scur, tgt.cursor() as tcur:
        with scur.copy(copy_out, params), tcur.copy(copy_in) as into:
            for chunk, rows in _copy_chunks(src.pgconn, trailer=1 if binary else 0):
                into.write(chunk)
                if on_rows is not None:
                    on_rows(rows)
            _end_copy_out(src)
        return tcur.rowcount


# Types whose binary form means the same in every cluster of a major version: built-in ones (their OIDs are fixed;
# a user type's OID differs between clusters, and binary arrays and records carry their element types' OIDs) with
# binary input and output functions, but for the reg* types (regclass...): their binary form is an OID of the
# source's catalog, their text form a name the target resolves. The columns' types, in order, where all are such.
_BINARY_TYPES = """
SELECT CASE WHEN bool_and(t.oid < 16384 AND t.typsend::oid <> 0 AND t.typreceive::oid <> 0 AND t.typname !~ '^_?reg')
                 AND count(t.oid) = %(n)s
            THEN array_agg(t.oid::int ORDER BY c.n) END
  FROM unnest(%(cols)s::text[]) WITH ORDINALITY AS c(name, n)
  LEFT JOIN pg_attribute a ON a.attrelid = to_regclass(%(table)s) AND a.attname = c.name AND NOT a.attisdropped
  LEFT JOIN pg_type t ON t.oid = a.atttypid"""


def copy_format(src: psycopg.Connection, tgt: psycopg.Connection, table: TableInfo, cols: list[str]) -> str:
    """'binary' when TABLE's COLS can be copied in binary form: both servers of one major version, and the same
    built-in types on both sides; else 'text'. Binary spares both servers the text conversion of every value (a
    tenth of a large copy's time where they share their cores with the runner), but unlike text it would read an
    int4 as a float4 without a word: so this runs in the transactions that copy, once the target's table is locked
    (its DELETE or TRUNCATE), and locks the source's as its COPY will, so that neither side's types can change."""
    if src.info.server_version // 10000 != tgt.info.server_version // 10000:
        return "text"
    src.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(table.ident))
    params = {"n": len(cols), "cols": cols, "table": table.regclass(src)}
    types = [conn.execute(_BINARY_TYPES, params).fetchone()[0] for conn in (src, tgt)]
    return "binary" if types[0] is not None and types[0] == types[1] else "text"
