"""The control catalog: databases, dbgroups, tables and sequences, herds, syncs, settings, runs and kicks.

It lives in schema `pgrepl` of the control database (default name `pgrepl`) on the runner's host. Every object
change goes through a function here, used alike by the CLI, the daemon and the Ansible modules. Functions that
also touch source databases (adding or removing a sync installs or removes its capture) do the remote part first
and the catalog part last, so that a failure leaves the catalog as it was. One module per concern; callers use
`catalog.X` whatever module X lives in.
"""

from .databases import (  # noqa: F401
    DB_COLUMNS,
    SSL_MODES,
    add_db,
    add_dbgroup,
    check_sslmode,
    get_db,
    get_dbgroup,
    has_password,
    list_dbgroups,
    list_dbs,
    member_connect,
    remove_db,
    remove_dbgroup,
    set_dbgroup_members,
    source_name,
    sync_source,
    update_db,
)
from .progress import (  # noqa: F401
    CatchUp,
    Reporter,
    kick_counts,
    progress,
)
from .purge import (  # noqa: F401
    purge_archive,
    purge_delta,
    purge_runs,
)
from .relations import (  # noqa: F401
    add_relations,
    describe_source,
    get_herd,
    herd_members,
    list_herds,
    list_relations,
    relation_info,
    remove_from_herd,
    remove_herd,
    remove_relation,
    set_standard_conflict,
    update_tables,
)
from .runs import (  # noqa: F401
    finish_kicks,
    finish_run,
    kick,
    kick_result,
    set_state,
    start_run,
    status,
    take_kicks,
)
from .schema import (  # noqa: F401
    BEFORE_MIGRATION,
    CONFLICT_RULES,
    CONTROL_CHANNEL,
    MIGRATIONS,
    SCHEMA_VERSION,
    SYNC_TYPES,
    check_name,
    install,
    notify_control,
    open_control,
    schema_version,
)
from .settings import (  # noqa: F401
    all_settings,
    set_setting,
)
from .syncs import (  # noqa: F401
    PARTITIONED,
    _install_capture,
    add_sync,
    check_loops,
    check_onetimecopy,
    check_relations,
    check_sync,
    check_targets,
    directions,
    get_sync,
    list_syncs,
    parse_interval,
    remove_sync,
    set_active,
    sync_tables,
    sync_targets,
    syncs_of_herd,
    update_sync,
)
