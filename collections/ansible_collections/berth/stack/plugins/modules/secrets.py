#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module berth.stack.secrets (documentation below)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: secrets
short_description: Keep an app's secrets in an env file on the host, generated and rotated there
description:
  - Generates each missing secret on the host from its CSPRNG, writes provided values, rotates
    the named secrets keeping the old value as NAME_PREVIOUS for an overlap, removes
    NAME_PREVIOUS once the overlap has passed, and renders values derived from secrets (URLs).
  - The file is written atomically (temporary file + rename) and only when its content, owner
    or mode must change. The result names secrets; it never contains a value.
options:
  path:
    description: The env file (a systemd EnvironmentFile).
    type: path
    required: true
  owner:
    description: Owner of the file.
    type: str
    default: root
  group:
    description: Group of the file (the app's group).
    type: str
    required: true
  mode:
    description: Mode of the file; nothing for other users is accepted.
    type: str
    default: "0640"
  secrets:
    description:
      - The declared secrets. Each has name, source (generated or provided), bytes and encoding
        (hex or base64url) for generated ones, min_length, and required for provided ones.
      - A generated secret with rotate_with_all false rotates only when named, not with [all].
      - A generated secret with expires false keeps NAME_PREVIOUS after a rotation until it is
        retired (an encryption key, whose old value still decrypts data).
    type: list
    elements: dict
    required: true
  provided:
    description: Values of the provided secrets, by name.
    type: dict
    default: {}
  rotate:
    description:
      - Names to rotate now, or [all].
      - A secret whose NAME_PREVIOUS is still kept is refused (a second rotation would drop the
        value whatever was issued before the first still uses), unless I(force) or I(retire).
    type: list
    elements: str
    default: []
  retire:
    description: Names whose NAME_PREVIOUS is removed now, whatever the overlap.
    type: list
    elements: str
    default: []
  force:
    description: Rotate a secret whose NAME_PREVIOUS is still kept, dropping that value.
    type: bool
    default: false
  overlap:
    description: Seconds NAME_PREVIOUS is kept after a rotation; 0 keeps none.
    type: int
    default: 604800
  derived:
    description: Values derived from secrets, NAME to a template whose {SECRET} fields are URL-quoted.
    type: dict
    default: {}
  leader:
    description:
      - The text of the secrets file of the host that keeps these secrets (the database server,
        for a web server). Its values and rotation lines are taken as they are; nothing is
        generated, rotated or expired here, and only I(derived) is rendered for this host.
      - I(provided), I(rotate), I(retire) and I(force) are then ignored (the leader's run applies them).
    type: str
  views:
    description:
      - Files that each give one reader the values it uses, the file's values but the withheld
        names and their NAME_PREVIOUS, rewritten after the file, only when they must change.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: The view's path., type: path, required: true}
      group: {description: Its group (its reader's)., type: str, required: true}
      mode: {description: Its mode; nothing for other users is accepted., type: str, default: "0640"}
      withhold: {description: Names left out., type: list, elements: str, default: []}
author: berth
"""

EXAMPLES = r"""
- name: Keep the app's secrets
  berth.stack.secrets:
    path: /etc/berth/app/secrets.env
    group: app
    secrets:
      - {name: JWT_SECRET, bytes: 32, encoding: base64url, min_length: 32}
      - {name: SMTP_PASS, source: provided, min_length: 8, required: false}
    provided: {SMTP_PASS: "{{ vault_smtp_pass }}"}
    rotate: "{{ (rotate_secrets | default('')).split(',') | select }}"
  no_log: true
"""

RETURN = r"""
changed_names: {description: Every name whose value changed (no values)., type: list, returned: always}
generated: {description: Secrets created on this run., type: list, returned: without leader}
rotated: {description: Secrets rotated on this run., type: list, returned: without leader}
expired: {description: NAME_PREVIOUS values removed on this run (expired or retired)., type: list, returned: without leader}
followed: {description: Names taken from the leader's file on this run (with I(leader))., type: list, returned: with leader}
views: {description: Per view path, the names whose value in it changed (no values)., type: dict, returned: always}
"""

import grp
import os
import pwd
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.berth.stack.plugins.module_utils.secrets_file import (
    SecretsError, changed_between, follow, plan, view)


def _write_atomically(path, text, uid, gid, mode):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".secrets.")
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, path)
        dir_fd = os.open(directory, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read(path):
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _ids(module, owner, group):
    try:
        return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError as missing:
        # a first run's preflight comes before the user exists: nothing to compare yet
        if not module.check_mode:
            module.fail_json(msg=f"secrets: no such user or group: {missing}")
        return -1, -1


def _mode(module, text):
    mode = int(text, 8)
    if mode & 0o007:
        module.fail_json(msg=f"mode {text} gives other users access to secrets")
    return mode


def _keep(module, path, old_text, new_text, owner, group, mode):
    """Writes path when its content, owner or mode must change; returns whether it did."""
    uid, gid = _ids(module, owner, group)
    st = os.stat(path) if os.path.exists(path) else None
    content_changed = new_text != old_text
    changed = content_changed or st is None or (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (uid, gid, mode)
    if changed and not module.check_mode:
        if content_changed or st is None:
            _write_atomically(path, new_text, uid, gid, mode)
        else:
            os.chown(path, uid, gid)
            os.chmod(path, mode)
    return changed


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "required": True},
            "mode": {"type": "str", "default": "0640"},
            "secrets": {"type": "list", "elements": "dict", "required": True},
            "provided": {"type": "dict", "default": {}, "no_log": True},
            "rotate": {"type": "list", "elements": "str", "default": []},
            "retire": {"type": "list", "elements": "str", "default": []},
            "force": {"type": "bool", "default": False},
            "overlap": {"type": "int", "default": 604800},
            "derived": {"type": "dict", "default": {}},
            "leader": {"type": "str", "no_log": True},
            "views": {"type": "list", "elements": "dict", "default": [], "options": {
                "path": {"type": "path", "required": True},
                "group": {"type": "str", "required": True},
                "mode": {"type": "str", "default": "0640"},
                "withhold": {"type": "list", "elements": "str", "default": []},
            }},
        },
        supports_check_mode=True,
    )
    p = module.params
    path = p["path"]
    # every mode checked before anything is written: a refused view leaves no file changed
    mode = _mode(module, p["mode"])
    view_modes = [_mode(module, v["mode"]) for v in p["views"]]
    text = _read(path)
    provided = {k: "" if v is None else str(v) for k, v in p["provided"].items()}
    try:
        if p["leader"] is not None:
            new_text, report = follow(text, p["leader"], p["secrets"], p["derived"])
        else:
            new_text, report = plan(
                text, p["secrets"], provided, p["rotate"], p["overlap"], int(time.time()), p["derived"],
                retire=p["retire"], force=p["force"])
        views = [(v, _read(v["path"]), view(new_text, v["withhold"])) for v in p["views"]]
        view_changes = {v["path"]: changed_between(old, new) for v, old, new in views}
    except SecretsError as err:
        module.fail_json(msg=f"secrets: {err}")

    changed_names = sorted(set(sum(report.values(), [])))
    # the secrets file first: a view is rewritten from it, at this run or the next
    changed = _keep(module, path, text, new_text, p["owner"], p["group"], mode)
    for (v, old, new), view_mode in zip(views, view_modes):
        changed |= _keep(module, v["path"], old, new, p["owner"], v["group"], view_mode)
    module.exit_json(changed=changed, changed_names=changed_names, views=view_changes, **report)


if __name__ == "__main__":
    main()
