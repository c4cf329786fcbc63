"""pgrepl: asynchronous trigger-based PostgreSQL replication, in the vocabulary of Bucardo.

One changed row, end to end, one module a step:
    capture   triggers record changed primary keys in a delta store on the source
    worker    one process per sync wakes up when deltas arrive (NOTIFY or polling)
    apply     bounded batches: delete the keys on the target, COPY their rows from the source
    catalog   the control database: databases, herds, syncs, settings, runs
    cli       bucardo_ctl-shaped commands on top of all of it
"""

__version__ = "0.1.0"
