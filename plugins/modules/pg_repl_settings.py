#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgrepl contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_repl_settings
short_description: Set the pgrepl runner's settings
description:
  - Sets the runner's settings in its control database (C(pgrepl set NAME=VALUE...)). A setting not given keeps its
    value. C(pgrepl show all -v) lists them with what they do.
  - Every name and value is checked before any is changed; an unknown setting or a bad value fails the task and
    changes nothing, in check mode too.
  - An unquoted C(on)/C(off) or C(yes)/C(no), which YAML reads as a boolean, is taken as the word the setting
    takes (C(capture_notify) on/off, C(fullcopy_analyze) yes/no).
version_added: 0.2.0
author: pgrepl maintainers (@pgrepl)
options:
  settings:
    description:
      - The settings to set, by name.
    type: dict
    required: true
extends_documentation_fragment:
  - pgrepl.cluster.control
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - The runner reads most settings at each poll. Those it reads as it starts or as a worker connects are listed in
    RV(restart) when they change; restart it then (the pgrepl.cluster.sync_runner role does).
seealso:
  - module: pgrepl.cluster.pg_repl_info
'''

EXAMPLES = r'''
- name: A week of history in status, alerts by email, NOTIFY from the capture triggers
  pgrepl.cluster.pg_repl_settings:
    settings:
      days_back: 7
      default_email_to: dba@example.org
      capture_notify: "on"   # unquoted, YAML makes it a boolean: taken as "on" too
    login_unix_socket: /var/run/postgresql
'''

RETURN = r'''
actions:
  description: What was done (or would be done in check mode), in words.
  returned: always
  type: list
  elements: str
  sample: ["set days_back to '7' (was '3')"]
notes:
  description: Why a check mode prediction may be incomplete.
  returned: always
  type: list
  elements: str
settings:
  description: The given settings' values after the run, as the runner stores them.
  returned: always
  type: dict
  sample: {"days_back": "7", "capture_notify": "on"}
restart:
  description: The changed settings that the runner reads only as it starts or a worker connects.
  returned: always
  type: list
  elements: str
  sample: ["log_level"]
'''

from ansible_collections.pgrepl.cluster.plugins.module_utils.control import (  # noqa: E402
    PgreplModule, catalog, runner_settings)


def main():
    m = PgreplModule(dict(settings=dict(type='dict', required=True)))
    wanted = {}
    for name, value in sorted(m.params['settings'].items()):   # all checked before any is set
        wanted[name] = m.run(runner_settings.validate, name, m.run(runner_settings.as_text, name, value))
    m.connect()
    current = (m.run(catalog.all_settings, m.conn) if m.conn is not None
               else runner_settings.defaults())
    before = dict((n, current[n]) for n in wanted)
    changed = [n for n in wanted if wanted[n] != before[n]]
    for name in changed:
        m.actions.append('set %s to %r (was %r)' % (name, wanted[name], before[name]))
        if not m.check_mode:
            m.run(catalog.set_setting, m.conn, name, wanted[name])
    restart = [n for n in changed if runner_settings.SETTINGS[n].at_start]
    m.exit(before, wanted, settings=wanted, restart=restart)


if __name__ == '__main__':
    main()
