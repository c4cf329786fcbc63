"""The entry point: dispatches a parsed command line to its verb and turns errors into exit codes.

A verb's module is imported when that verb runs: `pgrepl worker` (one interpreter per sync) and `pgrepl run` load
none of the others' code.
"""

from __future__ import annotations

import importlib
import sys

import psycopg

from .. import __version__, catalog, worker
from ..db import control_conninfo
from ..errors import PgreplError
from .args import EXIT_ERROR, EXIT_OK, EXIT_USAGE, Args, Usage, known_attributes, out, parse

VERBS = {"show": "define", "set": "define", "add": "define", "remove": "define", "update": "define",
         "install": "define", "activate": "define", "list": "views", "status": "views", "kick": "operate",
         "purge": "operate", "stop": "operate", "validate": "operate", "check": "operate", "start": "operate",
         "compare": "compare", "help": "help"}


def _cmd(verb: str):
    """The function of VERB (cmd_VERB in its family's module)."""
    return getattr(importlib.import_module(f".{VERBS[verb]}", __package__), f"cmd_{verb}")


def dispatch(a: Args) -> int:
    if "--version" in a.flags:
        out(f"pgrepl {__version__}")
        return EXIT_OK
    if not a.words or a.words[0] == "help" or {"--help", "-h"} & a.flags:
        if {"--help", "-h"} & a.flags and a.words and a.words[0] != "help":
            a.words = ["help", a.words[0]]
        return _cmd("help")(a)
    verb = a.words[0]
    conninfo = control_conninfo(a.opt("--control"))
    if verb == "install":
        return _cmd("install")(a, conninfo)
    if verb == "check" or (verb == "run" and "--check" in a.flags):
        return _cmd("check")(a, conninfo)
    if verb == "run":
        return worker.run_controller(conninfo)
    if verb == "worker":
        return worker.run_worker(conninfo, a.words[1])
    if verb in ("list", "kick", "status", "purge", "stop", "validate", "compare", "show", "activate", "deactivate", "start",
                "restart"):   # take no NAME=VALUE; add, update, remove and set check theirs
        known_attributes(a, verb, ())
    with catalog.open_control(conninfo) as conn:
        if verb in ("activate", "deactivate"):
            return _cmd("activate")(a, conn, verb == "activate")
        if verb == "start":
            return _cmd("start")(a, conn, conninfo)
        if verb == "restart":
            _cmd("stop")(a, conn)
            return _cmd("start")(a, conn, conninfo)
        if verb in VERBS:
            return _cmd(verb)(a, conn)
    raise Usage(f'unknown command "{verb}": see `pgrepl help`')


def main(argv: list[str] | None = None) -> int:
    try:
        return dispatch(parse(sys.argv[1:] if argv is None else argv))
    except Usage as e:
        print(f"pgrepl: {e}", file=sys.stderr)
        return EXIT_USAGE
    except PgreplError as e:
        print(f"pgrepl: {e}", file=sys.stderr)
        return EXIT_ERROR
    except psycopg.Error as e:
        print(f"pgrepl: database error: {str(e).strip()}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
