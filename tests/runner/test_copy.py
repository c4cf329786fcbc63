"""The COPY relay (relay.py): a full copy moves every value exactly, in binary form where both sides have the same
built-in types, in text form otherwise (user types, differing column types); and between databases of different
encodings, every character (db.CLIENT_ENCODING)."""

from __future__ import annotations

import psycopg
import pytest
from pgrepl import relay
from pgrepl.capture import TableInfo

ITEMS = "CREATE TABLE items (id int PRIMARY KEY, val text)"

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


def declare_database(env, host: str, dbname: str, name: str, encoding: str) -> None:
    """A new database DBNAME in ENCODING on HOST with ITEMS in it, declared to the catalog as NAME."""
    with psycopg.connect(env.c[host].conninfo, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {dbname} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    env.c[host].execute(dbname, ITEMS)
    env.cli("add", "database", dbname, f"name={name}", "host=127.0.0.1", f"port={env.c[host].port}", "user=postgres")


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


def test_a_target_database_in_another_encoding_gets_the_same_characters(env):
    """The relay moves COPY bytes as they are: a source in UTF8 and a target database in LATIN1 must speak one
    client encoding, or the target stores each accented letter as two wrong ones (silently: every byte is a
    LATIN1 character). Both the applied batches (pushdelta) and a full copy."""
    words = ["café", "Größe", "naïve", "plain"]
    declare_database(env, "slave", "test1_latin1", "latin1", "LATIN1")
    env.c["slave"].execute("test1_latin1", "CREATE TABLE copied (id int PRIMARY KEY, val text)")
    env.x("master", ITEMS)
    env.x("master", "CREATE TABLE copied (id int PRIMARY KEY, val text)")
    env.x("master", "INSERT INTO copied SELECT i, w FROM unnest(%s::text[]) WITH ORDINALITY AS u(w, i)", (words,))
    env.add_databases("master")
    env.cli("add", "table", "items", "db=test1_master", "herd=delta")
    env.cli("add", "table", "copied", "db=test1_master", "herd=whole")
    env.cli("add", "sync", "deltasync", "source=delta", "targetdb=latin1", "type=pushdelta")
    env.cli("add", "sync", "copysync", "source=whole", "targetdb=latin1", "type=fullcopy")
    env.start()
    env.x("master", "INSERT INTO items SELECT i, w FROM unnest(%s::text[]) WITH ORDINALITY AS u(w, i)", (words,))
    env.cli("kick", "copysync", "--wait", "60")
    env.wait_for(lambda: len(env.c["slave"].query("test1_latin1", "SELECT 1 FROM items")) == len(words),
                 what="the items on the LATIN1 target")
    for table in ("items", "copied"):
        got = [r[0] for r in env.c["slave"].query("test1_latin1", f"SELECT val FROM {table} ORDER BY id")]
        assert got == words, table
    # and compare, which hashes the rows on each side, sees them equal
    for sync in ("deltasync", "copysync"):
        code, text = env.cli("compare", sync, expect=None)
        assert code == 0, text
    # and still sees a letter that differs
    env.stop()
    env.c["slave"].execute("test1_latin1", "UPDATE items SET val = 'cafe' WHERE id = 1")
    code, text = env.cli("compare", "deltasync", expect=None)
    assert code == 5 and "1 difference" in text, text


def test_sql_ascii_databases_replicate_utf8_and_refuse_other_bytes(env):
    """SQL_ASCII databases declare no encoding: their text goes out as the bytes it is, and comes in only if it is
    UTF8 (the runner's sessions' encoding). A LATIN1 "é" (0xe9) fails the run, naming the bytes, and nothing
    wrong is stored."""
    for host in ("master", "slave"):
        declare_database(env, host, "test1_ascii", f"ascii_{host}", "SQL_ASCII")
    env.cli("add", "table", "items", "db=ascii_master", "herd=delta")
    env.cli("add", "sync", "deltasync", "source=delta", "targetdb=ascii_slave", "type=pushdelta")
    env.start()
    utf8_e = r"E'caf\xc3\xa9'"
    env.c["master"].execute("test1_ascii", f"INSERT INTO items VALUES (1, {utf8_e})")
    env.wait_for(lambda: env.c["slave"].query("test1_ascii", f"SELECT count(*) FROM items WHERE val = {utf8_e}")
                 == [(1,)], what="the UTF8 bytes, as they are, on the target")
    env.c["master"].execute("test1_ascii", r"INSERT INTO items VALUES (2, E'caf\xe9')")
    env.wait_for(lambda: "invalid byte sequence" in env.cli("status", "deltasync")[1], what="the run failing")
    assert env.c["slave"].query("test1_ascii", "SELECT id FROM items") == [(1,)]
