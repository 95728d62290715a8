"""Action plugin berth.stack.source_pack (documentation: plugins/modules/source_pack.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

TAR_OPTIONS = ["--format=gnu", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner",
               "--mode=u+rwX,go+rX,go-w"]


def pack_command(kind, path, dest, exclude):
    """The command that writes the artefact of a dir or git source to dest."""
    if kind == "dir":
        return (["tar", "--create", "--file", dest, *TAR_OPTIONS]
                + [f"--exclude={pattern}" for pattern in exclude] + ["--directory", path, "."])
    return ["git", "-C", path, "archive", "--format=tar", "--output", dest, "HEAD"]


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as artefact:
        for block in iter(lambda: artefact.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ActionModule(ActionBase):
    """Packs the app's source on the controller and checksums it, in the task's own process.

    Three tasks delegated to localhost did this, and the first started a Python on the
    controller for them on every run.
    """

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("type", "path", "dest", "exclude"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = self._task.args
        kind, path = args.get("type"), args.get("path")
        if kind not in ("dir", "git", "wheel"):
            raise AnsibleActionFail("type must be dir, git or wheel")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise AnsibleActionFail("path must be an absolute path on the controller")
        dest = args.get("dest")
        if dest is not None and not (isinstance(dest, str) and os.path.isabs(dest)):
            raise AnsibleActionFail("dest must be an absolute path on the controller")
        if dest is None and kind != "wheel":
            raise AnsibleActionFail(f"type {kind} needs dest")
        if dest is not None:
            os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
        artefact = path
        if kind != "wheel":
            artefact = dest
            command = pack_command(kind, path, artefact, args.get("exclude") or [])
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise AnsibleActionFail(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()}")
        try:
            result.update(changed=False, path=artefact, checksum=sha256(artefact))
        except OSError as err:
            raise AnsibleActionFail(f"cannot read {artefact}: {err.strerror}") from None
        return result
