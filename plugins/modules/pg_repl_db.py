#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgrepl contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_repl_db
short_description: Declare a database in the pgrepl catalog
description:
  - Adds, updates or removes a database of the pgrepl catalog, the connection the runner uses to reach a
    source or a target database (C(pgrepl add database) / C(pgrepl remove db)).
  - The catalog entry is made exactly what is declared; an option left out is stored empty (libpq's default).
    O(password) is the exception, it never goes to the catalog (see there).
  - The database itself is not created nor checked; that is the job of the P(pgrepl.cluster.postgresql#role) role.
version_added: 0.1.0
author: pgrepl maintainers (@pgrepl)
options:
  name:
    description:
      - Name of the database in the catalog, used by dbgroups, herds and syncs.
      - An identifier (letters, digits, underscores, no hyphen), at most 63 characters.
    type: str
    required: true
  dbname:
    description:
      - Name of the PostgreSQL database on its server. Required with O(state=present).
    type: str
  host:
    description:
      - Host name, address or socket directory of the server. Left out, libpq's default (the local socket).
    type: str
  port:
    description:
      - Port of the server.
    type: int
    default: 5432
  user:
    description:
      - Role the runner connects as (the least-privilege replication role).
    type: str
  password:
    description:
      - Password of O(user). Written to the runner's libpq password file (mode 0600, owned by the user the
        module runs as; C(passfile) in C(/etc/pgrepl/pgrepl.conf), else C($PGREPL_PASSFILE), else libpq's
        default), never to the control catalog. Never logged; masked in diffs, where a change shows as
        C(******** (changed)).
      - Left out, the password file is left as it is.
    type: str
  ssl_mode:
    description:
      - libpq's C(sslmode) for the runner's connections to this database. V(verify-full) with O(ca_cert) (the
        cluster CA) makes the runner check that it talks to the right server. Left out, libpq's default.
      - Named I(ssl_mode) as in community.postgresql; the control database's own O(ssl_mode) is not this one.
    type: str
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - CA certificate file, on the runner's host, the server's certificate must be signed by (libpq's
        C(sslrootcert)).
    type: str
    aliases: [ssl_rootcert]
  state:
    description:
      - V(present) adds or updates the database; V(absent) removes it.
      - Removing a database still used by a sync or a dbgroup is refused, and nothing is changed.
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
seealso:
  - module: pgrepl.cluster.pg_repl_dbgroup
  - module: pgrepl.cluster.pg_repl_herd
  - module: pgrepl.cluster.pg_repl_info
'''

EXAMPLES = r'''
- name: Declare the source and target databases
  pgrepl.cluster.pg_repl_db:
    name: "{{ item.name }}"
    dbname: test1
    host: "{{ item.host }}"
    user: pgrepl
    password: "{{ vault_pgrepl_replication_password }}"
    login_unix_socket: /var/run/postgresql
  loop:
    - {name: test1_master, host: 10.11.12.241}
    - {name: test1_slave, host: 10.11.12.242}
  become: true
  become_user: pgrepl

- name: Forget a database no sync uses any more
  pgrepl.cluster.pg_repl_db:
    name: test1_old
    state: absent
'''

RETURN = r'''
actions:
  description: What was done (or would be done in check mode), in words.
  returned: always
  type: list
  elements: str
  sample: ["add database test1_slave"]
notes:
  description: Why a check mode prediction may be incomplete.
  returned: always
  type: list
  elements: str
  sample: []
database:
  description: The database as the catalog holds it after the run (the password is masked); empty when absent.
  returned: always
  type: dict
  sample: {"name": "test1_slave", "dbname": "test1", "host": "10.11.12.242", "port": 5432, "user": "pgrepl",
           "password": "********", "status": "active", "ssl_mode": "verify-full",
           "ca_cert": "/etc/pgrepl/cluster-ca.crt"}
'''

from ansible_collections.pgrepl.cluster.plugins.module_utils.control import (  # noqa: E402
    MASK, SSL_MODES, PgreplModule, catalog, stored_password)

# catalog column -> module option
FIELDS = (('dbname', 'dbname'), ('host', 'host'), ('port', 'port'), ('username', 'user'), ('sslmode', 'ssl_mode'),
          ('sslrootcert', 'ca_cert'))


def shown(row, has_password, password_changed=False):
    """A catalog db row as the module shows it: option names, and a mask where the password file has one."""
    if not row:
        return {}
    out = dict((option, row[column]) for column, option in FIELDS)
    out.update(name=row['name'], status=row.get('status', 'active'))
    out['password'] = MASK + (' (changed)' if password_changed else '') if has_password else None
    return out


def main():
    m = PgreplModule(
        dict(
            name=dict(type='str', required=True),
            dbname=dict(type='str'),
            host=dict(type='str'),
            port=dict(type='int', default=5432),
            user=dict(type='str'),
            password=dict(type='str', no_log=True),
            ssl_mode=dict(type='str', choices=list(SSL_MODES)),
            ca_cert=dict(type='str', aliases=['ssl_rootcert']),
            state=dict(type='str', default='present', choices=['absent', 'present']),
        ),
        required_if=[('state', 'present', ['dbname'])],
        control_ssl=False,
    )
    p = m.params
    name = p['name']
    m.check_name('database', name)
    m.connect()
    current = m.lookup(catalog.get_db, name)

    had_password = current is not None and catalog.has_password(current)
    if p['state'] == 'absent':
        if current:
            m.actions.append('remove database %s' % name)
            if not m.check_mode:
                m.run(catalog.remove_db, m.conn, name)
        m.exit(shown(current, had_password), {}, database={})

    wanted = dict((column, p[option] or None) for column, option in FIELDS)
    wanted['port'] = p['port']
    after = dict(current or {}, name=name, **wanted)
    # Compared with the password file's line for the database as it is (a database that moves takes it along).
    password = p['password'] or None
    password_changed = password is not None and password != (m.run(stored_password, current) if current else None)
    if current is None:
        m.actions.append('add database %s' % name)
        if not m.check_mode:
            m.run(catalog.add_db, m.conn, name, wanted['dbname'], wanted['host'], wanted['port'],
                  wanted['username'], password, wanted['sslmode'], wanted['sslrootcert'])
    else:
        changes = dict((k, v) for k, v in wanted.items() if current[k] != v)
        if password_changed:
            changes['password'] = password
        if changes:
            options = [o for c, o in FIELDS if c in changes] + (['password'] if password_changed else [])
            m.actions.append('update database %s: %s' % (name, ', '.join(options)))
            if not m.check_mode:
                m.run(catalog.update_db, m.conn, name, **changes)
    has_password = password is not None or had_password
    m.exit(shown(current, had_password), shown(after, has_password, password_changed and current is not None),
           database=shown(after, has_password))


if __name__ == '__main__':
    main()
