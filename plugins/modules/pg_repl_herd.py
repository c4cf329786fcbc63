#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgrepl contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_repl_herd
short_description: Declare a herd (a set of tables and sequences of one database) in the pgrepl catalog
description:
  - Adds, updates or removes a herd, the set of tables and sequences of one source database that a sync
    replicates (C(pgrepl add all tables db=DB --herd=HERD)).
  - The herd's members are made exactly the declared set, resolved against the source database.
    Tables left out of the declaration leave the herd, and syncs of the herd stop capturing them (their capture
    triggers go when no other sync needs them). New tables join, and syncs of the herd capture them at once.
version_added: 0.1.0
author: pgrepl maintainers (@pgrepl)
options:
  name:
    description:
      - Name of the herd. An identifier (letters, digits, underscores, no hyphen).
    type: str
    required: true
  db:
    description:
      - Catalog name of the source database (see M(pgrepl.cluster.pg_repl_db)). Required with O(state=present).
      - A herd has one source database for its whole life; to move it, remove it and declare it again.
    type: str
  tables:
    description:
      - Tables of O(db), as C(schema.table) or C(table) (every schema), or V(all) for every table.
      - A name that matches no table is an error.
    type: list
    elements: str
    default: []
  exclude_tables:
    description:
      - Tables taken out of O(tables), typically with O(tables=all). A name that matches nothing is ignored.
    type: list
    elements: str
    default: []
  sequences:
    description:
      - Sequences of O(db) whose position is copied after each run, as names or V(all).
    type: list
    elements: str
    default: []
  exclude_sequences:
    description:
      - Sequences taken out of O(sequences).
    type: list
    elements: str
    default: []
  standard_conflict:
    description:
      - How a swap sync settles a row changed on both sides, for every member of the herd
        (C(standard_conflict) of each table in the catalog).
      - Left out, the members keep the rule they have.
      - V(merge) keeps both sides' changes of a row when they changed different columns (columns changed on
        both sides go to V(latest)).
    type: str
    choices: [source, target, latest, skip, abort, merge]
  delta_columns:
    description:
      - Additive columns of the herd's tables, by table (C(schema.table) or C(table)), for swap syncs; each
        side's net change of such a column is added to the other side's value, so concurrent increments on both
        sides are all kept (docs/swap.md).
      - Tables of the herd left out of the mapping have no delta columns; the option left out changes nothing.
    type: dict
  state:
    description:
      - V(present) adds or updates the herd; V(absent) removes it.
      - Removing a herd that a sync reads is refused, and nothing is changed.
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
  - A table without a primary key (nor a unique index on NOT NULL columns) cannot join a herd that a
    pushdelta or swap sync reads; the module fails and changes nothing. Put such tables in a fullcopy herd.
  - In check mode, when O(db) is not in the catalog yet (an earlier task would add it), the tables cannot be
    resolved; the herd is predicted as changed and RV(notes) says so.
seealso:
  - module: pgrepl.cluster.pg_repl_db
  - module: pgrepl.cluster.pg_repl_sync
'''

EXAMPLES = r'''
- name: Every pgbench table but the history, which has no primary key
  pgrepl.cluster.pg_repl_herd:
    name: alpha
    db: test1_master
    tables: all
    exclude_tables: [public.pgbench_history]
    login_unix_socket: /var/run/postgresql

- name: The history alone, for a fullcopy sync
  pgrepl.cluster.pg_repl_herd:
    name: beta
    db: test1_master
    tables: [public.pgbench_history]

- name: A swap herd whose conflicts the source wins
  pgrepl.cluster.pg_repl_herd:
    name: gamma
    db: test1_master2
    tables: all
    exclude_tables: [public.pgbench_history]
    standard_conflict: source
'''

RETURN = r'''
actions:
  description: What was done (or would be done in check mode), in words.
  returned: always
  type: list
  elements: str
  sample: ["add herd alpha", "add tables public.pgbench_accounts, public.pgbench_branches to herd alpha"]
notes:
  description: Why a check mode prediction may be incomplete.
  returned: always
  type: list
  elements: str
  sample: []
herd:
  description: The herd after the run; empty when absent.
  returned: always
  type: dict
  sample: {"name": "alpha", "db": "test1_master", "tables": ["public.pgbench_accounts"], "sequences": [],
           "standard_conflict": {"public.pgbench_accounts": null}}
