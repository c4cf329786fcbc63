#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgrepl contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_repl_sync
short_description: Declare a sync (what to replicate, how, and where) in the pgrepl catalog
description:
  - Adds, updates or removes a sync of the pgrepl catalog (C(pgrepl add sync), C(pgrepl update sync),
    C(pgrepl remove sync)).
  - Adding a pushdelta or swap sync installs its capture triggers on the source database at once (and on the
    target of a swap). The running runner starts a worker for it within a second.
  - Changing the herd, the targets or the type of an existing sync is done in place (deactivate, change,
    reactivate), without losing the changes captured meanwhile, as C(pgrepl update sync) does. Targets that stay
    keep their position; a new target receives the changes made from then on.
version_added: 0.1.0
author: pgrepl maintainers (@pgrepl)
options:
  name:
    description:
      - Name of the sync. An identifier (letters, digits, underscores, no hyphen).
    type: str
    required: true
  type:
    description:
      - V(pushdelta) copies the changed rows to the targets; V(fullcopy) copies whole tables;
        V(swap) replicates both ways between the source and one target, settling conflicts by each table's
        C(standard_conflict) (see M(pgrepl.cluster.pg_repl_herd)).
      - Tables of a pushdelta or swap sync need a primary key (or a unique index on NOT NULL columns).
    type: str
    choices: [pushdelta, fullcopy, swap]
    default: pushdelta
  source:
    description:
      - The herd to replicate (see M(pgrepl.cluster.pg_repl_herd)); its database is the source.
        Required with O(state=present).
    type: str
    aliases: [herd]
  targetdb:
    description:
      - The target database. Exactly one of O(targetdb) and O(targetgroup) with O(state=present).
    type: str
  targetgroup:
    description:
      - A database group whose members are all targets (see M(pgrepl.cluster.pg_repl_dbgroup)).
    type: str
  checktime:
    description:
      - Run the sync at least this often even without changes, as a PostgreSQL interval (V(5 minutes)).
        Left out or V(none), only on changes and kicks.
    type: str
  onetimecopy:
    description:
      - Applied when the sync is created only (the runner sets it back to 0 once the copy is done, so it is not
        compared afterwards). V(1) copies every table to the targets on the first run, V(2) only to empty target
        tables, V(0) assumes the targets already hold the data.
    type: int
    choices: [0, 1, 2]
    default: 0
  makedelta:
    description:
      - Whether changes this sync applies on a target are captured there in turn, for cascades.
    type: bool
    default: false
  active:
    description:
      - Whether the runner runs the sync. An inactive sync keeps capturing changes.
    type: bool
    default: true
  state:
    description:
      - V(present) adds or updates the sync.
      - V(absent) removes it, its capture triggers and delta stores too where no other sync needs them.
        An active sync is deactivated first (the command line refuses to remove an active sync; a declaration
        that says "absent" means it), and is reactivated if the removal fails.
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
  - Every refusal of the runner (unknown herd or database, PK-less table in a pushdelta or swap herd, source
    among the targets, swap towards a group...) fails the task before anything is changed, in check mode too.
  - In check mode, a herd, database or group that is not in the catalog yet is assumed to be declared by an
    earlier task; the change is predicted and RV(notes) says so.
seealso:
  - module: pgrepl.cluster.pg_repl_herd
  - module: pgrepl.cluster.pg_repl_dbgroup
  - module: pgrepl.cluster.pg_repl_info
'''

EXAMPLES = r'''
- name: Push the changes of herd alpha to the slave
  pgrepl.cluster.pg_repl_sync:
    name: benchdeltaalpha
    type: pushdelta
    source: alpha
    targetdb: test1_slave
    login_unix_socket: /var/run/postgresql

- name: Copy the history tables to a group every 10 minutes
  pgrepl.cluster.pg_repl_sync:
    name: benchcopybeta
    type: fullcopy
    source: beta
    targetgroup: test1_history
    checktime: 10 minutes

- name: Remove a sync, with its triggers (deactivated first)
  pgrepl.cluster.pg_repl_sync:
    name: benchdeltaalpha
    state: absent
'''

RETURN = r'''
actions:
  description: What was done (or would be done in check mode), in words.
  returned: always
  type: list
  elements: str
  sample: ["add sync benchdeltaalpha (pushdelta alpha => test1_slave), active"]
notes:
  description: Why a check mode prediction may be incomplete.
  returned: always
  type: list
  elements: str
  sample: ["check mode: herd alpha is not in the catalog yet (an earlier task would add it)"]
sync:
  description: The sync after the run; empty when absent.
  returned: always
  type: dict
  sample: {"name": "benchdeltaalpha", "type": "pushdelta", "source": "alpha", "targetdb": "test1_slave",
           "targetgroup": null, "checktime": null, "makedelta": false, "active": true}
removed_captures:
  description: The captures (triggers and delta store) removed with the sync, each as database, colon, table.
  returned: when O(state=absent) removed a pushdelta or swap sync
  type: list
  elements: str
  sample: ["test1_master: public.pgbench_accounts"]
