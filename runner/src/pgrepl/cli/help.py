"""`pgrepl help`: the summary and each verb's usage."""

from __future__ import annotations

from .. import __version__
from .args import EXIT_OK, Args, Usage, out

HELP = {
    "install": "pgrepl install\n  Creates (or upgrades) the control schema in the control database, creating the "
               "database if needed.\n  Running it again changes nothing and says so.",
    "show": "pgrepl show all | pgrepl show NAME... [--verbose] [--json]\n  Shows the runner's settings "
            "(--verbose explains each).",
    "set": "pgrepl set NAME=VALUE...\n  Changes settings; an unknown setting or a bad value is refused, and nothing "
           "is changed.",
    "add": "pgrepl add database DBNAME name=NAME [host=H] [port=P] [user=U] [pass=P] [sslmode=MODE] "
           "[sslrootcert=CA_FILE]\n"
           "  (pass= is written to the runner's libpq password file, never to the catalog; sslmode=verify-full with\n"
           "  sslrootcert= the cluster CA makes the runner check the server's certificate)\n"
           "pgrepl add all tables db=NAME [-T TABLE]... [-t TABLE]... [--herd=HERD] [standard_conflict=RULE] "
           "[--verbose]\n"
           "pgrepl add all sequences db=NAME [--herd=HERD]\n"
           "pgrepl add table NAME... db=NAME [herd=HERD] [standard_conflict=RULE]\n"
           "pgrepl add sequence NAME... db=NAME [herd=HERD]\n"
           "pgrepl add dbgroup NAME DB...\n"
           "pgrepl add sync NAME source=HERD targetdb=DB|targetgroup=GROUP type=pushdelta|fullcopy|swap\n"
           "                [checktime=INTERVAL] [onetimecopy=0|1|2] [makedelta=yes|no]\n"
           "  Names are identifiers: letters, digits, underscores (no hyphen). -T excludes, -t includes a table.\n"
           "  RULE (swap conflicts): source, target, latest, skip or abort. A pushdelta or swap sync needs a primary\n"
           "  key (or a unique index on NOT NULL columns) on every table: use fullcopy for the others, and for\n"
           "  partitioned tables. An attribute a command does not know is refused.\n"
           "  onetimecopy=1 copies every table to the targets on the next run, 2 only to empty target tables.\n"
           "  Adding a pushdelta or swap sync installs its capture triggers on the source at once.",
    "list": "pgrepl list dbs|dbgroups|tables|sequences|herds|syncs|conflicts [NAME...] [--verbose] [--json]",
    "activate": "pgrepl activate SYNC...\n  The running daemon starts a worker for the sync.",
    "deactivate": "pgrepl deactivate SYNC...\n  The sync's worker stops; changes go on being captured.",
    "remove": "pgrepl remove sync|herd|table|sequence|db|dbgroup NAME...\n  An active sync must be deactivated "
              "first. Removing a sync also removes its triggers and delta\n  stores from the databases where no "
              "other sync needs them.",
    "update": "pgrepl update sync NAME [source=HERD] [targetdb=DB|targetgroup=GROUP] [type=TYPE] [checktime=...] "
              "...\n  Changes a sync in place: deactivated, changed, reactivated; captured changes are kept.",
    "start": "pgrepl start\n  Starts the daemon in the background (removes the stop file first). Under systemd, "
             "use the unit (it runs `pgrepl run`).",
    "stop": "pgrepl stop\n  Creates the stop file and stops the daemon; nothing starts while the stop file exists.",
    "restart": "pgrepl restart\n  stop, then start.",
    "run": "pgrepl run [--check]\n  Runs the daemon in the foreground, logging to stderr (journald under "
           "systemd).\n  --check: checks the configuration (control database, member databases, capture) and exits.",
    "check": "pgrepl check\n  Same as `pgrepl run --check`.",
    "kick": "pgrepl kick SYNC... [--wait SECONDS]\n  Asks the daemon to run the syncs now. With --wait, waits for "
            "the runs: exit 0 when they\n  finished well, 3 when one failed, 4 when none finished in time.",
    "status": "pgrepl status [SYNC...] [--json]\n  A table of every sync (Name, Type, State, PID, Last good, Time, "
              "I/U/D, Last bad), or the\n  details of the syncs named. State and PID are those of the worker holding "
              "the sync's lease, on\n  any host; a second worker of a sync waits for the lease and is listed "
              "with its holder.",
    "validate": "pgrepl validate SYNC... | all [--onetimecopy]\n  Repairs the capture of pushdelta and swap syncs on "
                "their databases: missing or disabled triggers,\n  a table dropped and re-created (new capture), a "
                "missing delta store; says per table what it fixed.\n  Where changes may have been missed it says "
                "that an onetimecopy (or a compare) is needed;\n  --onetimecopy marks those syncs for onetimecopy=1 "
                "(their next run copies the tables whole).\n  Exit 0: nothing to fix or fixed; 1: something could "
                "not be fixed.",
    "compare": "pgrepl compare SYNC [TABLE...] | --all [--json] [--repair [--dry-run] [--winner DB]]\n"
               "  Compares every table of the sync on each target with its source, by blocks of rows hashed on both\n"
               "  sides (setting compare_block_size), and lists the keys missing on the target, extra on it and\n"
               "  different. Keys whose changes are captured but not applied yet are not differences: the keys that\n"
               "  differ are looked at again once the sync has applied past the compare's snapshot (compare_wait).\n"
               "  Tables without a key (fullcopy) are compared as multisets of rows.\n"
               "  --repair makes the target's rows the source's through the apply path (swap: the table's\n"
               "  standard_conflict when it is source or target, else --winner DB) and journals each key;\n"
               "  --dry-run says what it would do. Exit 0: equal; 5: differences found (repaired or not, the\n"
               "  output says which); 1: error.",
    "purge": "pgrepl purge delta INTERVAL     captured keys applied by every target and older than INTERVAL\n"
             "pgrepl purge runs INTERVAL      finished runs older than INTERVAL move to daily freezer tables\n"
             "pgrepl purge archive --keep N   freezer tables older than N days are dropped\n"
             "pgrepl purge conflicts INTERVAL conflict journal entries older than INTERVAL",
    "help": "pgrepl help [COMMAND]",
}

