#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgrepl contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_repl_dbgroup
short_description: Declare a database group in the pgrepl catalog
description:
  - Adds, updates or removes a database group, a set of target databases a sync can push to
    (C(pgrepl add dbgroup)).
  - The members are made exactly O(members). Syncs that target the group follow at once, without losing what
    they captured meanwhile - a new member receives the changes made from then on,
    a member that leaves stops receiving them.
version_added: 0.1.0
author: pgrepl maintainers (@pgrepl)
options:
  name:
    description:
      - Name of the group. An identifier (letters, digits, underscores, no hyphen).
    type: str
    required: true
  members:
    description:
      - Names of catalog databases (see M(pgrepl.cluster.pg_repl_db)). Required with O(state=present).
    type: list
    elements: str
  state:
    description:
      - V(present) adds or updates the group; V(absent) removes it.
      - Removing a group that a sync targets is refused, and nothing is changed.
    type: str
    choices: [absent, present]
    default: present
extends_documentation_fragment:
  - pgrepl.cluster.control
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - In check mode, members that are not in the catalog yet are assumed to be declared by an earlier task;
    the change is predicted and RV(notes) says so. Outside check mode an unknown member is an error.
seealso:
  - module: pgrepl.cluster.pg_repl_db
  - module: pgrepl.cluster.pg_repl_sync
'''

EXAMPLES = r'''
- name: Two targets for the fullcopy sync
  pgrepl.cluster.pg_repl_dbgroup:
    name: test1_history
    members: [test1_slave, test1_master2]
    login_unix_socket: /var/run/postgresql
'''

RETURN = r'''
actions:
  description: What was done (or would be done in check mode), in words.
  returned: always
  type: list
  elements: str
  sample: ["add database group test1_history with members test1_master2, test1_slave"]
notes:
  description: Why a check mode prediction may be incomplete.
  returned: always
  type: list
  elements: str
  sample: ["check mode: database test1_slave is not in the catalog yet (an earlier task would add it)"]
dbgroup:
  description: The group after the run; empty when absent.
  returned: always
  type: dict
  sample: {"name": "test1_history", "members": ["test1_master2", "test1_slave"]}
'''

from ansible_collections.pgrepl.cluster.plugins.module_utils import preflight  # noqa: E402
from ansible_collections.pgrepl.cluster.plugins.module_utils.control import PgreplModule, catalog  # noqa: E402


def main():
    m = PgreplModule(
        dict(
            name=dict(type='str', required=True),
            members=dict(type='list', elements='str'),
            state=dict(type='str', default='present', choices=['absent', 'present']),
        ),
        required_if=[('state', 'present', ['members'])],
    )
    name = m.params['name']
    m.check_name('database group', name)
    m.connect()
    current = m.lookup(catalog.get_dbgroup, name)

    if m.params['state'] == 'absent':
        if current:
            m.actions.append('remove database group %s' % name)
            if not m.check_mode:
                m.run(catalog.remove_dbgroup, m.conn, name)
        m.exit(current, {}, dbgroup={})

    members = sorted(set(m.params['members']))
    missing = [d for d in members if m.lookup(catalog.get_db, d) is None]
    if missing:
        m.not_declared_yet(['database %s' % d for d in missing],
                           'No database named "%s" (member of database group "%s"): declare it first with '
                           'pgrepl.cluster.pg_repl_db' % (missing[0], name))
    after = dict(name=name, members=members)
    if current is None:
        m.actions.append('add database group %s with members %s' % (name, ', '.join(members) or '(none)'))
        if not m.check_mode:
            m.run(catalog.add_dbgroup, m.conn, name, members)
    elif current['members'] != members:
        added = [d for d in members if d not in current['members']]
        removed = [d for d in current['members'] if d not in members]
        m.actions.append('set members of database group %s: %s' % (name, '; '.join(
            ['add ' + ', '.join(added)] * bool(added) + ['remove ' + ', '.join(removed)] * bool(removed))))
        if m.check_mode:  # the real run refuses members that would leave a sync of the group without a target
            for s in m.run(catalog.list_syncs, m.conn):
                if s['targetgroup'] == name:
                    m.run(preflight.check_targets, m.conn, s, members)
        else:
            m.run(catalog.set_dbgroup_members, m.conn, name, members)
    m.exit(current, after, dbgroup=after)


if __name__ == '__main__':
    main()
