"""Action plugin berth.stack.apt_present (documentation: plugins/modules/apt_present.py)."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

# What dpkg-query prints per package: its status (ii = wanted and installed) and name.
QUERY_FORMAT = "${db:Status-Abbrev}|${Package}\\n"


def missing_packages(names, dpkg_output):
    """The names that dpkg-query's output (QUERY_FORMAT lines) does not report installed."""
    installed = {line.split("|", 1)[1].strip() for line in dpkg_output.splitlines()
                 if line.startswith("ii") and "|" in line}
    return [name for name in names if name not in installed]


class ActionModule(ActionBase):
    """ansible.builtin.apt with state=present, run only when dpkg says a package is missing.

    The apt module opens the whole package cache on every call, seconds of CPU on a small host even
    when everything is installed; dpkg-query answers in milliseconds. apt keeps every decision:
    it runs for any name dpkg does not report installed (a virtual package included), and in
    check mode, where the query does not run.
    """

    _VALID_ARGS = frozenset(("name", "update_cache", "cache_valid_time", "install_recommends"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        names = self._task.args.get("name")
        if isinstance(names, str):
            names = [names]
        if not names or not all(isinstance(name, str) and name for name in names):
            raise AnsibleActionFail("name must be a package name or a list of them")
        if not self._task.check_mode:
            query = self._execute_module(
                module_name="ansible.builtin.command",
                module_args={"argv": ["dpkg-query", "-W", "-f", QUERY_FORMAT, "--", *names]},
                task_vars=task_vars)
            # dpkg-query exits 1 when a name is unknown to it: its output still counts.
            if "stdout" in query and not missing_packages(names, query["stdout"]):
                result.update(changed=False, msg="installed: " + ", ".join(names))
                return result
        apt_args = {"name": names, "state": "present"}
        for key in ("update_cache", "cache_valid_time", "install_recommends"):
            if key in self._task.args:
                apt_args[key] = self._task.args[key]
        result.update(self._execute_module(module_name="ansible.builtin.apt", module_args=apt_args,
                                           task_vars=task_vars))
        return result
