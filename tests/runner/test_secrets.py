"""Secrets: member passwords live in the runner's libpq password file (mode 0600), never in the catalog; an old
catalog's passwords are moved there by `pgrepl install`; nothing pgrepl prints, logs or mails shows a password."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import psycopg
from pgrepl import catalog, cli, passfile

SECRET = r"s3cret:with\odd chars"
WRONG = "wr0ng-secret-never-printed"
ROLE = "pgrepl_pw"


def password_role(cluster, role: str = ROLE, password: str = SECRET) -> None:
    """ROLE logs in to CLUSTER over TCP with PASSWORD only (scram-sha-256); the test clusters trust the others."""
    cluster.execute("postgres", f"DO $$ BEGIN CREATE ROLE {role} LOGIN SUPERUSER; "
                                "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    cluster.execute("postgres", psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
        psycopg.sql.Identifier(role), psycopg.sql.Literal(password)))
    hba = cluster.datadir / "pg_hba.conf"
    rule = f"host all {role} 127.0.0.1/32 scram-sha-256\n"
    if rule not in hba.read_text():
        hba.write_text(rule + hba.read_text())
        cluster.execute("postgres", "SELECT pg_reload_conf()")


def catalog_text(env, control: str | None = None) -> str:
    """Every row of every table of the control schema, as text."""
    with psycopg.connect(control or env.control, autocommit=True) as c:
        tables = [r[0] for r in c.execute("SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
                                          "WHERE schemaname IN ('pgrepl', 'pgrepl_freezer')")]
        return "\n".join(str(c.execute(f"SELECT t::text FROM {t} t").fetchall()) for t in tables)


def items_to_slave(env, password: str) -> None:
    """items on master (trusted postgres) replicated to slave, which the runner reaches as ROLE with PASSWORD."""
    for host in ("master", "slave"):
        env.x(host, "CREATE TABLE items (id int PRIMARY KEY, val text)")
    env.add_databases("master")
    _, text = env.cli("add", "database", "test1", "name=test1_slave", "host=127.0.0.1", f"port={env.c['slave'].port}",
                      f"user={ROLE}", f"pass={password}")
    assert f"its password in {os.environ['PGREPL_PASSFILE']}, not in the catalog" in text
    env.cli("add", "table", "items", "db=test1_master", "herd=h")
    env.cli("add", "sync", "itemsync", "source=h", "targetdb=test1_slave", "type=pushdelta")


def test_a_password_given_to_add_db_is_in_the_password_file_only(env):
    password_role(env.c["slave"])
    items_to_slave(env, SECRET)
    file = Path(os.environ["PGREPL_PASSFILE"])
    assert stat.S_IMODE(file.stat().st_mode) == 0o600 and file.stat().st_uid == os.geteuid()
    assert SECRET not in catalog_text(env)
    with catalog.open_control(env.control) as conn:
        assert passfile.get(catalog.get_db(conn, "test1_slave")) == SECRET
    assert "ok   database test1_slave reachable" in env.cli("check")[1]
    env.start()
    env.x("master", "INSERT INTO items SELECT g, 'x' FROM generate_series(1, 100) g")
    env.wait_same("master", "slave", "items")
    for args in (["list", "dbs"], ["list", "dbs", "--verbose"], ["list", "dbs", "--json"], ["status"],
                 ["status", "itemsync"], ["status", "--json"]):
        assert SECRET not in env.cli(*args)[1], args
    env.stop()
    env.cli("deactivate", "itemsync")
    env.cli("remove", "sync", "itemsync")
    env.cli("remove", "db", "test1_slave")
    assert "pgrepl_pw" not in file.read_text()


def test_a_wrong_password_is_printed_nowhere(env, mail_sink):
    smtp_port, received = mail_sink
    password_role(env.c["slave"])
    items_to_slave(env, WRONG)
    env.cli("set", "default_email_to=dba@example.test", "default_email_host=127.0.0.1",
            f"default_email_port={smtp_port}")
    env.start()
    env.x("master", "INSERT INTO items VALUES (1, 'x')")
    env.wait_for(lambda: received, what="an alert email")
    env.wait_for(lambda: "password authentication failed" in env.cli("status", "itemsync")[1],
                 what="the failed login in status")
    outputs = [env.cli(*args, expect=None)[1] for args in (
        ["status"], ["status", "itemsync"], ["status", "--json"], ["list", "dbs", "--json"], ["check"],
        ["kick", "itemsync", "--wait", "10"])]
    assert "password authentication failed" in outputs[-2]      # check says why, without the password
    for text in [*outputs, *received, env.daemon_log(), catalog_text(env)]:
        assert WRONG not in text


def test_install_moves_the_passwords_of_an_old_catalog_out(env):
    password_role(env.c["slave"])
    env.c["master"].createdb("pgrepl_old")
    old = env.c["master"].dsn("pgrepl_old")
    with psycopg.connect(old, autocommit=True) as c:
        c.execute(catalog.MIGRATIONS[1])
        c.execute("INSERT INTO pgrepl.schema_version (version) VALUES (1)")
        c.execute("INSERT INTO pgrepl.db (name, dbname, host, port, username, password) VALUES "
                  "('test1_slave', 'test1', '127.0.0.1', %s, %s, %s), ('test1_master', 'test1', '127.0.0.1', %s, "
                  "'postgres', NULL)", (env.c["slave"].port, ROLE, SECRET, env.c["master"].port))
    _, text = env.cli("--control", old, "install")
    assert (f"Moved the passwords of 1 database(s) (test1_slave) out of the catalog into the password file "
            f"{os.environ['PGREPL_PASSFILE']}") in text
    assert SECRET not in catalog_text(env, old)
    with psycopg.connect(old) as c:
        assert c.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'pgrepl' "
                         "AND column_name = 'password'").fetchone() == (0,)
    check = env.cli("--control", old, "check")[1]
    assert "ok   database test1_slave reachable" in check and "ok   database test1_master reachable" in check
    assert "Moved" not in env.cli("--control", old, "install")[1]
    assert cli.main(["--control", old, "list", "dbs"]) == 0


def test_the_log_of_pgrepl_start_is_the_runners_only(env):
    env.x("master", "CREATE TABLE items (id int PRIMARY KEY)")
    env.cli("start")
    try:
        log = env.piddir / "pgrepl.log"
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
    finally:
        env.cli("stop")


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A CA (certificate, key) in DIRECTORY, made with the openssl command."""
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "2", "-subj", f"/CN={name}"], check=True, capture_output=True)
    return crt, key


