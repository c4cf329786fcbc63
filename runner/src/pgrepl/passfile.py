"""Member passwords live in a libpq password file owned by the runner's user (mode 0600), never in the catalog.

The runner hands the file to libpq (the `passfile` connection parameter), which picks the line matching each
connection's host, port, database and user: the password never passes through pgrepl's own memory, output or
errors. Which file: $PGREPL_PASSFILE, else `passfile = ...` in /etc/pgrepl/pgrepl.conf, else libpq's own
default ($PGPASSFILE, else ~/.pgpass): see db.passfile_path. Lines pgrepl did not write are kept as they are.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .db import passfile_path
from .errors import PgreplError

_FIELD_SEP = re.compile(r"(?<!\\)((?:\\\\)*):")


def path() -> Path:
    return passfile_path()


def key(db: dict) -> tuple[str, str, str, str]:
    """The fields libpq matches a connection against, for a catalog database row. No host means the local
    socket, which libpq looks up as `localhost`; no user means any (libpq's default user is the OS user)."""
    return (db.get("host") or "localhost", str(db.get("port") or 5432), db["dbname"], db.get("username") or "*")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _split(line: str) -> list[str] | None:
    """The five fields of a password file line, or None for a comment, a blank or a malformed line."""
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    fields, start = [], 0
    for m in _FIELD_SEP.finditer(line):
        fields.append(line[start:m.end() - 1])
        start = m.end()
        if len(fields) == 4:
            break
    fields.append(line[start:])
    return [_unescape(f) for f in fields] if len(fields) == 5 else None


def _lines(file: Path) -> list[str]:
    try:
        return file.read_text().splitlines() if file.exists() else []
    except OSError as e:
        raise PgreplError(f"cannot read the password file {file}: {e.strerror}") from e


def get(db: dict, file: Path | None = None) -> str | None:
    """The password the file holds for exactly this database's host, port, dbname and user."""
    for line in _lines(file or path()):
        fields = _split(line)
        if fields and tuple(fields[:4]) == key(db):
            return fields[4]
    return None


def put(db: dict, password: str | None, file: Path | None = None) -> bool:
    """Makes the file hold PASSWORD for this database (None: no line for it), in the place of the line it had.
    Returns True when the file changed."""
    file = file or path()
    before = _lines(file)
    after, done = [], password is None
    for line in before:
        fields = _split(line)
        if fields and tuple(fields[:4]) == key(db):
            if not done:
                after.append(":".join(_escape(f) for f in (*key(db), password)))
                done = True
        else:
            after.append(line)
    if not done:
        after.append(":".join(_escape(f) for f in (*key(db), password)))
    if after == before and (not file.exists() or not file.stat().st_mode & 0o077):
        return False
    _write(file, "".join(f"{line}\n" for line in after))
    return True


def _write(file: Path, text: str) -> None:
    """Replaces the file at once (a new file, mode 0600 from its creation, renamed over the old one); where its
    directory is not ours to write (a root-owned /etc/pgrepl holding our file), rewrites it in place."""
    tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except PermissionError:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            tmp = None
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if tmp is not None:
            os.replace(tmp, file)
    except OSError as e:
        raise PgreplError(f"cannot write the password file {file}: {e.strerror}") from e
