# -*- coding: utf-8 -*-
# Copyright: pgrepl contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The library's refusals, asked before anything changes (check mode predicts what the real run refuses).
Thin names over the library's public validators: no check is written twice."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    from pgrepl import catalog
except ImportError:
    catalog = None  # control.PgreplModule reports the missing library


def check_targets(conn, sync, targets):
    """Source not among the targets, at least one target."""
    catalog.check_targets(conn, sync, targets)


def check_pkless_in_delta_herd(conn, herd, tables):
    """A table without a key cannot join a herd that a pushdelta or swap sync reads."""
    catalog.check_relations(conn, herd, tables)


def check_sync(conn, name, herd, sync_type, targetdb, targetgroup, checktime):
    """Everything catalog.add_sync refuses; returns the sync as it would be."""
    return catalog.check_sync(conn, name, herd, sync_type, targetdb, targetgroup, checktime)