SUMMARY = """pgrepl {version}: asynchronous trigger-based PostgreSQL replication (Bucardo's herds, syncs and kicks)

Usage: pgrepl [--control CONNINFO] COMMAND [ARGS] [--json] [--verbose]

Commands:
  install                    create the control schema
  show all | set NAME=VALUE  settings
  add ...                    databases, tables, sequences, dbgroups, herds, syncs
  list TYPE                  dbs, dbgroups, tables, sequences, herds, syncs, conflicts
  update sync NAME ...       change a sync in place
  activate | deactivate SYNC
  remove TYPE NAME
  start | stop | restart | run [--check] | check
  kick SYNC [--wait S]       run a sync now
  status [SYNC]              what every sync did last
  validate SYNC|all          repair lost capture (dropped/disabled triggers, re-created tables)
  compare SYNC|--all         is each target equal to its source; --repair
  purge delta|runs|archive|conflicts
  help COMMAND               details of a command

The control database is found from --control, else $PGREPL_CONTROL, else `control = ...` in
/etc/pgrepl/pgrepl.conf, else "dbname=pgrepl"."""


def cmd_help(a: Args) -> int:
    topic = a.words[1] if len(a.words) > 1 else None
    if topic is None:
        out(SUMMARY.format(version=__version__))
    elif topic in HELP:
        out(HELP[topic])
    else:
        raise Usage(f'no help for "{topic}": one of {", ".join(HELP)}')
    return EXIT_OK