def serve_tls(cluster, ca: tuple[Path, Path], directory: Path) -> None:
    """CLUSTER serves TLS with a certificate for 127.0.0.1 signed by CA."""
    key, csr, crt, ext = (cluster.datadir / "server.key", directory / "server.csr", cluster.datadir / "server.crt",
                          directory / "san.ext")
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
                    "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
                    "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext)], check=True,
                   capture_output=True)
    if os.geteuid() == 0:
        for f in (key, crt):
            shutil.chown(f, "postgres", "postgres")
    key.chmod(0o600)
    cluster.execute("postgres", "ALTER SYSTEM SET ssl = on")
    cluster.execute("postgres", "SELECT pg_reload_conf()")


def test_verify_full_with_the_cluster_ca_checks_the_server(env, tmp_path):
    ca, other_ca = make_ca(tmp_path, "cluster-ca"), make_ca(tmp_path, "another-ca")
    serve_tls(env.c["slave"], ca, tmp_path)
    try:
        env.x("master", "CREATE TABLE items (id int PRIMARY KEY, val text)")
        env.x("slave", "CREATE TABLE items (id int PRIMARY KEY, val text)")
        env.add_databases("master")
        port = env.c["slave"].port
        env.cli("add", "database", "test1", "name=test1_slave", "host=127.0.0.1", f"port={port}", "user=postgres",
                "sslmode=verify-full", f"sslrootcert={ca[0]}")
        env.cli("add", "database", "test1", "name=test1_fake", "host=127.0.0.1", f"port={port}", "user=postgres",
                "sslmode=verify-full", f"sslrootcert={other_ca[0]}")
        _, check = env.cli("check", expect=1)
        assert "ok   database test1_slave reachable" in check
        assert "FAIL database test1_fake" in check and "certificate verify failed" in check
        env.cli("add", "table", "items", "db=test1_master", "herd=h")
        env.cli("add", "sync", "itemsync", "source=h", "targetdb=test1_slave", "type=pushdelta")
        env.start()
        env.x("master", "INSERT INTO items VALUES (1, 'x')")
        env.wait_same("master", "slave", "items")
        assert env.q("slave", "SELECT bool_and(s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                              "WHERE a.application_name LIKE 'pgrepl%%'") == [(True,)]
    finally:
        env.stop()
        env.c["slave"].execute("postgres", "ALTER SYSTEM RESET ssl")
        env.c["slave"].execute("postgres", "SELECT pg_reload_conf()")
    assert env.cli("add", "database", "test1", "name=bad", "sslmode=verify-most", expect=1)[1].count("Invalid sslmode")
