"""Remote copies of berth's backups in restic repositories (SFTP, REST, S3), for berth-backup.

A remote is a dict from the backup config: name, type (sftp, rest, s3, local) and the type's
fields. Secrets (the repository password, the remote's credentials) come from the app's secrets
file, read when needed; they reach restic through its environment, never its arguments.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import urllib.parse
from pathlib import Path

PREVIOUS = "_PREVIOUS"
TAG = "berth"
# restic 0.14 has no exit codes of its own: its errors are told apart by their text.
WRONG_PASSWORD = "wrong password"


class RemoteError(Exception):
    pass


def read_env(path: str) -> dict[str, str]:
    return parse_env(Path(path).read_text())


def parse_env(text: str) -> dict[str, str]:
    """NAME=value lines of a systemd EnvironmentFile as the secrets role writes them."""
    values = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r'\\(["\\$`])', r"\1", value[1:-1])
        values[name] = value
    return values


STAGED = "secrets.env"
# The whole secrets file, encrypted with the recovery password, pushed with every backup: what a
# bare server needs first (recover-secrets).
SEALED = "secrets.env.enc"


def secret_names(cfg: dict) -> list[str]:
    """The names the remotes need from the secrets file."""
    password = cfg.get("password_secret", "RESTIC_PASSWORD")
    names = {password, password + PREVIOUS}
    for spec in cfg.get("remotes") or []:
        names |= {value for key, value in spec.items() if key.endswith("_secret") and value}
    return sorted(names)


def stage(cfg: dict) -> None:
    """Run as root before the unit's steps (ExecStartPre=+): copy the names the remotes need, and
    no other secret, into the unit's private runtime directory for its user. (systemd's
    LoadCredential= would hand over the whole file, and its directory is unreadable in some
    containers.)"""
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    if not runtime:
        raise RemoteError("stage-secrets runs from the unit (it needs RuntimeDirectory=)")
    values = read_env(cfg["secrets_file"])
    user = pwd.getpwnam(cfg.get("run_as", cfg["owner"]))
    write_private(Path(runtime, STAGED), "".join(f"{name}={values[name]}\n" for name in secret_names(cfg)
                                                 if name in values), user)
    recovery = values.get(cfg.get("recovery_secret") or "")
    if recovery:
        write_private(Path(runtime, SEALED), openssl(Path(cfg["secrets_file"]).read_text(), recovery, decrypt=False),
                      user)


def write_private(path: Path, text: str, user: pwd.struct_passwd | None = None) -> None:
    """A secret's file: 0600 from its first byte (never the umask's mode), owned by user, put in
    place by a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    if user is not None:
        os.chown(tmp, user.pw_uid, user.pw_gid)
    os.rename(tmp, path)


def openssl(text: str, password: str, decrypt: bool) -> str:
    """AES-256 under a PBKDF2 key, base64; the password reaches openssl in its environment only."""
    args = ["openssl", "enc", "-aes-256-cbc", "-pbkdf2", "-iter", "200000", "-md", "sha256", "-a", "-A",
            "-pass", "env:BERTH_RECOVERY_PASSWORD"] + (["-d"] if decrypt else [])
    proc = subprocess.run(args, input=text, capture_output=True, text=True, check=False,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "BERTH_RECOVERY_PASSWORD": password})
    if proc.returncode != 0:
        raise RemoteError("cannot decrypt the secrets: wrong recovery password?" if decrypt
                          else f"cannot encrypt the secrets: {last_lines(proc.stderr)}")
    return proc.stdout


def secrets_path(cfg: dict) -> str:
    # In the unit: what stage() copied; run by root from a playbook: the file itself.
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    if runtime and Path(runtime, STAGED).is_file():
        return str(Path(runtime, STAGED))
    return cfg["secrets_file"]


