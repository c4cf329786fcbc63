# -*- coding: utf-8 -*-
# Copyright: pgrepl contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What every pgrepl.cluster module shares: the control database options and connection, the guarded import of
the runner library, and the result (changed, actions, notes, diff) they return."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

PGREPL_IMPORT_ERROR = None
try:
    import psycopg
    from psycopg.conninfo import make_conninfo
    from pgrepl import catalog, passfile
    from pgrepl import settings as runner_settings  # pylint: disable=unused-import  # for pg_repl_settings
    from pgrepl.errors import NotFound, PgreplError
    HAS_PGREPL = True
except ImportError:
    HAS_PGREPL = False
    PGREPL_IMPORT_ERROR = traceback.format_exc()
    catalog = passfile = runner_settings = psycopg = make_conninfo = NotFound = PgreplError = None

MASK = '********'
# libpq's sslmode values, the choices of the ssl_mode options (community.postgresql's name).
SSL_MODES = ('allow', 'disable', 'prefer', 'require', 'verify-ca', 'verify-full')


def control_argument_spec():
    """The options of the control.py doc fragment."""
    return dict(
        login_host=dict(type='str', default=''),
        login_port=dict(type='int', default=5432),
        login_user=dict(type='str', default=''),
        login_password=dict(type='str', default='', no_log=True),
        login_unix_socket=dict(type='str', default=''),
        control_db=dict(type='str', default='pgrepl'),
        ssl_mode=dict(type='str', choices=list(SSL_MODES)),
        ca_cert=dict(type='str', aliases=['ssl_rootcert']),
    )


def control_conninfo(params, control_ssl=True):
    """CONTROL_SSL False: ssl_mode and ca_cert are the module's own (pg_repl_db's describe the database it declares)."""
    host = params['login_unix_socket'] or params['login_host']
    parts = dict(dbname=params['control_db'], host=host, port=params['login_port'], user=params['login_user'],
                 password=params['login_password'])
    if control_ssl:
        parts.update(sslmode=params.get('ssl_mode'), sslrootcert=params.get('ca_cert'))
    return make_conninfo(**dict((k, v) for k, v in parts.items() if v not in (None, '')))


def stored_password(db):
    """The password the runner's password file holds for a catalog database (None: none)."""
    return passfile.get(db)


def plain(value):
    """Catalog values made JSON-friendly: intervals and timestamps as text, tuples as lists."""
    if isinstance(value, dict):
        return dict((k, plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime.datetime, datetime.date, datetime.timedelta)):
        return str(value)
    return value


class PgreplModule(object):
    """An AnsibleModule with the control options, the control connection and the pgrepl result.

    `conn` is None only in check mode when the control database or its schema does not exist yet (the
    sync_runner role creates them in the same run): the module then predicts against an empty catalog."""

    def __init__(self, argument_spec, control_ssl=True, **kwargs):
        self.control_ssl = control_ssl
        spec = control_argument_spec()
        spec.update(argument_spec)
        self.module = AnsibleModule(argument_spec=spec, supports_check_mode=True, **kwargs)
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self.actions = []
        self.notes = []
        self.conn = None
        if not HAS_PGREPL:
            self.module.fail_json(msg=missing_required_lib('pgrepl (shipped by the pgrepl.cluster.sync_runner role)'),
                                  exception=PGREPL_IMPORT_ERROR)

    def connect(self):
        try:
            self.conn = catalog.open_control(control_conninfo(self.params, self.control_ssl))
        except PgreplError as e:
            missing = 'no pgrepl schema' in str(e) or 'database "%s" does not exist' % self.params['control_db'] in str(e)
            if not (self.check_mode and missing):
                self.fail(str(e))
            self.notes.append('check mode: the control database %s or its schema does not exist yet; changes '
                              'are predicted against an empty catalog' % self.params['control_db'])
        return self.conn

    def fail(self, msg):
        if self.conn is not None:
            self.conn.close()
        self.module.fail_json(msg=msg)

    def run(self, func, *args, **kwargs):
        """Calls the library; its refusals (PgreplError) and database errors become clean failures."""
        try:
            return func(*args, **kwargs)
        except PgreplError as e:
            self.fail(str(e))
        except psycopg.Error as e:  # e.g. the replication role may not create a trigger on a member database
            self.fail('database error: %s' % str(e).strip())

    def lookup(self, getter, name):
        """The catalog object NAME, or None when it does not exist (or there is no catalog yet)."""
        if self.conn is None:
            return None
        try:
            return getter(self.conn, name)
        except NotFound:
            return None

    def not_declared_yet(self, missing, refusal, consequence=''):
        """MISSING (words such as 'database test1_slave') are not in the catalog. A real run fails with REFUSAL; check
        mode assumes an earlier task of the play declares them, and says so in the notes (with CONSEQUENCE)."""
        if missing and not self.check_mode:
            self.fail(refusal)
        for what in missing:
            self.notes.append('check mode: %s is not in the catalog yet (an earlier task would add it)%s'
                              % (what, consequence))

    def check_name(self, kind, name):
        """Names are refused before anything else, in check mode too."""
        self.run(catalog.check_name, kind, name)

    def exit(self, before, after, **result):
        if self.conn is not None:
            self.conn.close()
        result = plain(result)
        result.update(changed=bool(self.actions), actions=self.actions, notes=self.notes)
        if self.module._diff:
            result['diff'] = dict(before=plain(before) or {}, after=plain(after) or {})
        self.module.exit_json(**result)
