"""Action plugin berth.stack.app_facts (documentation: plugins/modules/app_facts.py)."""

from __future__ import annotations

import re

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def host_facts(namespace):
    """The facts as modules set them, from the ansible_facts namespace (which drops "ansible_"
    but keeps Ansible's own "_ansible_" marks, such as the one that spares a play with
    `gathering = smart` from gathering the facts again)."""
    return {name if name.startswith(("ansible_", "_ansible_")) else "ansible_" + name: value
            for name, value in namespace.items()}


class ActionModule(ActionBase):
    """Sets the given variables as host facts; runs on the controller only.

    Facts rank above group_vars and host_vars, and `meta: clear_facts` removes them again (it
    cannot remove a set_fact): that is what lets one app's settings hold for its turn only.
    """

    _VALID_ARGS = frozenset(("facts", "host_facts"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = self._task.args
        if ("facts" in args) == ("host_facts" in args):
            raise AnsibleActionFail("give facts or host_facts, not both")
        facts = args.get("facts", args.get("host_facts"))
        if not isinstance(facts, dict):
            raise AnsibleActionFail("facts must be a mapping of variable names to values")
        if "host_facts" in args:
            facts = host_facts(facts)
        bad = sorted(str(name) for name in facts if not NAME.match(str(name)))
        if bad:
            raise AnsibleActionFail("not variable names: " + ", ".join(bad))
        result.update(changed=False, ansible_facts=dict(facts))
        return result