class Remote:
    def __init__(self, cfg: dict, spec: dict, secrets: dict[str, str]):
        self.cfg = cfg
        self.spec = spec
        self.name = spec["name"]
        self.secrets = secrets
        password_name = cfg.get("password_secret", "RESTIC_PASSWORD")
        if not secrets.get(password_name):
            raise RemoteError(f"{self.name}: no {password_name} in the secrets file")
        self.password = secrets[password_name]
        self.previous = secrets.get(password_name + PREVIOUS)

    def _secret(self, key: str) -> str:
        name = self.spec.get(key)
        if not name:
            return ""
        if not self.secrets.get(name):
            raise RemoteError(f"{self.name}: {key} names {name}, which is not in the secrets file")
        return self.secrets[name]

    def repository(self) -> str:
        kind = self.spec["type"]
        if kind == "local":
            return self.spec["path"]
        if kind == "sftp":
            return f"sftp:{self.spec['user']}@{self.spec['host']}:{self.spec['path']}"
        if kind == "s3":
            return f"s3:{self.spec['endpoint'].rstrip('/')}/{self.spec['bucket']}/{self.spec.get('path', '')}".rstrip("/")
        if kind == "rest":
            url = urllib.parse.urlsplit(self.spec["url"])
            if url.password is not None:
                raise RemoteError(f"{self.name}: the url holds a password: name its secret in password_secret")
            netloc = url.netloc
            if self.spec.get("user"):
                auth = urllib.parse.quote(self.spec["user"], safe="")
                password = self._secret("password_secret")
                if password:
                    auth += ":" + urllib.parse.quote(password, safe="")
                netloc = f"{auth}@{netloc}"
            return "rest:" + urllib.parse.urlunsplit((url.scheme, netloc, url.path, "", ""))
        raise RemoteError(f"{self.name}: unknown type {kind!r}")

    def environment(self, password: str) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"),
               "RESTIC_REPOSITORY": self.repository(), "RESTIC_PASSWORD": password}
        if self.spec["type"] == "s3":
            env["AWS_ACCESS_KEY_ID"] = self._secret("access_key_id_secret")
            env["AWS_SECRET_ACCESS_KEY"] = self._secret("secret_access_key_secret")
            if self.spec.get("region"):
                env["AWS_DEFAULT_REGION"] = self.spec["region"]
        return env

    def options(self) -> list[str]:
        opts = []
        cache = os.environ.get("CACHE_DIRECTORY")  # the unit's CacheDirectory=
        opts += ["--cache-dir", cache] if cache else ["--no-cache"]
        if self.spec.get("ca_file"):
            opts += ["--cacert", self.spec["ca_file"]]
        if self.spec["type"] == "sftp":
            ssh = ["ssh", "-F", "/dev/null", "-i", self.cfg["ssh_key"], "-p", str(self.spec.get("port", 22)),
                   "-o", f"UserKnownHostsFile={self.cfg['known_hosts']}", "-o", "StrictHostKeyChecking=yes",
                   "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=30",
                   f"{self.spec['user']}@{self.spec['host']}", "-s", "sftp"]
            opts += ["-o", "sftp.command=" + " ".join(ssh)]
        return opts

    def restic(self, *args: str, password: str | None = None, stdin: str | None = None,
               cwd: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["restic", *self.options(), *args], input=stdin, text=True, cwd=cwd,
                              capture_output=True, env=self.environment(password or self.password),
                              check=False)
        proc.stderr = self.scrub(proc.stderr)
        if check and proc.returncode != 0:
            raise RemoteError(f"{self.name}: restic {args[0]} failed: {last_lines(proc.stderr)}")
        return proc

    def scrub(self, text: str) -> str:
        """restic's messages may quote the repository's URL: no secret goes on from here."""
        for value in self.secrets.values():
            if len(value) >= 8:
                text = text.replace(value, "***").replace(urllib.parse.quote(value, safe=""), "***")
        return text

    # --- repository access ---------------------------------------------------------------

    def open(self, init: bool = False) -> str:
        """Check that the repository opens with the current password. After a rotation it still
        opens with the previous one: the current one is added as a key and the old key removed.
        With init, a missing repository is created. Returns what was done: ok, rekeyed, created."""
        probe = self.restic("cat", "config", check=False)
        if probe.returncode == 0:
            return "ok"
        if WRONG_PASSWORD in probe.stderr:
            if self.previous and self.restic("cat", "config", password=self.previous, check=False).returncode == 0:
                self._rekey()
                return "rekeyed"
            raise RemoteError(f"{self.name}: the repository refuses the password (wrong password);"
                              " nothing was changed in it")
        if init:
            created = self.restic("init", check=False)
            if created.returncode == 0:
                return "created"
            raise RemoteError(f"{self.name}: cannot open the repository ({last_lines(probe.stderr)}) nor"
                              f" create one ({last_lines(created.stderr)})")
        raise RemoteError(f"{self.name}: cannot open the repository: {last_lines(probe.stderr)}")

    def add_recovery_key(self) -> bool:
        """The recovery password (a provided secret, kept in ansible-vault) opens the repository
        too: a bare server can read it before it has any secret of its own."""
        recovery = self.secrets.get(self.cfg.get("recovery_secret") or "")
        if not recovery or self.restic("cat", "config", password=recovery, check=False).returncode == 0:
            return False
        self.restic("key", "add", "--new-password-file", "/dev/stdin", stdin=recovery + "\n")
        return True

    def _rekey(self) -> None:
        keys = json.loads(self.restic("key", "list", "--json", password=self.previous).stdout)
        old = [k["id"] for k in keys if k.get("current")]
        self.restic("key", "add", "--new-password-file", "/dev/stdin", password=self.previous,
                    stdin=self.password + "\n")
        for key in old:
            self.restic("key", "remove", key)

    # --- backups -------------------------------------------------------------------------

    def push(self, backup: Path, host: str) -> dict:
        args = ["backup", "--json", "--host", host, "--tag", TAG, "--tag", f"backup={backup.name}", backup.name]
        sealed = Path(os.environ.get("RUNTIME_DIRECTORY", "/nonexistent"), SEALED)
        if sealed.is_file():
            args.append(str(sealed))
        proc = self.restic(*args, cwd=str(backup.parent), check=False)
        if proc.returncode != 0 and WRONG_PASSWORD in proc.stderr:
            self.open()  # after a rotation: rekeys with the previous password, or explains
            proc = self.restic(*args, cwd=str(backup.parent), check=False)
        if proc.returncode != 0:
            raise RemoteError(f"{self.name}: cannot back up to the repository: {last_lines(proc.stderr)}")
        summary = {}
        for line in proc.stdout.splitlines():
            message = json.loads(line) if line.startswith("{") else {}
            if message.get("message_type") == "summary":
                summary = message
        if not summary.get("snapshot_id"):
            raise RemoteError(f"{self.name}: restic backup reported no snapshot")
        return {"snapshot": summary["snapshot_id"], "data_added": summary.get("data_added", 0)}

    def forget(self, host: str, keep: dict) -> None:
        # each backup is a directory of its own name: grouped by path, no snapshot would be forgotten
        args = ["forget", "--prune", "--group-by", "host", "--host", host, "--tag", TAG]
        for period in ("daily", "weekly", "monthly"):
            if int(keep.get(period, 0)) > 0:
                args += [f"--keep-{period}", str(int(keep[period]))]
        self.restic(*args)

    def snapshots(self, host: str) -> list[dict]:
        found = json.loads(self.restic("snapshots", "--json", "--host", host, "--tag", TAG).stdout or "[]")
        for snap in found:
            names = [t.split("=", 1)[1] for t in snap.get("tags", []) if t.startswith("backup=")]
            snap["backup"] = names[0] if names else None
        return sorted(found, key=lambda s: s["time"])

    def restore(self, snapshot: str, target: Path) -> Path:
        """The snapshot's backup directory, restored under target."""
        self.restic("restore", snapshot, "--target", str(target))
        found = [p.parent for p in target.rglob("manifest.json")]
        if len(found) != 1:
            raise RemoteError(f"{self.name}: snapshot {snapshot} holds {len(found)} backups, not one")
        return found[0]

    def check(self, subset: str) -> None:
        args = ["check"] + ([f"--read-data-subset={subset}"] if subset else [])
        self.restic(*args)


