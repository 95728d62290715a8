#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Documentation of berth.stack.login_facts, an action plugin (plugins/action/login_facts.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: login_facts
short_description: Tell whether Ansible logs in to the host with a password
description:
  - Runs on the controller. Reports whether the connection holds a login password, whatever
    gave it, the variables C(ansible_password), C(ansible_ssh_pass), C(ansible_ssh_password)
    or the command line (C(-k), C(--connection-password-file)). The password itself is never
    returned.
options: {}
author: berth
"""

EXAMPLES = r"""
- name: Read how Ansible logs in
  berth.stack.login_facts:
  register: login
"""

RETURN = r"""
password:
  description: True when Ansible was given a login password for this host.
  type: bool
  returned: always
"""
