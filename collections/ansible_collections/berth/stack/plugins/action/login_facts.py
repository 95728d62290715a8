"""Action plugin berth.stack.login_facts (documentation: plugins/modules/login_facts.py)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase


def connection_has_password(connection, play_context):
    """Whether Ansible holds a login password for this connection, from any source.

    A variable (ansible_password, ansible_ssh_pass, ansible_ssh_password) reaches the connection's
    `password` option; -k and --connection-password-file reach the play context.
    """
    try:
        if connection.get_option("password"):
            return True
    except KeyError:
        pass  # a connection plugin without passwords (local)
    return bool(getattr(play_context, "password", None))


class ActionModule(ActionBase):
    """Tells how Ansible logs in to the host; runs on the controller only, returns no secret."""

    _VALID_ARGS = frozenset()

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        result.update(changed=False,
                      password=connection_has_password(self._connection, self._play_context))
        return result