def last_lines(text: str, count: int = 3) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[-count:]) or "no message"


def remotes(cfg: dict, only: str | None = None) -> list[Remote]:
    specs = cfg.get("remotes") or []
    if only:
        specs = [s for s in specs if s["name"] == only]
        if not specs:
            raise RemoteError(f"no remote named {only!r}")
    if not specs:
        return []
    secrets = read_env(secrets_path(cfg))
    return [Remote(cfg, spec, secrets) for spec in specs]


def recover_secrets(cfg: dict, remote_name: str, snapshot: str, provided: dict[str, str]) -> str:
    """On a bare server: the secrets file from a remote snapshot, opened with the recovery
    password; provided holds it and the remote's credentials (from ansible-vault)."""
    target = Path(cfg["secrets_file"])
    if target.exists():
        raise RemoteError(f"{target} exists: this server has secrets of its own (restore.yml brings data back"
                          " onto a running server)")
    recovery = provided.get(cfg.get("recovery_secret") or "")
    if not recovery:
        raise RemoteError("no recovery password: set backup_recovery_password_secret and provide it")
    specs = [s for s in cfg.get("remotes") or [] if s["name"] == remote_name]
    if not specs:
        raise RemoteError(f"no remote named {remote_name!r}")
    remote = Remote(cfg, specs[0], provided | {cfg.get("password_secret", "RESTIC_PASSWORD"): recovery})
    if snapshot == "latest":
        found = remote.snapshots(cfg["owner"])
        if not found:
            raise RemoteError(f"{remote_name}: no snapshot")
        snapshot = found[-1]["id"]
    sealed = remote.restic("dump", snapshot, f"{cfg['runtime_dir']}/{SEALED}").stdout
    text = openssl(sealed, recovery, decrypt=True)
    if not parse_env(text).get(cfg.get("password_secret", "RESTIC_PASSWORD")):
        raise RemoteError(f"snapshot {snapshot} holds no usable secrets file")
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    write_private(target, text)
    return snapshot
