#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Documentation of berth.stack.app_facts, an action plugin (plugins/action/app_facts.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: app_facts
short_description: Set variables as host facts, for one app's turn
description:
  - Runs on the controller. Sets each given variable as a host fact. Facts rank above
    group_vars and host_vars (and below play, role, task and extra vars), so an app's
    settings given this way win over the group's for every role input derived from them;
    C(ansible.builtin.meta) C(clear_facts) removes them, which a C(set_fact) cannot be.
  - berth's per-app loop (playbooks/tasks/each-app.yml) sets an app's C(berth_apps) entry for
    its turn, then clears the facts and puts the host's gathered facts back with it.
options:
  facts:
    description: Variable names and their values. One of O(facts) and O(host_facts) is required.
    type: dict
  host_facts:
    description:
      - A copy of C(ansible_facts) taken earlier, to put back as the modules had set it (each
        name prefixed C(ansible_) again, as C(ansible_facts) drops it).
    type: dict
author: berth
"""

EXAMPLES = r"""
- name: The settings of one app
  berth.stack.app_facts:
    facts: {berth_app_name: shop, berth_domains: [shop.example.com]}
"""

RETURN = r"""
ansible_facts:
  description: The variables, as given.
  type: dict
  returned: always
"""
