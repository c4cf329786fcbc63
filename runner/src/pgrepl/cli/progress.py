"""How `status` and `kick --wait` show what a sync owes its targets and how far long work has come."""

from __future__ import annotations

import sys

from .args import _duration, out


def lag_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds:.1f}s" if seconds < 10 else _duration(seconds)


def owed(sync: dict | None) -> tuple[str, str]:
    """(backlog, lag) of a sync in observe.figures: summed and worst over its targets; '-' for a fullcopy."""
    targets = list((sync or {}).get("targets", {}).values())
    if not sync or sync["type"] == "fullcopy":
        return "-", "-"
    if any(t["backlog"] is None for t in targets):
        return "?", "?"
    return str(sum(t["backlog"] for t in targets)), lag_text(max((t["lag"] for t in targets), default=0))


def progress_text(p: dict) -> str:
    """'450000/1000000 rows (45%), 52000 rows/s, ETA 10s' (what is known of it)."""
    total = p["total"]
    text = f'{p["done"]}/{total} rows' + (f' ({100 * p["done"] // total}%)' if total else "") if total else \
        f'{p["done"]} rows'
    if p["rate"]:
        text += f', {p["rate"]:.0f} rows/s'
    if p["eta"] is not None and p["running"]:
        text += f", ETA {_duration(p['eta'])}"
    return text


def progress_lines(name: str, sync: dict | None) -> list[str]:
    """One line per target with long work running."""
    return [f'{name} -> {tgt}: {t["progress"]["kind"]} {progress_text(t["progress"])}'
            for tgt, t in (sync or {}).get("targets", {}).items() if t["progress"] and t["progress"]["running"]]


class Bar:
    """`kick --wait`: a bar redrawn in place on a terminal, plain lines every few seconds otherwise."""

    WIDTH = 30
    PLAIN_EVERY = 5.0

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.last_plain = 0.0
        self.drawn = False

    def show(self, label: str, p: dict, now: float) -> None:
        if self.tty:
            frac = min(p["done"] / p["total"], 1.0) if p["total"] else 0.0
            filled = int(frac * self.WIDTH)
            sys.stdout.write(f'\r{label} [{"#" * filled}{"." * (self.WIDTH - filled)}] {progress_text(p)}\033[K')
            sys.stdout.flush()
            self.drawn = True
        elif now - self.last_plain >= self.PLAIN_EVERY:
            out(f'{label}: {p["kind"]} {progress_text(p)}')
            self.last_plain = now

    def done(self) -> None:
        if self.drawn:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()
            self.drawn = False


def blocked_text(b: dict) -> str:
    """'waits 12.0s on test1_slave for a lock held by backend 4242 (alice, psql, from the local socket, idle in
    transaction for 15.0s)': a worker's session stalled by another session (observe.blocked)."""
    seen = b["holder_state"] is not None   # NULL, like the address, for a role that may not see other users' sessions
    who = ", ".join([b["holder_user"] or "?", b["holder_application"] or "no application_name",
                     *([f'from {b["holder_addr"] or "the local socket"}',
                        f'{b["holder_state"]} for {lag_text(b["holder_state_seconds"])}'] if seen else
                       ["address and state not visible to this role"])])
    return f'waits {lag_text(b["seconds"])} on {b["database"]} for a lock held by backend {b["holder"]} ({who})'


def blocked_lines(name: str, sync: dict | None) -> list[str]:
    return [f"{name}: {blocked_text(b)}" for b in (sync or {}).get("blocked", [])]
