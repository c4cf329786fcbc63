"""The COPY relay (relay.py): a full copy moves every value exactly, in binary form where both sides have the same
built-in types, in text form otherwise (user types, differing column types)."""

from __future__ import annotations

import psycopg
import pytest
from pgrepl import relay
from pgrepl.capture import TableInfo

# Built-in types, their edge values among them. 5,000 rows make some forty COPY chunks.
KINDS = """CREATE TABLE kinds (
    id int PRIMARY KEY, i2 smallint, i8 bigint, n numeric, r real, d double precision, m money, b boolean,
    t text, vc varchar(20), c char(5), by bytea, ts timestamp, tz timestamptz, dt date, tm time, tt timetz,
    iv interval, u uuid, j json, jb jsonb, x xml, ip inet, cd cidr, mac macaddr, bits bit varying(16),
    tv tsvector, tq tsquery, p point, bx box, rg int4range, mr int4multirange, ia int[], ta text[], o oid,
    ch "char", nm name, lsn pg_lsn)"""
KIND_ROWS = r"""
INSERT INTO kinds VALUES
 (1, -32768, 9223372036854775807, 'NaN', 'Infinity', '-0', '-92233720368547758.08', true,
  E'tab\there\nnew line \\ back\\slash \u2713 \\N', 'v', 'ab', '\x00ff5c0a', 'infinity',
  '2024-02-29 23:59:59.999999+05:30', '-infinity', '24:00', '00:00+14', '-178000000 years 1 microsecond',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"k": [1, 2.50, "\u00e9"] }', '{"k": [1, 2.50, null]}',
  '<a b="c">d &amp; e</a>', '2001:db8::1/64', '10.11.12.0/24', '08:00:2b:01:02:03', B'1010', 'a fat:1A cat',
  'fat & !rat', '(1.5,-2)', '((0,0),(1,1))', '[1,10)', '{[1,3), [5,8)}', '{1,NULL,3}', '{"a,b","c\"d",NULL,""}',
  4294967295, 'x', 'a name', '16/B374D848'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO kinds (id, i8, n, t, by, tz, iv, jb, ia, ta)
SELECT g, g::bigint * 1000003, g / 7.0, repeat(md5(g::text), 4), decode(md5(g::text), 'hex'),
       '2026-01-01'::timestamptz + g * interval '1 minute', g * interval '1 second', jsonb_build_object('g', g),
       ARRAY[g, -g], ARRAY[g::text, NULL]
  FROM generate_series(3, 5000) g"""

# User types (an enum, a domain, a composite, an array of the enum): their OIDs differ from cluster to cluster.
# A regclass is built in, but its binary form is the source's OID of the table it names.
USER_TYPES = """CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy'); CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TYPE pair AS (a int, b text)"""
USER_ROWS = """INSERT INTO feelings SELECT g, (ARRAY['sad', 'ok', 'happy'])[g % 3 + 1]::mood, g, ROW(g, 'p' || g)::pair,
ARRAY['ok', 'happy']::mood[], g, 'feelings' FROM generate_series(1, 3000) g"""


def rows(env, host: str, table: str) -> list[str]:
    return [r[0] for r in env.q(host, f"SELECT k::text FROM {table} k ORDER BY id")]


def copy_format(env, table: str, cols: list[str]) -> str:
    with psycopg.connect(env.c["master"].dsn("test1")) as src, psycopg.connect(env.c["slave"].dsn("test1")) as tgt:
        return relay.copy_format(src, tgt, TableInfo("public", table), cols)


def kick_fullcopy(env, table: str) -> str:
    env.add_databases("master", "slave")
    env.cli("add", "table", table, "db=test1_master", "herd=h")
    env.cli("add", "sync", "copysync", "source=h", "targetdb=test1_slave", "type=fullcopy")
    env.start()
    return env.cli("kick", "copysync", "--wait", "60")[1]


@pytest.mark.parametrize("delete_method", ["delete", "truncate"])
def test_fullcopy_of_built_in_types_is_binary_and_exact(env, delete_method):
    for host in ("master", "slave"):
        env.x(host, KINDS)
    env.x("master", KIND_ROWS)
    env.x("slave", "INSERT INTO kinds (id, t) SELECT g, 'stale' FROM generate_series(1, 10) g")
    cols = [r[0] for r in env.q("master", "SELECT attname FROM pg_attribute WHERE attrelid = 'kinds'::regclass "
                                          "AND attnum > 0 ORDER BY attnum")]
    assert copy_format(env, "kinds", cols) == "binary"
    env.cli("set", f"fullcopy_delete_method={delete_method}")
    out = kick_fullcopy(env, "kinds")
    assert "I/U/D 5000/0/10" in out, out
    assert rows(env, "slave", "kinds") == rows(env, "master", "kinds")


def test_fullcopy_of_user_types_or_differing_column_types_is_text_and_exact(env):
    for host in ("master", "slave"):
        env.x(host, USER_TYPES)
    # the target's n is bigint where the source's is int: binary int4 is not an int8, the text form is both
    env.x("master", "CREATE TABLE feelings (id int PRIMARY KEY, m mood, p posint, pr pair, ms mood[], n int, "
                    "rc regclass)")
    env.x("slave", "CREATE TABLE feelings (id int PRIMARY KEY, m mood, p posint, pr pair, ms mood[], n bigint, "
                   "rc regclass)")
    assert env.q("master", "SELECT 'feelings'::regclass::oid") != env.q("slave", "SELECT 'feelings'::regclass::oid")
    env.x("master", USER_ROWS)
    assert copy_format(env, "feelings", ["id", "m", "p", "pr", "ms", "n", "rc"]) == "text"
    for col in ("m", "p", "pr", "ms", "n", "rc"):
        assert copy_format(env, "feelings", ["id", col]) == "text", col
    assert copy_format(env, "feelings", ["id"]) == "binary"
    out = kick_fullcopy(env, "feelings")
    assert "I/U/D 3000/0/0" in out, out
    assert rows(env, "slave", "feelings") == rows(env, "master", "feelings")


@pytest.mark.parametrize("reader", ["ctypes", "psycopg"])
def test_the_relay_moves_and_counts_every_row_either_way(env, monkeypatch, reader):
    """The relay reads libpq through ctypes under psycopg's pure-Python implementation (Debian 12's), through
    psycopg's own get_copy_data under its C one: the same rows either way, and the progress it reports counts
    each row once (a binary COPY's trailer is not a row)."""
    from pgrepl import apply
    if reader == "psycopg":
        monkeypatch.setattr(relay, "_ctypes_libpq", lambda: None)
    for host in ("master", "slave"):
        env.x(host, KINDS)
    env.x("master", KIND_ROWS)
    heard: list[int] = []
    table = TableInfo("public", "kinds")
    with psycopg.connect(env.c["master"].dsn("test1"), autocommit=True) as src, \
         psycopg.connect(env.c["slave"].dsn("test1"), autocommit=True) as tgt:
        counts = apply.full_copy(src, tgt, [table], on_rows=heard.append)[0]
    assert (counts.inserts, sum(heard), heard[-1]) == (5000, 5000, 0)
    assert len(heard) > 10   # chunk by chunk, then 0 at the end of the table
    assert rows(env, "slave", "kinds") == rows(env, "master", "kinds")
