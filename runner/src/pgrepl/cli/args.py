"""The command line's words, options and NAME=VALUE attributes; output helpers shared by the verbs."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..errors import PgreplError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_KICK_FAILED, EXIT_KICK_TIMEOUT = 0, 1, 2, 3, 4

VALUE_OPTIONS = {"-t", "-T", "--herd", "--wait", "--keep", "--control", "--db", "--winner"}
FLAG_OPTIONS = {"--verbose", "-v", "--json", "--quiet", "-q", "--help", "-h", "--check", "--version",
                "--onetimecopy", "--repair", "--dry-run", "--all"}


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