'''

from ansible_collections.pgrepl.cluster.plugins.module_utils import preflight  # noqa: E402
from ansible_collections.pgrepl.cluster.plugins.module_utils.control import (  # noqa: E402
    PgreplError, PgreplModule, catalog, psycopg)


def shown(s):
    if not s:
        return {}
    return dict(name=s['name'], type=s['type'], source=s['herd'], targetdb=s['targetdb'],
                targetgroup=s['targetgroup'], checktime=str(s['checktime']) if s['checktime'] else None,
                makedelta=s['makedelta'], active=s['status'] == 'active')


def describe(s):
    return '%s %s => %s' % (s['type'], s['herd'], s['targetdb'] or s['targetgroup'])


def absent(m, name, current):
    removed = []
    if current:
        if current['status'] == 'active':
            m.actions.append('deactivate sync %s' % name)
        m.actions.append('remove sync %s' % name)
        if not m.check_mode:
            if current['status'] == 'active':
                m.run(catalog.set_active, m.conn, name, False)
            try:
                removed = catalog.remove_sync(m.conn, name)
            except (PgreplError, psycopg.Error) as e:
                if current['status'] == 'active':   # as it was: a declaration does not leave a sync half-removed
                    catalog.set_active(m.conn, name, True)
                m.fail('Cannot remove sync "%s": %s' % (name, str(e).strip()))
            m.actions.extend('remove the capture of %s' % r for r in removed)
    m.exit(shown(current), {}, sync={}, removed_captures=removed)


def missing_refs(m, p):
    """Names the sync refers to that are not in the catalog; outside check mode, a clean failure."""
    refs = [('herd', catalog.get_herd, p['source']), ('database', catalog.get_db, p['targetdb']),
            ('database group', catalog.get_dbgroup, p['targetgroup'])]
    missing = ['%s %s' % (kind, name) for kind, getter, name in refs if name and m.lookup(getter, name) is None]
    if missing:
        m.not_declared_yet(missing, 'Sync "%s" refers to %s, not in the catalog: declare it first '
                           '(pgrepl.cluster.pg_repl_herd, pg_repl_db, pg_repl_dbgroup)' % (p['name'], ', '.join(missing)))
    return missing


def main():
    m = PgreplModule(
        dict(
            name=dict(type='str', required=True),
            type=dict(type='str', default='pushdelta', choices=['pushdelta', 'fullcopy', 'swap']),
            source=dict(type='str', aliases=['herd']),
            targetdb=dict(type='str'),
            targetgroup=dict(type='str'),
            checktime=dict(type='str'),
            onetimecopy=dict(type='int', default=0, choices=[0, 1, 2]),
            makedelta=dict(type='bool', default=False),
            active=dict(type='bool', default=True),
            state=dict(type='str', default='present', choices=['absent', 'present']),
        ),
        mutually_exclusive=[('targetdb', 'targetgroup')],
        required_if=[('state', 'present', ['source']), ('state', 'present', ['targetdb', 'targetgroup'], True)],
    )
    p = m.params
    name = p['name']
    m.check_name('sync', name)
    m.connect()
    current = m.lookup(catalog.get_sync, name)
    if p['state'] == 'absent':
        absent(m, name, current)

    wanted = dict(type=p['type'], herd=p['source'], targetdb=p['targetdb'], targetgroup=p['targetgroup'])
    missing = missing_refs(m, p)
    checktime = None if m.conn is None else m.run(catalog.parse_interval, m.conn, p['checktime'])
    after = dict(current or {}, name=name, checktime=checktime, makedelta=p['makedelta'],
                 status='active' if p['active'] else 'inactive', **wanted)

    definition = dict((k, v) for k, v in wanted.items() if current and current[k] != v)
    simple = dict((k, after[k]) for k in ('checktime', 'makedelta') if current and current[k] != after[k])
    if current is None:
        m.actions.append('add sync %s (%s), %s' % (name, describe(after), after['status']))
    if definition:
        m.actions.append('change sync %s in place: %s (was %s)' % (name, describe(after), describe(current)))
    if simple:
        m.actions.append('set %s of sync %s' % (', '.join('%s=%s' % kv for kv in sorted(simple.items())), name))
    activate = current is not None and current['status'] != after['status']
    if activate:
        m.actions.append('%s sync %s' % ('activate' if p['active'] else 'deactivate', name))

    # The library refuses a bad sync before changing anything, but has no dry run, and update_sync removes the
    # sync before adding it back: ask its questions first (check mode, and before an in-place change).
    if ((m.check_mode and current is None) or definition) and not missing:
        m.run(preflight.check_sync, m.conn, name, p['source'], p['type'], p['targetdb'], p['targetgroup'],
              p['checktime'])
    if not m.check_mode:
        if current is None:
            m.run(catalog.add_sync, m.conn, name, p['source'], p['type'], p['targetdb'], p['targetgroup'],
                  checktime=p['checktime'], onetimecopy=p['onetimecopy'], makedelta=p['makedelta'],
                  active=p['active'])
        elif definition or simple:
            changes = dict(definition, **simple)
            if 'checktime' in changes:   # update_sync parses the text itself
                changes['checktime'] = p['checktime']
            m.run(catalog.update_sync, m.conn, name, **changes)
        if activate:
            m.run(catalog.set_active, m.conn, name, p['active'])
    m.exit(shown(current), shown(after), sync=shown(after))


if __name__ == '__main__':
    main()
