"""Action plugin berth.stack.checks (documentation: plugins/modules/checks.py)."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

KEYS = frozenset(("that", "msg", "when"))


def as_list(value):
    return value if isinstance(value, list) else [value]


class ActionModule(ActionBase):
    """A role's checks in one task: each with its own conditions, message and `when`.

    One assert task per check cost a task each (~0.04 s of the controller per run, for ~70
    checks); a loop of asserts would render every message up front. Here nothing is rendered
    before its turn: a check's `when`, then its conditions one by one, and its message only when
    it fails.
    """

    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("checks",))

    @classmethod
    def finalize_task_arg(cls, name, value, templar, context):
        # the checks are rendered one by one in run(), not all before it
        if name == "checks":
            return value
        return super().finalize_task_arg(name, value, templar, context)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        checks = self._task.args.get("checks")
        if not isinstance(checks, list) or not checks:
            raise AnsibleActionFail("checks: a list of checks, each with that and msg")
        for check in checks:
            if not isinstance(check, dict) or "that" not in check or "msg" not in check or set(check) - KEYS:
                raise AnsibleActionFail(f"checks: each check has that and msg, and may have when (got {check!r})")
            if not all(self._templar.evaluate_conditional(when) for when in as_list(check.get("when", True))):
                continue
            for that in as_list(check["that"]):
                if not self._templar.evaluate_conditional(that):
                    result.update(failed=True, assertion=that, evaluated_to=False,
                                  msg=self._templar.template(check["msg"]))
                    return result
        result.update(changed=False, msg="All checks passed")
        return result
