"""The app's persistent files (files_dir, e.g. /srv/APP/shared) in berth's backups, for
berth-backup: a tar staged before the dump (by root in the unit: the database's user may not read
the app's files), sealed into the backup with the dump and covered by its checksums, counted by
the drill, and put back by root on a restore. Uncompressed, so that restic deduplicates files
that did not change.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import tarfile
from pathlib import Path

TAR = "files.tar"
STAGED = ".files.tar"


class FilesError(Exception):
    pass


def summary(path: Path) -> dict[str, int]:
    files = size = 0
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile():
                files += 1
                size += member.size
    return {"files": files, "bytes": size}


def stage(cfg: dict) -> None:
    """Tar files_dir into the backup directory for the next backup (a missing directory is an
    empty one: the app may not have written any file yet)."""
    if not cfg.get("files_dir"):
        return
    source, root = Path(cfg["files_dir"]), Path(cfg["dir"])
    tmp = root / f"{STAGED}.tmp"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            if source.is_dir():
                for path in sorted(source.rglob("*")):
                    # files and directories only: a link or a socket is not the app's data
                    if path.is_dir() and not path.is_symlink() or path.is_file() and not path.is_symlink():
                        tar.add(path, arcname=str(path.relative_to(source)), recursive=False)
        os.chmod(tmp, 0o600)
        if os.geteuid() == 0:
            user = pwd.getpwnam(cfg.get("run_as", cfg["owner"]))
            os.chown(tmp, user.pw_uid, user.pw_gid)
        os.rename(tmp, root / STAGED)
    except PermissionError as err:
        tmp.unlink(missing_ok=True)
        raise FilesError(f"cannot read the app's files ({err}): `berth-backup stage-files` runs as root"
                         " first (the unit's ExecStartPre does)") from None


def seal(cfg: dict, backup_tmp: Path) -> dict[str, int] | None:
    """Move the staged tar into the backup being built; its summary goes to the manifest."""
    if not cfg.get("files_dir"):
        return None
    staged = Path(cfg["dir"]) / STAGED
    if not staged.is_file():
        stage(cfg)
    os.rename(staged, backup_tmp / TAR)
    return summary(backup_tmp / TAR)


def check(backup: Path, expected: dict | None) -> str:
    if expected is None:
        return ""
    got = summary(backup / TAR)
    if got != expected:
        raise FilesError(f"files.tar holds {got}, the manifest says {expected}")
    return f", {got['files']} files"


def _safe(tar: tarfile.TarFile):
    """Files and directories inside the tree only (Debian 12's Python has no extraction filter)."""
    for member in tar:
        parts = Path(member.name).parts
        if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
            raise FilesError(f"files.tar: {member.name!r} is not a file or directory inside the tree")
        yield member


def _gid(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _own(cfg: dict, tree: Path, members: list, like: Path) -> None:
    """Everything to the app's user; a member keeps its group only when it is the app's or one of
    files_groups (the web server's, for what nginx serves), else the app's group. No set-id bit
    survives on a file; a directory keeps its setgid (new files inherit its group). The tree
    itself as `like` is, the live directory the app role made (0751 when nginx serves a part)."""
    user = pwd.getpwnam(cfg["owner"])
    allowed = {grp.getgrgid(user.pw_gid).gr_name, *cfg.get("files_groups", [])}
    for member in members:
        gid = _gid(member.gname) if member.gname in allowed else None
        path = tree / member.name
        os.chown(path, user.pw_uid, user.pw_gid if gid is None else gid, follow_symlinks=False)
        os.chmod(path, member.mode & (0o2777 if member.isdir() else 0o777))
    live = like.stat() if like.exists() else None
    os.chown(tree, live.st_uid if live else user.pw_uid, live.st_gid if live else user.pw_gid)
    os.chmod(tree, stat.S_IMODE(live.st_mode) if live else 0o750)


def restore(cfg: dict, backup: Path) -> None:
    """Replace files_dir with the backup's files (as root: they belong to the app's user)."""
    if not (backup / TAR).is_file():
        return
    target = Path(cfg["files_dir"])
    new, old = target.with_name(f".{target.name}.restore"), target.with_name(f".{target.name}.old")
    shutil.rmtree(new, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    new.mkdir(mode=0o750, parents=True)
    with tarfile.open(backup / TAR) as tar:
        members = list(_safe(tar))
        tar.extractall(new, members=members)  # noqa: S202  checked by _safe
    _own(cfg, new, members, like=target)
    if target.exists():
        os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)
