#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgrepl contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_repl_compare
short_description: Compare the tables of a sync on its targets with its source, and repair what differs
description:
  - Compares every table of a sync (or of every sync) on each target with its source, as C(pgrepl compare) does,
    and returns, per table, whether it is equal and the keys missing on the target, extra on it and different.
  - Keys whose changes are captured but not applied yet are not differences; the result is correct while the
    source is written to.
  - With O(repair=true), the differing rows are made the winner's through the runner's apply path (pushdelta and
    fullcopy, the source; swap, the table's C(standard_conflict) when it names a side, else O(winner)), each key
    is journaled in the control database, and the task reports C(changed).
  - In check mode nothing is changed, not even the last result kept in the control database; with
    O(repair=true) the task says what it would repair and reports C(changed) when there is something to repair.
  - The module does not fail when it finds differences; assert on RV(equal).
version_added: 0.2.0
author: pgrepl maintainers (@pgrepl)
options:
  sync:
    description:
      - The sync to compare. Exactly one of O(sync) and O(all).
    type: str
  all:
    description:
      - Compare every sync of the catalog.
    type: bool
    default: false
  tables:
    description:
      - Only these tables of the sync (C(table) or C(schema.table)); every table when left out.
    type: list
    elements: str
    default: []
  repair:
    description:
      - Make the targets equal to their sources where they differ (see the description).
    type: bool
    default: false
  winner:
    description:
      - For a swap sync, the database whose rows win a repair (its source or its target).
    type: str
extends_documentation_fragment:
  - pgrepl.cluster.control
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
seealso:
  - module: pgrepl.cluster.pg_repl_info
  - module: pgrepl.cluster.pg_repl_sync
'''

EXAMPLES = r'''
- name: Compare the sync
  pgrepl.cluster.pg_repl_compare:
    sync: benchdeltaalpha
    login_unix_socket: /var/run/postgresql
  register: compared

- name: The target holds every row of the source
  ansible.builtin.assert:
    that: compared.equal
    fail_msg: "{{ compared.differences }} difference(s): {{ compared.syncs | map(attribute='tables') | flatten
      | rejectattr('equal') | map(attribute='table') | join(', ') }}"

- name: Repair a swap sync, master2's rows winning
  pgrepl.cluster.pg_repl_compare:
    sync: benchswapgamma
    repair: true
    winner: test1_master2
'''

RETURN = r'''
equal:
  description: Whether every table compared is equal on every target (after a repair, as found before it).
  returned: always
  type: bool
  sample: false
rows:
  description: Rows compared (on the sources).
  returned: always
  type: int
  sample: 1000010
differences:
  description: Differing keys (rows, for a table without a key) found, over every sync.
  returned: always
  type: int
  sample: 3
repaired:
  description: Whether the differences were repaired.
  returned: always
  type: bool
  sample: true
actions:
  description: What the repair did (in check mode, would do).
  returned: always
  type: list
  elements: str
  sample: ["copied 3 row(s) of public.pgbench_accounts from test1_master to test1_slave"]
syncs:
  description:
    - Per sync, what C(pgrepl compare --json) prints - its tables, each with C(equal), C(rows), C(counts),
      C(missing), C(extra), C(different) (keys as objects of text values), C(in_flight) (differing keys whose
      changes were not applied yet, not differences).
  returned: always
  type: list
  elements: dict
  sample: [{"sync": "benchdeltaalpha", "equal": false, "differences": 1, "tables": [
            {"table": "public.pgbench_accounts", "target": "test1_slave", "equal": false, "rows": 1000000,
             "counts": {"missing": 1, "extra": 0, "different": 0}, "missing": [{"aid": "77777"}], "extra": [],
             "different": [], "in_flight": 0}]}]
'''

from ansible_collections.pgrepl.cluster.plugins.module_utils.control import PgreplModule, catalog, plain  # noqa: E402

try:
    from pgrepl import compare_sync
except ImportError:  # PgreplModule says what is missing
    compare_sync = None


def main():
    m = PgreplModule(
        dict(
            sync=dict(type='str'),
            all=dict(type='bool', default=False),
            tables=dict(type='list', elements='str', default=[]),
            repair=dict(type='bool', default=False),
            winner=dict(type='str'),
        ),
        mutually_exclusive=[('sync', 'all')],
        required_one_of=[('sync', 'all')],
    )
    p = m.params
    if p['all'] and p['tables']:
        m.fail('tables goes with sync, not with all')
    conn = m.connect()
    if conn is None:
        m.fail('there is no control database yet: nothing to compare')
    names = [s['name'] for s in m.run(catalog.list_syncs, conn)] if p['all'] else [p['sync']]
    results, actions = [], []
    for name in names:
        result, said = m.run(compare_sync.run, conn, name, p['tables'], p['repair'], m.check_mode, p['winner'])
        results.append(result)
        actions.extend(said)
    m.actions = actions if p['repair'] else []
    conn.close()
    m.conn = None
    m.module.exit_json(changed=bool(m.actions), actions=m.actions, notes=m.notes,
                       equal=all(r['equal'] for r in results), rows=sum(r['rows'] for r in results),
                       differences=sum(r['differences'] for r in results),
                       repaired=any(r['repaired'] for r in results), syncs=plain(results))


if __name__ == '__main__':
    main()
