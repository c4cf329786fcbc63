"""The entry point: dispatches a parsed command line to its verb and turns errors into exit codes."""

from __future__ import annotations

import sys

import psycopg

from .. import __version__, catalog, worker
from ..db import control_conninfo
from ..errors import PgreplError
from .args import EXIT_ERROR, EXIT_OK, EXIT_USAGE, Args, Usage, known_attributes, out, parse
from .compare import cmd_compare
from .define import cmd_activate, cmd_add, cmd_install, cmd_remove, cmd_set, cmd_show, cmd_update
from .help import cmd_help
from .operate import cmd_check, cmd_kick, cmd_purge, cmd_start, cmd_stop, cmd_validate
from .views import cmd_list, cmd_status


def dispatch(a: Args) -> int:
    if "--version" in a.flags:
        out(f"pgrepl {__version__}")
        return EXIT_OK
    if not a.words or a.words[0] == "help" or {"--help", "-h"} & a.flags:
        if {"--help", "-h"} & a.flags and a.words and a.words[0] != "help":
            a.words = ["help", a.words[0]]
        return cmd_help(a)
    verb = a.words[0]
    conninfo = control_conninfo(a.opt("--control"))
    if verb == "install":
        return cmd_install(a, conninfo)
    if verb == "check" or (verb == "run" and "--check" in a.flags):
        return cmd_check(a, conninfo)
    if verb == "run":
        return worker.run_controller(conninfo)
    if verb == "worker":
        return worker.run_worker(conninfo, a.words[1])
    commands = {"show": cmd_show, "set": cmd_set, "add": cmd_add, "list": cmd_list, "remove": cmd_remove,
                "update": cmd_update, "kick": cmd_kick, "status": cmd_status, "purge": cmd_purge,
                "stop": cmd_stop, "validate": cmd_validate, "compare": cmd_compare}
    if verb in ("list", "kick", "status", "purge", "stop", "validate", "compare", "show", "activate", "deactivate", "start",
                "restart"):   # take no NAME=VALUE; add, update, remove and set check theirs
        known_attributes(a, verb, ())
    with catalog.open_control(conninfo) as conn:
        if verb in ("activate", "deactivate"):
            return cmd_activate(a, conn, verb == "activate")
        if verb == "start":
            return cmd_start(a, conn, conninfo)
        if verb == "restart":
            cmd_stop(a, conn)
            return cmd_start(a, conn, conninfo)
        if verb in commands:
            return commands[verb](a, conn)
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
