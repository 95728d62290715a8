#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Documentation of berth.stack.apt_present, an action plugin (plugins/action/apt_present.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: apt_present
short_description: Install Debian packages, asking dpkg first whether any is missing
description:
  - ansible.builtin.apt with I(state=present), run only when C(dpkg-query) reports one of the
    packages not installed. apt opens the whole package cache on each call, seconds of CPU on
    a small host even when nothing is missing; a run where every package is in place makes
    only the query.
  - In check mode the query is not made and apt answers, as it would alone.
options:
  name:
    description: A package name or a list of them, as apt takes them.
    type: list
    elements: str
    required: true
  update_cache:
    description: Passed to apt (update the lists first, when something is to be installed).
    type: bool
  cache_valid_time:
    description: Passed to apt (seconds the lists stay fresh enough).
    type: int
  install_recommends:
    description: Passed to apt (false installs the named packages' dependencies only).
    type: bool
author: berth
"""

EXAMPLES = r"""
- name: Install nginx
  berth.stack.apt_present:
    name: [nginx, python3-passlib]
    update_cache: true
    cache_valid_time: 3600
"""

RETURN = r"""
msg:
  description: When nothing was missing, the packages found installed.
  type: str
  returned: when apt did not run
"""
