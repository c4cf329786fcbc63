#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgrepl contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_repl_info
short_description: Read the pgrepl catalog and the status of every sync
description:
  - Returns the databases, database groups, herds, tables, sequences, syncs and settings of the pgrepl catalog,
    and the status of every sync (what C(pgrepl list ... --json) and C(pgrepl status --json) print), to
    register and assert on.
  - Changes nothing.
version_added: 0.1.0
author: pgrepl maintainers (@pgrepl)
options: {}
extends_documentation_fragment:
  - pgrepl.cluster.control
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
seealso:
  - module: pgrepl.cluster.pg_repl_sync
'''

EXAMPLES = r'''
- name: Read the catalog
  pgrepl.cluster.pg_repl_info:
    login_unix_socket: /var/run/postgresql
  register: pgrepl

- name: Every sync ran well lately
  ansible.builtin.assert:
    that: item.last_bad is none or (item.last_good is not none and item.last_good.ended > item.last_bad.ended)
    fail_msg: "sync {{ item.name }}: {{ item.last_bad.error | default('') }}"
  loop: "{{ pgrepl.status }}"
  loop_control:
    label: "{{ item.name }}"
'''

RETURN = r'''
notes:
  description: Set in check mode when the control database or its schema does not exist yet.
  returned: always
  type: list
  elements: str
  sample: []
installed:
  description: Whether the control schema exists (false only in check mode, before the first real run).
  returned: always
  type: bool
  sample: true
dbs:
  description: The databases, without their password (C(has_password) says whether the runner's password file holds one).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "test1_slave", "dbname": "test1", "host": "10.11.12.242", "port": 5432, "username": "pgrepl",
            "has_password": true, "status": "active"}]
dbgroups:
  description: The database groups and their members.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "test1_history", "members": ["test1_master2", "test1_slave"]}]
herds:
  description: The herds, with their source database, members (tables and sequences) and the syncs reading them.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "alpha", "db": "test1_master", "members": ["public.pgbench_accounts"],
            "syncs": ["benchdeltaalpha"]}]
tables:
  description: The tables of the catalog, with their key, standard_conflict and herds.
  returned: always
  type: list
  elements: dict
  sample: [{"db": "test1_master", "schemaname": "public", "relname": "pgbench_accounts", "pkey": ["aid"],
            "standard_conflict": null, "herds": ["alpha"]}]
sequences:
  description: The sequences of the catalog, with their herds.
  returned: always
  type: list
  elements: dict
  sample: []
syncs:
  description: The syncs, with their source database and resolved targets.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "benchdeltaalpha", "type": "pushdelta", "herd": "alpha", "source": "test1_master",
            "targetdb": "test1_slave", "targetgroup": null, "targets": ["test1_slave"], "status": "active",
            "checktime": null, "onetimecopy": 0, "makedelta": false}]
status:
  description:
    - Per sync, its definition, the worker's state, and the last good and last bad runs within the
      C(days_back) setting (as C(pgrepl status --json)).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "benchdeltaalpha", "state": {"state": "idle", "pid": 4242}, "tables": 3,
            "last_good": {"target": "test1_slave", "inserts": 10, "updates": 120, "deletes": 0}, "last_bad": null}]
compares:
  description:
    - Per sync, the result of its last C(pgrepl compare) (or M(pgrepl.cluster.pg_repl_compare)), as
      C(pgrepl compare --json) printed it for that sync; syncs never compared are left out.
  returned: always
  type: dict
  sample: {"benchdeltaalpha": {"equal": true, "rows": 1000010, "differences": 0, "repaired": false,
            "finished": "2026-11-29T18:02:11+00:00", "tables": []}}
settings:
  description: Every setting of the runner and its value (C(pgrepl show all)).
  returned: always
  type: dict
  sample: {"batch_size": "20000", "capture_notify": "off"}
'''

from ansible_collections.pgrepl.cluster.plugins.module_utils.control import PgreplModule, catalog, plain  # noqa: E402

try:
    from pgrepl import compare_sync
except ImportError:  # PgreplModule says what is missing
    compare_sync = None


def main():
    m = PgreplModule(dict())
    conn = m.connect()
    if conn is None:
        m.module.exit_json(changed=False, installed=False, dbs=[], dbgroups=[], herds=[], tables=[], sequences=[],
                           syncs=[], status=[], compares={}, settings={}, notes=m.notes)
    dbs = []
    for db in m.run(catalog.list_dbs, conn):
        db['has_password'] = catalog.has_password(db)
        dbs.append(db)
    result = dict(
        installed=True,
        dbs=dbs,
        dbgroups=m.run(catalog.list_dbgroups, conn),
        herds=m.run(catalog.list_herds, conn),
        tables=m.run(catalog.list_relations, conn, 'table'),
        sequences=m.run(catalog.list_relations, conn, 'sequence'),
        syncs=m.run(catalog.list_syncs, conn),
        status=m.run(catalog.status, conn),
        compares=m.run(compare_sync.last_results, conn),
        settings=m.run(catalog.all_settings, conn),
    )
    conn.close()
    m.module.exit_json(changed=False, notes=m.notes, **plain(result))


if __name__ == '__main__':
    main()
