"""Action plugin berth.stack.known_settings (documentation: plugins/modules/known_settings.py)."""

from __future__ import annotations

import difflib
import os
import re

from ansible import constants as C
from ansible.plugins.action import ActionBase

TEXT_SUFFIXES = (".yml", ".yaml", ".j2", ".md", ".py", ".sh", ".cfg", ".conf")
# A settings file's own keys are what is being checked: only its values count as readers.
LEADING_KEY = re.compile(r"^\s*(?:-\s+)?[A-Za-z0-9_]+:")


def read(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError):
        return ""


def role_names(roles_dir):
    return sorted(entry for entry in os.listdir(roles_dir)
                  if os.path.isdir(os.path.join(roles_dir, entry, "tasks")))


def project_texts(roles_dir):
    """The text of every file that reads berth's variables: the roles, the playbooks beside them,
    and the values (not the keys) of the project's group_vars."""
    for root, _dirs, names in os.walk(roles_dir):
        for name in names:
            if name.endswith(TEXT_SUFFIXES):
                yield read(os.path.join(root, name))
    project = os.path.dirname(os.path.abspath(roles_dir))
    for name in sorted(os.listdir(project)):
        if name.endswith((".yml", ".yaml")):
            yield read(os.path.join(project, name))
    for root, _dirs, names in os.walk(os.path.join(project, "playbooks")):
        for name in sorted(names):
            if name.endswith((".yml", ".yaml")):
                yield read(os.path.join(root, name))
    group_vars = os.path.join(project, "group_vars")
    if os.path.isdir(group_vars):
        for root, _dirs, names in os.walk(group_vars):
            for name in names:
                text = read(os.path.join(root, name))
                yield "\n".join(LEADING_KEY.sub("", line) for line in text.splitlines())


def settings_pattern(prefixes):
    return re.compile(r"\b(?:%s)_[a-z0-9_]+\b" % "|".join(re.escape(p) for p in sorted(prefixes)))


def unknown_settings(names, known, pattern):
    """{name: suggestion or None} for each name in berth's namespaces that berth never reads."""
    unknown = {}
    for name in sorted(names):
        if pattern.fullmatch(name) and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            unknown[name] = close[0] if close else None
    return unknown


def describe(unknown):
    return ", ".join(name + (f" (did you mean {close}?)" if close else "") for name, close in unknown.items())


class ActionModule(ActionBase):
    """Refuses variables named like berth's settings that no role or playbook of berth reads."""

    _VALID_ARGS = frozenset(("allow", "apps"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        roles_dirs = [path for path in C.DEFAULT_ROLES_PATH if os.path.isdir(path)]
        prefixes = {"berth"}
        known = set()
        for roles_dir in roles_dirs:
            prefixes.update(role_names(roles_dir))
        pattern = settings_pattern(prefixes)
        for roles_dir in roles_dirs:
            for text in project_texts(roles_dir):
                known.update(pattern.findall(text))
        known.update(self._task.args.get("allow") or [])
        unknown = unknown_settings(task_vars or {}, known, pattern)
        result.update(changed=False, unknown=sorted(unknown))
        if unknown:
            result.update(failed=True, msg=(
                "berth reads no setting named " + describe(unknown) + ": a misspelt name would be "
                "ignored silently. Correct it, or list a variable of your own in berth_own_settings."))
            return result
        # an app's entry holds berth's settings only: any other name would be ignored
        apps = self._task.args.get("apps") or []
        names = {name for app in apps if isinstance(app, dict) for name in app}
        wrong = unknown_settings(names, known, pattern)
        wrong.update({name: None for name in sorted(names) if not pattern.fullmatch(str(name))})
        if wrong:
            result.update(failed=True, unknown=sorted(wrong), msg=(
                "berth_apps: berth reads no setting named " + describe(wrong) + ": an app's entry "
                "holds berth's settings (berth_*, app_*, nginx_*, ...) for that app."))
        return result
