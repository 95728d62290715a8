# -*- coding: utf-8 -*-
"""Filters berth.stack.env_values (the values of a berth secrets env file, by name) and
berth.stack.secret_id (the short public name of a secret value, as {NAME:id} in derived values)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.berth.stack.plugins.module_utils.secrets_file import SecretsError, parse, secret_id

DOCUMENTATION = r"""
name: env_values
short_description: Parse a berth secrets env file into a dict of values
description:
  - For roles that consume a secret (a database or Redis password) on the host. Use it only in
    tasks with no_log, on the content read by the secrets role's tasks_from read.
positional: _input
options:
  _input:
    description: The file's text.
    type: str
    required: true
"""

EXAMPLES = r"""
password: "{{ (secrets_read.content | b64decode | berth.stack.env_values).REDIS_PASSWORD }}"
"""

RETURN = r"""
_value:
  description: NAME to value.
  type: dict
"""


def env_values(text):
    try:
        return parse(text)[0]
    except SecretsError as err:
        raise AnsibleFilterError(str(err)) from None


class FilterModule:
    def filters(self):
        return {"env_values": env_values, "secret_id": secret_id}
