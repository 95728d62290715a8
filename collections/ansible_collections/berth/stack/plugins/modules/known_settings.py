#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Documentation of berth.stack.known_settings, an action plugin (plugins/action/known_settings.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: known_settings
short_description: Refuse variables named like berth's settings that berth never reads
description:
  - Runs on the controller. A variable of the host whose name starts like berth's settings
    (C(berth_) or a role's name and C(_), for every role in the roles path) must be read
    somewhere in berth (a role's files, a playbook, or a value in the project's group_vars).
    Otherwise it fails, naming each such variable with the closest known name.
  - A misspelt setting would otherwise be ignored and its default used, silently.
options:
  allow:
    description: Names of the user's own variables that only look like berth's.
    type: list
    elements: str
    default: []
  apps:
    description:
      - The apps' entries (C(berth_apps)). Each name in an entry must be one of berth's settings
        that berth reads (an entry holds an app's own settings); any other name fails.
    type: list
    elements: dict
    default: []
author: berth
"""

EXAMPLES = r"""
- name: Refuse settings that berth does not read
  berth.stack.known_settings:
    allow: "{{ berth_own_settings | default([]) }}"
"""

RETURN = r"""
unknown:
  description: The variables refused (none when it succeeds).
  type: list
  elements: str
  returned: always
"""
