#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Documentation of berth.stack.checks, an action plugin (plugins/action/checks.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: checks
short_description: Several checks of settings in one task, each with its own message
description:
  - Runs on the controller, in the task's own process (no connection, nothing on the host).
  - Goes through O(checks) in order. A check whose O(checks[].when) is false is passed over;
    otherwise each of its O(checks[].that) is evaluated as a conditional (as
    M(ansible.builtin.assert) does), and the first that is false fails the task with that
    check's O(checks[].msg).
  - Nothing is rendered before its turn, and a message only when its check fails, so a message
    may name what exists only when the check fails.
options:
  checks:
    description: The checks, in order.
    type: list
    elements: dict
    required: true
    suboptions:
      that:
        description: A conditional or a list of them, all of which must be true.
        type: raw
        required: true
      msg:
        description: The message when one of O(checks[].that) is false.
        type: str
        required: true
      when:
        description: A conditional or a list of them; the check applies only when all are true.
        type: raw
author: berth
"""

EXAMPLES = r"""
- name: Check the settings
  berth.stack.checks:
    checks:
      - that: myrole_port | int in range(1, 65536)
        msg: "myrole: myrole_port must be a port number (got {{ myrole_port }})."
      - that:
          - myrole_user != 'root'
          - myrole_home is match('^/')
        msg: "myrole: myrole_user is not root, myrole_home an absolute path."
        when: myrole_enabled
"""

RETURN = r"""
assertion:
  description: The conditional that was false.
  type: str
  returned: failure
"""