'''

from ansible_collections.pgrepl.cluster.plugins.module_utils import preflight  # noqa: E402
from ansible_collections.pgrepl.cluster.plugins.module_utils.control import PgreplModule, catalog  # noqa: E402


def qualname(row):
    return '%s.%s' % (row['schemaname'], row['relname'])


def shown(name, db, members):
    """A herd as the module shows it, from (kind, qualname, standard_conflict) triples."""
    return dict(name=name, db=db,
                tables=sorted(q for k, q, r in members if k == 'table'),
                sequences=sorted(q for k, q, r in members if k == 'sequence'),
                standard_conflict=dict((q, r) for k, q, r in members if k == 'table'))


def wanted_delta(option, tables):
    """(qualname, columns) of every table of the herd as the delta_columns option wants them."""
    option = option or {}
    return [(q, list(option.get(q, option.get(q.split('.', 1)[1], [])))) for q in tables]


def delta_changes(option, rows, tables):
    """The tables whose delta columns differ from what the option wants (none when the option is left out)."""
    if option is None:
        return []
    have = dict((qualname(r), list(r.get('delta_columns') or [])) for r in rows if r['kind'] == 'table')
    return [(q, cols) for q, cols in wanted_delta(option, tables) if have.get(q, []) != cols]


def resolve(m, db, kind, names, exclude):
    if not names:
        return []
    include = [] if names == ['all'] else names
    return m.run(catalog.describe_source, m.conn, db, kind, include, exclude)


def main():
    m = PgreplModule(
        dict(
            name=dict(type='str', required=True),
            db=dict(type='str'),
            tables=dict(type='list', elements='str', default=[]),
            exclude_tables=dict(type='list', elements='str', default=[]),
            sequences=dict(type='list', elements='str', default=[]),
            exclude_sequences=dict(type='list', elements='str', default=[]),
            standard_conflict=dict(type='str', choices=['source', 'target', 'latest', 'skip', 'abort', 'merge']),
            delta_columns=dict(type='dict'),
            state=dict(type='str', default='present', choices=['absent', 'present']),
        ),
        required_if=[('state', 'present', ['db'])],
    )
    p = m.params
    name, db, rule = p['name'], p['db'], p['standard_conflict']
    m.check_name('herd', name)
    m.connect()
    current = m.lookup(catalog.get_herd, name)
    rows = m.run(catalog.herd_members, m.conn, name) if current else []
    members = [(r['kind'], qualname(r), r['standard_conflict']) for r in rows]
    before = shown(name, current['db'], members) if current else {}

    if p['state'] == 'absent':
        if current:
            m.actions.append('remove herd %s' % name)
            if m.check_mode and current['syncs']:
                m.notes.append('check mode: herd %s is read by sync(s) %s; the real run refuses to remove it unless '
                               'an earlier task removes them' % (name, ', '.join(current['syncs'])))
            elif not m.check_mode:
                m.run(catalog.remove_herd, m.conn, name)
        m.exit(before, {}, herd={})

    m.check_name('database', db)
    if current and current['db'] and current['db'] != db:
        m.fail('Herd "%s" holds tables of database "%s": a herd has one source database. Remove the herd first '
               '(state=absent), or put the tables of "%s" in another herd' % (name, current['db'], db))
    if m.lookup(catalog.get_db, db) is None:
        # check mode, the database is declared by an earlier task: its tables cannot be listed yet
        m.not_declared_yet(['database %s' % db], 'No database named "%s" (source of herd "%s"): declare it first with '
                           'pgrepl.cluster.pg_repl_db' % (db, name),
                           ': the tables of herd %s are resolved on the real run' % name)
        m.actions.extend(['add herd %s' % name] * (current is None) +
                         ['add the declared tables and sequences of database %s to herd %s' % (db, name)])
        m.exit(before, dict(name=name, db=db), herd=dict(name=name, db=db))

    wanted = (resolve(m, db, 'table', p['tables'], p['exclude_tables']) +
              resolve(m, db, 'sequence', p['sequences'], p['exclude_sequences']))
    have = set(q for k, q, r in members)
    to_add = [t for t in wanted if t.qualname not in have]
    to_remove = sorted(have - set(t.qualname for t in wanted))
    kept = [(k, q, r) for k, q, r in members if q not in to_remove]
    relabel = sorted(q for k, q, r in kept if rule is not None and r != rule)
    after = shown(name, db, kept + [(t.kind, t.qualname, rule) for t in to_add])
    if rule is not None:
        after['standard_conflict'] = dict((q, rule) for q in after['standard_conflict'])

    if current is None:
        m.actions.append('add herd %s' % name)
    for kind in ('table', 'sequence'):
        added = [t.qualname for t in to_add if t.kind == kind]
        removed = [q for k, q, r in members if k == kind and q in to_remove]
        if added:
            m.actions.append('add %ss %s to herd %s' % (kind, ', '.join(added), name))
        if removed:
            m.actions.append('remove %ss %s from herd %s' % (kind, ', '.join(removed), name))
    if relabel:
        m.actions.append('set standard_conflict %s on %s of herd %s' % (rule, ', '.join(relabel), name))
    additive = delta_changes(p['delta_columns'], rows, after['tables'])
    for q, cols in additive:
        m.actions.append('set delta_columns %s on %s of herd %s' % (', '.join(cols) or 'none', q, name))
    if p['delta_columns'] is not None:
        after['delta_columns'] = dict((q, cols) for q, cols in wanted_delta(p['delta_columns'], after['tables']))

    if m.check_mode:
        if current and to_add:  # the real run refuses a PK-less table in a herd read row by row
            m.run(preflight.check_pkless_in_delta_herd, m.conn, name, to_add)
    else:
        # Adding first: the library refuses a bad addition before changing anything, so nothing is half-done.
        if current is None or to_add:
            m.run(catalog.add_relations, m.conn, db, to_add, name, rule)
        if to_remove:
            m.run(catalog.remove_from_herd, m.conn, name, to_remove)
        if relabel:
            m.run(catalog.set_standard_conflict, m.conn, name, rule)
        for q, cols in additive:
            m.run(catalog.update_tables, m.conn, db, [q], None, cols)
    m.exit(before, after, herd=after)


if __name__ == '__main__':
    main()
