# -*- coding: utf-8 -*-
# Copyright: pgrepl contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # How every pgrepl.cluster module reaches the control database (the runner's catalog).
    DOCUMENTATION = r'''
options:
  login_host:
    description:
      - Host of the control database.
      - Ignored when O(login_unix_socket) is set. Empty means libpq's default (the local socket).
    type: str
    default: ''
  login_port:
    description:
      - Port of the control database (also the number in the name of the Unix socket).
    type: int
    default: 5432
  login_user:
    description:
      - Role to connect to the control database as.
      - Empty means libpq's default, the operating system user the module runs as; with peer
        authentication that is the runner's user, which is why the P(pgrepl.cluster.sync_runner#role)
        role runs the modules with C(become_user=pgrepl).
    type: str
    default: ''
  login_password:
    description:
      - Password of O(login_user). Empty for peer or C(.pgpass) authentication.
    type: str
    default: ''
  login_unix_socket:
    description:
      - Directory of the Unix socket of the control database, for example C(/var/run/postgresql).
    type: str
    default: ''
  control_db:
    description:
      - Name of the control database, where C(pgrepl install) created the C(pgrepl) schema.
      - The module fails when the schema is missing, except in check mode, where it predicts against an
        empty catalog and says so in RV(ignore:notes).
    type: str
    default: pgrepl
  ssl_mode:
    description:
      - libpq's C(sslmode) for the control database. Left out, libpq's default (C(prefer)).
      - Over the local socket (the default), TLS does not apply.
      - In P(pgrepl.cluster.pg_repl_db#module), O(ssl_mode) and O(ca_cert) describe the database declared, not the
        control database.
    type: str
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - CA certificate file the control database's server certificate must be signed by (libpq's C(sslrootcert)).
    type: str
    aliases: [ssl_rootcert]
requirements:
  - The pgrepl runner library (Python package C(pgrepl)) and psycopg 3 on the host the module runs on.
    The P(pgrepl.cluster.sync_runner#role) role installs both on the runner hosts.
notes:
  - The modules call the runner's own library (the code behind the C(pgrepl) command), so they and the
    runner always agree on what the catalog means; they never write the catalog with SQL of their own.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
'''
