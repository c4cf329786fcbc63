"""The runner's settings (`pgrepl show`, `pgrepl set`): names, defaults, and what a valid value is."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import Refused


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    about: str
    check: Callable[[str], str | None]  # returns an error message, or None when the value is fine
    at_start: bool = False              # read as the runner starts or a worker connects: a change needs a restart


def _number(lo: float, hi: float, integer: bool = False) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        try:
            x = int(v) if integer else float(v)
        except ValueError:
            return f"must be {'a whole number' if integer else 'a number'}"
        return None if lo <= x <= hi else f"must be between {lo:g} and {hi:g}"
    return check


def _choice(*allowed: str) -> Callable[[str], str | None]:
    return lambda v: None if v in allowed else f"must be one of: {', '.join(allowed)}"


def _path(v: str) -> str | None:
    return None if v.startswith("/") else "must be an absolute path"


def _filename(v: str) -> str | None:
    return None if v and "/" not in v else "must be a file name, without a directory"


def _email_list(v: str) -> str | None:
    bad = [a for a in filter(None, (x.strip() for x in v.split(","))) if not re.fullmatch(r"[^@\s]+@[^@\s]+", a)]
    return f"not an email address: {', '.join(bad)}" if bad else None


def _host(v: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9.:_-]*", v) else "must be a host name or address"


def _listen(v: str) -> str | None:
    if v in ("", "off"):
        return None
    m = re.fullmatch(r"(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9._-]+):(\d{1,5})", v)
    return None if m and 0 < int(m[2]) < 65536 else "must be ADDRESS:PORT (e.g. 10.0.0.5:9187), empty or off"


SETTINGS: dict[str, Setting] = {s.name: s for s in [
    Setting("piddir", "/run/pgrepl", "directory of the pid files and of the stop file", _path, at_start=True),
    Setting("stopfile", "fullstoppgrepl", "name of the stop file in piddir: while it exists, nothing starts", _filename,
            at_start=True),
    Setting("log_level", "info", "debug, info, warning or error", _choice("debug", "info", "warning", "error"),
            at_start=True),
    Setting("batch_size", "20000", "changed keys applied per target transaction", _number(1, 10_000_000, True)),
    Setting("poll_interval", "0.5", "seconds between checks for new changes when no NOTIFY arrives", _number(0.01, 3600)),
    Setting("capture_notify", "off",
            "on: capture triggers NOTIFY the runner at once (costs a global lock at commit); off: polling only",
            _choice("on", "off")),
    Setting("probe_interval", "0.02",
            "seconds between two fast looks for new changes between polls: one query per source, which reads no "
            "table unless a transaction committed there since the last look; doubles while nothing commits, up to "
            "10 times this (at most poll_interval); after a run that applied changes and lasted more than two steps, the "
            "look comes at once. 0: no fast looks, only polls", _number(0, 3600)),
    Setting("busy_interval", "0",
            "seconds from the start of a run that applied changes to the start of the next: while changes keep "
            "flowing, runs come at most this often and each applies more, so the runner and the members' backends "
            "spend less CPU per change (e.g. 0.2: about half, for a lag of about that much); a run after a quiet "
            "spell starts at once. 0 (the default): the next run starts as soon as changes are seen", _number(0, 60)),
    Setting("retry_min", "1", "seconds before the first retry of a failed run", _number(0.1, 3600)),
    Setting("retry_max", "60", "longest wait between retries of a failed run (backoff doubles up to it)",
            _number(0.1, 86400)),
    Setting("lock_timeout", "30",
            "seconds a runner statement on a member database waits for a lock; 0: forever. Short locks of a busy "
            "table are waited out; a session that holds a lock longer (a forgotten open transaction, a long ALTER) "
            "makes the run fail, alerted, with the blocking pid in `pgrepl status SYNC`, instead of a silent stall",
            _number(0, 86400), at_start=True),
    Setting("statement_timeout", "0",
            "seconds a runner statement on a member database may run; 0 (the default): no limit, since a COPY of a "
            "big table or a big batch legitimately takes long. The runner sets both timeouts on its own sessions, "
            "so a statement_timeout set on the replication role or database does not apply to it",
            _number(0, 86400), at_start=True),
    Setting("fullcopy_delete_method", "delete", "how a fullcopy empties a target table: delete or truncate",
            _choice("delete", "truncate")),
    Setting("fullcopy_analyze", "yes", "ANALYZE target tables after a fullcopy", _choice("yes", "no")),
    Setting("compare_block_size", "1000",
            "rows per block that `pgrepl compare` hashes on both sides; only differing blocks are read key by key",
            _number(10, 10_000_000, True)),
    Setting("compare_wait", "30",
            "seconds `pgrepl compare` waits for a sync to apply past its snapshot before it looks again at the keys "
            "that differed; keys whose changes are still not applied then are not differences",
            _number(0, 86400)),
    Setting("days_back", "3", "how many days of run history `status` looks at", _number(1, 3650, True)),
    Setting("default_email_from", "", "sender of the runner's alert emails", _email_list),
    Setting("default_email_to", "", "recipients of alert emails (comma separated); empty: no emails", _email_list),
    Setting("default_email_host", "localhost", "SMTP server for alert emails", _host),
    Setting("metrics_listen", "",
            "ADDRESS:PORT where the controller serves Prometheus metrics (/metrics), on the cluster network only; "
            "empty or off: no listener. Read when `pgrepl run` starts", _listen, at_start=True),
    Setting("default_email_port", "25", "SMTP port for alert emails", _number(1, 65535, True)),
]}


def defaults() -> dict[str, str]:
    """Every setting's default value, by name: what a control database without any setting set holds."""
    return {name: s.default for name, s in SETTINGS.items()}


def as_text(name: str, value: object) -> str:
    """VALUE as the setting's text. For YAML and JSON callers (the Ansible module): YAML reads an unquoted on, off,
    yes or no as a boolean, made back into the word this setting takes (on/off or yes/no); an empty value (None) as
    empty; numbers as written."""
    setting = SETTINGS.get(name)
    if value is None:
        return ""
    if not isinstance(value, bool) or setting is None:   # an unknown name: validate says so
        return str(value)
    words = ("on", "yes") if value else ("off", "no")
    fits = [w for w in words if setting.check(w) is None]
    if not fits:
        raise Refused(f'Invalid value {str(value).lower()} for {name}: not a yes/no setting (quote the value: '
                      'YAML reads an unquoted on, off, yes or no as a boolean)')
    return fits[0]


def validate(name: str, value: str) -> str:
    """The value, normalised; raises Refused with a clear message for an unknown name or a bad value."""
    setting = SETTINGS.get(name)
    if setting is None:
        raise Refused(f'Unknown setting "{name}". Known settings: {", ".join(sorted(SETTINGS))}')
    value = value.strip()
    problem = setting.check(value)
    if problem:
        raise Refused(f'Invalid value "{value}" for {name}: {problem}')
    return value
